import NIOCore

/// One MQTT 5 property (MQTT 5 §2.2.2.2).
public enum MQTTProperty: Sendable, Hashable {
    case payloadFormatIndicator(UInt8)
    case messageExpiryInterval(UInt32)
    case contentType(String)
    case responseTopic(String)
    case correlationData(ByteBuffer)
    case subscriptionIdentifier(Int)
    case sessionExpiryInterval(UInt32)
    case assignedClientIdentifier(String)
    case serverKeepAlive(UInt16)
    case authenticationMethod(String)
    case authenticationData(ByteBuffer)
    case requestProblemInformation(UInt8)
    case willDelayInterval(UInt32)
    case requestResponseInformation(UInt8)
    case responseInformation(String)
    case serverReference(String)
    case reasonString(String)
    case receiveMaximum(UInt16)
    case topicAliasMaximum(UInt16)
    case topicAlias(UInt16)
    case maximumQoS(UInt8)
    case retainAvailable(UInt8)
    case userProperty(String, String)
    case maximumPacketSize(UInt32)
    case wildcardSubscriptionAvailable(UInt8)
    case subscriptionIdentifierAvailable(UInt8)
    case sharedSubscriptionAvailable(UInt8)

    /// The property's identifier byte.
    public var identifier: Identifier {
        switch self {
        case .payloadFormatIndicator: return .payloadFormatIndicator
        case .messageExpiryInterval: return .messageExpiryInterval
        case .contentType: return .contentType
        case .responseTopic: return .responseTopic
        case .correlationData: return .correlationData
        case .subscriptionIdentifier: return .subscriptionIdentifier
        case .sessionExpiryInterval: return .sessionExpiryInterval
        case .assignedClientIdentifier: return .assignedClientIdentifier
        case .serverKeepAlive: return .serverKeepAlive
        case .authenticationMethod: return .authenticationMethod
        case .authenticationData: return .authenticationData
        case .requestProblemInformation: return .requestProblemInformation
        case .willDelayInterval: return .willDelayInterval
        case .requestResponseInformation: return .requestResponseInformation
        case .responseInformation: return .responseInformation
        case .serverReference: return .serverReference
        case .reasonString: return .reasonString
        case .receiveMaximum: return .receiveMaximum
        case .topicAliasMaximum: return .topicAliasMaximum
        case .topicAlias: return .topicAlias
        case .maximumQoS: return .maximumQoS
        case .retainAvailable: return .retainAvailable
        case .userProperty: return .userProperty
        case .maximumPacketSize: return .maximumPacketSize
        case .wildcardSubscriptionAvailable: return .wildcardSubscriptionAvailable
        case .subscriptionIdentifierAvailable: return .subscriptionIdentifierAvailable
        case .sharedSubscriptionAvailable: return .sharedSubscriptionAvailable
        }
    }

    /// MQTT 5 property identifiers.
    public enum Identifier: UInt8, Sendable, Hashable, CaseIterable {
        case payloadFormatIndicator = 0x01
        case messageExpiryInterval = 0x02
        case contentType = 0x03
        case responseTopic = 0x08
        case correlationData = 0x09
        case subscriptionIdentifier = 0x0B
        case sessionExpiryInterval = 0x11
        case assignedClientIdentifier = 0x12
        case serverKeepAlive = 0x13
        case authenticationMethod = 0x15
        case authenticationData = 0x16
        case requestProblemInformation = 0x17
        case willDelayInterval = 0x18
        case requestResponseInformation = 0x19
        case responseInformation = 0x1A
        case serverReference = 0x1C
        case reasonString = 0x1F
        case receiveMaximum = 0x21
        case topicAliasMaximum = 0x22
        case topicAlias = 0x23
        case maximumQoS = 0x24
        case retainAvailable = 0x25
        case userProperty = 0x26
        case maximumPacketSize = 0x27
        case wildcardSubscriptionAvailable = 0x28
        case subscriptionIdentifierAvailable = 0x29
        case sharedSubscriptionAvailable = 0x2A

        /// Bit for this identifier in a 64-bit set (identifiers are below 64).
        @usableFromInline
        var bit: UInt64 { 1 << UInt64(rawValue) }
    }

    /// The encoded size of the property, identifier included.
    var encodedSize: Int {
        switch self {
        case .payloadFormatIndicator, .requestProblemInformation, .requestResponseInformation, .maximumQoS,
            .retainAvailable, .wildcardSubscriptionAvailable, .subscriptionIdentifierAvailable,
            .sharedSubscriptionAvailable:
            return 2
        case .serverKeepAlive, .receiveMaximum, .topicAliasMaximum, .topicAlias:
            return 3
        case .messageExpiryInterval, .sessionExpiryInterval, .willDelayInterval, .maximumPacketSize:
            return 5
        case .contentType(let s), .responseTopic(let s), .assignedClientIdentifier(let s),
            .authenticationMethod(let s), .responseInformation(let s), .serverReference(let s),
            .reasonString(let s):
            return 3 + s.utf8.count
        case .correlationData(let b), .authenticationData(let b):
            return 3 + b.readableBytes
        case .subscriptionIdentifier(let v):
            return 1 + ByteBuffer.mqttVariableByteIntegerSize(v)
        case .userProperty(let k, let v):
            return 5 + k.utf8.count + v.utf8.count
        }
    }

    func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(identifier.rawValue)
        switch self {
        case .payloadFormatIndicator(let v), .requestProblemInformation(let v), .requestResponseInformation(let v),
            .maximumQoS(let v), .retainAvailable(let v), .wildcardSubscriptionAvailable(let v),
            .subscriptionIdentifierAvailable(let v), .sharedSubscriptionAvailable(let v):
            buffer.writeInteger(v)
        case .serverKeepAlive(let v), .receiveMaximum(let v), .topicAliasMaximum(let v), .topicAlias(let v):
            buffer.writeInteger(v)
        case .messageExpiryInterval(let v), .sessionExpiryInterval(let v), .willDelayInterval(let v),
            .maximumPacketSize(let v):
            buffer.writeInteger(v)
        case .contentType(let s), .responseTopic(let s), .assignedClientIdentifier(let s),
            .authenticationMethod(let s), .responseInformation(let s), .serverReference(let s),
            .reasonString(let s):
            buffer.writeMQTTString(s)
        case .correlationData(let b), .authenticationData(let b):
            buffer.writeMQTTBinary(b)
        case .subscriptionIdentifier(let v):
            buffer.writeMQTTVariableByteInteger(v)
        case .userProperty(let k, let v):
            buffer.writeMQTTString(k)
            buffer.writeMQTTString(v)
        }
    }

    static func read(from buffer: inout ByteBuffer) throws(MQTTError) -> MQTTProperty {
        guard let rawIdentifier = try buffer.readMQTTVariableByteInteger() else {
            throw MQTTError.malformed("property identifier missing")
        }
        guard rawIdentifier < 256, let identifier = Identifier(rawValue: UInt8(rawIdentifier)) else {
            throw MQTTError.malformed("unknown property identifier 0x\(String(rawIdentifier, radix: 16))")
        }
        switch identifier {
        case .payloadFormatIndicator:
            let v: UInt8 = try buffer.readMQTTInteger("payload format indicator")
            guard v <= 1 else { throw MQTTError.protocolError("payload format indicator must be 0 or 1") }
            return .payloadFormatIndicator(v)
        case .messageExpiryInterval: return .messageExpiryInterval(try buffer.readMQTTInteger("message expiry interval"))
        case .contentType: return .contentType(try buffer.readMQTTString())
        case .responseTopic: return .responseTopic(try buffer.readMQTTString())
        case .correlationData: return .correlationData(try buffer.readMQTTBinary())
        case .subscriptionIdentifier:
            guard let v = try buffer.readMQTTVariableByteInteger() else {
                throw MQTTError.malformed("subscription identifier missing")
            }
            guard v > 0 else { throw MQTTError.protocolError("subscription identifier must not be 0") }
            return .subscriptionIdentifier(v)
        case .sessionExpiryInterval: return .sessionExpiryInterval(try buffer.readMQTTInteger("session expiry interval"))
        case .assignedClientIdentifier: return .assignedClientIdentifier(try buffer.readMQTTString())
        case .serverKeepAlive: return .serverKeepAlive(try buffer.readMQTTInteger("server keep alive"))
        case .authenticationMethod: return .authenticationMethod(try buffer.readMQTTString())
        case .authenticationData: return .authenticationData(try buffer.readMQTTBinary())
        case .requestProblemInformation:
            let v: UInt8 = try buffer.readMQTTInteger("request problem information")
            guard v <= 1 else { throw MQTTError.protocolError("request problem information must be 0 or 1") }
            return .requestProblemInformation(v)
        case .willDelayInterval: return .willDelayInterval(try buffer.readMQTTInteger("will delay interval"))
        case .requestResponseInformation:
            let v: UInt8 = try buffer.readMQTTInteger("request response information")
            guard v <= 1 else { throw MQTTError.protocolError("request response information must be 0 or 1") }
            return .requestResponseInformation(v)
        case .responseInformation: return .responseInformation(try buffer.readMQTTString())
        case .serverReference: return .serverReference(try buffer.readMQTTString())
        case .reasonString: return .reasonString(try buffer.readMQTTString())
        case .receiveMaximum:
            let v: UInt16 = try buffer.readMQTTInteger("receive maximum")
            guard v > 0 else { throw MQTTError.protocolError("receive maximum must not be 0") }
            return .receiveMaximum(v)
        case .topicAliasMaximum: return .topicAliasMaximum(try buffer.readMQTTInteger("topic alias maximum"))
        case .topicAlias:
            let v: UInt16 = try buffer.readMQTTInteger("topic alias")
            guard v > 0 else { throw MQTTError.protocolError("topic alias must not be 0") }
            return .topicAlias(v)
        case .maximumQoS:
            let v: UInt8 = try buffer.readMQTTInteger("maximum QoS")
            guard v <= 1 else { throw MQTTError.protocolError("maximum QoS must be 0 or 1") }
            return .maximumQoS(v)
        case .retainAvailable:
            let v: UInt8 = try buffer.readMQTTInteger("retain available")
            guard v <= 1 else { throw MQTTError.protocolError("retain available must be 0 or 1") }
            return .retainAvailable(v)
        case .userProperty:
            let key = try buffer.readMQTTString()
            let value = try buffer.readMQTTString()
            return .userProperty(key, value)
        case .maximumPacketSize:
            let v: UInt32 = try buffer.readMQTTInteger("maximum packet size")
            guard v > 0 else { throw MQTTError.protocolError("maximum packet size must not be 0") }
            return .maximumPacketSize(v)
        case .wildcardSubscriptionAvailable:
            let v: UInt8 = try buffer.readMQTTInteger("wildcard subscription available")
            guard v <= 1 else { throw MQTTError.protocolError("wildcard subscription available must be 0 or 1") }
            return .wildcardSubscriptionAvailable(v)
        case .subscriptionIdentifierAvailable:
            let v: UInt8 = try buffer.readMQTTInteger("subscription identifier available")
            guard v <= 1 else { throw MQTTError.protocolError("subscription identifier available must be 0 or 1") }
            return .subscriptionIdentifierAvailable(v)
        case .sharedSubscriptionAvailable:
            let v: UInt8 = try buffer.readMQTTInteger("shared subscription available")
            guard v <= 1 else { throw MQTTError.protocolError("shared subscription available must be 0 or 1") }
            return .sharedSubscriptionAvailable(v)
        }
    }
}

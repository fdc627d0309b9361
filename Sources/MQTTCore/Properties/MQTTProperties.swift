import NIOCore

/// The properties of an MQTT 5 packet, in the order they were read or added.
///
/// An empty set costs no allocation, which keeps MQTT 3.1.1 and property-less MQTT 5 packets
/// cheap. Typed accessors read and replace single-valued properties; user properties and
/// subscription identifiers may repeat.
public struct MQTTProperties: Sendable, Hashable, RandomAccessCollection, ExpressibleByArrayLiteral {
    public var storage: [MQTTProperty]

    @inlinable
    public init() { self.storage = [] }

    public init(_ properties: [MQTTProperty]) { self.storage = properties }

    public init(arrayLiteral elements: MQTTProperty...) { self.storage = elements }

    public var startIndex: Int { storage.startIndex }
    public var endIndex: Int { storage.endIndex }
    public subscript(position: Int) -> MQTTProperty { storage[position] }

    /// Appends a property.
    public mutating func append(_ property: MQTTProperty) { storage.append(property) }

    /// Removes every property with the given identifier.
    public mutating func remove(_ identifier: MQTTProperty.Identifier) {
        storage.removeAll { $0.identifier == identifier }
    }

    /// Replaces all properties of `property`'s identifier by `property`.
    public mutating func set(_ property: MQTTProperty) {
        remove(property.identifier)
        storage.append(property)
    }

    // MARK: typed accessors

    public var payloadFormatIndicator: UInt8? {
        get { for case .payloadFormatIndicator(let v) in storage { return v }; return nil }
        set { setOptional(.payloadFormatIndicator, newValue.map { .payloadFormatIndicator($0) }) }
    }
    public var messageExpiryInterval: UInt32? {
        get { for case .messageExpiryInterval(let v) in storage { return v }; return nil }
        set { setOptional(.messageExpiryInterval, newValue.map { .messageExpiryInterval($0) }) }
    }
    public var contentType: String? {
        get { for case .contentType(let v) in storage { return v }; return nil }
        set { setOptional(.contentType, newValue.map { .contentType($0) }) }
    }
    public var responseTopic: String? {
        get { for case .responseTopic(let v) in storage { return v }; return nil }
        set { setOptional(.responseTopic, newValue.map { .responseTopic($0) }) }
    }
    public var correlationData: ByteBuffer? {
        get { for case .correlationData(let v) in storage { return v }; return nil }
        set { setOptional(.correlationData, newValue.map { .correlationData($0) }) }
    }
    /// All subscription identifiers (a PUBLISH may carry several).
    public var subscriptionIdentifiers: [Int] {
        get { storage.compactMap { if case .subscriptionIdentifier(let v) = $0 { return v } else { return nil } } }
        set {
            remove(.subscriptionIdentifier)
            storage.append(contentsOf: newValue.map { .subscriptionIdentifier($0) })
        }
    }
    public var sessionExpiryInterval: UInt32? {
        get { for case .sessionExpiryInterval(let v) in storage { return v }; return nil }
        set { setOptional(.sessionExpiryInterval, newValue.map { .sessionExpiryInterval($0) }) }
    }
    public var assignedClientIdentifier: String? {
        get { for case .assignedClientIdentifier(let v) in storage { return v }; return nil }
        set { setOptional(.assignedClientIdentifier, newValue.map { .assignedClientIdentifier($0) }) }
    }
    public var serverKeepAlive: UInt16? {
        get { for case .serverKeepAlive(let v) in storage { return v }; return nil }
        set { setOptional(.serverKeepAlive, newValue.map { .serverKeepAlive($0) }) }
    }
    public var authenticationMethod: String? {
        get { for case .authenticationMethod(let v) in storage { return v }; return nil }
        set { setOptional(.authenticationMethod, newValue.map { .authenticationMethod($0) }) }
    }
    public var authenticationData: ByteBuffer? {
        get { for case .authenticationData(let v) in storage { return v }; return nil }
        set { setOptional(.authenticationData, newValue.map { .authenticationData($0) }) }
    }
    public var requestProblemInformation: UInt8? {
        get { for case .requestProblemInformation(let v) in storage { return v }; return nil }
        set { setOptional(.requestProblemInformation, newValue.map { .requestProblemInformation($0) }) }
    }
    public var willDelayInterval: UInt32? {
        get { for case .willDelayInterval(let v) in storage { return v }; return nil }
        set { setOptional(.willDelayInterval, newValue.map { .willDelayInterval($0) }) }
    }
    public var requestResponseInformation: UInt8? {
        get { for case .requestResponseInformation(let v) in storage { return v }; return nil }
        set { setOptional(.requestResponseInformation, newValue.map { .requestResponseInformation($0) }) }
    }
    public var responseInformation: String? {
        get { for case .responseInformation(let v) in storage { return v }; return nil }
        set { setOptional(.responseInformation, newValue.map { .responseInformation($0) }) }
    }
    public var serverReference: String? {
        get { for case .serverReference(let v) in storage { return v }; return nil }
        set { setOptional(.serverReference, newValue.map { .serverReference($0) }) }
    }
    public var reasonString: String? {
        get { for case .reasonString(let v) in storage { return v }; return nil }
        set { setOptional(.reasonString, newValue.map { .reasonString($0) }) }
    }
    public var receiveMaximum: UInt16? {
        get { for case .receiveMaximum(let v) in storage { return v }; return nil }
        set { setOptional(.receiveMaximum, newValue.map { .receiveMaximum($0) }) }
    }
    public var topicAliasMaximum: UInt16? {
        get { for case .topicAliasMaximum(let v) in storage { return v }; return nil }
        set { setOptional(.topicAliasMaximum, newValue.map { .topicAliasMaximum($0) }) }
    }
    public var topicAlias: UInt16? {
        get { for case .topicAlias(let v) in storage { return v }; return nil }
        set { setOptional(.topicAlias, newValue.map { .topicAlias($0) }) }
    }
    public var maximumQoS: UInt8? {
        get { for case .maximumQoS(let v) in storage { return v }; return nil }
        set { setOptional(.maximumQoS, newValue.map { .maximumQoS($0) }) }
    }
    public var retainAvailable: UInt8? {
        get { for case .retainAvailable(let v) in storage { return v }; return nil }
        set { setOptional(.retainAvailable, newValue.map { .retainAvailable($0) }) }
    }
    /// All user properties, in order (keys may repeat).
    public var userProperties: [(key: String, value: String)] {
        get { storage.compactMap { if case .userProperty(let k, let v) = $0 { return (k, v) } else { return nil } } }
        set {
            remove(.userProperty)
            storage.append(contentsOf: newValue.map { .userProperty($0.key, $0.value) })
        }
    }
    public var maximumPacketSize: UInt32? {
        get { for case .maximumPacketSize(let v) in storage { return v }; return nil }
        set { setOptional(.maximumPacketSize, newValue.map { .maximumPacketSize($0) }) }
    }
    public var wildcardSubscriptionAvailable: UInt8? {
        get { for case .wildcardSubscriptionAvailable(let v) in storage { return v }; return nil }
        set { setOptional(.wildcardSubscriptionAvailable, newValue.map { .wildcardSubscriptionAvailable($0) }) }
    }
    public var subscriptionIdentifierAvailable: UInt8? {
        get { for case .subscriptionIdentifierAvailable(let v) in storage { return v }; return nil }
        set { setOptional(.subscriptionIdentifierAvailable, newValue.map { .subscriptionIdentifierAvailable($0) }) }
    }
    public var sharedSubscriptionAvailable: UInt8? {
        get { for case .sharedSubscriptionAvailable(let v) in storage { return v }; return nil }
        set { setOptional(.sharedSubscriptionAvailable, newValue.map { .sharedSubscriptionAvailable($0) }) }
    }

    private mutating func setOptional(_ identifier: MQTTProperty.Identifier, _ property: MQTTProperty?) {
        if let property { set(property) } else if !storage.isEmpty { remove(identifier) }
    }

    // MARK: coding

    /// The size of the properties' bytes, without the length prefix.
    public var contentSize: Int {
        var size = 0
        for property in storage { size += property.encodedSize }
        return size
    }

    /// The encoded size including the variable-byte-integer length prefix.
    public var encodedSize: Int {
        let content = contentSize
        return ByteBuffer.mqttVariableByteIntegerSize(content) + content
    }

    /// Writes the length prefix and the properties.
    public func write(to buffer: inout ByteBuffer) {
        buffer.writeMQTTVariableByteInteger(contentSize)
        for property in storage { property.write(to: &buffer) }
    }

    /// Reads a properties block (length prefix included), checking that each property is allowed
    /// in `context` and that none but the repeatable ones occurs twice.
    public static func read(from buffer: inout ByteBuffer, allowed: PropertySet) throws(MQTTError) -> MQTTProperties {
        guard let length = try buffer.readMQTTVariableByteInteger() else {
            throw MQTTError.malformed("property length missing")
        }
        if length == 0 { return MQTTProperties() }
        guard var slice = buffer.readSlice(length: length) else {
            throw MQTTError.malformed("property length exceeds packet")
        }
        var properties: [MQTTProperty] = []
        var seen: UInt64 = 0
        while slice.readableBytes > 0 {
            let property = try MQTTProperty.read(from: &slice)
            let identifier = property.identifier
            guard allowed.contains(identifier) else {
                throw MQTTError.protocolError("property \(identifier) is not allowed in \(allowed.context)")
            }
            if identifier != .userProperty && !(identifier == .subscriptionIdentifier && allowed.repeatsSubscriptionIdentifier) {
                if seen & identifier.bit != 0 {
                    throw MQTTError.protocolError("property \(identifier) appears more than once")
                }
                seen |= identifier.bit
            }
            properties.append(property)
        }
        return MQTTProperties(properties)
    }
}

/// The properties a packet may carry (MQTT 5 §2.2.2.2 table).
public struct PropertySet: Sendable {
    var bits: UInt64
    var context: StaticString
    var repeatsSubscriptionIdentifier: Bool

    init(_ context: StaticString, _ identifiers: [MQTTProperty.Identifier], repeatsSubscriptionIdentifier: Bool = false) {
        self.bits = identifiers.reduce(0) { $0 | $1.bit }
        self.context = context
        self.repeatsSubscriptionIdentifier = repeatsSubscriptionIdentifier
    }

    func contains(_ identifier: MQTTProperty.Identifier) -> Bool { bits & identifier.bit != 0 }

    public static let connect = PropertySet(
        "CONNECT",
        [.sessionExpiryInterval, .authenticationMethod, .authenticationData, .requestProblemInformation,
         .requestResponseInformation, .receiveMaximum, .topicAliasMaximum, .userProperty, .maximumPacketSize]
    )
    public static let will = PropertySet(
        "will properties",
        [.willDelayInterval, .payloadFormatIndicator, .messageExpiryInterval, .contentType, .responseTopic,
         .correlationData, .userProperty]
    )
    public static let connack = PropertySet(
        "CONNACK",
        [.sessionExpiryInterval, .assignedClientIdentifier, .serverKeepAlive, .authenticationMethod,
         .authenticationData, .responseInformation, .serverReference, .reasonString, .receiveMaximum,
         .topicAliasMaximum, .maximumQoS, .retainAvailable, .userProperty, .maximumPacketSize,
         .wildcardSubscriptionAvailable, .subscriptionIdentifierAvailable, .sharedSubscriptionAvailable]
    )
    public static let publish = PropertySet(
        "PUBLISH",
        [.payloadFormatIndicator, .messageExpiryInterval, .contentType, .responseTopic, .correlationData,
         .subscriptionIdentifier, .topicAlias, .userProperty],
        repeatsSubscriptionIdentifier: true
    )
    public static let publishAck = PropertySet("PUBACK/PUBREC/PUBREL/PUBCOMP", [.reasonString, .userProperty])
    public static let subscribe = PropertySet("SUBSCRIBE", [.subscriptionIdentifier, .userProperty])
    public static let suback = PropertySet("SUBACK", [.reasonString, .userProperty])
    public static let unsubscribe = PropertySet("UNSUBSCRIBE", [.userProperty])
    public static let unsuback = PropertySet("UNSUBACK", [.reasonString, .userProperty])
    public static let disconnect = PropertySet(
        "DISCONNECT",
        [.sessionExpiryInterval, .reasonString, .userProperty, .serverReference]
    )
    public static let auth = PropertySet(
        "AUTH",
        [.authenticationMethod, .authenticationData, .reasonString, .userProperty]
    )
}

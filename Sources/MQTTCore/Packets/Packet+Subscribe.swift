import NIOCore

/// SUBSCRIBE: a client's request for one or more subscriptions (MQTT 5 §3.8).
public struct SubscribePacket: Sendable, Hashable {
    /// One topic filter with its subscription options.
    public struct Subscription: Sendable, Hashable {
        public var topicFilter: String
        public var options: SubscriptionOptions

        public init(topicFilter: String, options: SubscriptionOptions = .init()) {
            self.topicFilter = topicFilter
            self.options = options
        }

        public init(_ topicFilter: String, qos: QoS) {
            self.init(topicFilter: topicFilter, options: SubscriptionOptions(qos: qos))
        }
    }

    public var packetIdentifier: UInt16
    public var subscriptions: [Subscription]
    /// Subscription identifier and user properties (MQTT 5).
    public var properties: MQTTProperties

    public init(packetIdentifier: UInt16, subscriptions: [Subscription], properties: MQTTProperties = .init()) {
        self.packetIdentifier = packetIdentifier
        self.subscriptions = subscriptions
        self.properties = properties
    }

    static func decode(from buffer: inout ByteBuffer, version: MQTTProtocolVersion) throws(MQTTError) -> SubscribePacket {
        let id = try readPacketIdentifier(&buffer, in: "SUBSCRIBE")
        let properties = version == .v5 ? try MQTTProperties.read(from: &buffer, allowed: .subscribe) : MQTTProperties()
        var subscriptions: [Subscription] = []
        while buffer.readableBytes > 0 {
            let filter = try buffer.readMQTTString()
            let raw: UInt8 = try buffer.readMQTTInteger("subscription options")
            let options = try SubscriptionOptions(byte: raw, version: version)
            subscriptions.append(Subscription(topicFilter: filter, options: options))
        }
        guard !subscriptions.isEmpty else {
            throw MQTTError.protocolError("SUBSCRIBE without any topic filter")
        }
        return SubscribePacket(packetIdentifier: id, subscriptions: subscriptions, properties: properties)
    }

    func remainingLength(version: MQTTProtocolVersion) -> Int {
        var size = 2
        if version == .v5 { size += properties.encodedSize }
        for s in subscriptions { size += 3 + s.topicFilter.utf8.count }
        return size
    }

    func write(to buffer: inout ByteBuffer, version: MQTTProtocolVersion) {
        buffer.writeMQTTFixedHeader(0x82, remainingLength: remainingLength(version: version))
        buffer.writeInteger(packetIdentifier)
        if version == .v5 { properties.write(to: &buffer) }
        for s in subscriptions {
            buffer.writeMQTTString(s.topicFilter)
            buffer.writeInteger(version == .v5 ? s.options.byte : s.options.qos.rawValue)
        }
    }
}

/// The options byte of one subscription (MQTT 5 §3.8.3.1).
public struct SubscriptionOptions: Sendable, Hashable {
    /// What to do with retained messages when subscribing (MQTT 5).
    public enum RetainHandling: UInt8, Sendable, Hashable {
        /// Send retained messages at the time of the subscribe.
        case sendOnSubscribe = 0
        /// Send them only if the subscription did not exist before.
        case sendIfNew = 1
        /// Do not send them.
        case doNotSend = 2
    }

    /// The maximum QoS the server may use for this subscription.
    public var qos: QoS
    /// MQTT 5: do not send this client its own publications.
    public var noLocal: Bool
    /// MQTT 5: keep the RETAIN flag as published instead of clearing it.
    public var retainAsPublished: Bool
    public var retainHandling: RetainHandling

    public init(qos: QoS = .atMostOnce, noLocal: Bool = false, retainAsPublished: Bool = false, retainHandling: RetainHandling = .sendOnSubscribe) {
        self.qos = qos
        self.noLocal = noLocal
        self.retainAsPublished = retainAsPublished
        self.retainHandling = retainHandling
    }

    /// Decodes an options byte as `version` defines it.
    public init(byte: UInt8, version: MQTTProtocolVersion) throws(MQTTError) {
        guard let qos = QoS(rawValue: byte & 0x03) else {
            // MQTT 5 §3.8.3.1: a Maximum QoS of 3 is a protocol error; MQTT 3.1.1 §3.8.3: malformed.
            if version == .v5 { throw MQTTError.protocolError("subscription with maximum QoS 3") }
            throw MQTTError.malformed("subscription with QoS 3")
        }
        if version != .v5 {
            guard byte & 0xFC == 0 else { throw MQTTError.malformed("reserved subscription option bits must be 0") }
            self.init(qos: qos)
            return
        }
        guard byte & 0xC0 == 0 else { throw MQTTError.malformed("reserved subscription option bits must be 0") }
        guard let handling = RetainHandling(rawValue: (byte >> 4) & 0x03) else {
            throw MQTTError.protocolError("retain handling 3 is invalid")
        }
        self.init(qos: qos, noLocal: byte & 0x04 != 0, retainAsPublished: byte & 0x08 != 0, retainHandling: handling)
    }

    /// The MQTT 5 options byte.
    public var byte: UInt8 {
        qos.rawValue | (noLocal ? 0x04 : 0) | (retainAsPublished ? 0x08 : 0) | (retainHandling.rawValue << 4)
    }
}

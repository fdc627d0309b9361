import NIOCore

/// CONNECT: the first packet a client sends (MQTT 5 §3.1, MQTT 3.1.1 §3.1).
public struct ConnectPacket: Sendable, Hashable {
    /// A will message: published by the server when the connection ends without a DISCONNECT.
    public struct Will: Sendable, Hashable {
        public var topic: String
        public var payload: ByteBuffer
        public var qos: QoS
        public var retain: Bool
        /// Will properties (MQTT 5): will delay interval, message expiry, content type, ...
        public var properties: MQTTProperties

        public init(topic: String, payload: ByteBuffer, qos: QoS = .atMostOnce, retain: Bool = false, properties: MQTTProperties = .init()) {
            self.topic = topic
            self.payload = payload
            self.qos = qos
            self.retain = retain
            self.properties = properties
        }
    }

    public var protocolVersion: MQTTProtocolVersion
    public var clientIdentifier: String
    /// Clean session (3.1.1) or clean start (5.0).
    public var cleanStart: Bool
    /// Keep-alive in seconds; 0 disables it.
    public var keepAlive: UInt16
    public var username: String?
    public var password: ByteBuffer?
    public var will: Will?
    public var properties: MQTTProperties

    public init(
        protocolVersion: MQTTProtocolVersion = .v5,
        clientIdentifier: String,
        cleanStart: Bool = true,
        keepAlive: UInt16 = 60,
        username: String? = nil,
        password: ByteBuffer? = nil,
        will: Will? = nil,
        properties: MQTTProperties = .init()
    ) {
        self.protocolVersion = protocolVersion
        self.clientIdentifier = clientIdentifier
        self.cleanStart = cleanStart
        self.keepAlive = keepAlive
        self.username = username
        self.password = password
        self.will = will
        self.properties = properties
    }

    static func decode(from buffer: inout ByteBuffer) throws(MQTTError) -> ConnectPacket {
        let name = try buffer.readMQTTString()
        let level: UInt8 = try buffer.readMQTTInteger("protocol level")
        guard let version = MQTTProtocolVersion(rawValue: level) else {
            throw MQTTError.unsupportedProtocolVersion("protocol level \(level) is not supported")
        }
        switch (name, version) {
        case ("MQTT", .v3_1_1), ("MQTT", .v5), ("MQIsdp", .v3_1): break
        default:
            throw MQTTError.unsupportedProtocolVersion("protocol name '\(name)' with level \(level) is not supported")
        }
        let flags: UInt8 = try buffer.readMQTTInteger("connect flags")
        guard flags & 0x01 == 0 else { throw MQTTError.malformed("reserved connect flag must be 0") }
        let cleanStart = flags & 0x02 != 0
        let hasWill = flags & 0x04 != 0
        let willQoSRaw = (flags >> 3) & 0x03
        let willRetain = flags & 0x20 != 0
        let hasPassword = flags & 0x40 != 0
        let hasUsername = flags & 0x80 != 0
        guard let willQoS = QoS(rawValue: willQoSRaw) else { throw MQTTError.malformed("will QoS 3 is invalid") }
        if !hasWill && (willQoSRaw != 0 || willRetain) {
            throw MQTTError.malformed("will QoS and retain must be 0 without a will")
        }
        if hasPassword && !hasUsername && version != .v5 {
            throw MQTTError.malformed("password flag set without user name flag")
        }
        let keepAlive: UInt16 = try buffer.readMQTTInteger("keep alive")
        let properties = version == .v5 ? try MQTTProperties.read(from: &buffer, allowed: .connect) : MQTTProperties()
        let clientIdentifier = try buffer.readMQTTString()
        var will: Will?
        if hasWill {
            let willProperties = version == .v5 ? try MQTTProperties.read(from: &buffer, allowed: .will) : MQTTProperties()
            let topic = try buffer.readMQTTString()
            try MQTTTopic.validateName(topic)
            let payload = try buffer.readMQTTBinary()
            if willProperties.payloadFormatIndicator == 1 && !mqttIsValidUTF8(payload) {
                throw MQTTError.payloadFormatInvalid("will payload is marked UTF-8 but is not")
            }
            will = Will(topic: topic, payload: payload, qos: willQoS, retain: willRetain, properties: willProperties)
        }
        let username = hasUsername ? try buffer.readMQTTString() : nil
        let password = hasPassword ? try buffer.readMQTTBinary() : nil
        return ConnectPacket(
            protocolVersion: version,
            clientIdentifier: clientIdentifier,
            cleanStart: cleanStart,
            keepAlive: keepAlive,
            username: username,
            password: password,
            will: will,
            properties: properties
        )
    }

    var remainingLength: Int {
        let v5 = protocolVersion == .v5
        var size = (protocolVersion == .v3_1 ? 8 : 6) + 1 + 1 + 2  // name, level, flags, keep alive
        if v5 { size += properties.encodedSize }
        size += 2 + clientIdentifier.utf8.count
        if let will {
            if v5 { size += will.properties.encodedSize }
            size += 2 + will.topic.utf8.count + 2 + will.payload.readableBytes
        }
        if let username { size += 2 + username.utf8.count }
        if let password { size += 2 + password.readableBytes }
        return size
    }

    func write(to buffer: inout ByteBuffer) {
        buffer.writeMQTTFixedHeader(0x10, remainingLength: remainingLength)
        buffer.writeMQTTString(protocolVersion == .v3_1 ? "MQIsdp" : "MQTT")
        buffer.writeInteger(protocolVersion.rawValue)
        var flags: UInt8 = 0
        if cleanStart { flags |= 0x02 }
        if let will {
            flags |= 0x04 | (will.qos.rawValue << 3)
            if will.retain { flags |= 0x20 }
        }
        if password != nil { flags |= 0x40 }
        if username != nil { flags |= 0x80 }
        buffer.writeInteger(flags)
        buffer.writeInteger(keepAlive)
        if protocolVersion == .v5 { properties.write(to: &buffer) }
        buffer.writeMQTTString(clientIdentifier)
        if let will {
            if protocolVersion == .v5 { will.properties.write(to: &buffer) }
            buffer.writeMQTTString(will.topic)
            buffer.writeMQTTBinary(will.payload)
        }
        if let username { buffer.writeMQTTString(username) }
        if let password { buffer.writeMQTTBinary(password) }
    }
}

extension ConnectPacket: CustomStringConvertible {
    /// A description without the password or will payload.
    public var description: String {
        "CONNECT(v\(protocolVersion), clientId: \(clientIdentifier), cleanStart: \(cleanStart), keepAlive: \(keepAlive)"
            + (username.map { ", username: \($0)" } ?? "") + (password != nil ? ", password: <redacted>" : "")
            + (will.map { ", will: \($0.topic) \($0.qos)" } ?? "") + ")"
    }
}

import NIOCore

/// PUBLISH: an application message, in either direction (MQTT 5 §3.3).
public struct PublishPacket: Sendable, Hashable {
    /// The topic name. Empty only in MQTT 5 when a topic alias stands for it.
    public var topic: String
    public var payload: ByteBuffer
    public var qos: QoS
    public var retain: Bool
    /// Set when this is a re-delivery of an earlier attempt.
    public var dup: Bool
    /// The packet identifier; present exactly when `qos > 0`.
    public var packetIdentifier: UInt16?
    public var properties: MQTTProperties

    public init(
        topic: String,
        payload: ByteBuffer,
        qos: QoS = .atMostOnce,
        retain: Bool = false,
        dup: Bool = false,
        packetIdentifier: UInt16? = nil,
        properties: MQTTProperties = .init()
    ) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.dup = dup
        self.packetIdentifier = packetIdentifier
        self.properties = properties
    }

    static func decode(from buffer: inout ByteBuffer, flags: UInt8, version: MQTTProtocolVersion) throws(MQTTError) -> PublishPacket {
        guard let qos = QoS(rawValue: (flags >> 1) & 0x03) else {
            throw MQTTError.malformed("PUBLISH with QoS 3")
        }
        let dup = flags & 0x08 != 0
        if dup && qos == .atMostOnce {
            throw MQTTError.malformed("DUP flag set on a QoS 0 PUBLISH")
        }
        let topic = try buffer.readMQTTString()
        var packetIdentifier: UInt16?
        if qos != .atMostOnce {
            packetIdentifier = try readPacketIdentifier(&buffer, in: "PUBLISH")
        }
        let properties = version == .v5 ? try MQTTProperties.read(from: &buffer, allowed: .publish) : MQTTProperties()
        if topic.isEmpty {
            guard version == .v5 else { throw MQTTError.topicNameInvalid("PUBLISH topic name is empty") }
            // MQTT 5 §3.3.2.1: an empty topic name without a topic alias is a protocol error.
            guard properties.topicAlias != nil else {
                throw MQTTError.protocolError("PUBLISH topic name is empty and there is no topic alias")
            }
        } else {
            try MQTTTopic.validateName(topic)
        }
        let payload = buffer.readSlice(length: buffer.readableBytes)!
        return PublishPacket(
            topic: topic,
            payload: payload,
            qos: qos,
            retain: flags & 0x01 != 0,
            dup: dup,
            packetIdentifier: packetIdentifier,
            properties: properties
        )
    }

    /// The fixed-header byte: type, DUP, QoS and RETAIN.
    @inlinable
    public var firstByte: UInt8 {
        0x30 | (dup ? 0x08 : 0) | (qos.rawValue << 1) | (retain ? 0x01 : 0)
    }

    func remainingLength(version: MQTTProtocolVersion) -> Int {
        var size = 2 + topic.utf8.count + payload.readableBytes
        if qos != .atMostOnce { size += 2 }
        if version == .v5 { size += properties.encodedSize }
        return size
    }

    func write(to buffer: inout ByteBuffer, version: MQTTProtocolVersion) {
        buffer.writeMQTTFixedHeader(firstByte, remainingLength: remainingLength(version: version))
        buffer.writeMQTTString(topic)
        if qos != .atMostOnce { buffer.writeInteger(packetIdentifier ?? 0) }
        if version == .v5 { properties.write(to: &buffer) }
        buffer.writeImmutableBuffer(payload)
    }
}

extension PublishPacket: CustomStringConvertible {
    /// A description without the payload.
    public var description: String {
        "PUBLISH(topic: \(topic), \(qos), retain: \(retain), dup: \(dup), id: \(packetIdentifier.map(String.init) ?? "-"), \(payload.readableBytes) bytes)"
    }
}

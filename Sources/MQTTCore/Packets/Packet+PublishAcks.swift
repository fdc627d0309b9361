import NIOCore

/// PUBACK, PUBREC, PUBREL and PUBCOMP: the QoS 1 and QoS 2 acknowledgements (MQTT 5 §3.4–3.7).
/// They share one layout; ``MQTTPacket`` tells them apart.
public struct PublishAckPacket: Sendable, Hashable {
    public var packetIdentifier: UInt16
    /// MQTT 5 reason code (MQTT 3.1.1 has none: success is implied).
    public var reasonCode: ReasonCode
    public var properties: MQTTProperties

    public init(packetIdentifier: UInt16, reasonCode: ReasonCode = .success, properties: MQTTProperties = .init()) {
        self.packetIdentifier = packetIdentifier
        self.reasonCode = reasonCode
        self.properties = properties
    }

    static func decode(from buffer: inout ByteBuffer, version: MQTTProtocolVersion) throws(MQTTError) -> PublishAckPacket {
        let id = try readPacketIdentifier(&buffer, in: "acknowledgement")
        guard version == .v5, buffer.readableBytes > 0 else {
            return PublishAckPacket(packetIdentifier: id)
        }
        let code: UInt8 = try buffer.readMQTTInteger("reason code")
        let properties = buffer.readableBytes > 0 ? try MQTTProperties.read(from: &buffer, allowed: .publishAck) : MQTTProperties()
        return PublishAckPacket(packetIdentifier: id, reasonCode: ReasonCode(rawValue: code), properties: properties)
    }

    func remainingLength(version: MQTTProtocolVersion) -> Int {
        guard version == .v5 else { return 2 }
        if properties.isEmpty { return reasonCode == .success ? 2 : 3 }
        return 3 + properties.encodedSize
    }

    func write(to buffer: inout ByteBuffer, type: MQTTPacketType, version: MQTTProtocolVersion) {
        let length = remainingLength(version: version)
        buffer.writeMQTTFixedHeader((type.rawValue << 4) | type.requiredFlags, remainingLength: length)
        buffer.writeInteger(packetIdentifier)
        if length > 2 {
            buffer.writeInteger(reasonCode.rawValue)
            if length > 3 { properties.write(to: &buffer) }
        }
    }
}

import NIOCore

/// DISCONNECT: the end of a connection, from either side in MQTT 5 (§3.14).
public struct DisconnectPacket: Sendable, Hashable {
    public var reasonCode: ReasonCode
    public var properties: MQTTProperties

    public init(reasonCode: ReasonCode = .normalDisconnection, properties: MQTTProperties = .init()) {
        self.reasonCode = reasonCode
        self.properties = properties
    }

    static func decode(from buffer: inout ByteBuffer, version: MQTTProtocolVersion) throws(MQTTError) -> DisconnectPacket {
        guard version == .v5, buffer.readableBytes > 0 else { return DisconnectPacket() }
        let code: UInt8 = try buffer.readMQTTInteger("reason code")
        let properties = buffer.readableBytes > 0 ? try MQTTProperties.read(from: &buffer, allowed: .disconnect) : MQTTProperties()
        return DisconnectPacket(reasonCode: ReasonCode(rawValue: code), properties: properties)
    }

    func remainingLength(version: MQTTProtocolVersion) -> Int {
        guard version == .v5 else { return 0 }
        if properties.isEmpty { return reasonCode == .normalDisconnection ? 0 : 1 }
        return 1 + properties.encodedSize
    }

    func write(to buffer: inout ByteBuffer, version: MQTTProtocolVersion) {
        let length = remainingLength(version: version)
        buffer.writeMQTTFixedHeader(0xE0, remainingLength: length)
        if length > 0 {
            buffer.writeInteger(reasonCode.rawValue)
            if length > 1 { properties.write(to: &buffer) }
        }
    }
}

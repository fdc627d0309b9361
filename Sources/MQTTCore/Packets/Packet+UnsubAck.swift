import NIOCore

/// UNSUBACK: the server's answer to UNSUBSCRIBE (MQTT 5 §3.11). MQTT 3.1.1 carries only the
/// packet identifier.
public struct UnsubAckPacket: Sendable, Hashable {
    public var packetIdentifier: UInt16
    public var reasonCodes: [ReasonCode]
    public var properties: MQTTProperties

    public init(packetIdentifier: UInt16, reasonCodes: [ReasonCode] = [], properties: MQTTProperties = .init()) {
        self.packetIdentifier = packetIdentifier
        self.reasonCodes = reasonCodes
        self.properties = properties
    }

    static func decode(from buffer: inout ByteBuffer, version: MQTTProtocolVersion) throws(MQTTError) -> UnsubAckPacket {
        let id = try readPacketIdentifier(&buffer, in: "UNSUBACK")
        guard version == .v5 else { return UnsubAckPacket(packetIdentifier: id) }
        let properties = try MQTTProperties.read(from: &buffer, allowed: .unsuback)
        var codes: [ReasonCode] = []
        while let byte = buffer.readInteger(as: UInt8.self) { codes.append(ReasonCode(rawValue: byte)) }
        return UnsubAckPacket(packetIdentifier: id, reasonCodes: codes, properties: properties)
    }

    func remainingLength(version: MQTTProtocolVersion) -> Int {
        version == .v5 ? 2 + properties.encodedSize + reasonCodes.count : 2
    }

    func write(to buffer: inout ByteBuffer, version: MQTTProtocolVersion) {
        buffer.writeMQTTFixedHeader(0xB0, remainingLength: remainingLength(version: version))
        buffer.writeInteger(packetIdentifier)
        if version == .v5 {
            properties.write(to: &buffer)
            for code in reasonCodes { buffer.writeInteger(code.rawValue) }
        }
    }
}

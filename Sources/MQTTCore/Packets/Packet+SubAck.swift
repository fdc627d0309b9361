import NIOCore

/// SUBACK: the server's answer to SUBSCRIBE, one reason code per filter (MQTT 5 §3.9).
public struct SubAckPacket: Sendable, Hashable {
    public var packetIdentifier: UInt16
    /// Granted QoS (0x00–0x02) or a failure code per subscription. MQTT 3.1.1 peers receive 0x80
    /// for every failure.
    public var reasonCodes: [ReasonCode]
    public var properties: MQTTProperties

    public init(packetIdentifier: UInt16, reasonCodes: [ReasonCode], properties: MQTTProperties = .init()) {
        self.packetIdentifier = packetIdentifier
        self.reasonCodes = reasonCodes
        self.properties = properties
    }

    static func decode(from buffer: inout ByteBuffer, version: MQTTProtocolVersion) throws(MQTTError) -> SubAckPacket {
        let id = try readPacketIdentifier(&buffer, in: "SUBACK")
        let properties = version == .v5 ? try MQTTProperties.read(from: &buffer, allowed: .suback) : MQTTProperties()
        var codes: [ReasonCode] = []
        codes.reserveCapacity(buffer.readableBytes)
        while let byte = buffer.readInteger(as: UInt8.self) {
            codes.append(ReasonCode(rawValue: byte))
        }
        return SubAckPacket(packetIdentifier: id, reasonCodes: codes, properties: properties)
    }

    func remainingLength(version: MQTTProtocolVersion) -> Int {
        2 + reasonCodes.count + (version == .v5 ? properties.encodedSize : 0)
    }

    func write(to buffer: inout ByteBuffer, version: MQTTProtocolVersion) {
        buffer.writeMQTTFixedHeader(0x90, remainingLength: remainingLength(version: version))
        buffer.writeInteger(packetIdentifier)
        if version == .v5 { properties.write(to: &buffer) }
        for code in reasonCodes {
            buffer.writeInteger(version == .v5 || !code.isFailure ? code.rawValue : 0x80)
        }
    }
}

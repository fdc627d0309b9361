import NIOCore

/// CONNACK: the server's answer to CONNECT (MQTT 5 §3.2).
public struct ConnAckPacket: Sendable, Hashable {
    public var sessionPresent: Bool
    /// The reason code; MQTT 3.1.1 peers receive the nearest return code.
    public var reasonCode: ReasonCode
    public var properties: MQTTProperties

    public init(sessionPresent: Bool = false, reasonCode: ReasonCode = .success, properties: MQTTProperties = .init()) {
        self.sessionPresent = sessionPresent
        self.reasonCode = reasonCode
        self.properties = properties
    }

    static func decode(from buffer: inout ByteBuffer, version: MQTTProtocolVersion) throws(MQTTError) -> ConnAckPacket {
        let flags: UInt8 = try buffer.readMQTTInteger("connack flags")
        guard flags & 0xFE == 0 else { throw MQTTError.malformed("reserved CONNACK flags must be 0") }
        let code: UInt8 = try buffer.readMQTTInteger("connack reason code")
        if version == .v5 {
            let properties = try MQTTProperties.read(from: &buffer, allowed: .connack)
            return ConnAckPacket(sessionPresent: flags & 1 != 0, reasonCode: ReasonCode(rawValue: code), properties: properties)
        }
        return ConnAckPacket(sessionPresent: flags & 1 != 0, reasonCode: ReasonCode(connectReturnCode: code))
    }

    func remainingLength(version: MQTTProtocolVersion) -> Int {
        version == .v5 ? 2 + properties.encodedSize : 2
    }

    func write(to buffer: inout ByteBuffer, version: MQTTProtocolVersion) {
        buffer.writeMQTTFixedHeader(0x20, remainingLength: remainingLength(version: version))
        buffer.writeInteger(UInt8(sessionPresent ? 1 : 0))
        if version == .v5 {
            buffer.writeInteger(reasonCode.rawValue)
            properties.write(to: &buffer)
        } else {
            buffer.writeInteger(reasonCode.connectReturnCode)
        }
    }
}

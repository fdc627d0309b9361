import NIOCore

/// AUTH: extended authentication exchange (MQTT 5 only, §3.15).
public struct AuthPacket: Sendable, Hashable {
    public var reasonCode: ReasonCode
    public var properties: MQTTProperties

    public init(reasonCode: ReasonCode = .success, properties: MQTTProperties = .init()) {
        self.reasonCode = reasonCode
        self.properties = properties
    }

    static func decode(from buffer: inout ByteBuffer) throws(MQTTError) -> AuthPacket {
        guard buffer.readableBytes > 0 else { return AuthPacket() }
        let code: UInt8 = try buffer.readMQTTInteger("reason code")
        let reason = ReasonCode(rawValue: code)
        guard reason == .success || reason == .continueAuthentication || reason == .reAuthenticate else {
            throw MQTTError.malformed("AUTH reason code \(reason) is invalid")
        }
        let properties = buffer.readableBytes > 0 ? try MQTTProperties.read(from: &buffer, allowed: .auth) : MQTTProperties()
        return AuthPacket(reasonCode: reason, properties: properties)
    }

    var remainingLength: Int {
        if properties.isEmpty && reasonCode == .success { return 0 }
        return 1 + properties.encodedSize
    }

    func write(to buffer: inout ByteBuffer) {
        let length = remainingLength
        buffer.writeMQTTFixedHeader(0xF0, remainingLength: length)
        if length > 0 {
            buffer.writeInteger(reasonCode.rawValue)
            properties.write(to: &buffer)
        }
    }
}

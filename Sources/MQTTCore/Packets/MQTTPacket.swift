import NIOCore

/// The MQTT control packet types (MQTT 5 §2.1.2).
public enum MQTTPacketType: UInt8, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case connect = 1
    case connack = 2
    case publish = 3
    case puback = 4
    case pubrec = 5
    case pubrel = 6
    case pubcomp = 7
    case subscribe = 8
    case suback = 9
    case unsubscribe = 10
    case unsuback = 11
    case pingreq = 12
    case pingresp = 13
    case disconnect = 14
    case auth = 15

    public var description: String {
        switch self {
        case .connect: return "CONNECT"
        case .connack: return "CONNACK"
        case .publish: return "PUBLISH"
        case .puback: return "PUBACK"
        case .pubrec: return "PUBREC"
        case .pubrel: return "PUBREL"
        case .pubcomp: return "PUBCOMP"
        case .subscribe: return "SUBSCRIBE"
        case .suback: return "SUBACK"
        case .unsubscribe: return "UNSUBSCRIBE"
        case .unsuback: return "UNSUBACK"
        case .pingreq: return "PINGREQ"
        case .pingresp: return "PINGRESP"
        case .disconnect: return "DISCONNECT"
        case .auth: return "AUTH"
        }
    }

    /// Lower-case name, for metric labels.
    public var metricName: String { description.lowercased() }

    /// The fixed-header flag bits every packet but PUBLISH must carry (MQTT 5 §2.1.3).
    var requiredFlags: UInt8 {
        switch self {
        case .pubrel, .subscribe, .unsubscribe: return 0b0010
        default: return 0
        }
    }
}

/// An MQTT control packet of either protocol version.
///
/// Each case wraps a payload struct that decodes itself from a `ByteBuffer` and encodes itself
/// for a given ``MQTTProtocolVersion``.
public enum MQTTPacket: Sendable, Hashable {
    case connect(ConnectPacket)
    case connack(ConnAckPacket)
    case publish(PublishPacket)
    case puback(PublishAckPacket)
    case pubrec(PublishAckPacket)
    case pubrel(PublishAckPacket)
    case pubcomp(PublishAckPacket)
    case subscribe(SubscribePacket)
    case suback(SubAckPacket)
    case unsubscribe(UnsubscribePacket)
    case unsuback(UnsubAckPacket)
    case pingreq
    case pingresp
    case disconnect(DisconnectPacket)
    case auth(AuthPacket)

    /// The packet's type.
    public var type: MQTTPacketType {
        switch self {
        case .connect: return .connect
        case .connack: return .connack
        case .publish: return .publish
        case .puback: return .puback
        case .pubrec: return .pubrec
        case .pubrel: return .pubrel
        case .pubcomp: return .pubcomp
        case .subscribe: return .subscribe
        case .suback: return .suback
        case .unsubscribe: return .unsubscribe
        case .unsuback: return .unsuback
        case .pingreq: return .pingreq
        case .pingresp: return .pingresp
        case .disconnect: return .disconnect
        case .auth: return .auth
        }
    }

    /// Decodes one packet from its fixed-header byte and its body (exactly the remaining length).
    ///
    /// - Throws: ``MQTTError`` describing the first rule the bytes break.
    public static func decode(
        firstByte: UInt8,
        body: inout ByteBuffer,
        version: MQTTProtocolVersion
    ) throws(MQTTError) -> MQTTPacket {
        let flags = firstByte & 0x0F
        guard let type = MQTTPacketType(rawValue: firstByte >> 4) else {
            throw MQTTError.malformed("reserved packet type 0")
        }
        if type != .publish && flags != type.requiredFlags {
            throw MQTTError.malformed("reserved flag bits of \(type) must be \(type.requiredFlags), got \(flags)")
        }
        let packet: MQTTPacket
        switch type {
        case .connect: packet = .connect(try ConnectPacket.decode(from: &body))
        case .connack: packet = .connack(try ConnAckPacket.decode(from: &body, version: version))
        case .publish: packet = .publish(try PublishPacket.decode(from: &body, flags: flags, version: version))
        case .puback: packet = .puback(try PublishAckPacket.decode(from: &body, version: version))
        case .pubrec: packet = .pubrec(try PublishAckPacket.decode(from: &body, version: version))
        case .pubrel: packet = .pubrel(try PublishAckPacket.decode(from: &body, version: version))
        case .pubcomp: packet = .pubcomp(try PublishAckPacket.decode(from: &body, version: version))
        case .subscribe: packet = .subscribe(try SubscribePacket.decode(from: &body, version: version))
        case .suback: packet = .suback(try SubAckPacket.decode(from: &body, version: version))
        case .unsubscribe: packet = .unsubscribe(try UnsubscribePacket.decode(from: &body, version: version))
        case .unsuback: packet = .unsuback(try UnsubAckPacket.decode(from: &body, version: version))
        case .pingreq: packet = .pingreq
        case .pingresp: packet = .pingresp
        case .disconnect: packet = .disconnect(try DisconnectPacket.decode(from: &body, version: version))
        case .auth:
            guard version == .v5 else { throw MQTTError.malformed("AUTH exists only in MQTT 5") }
            packet = .auth(try AuthPacket.decode(from: &body))
        }
        if body.readableBytes != 0 {
            throw MQTTError.malformed("\(body.readableBytes) unexpected bytes at the end of \(type)")
        }
        return packet
    }

    /// Writes the whole packet (fixed header included) for `version`.
    public func write(to buffer: inout ByteBuffer, version: MQTTProtocolVersion) {
        switch self {
        case .connect(let p): p.write(to: &buffer)
        case .connack(let p): p.write(to: &buffer, version: version)
        case .publish(let p): p.write(to: &buffer, version: version)
        case .puback(let p): p.write(to: &buffer, type: .puback, version: version)
        case .pubrec(let p): p.write(to: &buffer, type: .pubrec, version: version)
        case .pubrel(let p): p.write(to: &buffer, type: .pubrel, version: version)
        case .pubcomp(let p): p.write(to: &buffer, type: .pubcomp, version: version)
        case .subscribe(let p): p.write(to: &buffer, version: version)
        case .suback(let p): p.write(to: &buffer, version: version)
        case .unsubscribe(let p): p.write(to: &buffer, version: version)
        case .unsuback(let p): p.write(to: &buffer, version: version)
        case .pingreq: buffer.writeInteger(UInt16(0xC000))
        case .pingresp: buffer.writeInteger(UInt16(0xD000))
        case .disconnect(let p): p.write(to: &buffer, version: version)
        case .auth(let p): p.write(to: &buffer)
        }
    }

    /// The packet's full encoded size for `version`.
    public func encodedSize(version: MQTTProtocolVersion) -> Int {
        let remaining: Int
        switch self {
        case .connect(let p): remaining = p.remainingLength
        case .connack(let p): remaining = p.remainingLength(version: version)
        case .publish(let p): remaining = p.remainingLength(version: version)
        case .puback(let p), .pubrec(let p), .pubrel(let p), .pubcomp(let p): remaining = p.remainingLength(version: version)
        case .subscribe(let p): remaining = p.remainingLength(version: version)
        case .suback(let p): remaining = p.remainingLength(version: version)
        case .unsubscribe(let p): remaining = p.remainingLength(version: version)
        case .unsuback(let p): remaining = p.remainingLength(version: version)
        case .pingreq, .pingresp: remaining = 0
        case .disconnect(let p): remaining = p.remainingLength(version: version)
        case .auth(let p): remaining = p.remainingLength
        }
        return 1 + ByteBuffer.mqttVariableByteIntegerSize(remaining) + remaining
    }
}

extension ByteBuffer {
    /// Writes a fixed header: the type/flags byte and the remaining length.
    @inlinable
    mutating func writeMQTTFixedHeader(_ firstByte: UInt8, remainingLength: Int) {
        self.writeInteger(firstByte)
        self.writeMQTTVariableByteInteger(remainingLength)
    }
}

/// Reads a two-byte packet identifier that must not be zero.
@inlinable
func readPacketIdentifier(_ buffer: inout ByteBuffer, in type: StaticString) throws(MQTTError) -> UInt16 {
    guard let id = buffer.readInteger(as: UInt16.self) else {
        throw MQTTError.malformed("packet identifier of \(type) missing")
    }
    guard id != 0 else { throw MQTTError.malformed("packet identifier of \(type) must not be 0") }
    return id
}

import MQTTCore
import NIOCore

/// Frames and decodes packets from the server for a client of one protocol version.
///
/// Wraps ``MQTTPacketDecoder``'s framing and adds one client-side tolerance: a server that does
/// not speak MQTT 5 answers an MQTT 5 CONNECT with a 3.1.1-style two-byte CONNACK (return code
/// 1, "unacceptable protocol version"); it decodes as a CONNACK with the matching reason code
/// instead of a malformed packet.
struct ClientPacketDecoder: NIOSingleStepByteToMessageDecoder {
    typealias InboundOut = MQTTPacket

    private var framer: MQTTPacketDecoder
    private let version: MQTTProtocolVersion

    init(version: MQTTProtocolVersion, maximumPacketSize: Int) {
        self.framer = MQTTPacketDecoder(maximumPacketSize: maximumPacketSize, protocolVersion: version)
        self.version = version
    }

    mutating func decode(buffer: inout ByteBuffer) throws -> MQTTPacket? {
        guard let frame = try framer.nextFrame(buffer: &buffer) else { return nil }
        var body = frame.body
        if version == .v5, frame.firstByte == 0x20, body.readableBytes == 2,
            let flags = body.getInteger(at: body.readerIndex, as: UInt8.self),
            let code = body.getInteger(at: body.readerIndex + 1, as: UInt8.self)
        {
            let reason = code <= 5 ? ReasonCode(connectReturnCode: code) : ReasonCode(rawValue: code)
            return .connack(ConnAckPacket(sessionPresent: flags & 1 != 0, reasonCode: reason))
        }
        return try MQTTPacket.decode(firstByte: frame.firstByte, body: &body, version: version)
    }

    mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> MQTTPacket? {
        try decode(buffer: &buffer)
    }
}

import NIOCore

/// Frames and decodes MQTT packets from a byte stream.
///
/// Works incrementally: a packet split across reads is decoded once all its bytes are there,
/// and many packets in one read come out one by one. A packet larger than
/// `maximumPacketSize` is refused from its fixed header, before its body is buffered, so
/// hostile input cannot make the decoder hold more than that.
public struct MQTTPacketDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = MQTTPacket

    /// The largest packet accepted, fixed header included.
    public var maximumPacketSize: Int
    /// The protocol version of the connection. A server starts with `nil` and learns it from
    /// CONNECT; until then packets decode as MQTT 3.1.1.
    public var protocolVersion: MQTTProtocolVersion?

    public init(maximumPacketSize: Int = 268_435_460, protocolVersion: MQTTProtocolVersion? = nil) {
        self.maximumPacketSize = maximumPacketSize
        self.protocolVersion = protocolVersion
    }

    /// Reads the next frame's first byte and body without decoding it; `nil` until complete.
    public mutating func nextFrame(buffer: inout ByteBuffer) throws(MQTTError) -> (firstByte: UInt8, body: ByteBuffer)? {
        let start = buffer.readerIndex
        guard let firstByte = buffer.getInteger(at: start, as: UInt8.self) else { return nil }
        var remaining = 0
        var multiplier = 1
        var index = start + 1
        var complete = false
        for _ in 0..<4 {
            guard let byte = buffer.getInteger(at: index, as: UInt8.self) else { return nil }
            index += 1
            remaining += Int(byte & 0x7F) * multiplier
            if byte & 0x80 == 0 {
                complete = true
                break
            }
            multiplier *= 128
        }
        guard complete else { throw MQTTError.malformed("remaining length longer than 4 bytes") }
        let headerSize = index - start
        let total = headerSize + remaining
        if total > maximumPacketSize {
            throw MQTTError.packetTooLarge(total, maximum: maximumPacketSize)
        }
        guard buffer.readableBytes >= total else { return nil }
        let body = buffer.getSlice(at: index, length: remaining)!
        buffer.moveReaderIndex(to: start + total)
        return (firstByte, body)
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> MQTTPacket? {
        try decodePacket(buffer: &buffer)
    }

    /// Decodes the next packet; `nil` when more bytes are needed.
    public mutating func decodePacket(buffer: inout ByteBuffer) throws(MQTTError) -> MQTTPacket? {
        guard let frame = try nextFrame(buffer: &buffer) else { return nil }
        var body = frame.body
        let packet = try MQTTPacket.decode(firstByte: frame.firstByte, body: &body, version: protocolVersion ?? .v3_1_1)
        if case .connect(let connect) = packet, protocolVersion == nil {
            protocolVersion = connect.protocolVersion
        }
        return packet
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> MQTTPacket? {
        try decode(buffer: &buffer)
    }
}

/// Encodes packets for a channel pipeline (used by the client; the broker writes packets
/// straight into its outbound buffers).
public struct MQTTPacketEncoder: MessageToByteEncoder {
    public typealias OutboundIn = MQTTPacket

    /// The protocol version of the connection.
    public var protocolVersion: MQTTProtocolVersion

    public init(protocolVersion: MQTTProtocolVersion) {
        self.protocolVersion = protocolVersion
    }

    public func encode(data: MQTTPacket, out: inout ByteBuffer) throws {
        data.write(to: &out, version: protocolVersion)
    }
}

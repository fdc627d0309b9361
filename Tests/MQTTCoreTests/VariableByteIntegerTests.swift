import MQTTCore
import NIOCore
import Testing

/// Variable byte integers (MQTT 5 §1.5.5, MQTT 3.1.1 §2.2.3) and the remaining-length field.
@Suite("Variable byte integers")
struct VariableByteIntegerTests {
    struct Vector: Sendable, CustomTestStringConvertible {
        var value: Int
        var bytes: [UInt8]
        var testDescription: String { "\(value)" }
    }

    /// The boundary values of MQTT 5 §1.5.5's table, encoded by hand.
    static let vectors: [Vector] = [
        Vector(value: 0, bytes: [0x00]),
        Vector(value: 1, bytes: [0x01]),
        Vector(value: 127, bytes: [0x7F]),
        Vector(value: 128, bytes: [0x80, 0x01]),
        Vector(value: 321, bytes: [0xC1, 0x02]),
        Vector(value: 16_383, bytes: [0xFF, 0x7F]),
        Vector(value: 16_384, bytes: [0x80, 0x80, 0x01]),
        Vector(value: 2_097_151, bytes: [0xFF, 0xFF, 0x7F]),
        Vector(value: 2_097_152, bytes: [0x80, 0x80, 0x80, 0x01]),
        Vector(value: 268_435_455, bytes: [0xFF, 0xFF, 0xFF, 0x7F]),
    ]

    @Test("encodes to the specification's bytes", arguments: vectors)
    func encode(_ vector: Vector) {
        var buffer = ByteBuffer()
        let written = buffer.writeMQTTVariableByteInteger(vector.value)
        #expect(Array(buffer.readableBytesView) == vector.bytes)
        #expect(written == vector.bytes.count)
        #expect(ByteBuffer.mqttVariableByteIntegerSize(vector.value) == vector.bytes.count)
    }

    @Test("decodes from the specification's bytes", arguments: vectors)
    func decode(_ vector: Vector) throws {
        var buffer = ByteBuffer(bytes: vector.bytes + [0xAB])
        #expect(try buffer.readMQTTVariableByteInteger() == vector.value)
        #expect(buffer.readableBytes == 1, "reads exactly the integer's bytes")
    }

    @Test("needs more bytes while the continuation bit is set", arguments: vectors.filter { $0.bytes.count > 1 })
    func incomplete(_ vector: Vector) throws {
        for length in 0..<vector.bytes.count {
            var buffer = ByteBuffer(bytes: vector.bytes.prefix(length))
            #expect(try buffer.readMQTTVariableByteInteger() == nil)
            #expect(buffer.readableBytes == length, "nothing is consumed while incomplete")
        }
    }

    @Test("a fifth byte is malformed")
    func fiveBytes() {
        for bytes: [UInt8] in [
            [0xFF, 0xFF, 0xFF, 0xFF, 0x7F], [0x80, 0x80, 0x80, 0x80, 0x01], [0x80, 0x80, 0x80, 0x80],
        ] {
            var buffer = ByteBuffer(bytes: bytes)
            let error = #expect(throws: MQTTError.self) { _ = try buffer.readMQTTVariableByteInteger() }
            #expect(error?.code == .malformedPacket)
            #expect(error?.reasonCode == .malformedPacket)
        }
    }

    @Test("remaining length boundaries in a fixed header", arguments: vectors)
    func remainingLength(_ vector: Vector) throws {
        // The fixed header alone: a decoder with a small maximum refuses large packets from it, and
        // a decoder without a maximum waits for the body.
        let header: [UInt8] = [0x30] + vector.bytes
        let total = header.count + vector.value
        if vector.value > 0 {
            let waiting = try Wire.decode(header, version: .v3_1_1)
            #expect(waiting.packet == nil)
            #expect(waiting.leftover == header.count)
        }
        if total > 64 {
            let error = Wire.decodeError(header, version: .v3_1_1, maximumPacketSize: 64)
            #expect(error?.code == .packetTooLarge)
        }
    }

    @Test("a remaining length of five bytes is malformed in the fixed header")
    func fiveByteRemainingLength() {
        let error = Wire.decodeError([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F], version: .v3_1_1)
        #expect(error?.code == .malformedPacket)
        // Known to be malformed as soon as the fourth length byte has its continuation bit set.
        let early = Wire.decodeError([0xC0, 0x80, 0x80, 0x80, 0x80], version: .v3_1_1)
        #expect(early?.code == .malformedPacket)
    }

    @Test("random values round trip")
    func randomRoundTrip() throws {
        var rng = SeededGenerator(seed: 0x5EED)
        for _ in 0..<2_000 {
            let value = Int.random(in: 0...268_435_455, using: &rng)
            var buffer = ByteBuffer()
            buffer.writeMQTTVariableByteInteger(value)
            #expect(buffer.readableBytes == ByteBuffer.mqttVariableByteIntegerSize(value))
            #expect(Array(buffer.readableBytesView) == Wire.vbi(value))
            #expect(try buffer.readMQTTVariableByteInteger() == value)
        }
    }
}

import MQTTCore
import NIOCore
import Testing

/// UTF-8 encoded strings and binary data (MQTT 5 §1.5.4, §1.5.6; MQTT 3.1.1 §1.5.3).
@Suite("Strings and binary data")
struct StringAndBinaryTests {
    @Test(
        "valid strings round trip",
        arguments: ["", "a", "devices/d1/telemetry", "ü€𝄞", "東京/大阪", "\u{FEFF}bom", "\u{1}\u{1F}"]
    )
    func validString(_ text: String) throws {
        var buffer = ByteBuffer()
        buffer.writeMQTTString(text)
        #expect(Array(buffer.readableBytesView) == Wire.str(text))
        #expect(try buffer.readMQTTString() == text)
        #expect(buffer.readableBytes == 0)
    }

    @Test("a string of 65535 bytes round trips")
    func longestString() throws {
        let text = String(repeating: "x", count: 65_535)
        var buffer = ByteBuffer()
        buffer.writeMQTTString(text)
        #expect(buffer.readableBytes == 65_537)
        #expect(try buffer.readMQTTString() == text)
    }

    struct Invalid: Sendable, CustomTestStringConvertible {
        var name: String
        var bytes: [UInt8]
        var testDescription: String { name }
    }

    static let invalid: [Invalid] = [
        Invalid(name: "U+0000", bytes: [0x00]),
        Invalid(name: "U+0000 inside", bytes: [0x61, 0x00, 0x62]),
        Invalid(name: "high surrogate U+D800 (ED A0 80)", bytes: [0xED, 0xA0, 0x80]),
        Invalid(name: "low surrogate U+DFFF (ED BF BF)", bytes: [0xED, 0xBF, 0xBF]),
        Invalid(name: "surrogate pair as CESU-8", bytes: [0xED, 0xA0, 0xBD, 0xED, 0xB2, 0xA9]),
        Invalid(name: "overlong U+0000 (C0 80)", bytes: [0xC0, 0x80]),
        Invalid(name: "overlong 'A' (C1 81)", bytes: [0xC1, 0x81]),
        Invalid(name: "overlong '/' (E0 80 AF)", bytes: [0xE0, 0x80, 0xAF]),
        Invalid(name: "overlong U+07FF (E0 9F BF)", bytes: [0xE0, 0x9F, 0xBF]),
        Invalid(name: "overlong U+FFFF (F0 8F BF BF)", bytes: [0xF0, 0x8F, 0xBF, 0xBF]),
        Invalid(name: "truncated 2-byte sequence", bytes: [0xC3]),
        Invalid(name: "truncated 3-byte sequence", bytes: [0xE2, 0x82]),
        Invalid(name: "truncated 4-byte sequence", bytes: [0xF0, 0x9D, 0x84]),
        Invalid(name: "truncated sequence followed by ASCII", bytes: [0xE2, 0x82, 0x61]),
        Invalid(name: "lone continuation byte", bytes: [0x80]),
        Invalid(name: "above U+10FFFF (F4 90 80 80)", bytes: [0xF4, 0x90, 0x80, 0x80]),
        Invalid(name: "5-byte form (F8 88 80 80 80)", bytes: [0xF8, 0x88, 0x80, 0x80, 0x80]),
        Invalid(name: "byte FE", bytes: [0xFE]),
        Invalid(name: "byte FF", bytes: [0x61, 0xFF]),
    ]

    @Test("invalid UTF-8 and U+0000 are malformed", arguments: invalid)
    func invalidString(_ invalid: Invalid) {
        var buffer = ByteBuffer(bytes: Wire.raw(invalid.bytes))
        let error = #expect(throws: MQTTError.self) { _ = try buffer.readMQTTString() }
        #expect(error?.code == .malformedPacket)
        var body = ByteBuffer(bytes: invalid.bytes)
        #expect(body.readMQTTStringBody(length: invalid.bytes.count) == nil)
        #expect(body.readableBytes == invalid.bytes.count, "nothing consumed on failure")
    }

    @Test("a string longer than the buffer is malformed, a missing length too")
    func shortString() {
        for bytes: [UInt8] in [[0x00, 0x03, 0x61, 0x62], [0xFF, 0xFF], [0x00], []] {
            var buffer = ByteBuffer(bytes: bytes)
            let error = #expect(throws: MQTTError.self) { _ = try buffer.readMQTTString() }
            #expect(error?.code == .malformedPacket)
        }
    }

    @Test("binary data round trips and may hold any byte")
    func binary() throws {
        let data = ByteBuffer(bytes: [0x00, 0xFF, 0xED, 0xA0, 0x80, 0xC0, 0x80])
        var buffer = ByteBuffer()
        buffer.writeMQTTBinary(data)
        #expect(Array(buffer.readableBytesView) == [0x00, 0x07] + Array(data.readableBytesView))
        #expect(try buffer.readMQTTBinary() == data)

        var empty = ByteBuffer(bytes: [0x00, 0x00])
        #expect(try empty.readMQTTBinary().readableBytes == 0)

        var short = ByteBuffer(bytes: [0x00, 0x05, 0x01])
        let error = #expect(throws: MQTTError.self) { _ = try short.readMQTTBinary() }
        #expect(error?.code == .malformedPacket)
    }
}

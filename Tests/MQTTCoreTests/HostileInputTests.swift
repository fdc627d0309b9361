import MQTTCore
import NIOCore
import Testing

/// Seeded random and mutated input against a decoder limited to 64 KiB: it must return a packet,
/// ask for more bytes, or throw an `MQTTError` — never crash, and never buffer a packet's worth
/// of bytes beyond the maximum.
@Suite("Hostile input")
struct HostileInputTests {
    static let maximum = 64 * 1024

    struct Outcome {
        var packets = 0
        var needMore = 0
        var errors: [MQTTError.Code: Int] = [:]
    }

    /// Feeds `input` in random chunks to a fresh decoder and checks the invariants after each step.
    /// Stops at the first error, as a connection would.
    static func feed(
        _ input: [UInt8],
        version: MQTTProtocolVersion?,
        rng: inout SeededGenerator,
        outcome: inout Outcome,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        var decoder = MQTTPacketDecoder(maximumPacketSize: maximum, protocolVersion: version)
        var buffer = ByteBuffer()
        var offset = 0
        while offset < input.count {
            let chunk = Int.random(in: 1...max(1, input.count / 2 + 1), using: &rng)
            buffer.writeBytes(input[offset..<min(offset + chunk, input.count)])
            offset += chunk
            do throws(MQTTError) {
                while true {
                    let before = buffer.readableBytes
                    guard let packet = try decoder.decodePacket(buffer: &buffer) else {
                        outcome.needMore += 1
                        #expect(
                            buffer.readableBytes == before,
                            "nothing consumed without a packet",
                            sourceLocation: sourceLocation
                        )
                        #expect(buffer.readableBytes < maximum, "holding too much", sourceLocation: sourceLocation)
                        break
                    }
                    outcome.packets += 1
                    let consumed = before - buffer.readableBytes
                    #expect(consumed > 0 && consumed <= maximum, sourceLocation: sourceLocation)
                    checkReencoding(packet, version: decoder.protocolVersion ?? .v3_1_1, sourceLocation: sourceLocation)
                }
            } catch {
                outcome.errors[error.code, default: 0] += 1
                #expect(error.reasonCode.isFailure, sourceLocation: sourceLocation)
                return
            }
            buffer.discardReadBytes()
        }
    }

    /// Whatever decodes must encode again, to the size it claims, and decode to a packet that
    /// encodes to the same bytes (the first decode may normalise, e.g. 3.1.1 return codes).
    static func checkReencoding(_ packet: MQTTPacket, version: MQTTProtocolVersion, sourceLocation: SourceLocation) {
        let bytes = Wire.encode(packet, version: version)
        #expect(bytes.count == packet.encodedSize(version: version), sourceLocation: sourceLocation)
        do throws(MQTTError) {
            let again = try Wire.decode(bytes, version: version)
            #expect(again.leftover == 0, sourceLocation: sourceLocation)
            let packetAgain = again.packet
            #expect(packetAgain.map { Wire.encode($0, version: version) } == bytes, sourceLocation: sourceLocation)
        } catch {
            Issue.record("re-encoded \(packet.type) does not decode: \(error)", sourceLocation: sourceLocation)
        }
    }

    static func randomVersion(_ rng: inout SeededGenerator) -> MQTTProtocolVersion? {
        [nil, .v3_1_1, .v5].randomElement(using: &rng)!
    }

    /// A first byte with a known packet type and, except for PUBLISH, the required flags.
    static func plausibleFirstByte(_ rng: inout SeededGenerator) -> UInt8 {
        let type = UInt8.random(in: 1...15, using: &rng)
        switch type {
        case 3: return 0x30 | UInt8.random(in: 0...15, using: &rng)
        case 6, 8, 10: return (type << 4) | 0x02
        default: return type << 4
        }
    }

    @Test("10,000 random byte strings")
    func randomBytes() {
        var rng = SeededGenerator(seed: 0x4D51_5454)
        var outcome = Outcome()
        for round in 0..<10_000 {
            let length: Int
            switch Int.random(in: 0..<10, using: &rng) {
            case 0..<6: length = Int.random(in: 1...16, using: &rng)
            case 6..<9: length = Int.random(in: 17...512, using: &rng)
            default: length = Int.random(in: 513...(80 * 1024), using: &rng)
            }
            var input = rng.bytes(length)
            switch round % 3 {
            case 0:
                // Entirely random.
                break
            case 1:
                // A plausible first byte, then random bytes (usually a huge or unfinished length).
                input[0] = Self.plausibleFirstByte(&rng)
            default:
                // A plausible fixed header with the right remaining length and a random body, so
                // the body's parsing is what gets exercised.
                input = [Self.plausibleFirstByte(&rng)] + Wire.vbi(length) + input
            }
            Self.feed(input, version: Self.randomVersion(&rng), rng: &rng, outcome: &outcome)
        }
        #expect(outcome.errors[.malformedPacket, default: 0] > 1_000)
        #expect(outcome.errors[.packetTooLarge, default: 0] > 100)
        #expect(outcome.errors[.protocolError, default: 0] > 0)
        #expect(outcome.needMore > 1_000)
        #expect(outcome.packets > 0)
    }

    @Test("10,000 mutations of valid packets")
    func mutations() {
        var rng = SeededGenerator(seed: 0xBADC_0DE)
        let corpus =
            SamplePackets.small.map { ($0.version, Wire.encode($0.packet, version: $0.version)) }
            + [
                (
                    MQTTProtocolVersion.v5,
                    Wire.encode(.publish(PublishPacket(topic: "big", payload: .pattern(count: 60_000))), version: .v5)
                )
            ]
        var outcome = Outcome()
        var kinds: [String: Int] = [:]
        for _ in 0..<10_000 {
            let (version, original) = corpus.randomElement(using: &rng)!
            var bytes = original
            let kind: String
            switch Int.random(in: 0..<7, using: &rng) {
            case 0:
                kind = "bit flips"
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    let index = Int.random(in: 0..<bytes.count, using: &rng)
                    bytes[index] ^= 1 << UInt8.random(in: 0...7, using: &rng)
                }
            case 1:
                kind = "truncation"
                bytes = Array(bytes.prefix(Int.random(in: 0..<bytes.count, using: &rng)))
            case 2:
                kind = "remaining length replaced"
                let headerLength = Self.fixedHeaderLength(bytes)
                let newLength = [
                    0, 1, 2, 127, 128, 16_383, 16_384, 65_535, 65_536, 268_435_455,
                    Int.random(in: 0...300, using: &rng),
                ]
                .randomElement(using: &rng)!
                bytes = [bytes[0]] + Wire.vbi(newLength) + bytes[headerLength...]
            case 3:
                kind = "remaining length bytes randomised"
                let headerLength = Self.fixedHeaderLength(bytes)
                for index in 1..<headerLength { bytes[index] = UInt8.random(in: 0...255, using: &rng) }
                if Bool.random(using: &rng) { bytes.insert(0xFF, at: 1) }
            case 4:
                kind = "inner length corrupted"
                // Overwrite a random 16-bit field (string, binary or property lengths) with an extreme value.
                if bytes.count > 3 {
                    let index = Int.random(in: 2..<(bytes.count - 1), using: &rng)
                    let value = [0x0000, 0x0001, 0x7FFF, 0xFFFF, Int.random(in: 0...0xFFFF, using: &rng)].randomElement(
                        using: &rng
                    )!
                    bytes[index] = UInt8(value >> 8)
                    bytes[index + 1] = UInt8(value & 0xFF)
                }
            case 5:
                kind = "bytes inserted or removed"
                let index = Int.random(in: 0...bytes.count, using: &rng)
                if Bool.random(using: &rng) || bytes.isEmpty || index == bytes.count {
                    bytes.insert(contentsOf: rng.bytes(Int.random(in: 1...8, using: &rng)), at: index)
                } else {
                    bytes.removeSubrange(index..<min(bytes.count, index + Int.random(in: 1...8, using: &rng)))
                }
            default:
                kind = "packets concatenated with garbage"
                let (_, other) = corpus.randomElement(using: &rng)!
                bytes += other + rng.bytes(Int.random(in: 0...8, using: &rng))
            }
            kinds[kind, default: 0] += 1
            Self.feed(bytes, version: version == .v3_1 ? nil : version, rng: &rng, outcome: &outcome)
        }
        #expect(kinds.count == 7)
        #expect(outcome.packets > 1_000, "many mutations are still valid packets")
        #expect(outcome.errors.values.reduce(0, +) > 1_000, "many mutations are refused")
    }

    @Test("valid packets fed in random chunks all decode")
    func validPacketsInChunks() {
        var rng = SeededGenerator(seed: 42)
        var outcome = Outcome()
        for sample in SamplePackets.small {
            let bytes = Wire.encode(sample.packet, version: sample.version)
            Self.feed(bytes, version: sample.version, rng: &rng, outcome: &outcome)
        }
        #expect(outcome.errors.isEmpty)
        #expect(outcome.packets == SamplePackets.small.count)
    }

    @Test("a stream of maximum-size headers never makes the decoder buffer more than the maximum")
    func headerFlood() {
        // A 64 KiB - 1 packet whose body trickles in: the decoder waits, holding less than the maximum.
        var decoder = MQTTPacketDecoder(maximumPacketSize: Self.maximum, protocolVersion: .v5)
        let remaining = Self.maximum - 4
        var buffer = ByteBuffer(bytes: [0x30] + Wire.vbi(remaining))
        buffer.writeBytes(Wire.str("t") + [0])
        var fed = buffer.readableBytes
        var rng = SeededGenerator(seed: 7)
        do throws(MQTTError) {
            while fed < Self.maximum - 1 {
                let chunk = min(Int.random(in: 1...4096, using: &rng), Self.maximum - 1 - fed)
                buffer.writeBytes(rng.bytes(chunk))
                fed += chunk
                #expect(try decoder.decodePacket(buffer: &buffer) == nil)
                #expect(buffer.readableBytes < Self.maximum)
            }
            buffer.writeInteger(UInt8(0))
            let packet = try decoder.decodePacket(buffer: &buffer)
            #expect(packet?.type == .publish)
            #expect(buffer.readableBytes == 0)
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    static func fixedHeaderLength(_ bytes: [UInt8]) -> Int {
        var index = 1
        while index < bytes.count && index < 5 && bytes[index] & 0x80 != 0 { index += 1 }
        return min(index + 1, bytes.count)
    }
}

import MeridianCore
import Testing

@testable import MeridianStorage

/// A damaged chunk is refused with an error, never decoded into different samples and never a crash.
struct TimeSeriesCodecCorruptionTests {
    typealias Fixture = TimeSeriesCodecFixture

    /// Small chunks covering every timestamp and value encoding.
    static let chunks: [(String, [UInt8])] = {
        let signal = SensorSignal().samples(count: 300)
        let jittered = SensorSignal(jitterMilliseconds: 20).samples(count: 300)
        let withExceptions = jittered.values.enumerated().map { $0.offset % 37 == 0 ? .nan : $0.element }
        var random = SplitMix64(seed: 21)
        let irregular = TimeSeriesCodecFixture.irregularTimestamps(40, maximumGap: 1 << 40, seed: 22)
        let noise = irregular.map { _ in Double(bitPattern: random.next()) }
        let indexes = signal.timestamps.indices
        let cases: [(String, [Int64], TimeSeriesColumn)] = [
            ("decimal numbers, grid timestamps", signal.timestamps, .numbers(signal.values)),
            ("decimal numbers with exceptions", jittered.timestamps, .numbers(withExceptions)),
            ("XOR numbers, delta-of-delta timestamps", irregular, .numbers(noise)),
            ("bool runs", signal.timestamps, .bools(indexes.map { $0 / 50 % 2 == 0 })),
            ("bool bitmap", signal.timestamps, .bools(indexes.map { $0 % 2 == 0 })),
            ("string runs", signal.timestamps, .strings(indexes.map { $0 < 200 ? "eco" : "ünï" })),
            ("string bit-packed", irregular, .strings(irregular.indices.map { ["a", "", "🌡️"][$0 % 3] })),
            ("one sample", [42], .numbers([21.5])),
        ]
        return cases.map { ($0.0, TimeSeriesChunkCodec.encode(timestamps: $0.1, values: $0.2)) }
    }()

    @Test("The damaged-chunk tests cover every timestamp and value encoding")
    func coverage() throws {
        let timestampEncodings = Set(Self.chunks.map { $0.1[2] })
        let valueEncodings = Set(try Self.chunks.map { try TimeSeriesChunkCodec.header($0.1).valueEncoding })
        #expect(timestampEncodings == [TimestampDeltaOfDeltaCodec.id, TimestampGridCodec.id])
        #expect(valueEncodings == Set(TimeSeriesValueEncoding.allCases))
    }

    @Test("Every truncation of a chunk throws, from decode and from header", arguments: chunks)
    func truncation(name: String, chunk: [UInt8]) {
        for length in 0..<chunk.count {
            let truncated = Array(chunk[0..<length])
            #expect(throws: TimeSeriesCodecError.self, "length \(length)") {
                try TimeSeriesChunkCodec.decode(truncated)
            }
            #expect(throws: TimeSeriesCodecError.self, "length \(length)") {
                try TimeSeriesChunkCodec.header(truncated)
            }
        }
        let decoded = try? TimeSeriesChunkCodec.decode(chunk)
        #expect(decoded != nil, "the untruncated chunk decodes")
    }

    @Test("Every changed byte of a chunk is detected", arguments: chunks)
    func flippedBytes(name: String, chunk: [UInt8]) {
        for index in chunk.indices {
            for mask: UInt8 in [0x01, 0x10, 0x80, 0xFF] {
                var damaged = chunk
                damaged[index] ^= mask
                #expect(throws: TimeSeriesCodecError.self, "byte \(index) ^ \(mask)") {
                    try TimeSeriesChunkCodec.decode(damaged)
                }
            }
        }
    }

    @Test("An unknown format version, an empty chunk and trailing bytes throw their errors")
    func framing() {
        let chunk = Self.chunks[0].1
        var newer = chunk
        newer[0] = 2
        #expect(throws: TimeSeriesCodecError.unsupportedVersion) { try TimeSeriesChunkCodec.decode(newer) }
        #expect(throws: TimeSeriesCodecError.unsupportedVersion) { try TimeSeriesChunkCodec.header(newer) }
        #expect(throws: TimeSeriesCodecError.truncated) { try TimeSeriesChunkCodec.decode([]) }
        #expect(throws: TimeSeriesCodecError.truncated) { try TimeSeriesChunkCodec.decode(Array(chunk.dropLast())) }
        #expect(throws: TimeSeriesCodecError.malformed) { try TimeSeriesChunkCodec.decode(chunk + [0]) }
        var body = chunk
        body[40] ^= 1
        #expect(throws: TimeSeriesCodecError.checksumMismatch) { try TimeSeriesChunkCodec.decode(body) }
        var header = chunk
        header[5] ^= 1
        #expect(throws: TimeSeriesCodecError.checksumMismatch) { try TimeSeriesChunkCodec.header(header) }
    }

    @Test("A header with valid checksums but impossible fields throws")
    func impossibleHeaders() {
        let chunk = Self.chunks[0].1
        let edits: [(String, (inout [UInt8]) -> Void)] = [
            ("value type 9", { $0[1] = 9 }),
            ("timestamp encoding 7", { $0[2] = 7 }),
            ("value encoding for another type", { $0[3] = TimeSeriesValueEncoding.boolRuns.rawValue }),
            ("value encoding 0", { $0[3] = 0 }),
            ("count 0", { $0.replaceSubrange(4..<8, with: [0, 0, 0, 0]) }),
            ("count 65,537", { $0.replaceSubrange(4..<8, with: [1, 0, 1, 0]) }),
            ("count 1 with first != last", { $0.replaceSubrange(4..<8, with: [1, 0, 0, 0]) }),
            ("count one less", { $0[4] &-= 1 }),
            ("count one more", { $0[4] &+= 1 }),
            ("last timestamp off by one", { $0[16] ^= 1 }),
            ("first timestamp off by one", { $0[8] ^= 1 }),
            (
                "timestamp section one byte longer",
                {
                    $0[24] &+= 1; $0[28] &-= 1
                }
            ),
            (
                "timestamp section one byte shorter",
                {
                    $0[24] &-= 1; $0[28] &+= 1
                }
            ),
        ]
        for (name, edit) in edits {
            var damaged = chunk
            edit(&damaged)
            damaged = Fixture.resealed(damaged)
            #expect(throws: TimeSeriesCodecError.self, "\(name)") { try TimeSeriesChunkCodec.decode(damaged) }
        }
    }

    @Test(
        "Scrambled sections behind valid checksums throw or decode to the header's count, never crash",
        arguments: chunks
    )
    func scrambledSections(name: String, chunk: [UInt8]) throws {
        var random = SplitMix64(seed: UInt64(chunk.count))
        let header = try TimeSeriesChunkCodec.header(chunk)
        let bodyRange = 36..<(chunk.count - 4)
        guard !bodyRange.isEmpty else { return }
        for _ in 0..<1000 {
            var damaged = chunk
            for _ in 0..<(1 + random.next() % 4) {
                let index = bodyRange.lowerBound + Int(random.next() % UInt64(bodyRange.count))
                damaged[index] =
                    random.next() % 4 == 0
                    ? UInt8(truncatingIfNeeded: random.next()) : damaged[index] ^ (1 << (random.next() % 8))
            }
            damaged = Fixture.resealed(damaged)
            if let decoded = try? TimeSeriesChunkCodec.decode(damaged) {
                #expect(decoded.timestamps.count == header.count)
                #expect(decoded.values.count == header.count)
                #expect(decoded.timestamps.first == header.firstTimestamp)
                #expect(decoded.timestamps.last == header.lastTimestamp)
            }
        }
    }

    @Test("header() agrees with decode() on count, first and last timestamp, type and size", arguments: chunks)
    func headerAgreesWithDecode(name: String, chunk: [UInt8]) throws {
        let header = try TimeSeriesChunkCodec.header(chunk)
        let decoded = try TimeSeriesChunkCodec.decode(chunk)
        #expect(header.formatVersion == TimeSeriesChunkCodec.formatVersion)
        #expect(header.count == decoded.timestamps.count)
        #expect(header.count == decoded.values.count)
        #expect(header.firstTimestamp == decoded.timestamps.first)
        #expect(header.lastTimestamp == decoded.timestamps.last)
        #expect(header.valueType == decoded.values.valueType)
        #expect(header.valueEncoding.valueType == header.valueType)
        #expect(header.byteCount == chunk.count)
    }
}

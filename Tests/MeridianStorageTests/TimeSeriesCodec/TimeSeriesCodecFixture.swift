import Testing

@testable import MeridianStorage

/// Shared helpers for the chunk codec tests.
enum TimeSeriesCodecFixture {
    /// Doubles that break naive codecs: NaNs with payloads, infinities, signed zeros, extremes, subnormals,
    /// values at the decimal encoding's integer limits and values with no short decimal form.
    static let edgeValues: [Double] = [
        .nan, -.nan, Double(nan: 0x1234, signaling: false), Double(nan: 1, signaling: true),
        Double(bitPattern: 0x7FF8_0000_DEAD_BEEF), Double(bitPattern: 0xFFFF_FFFF_FFFF_FFFF),
        .infinity, -.infinity, 0.0, -0.0,
        .greatestFiniteMagnitude, -.greatestFiniteMagnitude,
        .leastNonzeroMagnitude, -.leastNonzeroMagnitude, .leastNormalMagnitude, Double.leastNormalMagnitude.nextDown,
        Double(bitPattern: 0x0008_0000_0000_0001), .ulpOfOne, 1.0, -1.0, 0.1, 0.1 + 0.2, .pi, -.pi,
        2_251_799_813_685_248, 2_251_799_813_685_247, -2_251_799_813_685_248, 9_007_199_254_740_992,
        9_007_199_254_740_991, 1e20, 3e19, -1e-20, 123_456_789.123_456_78, 1e308, 1e-308, 21.5,
    ]

    /// Encodes, decodes and compares; returns the chunk.
    @discardableResult
    static func roundTrip(
        _ timestamps: [Int64],
        _ values: TimeSeriesColumn,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> [UInt8] {
        let bytes = TimeSeriesChunkCodec.encode(timestamps: timestamps, values: values)
        let decoded = try TimeSeriesChunkCodec.decode(bytes)
        #expect(firstDifference(decoded.timestamps, timestamps) == nil, sourceLocation: sourceLocation)
        #expect(firstDifference(decoded.values, values) == nil, sourceLocation: sourceLocation)
        let header = try TimeSeriesChunkCodec.header(bytes)
        #expect(header.count == timestamps.count, sourceLocation: sourceLocation)
        #expect(header.firstTimestamp == timestamps.first, sourceLocation: sourceLocation)
        #expect(header.lastTimestamp == timestamps.last, sourceLocation: sourceLocation)
        #expect(header.valueType == values.valueType, sourceLocation: sourceLocation)
        #expect(header.byteCount == bytes.count, sourceLocation: sourceLocation)
        return bytes
    }

    /// Where two timestamp arrays first differ, described; `nil` if identical.
    static func firstDifference(_ actual: [Int64], _ expected: [Int64]) -> String? {
        guard actual.count == expected.count else { return "count \(actual.count) instead of \(expected.count)" }
        for index in actual.indices where actual[index] != expected[index] {
            return "timestamp \(index): \(actual[index]) instead of \(expected[index])"
        }
        return nil
    }

    /// Where two columns first differ (bit for bit, byte for byte), described; `nil` if identical.
    static func firstDifference(_ actual: TimeSeriesColumn, _ expected: TimeSeriesColumn) -> String? {
        switch (actual, expected) {
        case (.numbers(let a), .numbers(let b)):
            guard a.count == b.count else { return "count \(a.count) instead of \(b.count)" }
            for index in a.indices where a[index].bitPattern != b[index].bitPattern {
                return "value \(index): bits \(hex(a[index].bitPattern)) instead of \(hex(b[index].bitPattern))"
            }
        case (.bools(let a), .bools(let b)):
            guard a.count == b.count else { return "count \(a.count) instead of \(b.count)" }
            for index in a.indices where a[index] != b[index] { return "value \(index): \(a[index])" }
        case (.strings(let a), .strings(let b)):
            guard a.count == b.count else { return "count \(a.count) instead of \(b.count)" }
            for index in a.indices where !utf8BytesEqual(a[index], b[index]) {
                return "value \(index): \(Array(a[index].utf8)) instead of \(Array(b[index].utf8))"
            }
        default:
            return "\(actual.valueType) column instead of \(expected.valueType)"
        }
        return nil
    }

    static func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

    /// Regular timestamps: `count` samples every `interval` ms from 2023-11-14.
    static func regularTimestamps(_ count: Int, interval: Int64 = 1000) -> [Int64] {
        (0..<Int64(count)).map { 1_700_000_000_000 + $0 * interval }
    }

    /// Strictly increasing timestamps with random gaps from 1 ms to about `maximumGap` ms.
    static func irregularTimestamps(_ count: Int, maximumGap: UInt64, seed: UInt64) -> [Int64] {
        var random = SplitMix64(seed: seed)
        var timestamp: Int64 = 1_600_000_000_000
        var timestamps: [Int64] = []
        for _ in 0..<count {
            timestamps.append(timestamp)
            // Mostly small gaps, sometimes huge ones.
            let gap = random.next() % 8 == 0 ? 1 + random.next() % maximumGap : 1 + random.next() % 2000
            timestamp += Int64(gap)
        }
        return timestamps
    }

    /// The chunk's value section length (header bytes 28..<32).
    static func valueSectionLength(_ chunk: [UInt8]) -> Int {
        Int(chunk[28]) | Int(chunk[29]) << 8 | Int(chunk[30]) << 16 | Int(chunk[31]) << 24
    }

    /// The chunk's timestamp section length (header bytes 24..<28).
    static func timestampSectionLength(_ chunk: [UInt8]) -> Int {
        Int(chunk[24]) | Int(chunk[25]) << 8 | Int(chunk[26]) << 16 | Int(chunk[27]) << 24
    }

    /// Bytes of Gorilla's XOR encoding alone for `values`.
    static func xorSectionLength(_ values: [Double]) -> Int {
        var writer = ChunkBitWriter()
        values.withUnsafeBufferPointer { _ = XORFloatCodec.encode($0, into: &writer) }
        return writer.finish().count
    }

    /// Replaces both checksums of a chunk so that altered contents pass them (to test what lies behind them).
    static func resealed(_ chunk: [UInt8]) -> [UInt8] {
        var chunk = chunk
        let headerCRC = CRC32C.checksum(Array(chunk[0..<32]))
        withUnsafeBytes(of: headerCRC.littleEndian) { chunk.replaceSubrange(32..<36, with: $0) }
        let bodyEnd = chunk.count - 4
        let bodyCRC = CRC32C.checksum(Array(chunk[36..<bodyEnd]))
        withUnsafeBytes(of: bodyCRC.littleEndian) { chunk.replaceSubrange(bodyEnd..., with: $0) }
        return chunk
    }
}

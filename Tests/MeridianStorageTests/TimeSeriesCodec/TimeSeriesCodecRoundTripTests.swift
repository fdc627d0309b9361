import MeridianCore
import Testing

@testable import MeridianStorage

/// Every chunk reads back exactly what was written: timestamps, and values bit for bit / byte for byte.
struct TimeSeriesCodecRoundTripTests {
    typealias Fixture = TimeSeriesCodecFixture

    @Test(
        "Each edge value reads back bit for bit: alone, repeated, and among ordinary decimals",
        arguments: Fixture.edgeValues.map(\.bitPattern)
    )
    func edgeValue(bits: UInt64) throws {
        let edge = Double(bitPattern: bits)
        try Fixture.roundTrip([1_700_000_000_000], .numbers([edge]))
        try Fixture.roundTrip(Fixture.regularTimestamps(300), .numbers(Array(repeating: edge, count: 300)))
        let signal = SensorSignal().samples(count: 1000)
        for position in [0, 1, 500, 999] {
            var values = signal.values
            values[position] = edge
            try Fixture.roundTrip(signal.timestamps, .numbers(values))
        }
    }

    @Test("All edge values together read back bit for bit, in both float encodings")
    func allEdgeValues() throws {
        let edges = Fixture.edgeValues
        let chunk = try Fixture.roundTrip(Fixture.regularTimestamps(edges.count), .numbers(edges))
        #expect(try TimeSeriesChunkCodec.header(chunk).valueEncoding == .xor)

        // A few exceptions among 2,000 decimals keep the decimal encoding and still read back exactly.
        var values = SensorSignal().samples(count: 2000).values
        for (offset, edge) in edges.enumerated() { values[offset * 50] = edge }
        let mixed = try Fixture.roundTrip(Fixture.regularTimestamps(values.count), .numbers(values))
        #expect(try TimeSeriesChunkCodec.header(mixed).valueEncoding == .decimal)
    }

    @Test("Random bit patterns read back bit for bit", arguments: [1, 2, 3, 127, 128, 129, 1000, 65_536])
    func randomBitPatterns(count: Int) throws {
        var random = SplitMix64(seed: UInt64(count))
        let values = (0..<count).map { _ in Double(bitPattern: random.next()) }
        let chunk = try Fixture.roundTrip(Fixture.regularTimestamps(count), .numbers(values))
        if count > 1 { #expect(try TimeSeriesChunkCodec.header(chunk).valueEncoding == .xor) }
    }

    @Test("Decimals with 0 to 15 digits read back exactly; up to 10 digits use the decimal encoding", arguments: 0...15)
    func decimals(digits: Int) throws {
        var random = SplitMix64(seed: UInt64(digits) + 100)
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let values = (0..<3000).map { _ in
            (Double(Int64(random.next() % 2_000_000)) - 1_000_000) / scale
        }
        let chunk = try Fixture.roundTrip(Fixture.regularTimestamps(values.count), .numbers(values))
        if digits <= 10 { #expect(try TimeSeriesChunkCodec.header(chunk).valueEncoding == .decimal) }
    }

    @Test("Large round numbers, integers near 2^53 and random walks read back exactly")
    func magnitudes() throws {
        var random = SplitMix64(seed: 7)
        let round = (0..<1000).map { _ in Double(random.next() % 1000) * 1e17 }
        try Fixture.roundTrip(Fixture.regularTimestamps(round.count), .numbers(round))
        let nearLimit = (0..<1000).map { _ in 9_007_199_254_740_992 - Double(random.next() % 10_000_000_000) }
        try Fixture.roundTrip(Fixture.regularTimestamps(nearLimit.count), .numbers(nearLimit))
        var level = 0.0
        let walk = (0..<5000).map { _ in
            level += Double(Int64(random.next() % 201) - 100) / 1000
            return (level * 1000).rounded() / 1000
        }
        try Fixture.roundTrip(Fixture.regularTimestamps(walk.count), .numbers(walk))
        let counter = (0..<5000).map { Double($0 * 3) }
        let chunk = try Fixture.roundTrip(Fixture.regularTimestamps(counter.count), .numbers(counter))
        #expect(chunk.count < counter.count / 16, "a steadily increasing counter costs a few bytes per block")
    }

    @Test("Equal values read back exactly and cost almost nothing")
    func equalValues() throws {
        let timestamps = Fixture.regularTimestamps(7200)
        let constant = try Fixture.roundTrip(timestamps, .numbers(Array(repeating: 21.5, count: 7200)))
        #expect(constant.count < 7200 / 20)
        try Fixture.roundTrip(timestamps, .numbers(Array(repeating: .nan, count: 7200)))
        try Fixture.roundTrip(timestamps, .numbers(Array(repeating: -0.0, count: 7200)))
        try Fixture.roundTrip(timestamps, .bools(Array(repeating: true, count: 7200)))
        let strings = try Fixture.roundTrip(timestamps, .strings(Array(repeating: "eco", count: 7200)))
        #expect(strings.count < 7200 / 20)
    }

    @Test("One-sample chunks of every type read back exactly")
    func oneSample() throws {
        for timestamp in [Int64.min, -1, 0, 1_700_000_000_000, Int64.max] {
            try Fixture.roundTrip([timestamp], .numbers([21.5]))
            try Fixture.roundTrip([timestamp], .bools([false]))
            try Fixture.roundTrip([timestamp], .strings(["héllo"]))
            try Fixture.roundTrip([timestamp], .strings([""]))
        }
    }

    @Test("Full chunks of 65,536 samples of every type read back exactly")
    func fullChunks() throws {
        let count = TimeSeriesChunkCodec.maximumCount
        let signal = SensorSignal(decimals: 3).samples(count: count)
        try Fixture.roundTrip(signal.timestamps, .numbers(signal.values))
        var random = SplitMix64(seed: 3)
        try Fixture.roundTrip(signal.timestamps, .bools((0..<count).map { _ in random.next() % 5 == 0 }))
        let modes = ["eco", "comfort", "away", "ünïcødé", ""]
        try Fixture.roundTrip(signal.timestamps, .strings((0..<count).map { _ in modes[Int(random.next() % 5)] }))
        let irregular = Fixture.irregularTimestamps(count, maximumGap: 1 << 40, seed: 9)
        try Fixture.roundTrip(irregular, .numbers(signal.values))
    }

    static let timestampCases: [(String, [Int64])] = [
        ("Int64 extremes", [Int64.min, Int64.min + 1, -1, 0, 1, Int64.max - 1, Int64.max]),
        ("the largest possible gap", [Int64.min, Int64.max]),
        ("gaps around 2^32 and 2^63", [0, 1, 1 << 32, (1 << 32) + 1, 1 << 62, (1 << 62) + (1 << 61), Int64.max]),
        ("before 1970", [-86_400_000_000, -86_399_999_000, -1000, 0, 1000]),
        ("irregular with huge gaps", TimeSeriesCodecFixture.irregularTimestamps(5000, maximumGap: 1 << 45, seed: 1)),
        ("irregular, small gaps", TimeSeriesCodecFixture.irregularTimestamps(5000, maximumGap: 50, seed: 2)),
        ("jittered 1 Hz", SensorSignal(jitterMilliseconds: 20).samples(count: 5000).timestamps),
        ("1 Hz with a missing hour", (0..<Int64(3000)).map { $0 < 1500 ? $0 * 1000 : $0 * 1000 + 3_600_000 }),
        ("every millisecond", (0..<Int64(5000)).map { 1_700_000_000_000 + $0 }),
    ]

    @Test(
        "Timestamps read back exactly: extremes, huge gaps, irregular and jittered intervals",
        arguments: timestampCases
    )
    func timestamps(name: String, timestamps: [Int64]) throws {
        var random = SplitMix64(seed: 11)
        try Fixture.roundTrip(timestamps, .numbers(timestamps.map { _ in Double(random.next() % 1000) / 10 }))
        try Fixture.roundTrip(timestamps, .bools(timestamps.map { _ in true }))
    }

    @Test("Random strictly increasing timestamps over the whole Int64 range read back exactly")
    func randomFullRangeTimestamps() throws {
        var random = SplitMix64(seed: 12)
        let timestamps = Array(Set((0..<4000).map { _ in Int64(bitPattern: random.next()) })).sorted()
        try Fixture.roundTrip(timestamps, .numbers(timestamps.map { Double($0) }))
    }

    @Test("Regular 1 Hz timestamps cost at most one bit per sample; ±20 ms jitter under a byte")
    func timestampCost() throws {
        let regular = TimeSeriesChunkCodec.encode(
            timestamps: Fixture.regularTimestamps(7200),
            values: .bools(Array(repeating: true, count: 7200))
        )
        #expect(Fixture.timestampSectionLength(regular) <= 7200 / 8)
        let jittered = TimeSeriesChunkCodec.encode(
            timestamps: SensorSignal(jitterMilliseconds: 20).samples(count: 7200).timestamps,
            values: .bools(Array(repeating: true, count: 7200))
        )
        #expect(Fixture.timestampSectionLength(jittered) < 7200)
    }

    static let stringCases: [(String, [String])] = [
        ("unicode and empty", ["", "a", "é", "e\u{301}", "🌡️", "👩‍👩‍👧", "日本語", "\u{0}", "mixed ascii", " "]),
        ("canonically equivalent", ["é", "e\u{301}", "é", "e\u{301}", "\u{212B}", "\u{00C5}", "A\u{30A}"]),
        ("long", [String(repeating: "x", count: 4096), String(repeating: "ü", count: 2048), ""]),
        (
            "more than the linear-search limit",
            (0..<40).map { "state-\($0)" } + ["é", "e\u{301}", "\u{212B}", "\u{00C5}"]
        ),
    ]

    @Test("Strings read back byte for byte, however they repeat", arguments: stringCases)
    func strings(name: String, alphabet: [String]) throws {
        var random = SplitMix64(seed: UInt64(alphabet.count))
        let count = 1000
        let timestamps = Fixture.regularTimestamps(count)
        // Each once, in order; random (bit-packed indexes); long runs (run-length indexes).
        try Fixture.roundTrip(Fixture.regularTimestamps(alphabet.count), .strings(alphabet))
        let scattered = (0..<count).map { _ in alphabet[Int(random.next() % UInt64(alphabet.count))] }
        let packed = try Fixture.roundTrip(timestamps, .strings(scattered))
        var runs: [String] = []
        while runs.count < count {
            let value = alphabet[Int(random.next() % UInt64(alphabet.count))]
            runs += Array(repeating: value, count: min(count - runs.count, 1 + Int(random.next() % 200)))
        }
        let runLength = try Fixture.roundTrip(timestamps, .strings(runs))
        #expect(try TimeSeriesChunkCodec.header(packed).valueEncoding == .stringDictionaryPacked)
        #expect(try TimeSeriesChunkCodec.header(runLength).valueEncoding == .stringDictionaryRuns)
    }

    @Test("Thousands of distinct strings read back byte for byte")
    func distinctStrings() throws {
        let values = (0..<5000).map { "device-\($0)-ß" }
        try Fixture.roundTrip(Fixture.regularTimestamps(values.count), .strings(values))
    }

    @Test("Booleans read back exactly: constant, alternating, random and in runs")
    func bools() throws {
        let count = 10_000
        let timestamps = Fixture.regularTimestamps(count)
        var random = SplitMix64(seed: 5)
        let allTrue = try Fixture.roundTrip(timestamps, .bools(Array(repeating: true, count: count)))
        #expect(allTrue.count < count / 20)
        try Fixture.roundTrip(timestamps, .bools(Array(repeating: false, count: count)))
        let alternating = try Fixture.roundTrip(timestamps, .bools((0..<count).map { $0 % 2 == 0 }))
        #expect(try TimeSeriesChunkCodec.header(alternating).valueEncoding == .boolBitmap)
        try Fixture.roundTrip(timestamps, .bools((0..<count).map { _ in random.next() & 1 == 0 }))
        var runs: [Bool] = []
        var state = false
        while runs.count < count {
            runs += Array(repeating: state, count: min(count - runs.count, 1 + Int(random.next() % 1000)))
            state.toggle()
        }
        let runLength = try Fixture.roundTrip(timestamps, .bools(runs))
        #expect(try TimeSeriesChunkCodec.header(runLength).valueEncoding == .boolRuns)
    }

    @Test("Decoding from a raw buffer gives the same samples as from an array")
    func rawBuffer() throws {
        let signal = SensorSignal().samples(count: 7200)
        let chunk = TimeSeriesChunkCodec.encode(timestamps: signal.timestamps, values: .numbers(signal.values))
        let decoded = try chunk.withUnsafeBytes { try TimeSeriesChunkCodec.decode($0) }
        #expect(decoded.timestamps == signal.timestamps)
        #expect(decoded.values == .numbers(signal.values))
        let header = try chunk.withUnsafeBytes { try TimeSeriesChunkCodec.header($0) }
        #expect(header == (try TimeSeriesChunkCodec.header(chunk)))
    }

    @Test("Column equality is bit-exact: NaN payloads, signed zeros and string bytes count")
    func columnEquality() {
        #expect(TimeSeriesColumn.numbers([.nan]) == .numbers([.nan]))
        #expect(TimeSeriesColumn.numbers([.nan]) != .numbers([Double(nan: 1, signaling: false)]))
        #expect(TimeSeriesColumn.numbers([0.0]) != .numbers([-0.0]))
        #expect(TimeSeriesColumn.numbers([1, 2]) != .numbers([1]))
        #expect(TimeSeriesColumn.strings(["é"]) != .strings(["e\u{301}"]))
        #expect(TimeSeriesColumn.strings(["é"]) == .strings(["é"]))
        #expect(TimeSeriesColumn.bools([true]) != .numbers([1]))
        #expect(TimeSeriesColumn.bools([true, false]) == .bools([true, false]))
    }
}

import MeridianCore

/// The aggregate of the number samples in one bucket: enough to answer avg, min, max, sum,
/// count, first and last for any union of whole buckets.
struct RollupBucket: Sendable, Equatable {
    var count: Double
    var sum: Double
    var min: Double
    var max: Double
    var first: Double
    var last: Double

    init(_ value: Double) {
        count = 1
        sum = value
        min = value
        max = value
        first = value
        last = value
    }

    init(count: Double, sum: Double, min: Double, max: Double, first: Double, last: Double) {
        self.count = count
        self.sum = sum
        self.min = min
        self.max = max
        self.first = first
        self.last = last
    }

    /// Adds a sample newer than every sample already in the bucket.
    @inline(__always)
    mutating func add(_ value: Double) {
        count += 1
        sum += value
        min = Double.minimum(min, value)
        max = Double.maximum(max, value)
        last = value
    }

    /// Adds a bucket whose samples are all newer than this one's.
    mutating func append(_ later: RollupBucket) {
        count += later.count
        sum += later.sum
        min = Double.minimum(min, later.min)
        max = Double.maximum(max, later.max)
        last = later.last
    }

    func value(_ aggregation: TelemetryAggregationKind) -> Double {
        switch aggregation {
        case .avg: sum / count
        case .min: min
        case .max: max
        case .sum: sum
        case .count: count
        case .first: first
        case .last: last
        }
    }
}

/// Aggregations as the engine computes them (mirrors MeridianCore's TelemetryAggregation).
typealias TelemetryAggregationKind = MeridianCore.TelemetryAggregation

/// A rollup tier: its bucket width and how many buckets one stored chunk (a "period") holds.
enum RollupTier: Int, Sendable, CaseIterable {
    case minute = 1
    case hour = 2

    /// Bucket width in milliseconds.
    var width: Int64 {
        switch self {
        case .minute: 60_000
        case .hour: 3_600_000
        }
    }

    /// Span of one stored rollup chunk in milliseconds (a UTC day of minutes; 30 days of hours).
    var period: Int64 {
        switch self {
        case .minute: 86_400_000
        case .hour: 30 * 86_400_000
        }
    }
}

/// Floor division for timestamps (bucket starts for negative times too).
@inline(__always)
func bucketStart(_ timestamp: Int64, _ width: Int64) -> Int64 {
    let quotient = timestamp / width
    return (timestamp % width < 0 ? quotient - 1 : quotient) * width
}

/// The buckets of one rollup chunk, oldest first, stored as six codec columns sharing the
/// bucket starts: count, sum, min, max, first, last.
struct RollupChunk: Sendable, Equatable {
    var starts: [Int64] = []
    var buckets: [RollupBucket] = []

    var isEmpty: Bool { starts.isEmpty }

    func encode() -> [UInt8] {
        var writer = WALWriter()
        writer.bytes.append(1)  // format version
        let columns: [KeyPath<RollupBucket, Double>] = [\.count, \.sum, \.min, \.max, \.first, \.last]
        for (index, column) in columns.enumerated() {
            let values = buckets.map { $0[keyPath: column] }
            // The bucket starts go with the first column; the others carry 0, 1, 2... (one bit each).
            let stamps = index == 0 ? starts : (0..<Int64(starts.count)).map { $0 }
            let encoded = TimeSeriesChunkCodec.encode(timestamps: stamps, values: .numbers(values))
            writer.varint(UInt64(encoded.count))
            writer.bytes.append(contentsOf: encoded)
        }
        return writer.bytes
    }

    static func decode(_ bytes: [UInt8]) throws -> RollupChunk {
        try bytes.withUnsafeBytes { raw in
            var reader = WALReader(bytes: raw)
            guard (try? reader.byte()) == 1 else { throw TimeSeriesCodecError(.unsupportedVersion, "unknown rollup chunk format") }
            var chunk = RollupChunk()
            var columns: [[Double]] = []
            for index in 0..<6 {
                guard let length = try? reader.varint(), reader.offset + Int(length) <= raw.count else {
                    throw TimeSeriesCodecError(.truncated, "rollup chunk cut short")
                }
                let slice = Array(raw[reader.offset..<reader.offset + Int(length)])
                reader.offset += Int(length)
                let (stamps, values) = try TimeSeriesChunkCodec.decode(slice)
                guard case .numbers(let numbers) = values else { throw TimeSeriesCodecError(.malformed, "rollup column is not numeric") }
                if index == 0 { chunk.starts = stamps }
                guard numbers.count == chunk.starts.count else { throw TimeSeriesCodecError(.malformed, "rollup columns differ in length") }
                columns.append(numbers)
            }
            chunk.buckets.reserveCapacity(chunk.starts.count)
            for i in 0..<chunk.starts.count {
                chunk.buckets.append(
                    RollupBucket(count: columns[0][i], sum: columns[1][i], min: columns[2][i], max: columns[3][i], first: columns[4][i], last: columns[5][i])
                )
            }
            return chunk
        }
    }

    /// Folds newer buckets in (each newer than what the same bucket already holds).
    mutating func append(_ newer: [(Int64, RollupBucket)]) {
        for (start, bucket) in newer { put(start, bucket, replace: false) }
    }

    /// Sets buckets, replacing what they held (a recomputation).
    mutating func replace(_ buckets: [(Int64, RollupBucket)], clearing range: ClosedRange<Int64>) {
        var keptStarts: [Int64] = []
        var kept: [RollupBucket] = []
        for (index, start) in starts.enumerated() where !range.contains(start) {
            keptStarts.append(start)
            kept.append(self.buckets[index])
        }
        starts = keptStarts
        self.buckets = kept
        for (start, bucket) in buckets { put(start, bucket, replace: true) }
    }

    private mutating func put(_ start: Int64, _ bucket: RollupBucket, replace: Bool) {
        if let last = starts.last, last < start {
            starts.append(start)
            buckets.append(bucket)
            return
        }
        var low = 0
        var high = starts.count
        while low < high {
            let middle = (low + high) / 2
            if starts[middle] < start { low = middle + 1 } else { high = middle }
        }
        if low < starts.count && starts[low] == start {
            if replace { buckets[low] = bucket } else { buckets[low].append(bucket) }
        } else {
            starts.insert(start, at: low)
            buckets.insert(bucket, at: low)
        }
    }

    /// Drops buckets starting before `cutoff`.
    mutating func removeBefore(_ cutoff: Int64) {
        let index = starts.firstIndex { $0 >= cutoff } ?? starts.count
        starts.removeFirst(index)
        buckets.removeFirst(index)
    }
}

/// Aggregates sorted samples into buckets of `width`, oldest first.
func rollUp(timestamps: some Collection<Int64>, values: some Collection<Double>, width: Int64) -> [(Int64, RollupBucket)] {
    var result: [(Int64, RollupBucket)] = []
    var current: RollupBucket?
    var currentStart: Int64 = 0
    for (timestamp, value) in zip(timestamps, values) {
        let start = bucketStart(timestamp, width)
        if current != nil && start == currentStart {
            current!.add(value)
        } else {
            if let current { result.append((currentStart, current)) }
            current = RollupBucket(value)
            currentStart = start
        }
    }
    if let current { result.append((currentStart, current)) }
    return result
}

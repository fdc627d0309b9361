/// The recent samples of one numeric telemetry key, kept so a rule's window functions
/// (``RuleWindowFunction``) are answered incrementally, without a query per sample.
///
/// The window keeps the samples whose timestamps lie in `[latest - span, latest]`, where
/// `latest` is the newest sample's timestamp and `span` the longest duration any rule asks for
/// this key. A query for a duration `d` (at most `span`) covers the samples in
/// `[latest - d, latest]`: the window ends at the newest sample, not at the wall clock.
///
/// - Samples arrive in timestamp order. A sample older than the newest one is ignored
///   (``append(timestamp:value:)`` returns false), as are NaN and infinite values; a sample with
///   the same timestamp as the newest one is kept.
/// - Complexity, with `n` the samples kept and `k` those inside the asked duration:
///   ``append(timestamp:value:)`` is O(1) amortized (expired samples are dropped from the front
///   and storage is compacted once half of it is expired); `avg`, `delta` and `rate` are
///   O(log n) (a binary search for the window's first sample, then running prefix sums);
///   `min` and `max` are O(k).
/// - Memory is O(n). Prefix sums are rebuilt on each compaction, so rounding error stays that of
///   summing at most about twice the samples of one span.
public struct RuleSlidingWindow: Sendable, Hashable {
    /// The longest duration answered, in milliseconds.
    public let spanMilliseconds: Int64
    private var timestamps: [Int64] = []
    private var values: [Double] = []
    /// `prefix[i]` is the sum of `values[0...i]`.
    private var prefix: [Double] = []
    /// Index of the oldest sample still inside the span.
    private var head = 0

    /// An empty window answering durations up to `spanMilliseconds` (at least 1).
    public init(spanMilliseconds: Int64) {
        self.spanMilliseconds = Swift.max(1, spanMilliseconds)
    }

    /// Samples currently kept.
    public var count: Int { timestamps.count - head }

    /// Timestamp of the newest sample (epoch milliseconds), nil when empty.
    public var latestTimestamp: Int64? { timestamps.last }

    /// Adds a sample; false (and nothing changes) when it is older than the newest sample or not
    /// a finite number.
    @discardableResult
    public mutating func append(timestamp: Int64, value: Double) -> Bool {
        guard value.isFinite else { return false }
        if let latest = timestamps.last, timestamp < latest { return false }
        timestamps.append(timestamp)
        values.append(value)
        prefix.append((prefix.last ?? 0) + value)
        let oldest = Self.start(latest: timestamp, duration: spanMilliseconds)
        while timestamps[head] < oldest { head += 1 }
        if head > 16, head * 2 > timestamps.count { compact() }
        return true
    }

    private mutating func compact() {
        timestamps.removeFirst(head)
        values.removeFirst(head)
        head = 0
        prefix.removeAll(keepingCapacity: true)
        var sum = 0.0
        for value in values {
            sum += value
            prefix.append(sum)
        }
    }

    private static func start(latest: Int64, duration: Int64) -> Int64 {
        let (start, overflow) = latest.subtractingReportingOverflow(duration)
        return overflow ? Int64.min : start
    }

    /// The aggregate over the samples in `[latest - durationMilliseconds, latest]`; nil when the
    /// window is empty, the duration is not in `1...spanMilliseconds`, or (for `delta` and
    /// `rate`) fewer than two samples, or (for `rate`) no time between the first and last.
    public func value(_ function: RuleWindowFunction, durationMilliseconds: Int64) -> Double? {
        guard let latest = timestamps.last, durationMilliseconds >= 1, durationMilliseconds <= spanMilliseconds else {
            return nil
        }
        let from = Self.start(latest: latest, duration: durationMilliseconds)
        // First index in head..<count whose timestamp is >= from.
        var low = head
        var high = timestamps.count - 1
        while low < high {
            let middle = low + (high - low) / 2
            if timestamps[middle] < from { low = middle + 1 } else { high = middle }
        }
        let first = low
        let last = timestamps.count - 1
        let samples = last - first + 1
        switch function {
        case .avg:
            let sum = prefix[last] - (first > 0 ? prefix[first - 1] : 0)
            return sum / Double(samples)
        case .min:
            return values[first...last].min()
        case .max:
            return values[first...last].max()
        case .delta:
            guard samples >= 2 else { return nil }
            return values[last] - values[first]
        case .rate:
            guard samples >= 2, timestamps[last] > timestamps[first] else { return nil }
            return (values[last] - values[first]) / (Double(timestamps[last] - timestamps[first]) / 1000)
        }
    }
}

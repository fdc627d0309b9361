/// A value at a time, as queries return it.
public struct TelemetryPoint: Sendable, Hashable {
    /// Milliseconds since 1970-01-01 UTC (for aggregates: the bucket's start).
    public var timestamp: Int64
    public var value: TelemetryValue

    public init(timestamp: Int64, value: TelemetryValue) {
        self.timestamp = timestamp
        self.value = value
    }
}

/// How the samples of one bucket are combined.
public enum TelemetryAggregation: String, Sendable, Hashable, CaseIterable, Codable {
    case avg, min, max, sum, count, first, last

    /// Whether only number series can be aggregated this way (`count`, `first` and `last` work
    /// for every type).
    public var needsNumbers: Bool {
        switch self {
        case .avg, .min, .max, .sum: true
        case .count, .first, .last: false
        }
    }
}

/// Raw points of one device in a time range (both ends included), oldest first.
public struct TelemetryRangeQuery: Sendable, Hashable {
    public var deviceID: String
    /// Keys to return; nil for every key the device has.
    public var keys: [String]?
    public var from: Int64
    public var to: Int64
    /// Most points returned per key; the result says where to go on.
    public var limit: Int
    /// Per key, the timestamp of the last point already returned (from a previous page).
    public var after: [String: Int64]

    public init(deviceID: String, keys: [String]?, from: Int64, to: Int64, limit: Int, after: [String: Int64] = [:]) {
        self.deviceID = deviceID
        self.keys = keys
        self.from = from
        self.to = to
        self.limit = limit
        self.after = after
    }
}

/// One page of raw points.
public struct TelemetryRangeResult: Sendable, Hashable {
    /// Per key, points oldest first.
    public var points: [String: [TelemetryPoint]]
    /// Keys with more points in the range, with the timestamp of the last one returned: pass
    /// this as ``TelemetryRangeQuery/after`` for the next page. Empty on the last page.
    public var next: [String: Int64]

    public init(points: [String: [TelemetryPoint]], next: [String: Int64]) {
        self.points = points
        self.next = next
    }
}

/// Aggregates of one device's keys over fixed buckets aligned to multiples of `interval` since
/// 1970-01-01 UTC (so `1d` buckets start at midnight UTC), counting samples in `from...to`.
public struct TelemetryAggregateQuery: Sendable, Hashable {
    public var deviceID: String
    public var keys: [String]?
    public var from: Int64
    public var to: Int64
    /// Bucket width in milliseconds (≥ 1).
    public var interval: Int64
    public var aggregation: TelemetryAggregation

    public init(deviceID: String, keys: [String]?, from: Int64, to: Int64, interval: Int64, aggregation: TelemetryAggregation) {
        self.deviceID = deviceID
        self.keys = keys
        self.from = from
        self.to = to
        self.interval = interval
        self.aggregation = aggregation
    }
}

/// Where telemetry is kept: the embedded time-series engine, or its PostgreSQL variant. Appends
/// return once the samples are durable; reads see every appended sample.
public protocol TelemetryStore: Sendable {
    /// Stores the messages' samples durably (last write wins for a repeated timestamp).
    func append(_ messages: [DeviceMessage]) async throws

    /// The newest value of each key of each device (devices without telemetry are absent).
    func latest(deviceIDs: [String]) async throws -> [String: [String: TelemetryPoint]]

    /// Raw points in a range, paged.
    func range(_ query: TelemetryRangeQuery) async throws -> TelemetryRangeResult

    /// One point per non-empty bucket per key; `count` is a number for every type; `avg`, `min`,
    /// `max` and `sum` return number series only.
    func aggregate(_ query: TelemetryAggregateQuery) async throws -> [String: [TelemetryPoint]]

    /// Forgets a device's telemetry (the device was deleted).
    func deleteDevice(_ deviceID: String) async throws
}

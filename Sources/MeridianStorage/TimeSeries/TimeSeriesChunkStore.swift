import MeridianCore

/// A series as stored: one per (device, key, type).
struct StoredSeries: Sendable {
    var id: Int64
    var tenantID: String
    var deviceID: String
    var key: String
    var type: TelemetryValueType
    /// Newest timestamp in the series' chunks (nil: nothing sealed yet).
    var sealedEnd: Int64?
}

/// One sealed chunk row.
struct StoredChunk: Sendable {
    var start: Int64
    var end: Int64
    var count: Int
    var data: [UInt8]

    init(start: Int64, end: Int64, count: Int, data: [UInt8]) {
        self.start = start
        self.end = end
        self.count = count
        self.data = data
    }

    /// The chunk of sorted, non-empty `timestamps` and their values, encoded.
    init(encoding timestamps: [Int64], _ values: TimeSeriesColumn) {
        self.init(
            start: timestamps[0], end: timestamps[timestamps.count - 1], count: timestamps.count,
            data: TimeSeriesChunkCodec.encode(timestamps: timestamps, values: values)
        )
    }
}

/// Where the time-series engine keeps sealed chunks, rollup chunks, head snapshots and latest
/// values: the storage protocol both backends (SQLite, PostgreSQL) implement. Reads may run on
/// any thread at any time; ``write(_:)`` is called by one writer at a time. Every call may block
/// (PostgreSQL waits for the server): never call one from Swift's cooperative pool or an event
/// loop.
protocol TimeSeriesChunkStore: Sendable {
    /// Every series (start-up).
    func allSeries() throws -> [StoredSeries]
    /// Every head snapshot (start-up): series id and encoded chunk.
    func allHeads() throws -> [(Int64, [UInt8])]
    /// Every device's latest values (start-up).
    func allLatest() throws -> [(deviceID: String, key: String, point: TelemetryPoint)]

    /// Chunks of a series that may hold samples in `from...to`, oldest first.
    func chunks(series: Int64, from: Int64, to: Int64) throws -> [StoredChunk]
    /// Rollup chunks of a series and tier whose periods start in `fromPeriod...toPeriod`.
    func rollups(series: Int64, tier: RollupTier, fromPeriod: Int64, toPeriod: Int64) throws -> [(Int64, [UInt8])]
    /// Series with raw chunks that end before `cutoff`, or rollup periods starting before it.
    func seriesWithData(before cutoff: Int64, tier: RollupTier?) throws -> [Int64]

    /// A retention override (`scope` is `tenant` or `profile`), if set.
    func retention(scope: String, id: String) throws -> TelemetryRetention?
    /// Sets (nil: removes) a retention override.
    func setRetention(scope: String, id: String, _ retention: TelemetryRetention?) throws

    /// Runs `body` in one transaction; `durable` waits until it is on stable storage.
    func write(durable: Bool, _ body: (any TimeSeriesChunkWriter) throws -> Void) throws

    /// Bytes the store occupies on disk (for metrics and benchmarks).
    func sizeOnDisk() -> Int
}

/// The writes of one transaction; reads inside see the writes before them. The engine batches
/// its commits' writes (``BufferedChunkWriter``): a store that can send ``apply(_:)`` and
/// ``rollups(_:)`` in a few round trips (PostgreSQL) overrides them.
protocol TimeSeriesChunkWriter {
    func saveSeries(_ series: StoredSeries) throws
    func deleteSeries(deviceID: String) throws
    func chunks(series: Int64, from: Int64, to: Int64) throws -> [StoredChunk]
    func putChunk(series: Int64, _ chunk: StoredChunk) throws
    func deleteChunk(series: Int64, start: Int64) throws
    func rollup(series: Int64, tier: RollupTier, period: Int64) throws -> [UInt8]?
    func rollups(series: Int64, tier: RollupTier, fromPeriod: Int64, toPeriod: Int64) throws -> [(Int64, [UInt8])]
    func putRollup(series: Int64, tier: RollupTier, period: Int64, data: [UInt8]) throws
    func deleteRollup(series: Int64, tier: RollupTier, period: Int64) throws
    func putHead(series: Int64, data: [UInt8]) throws
    func deleteHead(series: Int64) throws
    func putLatest(deviceID: String, key: String, point: TelemetryPoint) throws
    /// Several rollup chunks at once (those that exist).
    func rollups(_ keys: [RollupKey]) throws -> [RollupKey: [UInt8]]
    /// Carries out a batch of writes as if made one by one, in order.
    func apply(_ batch: TimeSeriesWriteBatch) throws
}

/// One rollup chunk's identity.
struct RollupKey: Hashable, Sendable {
    var series: Int64
    var tier: RollupTier
    var period: Int64
}

/// Writes collected to be sent to the store at once (``TimeSeriesChunkWriter/apply(_:)``), in
/// the order they were made: for the same row, the last one wins.
struct TimeSeriesWriteBatch {
    enum Write {
        case saveSeries(StoredSeries)
        case putChunk(series: Int64, StoredChunk)
        case deleteChunk(series: Int64, start: Int64)
        case putRollup(RollupKey, [UInt8])
        case deleteRollup(RollupKey)
        case putHead(series: Int64, [UInt8])
        case deleteHead(series: Int64)
        case putLatest(deviceID: String, key: String, point: TelemetryPoint)
    }

    var writes: [Write] = []
}

extension TimeSeriesChunkWriter {
    /// Several rollup chunks at once (those that exist). A store that can fetch them in one
    /// round trip overrides it.
    func rollups(_ keys: [RollupKey]) throws -> [RollupKey: [UInt8]] {
        var result: [RollupKey: [UInt8]] = [:]
        for key in keys {
            if let data = try rollup(series: key.series, tier: key.tier, period: key.period) { result[key] = data }
        }
        return result
    }

    /// Carries out a batch of writes, in order. A store that can send them in a few statements
    /// overrides it.
    func apply(_ batch: TimeSeriesWriteBatch) throws {
        for write in batch.writes {
            switch write {
            case .saveSeries(let series): try saveSeries(series)
            case .putChunk(let series, let chunk): try putChunk(series: series, chunk)
            case .deleteChunk(let series, let start): try deleteChunk(series: series, start: start)
            case .putRollup(let key, let data): try putRollup(series: key.series, tier: key.tier, period: key.period, data: data)
            case .deleteRollup(let key): try deleteRollup(series: key.series, tier: key.tier, period: key.period)
            case .putHead(let series, let data): try putHead(series: series, data: data)
            case .deleteHead(let series): try deleteHead(series: series)
            case .putLatest(let deviceID, let key, let point): try putLatest(deviceID: deviceID, key: key, point: point)
            }
        }
    }
}

import MeridianCore

/// Collects a commit's writes to send them to the store at once (``flush()``), and answers rollup
/// reads from what it holds: sealing thousands of heads is then a few statements, not several
/// round trips per head (on PostgreSQL each one costs a round trip to the server).
///
/// Rollup chunks the commit will read can be fetched beforehand in one call
/// (``prefetchRollups(_:)``). Any other read sends the pending writes first, so every read
/// sees the writes made before it, as the ``TimeSeriesChunkWriter`` contract says.
final class BufferedChunkWriter: TimeSeriesChunkWriter {
    private let base: any TimeSeriesChunkWriter
    private var batch = TimeSeriesWriteBatch()
    /// Rollup chunks as the commit sees them: fetched, or written by it (nil: deleted).
    private var rollupCache: [RollupKey: [UInt8]?] = [:]

    init(base: any TimeSeriesChunkWriter) {
        self.base = base
    }

    /// Fetches the rollup chunks in one call; reads of them are answered from memory.
    func prefetchRollups(_ keys: [RollupKey]) throws {
        let wanted = keys.filter { rollupCache[$0] == nil }
        guard !wanted.isEmpty else { return }
        let found = try base.rollups(wanted)
        for key in wanted { rollupCache[key] = .some(found[key]) }
    }

    /// Sends the pending writes.
    func flush() throws {
        guard !batch.writes.isEmpty else { return }
        let pending = batch
        batch = TimeSeriesWriteBatch()
        try base.apply(pending)
    }

    // MARK: reads

    func rollup(series: Int64, tier: RollupTier, period: Int64) throws -> [UInt8]? {
        let key = RollupKey(series: series, tier: tier, period: period)
        if let cached = rollupCache[key] { return cached }
        // Not written by this commit (it would be cached): the store's copy is current.
        let data = try base.rollup(series: series, tier: tier, period: period)
        rollupCache[key] = .some(data)
        return data
    }

    func rollups(_ keys: [RollupKey]) throws -> [RollupKey: [UInt8]] {
        try prefetchRollups(keys)
        var result: [RollupKey: [UInt8]] = [:]
        for key in keys {
            if case .some(.some(let data)) = rollupCache[key] { result[key] = data }
        }
        return result
    }

    func chunks(series: Int64, from: Int64, to: Int64) throws -> [StoredChunk] {
        try flush()
        return try base.chunks(series: series, from: from, to: to)
    }

    func rollups(series: Int64, tier: RollupTier, fromPeriod: Int64, toPeriod: Int64) throws -> [(Int64, [UInt8])] {
        try flush()
        return try base.rollups(series: series, tier: tier, fromPeriod: fromPeriod, toPeriod: toPeriod)
    }

    // MARK: writes

    func saveSeries(_ series: StoredSeries) throws { batch.writes.append(.saveSeries(series)) }

    func deleteSeries(deviceID: String) throws {
        try flush()
        rollupCache.removeAll()
        try base.deleteSeries(deviceID: deviceID)
    }

    func putChunk(series: Int64, _ chunk: StoredChunk) throws { batch.writes.append(.putChunk(series: series, chunk)) }

    func deleteChunk(series: Int64, start: Int64) throws { batch.writes.append(.deleteChunk(series: series, start: start)) }

    func putRollup(series: Int64, tier: RollupTier, period: Int64, data: [UInt8]) throws {
        let key = RollupKey(series: series, tier: tier, period: period)
        rollupCache[key] = .some(data)
        batch.writes.append(.putRollup(key, data))
    }

    func deleteRollup(series: Int64, tier: RollupTier, period: Int64) throws {
        let key = RollupKey(series: series, tier: tier, period: period)
        rollupCache[key] = .some(nil)
        batch.writes.append(.deleteRollup(key))
    }

    func putHead(series: Int64, data: [UInt8]) throws { batch.writes.append(.putHead(series: series, data)) }

    func deleteHead(series: Int64) throws { batch.writes.append(.deleteHead(series: series)) }

    func putLatest(deviceID: String, key: String, point: TelemetryPoint) throws {
        batch.writes.append(.putLatest(deviceID: deviceID, key: key, point: point))
    }

    func apply(_ batch: TimeSeriesWriteBatch) throws {
        for write in batch.writes {
            if case .putRollup(let key, let data) = write { rollupCache[key] = .some(data) }
            if case .deleteRollup(let key) = write { rollupCache[key] = .some(nil) }
        }
        self.batch.writes += batch.writes
    }
}

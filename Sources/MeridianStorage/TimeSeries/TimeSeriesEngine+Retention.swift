import MeridianCore
import Synchronization

extension TimeSeriesEngine {
    /// The devices with telemetry, with their tenants (for retention sweeps).
    public func devices() -> [(deviceID: String, tenantID: String)] {
        var result: [(deviceID: String, tenantID: String)] = []
        for shard in shards {
            shard.devices.withLock { devices in
                for (deviceID, device) in devices { result.append((deviceID, device.tenantID)) }
            }
        }
        return result
    }

    /// Where a retention override applies.
    public enum RetentionScope: String, Sendable {
        case tenant
        case profile
    }

    /// The retention override of a tenant or a device profile, if one is set.
    public func retentionOverride(_ scope: RetentionScope, id: String) throws -> TelemetryRetention? {
        try store.retention(scope: scope.rawValue, id: id)
    }

    /// Sets (nil: removes) the retention override of a tenant or a device profile.
    public func setRetentionOverride(_ scope: RetentionScope, id: String, _ retention: TelemetryRetention?) throws {
        try store.setRetention(scope: scope.rawValue, id: id, retention)
    }

    /// What a retention pass removed.
    public struct RetentionOutcome: Sendable, Hashable {
        /// Raw samples removed.
        public var samples: Int = 0
        /// Rollup buckets removed (both tiers).
        public var buckets: Int = 0

        public init() {}
    }

    /// Applies `retention` to one device's series as of `now` (ms): raw samples older than
    /// `now - raw` are removed exactly (a chunk straddling the cut is rewritten); rollup buckets
    /// starting before `now - minute` (`now - hour`) likewise. Heads (recent data) are not
    /// touched. Runs as one short write, so callers can pace a sweep device by device.
    @discardableResult
    public func applyRetention(deviceID: String, retention: TelemetryRetention, now: Int64) throws -> RetentionOutcome {
        try writer.withLock { _ in
            let heads: [SeriesHead] = shard(deviceID).devices.withLock { devices in
                devices[deviceID]?.allHeads ?? []
            }
            guard !heads.isEmpty else { return RetentionOutcome() }
            var outcome = RetentionOutcome()
            try commitLock.withWriteLock {
                try store.write(durable: false) { writer in
                    for head in heads {
                        if let raw = retention.raw {
                            outcome.samples += try trimChunks(head, before: now - raw, writer)
                        }
                        guard head.type == .number else { continue }
                        for tier in RollupTier.allCases {
                            let keep = tier == .minute ? retention.minute : retention.hour
                            if let keep { outcome.buckets += try trimRollups(head, tier: tier, before: now - keep, writer) }
                        }
                    }
                }
            }
            return outcome
        }
    }

    private func trimChunks(_ head: SeriesHead, before cutoff: Int64, _ writer: any TimeSeriesChunkWriter) throws -> Int {
        var removed = 0
        for chunk in try writer.chunks(series: head.id, from: .min, to: cutoff - 1) {
            if chunk.end < cutoff {
                try writer.deleteChunk(series: head.id, start: chunk.start)
                removed += chunk.count
            } else if chunk.start < cutoff {
                let (timestamps, column) = try TimeSeriesChunkCodec.decode(chunk.data)
                let first = timestamps.firstIndex { $0 >= cutoff } ?? timestamps.count
                try writer.deleteChunk(series: head.id, start: chunk.start)
                removed += first
                guard first < timestamps.count else { continue }
                let kept = Array(timestamps[first...])
                let values = Self.column(head.type, (first..<timestamps.count).map { column.value(at: $0) })
                try writer.putChunk(series: head.id, StoredChunk(encoding: kept, values))
            }
        }
        return removed
    }

    private func trimRollups(_ head: SeriesHead, tier: RollupTier, before cutoff: Int64, _ writer: any TimeSeriesChunkWriter) throws -> Int {
        var removed = 0
        for (period, data) in try writer.rollups(series: head.id, tier: tier, fromPeriod: .min, toPeriod: cutoff - 1) {
            var chunk = try RollupChunk.decode(data)
            let before = chunk.starts.count
            chunk.removeBefore(cutoff)
            removed += before - chunk.starts.count
            if chunk.isEmpty {
                try writer.deleteRollup(series: head.id, tier: tier, period: period)
            } else if chunk.starts.count != before {
                try writer.putRollup(series: head.id, tier: tier, period: period, data: chunk.encode())
            }
        }
        return removed
    }
}

extension TimeSeriesEngine {
    /// Merges runs of adjacent small chunks of a device's series (left by idle heads sealed
    /// early, or late samples that fell into gaps) into chunks of about the configured size.
    /// The data and the rollups do not change. Returns the number of chunks removed.
    @discardableResult
    public func compact(deviceID: String) throws -> Int {
        let small = max(1, configuration.chunkSamples / 2)
        return try writer.withLock { _ in
            let heads: [SeriesHead] = shard(deviceID).devices.withLock { devices in
                devices[deviceID]?.allHeads ?? []
            }
            var removed = 0
            try commitLock.withWriteLock {
                try store.write(durable: false) { writer in
                    for head in heads {
                        let chunks = try writer.chunks(series: head.id, from: .min, to: .max)
                        var run: [StoredChunk] = []
                        func flush() throws {
                            defer { run.removeAll() }
                            guard run.count > 1 else { return }
                            var timestamps: [Int64] = []
                            var values: [TelemetryValue] = []
                            for chunk in run {
                                let (chunkTimestamps, column) = try TimeSeriesChunkCodec.decode(chunk.data)
                                timestamps += chunkTimestamps
                                for index in chunkTimestamps.indices { values.append(column.value(at: index)) }
                                try writer.deleteChunk(series: head.id, start: chunk.start)
                            }
                            try writer.putChunk(series: head.id, StoredChunk(encoding: timestamps, Self.column(head.type, values)))
                            removed += run.count - 1
                        }
                        for chunk in chunks {
                            let total = run.reduce(0) { $0 + $1.count }
                            if chunk.count < small && total + chunk.count <= configuration.chunkSamples {
                                run.append(chunk)
                            } else {
                                try flush()
                                if chunk.count < small { run.append(chunk) }
                            }
                        }
                        try flush()
                    }
                }
            }
            return removed
        }
    }
}

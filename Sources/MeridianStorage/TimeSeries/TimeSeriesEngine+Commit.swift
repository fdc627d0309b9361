import Logging
import MeridianCore
import Synchronization

extension TimeSeriesEngine {
    /// One write to the store by the writer: new series rows, sealed heads (chunk + rollups),
    /// late samples merged into their chunks (rollups recomputed), head snapshots and latest
    /// values; then the heads change to match, all under the commit lock.
    func commit(
        _ state: inout WriterState, seal: [SeriesHead], merge: [SeriesHead], snapshot: [SeriesHead],
        latest: [(deviceID: String, key: String, point: TelemetryPoint)], durable: Bool
    ) throws {
        let unsaved = state.unsaved
        try commitLock.withWriteLock {
            var sealedEnds: [(SeriesHead, Int64)] = []
            try store.write(durable: durable) { storeWriter in
                // Sent in a few statements at the end; the rollups the seals extend are
                // fetched in one read first.
                let writer = BufferedChunkWriter(base: storeWriter)
                try writer.prefetchRollups(Self.rollupKeys(sealing: seal))
                for head in unsaved { try writer.saveSeries(head.stored) }
                for head in seal where head.count > 0 {
                    let end = try sealHead(head, writer)
                    sealedEnds.append((head, end))
                }
                for head in merge where !head.late.isEmpty {
                    try mergeLate(head, writer)
                }
                for head in snapshot where head.dirty {
                    if head.count > 0 {
                        try writer.putHead(series: head.id, data: TimeSeriesChunkCodec.encode(timestamps: head.timestamps, values: head.column))
                    } else if head.hasSnapshot {
                        try writer.deleteHead(series: head.id)
                    }
                }
                for entry in latest { try writer.putLatest(deviceID: entry.deviceID, key: entry.key, point: entry.point) }
                try writer.flush()
            }
            // The store has it all: now the heads.
            for head in unsaved { head.saved = true }
            for (head, end) in sealedEnds {
                shard(head.deviceID).devices.withLock { _ in
                    head.sealed(through: end)
                    head.hasSnapshot = false
                }
            }
            for head in merge {
                shard(head.deviceID).devices.withLock { _ in head.late.removeAll() }
            }
            for head in snapshot {
                shard(head.deviceID).devices.withLock { _ in
                    if head.dirty {
                        head.hasSnapshot = head.count > 0
                        head.dirty = false
                    }
                }
            }
        }
        state.unsaved.removeAll { $0.saved }
    }

    /// The rollup chunks sealing `heads` extends.
    static func rollupKeys(sealing heads: [SeriesHead]) -> [RollupKey] {
        var keys: [RollupKey] = []
        for head in heads where head.type == .number && head.count > 0 {
            let first = head.timestamp(at: 0)
            let last = head.timestamp(at: head.count - 1)
            for tier in RollupTier.allCases {
                var period = bucketStart(first, tier.period)
                while period <= last {
                    keys.append(RollupKey(series: head.id, tier: tier, period: period))
                    period += tier.period
                }
            }
        }
        return keys
    }

    /// Writes the head as a chunk and folds it into the rollups; returns its last timestamp.
    private func sealHead(_ head: SeriesHead, _ writer: any TimeSeriesChunkWriter) throws -> Int64 {
        let timestamps = head.timestamps
        let end = timestamps[timestamps.count - 1]
        try putChunks(series: head.id, timestamps, writer) { range in
            range.count == timestamps.count ? head.column : Self.column(head.type, range.lazy.map { head.value(at: $0) })
        }
        var stored = head.stored
        stored.sealedEnd = end
        try writer.saveSeries(stored)
        if head.hasSnapshot { try writer.deleteHead(series: head.id) }
        if head.type == .number {
            for tier in RollupTier.allCases {
                let buckets = rollUp(timestamps: timestamps, values: head.numbers, width: tier.width)
                try foldRollups(buckets, series: head.id, tier: tier, writer, replacing: nil)
            }
        }
        return end
    }

    /// Adds buckets to (or, with `replacing`, replaces that range of) a series' rollup chunks.
    func foldRollups(
        _ buckets: [(Int64, RollupBucket)], series: Int64, tier: RollupTier, _ writer: any TimeSeriesChunkWriter, replacing: ClosedRange<Int64>?
    ) throws {
        var byPeriod: [(Int64, [(Int64, RollupBucket)])] = []
        for bucket in buckets {
            let period = bucketStart(bucket.0, tier.period)
            if let last = byPeriod.last, last.0 == period {
                byPeriod[byPeriod.count - 1].1.append(bucket)
            } else {
                byPeriod.append((period, [bucket]))
            }
        }
        if let replacing {
            // Periods the range touches but that got no bucket still lose the range's old buckets.
            var period = bucketStart(replacing.lowerBound, tier.period)
            while period <= replacing.upperBound {
                if !byPeriod.contains(where: { $0.0 == period }) { byPeriod.append((period, [])) }
                period += tier.period
            }
        }
        for (period, periodBuckets) in byPeriod {
            var chunk = try writer.rollup(series: series, tier: tier, period: period).map { try RollupChunk.decode($0) } ?? RollupChunk()
            if let replacing {
                chunk.replace(periodBuckets, clearing: replacing)
            } else {
                chunk.append(periodBuckets)
            }
            if chunk.isEmpty {
                try writer.deleteRollup(series: series, tier: tier, period: period)
            } else {
                try writer.putRollup(series: series, tier: tier, period: period, data: chunk.encode())
            }
        }
    }

    /// Merges samples older than the sealed data into the chunks that cover them (last write
    /// wins) and recomputes the rollup buckets they touch from the raw data.
    private func mergeLate(_ head: SeriesHead, _ writer: any TimeSeriesChunkWriter) throws {
        // Sort by time; for equal times the later write (later in the list) wins.
        let late = head.late.enumerated().sorted { a, b in a.element.0 != b.element.0 ? a.element.0 < b.element.0 : a.offset < b.offset }.map(\.element)
        var incoming: [(Int64, TelemetryValue)] = []
        for sample in late {
            if let last = incoming.last, last.0 == sample.0 { incoming[incoming.count - 1] = sample } else { incoming.append(sample) }
        }
        guard let low = incoming.first?.0, let high = incoming.last?.0 else { return }
        let existing = try writer.chunks(series: head.id, from: low, to: high)
        var timestamps: [Int64] = []
        var values: [TelemetryValue] = []
        for chunk in existing {
            let (chunkTimestamps, column) = try TimeSeriesChunkCodec.decode(chunk.data)
            for (index, timestamp) in chunkTimestamps.enumerated() {
                timestamps.append(timestamp)
                values.append(column.value(at: index))
            }
            try writer.deleteChunk(series: head.id, start: chunk.start)
        }
        // Merge the two sorted lists; incoming wins ties.
        var mergedTimestamps: [Int64] = []
        var mergedValues: [TelemetryValue] = []
        mergedTimestamps.reserveCapacity(timestamps.count + incoming.count)
        var i = 0
        var j = 0
        while i < timestamps.count || j < incoming.count {
            if j == incoming.count || (i < timestamps.count && timestamps[i] < incoming[j].0) {
                mergedTimestamps.append(timestamps[i])
                mergedValues.append(values[i])
                i += 1
            } else {
                if i < timestamps.count && timestamps[i] == incoming[j].0 { i += 1 }
                mergedTimestamps.append(incoming[j].0)
                mergedValues.append(incoming[j].1)
                j += 1
            }
        }
        try putChunks(series: head.id, mergedTimestamps, writer) { range in Self.column(head.type, mergedValues[range]) }
        guard head.type == .number else { return }
        for tier in RollupTier.allCases {
            let range = bucketStart(low, tier.width)...(bucketStart(high, tier.width) + tier.width - 1)
            let chunks = try writer.chunks(series: head.id, from: range.lowerBound, to: range.upperBound)
            var rawTimestamps: [Int64] = []
            var rawValues: [Double] = []
            for chunk in chunks {
                let (chunkTimestamps, column) = try TimeSeriesChunkCodec.decode(chunk.data)
                guard case .numbers(let numbers) = column else { continue }
                for (index, timestamp) in chunkTimestamps.enumerated() where range.contains(timestamp) {
                    rawTimestamps.append(timestamp)
                    rawValues.append(numbers[index])
                }
            }
            let buckets = rollUp(timestamps: rawTimestamps, values: rawValues, width: tier.width)
            try foldRollups(buckets, series: head.id, tier: tier, writer, replacing: range)
        }
    }

    /// Writes sorted samples as chunks: one chunk when they fit in twice the chunk size (the
    /// codec takes at most 65,536), else chunk-sized pieces. `column` gives the values of a range.
    func putChunks(series: Int64, _ timestamps: [Int64], _ writer: any TimeSeriesChunkWriter, column: (Range<Int>) -> TimeSeriesColumn) throws {
        let size = timestamps.count <= 2 * configuration.chunkSamples ? timestamps.count : configuration.chunkSamples
        var start = 0
        while start < timestamps.count {
            let stop = min(start + size, timestamps.count)
            try writer.putChunk(series: series, StoredChunk(encoding: Array(timestamps[start..<stop]), column(start..<stop)))
            start = stop
        }
    }

    static func column(_ type: TelemetryValueType, _ values: some Collection<TelemetryValue>) -> TimeSeriesColumn {
        switch type {
        case .number:
            return .numbers(values.map { if case .number(let value) = $0 { value } else { .nan } })
        case .bool:
            return .bools(values.map { if case .bool(let value) = $0 { value } else { false } })
        case .string:
            return .strings(values.map { if case .string(let value) = $0 { value } else { "" } })
        }
    }

    // MARK: checkpoint

    /// Snapshots every changed head and latest value into the store (fsynced), seals heads idle
    /// for longer than ``Configuration/idleSealAfter``, and removes WAL segments no longer needed.
    public func checkpoint() throws {
        try writer.withLock { state in try checkpoint(&state) }
    }

    func checkpoint(_ state: inout WriterState) throws {
        let obsolete = try state.wal.rotate()
        let now = clock()
        var seal: [SeriesHead] = []
        var snapshot: [SeriesHead] = []
        var latest: [(deviceID: String, key: String, point: TelemetryPoint)] = []
        for shard in shards {
            shard.devices.withLock { devices in
                for (deviceID, device) in devices {
                    for key in device.byKey.values {
                        for head in key.heads {
                            // Idle heads, and full ones an earlier failed write left behind.
                            if head.count > 0 && (now - head.lastWrite >= configuration.idleSealAfter || head.count >= configuration.chunkSamples) {
                                seal.append(head)
                            } else if head.dirty {
                                snapshot.append(head)
                            }
                        }
                    }
                    for (key, point) in device.takeDirtyLatest() { latest.append((deviceID, key, point)) }
                }
            }
        }
        let late = state.headsByID.values.filter { !$0.late.isEmpty }
        do {
            try commit(&state, seal: seal, merge: late, snapshot: snapshot, latest: latest, durable: true)
        } catch {
            // Keep the latest values dirty so the next checkpoint writes them.
            for entry in latest {
                shard(entry.deviceID).devices.withLock { devices in
                    if let device = devices[entry.deviceID] { device.markDirty(device.key(entry.key)) }
                }
            }
            throw error
        }
        state.wal.removeSegments(through: obsolete)
    }

    /// Bytes on disk: the store and the WAL.
    public func sizeOnDisk() -> Int {
        let wal = writer.withLock { state in state.wal.totalSize() }
        return store.sizeOnDisk() + wal
    }
}

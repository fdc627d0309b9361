import MeridianCore
import Synchronization

extension TimeSeriesEngine {
    /// What a query needs of one head, copied under its shard lock.
    struct HeadView {
        var id: Int64
        var type: TelemetryValueType
        var sealedEnd: Int64
        var points: [TelemetryPoint]
    }

    /// The newest value of each key of each device.
    public func latest(deviceIDs: [String]) -> [String: [String: TelemetryPoint]] {
        var result: [String: [String: TelemetryPoint]] = [:]
        result.reserveCapacity(deviceIDs.count)
        for deviceID in deviceIDs {
            let latest = shard(deviceID).devices.withLock { devices in devices[deviceID]?.latestValues }
            if let latest, !latest.isEmpty { result[deviceID] = latest }
        }
        return result
    }

    /// Those of `deviceIDs` that have telemetry and belong to `tenantID`, in the given order.
    public func devices(in tenantID: String, among deviceIDs: [String]) -> [String] {
        deviceIDs.filter { deviceID in
            shard(deviceID).devices.withLock { devices in devices[deviceID]?.tenantID == tenantID }
        }
    }

    /// The keys a device has telemetry for, sorted.
    public func keys(deviceID: String) -> [String] {
        shard(deviceID).devices.withLock { devices in devices[deviceID].map { Array($0.byKey.keys) } ?? [] }.sorted()
    }

    /// Copies the heads of the device's keys that overlap `from...to`.
    private func views(deviceID: String, keys: [String]?, from: Int64, to: Int64) -> [(String, [HeadView])] {
        shard(deviceID).devices.withLock { devices in
            guard let device = devices[deviceID] else { return [] }
            let wanted = keys ?? device.byKey.keys.sorted()
            return wanted.map { key in
                let heads = device.byKey[key]?.heads ?? []
                return (key, heads.map { HeadView(id: $0.id, type: $0.type, sealedEnd: $0.sealedEnd, points: $0.points(from: from, to: to)) })
            }
        }
    }

    /// Raw points in `from...to`, oldest first, at most `limit` per key.
    public func range(_ query: TelemetryRangeQuery) throws -> TelemetryRangeResult {
        let limit = max(1, query.limit)
        return try commitLock.withReadLock {
            var result = TelemetryRangeResult(points: [:], next: [:])
            for (key, heads) in views(deviceID: query.deviceID, keys: query.keys, from: query.from, to: query.to) {
                let from = query.after[key].map { max(query.from, $0 &+ 1) } ?? query.from
                guard from <= query.to else { continue }
                var points: [TelemetryPoint] = []
                for head in heads {
                    var headPoints: [TelemetryPoint] = []
                    if head.sealedEnd >= from {
                        for chunk in try store.chunks(series: head.id, from: from, to: min(query.to, head.sealedEnd)) {
                            let (timestamps, column) = try TimeSeriesChunkCodec.decode(chunk.data)
                            for (index, timestamp) in timestamps.enumerated() where timestamp >= from && timestamp <= query.to {
                                headPoints.append(TelemetryPoint(timestamp: timestamp, value: column.value(at: index)))
                            }
                            // One series alone: stop decoding once the page is full.
                            if heads.count == 1 && headPoints.count > limit { break }
                        }
                    }
                    headPoints.append(contentsOf: head.points.lazy.filter { $0.timestamp >= from })
                    points = points.isEmpty ? headPoints : Self.mergeByTime(points, headPoints)
                }
                if points.count > limit {
                    points.removeSubrange(limit...)
                    result.next[key] = points[limit - 1].timestamp
                }
                if !points.isEmpty { result.points[key] = points }
            }
            return result
        }
    }

    static func mergeByTime(_ a: [TelemetryPoint], _ b: [TelemetryPoint]) -> [TelemetryPoint] {
        var result: [TelemetryPoint] = []
        result.reserveCapacity(a.count + b.count)
        var i = 0
        var j = 0
        while i < a.count || j < b.count {
            if j == b.count || (i < a.count && a[i].timestamp <= b[j].timestamp) {
                result.append(a[i])
                i += 1
            } else {
                result.append(b[j])
                j += 1
            }
        }
        return result
    }

    /// Aggregates per bucket of `interval` ms (aligned to multiples since 1970), choosing the
    /// coarsest rollup tier that divides the interval for whole tier buckets inside the range and
    /// raw data for the edges and the unsealed heads.
    public func aggregate(_ query: TelemetryAggregateQuery) throws -> [String: [TelemetryPoint]] {
        let interval = max(1, query.interval)
        return try commitLock.withReadLock {
            var result: [String: [TelemetryPoint]] = [:]
            for (key, heads) in views(deviceID: query.deviceID, keys: query.keys, from: query.from, to: query.to) {
                let numberHead = heads.first { $0.type == .number }
                var points: [TelemetryPoint] = []
                if let head = numberHead {
                    let buckets = try numberBuckets(head, from: query.from, to: query.to, interval: interval)
                    points = buckets.map { TelemetryPoint(timestamp: $0.0, value: .number($0.1.value(query.aggregation))) }
                } else if !query.aggregation.needsNumbers, let head = heads.first {
                    points = try genericBuckets(head, from: query.from, to: query.to, interval: interval, aggregation: query.aggregation)
                }
                if !points.isEmpty { result[key] = points }
            }
            return result
        }
    }

    private func numberBuckets(_ head: HeadView, from: Int64, to: Int64, interval: Int64) throws -> [(Int64, RollupBucket)] {
        var output: [(Int64, RollupBucket)] = []
        func add(_ start: Int64, _ bucket: RollupBucket) {
            let target = bucketStart(start, interval)
            if let last = output.last, last.0 == target {
                output[output.count - 1].1.append(bucket)
            } else {
                output.append((target, bucket))
            }
        }
        func addRaw(from: Int64, to: Int64) throws {
            guard from <= to else { return }
            for chunk in try store.chunks(series: head.id, from: from, to: to) {
                let (timestamps, column) = try TimeSeriesChunkCodec.decode(chunk.data)
                guard case .numbers(let values) = column else { continue }
                for (index, timestamp) in timestamps.enumerated() where timestamp >= from && timestamp <= to {
                    add(timestamp, RollupBucket(values[index]))
                }
            }
        }
        let sealedTo = min(to, head.sealedEnd)
        if from <= sealedTo {
            let tier = RollupTier.allCases.reversed().first { interval % $0.width == 0 }
            if let tier {
                let width = tier.width
                let tierStart = bucketStart(from, width) == from ? from : bucketStart(from, width) + width
                let tierEnd = bucketStart(to &+ 1, width)  // exclusive
                if tierStart < tierEnd {
                    try addRaw(from: from, to: min(sealedTo, tierStart - 1))
                    let periods = try store.rollups(
                        series: head.id, tier: tier, fromPeriod: bucketStart(tierStart, tier.period), toPeriod: bucketStart(tierEnd - 1, tier.period)
                    )
                    for (_, data) in periods {
                        let chunk = try RollupChunk.decode(data)
                        for (index, start) in chunk.starts.enumerated() where start >= tierStart && start < tierEnd {
                            add(start, chunk.buckets[index])
                        }
                    }
                    try addRaw(from: tierEnd, to: sealedTo)
                } else {
                    try addRaw(from: from, to: sealedTo)
                }
            } else {
                try addRaw(from: from, to: sealedTo)
            }
        }
        for point in head.points {
            if case .number(let value) = point.value { add(point.timestamp, RollupBucket(value)) }
        }
        return output
    }

    private func genericBuckets(_ head: HeadView, from: Int64, to: Int64, interval: Int64, aggregation: TelemetryAggregation) throws -> [TelemetryPoint] {
        var output: [(start: Int64, count: Int, first: TelemetryValue, last: TelemetryValue)] = []
        func add(_ timestamp: Int64, _ value: TelemetryValue) {
            let start = bucketStart(timestamp, interval)
            if let last = output.last, last.start == start {
                output[output.count - 1].count += 1
                output[output.count - 1].last = value
            } else {
                output.append((start, 1, value, value))
            }
        }
        if from <= min(to, head.sealedEnd) {
            for chunk in try store.chunks(series: head.id, from: from, to: min(to, head.sealedEnd)) {
                let (timestamps, column) = try TimeSeriesChunkCodec.decode(chunk.data)
                for (index, timestamp) in timestamps.enumerated() where timestamp >= from && timestamp <= to {
                    add(timestamp, column.value(at: index))
                }
            }
        }
        for point in head.points { add(point.timestamp, point.value) }
        return output.map { bucket in
            switch aggregation {
            case .first: TelemetryPoint(timestamp: bucket.start, value: bucket.first)
            case .last: TelemetryPoint(timestamp: bucket.start, value: bucket.last)
            default: TelemetryPoint(timestamp: bucket.start, value: .number(Double(bucket.count)))
            }
        }
    }
}

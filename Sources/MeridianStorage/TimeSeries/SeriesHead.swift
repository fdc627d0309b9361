import MeridianCore

/// The unsealed tail of one series, in memory: sorted, de-duplicated samples newer than
/// everything sealed. Guarded by its device's shard lock; only the engine's writer mutates it.
final class SeriesHead: @unchecked Sendable {
    let id: Int64
    let tenantID: String
    let deviceID: String
    let key: String
    let type: TelemetryValueType

    private(set) var timestamps: [Int64] = []
    private(set) var numbers: [Double] = []
    private(set) var bools: [Bool] = []
    private(set) var strings: [String] = []

    /// Newest sealed timestamp (`Int64.min`: nothing sealed).
    var sealedEnd: Int64
    /// Samples at or before `sealedEnd` waiting to be merged into their chunks by the writer.
    var late: [(Int64, TelemetryValue)] = []
    /// Changed since its last snapshot.
    var dirty = false
    /// Whether the store holds a snapshot row for it.
    var hasSnapshot = false
    /// Whether the store has its series row.
    var saved = false
    /// Engine clock (ms) of the last append, for idle sealing.
    var lastWrite: Int64 = 0

    init(id: Int64, tenantID: String, deviceID: String, key: String, type: TelemetryValueType, sealedEnd: Int64) {
        self.id = id
        self.tenantID = tenantID
        self.deviceID = deviceID
        self.key = key
        self.type = type
        self.sealedEnd = sealedEnd
    }

    var count: Int { timestamps.count }

    var stored: StoredSeries {
        StoredSeries(id: id, tenantID: tenantID, deviceID: deviceID, key: key, type: type, sealedEnd: sealedEnd == .min ? nil : sealedEnd)
    }

    /// Adds a sample (last write wins for an equal timestamp). Returns false when the sample is
    /// older than the sealed data (the caller queues it in ``late``).
    @inline(__always)
    func insert(_ timestamp: Int64, _ value: TelemetryValue) -> Bool {
        if timestamp <= sealedEnd { return false }
        dirty = true
        if let last = timestamps.last, timestamp <= last {
            insertOutOfOrder(timestamp, value)
            return true
        }
        timestamps.append(timestamp)
        switch value {
        case .number(let number): numbers.append(number)
        case .bool(let bool): bools.append(bool)
        case .string(let string): strings.append(string)
        }
        return true
    }

    private func insertOutOfOrder(_ timestamp: Int64, _ value: TelemetryValue) {
        var low = 0
        var high = timestamps.count
        while low < high {
            let middle = (low + high) / 2
            if timestamps[middle] < timestamp { low = middle + 1 } else { high = middle }
        }
        let replace = low < timestamps.count && timestamps[low] == timestamp
        if !replace { timestamps.insert(timestamp, at: low) }
        switch value {
        case .number(let number): if replace { numbers[low] = number } else { numbers.insert(number, at: low) }
        case .bool(let bool): if replace { bools[low] = bool } else { bools.insert(bool, at: low) }
        case .string(let string): if replace { strings[low] = string } else { strings.insert(string, at: low) }
        }
    }

    /// The head's values as a codec column.
    var column: TimeSeriesColumn {
        switch type {
        case .number: .numbers(numbers)
        case .bool: .bools(bools)
        case .string: .strings(strings)
        }
    }

    /// Loads a snapshot (start-up), keeping only samples newer than the sealed data.
    func restore(timestamps: [Int64], column: TimeSeriesColumn) {
        for (index, timestamp) in timestamps.enumerated() {
            _ = insert(timestamp, column.value(at: index))
        }
        dirty = false
        hasSnapshot = true
    }

    /// Empties the head after its samples were sealed up to `end`.
    func sealed(through end: Int64) {
        sealedEnd = end
        timestamps.removeAll(keepingCapacity: false)
        numbers.removeAll(keepingCapacity: false)
        bools.removeAll(keepingCapacity: false)
        strings.removeAll(keepingCapacity: false)
        dirty = false
    }

    /// Samples in `from...to` as points, oldest first.
    func points(from: Int64, to: Int64) -> [TelemetryPoint] {
        guard let first = timestamps.first, let last = timestamps.last, last >= from, first <= to else { return [] }
        var result: [TelemetryPoint] = []
        let start = lowerBound(from)
        var index = start
        while index < timestamps.count, timestamps[index] <= to {
            result.append(TelemetryPoint(timestamp: timestamps[index], value: value(at: index)))
            index += 1
        }
        return result
    }

    func lowerBound(_ timestamp: Int64) -> Int {
        var low = 0
        var high = timestamps.count
        while low < high {
            let middle = (low + high) / 2
            if timestamps[middle] < timestamp { low = middle + 1 } else { high = middle }
        }
        return low
    }

    @inline(__always)
    func value(at index: Int) -> TelemetryValue {
        switch type {
        case .number: .number(numbers[index])
        case .bool: .bool(bools[index])
        case .string: .string(strings[index])
        }
    }
}

extension TimeSeriesColumn {
    func value(at index: Int) -> TelemetryValue {
        switch self {
        case .numbers(let values): .number(values[index])
        case .bools(let values): .bool(values[index])
        case .strings(let values): .string(values[index])
        }
    }

    /// An empty column of a type.
    static func empty(_ type: TelemetryValueType) -> TimeSeriesColumn {
        switch type {
        case .number: .numbers([])
        case .bool: .bools([])
        case .string: .strings([])
        }
    }
}

/// One device's series and latest values, guarded by its shard's lock.
final class DeviceSeries: @unchecked Sendable {
    let tenantID: String
    /// Per key, its series (one per value type the key has had; almost always one).
    var series: [String: [SeriesHead]] = [:]
    /// Per key, the newest value (by timestamp; a later write wins a tie).
    var latest: [String: TelemetryPoint] = [:]
    /// Keys whose latest value changed since the last checkpoint.
    var latestDirty: Set<String> = []

    init(tenantID: String) {
        self.tenantID = tenantID
    }

    @inline(__always)
    func head(_ key: String, _ type: TelemetryValueType) -> SeriesHead? {
        guard let heads = series[key] else { return nil }
        for head in heads where head.type == type { return head }
        return nil
    }

    @inline(__always)
    func updateLatest(_ key: String, _ timestamp: Int64, _ value: TelemetryValue) {
        if let current = latest[key], current.timestamp > timestamp { return }
        latest[key] = TelemetryPoint(timestamp: timestamp, value: value)
        latestDirty.insert(key)
    }
}

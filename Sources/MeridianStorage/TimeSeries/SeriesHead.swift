import MeridianCore

/// The unsealed tail of one series, in memory: sorted, de-duplicated samples newer than
/// everything sealed. Guarded by its device's shard lock; only the engine's writer mutates it.
///
/// Samples sit in one buffer of (timestamp, number) pairs with the count in the object: an
/// append in order touches the object and one place in the buffer, which matters when a batch
/// touches thousands of heads that are no longer in the CPU's caches. Booleans and strings keep
/// their values in arrays beside it (the pair's number is unused for them).
final class SeriesHead: @unchecked Sendable {
    let id: Int64
    let tenantID: String
    let deviceID: String
    let key: String
    let type: TelemetryValueType

    private struct Entry {
        var timestamp: Int64
        var number: Double
    }

    /// Samples held.
    private(set) var count = 0
    private var capacity = 0
    private var entries: UnsafeMutablePointer<Entry>?
    private var bools: [Bool] = []
    private var strings: [String] = []

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

    deinit {
        entries?.deallocate()
    }

    var stored: StoredSeries {
        StoredSeries(id: id, tenantID: tenantID, deviceID: deviceID, key: key, type: type, sealedEnd: sealedEnd == .min ? nil : sealedEnd)
    }

    /// The samples' timestamps, oldest first.
    var timestamps: [Int64] {
        guard let entries else { return [] }
        return (0..<count).map { entries[$0].timestamp }
    }

    /// The samples' values of a number series, oldest first.
    var numbers: [Double] {
        guard let entries, type == .number else { return [] }
        return (0..<count).map { entries[$0].number }
    }

    @inline(__always)
    func timestamp(at index: Int) -> Int64 {
        entries.unsafelyUnwrapped[index].timestamp
    }

    /// Adds a sample (last write wins for an equal timestamp). Returns false when the sample is
    /// older than the sealed data (the caller queues it in ``late``).
    @inline(__always)
    func insert(_ timestamp: Int64, _ value: TelemetryValue) -> Bool {
        if timestamp <= sealedEnd { return false }
        dirty = true
        if count > 0, timestamp <= entries.unsafelyUnwrapped[count - 1].timestamp {
            insertOutOfOrder(timestamp, value)
            return true
        }
        if count == capacity { grow() }
        var number = 0.0
        switch value {
        case .number(let value): number = value
        case .bool(let bool): bools.append(bool)
        case .string(let string): strings.append(string)
        }
        (entries.unsafelyUnwrapped + count).initialize(to: Entry(timestamp: timestamp, number: number))
        count += 1
        return true
    }

    private func grow() {
        let newCapacity = max(8, capacity * 2)
        let grown = UnsafeMutablePointer<Entry>.allocate(capacity: newCapacity)
        if let entries {
            grown.moveInitialize(from: entries, count: count)
            entries.deallocate()
        }
        entries = grown
        capacity = newCapacity
    }

    private func insertOutOfOrder(_ timestamp: Int64, _ value: TelemetryValue) {
        let low = lowerBound(timestamp)
        let replace = low < count && entries.unsafelyUnwrapped[low].timestamp == timestamp
        var number = 0.0
        switch value {
        case .number(let value): number = value
        case .bool(let bool): if replace { bools[low] = bool } else { bools.insert(bool, at: low) }
        case .string(let string): if replace { strings[low] = string } else { strings.insert(string, at: low) }
        }
        if replace {
            entries.unsafelyUnwrapped[low].number = number
            return
        }
        if count == capacity { grow() }
        let base = entries.unsafelyUnwrapped
        (base + low + 1).moveInitialize(from: base + low, count: count - low)
        (base + low).initialize(to: Entry(timestamp: timestamp, number: number))
        count += 1
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
        entries?.deallocate()
        entries = nil
        count = 0
        capacity = 0
        bools.removeAll(keepingCapacity: false)
        strings.removeAll(keepingCapacity: false)
        dirty = false
    }

    /// Samples in `from...to` as points, oldest first.
    func points(from: Int64, to: Int64) -> [TelemetryPoint] {
        guard count > 0, timestamp(at: count - 1) >= from, timestamp(at: 0) <= to else { return [] }
        var result: [TelemetryPoint] = []
        var index = lowerBound(from)
        while index < count, timestamp(at: index) <= to {
            result.append(TelemetryPoint(timestamp: timestamp(at: index), value: value(at: index)))
            index += 1
        }
        return result
    }

    func lowerBound(_ timestamp: Int64) -> Int {
        var low = 0
        var high = count
        while low < high {
            let middle = (low + high) / 2
            if self.timestamp(at: middle) < timestamp { low = middle + 1 } else { high = middle }
        }
        return low
    }

    @inline(__always)
    func value(at index: Int) -> TelemetryValue {
        switch type {
        case .number: .number(entries.unsafelyUnwrapped[index].number)
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
/// One key of a device: its series (one per value type the key has had; almost always one) and
/// its newest value. Guarded, like its heads, by the device's shard lock.
final class DeviceKey: @unchecked Sendable {
    let name: String
    private(set) var heads: [SeriesHead] = []
    /// The head of the type the key had last (what the next sample most likely needs).
    private(set) var current: SeriesHead?
    /// The newest value (by timestamp; a later write wins a tie).
    var latest: TelemetryPoint?
    /// Whether ``latest`` changed since the last checkpoint (the key is then in its device's
    /// ``DeviceSeries/dirtyKeys``).
    var latestDirty = false

    init(name: String) {
        self.name = name
    }

    func add(_ head: SeriesHead) {
        heads.append(head)
        current = head
    }

    @inline(__always)
    func head(_ type: TelemetryValueType) -> SeriesHead? {
        if let current, current.type == type { return current }
        for head in heads where head.type == type {
            current = head
            return head
        }
        return nil
    }
}

/// A device's keys. Per sample the writer needs a key's head and its latest value; devices send
/// the same keys in the same order message after message, so the keys of the previous message
/// are remembered (``recent``) and a message that repeats them is placed without hashing a key.
final class DeviceSeries: @unchecked Sendable {
    let tenantID: String
    private(set) var byKey: [String: DeviceKey] = [:]
    /// Keys whose latest value changed since the last checkpoint.
    private(set) var dirtyKeys: [DeviceKey] = []
    /// The keys of the previous message, in its order.
    private var recent: [DeviceKey] = []

    init(tenantID: String) {
        self.tenantID = tenantID
    }

    /// The key's record, created if new.
    func key(_ name: String) -> DeviceKey {
        if let key = byKey[name] { return key }
        let key = DeviceKey(name: name)
        byKey[name] = key
        return key
    }

    /// The keys of `samples`, in order, if they are those of the previous message.
    @inline(__always)
    func recentKeys(matching samples: [TelemetrySample]) -> [DeviceKey]? {
        guard samples.count == recent.count else { return nil }
        for index in samples.indices where samples[index].key != recent[index].name { return nil }
        return recent
    }

    /// Remembers the keys of the message just placed.
    func remember(_ keys: [DeviceKey]) {
        recent = keys
    }

    @inline(__always)
    func updateLatest(_ key: DeviceKey, _ timestamp: Int64, _ value: TelemetryValue) {
        if let current = key.latest, current.timestamp > timestamp { return }
        key.latest = TelemetryPoint(timestamp: timestamp, value: value)
        markDirty(key)
    }

    func markDirty(_ key: DeviceKey) {
        guard !key.latestDirty else { return }
        key.latestDirty = true
        dirtyKeys.append(key)
    }

    /// The dirty keys' latest values; they are clean afterwards.
    func takeDirtyLatest() -> [(key: String, point: TelemetryPoint)] {
        var result: [(key: String, point: TelemetryPoint)] = []
        result.reserveCapacity(dirtyKeys.count)
        for key in dirtyKeys {
            key.latestDirty = false
            if let point = key.latest { result.append((key.name, point)) }
        }
        dirtyKeys.removeAll()
        return result
    }

    /// Every key's newest value.
    var latestValues: [String: TelemetryPoint] {
        var result: [String: TelemetryPoint] = [:]
        result.reserveCapacity(byKey.count)
        for (name, key) in byKey {
            if let point = key.latest { result[name] = point }
        }
        return result
    }

    /// Every head of every key.
    var allHeads: [SeriesHead] { byKey.values.flatMap(\.heads) }
}

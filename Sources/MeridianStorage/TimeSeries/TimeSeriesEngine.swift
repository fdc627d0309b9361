import Foundation
import Logging
import MeridianCore
import Synchronization

/// Meridian's embedded time-series engine. One series per (device, key, value type); each has an
/// in-memory head (recorded first in a write-ahead log), sealed into compressed chunks (see
/// ``TimeSeriesChunkCodec``) kept as blobs in a store — embedded SQLite, or PostgreSQL
/// (``PostgresChunkStore``) — with 1-minute and 1-hour rollups
/// maintained as chunks are sealed. A checkpoint snapshots the heads and latest values into the
/// store and drops the WAL segments that are no longer needed.
///
/// Appends come from one writer at a time (the ingest pipeline's); queries may run on any
/// thread at the same time.
public final class TimeSeriesEngine: Sendable {
    /// Why the engine could not open its directory.
    public struct OpenError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Tuning; the defaults suit 1 Hz sensors.
    public struct Configuration: Sendable {
        /// A head is sealed into a chunk when it holds this many samples.
        public var chunkSamples: Int = 1024
        /// A head not written to for this long (ms) is sealed at the next checkpoint.
        public var idleSealAfter: Int64 = 3_600_000
        /// Default retention (tenants and profiles may override it).
        public var retention: TelemetryRetention = .standard

        public init() {}
    }

    static let shardCount = 16

    final class Shard: Sendable {
        let devices = Mutex<[String: DeviceSeries]>([:])
    }

    struct WriterState: ~Copyable {
        var wal: TimeSeriesWAL
        var nextSeriesID: Int64 = 1
        var headsByID: [Int64: SeriesHead] = [:]
        /// Series not yet in the store's series table.
        var unsaved: [SeriesHead] = []
        /// Series whose definition is not yet in the WAL.
        var undefined: [SeriesHead] = []
    }

    let configuration: Configuration
    let store: any TimeSeriesChunkStore
    let shards: [Shard]
    let writer: Mutex<WriterState>
    /// Queries read heads and store under the read side; the writer's commits (store write plus
    /// head changes) take the write side, so a query never sees a sample twice or not at all.
    let commitLock = ReadWriteLock()
    let logger: Logger
    /// Milliseconds since 1970 (a parameter for tests).
    let clock: @Sendable () -> Int64
    let directory: String

    /// Opens (creating if needed) the engine's files in `directory` (`telemetry.sqlite` and
    /// `telemetry-wal/`), loads the series and replays the WAL.
    public convenience init(directory: String, configuration: Configuration = Configuration(), logger: Logger) throws {
        try self.init(directory: directory, configuration: configuration, logger: logger, clock: { Int64(Date().timeIntervalSince1970 * 1000) })
    }

    /// Opens the engine with its chunks, rollups, head snapshots, latest values and retention
    /// overrides in PostgreSQL (`store`); `directory` (created if needed) holds only the WAL
    /// (`telemetry-wal/`). Loads the series and replays the WAL.
    ///
    /// Blocks on the database: call it from a thread of its own, never from Swift's cooperative
    /// pool (and so the engine's other methods, as always).
    public convenience init(
        directory: String, store: PostgresChunkStore, configuration: Configuration = Configuration(), logger: Logger
    ) throws {
        try self.init(
            directory: directory, store: store, configuration: configuration, logger: logger, clock: { Int64(Date().timeIntervalSince1970 * 1000) }
        )
    }

    /// The engine on SQLite: `telemetry.sqlite` in `directory`.
    convenience init(directory: String, configuration: Configuration, logger: Logger, clock: @escaping @Sendable () -> Int64) throws {
        try TimeSeriesEngine.createDirectory(directory)
        let store = try SQLiteChunkStore(path: directory + "/telemetry.sqlite")
        try self.init(directory: directory, store: store, configuration: configuration, logger: logger, clock: clock)
    }

    /// The engine on any store; `directory` holds the WAL.
    init(
        directory: String, store: any TimeSeriesChunkStore, configuration: Configuration, logger: Logger, clock: @escaping @Sendable () -> Int64
    ) throws {
        try TimeSeriesEngine.createDirectory(directory)
        self.directory = directory
        self.configuration = configuration
        self.logger = logger
        self.clock = clock
        self.store = store
        self.shards = (0..<Self.shardCount).map { _ in Shard() }
        let wal: TimeSeriesWAL
        do {
            wal = try TimeSeriesWAL(directory: directory + "/telemetry-wal", logger: logger)
        } catch {
            throw OpenError(description: "\(error)")
        }
        self.writer = Mutex(WriterState(wal: wal))
        do {
            try recover()
        } catch let error as OpenError {
            throw error
        } catch {
            throw OpenError(description: "cannot recover the telemetry store in \(directory): \(error)")
        }
    }

    private static func createDirectory(_ directory: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw OpenError(description: "cannot create the telemetry directory \(directory): \(error)")
        }
    }

    @inline(__always)
    func shard(_ deviceID: String) -> Shard {
        var hasher = Hasher()
        hasher.combine(deviceID)
        return shards[Int(UInt(bitPattern: hasher.finalize()) % UInt(Self.shardCount))]
    }

    // MARK: recovery

    private func recover() throws {
        let series = try store.allSeries()
        let heads = try store.allHeads()
        let latest = try store.allLatest()
        try writer.withLock { state in
            for stored in series {
                let head = SeriesHead(
                    id: stored.id, tenantID: stored.tenantID, deviceID: stored.deviceID, key: stored.key, type: stored.type,
                    sealedEnd: stored.sealedEnd ?? .min
                )
                head.saved = true
                register(head, in: &state)
            }
            for (id, data) in heads {
                guard let head = state.headsByID[id] else { continue }
                do {
                    let (timestamps, column) = try TimeSeriesChunkCodec.decode(data)
                    head.restore(timestamps: timestamps, column: column)
                } catch {
                    logger.error("telemetry head snapshot unreadable; its samples come from the WAL only", metadata: ["series.id": "\(id)", "error": "\(error)"])
                }
            }
            for entry in latest {
                shard(entry.deviceID).devices.withLock { devices in
                    devices[entry.deviceID]?.key(entry.key).latest = entry.point
                }
            }
            var replayed = 0
            try state.wal.replay { payload in
                replayed += try replayRecord(payload, state: &state)
            }
            if replayed > 0 {
                logger.info("telemetry WAL replayed", metadata: ["wal.samples": "\(replayed)"])
            }
            try checkpoint(&state)
        }
    }

    private func register(_ head: SeriesHead, in state: inout WriterState) {
        state.headsByID[head.id] = head
        state.nextSeriesID = max(state.nextSeriesID, head.id + 1)
        shard(head.deviceID).devices.withLock { devices in
            let device = devices[head.deviceID] ?? DeviceSeries(tenantID: head.tenantID)
            devices[head.deviceID] = device
            device.key(head.key).add(head)
        }
    }

    /// Applies one WAL record; returns the number of samples it held.
    private func replayRecord(_ payload: UnsafeRawBufferPointer, state: inout WriterState) throws -> Int {
        var reader = WALReader(bytes: payload)
        do {
            switch try reader.byte() {
            case WALRecord.series:
                let id = Int64(try reader.varint())
                guard let type = TelemetryValueType(rawValue: try reader.byte()) else { return 0 }
                let tenantID = try reader.string()
                let deviceID = try reader.string()
                let key = try reader.string()
                guard state.headsByID[id] == nil else { return 0 }
                let head = SeriesHead(id: id, tenantID: tenantID, deviceID: deviceID, key: key, type: type, sealedEnd: .min)
                register(head, in: &state)
                state.unsaved.append(head)
                return 0
            case WALRecord.samples:
                let count = Int(try reader.varint())
                var full: [SeriesHead] = []
                var late: [SeriesHead] = []
                for _ in 0..<count {
                    let id = Int64(try reader.varint())
                    let timestamp = try reader.signed()
                    guard let head = state.headsByID[id] else { throw WALReader.Truncated() }
                    let value: TelemetryValue
                    switch head.type {
                    case .number: value = .number(Double(bitPattern: try reader.fixed64()))
                    case .bool: value = .bool(try reader.byte() != 0)
                    case .string: value = .string(try reader.string())
                    }
                    shard(head.deviceID).devices.withLock { devices in
                        if let device = devices[head.deviceID] { device.updateLatest(device.key(head.key), timestamp, value) }
                        place(head, timestamp, value, full: &full, late: &late)
                    }
                }
                if !full.isEmpty || !late.isEmpty {
                    try commit(&state, seal: full, merge: late, snapshot: [], latest: [], durable: false)
                }
                return count
            case WALRecord.deleteDevice:
                let deviceID = try reader.string()
                try removeDevice(deviceID, state: &state)
                return 0
            default:
                throw WALReader.Truncated()
            }
        } catch is WALReader.Truncated {
            logger.error("telemetry WAL record not understood; skipped", metadata: ["wal.record_bytes": "\(payload.count)"])
            return 0
        }
    }

    enum WALRecord {
        static let series: UInt8 = 1
        static let samples: UInt8 = 2
        static let deleteDevice: UInt8 = 3
    }

    // MARK: appending

    /// Stores the messages' samples: recorded in the WAL (fsynced when `durable`), then added
    /// to the heads; full heads are sealed into chunks. When it returns, queries see them.
    public func append(_ messages: [DeviceMessage], durable: Bool = true) throws {
        try writer.withLock { state in
            try append(messages, durable: durable, state: &state)
        }
    }

    private func append(_ messages: [DeviceMessage], durable: Bool, state: inout WriterState) throws {
        let now = clock()
        var total = 0
        for message in messages { total += message.samples.count }
        guard total > 0 else { return }

        // Pass 1: find (or create) every sample's key and series.
        var heads: [SeriesHead] = []
        heads.reserveCapacity(total)
        var keys: [DeviceKey] = []
        keys.reserveCapacity(total)
        var devices: [DeviceSeries] = []
        devices.reserveCapacity(messages.count)
        for message in messages {
            let samples = message.samples
            let device: DeviceSeries = shard(message.deviceID).devices.withLock { shardDevices in
                let device: DeviceSeries
                if let known = shardDevices[message.deviceID] {
                    device = known
                } else {
                    device = DeviceSeries(tenantID: message.tenantID)
                    shardDevices[message.deviceID] = device
                }
                let messageKeys = device.recentKeys(matching: samples) ?? samples.map { device.key($0.key) }
                for (index, sample) in samples.enumerated() {
                    let key = messageKeys[index]
                    let type = sample.value.type
                    if let head = key.head(type) {
                        heads.append(head)
                    } else {
                        let head = SeriesHead(
                            id: state.nextSeriesID, tenantID: message.tenantID, deviceID: message.deviceID, key: sample.key, type: type, sealedEnd: .min
                        )
                        state.nextSeriesID += 1
                        key.add(head)
                        heads.append(head)
                        state.undefined.append(head)
                    }
                }
                keys.append(contentsOf: messageKeys)
                device.remember(messageKeys)
                return device
            }
            devices.append(device)
        }
        for head in state.undefined where state.headsByID[head.id] == nil {
            state.headsByID[head.id] = head
            state.unsaved.append(head)
        }

        // The WAL: series definitions, then the samples.
        var framed: [UInt8] = []
        framed.reserveCapacity(total * 20 + 64)
        for head in state.undefined {
            var record = WALWriter()
            record.bytes.append(WALRecord.series)
            record.varint(UInt64(head.id))
            record.bytes.append(head.type.rawValue)
            record.string(head.tenantID)
            record.string(head.deviceID)
            record.string(head.key)
            TimeSeriesWAL.frame(record.bytes, into: &framed)
        }
        var record = WALWriter()
        record.bytes.reserveCapacity(total * 18 + 8)
        record.bytes.append(WALRecord.samples)
        record.varint(UInt64(total))
        var index = 0
        for message in messages {
            for sample in message.samples {
                record.varint(UInt64(heads[index].id))
                record.signed(sample.timestamp)
                switch sample.value {
                case .number(let value): record.fixed64(value.bitPattern)
                case .bool(let value): record.bytes.append(value ? 1 : 0)
                case .string(let value): record.string(value)
                }
                index += 1
            }
        }
        TimeSeriesWAL.frame(record.bytes, into: &framed)
        try state.wal.append(framed)
        if durable { try state.wal.sync() }
        state.undefined.removeAll()

        // Pass 2: into the heads.
        var full: [SeriesHead] = []
        var late: [SeriesHead] = []
        index = 0
        for (position, message) in messages.enumerated() {
            let device = devices[position]
            let samples = message.samples
            shard(message.deviceID).devices.withLock { _ in
                for sample in samples {
                    let head = heads[index]
                    head.lastWrite = now
                    device.updateLatest(keys[index], sample.timestamp, sample.value)
                    place(head, sample.timestamp, sample.value, full: &full, late: &late)
                    index += 1
                }
            }
        }
        if !full.isEmpty || !late.isEmpty {
            try commit(&state, seal: full, merge: late, snapshot: [], latest: [], durable: false)
        }
    }

    /// Puts a sample into its head, or into its late list; notes heads that need the writer.
    @inline(__always)
    private func place(_ head: SeriesHead, _ timestamp: Int64, _ value: TelemetryValue, full: inout [SeriesHead], late: inout [SeriesHead]) {
        if head.insert(timestamp, value) {
            if head.count == configuration.chunkSamples { full.append(head) }
        } else {
            if head.late.isEmpty { late.append(head) }
            head.late.append((timestamp, value))
        }
    }

    // MARK: deleting

    /// Forgets a device's telemetry: series, chunks, rollups, latest values.
    public func deleteDevice(_ deviceID: String) throws {
        try writer.withLock { state in
            var record = WALWriter()
            record.bytes.append(WALRecord.deleteDevice)
            record.string(deviceID)
            var framed: [UInt8] = []
            TimeSeriesWAL.frame(record.bytes, into: &framed)
            try state.wal.append(framed)
            try state.wal.sync()
            try removeDevice(deviceID, state: &state)
        }
    }

    private func removeDevice(_ deviceID: String, state: inout WriterState) throws {
        try commitLock.withWriteLock {
            try store.write(durable: false) { writer in try writer.deleteSeries(deviceID: deviceID) }
            let removed = shard(deviceID).devices.withLock { devices in devices.removeValue(forKey: deviceID) }
            if let removed {
                for head in removed.allHeads { state.headsByID[head.id] = nil }
            }
            state.unsaved.removeAll { $0.deviceID == deviceID }
            state.undefined.removeAll { $0.deviceID == deviceID }
        }
    }
}

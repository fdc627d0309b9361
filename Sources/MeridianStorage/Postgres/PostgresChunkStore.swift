import Foundation
import MeridianCore
import NIOCore
import PostgresNIO

/// The time-series engine's store in PostgreSQL, for `--database postgres://...`: sealed
/// chunks, rollup chunks, head snapshots, latest values and retention overrides in the `ts_`
/// tables (``PostgresTimeSeriesSchema``), with the same behaviour as the embedded SQLite store
/// (one conformance suite runs against both). The engine's write-ahead log stays in the node's
/// data directory.
///
/// The engine's protocol is synchronous and its callers run on threads of their own (the ingest
/// writer, query threads): each call borrows a connection of the database's pool on the calling
/// thread and waits for its statements (see ``PostgresDatabase``). Reads are single statements,
/// outside any transaction; a write is one transaction.
///
/// Series ids are given out by the engine that writes them: one Meridian node at a time may
/// write telemetry into a database.
public final class PostgresChunkStore: Sendable {
    /// Why the store could not be opened; never contains a password.
    public struct OpenError: Error, CustomStringConvertible {
        public var description: String
    }

    /// The database the store lives in (shared with other stores).
    public let database: PostgresDatabase

    /// Opens the telemetry tables in `database` (whose pool must be running:
    /// ``PostgresDatabase/run()``) and migrates them.
    ///
    /// - Throws: ``OpenError`` when the server cannot be reached or refuses the credentials,
    ///   when the database was migrated by a newer version of Meridian (it is left untouched
    ///   then), or when a migration fails.
    public init(database: PostgresDatabase) async throws {
        self.database = database
        do {
            try await database.checkConnection()
            try await database.migrate(PostgresTimeSeriesSchema.migrations)
        } catch let error as PostgresDatabase.DatabaseError {
            throw OpenError(description: error.description)
        }
    }

    // MARK: row decoding

    fileprivate static func bytes(_ row: PostgresRandomAccessRow, _ column: String) throws -> [UInt8] {
        let buffer = try row.value(column, as: ByteBuffer.self)
        return Array(buffer.readableBytesView)
    }

    fileprivate static func type(_ row: PostgresRandomAccessRow) throws -> TelemetryValueType? {
        UInt8(exactly: try row.value("type", as: Int64.self)).flatMap(TelemetryValueType.init(rawValue:))
    }

    fileprivate static func chunk(_ row: PostgresRandomAccessRow) throws -> StoredChunk {
        let count = try row.value("sample_count", as: Int64.self)
        return StoredChunk(
            start: try row.value("start_ts", as: Int64.self),
            end: try row.value("end_ts", as: Int64.self),
            count: Int(clamping: count),
            data: try bytes(row, "data")
        )
    }

    // MARK: shared statements (store and writer)

    fileprivate static func chunks(
        _ session: PostgresSession,
        series: Int64,
        from: Int64,
        to: Int64
    ) throws -> [StoredChunk] {
        // The chunk starting before `from` when it reaches into the range, then every chunk
        // starting inside it, oldest first: both on the (series_id, start_ts) key.
        try session.rows(
            """
            SELECT start_ts, end_ts, sample_count, data FROM (
                (SELECT start_ts, end_ts, sample_count, data FROM ts_chunks
                 WHERE series_id = \(series) AND start_ts < \(from) ORDER BY start_ts DESC LIMIT 1)
                UNION ALL
                (SELECT start_ts, end_ts, sample_count, data FROM ts_chunks
                 WHERE series_id = \(series) AND start_ts >= \(from) AND start_ts <= \(to))
            ) AS candidates
            WHERE start_ts >= \(from) OR end_ts >= \(from)
            ORDER BY start_ts
            """
        ).map(chunk)
    }

    fileprivate static func rollups(
        _ session: PostgresSession,
        series: Int64,
        tier: RollupTier,
        fromPeriod: Int64,
        toPeriod: Int64
    ) throws -> [(Int64, [UInt8])] {
        try session.rows(
            """
            SELECT period, data FROM ts_rollups
            WHERE series_id = \(series) AND tier = \(Int16(tier.rawValue)) AND period >= \(fromPeriod) AND period <= \(toPeriod)
            ORDER BY period
            """
        ).map { row in (try row.value("period", as: Int64.self), try bytes(row, "data")) }
    }
}

extension PostgresChunkStore: TimeSeriesChunkStore {
    func allSeries() throws -> [StoredSeries] {
        try database.blockingConnection { session in
            try session.rows("SELECT id, tenant_id, device_id, key, type, sealed_end FROM ts_series").compactMap {
                row in
                guard let type = try Self.type(row) else { return nil }
                return StoredSeries(
                    id: try row.value("id"),
                    tenantID: try row.value("tenant_id"),
                    deviceID: try row.value("device_id"),
                    key: try row.value("key"),
                    type: type,
                    sealedEnd: try row.optional("sealed_end", as: Int64.self)
                )
            }
        }
    }

    func allHeads() throws -> [(Int64, [UInt8])] {
        try database.blockingConnection { session in
            try session.rows("SELECT series_id, data FROM ts_heads").map { row in
                (try row.value("series_id", as: Int64.self), try Self.bytes(row, "data"))
            }
        }
    }

    func allLatest() throws -> [(deviceID: String, key: String, point: TelemetryPoint)] {
        try database.blockingConnection { session in
            try session.rows("SELECT device_id, key, ts, type, bits, text_value FROM ts_latest").compactMap { row in
                let value: TelemetryValue
                switch try Self.type(row) {
                case .number:
                    value = .number(
                        Double(bitPattern: UInt64(bitPattern: try row.optional("bits", as: Int64.self) ?? 0))
                    )
                case .bool: value = .bool(try row.optional("bits", as: Int64.self) == 1)
                case .string:
                    let text = try row.optional("text_value", as: ByteBuffer.self)
                    value = .string(text.map { String(decoding: $0.readableBytesView, as: UTF8.self) } ?? "")
                case nil: return nil
                }
                return (
                    try row.value("device_id", as: String.self), try row.value("key", as: String.self),
                    TelemetryPoint(timestamp: try row.value("ts", as: Int64.self), value: value)
                )
            }
        }
    }

    func chunks(series: Int64, from: Int64, to: Int64) throws -> [StoredChunk] {
        try database.blockingConnection { session in try Self.chunks(session, series: series, from: from, to: to) }
    }

    func rollups(series: Int64, tier: RollupTier, fromPeriod: Int64, toPeriod: Int64) throws -> [(Int64, [UInt8])] {
        try database.blockingConnection { session in
            try Self.rollups(session, series: series, tier: tier, fromPeriod: fromPeriod, toPeriod: toPeriod)
        }
    }

    func seriesWithData(before cutoff: Int64, tier: RollupTier?) throws -> [Int64] {
        try database.blockingConnection { session in
            let rows: [PostgresRandomAccessRow]
            if let tier {
                rows = try session.rows(
                    "SELECT DISTINCT series_id FROM ts_rollups WHERE tier = \(Int16(tier.rawValue)) AND period < \(cutoff)"
                )
            } else {
                rows = try session.rows("SELECT DISTINCT series_id FROM ts_chunks WHERE start_ts < \(cutoff)")
            }
            return try rows.map { try $0.value("series_id", as: Int64.self) }
        }
    }

    func retention(scope: String, id: String) throws -> TelemetryRetention? {
        // PostgreSQL text holds no NUL: nothing stored can match such an id.
        guard !scope.utf8.contains(0), !id.utf8.contains(0) else { return nil }
        return try database.blockingConnection { session in
            try session.row(
                "SELECT raw_ms, minute_ms, hour_ms FROM ts_retention WHERE scope = \(scope) AND scope_id = \(id)"
            ).map { row in
                TelemetryRetention(
                    raw: try row.optional("raw_ms", as: Int64.self),
                    minute: try row.optional("minute_ms", as: Int64.self),
                    hour: try row.optional("hour_ms", as: Int64.self)
                )
            }
        }
    }

    func setRetention(scope: String, id: String, _ retention: TelemetryRetention?) throws {
        try database.blockingConnection { session -> Void in
            if let retention {
                try session.execute(
                    """
                    INSERT INTO ts_retention (scope, scope_id, raw_ms, minute_ms, hour_ms)
                    VALUES (\(scope), \(id), \(retention.raw), \(retention.minute), \(retention.hour))
                    ON CONFLICT (scope, scope_id) DO UPDATE
                    SET raw_ms = excluded.raw_ms, minute_ms = excluded.minute_ms, hour_ms = excluded.hour_ms
                    """
                )
            } else {
                try session.execute("DELETE FROM ts_retention WHERE scope = \(scope) AND scope_id = \(id)")
            }
        }
    }

    func write(durable: Bool, _ body: (any TimeSeriesChunkWriter) throws -> Void) throws {
        try database.blockingTransaction(durable: durable) { session in try body(Writer(session: session)) }
    }

    /// The sum of `pg_total_relation_size` (table, indexes, TOAST) of the `ts_` tables; 0 when
    /// the database cannot be asked.
    func sizeOnDisk() -> Int {
        let tables = PostgresTimeSeriesSchema.tables
        let total = try? database.blockingConnection { session -> Int64 in
            let row = try session.row(
                """
                SELECT COALESCE(SUM(pg_total_relation_size(to_regclass(table_name))), 0)::BIGINT AS size
                FROM unnest(\(tables)::TEXT[]) AS t(table_name)
                """
            )
            return try row?.value("size", as: Int64.self) ?? 0
        }
        return Int(clamping: total ?? 0)
    }

    /// The writes of one transaction on its connection.
    private struct Writer: TimeSeriesChunkWriter {
        let session: PostgresSession

        func saveSeries(_ series: StoredSeries) throws {
            // A series keeps its id for good: the same id for another (device, key, type) means
            // a second node is writing into this database — refused, never merged.
            let updated = try session.execute(
                """
                INSERT INTO ts_series (id, tenant_id, device_id, key, type, sealed_end)
                VALUES (\(series.id), \(series.tenantID), \(series.deviceID), \(series.key), \(Int16(series.type.rawValue)), \(series.sealedEnd))
                ON CONFLICT (id) DO UPDATE SET sealed_end = excluded.sealed_end
                WHERE ts_series.device_id = excluded.device_id AND ts_series.key = excluded.key AND ts_series.type = excluded.type
                """
            )
            guard updated == 1 else {
                throw PostgresDatabase.DatabaseError(
                    "PostgreSQL: telemetry series \(series.id) belongs to another series (is another Meridian node writing telemetry into this database?)"
                )
            }
        }

        func deleteSeries(deviceID: String) throws {
            try session.execute(
                "DELETE FROM ts_chunks WHERE series_id IN (SELECT id FROM ts_series WHERE device_id = \(deviceID))"
            )
            try session.execute(
                "DELETE FROM ts_rollups WHERE series_id IN (SELECT id FROM ts_series WHERE device_id = \(deviceID))"
            )
            try session.execute(
                "DELETE FROM ts_heads WHERE series_id IN (SELECT id FROM ts_series WHERE device_id = \(deviceID))"
            )
            try session.execute("DELETE FROM ts_series WHERE device_id = \(deviceID)")
            try session.execute("DELETE FROM ts_latest WHERE device_id = \(deviceID)")
        }

        func chunks(series: Int64, from: Int64, to: Int64) throws -> [StoredChunk] {
            try PostgresChunkStore.chunks(session, series: series, from: from, to: to)
        }

        func putChunk(series: Int64, _ chunk: StoredChunk) throws {
            try session.execute(
                """
                INSERT INTO ts_chunks (series_id, start_ts, end_ts, sample_count, data)
                VALUES (\(series), \(chunk.start), \(chunk.end), \(Int64(chunk.count)), \(ByteBuffer(bytes: chunk.data)))
                ON CONFLICT (series_id, start_ts) DO UPDATE
                SET end_ts = excluded.end_ts, sample_count = excluded.sample_count, data = excluded.data
                """
            )
        }

        func deleteChunk(series: Int64, start: Int64) throws {
            try session.execute("DELETE FROM ts_chunks WHERE series_id = \(series) AND start_ts = \(start)")
        }

        func rollup(series: Int64, tier: RollupTier, period: Int64) throws -> [UInt8]? {
            try session.row(
                "SELECT data FROM ts_rollups WHERE series_id = \(series) AND tier = \(Int16(tier.rawValue)) AND period = \(period)"
            ).map { try PostgresChunkStore.bytes($0, "data") }
        }

        func rollups(series: Int64, tier: RollupTier, fromPeriod: Int64, toPeriod: Int64) throws -> [(Int64, [UInt8])] {
            try PostgresChunkStore.rollups(
                session,
                series: series,
                tier: tier,
                fromPeriod: fromPeriod,
                toPeriod: toPeriod
            )
        }

        func putRollup(series: Int64, tier: RollupTier, period: Int64, data: [UInt8]) throws {
            try session.execute(
                """
                INSERT INTO ts_rollups (series_id, tier, period, data)
                VALUES (\(series), \(Int16(tier.rawValue)), \(period), \(ByteBuffer(bytes: data)))
                ON CONFLICT (series_id, tier, period) DO UPDATE SET data = excluded.data
                """
            )
        }

        func deleteRollup(series: Int64, tier: RollupTier, period: Int64) throws {
            try session.execute(
                "DELETE FROM ts_rollups WHERE series_id = \(series) AND tier = \(Int16(tier.rawValue)) AND period = \(period)"
            )
        }

        func putHead(series: Int64, data: [UInt8]) throws {
            try session.execute(
                """
                INSERT INTO ts_heads (series_id, data) VALUES (\(series), \(ByteBuffer(bytes: data)))
                ON CONFLICT (series_id) DO UPDATE SET data = excluded.data
                """
            )
        }

        func deleteHead(series: Int64) throws {
            try session.execute("DELETE FROM ts_heads WHERE series_id = \(series)")
        }

        // MARK: batches (a commit's writes in a few statements, see BufferedChunkWriter)

        /// Rows per statement: keeps each statement's parameters to a few megabytes.
        static let batchRows = 2_000

        func rollups(_ keys: [RollupKey]) throws -> [RollupKey: [UInt8]] {
            var result: [RollupKey: [UInt8]] = [:]
            for slice in keys.slices(of: Self.batchRows) {
                let series = slice.map(\.series)
                let tiers = slice.map { Int16($0.tier.rawValue) }
                let periods = slice.map(\.period)
                let rows = try session.rows(
                    """
                    SELECT r.series_id, r.tier, r.period, r.data FROM ts_rollups r
                    JOIN unnest(\(series)::BIGINT[], \(tiers)::SMALLINT[], \(periods)::BIGINT[]) AS k(series_id, tier, period)
                    ON r.series_id = k.series_id AND r.tier = k.tier AND r.period = k.period
                    """
                )
                for row in rows {
                    guard let tier = RollupTier(rawValue: Int(try row.value("tier", as: Int64.self))) else { continue }
                    let key = RollupKey(series: try row.value("series_id", as: Int64.self), tier: tier, period: try row.value("period", as: Int64.self))
                    result[key] = try PostgresChunkStore.bytes(row, "data")
                }
            }
            return result
        }

        func apply(_ batch: TimeSeriesWriteBatch) throws {
            // The last write of each row wins, as if the writes had been made one by one.
            struct ChunkKey: Hashable {
                var series: Int64
                var start: Int64
            }
            var series: [Int64: StoredSeries] = [:]
            var chunks: [ChunkKey: StoredChunk?] = [:]
            var rollups: [RollupKey: [UInt8]?] = [:]
            var heads: [Int64: [UInt8]?] = [:]
            var latest: [String: (deviceID: String, key: String, point: TelemetryPoint)] = [:]
            for write in batch.writes {
                switch write {
                case .saveSeries(let stored): series[stored.id] = stored
                case .putChunk(let id, let chunk): chunks[ChunkKey(series: id, start: chunk.start)] = .some(chunk)
                case .deleteChunk(let id, let start): chunks[ChunkKey(series: id, start: start)] = .some(nil)
                case .putRollup(let key, let data): rollups[key] = .some(data)
                case .deleteRollup(let key): rollups[key] = .some(nil)
                case .putHead(let id, let data): heads[id] = .some(data)
                case .deleteHead(let id): heads[id] = .some(nil)
                case .putLatest(let deviceID, let key, let point): latest["\(deviceID)\u{0}\(key)"] = (deviceID, key, point)
                }
            }
            for slice in Array(series.values).slices(of: Self.batchRows) {
                // A series keeps its id for good (see saveSeries).
                let updated = try session.execute(
                    """
                    INSERT INTO ts_series (id, tenant_id, device_id, key, type, sealed_end)
                    SELECT id, tenant_id, device_id, key, type, NULLIF(sealed_end, \(Int64.min))
                    FROM unnest(\(slice.map(\.id))::BIGINT[], \(slice.map(\.tenantID))::TEXT[], \(slice.map(\.deviceID))::TEXT[],
                                \(slice.map(\.key))::TEXT[], \(slice.map { Int16($0.type.rawValue) })::SMALLINT[],
                                \(slice.map { $0.sealedEnd ?? Int64.min })::BIGINT[])
                         AS s(id, tenant_id, device_id, key, type, sealed_end)
                    ON CONFLICT (id) DO UPDATE SET sealed_end = excluded.sealed_end
                    WHERE ts_series.device_id = excluded.device_id AND ts_series.key = excluded.key AND ts_series.type = excluded.type
                    """
                )
                guard updated == slice.count else {
                    throw PostgresDatabase.DatabaseError(
                        "PostgreSQL: a telemetry series id belongs to another series (is another Meridian node writing telemetry into this database?)"
                    )
                }
            }
            let chunkDeletes = chunks.filter { $0.value == nil }.map(\.key)
            for slice in chunkDeletes.slices(of: Self.batchRows) {
                try session.execute(
                    """
                    DELETE FROM ts_chunks c USING unnest(\(slice.map(\.series))::BIGINT[], \(slice.map(\.start))::BIGINT[]) AS k(series_id, start_ts)
                    WHERE c.series_id = k.series_id AND c.start_ts = k.start_ts
                    """
                )
            }
            let chunkPuts = chunks.compactMap { key, chunk in chunk.map { (key.series, $0) } }
            for slice in chunkPuts.slices(of: Self.batchRows) {
                try session.execute(
                    """
                    INSERT INTO ts_chunks (series_id, start_ts, end_ts, sample_count, data)
                    SELECT * FROM unnest(\(slice.map(\.0))::BIGINT[], \(slice.map(\.1.start))::BIGINT[], \(slice.map(\.1.end))::BIGINT[],
                                         \(slice.map { Int64($0.1.count) })::BIGINT[], \(slice.map { ByteBuffer(bytes: $0.1.data) })::BYTEA[])
                    ON CONFLICT (series_id, start_ts) DO UPDATE
                    SET end_ts = excluded.end_ts, sample_count = excluded.sample_count, data = excluded.data
                    """
                )
            }
            let rollupDeletes = rollups.filter { $0.value == nil }.map(\.key)
            for slice in rollupDeletes.slices(of: Self.batchRows) {
                try session.execute(
                    """
                    DELETE FROM ts_rollups r
                    USING unnest(\(slice.map(\.series))::BIGINT[], \(slice.map { Int16($0.tier.rawValue) })::SMALLINT[], \(slice.map(\.period))::BIGINT[])
                          AS k(series_id, tier, period)
                    WHERE r.series_id = k.series_id AND r.tier = k.tier AND r.period = k.period
                    """
                )
            }
            let rollupPuts = rollups.compactMap { key, data in data.map { (key, $0) } }
            for slice in rollupPuts.slices(of: Self.batchRows) {
                try session.execute(
                    """
                    INSERT INTO ts_rollups (series_id, tier, period, data)
                    SELECT * FROM unnest(\(slice.map(\.0.series))::BIGINT[], \(slice.map { Int16($0.0.tier.rawValue) })::SMALLINT[],
                                         \(slice.map(\.0.period))::BIGINT[], \(slice.map { ByteBuffer(bytes: $0.1) })::BYTEA[])
                    ON CONFLICT (series_id, tier, period) DO UPDATE SET data = excluded.data
                    """
                )
            }
            let headDeletes = heads.filter { $0.value == nil }.map(\.key)
            for slice in headDeletes.slices(of: Self.batchRows) {
                try session.execute("DELETE FROM ts_heads WHERE series_id = ANY(\(Array(slice))::BIGINT[])")
            }
            let headPuts = heads.compactMap { id, data in data.map { (id, $0) } }
            for slice in headPuts.slices(of: Self.batchRows) {
                try session.execute(
                    """
                    INSERT INTO ts_heads (series_id, data)
                    SELECT * FROM unnest(\(slice.map(\.0))::BIGINT[], \(slice.map { ByteBuffer(bytes: $0.1) })::BYTEA[])
                    ON CONFLICT (series_id) DO UPDATE SET data = excluded.data
                    """
                )
            }
            for slice in Array(latest.values).slices(of: Self.batchRows) {
                var hasBits: [Bool] = []
                var bits: [Int64] = []
                var hasText: [Bool] = []
                var texts: [ByteBuffer] = []
                for entry in slice {
                    let (value, text) = Self.latestColumns(entry.point.value)
                    hasBits.append(value != nil)
                    bits.append(value ?? 0)
                    hasText.append(text != nil)
                    texts.append(text ?? ByteBuffer())
                }
                try session.execute(
                    """
                    INSERT INTO ts_latest (device_id, key, ts, type, bits, text_value)
                    SELECT device_id, key, ts, type, CASE WHEN has_bits THEN bits END, CASE WHEN has_text THEN text_value END
                    FROM unnest(\(slice.map(\.deviceID))::TEXT[], \(slice.map(\.key))::TEXT[], \(slice.map(\.point.timestamp))::BIGINT[],
                                \(slice.map { Int16($0.point.value.type.rawValue) })::SMALLINT[], \(hasBits)::BOOLEAN[], \(bits)::BIGINT[],
                                \(hasText)::BOOLEAN[], \(texts)::BYTEA[])
                         AS l(device_id, key, ts, type, has_bits, bits, has_text, text_value)
                    ON CONFLICT (device_id, key) DO UPDATE
                    SET ts = excluded.ts, type = excluded.type, bits = excluded.bits, text_value = excluded.text_value
                    """
                )
            }
        }

        /// A latest value's `bits` and `text_value` columns: numbers as their 64-bit pattern
        /// (-0 and NaN payloads survive), strings as UTF-8 bytes (PostgreSQL text holds no NUL).
        static func latestColumns(_ value: TelemetryValue) -> (bits: Int64?, text: ByteBuffer?) {
            switch value {
            case .number(let number): (Int64(bitPattern: number.bitPattern), nil)
            case .bool(let bool): (bool ? 1 : 0, nil)
            case .string(let string): (nil, ByteBuffer(string: string))
            }
        }

        func putLatest(deviceID: String, key: String, point: TelemetryPoint) throws {
            let (bits, text) = Self.latestColumns(point.value)
            try session.execute(
                """
                INSERT INTO ts_latest (device_id, key, ts, type, bits, text_value)
                VALUES (\(deviceID), \(key), \(point.timestamp), \(Int16(point.value.type.rawValue)), \(bits), \(text))
                ON CONFLICT (device_id, key) DO UPDATE
                SET ts = excluded.ts, type = excluded.type, bits = excluded.bits, text_value = excluded.text_value
                """
            )
        }
    }
}

extension Array {
    /// The array in consecutive slices of at most `size` elements.
    fileprivate func slices(of size: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}

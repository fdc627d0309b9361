import Foundation
import GRDB
import MeridianCore

/// The time-series engine's store in an embedded SQLite database (`telemetry.sqlite` in the data
/// directory, WAL mode): chunks as blobs indexed by (series, start), rollup chunks by (series,
/// tier, period), head snapshots and latest values. Commits are `synchronous=NORMAL`; a durable
/// write (a checkpoint) fsyncs.
final class SQLiteChunkStore: TimeSeriesChunkStore, Sendable {
    private let pool: DatabasePool
    let path: String

    init(path: String) throws {
        self.path = path
        // Integrity and version checks on a plain connection first; then the pool.
        do {
            let check = try SQLiteFile.open(path: path, label: "meridian.telemetry.check", what: "telemetry")
            try SQLiteFile.prepare(check, path: path, migrator: Self.migrator, synchronous: "NORMAL")
            try check.close()
        } catch let refusal as SQLiteFile.Refusal {
            throw TimeSeriesEngine.OpenError(description: refusal.description)
        }
        var configuration = Configuration()
        configuration.label = "meridian.telemetry"
        configuration.busyMode = .timeout(10)
        configuration.maximumReaderCount = 4
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
            // SQLite keeps its -wal file at the size of the largest write since it was opened
            // (a big seal: megabytes); once a checkpoint has copied it back, the next write cuts
            // it to this size instead, without waiting for readers.
            try db.execute(sql: "PRAGMA journal_size_limit = 1048576")
        }
        pool = try DatabasePool(path: path, configuration: configuration)
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("telemetry-v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE ts_series (
                        id INTEGER PRIMARY KEY,
                        tenant_id TEXT NOT NULL,
                        device_id TEXT NOT NULL,
                        key TEXT NOT NULL,
                        type INTEGER NOT NULL,
                        sealed_end INTEGER
                    );
                    CREATE UNIQUE INDEX ts_series_device ON ts_series(device_id, key, type);
                    CREATE TABLE ts_chunks (
                        id INTEGER PRIMARY KEY,
                        series_id INTEGER NOT NULL,
                        start INTEGER NOT NULL,
                        end INTEGER NOT NULL,
                        count INTEGER NOT NULL,
                        data BLOB NOT NULL
                    );
                    CREATE UNIQUE INDEX ts_chunks_series ON ts_chunks(series_id, start);
                    CREATE TABLE ts_rollups (
                        id INTEGER PRIMARY KEY,
                        series_id INTEGER NOT NULL,
                        tier INTEGER NOT NULL,
                        period INTEGER NOT NULL,
                        data BLOB NOT NULL
                    );
                    CREATE UNIQUE INDEX ts_rollups_series ON ts_rollups(series_id, tier, period);
                    CREATE TABLE ts_heads (
                        series_id INTEGER PRIMARY KEY,
                        data BLOB NOT NULL
                    );
                    CREATE TABLE ts_latest (
                        device_id TEXT NOT NULL,
                        key TEXT NOT NULL,
                        ts INTEGER NOT NULL,
                        type INTEGER NOT NULL,
                        bits INTEGER,
                        text TEXT,
                        PRIMARY KEY (device_id, key)
                    ) WITHOUT ROWID;
                    CREATE TABLE ts_retention (
                        scope TEXT NOT NULL,
                        scope_id TEXT NOT NULL,
                        raw_ms INTEGER,
                        minute_ms INTEGER,
                        hour_ms INTEGER,
                        PRIMARY KEY (scope, scope_id)
                    ) WITHOUT ROWID;
                    """
            )
        }
        return migrator
    }

    func allSeries() throws -> [StoredSeries] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT id, tenant_id, device_id, key, type, sealed_end FROM ts_series").compactMap { row in
                guard let type = TelemetryValueType(rawValue: row[4]) else { return nil }
                return StoredSeries(id: row[0], tenantID: row[1], deviceID: row[2], key: row[3], type: type, sealedEnd: row[5])
            }
        }
    }

    func allHeads() throws -> [(Int64, [UInt8])] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT series_id, data FROM ts_heads").map { row in
                (row[0], [UInt8]((row[1] as Data)))
            }
        }
    }

    func allLatest() throws -> [(deviceID: String, key: String, point: TelemetryPoint)] {
        try pool.read { db in
            // Numbers as their 64-bit pattern: SQLite's REAL would lose -0 and NaN payloads.
            try Row.fetchAll(db, sql: "SELECT device_id, key, ts, type, bits, text FROM ts_latest").compactMap { row in
                let value: TelemetryValue
                switch TelemetryValueType(rawValue: row[3]) {
                case .number: value = .number(Double(bitPattern: UInt64(bitPattern: row[4] ?? 0)))
                case .bool: value = .bool((row[4] as Int64?) == 1)
                // Strings as bytes: GRDB's String binding and reading stop at a NUL.
                case .string: value = .string((row[5] as Data?).map { String(decoding: $0, as: UTF8.self) } ?? "")
                case nil: return nil
                }
                return (row[0], row[1], TelemetryPoint(timestamp: row[2], value: value))
            }
        }
    }

    func chunks(series: Int64, from: Int64, to: Int64) throws -> [StoredChunk] {
        try pool.read { db in try Self.chunks(db, series: series, from: from, to: to) }
    }

    static func chunks(_ db: Database, series: Int64, from: Int64, to: Int64) throws -> [StoredChunk] {
        // The chunk starting at or before `from` (it may reach into the range), then every chunk
        // starting inside it: both on the (series_id, start) index.
        var result: [StoredChunk] = []
        if let row = try Row.fetchOne(
            db, sql: "SELECT start, end, count, data FROM ts_chunks WHERE series_id = ? AND start < ? ORDER BY start DESC LIMIT 1", arguments: [series, from]
        ), (row[1] as Int64) >= from {
            result.append(StoredChunk(start: row[0], end: row[1], count: row[2], data: [UInt8](row[3] as Data)))
        }
        let rows = try Row.fetchCursor(
            db, sql: "SELECT start, end, count, data FROM ts_chunks WHERE series_id = ? AND start >= ? AND start <= ? ORDER BY start", arguments: [series, from, to]
        )
        while let row = try rows.next() {
            result.append(StoredChunk(start: row[0], end: row[1], count: row[2], data: [UInt8](row[3] as Data)))
        }
        return result
    }

    func rollups(series: Int64, tier: RollupTier, fromPeriod: Int64, toPeriod: Int64) throws -> [(Int64, [UInt8])] {
        try pool.read { db in try Self.rollups(db, series: series, tier: tier, fromPeriod: fromPeriod, toPeriod: toPeriod) }
    }

    static func rollups(_ db: Database, series: Int64, tier: RollupTier, fromPeriod: Int64, toPeriod: Int64) throws -> [(Int64, [UInt8])] {
        try Row.fetchAll(
            db, sql: "SELECT period, data FROM ts_rollups WHERE series_id = ? AND tier = ? AND period >= ? AND period <= ? ORDER BY period",
            arguments: [series, tier.rawValue, fromPeriod, toPeriod]
        ).map { row in (row[0], [UInt8](row[1] as Data)) }
    }

    func seriesWithData(before cutoff: Int64, tier: RollupTier?) throws -> [Int64] {
        try pool.read { db in
            if let tier {
                return try Int64.fetchAll(
                    db, sql: "SELECT DISTINCT series_id FROM ts_rollups WHERE tier = ? AND period < ?", arguments: [tier.rawValue, cutoff]
                )
            }
            return try Int64.fetchAll(db, sql: "SELECT DISTINCT series_id FROM ts_chunks WHERE start < ?", arguments: [cutoff])
        }
    }

    func retention(scope: String, id: String) throws -> TelemetryRetention? {
        try pool.read { db in
            try Row.fetchOne(db, sql: "SELECT raw_ms, minute_ms, hour_ms FROM ts_retention WHERE scope = ? AND scope_id = ?", arguments: [scope, id]).map { row in
                TelemetryRetention(raw: row[0], minute: row[1], hour: row[2])
            }
        }
    }

    func setRetention(scope: String, id: String, _ retention: TelemetryRetention?) throws {
        try pool.write { db in
            if let retention {
                try db.execute(
                    sql: "INSERT OR REPLACE INTO ts_retention (scope, scope_id, raw_ms, minute_ms, hour_ms) VALUES (?, ?, ?, ?, ?)",
                    arguments: [scope, id, retention.raw, retention.minute, retention.hour]
                )
            } else {
                try db.execute(sql: "DELETE FROM ts_retention WHERE scope = ? AND scope_id = ?", arguments: [scope, id])
            }
        }
    }

    func write(durable: Bool, _ body: (any TimeSeriesChunkWriter) throws -> Void) throws {
        try pool.writeWithoutTransaction { db in
            if durable { try db.execute(sql: "PRAGMA synchronous = FULL") }
            defer { if durable { try? db.execute(sql: "PRAGMA synchronous = NORMAL") } }
            try db.inTransaction {
                try body(Writer(db: db))
                return .commit
            }
        }
    }

    func sizeOnDisk() -> Int {
        [path, path + "-wal", path + "-shm"].reduce(0) { total, file in
            total + ((try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0)
        }
    }

    private struct Writer: TimeSeriesChunkWriter {
        let db: Database

        func saveSeries(_ series: StoredSeries) throws {
            try db.execute(
                sql: """
                    INSERT INTO ts_series (id, tenant_id, device_id, key, type, sealed_end) VALUES (?, ?, ?, ?, ?, ?)
                    ON CONFLICT(id) DO UPDATE SET sealed_end = excluded.sealed_end
                    """,
                arguments: [series.id, series.tenantID, series.deviceID, series.key, series.type.rawValue, series.sealedEnd]
            )
        }

        func deleteSeries(deviceID: String) throws {
            let ids = try Int64.fetchAll(db, sql: "SELECT id FROM ts_series WHERE device_id = ?", arguments: [deviceID])
            for id in ids {
                try db.execute(sql: "DELETE FROM ts_chunks WHERE series_id = ?", arguments: [id])
                try db.execute(sql: "DELETE FROM ts_rollups WHERE series_id = ?", arguments: [id])
                try db.execute(sql: "DELETE FROM ts_heads WHERE series_id = ?", arguments: [id])
            }
            try db.execute(sql: "DELETE FROM ts_series WHERE device_id = ?", arguments: [deviceID])
            try db.execute(sql: "DELETE FROM ts_latest WHERE device_id = ?", arguments: [deviceID])
        }

        func chunks(series: Int64, from: Int64, to: Int64) throws -> [StoredChunk] {
            try SQLiteChunkStore.chunks(db, series: series, from: from, to: to)
        }

        func putChunk(series: Int64, _ chunk: StoredChunk) throws {
            try db.execute(
                sql: "INSERT OR REPLACE INTO ts_chunks (series_id, start, end, count, data) VALUES (?, ?, ?, ?, ?)",
                arguments: [series, chunk.start, chunk.end, chunk.count, Data(chunk.data)]
            )
        }

        func deleteChunk(series: Int64, start: Int64) throws {
            try db.execute(sql: "DELETE FROM ts_chunks WHERE series_id = ? AND start = ?", arguments: [series, start])
        }

        func rollup(series: Int64, tier: RollupTier, period: Int64) throws -> [UInt8]? {
            try Data.fetchOne(
                db, sql: "SELECT data FROM ts_rollups WHERE series_id = ? AND tier = ? AND period = ?", arguments: [series, tier.rawValue, period]
            ).map { [UInt8]($0) }
        }

        func rollups(series: Int64, tier: RollupTier, fromPeriod: Int64, toPeriod: Int64) throws -> [(Int64, [UInt8])] {
            try SQLiteChunkStore.rollups(db, series: series, tier: tier, fromPeriod: fromPeriod, toPeriod: toPeriod)
        }

        func putRollup(series: Int64, tier: RollupTier, period: Int64, data: [UInt8]) throws {
            try db.execute(
                sql: "INSERT OR REPLACE INTO ts_rollups (series_id, tier, period, data) VALUES (?, ?, ?, ?)",
                arguments: [series, tier.rawValue, period, Data(data)]
            )
        }

        func deleteRollup(series: Int64, tier: RollupTier, period: Int64) throws {
            try db.execute(
                sql: "DELETE FROM ts_rollups WHERE series_id = ? AND tier = ? AND period = ?", arguments: [series, tier.rawValue, period]
            )
        }

        func putHead(series: Int64, data: [UInt8]) throws {
            try db.execute(sql: "INSERT OR REPLACE INTO ts_heads (series_id, data) VALUES (?, ?)", arguments: [series, Data(data)])
        }

        func deleteHead(series: Int64) throws {
            try db.execute(sql: "DELETE FROM ts_heads WHERE series_id = ?", arguments: [series])
        }

        func putLatest(deviceID: String, key: String, point: TelemetryPoint) throws {
            let bits: Int64?
            let text: Data?
            switch point.value {
            case .number(let value): (bits, text) = (Int64(bitPattern: value.bitPattern), nil)
            case .bool(let value): (bits, text) = (value ? 1 : 0, nil)
            // The UTF-8 bytes: GRDB binds a String only up to its first NUL.
            case .string(let value): (bits, text) = (nil, Data(value.utf8))
            }
            try db.execute(
                sql: "INSERT OR REPLACE INTO ts_latest (device_id, key, ts, type, bits, text) VALUES (?, ?, ?, ?, ?, ?)",
                arguments: [deviceID, key, point.timestamp, point.value.type.rawValue, bits, text]
            )
        }
    }
}

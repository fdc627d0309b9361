import Foundation
import GRDB
import MeridianCore

/// Twins and their history in SQLite: in the registry's `meridian.sqlite` (its own tables,
/// its own connection; its schema steps are recorded in `meridian_migrations` under the
/// component `twins`, apart from the registry's GRDB migrations).
public final class SQLiteTwinStore: TwinStore, Sendable {
    /// Why the store could not be opened.
    public struct OpenError: Error, CustomStringConvertible {
        public var description: String
    }

    private let database: DatabaseQueue

    /// The schema steps, oldest first; never edit a released one, only append.
    static let migrations = SQLiteComponentMigrations(
        component: "twins",
        steps: [
            .init(
                identifier: "twins-v1",
                sql: """
            CREATE TABLE twins (
                tenant_id TEXT NOT NULL,
                device_id TEXT NOT NULL,
                name TEXT NOT NULL,
                version INTEGER NOT NULL,
                updated_at INTEGER NOT NULL,
                present INTEGER NOT NULL,
                state TEXT NOT NULL,
                PRIMARY KEY (tenant_id, device_id, name)
            );
            CREATE TABLE twin_history (
                sequence INTEGER PRIMARY KEY AUTOINCREMENT,
                tenant_id TEXT NOT NULL,
                device_id TEXT NOT NULL,
                name TEXT NOT NULL,
                version INTEGER NOT NULL,
                at INTEGER NOT NULL,
                actor_kind TEXT NOT NULL,
                actor_id TEXT NOT NULL,
                operation TEXT NOT NULL,
                patch TEXT,
                state TEXT NOT NULL,
                present INTEGER NOT NULL
            );
            CREATE INDEX twin_history_twin ON twin_history (tenant_id, device_id, name, sequence);
            CREATE INDEX twin_history_at ON twin_history (at);
            CREATE INDEX twin_history_device ON twin_history (device_id);
            """
            )
        ]
    )

    /// Opens (creating if needed) the twin tables in the SQLite database at `path` (the
    /// registry's `meridian.sqlite`) and migrates them.
    ///
    /// - Throws: ``OpenError`` when the file cannot be opened or holds twin schema steps of a
    ///   newer Meridian.
    public init(path: String) throws {
        do {
            database = try Self.migrations.open(path: path, label: "meridian.twins", synchronous: "FULL")
        } catch let refusal as SQLiteFile.Refusal {
            throw OpenError(description: refusal.description)
        }
    }

    private init(database: DatabaseQueue) {
        self.database = database
    }

    /// A store in memory (tests): gone when released.
    public static func inMemory() throws -> SQLiteTwinStore {
        let database = try DatabaseQueue()
        try migrations.migrate(database, path: ":memory:")
        return SQLiteTwinStore(database: database)
    }

    public func twin(_ key: TwinKey) async throws -> TwinDocument? {
        try await database.read { db in
            try Row.fetchOne(
                db,
                sql:
                    "SELECT version, updated_at, present, state FROM twins WHERE tenant_id = ? AND device_id = ? AND name = ?",
                arguments: [key.tenantID, key.deviceID, key.name]
            ).map { row in
                TwinRows.document(
                    state: row["state"],
                    version: row["version"],
                    timestamp: row["updated_at"],
                    exists: row["present"]
                )
            }
        }
    }

    public func save(_ entry: TwinHistoryEntry, previousVersion: Int64, previousExists: Bool) async throws -> Bool {
        let key = entry.key
        let document = entry.document
        let state = TwinRows.stateText(document)
        let patch = entry.patch?.jsonText
        return try await database.write { db in
            let row = try Row.fetchOne(
                db,
                sql: "SELECT version, present FROM twins WHERE tenant_id = ? AND device_id = ? AND name = ?",
                arguments: [key.tenantID, key.deviceID, key.name]
            )
            let version: Int64 = row?["version"] ?? 0
            let present: Bool = row?["present"] ?? false
            guard version == previousVersion, present == previousExists else { return false }
            try db.execute(
                sql: """
                    INSERT INTO twins (tenant_id, device_id, name, version, updated_at, present, state) VALUES (?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (tenant_id, device_id, name) DO UPDATE SET
                        version = excluded.version, updated_at = excluded.updated_at, present = excluded.present, state = excluded.state
                    """,
                arguments: [
                    key.tenantID, key.deviceID, key.name, document.version, document.timestamp, document.exists, state,
                ]
            )
            try db.execute(
                sql: """
                    INSERT INTO twin_history (tenant_id, device_id, name, version, at, actor_kind, actor_id, operation, patch, state, present)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    key.tenantID, key.deviceID, key.name, entry.version, entry.timestamp, entry.actor.kind.rawValue,
                    entry.actor.id,
                    entry.operation.rawValue, patch, state, document.exists,
                ]
            )
            return true
        }
    }

    private static func entry(_ row: Row, key: TwinKey) -> TwinHistoryEntry {
        let version: Int64 = row["version"]
        let timestamp: Int64 = row["at"]
        return TwinHistoryEntry(
            sequence: row["sequence"],
            key: key,
            version: version,
            timestamp: timestamp,
            actor: AuditActor(kind: TwinRows.actorKind(row["actor_kind"]), id: row["actor_id"]),
            operation: TwinOperation(rawValue: row["operation"]) ?? .update,
            patch: TwinRows.patch(row["patch"]),
            document: TwinRows.document(
                state: row["state"],
                version: version,
                timestamp: timestamp,
                exists: row["present"]
            )
        )
    }

    public func twin(_ key: TwinKey, at timestamp: Int64) async throws -> TwinHistoryEntry? {
        try await database.read { db in
            try Row.fetchOne(
                db,
                sql: """
                    SELECT * FROM twin_history WHERE tenant_id = ? AND device_id = ? AND name = ? AND at <= ?
                    ORDER BY sequence DESC LIMIT 1
                    """,
                arguments: [key.tenantID, key.deviceID, key.name, timestamp]
            ).map { Self.entry($0, key: key) }
        }
    }

    public func history(_ key: TwinKey, before: Int64?, limit: Int) async throws -> [TwinHistoryEntry] {
        try await database.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT * FROM twin_history WHERE tenant_id = ? AND device_id = ? AND name = ? AND sequence < ?
                    ORDER BY sequence DESC LIMIT ?
                    """,
                arguments: [key.tenantID, key.deviceID, key.name, before ?? Int64.max, limit]
            ).map { Self.entry($0, key: key) }
        }
    }

    public func deleteHistory(before timestamp: Int64) async throws -> Int {
        try await database.write { db in
            try db.execute(
                sql: """
                    DELETE FROM twin_history WHERE at < ? AND sequence NOT IN (
                        SELECT MAX(sequence) FROM twin_history GROUP BY tenant_id, device_id, name)
                    """,
                arguments: [timestamp]
            )
            return db.changesCount
        }
    }

    public func twinNames(tenantID: String, deviceID: String) async throws -> [String] {
        try await database.read { db in
            try String.fetchAll(
                db,
                sql: "SELECT name FROM twins WHERE tenant_id = ? AND device_id = ? AND present = 1 ORDER BY name",
                arguments: [tenantID, deviceID]
            )
        }
    }

    public func twins(tenantID: String, deviceIDs: [String]) async throws -> [String: TwinDocument] {
        guard !deviceIDs.isEmpty else { return [:] }
        return try await database.read { db in
            var result: [String: TwinDocument] = [:]
            for chunk in stride(from: 0, to: deviceIDs.count, by: 500).map({
                Array(deviceIDs[$0..<min($0 + 500, deviceIDs.count)])
            }) {
                let marks = Array(repeating: "?", count: chunk.count).joined(separator: ",")
                let rows = try Row.fetchAll(
                    db,
                    sql:
                        "SELECT device_id, version, updated_at, present, state FROM twins WHERE tenant_id = ? AND name = '' AND device_id IN (\(marks))",
                    arguments: StatementArguments([tenantID] + chunk)
                )
                for row in rows {
                    result[row["device_id"]] = TwinRows.document(
                        state: row["state"],
                        version: row["version"],
                        timestamp: row["updated_at"],
                        exists: row["present"]
                    )
                }
            }
            return result
        }
    }

    public func deleteTwins(deviceID: String) async throws {
        try await database.write { db in
            try db.execute(sql: "DELETE FROM twins WHERE device_id = ?", arguments: [deviceID])
            try db.execute(sql: "DELETE FROM twin_history WHERE device_id = ?", arguments: [deviceID])
        }
    }
}

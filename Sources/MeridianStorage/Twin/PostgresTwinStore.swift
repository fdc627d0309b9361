import Foundation
import MeridianCore
import PostgresNIO

/// Twins and their history in PostgreSQL (component `twins` in `meridian_migrations`): the same
/// behaviour as ``SQLiteTwinStore`` (one conformance suite runs against both). Writers of one
/// twin serialize on one of 64 advisory locks, so a save's version check holds across
/// processes sharing the database.
public final class PostgresTwinStore: TwinStore, Sendable {
    /// Why the store could not be opened.
    public struct OpenError: Error, CustomStringConvertible {
        public var description: String
    }

    public let database: PostgresDatabase

    static let migrations = PostgresMigrations(
        component: "twins",
        steps: [
            .init(
                "twins-v1",
                [
                    """
                    CREATE TABLE twins (
                        tenant_id TEXT COLLATE "C" NOT NULL,
                        device_id TEXT COLLATE "C" NOT NULL,
                        name TEXT COLLATE "C" NOT NULL,
                        version BIGINT NOT NULL,
                        updated_at BIGINT NOT NULL,
                        present BOOLEAN NOT NULL,
                        state TEXT NOT NULL,
                        PRIMARY KEY (tenant_id, device_id, name)
                    )
                    """,
                    """
                    CREATE TABLE twin_history (
                        sequence BIGSERIAL PRIMARY KEY,
                        tenant_id TEXT COLLATE "C" NOT NULL,
                        device_id TEXT COLLATE "C" NOT NULL,
                        name TEXT COLLATE "C" NOT NULL,
                        version BIGINT NOT NULL,
                        at BIGINT NOT NULL,
                        actor_kind TEXT NOT NULL,
                        actor_id TEXT NOT NULL,
                        operation TEXT NOT NULL,
                        patch TEXT,
                        state TEXT NOT NULL,
                        present BOOLEAN NOT NULL
                    )
                    """,
                    "CREATE INDEX twin_history_twin ON twin_history (tenant_id, device_id, name, sequence)",
                    "CREATE INDEX twin_history_at ON twin_history (at)",
                    "CREATE INDEX twin_history_device ON twin_history (device_id)",
                ]
            )
        ]
    )

    /// Opens the twin tables in `database` (whose pool must be running) and migrates them.
    ///
    /// - Throws: ``OpenError`` when the server cannot be reached, or the database holds twin
    ///   schema steps of a newer Meridian, or a migration fails.
    public init(database: PostgresDatabase) async throws {
        self.database = database
        do {
            try await database.checkConnection()
            try await database.migrate(Self.migrations)
        } catch let error as PostgresDatabase.DatabaseError {
            throw OpenError(description: error.description)
        }
    }

    public func twin(_ key: TwinKey) async throws -> TwinDocument? {
        try await database.transaction(.read) { session in
            try session.row(
                "SELECT version, updated_at, present, state FROM twins WHERE tenant_id = \(key.tenantID) AND device_id = \(key.deviceID) AND name = \(key.name)"
            ).map(Self.document)
        }
    }

    private static func document(_ row: PostgresRandomAccessRow) throws -> TwinDocument {
        TwinRows.document(
            state: try row.value("state", as: String.self),
            version: try row.value("version", as: Int64.self),
            timestamp: try row.value("updated_at", as: Int64.self),
            exists: try row.value("present", as: Bool.self)
        )
    }

    public func save(_ entry: TwinHistoryEntry, previousVersion: Int64, previousExists: Bool) async throws -> Bool {
        let key = entry.key
        let document = entry.document
        let state = TwinRows.stateText(document)
        let patch = entry.patch?.jsonText
        return try await database.transaction(.write(lock: TwinRows.lockStripe(key))) { session in
            let row = try session.row(
                "SELECT version, present FROM twins WHERE tenant_id = \(key.tenantID) AND device_id = \(key.deviceID) AND name = \(key.name)"
            )
            let version = try row?.value("version", as: Int64.self) ?? 0
            let present = try row?.value("present", as: Bool.self) ?? false
            guard version == previousVersion, present == previousExists else { return false }
            try session.execute(
                """
                INSERT INTO twins (tenant_id, device_id, name, version, updated_at, present, state)
                VALUES (\(key.tenantID), \(key.deviceID), \(key.name), \(document.version), \(document.timestamp), \(document.exists), \(state))
                ON CONFLICT (tenant_id, device_id, name) DO UPDATE SET
                    version = excluded.version, updated_at = excluded.updated_at, present = excluded.present, state = excluded.state
                """
            )
            try session.execute(
                """
                INSERT INTO twin_history (tenant_id, device_id, name, version, at, actor_kind, actor_id, operation, patch, state, present)
                VALUES (\(key.tenantID), \(key.deviceID), \(key.name), \(entry.version), \(entry.timestamp), \(entry.actor.kind.rawValue),
                        \(entry.actor.id), \(entry.operation.rawValue), \(patch), \(state), \(document.exists))
                """
            )
            return true
        }
    }

    private static func entry(_ row: PostgresRandomAccessRow, key: TwinKey) throws -> TwinHistoryEntry {
        let version = try row.value("version", as: Int64.self)
        let timestamp = try row.value("at", as: Int64.self)
        return TwinHistoryEntry(
            sequence: try row.value("sequence", as: Int64.self),
            key: key,
            version: version,
            timestamp: timestamp,
            actor: AuditActor(
                kind: TwinRows.actorKind(try row.value("actor_kind", as: String.self)),
                id: try row.value("actor_id", as: String.self)
            ),
            operation: TwinOperation(rawValue: try row.value("operation", as: String.self)) ?? .update,
            patch: TwinRows.patch(try row.optional("patch", as: String.self)),
            document: TwinRows.document(
                state: try row.value("state", as: String.self),
                version: version,
                timestamp: timestamp,
                exists: try row.value("present", as: Bool.self)
            )
        )
    }

    public func twin(_ key: TwinKey, at timestamp: Int64) async throws -> TwinHistoryEntry? {
        try await database.transaction(.read) { session in
            try session.row(
                """
                SELECT * FROM twin_history WHERE tenant_id = \(key.tenantID) AND device_id = \(key.deviceID) AND name = \(key.name)
                AND at <= \(timestamp) ORDER BY sequence DESC LIMIT 1
                """
            ).map { try Self.entry($0, key: key) }
        }
    }

    public func history(_ key: TwinKey, before: Int64?, limit: Int) async throws -> [TwinHistoryEntry] {
        let before = before ?? Int64.max
        let limit = Int64(limit)
        return try await database.transaction(.read) { session in
            try session.rows(
                """
                SELECT * FROM twin_history WHERE tenant_id = \(key.tenantID) AND device_id = \(key.deviceID) AND name = \(key.name)
                AND sequence < \(before) ORDER BY sequence DESC LIMIT \(limit)
                """
            ).map { try Self.entry($0, key: key) }
        }
    }

    public func deleteHistory(before timestamp: Int64) async throws -> Int {
        try await database.transaction(.write(lock: TwinRows.lockStripe(TwinKey(tenantID: "", deviceID: "")))) {
            session in
            try session.execute(
                """
                DELETE FROM twin_history WHERE at < \(timestamp) AND sequence NOT IN (
                    SELECT MAX(sequence) FROM twin_history GROUP BY tenant_id, device_id, name)
                """
            )
        }
    }

    public func twinNames(tenantID: String, deviceID: String) async throws -> [String] {
        try await database.transaction(.read) { session in
            try session.rows(
                "SELECT name FROM twins WHERE tenant_id = \(tenantID) AND device_id = \(deviceID) AND present ORDER BY name"
            ).map { try $0.value("name", as: String.self) }
        }
    }

    public func twins(tenantID: String, deviceIDs: [String]) async throws -> [String: TwinDocument] {
        guard !deviceIDs.isEmpty else { return [:] }
        return try await database.transaction(.read) { session in
            var result: [String: TwinDocument] = [:]
            for row in try session.rows(
                """
                SELECT device_id, version, updated_at, present, state FROM twins
                WHERE tenant_id = \(tenantID) AND name = '' AND device_id = ANY(\(deviceIDs))
                """
            ) {
                result[try row.value("device_id", as: String.self)] = try Self.document(row)
            }
            return result
        }
    }

    public func deleteTwins(deviceID: String) async throws {
        try await database.transaction(.write(lock: TwinRows.lockStripe(TwinKey(tenantID: "", deviceID: deviceID)))) {
            session in
            try session.execute("DELETE FROM twins WHERE device_id = \(deviceID)")
            try session.execute("DELETE FROM twin_history WHERE device_id = \(deviceID)")
        }
    }
}

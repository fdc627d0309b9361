import Foundation
import GRDB
import MeridianCore

/// Presence events in the registry's SQLite database (`meridian.sqlite`, table
/// `presence_events`, migrations under component `presence`).
public final class SQLitePresenceStore: PresenceStore, Sendable {
    /// Why the store could not be opened.
    public struct OpenError: Error, CustomStringConvertible {
        public var description: String
    }

    private let database: DatabaseQueue
    public let path: String

    static let migrations = SQLiteComponentMigrations(
        component: "presence",
        steps: [
            .init(
                identifier: "presence-v1",
                sql: """
                    CREATE TABLE presence_events (
                        sequence INTEGER PRIMARY KEY AUTOINCREMENT,
                        tenant_id TEXT NOT NULL,
                        device_id TEXT NOT NULL,
                        kind TEXT NOT NULL,
                        at INTEGER NOT NULL,
                        address TEXT,
                        protocol TEXT NOT NULL,
                        transport TEXT NOT NULL,
                        connection_id INTEGER NOT NULL,
                        reason TEXT,
                        reason_code INTEGER,
                        online INTEGER NOT NULL
                    );
                    CREATE INDEX presence_events_device ON presence_events(device_id, sequence);
                    CREATE INDEX presence_events_at ON presence_events(at);
                    """
            )
        ]
    )

    /// Opens (creating if needed) the database at `path` — normally the registry's — and
    /// migrates the presence tables.
    public init(path: String) throws {
        self.path = path
        do {
            database = try Self.migrations.open(path: path, label: "meridian.presence", synchronous: "NORMAL")
        } catch let refusal as SQLiteFile.Refusal {
            throw OpenError(description: refusal.description)
        }
    }

    public func append(_ events: [PresenceEvent]) async throws {
        guard !events.isEmpty else { return }
        try await database.write { db in
            for event in events {
                try db.execute(
                    sql: """
                        INSERT INTO presence_events (tenant_id, device_id, kind, at, address, protocol, transport, connection_id,
                            reason, reason_code, online)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [
                        event.tenantID, event.deviceID, event.kind.rawValue, Self.milliseconds(event.time), event.address, event.protocolName,
                        event.transport, Int64(bitPattern: event.connectionID), event.reason?.rawValue, event.reasonCode.map { Int($0) },
                        event.online,
                    ]
                )
            }
        }
    }

    public func events(tenantID: String, deviceID: String, before: Int64?, limit: Int) async throws -> [PresenceEvent] {
        try await database.read { db in
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT * FROM presence_events WHERE device_id = ? AND tenant_id = ? AND sequence < ?
                    ORDER BY sequence DESC LIMIT ?
                    """,
                arguments: [deviceID, tenantID, before ?? Int64.max, max(0, limit)]
            )
            return rows.compactMap(Self.event)
        }
    }

    public func deleteEvents(deviceID: String) async throws {
        try await database.write { db in try db.execute(sql: "DELETE FROM presence_events WHERE device_id = ?", arguments: [deviceID]) }
    }

    @discardableResult
    public func deleteEvents(before time: Date) async throws -> Int {
        try await database.write { db in
            try db.execute(sql: "DELETE FROM presence_events WHERE at < ?", arguments: [Self.milliseconds(time)])
            return db.changesCount
        }
    }

    static func milliseconds(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded()) }

    /// A row as an event; nil for a row this version cannot read (skipped, never a crash).
    static func event(_ row: Row) -> PresenceEvent? {
        guard let kind = PresenceEvent.Kind(rawValue: row["kind"] ?? "") else { return nil }
        let reasonText: String? = row["reason"]
        let reasonCode: Int? = row["reason_code"]
        let at: Int64 = row["at"] ?? 0
        return PresenceEvent(
            sequence: row["sequence"] ?? 0, tenantID: row["tenant_id"] ?? "", deviceID: row["device_id"] ?? "", kind: kind,
            time: Date(timeIntervalSince1970: Double(at) / 1000), address: row["address"], protocolName: row["protocol"] ?? "",
            transport: row["transport"] ?? "", connectionID: UInt64(bitPattern: row["connection_id"] ?? 0),
            reason: reasonText.flatMap(PresenceReason.init(rawValue:)), reasonCode: reasonCode.flatMap { UInt8(exactly: $0) },
            online: row["online"] ?? false
        )
    }
}

import Foundation
import MeridianCore
import PostgresNIO

/// Presence events in PostgreSQL (table `presence_events`, migrations under component
/// `presence`): the same behaviour as ``SQLitePresenceStore``.
public final class PostgresPresenceStore: PresenceStore, Sendable {
    /// The advisory lock presence writers hold ("PRESENCE").
    static let writeLock: Int64 = 0x5052_4553_454E_4345

    public let database: PostgresDatabase

    static let migrations = PostgresMigrations(
        component: "presence",
        steps: [
            .init(
                "presence-v1",
                [
                    """
                    CREATE TABLE presence_events (
                        sequence BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                        tenant_id TEXT COLLATE "C" NOT NULL,
                        device_id TEXT COLLATE "C" NOT NULL,
                        kind TEXT NOT NULL,
                        at BIGINT NOT NULL,
                        address TEXT,
                        protocol TEXT NOT NULL,
                        transport TEXT NOT NULL,
                        connection_id BIGINT NOT NULL,
                        reason TEXT,
                        reason_code INTEGER,
                        online BOOLEAN NOT NULL
                    )
                    """,
                    "CREATE INDEX presence_events_device ON presence_events(device_id, sequence)",
                    "CREATE INDEX presence_events_at ON presence_events(at)",
                ]
            )
        ]
    )

    /// Opens the presence tables in `database` (its pool running) and migrates them.
    public init(database: PostgresDatabase) async throws {
        self.database = database
        try await database.migrate(Self.migrations)
    }

    /// PostgreSQL text cannot hold NUL.
    private static func clean(_ text: String) -> String { text.replacingOccurrences(of: "\0", with: "") }

    public func append(_ events: [PresenceEvent]) async throws {
        guard !events.isEmpty else { return }
        try await database.transaction(.write(lock: Self.writeLock)) { session in
            for event in events {
                let at = SQLitePresenceStore.milliseconds(event.time)
                let connection = Int64(bitPattern: event.connectionID)
                let reasonCode = event.reasonCode.map { Int32($0) }
                try session.execute(
                    """
                    INSERT INTO presence_events (tenant_id, device_id, kind, at, address, protocol, transport, connection_id, reason,
                        reason_code, online)
                    VALUES (\(Self.clean(event.tenantID)), \(Self.clean(event.deviceID)), \(event.kind.rawValue), \(at),
                        \(event.address.map(Self.clean)), \(Self.clean(event.protocolName)), \(Self.clean(event.transport)), \(connection),
                        \(event.reason?.rawValue), \(reasonCode), \(event.online))
                    """
                )
            }
        }
    }

    public func events(tenantID: String, deviceID: String, before: Int64?, limit: Int) async throws -> [PresenceEvent] {
        let before = before ?? Int64.max
        let limit = Int64(max(0, limit))
        let tenantID = Self.clean(tenantID)
        let deviceID = Self.clean(deviceID)
        return try await database.transaction(.read) { session in
            try session.rows(
                """
                SELECT * FROM presence_events WHERE device_id = \(deviceID) AND tenant_id = \(tenantID) AND sequence < \(before)
                ORDER BY sequence DESC LIMIT \(limit)
                """
            )
            .compactMap { row -> PresenceEvent? in
                guard let kind = PresenceEvent.Kind(rawValue: try row.value("kind", as: String.self)) else { return nil }
                let at = try row.value("at", as: Int64.self)
                let reasonText = try row.optional("reason", as: String.self)
                let reasonCode = try row.optional("reason_code", as: Int32.self)
                return PresenceEvent(
                    sequence: try row.value("sequence", as: Int64.self), tenantID: try row.value("tenant_id", as: String.self),
                    deviceID: try row.value("device_id", as: String.self), kind: kind, time: Date(timeIntervalSince1970: Double(at) / 1000),
                    address: try row.optional("address", as: String.self), protocolName: try row.value("protocol", as: String.self),
                    transport: try row.value("transport", as: String.self),
                    connectionID: UInt64(bitPattern: try row.value("connection_id", as: Int64.self)),
                    reason: reasonText.flatMap(PresenceReason.init(rawValue:)), reasonCode: reasonCode.flatMap { UInt8(exactly: $0) },
                    online: try row.value("online", as: Bool.self)
                )
            }
        }
    }

    public func deleteEvents(deviceID: String) async throws {
        let deviceID = Self.clean(deviceID)
        _ = try await database.transaction(.write(lock: Self.writeLock)) { session in
            try session.execute("DELETE FROM presence_events WHERE device_id = \(deviceID)")
        }
    }

    @discardableResult
    public func deleteEvents(before time: Date) async throws -> Int {
        let at = SQLitePresenceStore.milliseconds(time)
        return try await database.transaction(.write(lock: Self.writeLock)) { session in
            try session.execute("DELETE FROM presence_events WHERE at < \(at)")
        }
    }
}

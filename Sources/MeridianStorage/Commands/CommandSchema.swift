import Foundation
import MeridianCore

/// The `commands` table, in SQLite (inside `meridian.sqlite`) and in PostgreSQL, migration
/// `commands-v1` of component `commands` in both. Times are milliseconds since
/// 1970; `params` and `response` are JSON text; `due_at` is ``Command/dueAt`` (the sweep's index).
enum CommandSchema {
    static let sqliteV1 = """
        CREATE TABLE commands (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            method TEXT NOT NULL,
            params TEXT NOT NULL,
            one_way INTEGER NOT NULL,
            persistent INTEGER NOT NULL,
            timeout_ms INTEGER NOT NULL,
            expires_at INTEGER,
            actor TEXT NOT NULL,
            state TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            sent_at INTEGER,
            delivered_at INTEGER,
            completed_at INTEGER,
            convention TEXT,
            response TEXT,
            error TEXT,
            due_at INTEGER
        ) WITHOUT ROWID;
        CREATE INDEX commands_device ON commands(tenant_id, device_id, created_at, id);
        CREATE INDEX commands_queue ON commands(tenant_id, device_id, state, created_at, id);
        CREATE INDEX commands_due ON commands(due_at) WHERE due_at IS NOT NULL;
        """

    static let postgres = PostgresMigrations(
        component: "commands",
        steps: [
            .init(
                "commands-v1",
                [
                    """
                    CREATE TABLE commands (
                        id TEXT COLLATE "C" PRIMARY KEY,
                        tenant_id TEXT COLLATE "C" NOT NULL,
                        device_id TEXT COLLATE "C" NOT NULL,
                        method TEXT COLLATE "C" NOT NULL,
                        params TEXT NOT NULL,
                        one_way BOOLEAN NOT NULL,
                        persistent BOOLEAN NOT NULL,
                        timeout_ms BIGINT NOT NULL,
                        expires_at BIGINT,
                        actor TEXT COLLATE "C" NOT NULL,
                        state TEXT COLLATE "C" NOT NULL,
                        created_at BIGINT NOT NULL,
                        sent_at BIGINT,
                        delivered_at BIGINT,
                        completed_at BIGINT,
                        convention TEXT COLLATE "C",
                        response TEXT,
                        error TEXT,
                        due_at BIGINT
                    )
                    """,
                    "CREATE INDEX commands_device ON commands(tenant_id, device_id, created_at, id)",
                    "CREATE INDEX commands_queue ON commands(tenant_id, device_id, state, created_at, id)",
                    "CREATE INDEX commands_due ON commands(due_at) WHERE due_at IS NOT NULL",
                ]
            )
        ]
    )
}


/// Converting between ``Command`` and its columns, shared by both stores.
enum CommandColumns {
    static func milliseconds(_ date: Date) -> Int64 {
        Int64((date.timeIntervalSince1970 * 1000).rounded())
    }

    static func milliseconds(_ date: Date?) -> Int64? {
        date.map(milliseconds)
    }

    static func date(_ milliseconds: Int64?) -> Date? {
        milliseconds.map { Date(timeIntervalSince1970: Double($0) / 1000) }
    }

    static func json(_ value: JSONValue?) throws -> String? {
        try value.map { try JSONColumn.encode($0) }
    }

    static func value(_ text: String?) -> JSONValue? {
        guard let text else { return nil }
        return JSONColumn.decode(JSONValue.self, text, default: .null)
    }

    /// Text a store can keep (PostgreSQL refuses NUL bytes); ids with one match nothing.
    static func storable(_ value: String) -> Bool {
        !value.utf8.contains(0)
    }
}

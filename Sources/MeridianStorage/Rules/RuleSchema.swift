import Foundation
import MeridianCore

/// The rule tables, in SQLite (inside `meridian.sqlite`) and in PostgreSQL, migration `rules-v1`
/// of component `rules` in both.
///
/// - `rules`: each rule's current version (`definition` is ``Rule/json(includeSecrets:)`` with
///   secrets), one name per tenant; `rule_versions`: every version of each rule, the current one
///   included.
/// - `alarms`: each alarm as it is now (`document` is the ``Alarm`` as JSON); `alarm_history`:
///   its changes in order (`sequence` counts from 1 per alarm; `document` is the
///   ``AlarmHistoryEntry``).
/// - `rule_firings`: each firing (`document` is the ``RuleFiring``, its action outcomes included).
///
/// What lists filter and sort on is in real columns (times in milliseconds since 1970); the rest
/// is JSON text.
enum RuleSchema {
    static let sqliteV1 = """
        CREATE TABLE rules (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL,
            name TEXT NOT NULL,
            version INTEGER NOT NULL,
            definition TEXT NOT NULL,
            UNIQUE (tenant_id, name)
        ) WITHOUT ROWID;
        CREATE TABLE rule_versions (
            rule_id TEXT NOT NULL,
            version INTEGER NOT NULL,
            tenant_id TEXT NOT NULL,
            definition TEXT NOT NULL,
            PRIMARY KEY (rule_id, version)
        ) WITHOUT ROWID;
        CREATE TABLE alarms (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL,
            rule_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            status TEXT NOT NULL,
            severity TEXT NOT NULL,
            raised_at INTEGER NOT NULL,
            document TEXT NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX alarms_raised ON alarms(tenant_id, raised_at DESC, id DESC);
        CREATE INDEX alarms_rule ON alarms(tenant_id, rule_id, raised_at DESC, id DESC);
        CREATE INDEX alarms_device ON alarms(tenant_id, device_id, raised_at DESC, id DESC);
        CREATE INDEX alarms_open ON alarms(tenant_id, raised_at DESC, id DESC) WHERE status <> 'cleared';
        CREATE TABLE alarm_history (
            alarm_id TEXT NOT NULL,
            sequence INTEGER NOT NULL,
            at INTEGER NOT NULL,
            document TEXT NOT NULL,
            PRIMARY KEY (alarm_id, sequence)
        ) WITHOUT ROWID;
        CREATE TABLE rule_firings (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL,
            rule_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            at INTEGER NOT NULL,
            recorded_at INTEGER NOT NULL,
            document TEXT NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX rule_firings_at ON rule_firings(tenant_id, at DESC, id DESC);
        CREATE INDEX rule_firings_rule ON rule_firings(tenant_id, rule_id, at DESC, id DESC);
        CREATE INDEX rule_firings_device ON rule_firings(tenant_id, device_id, at DESC, id DESC);
        CREATE INDEX rule_firings_recorded ON rule_firings(recorded_at);
        """

    static let sqliteMigrations = SQLiteComponentMigrations(
        component: "rules",
        steps: [.init(identifier: "rules-v1", sql: sqliteV1)]
    )

    static let postgres = PostgresMigrations(
        component: "rules",
        steps: [
            .init(
                "rules-v1",
                [
                    """
                    CREATE TABLE rules (
                        id TEXT COLLATE "C" PRIMARY KEY,
                        tenant_id TEXT COLLATE "C" NOT NULL,
                        name TEXT COLLATE "C" NOT NULL,
                        version BIGINT NOT NULL,
                        definition TEXT NOT NULL,
                        UNIQUE (tenant_id, name)
                    )
                    """,
                    """
                    CREATE TABLE rule_versions (
                        rule_id TEXT COLLATE "C" NOT NULL,
                        version BIGINT NOT NULL,
                        tenant_id TEXT COLLATE "C" NOT NULL,
                        definition TEXT NOT NULL,
                        PRIMARY KEY (rule_id, version)
                    )
                    """,
                    """
                    CREATE TABLE alarms (
                        id TEXT COLLATE "C" PRIMARY KEY,
                        tenant_id TEXT COLLATE "C" NOT NULL,
                        rule_id TEXT COLLATE "C" NOT NULL,
                        device_id TEXT COLLATE "C" NOT NULL,
                        status TEXT COLLATE "C" NOT NULL,
                        severity TEXT COLLATE "C" NOT NULL,
                        raised_at BIGINT NOT NULL,
                        document TEXT NOT NULL
                    )
                    """,
                    "CREATE INDEX alarms_raised ON alarms(tenant_id, raised_at DESC, id DESC)",
                    "CREATE INDEX alarms_rule ON alarms(tenant_id, rule_id, raised_at DESC, id DESC)",
                    "CREATE INDEX alarms_device ON alarms(tenant_id, device_id, raised_at DESC, id DESC)",
                    "CREATE INDEX alarms_open ON alarms(tenant_id, raised_at DESC, id DESC) WHERE status <> 'cleared'",
                    """
                    CREATE TABLE alarm_history (
                        alarm_id TEXT COLLATE "C" NOT NULL,
                        sequence BIGINT NOT NULL,
                        at BIGINT NOT NULL,
                        document TEXT NOT NULL,
                        PRIMARY KEY (alarm_id, sequence)
                    )
                    """,
                    """
                    CREATE TABLE rule_firings (
                        id TEXT COLLATE "C" PRIMARY KEY,
                        tenant_id TEXT COLLATE "C" NOT NULL,
                        rule_id TEXT COLLATE "C" NOT NULL,
                        device_id TEXT COLLATE "C" NOT NULL,
                        at BIGINT NOT NULL,
                        recorded_at BIGINT NOT NULL,
                        document TEXT NOT NULL
                    )
                    """,
                    "CREATE INDEX rule_firings_at ON rule_firings(tenant_id, at DESC, id DESC)",
                    "CREATE INDEX rule_firings_rule ON rule_firings(tenant_id, rule_id, at DESC, id DESC)",
                    "CREATE INDEX rule_firings_device ON rule_firings(tenant_id, device_id, at DESC, id DESC)",
                    "CREATE INDEX rule_firings_recorded ON rule_firings(recorded_at)",
                ]
            )
        ]
    )
}

/// Converting rules, alarms and firings to and from their columns, shared by both backends.
enum RuleRows {
    /// Why a stored row could not be read back (a damaged or hand-edited row: an error, never
    /// a crash). Names the row, never its content.
    struct DamagedRow: Error, CustomStringConvertible {
        var description: String
    }

    static func milliseconds(_ date: Date) -> Int64 {
        RuleTime.milliseconds(date)
    }

    /// The rule's stored JSON (secrets included: the store is where they are kept).
    static func definition(_ rule: Rule) throws -> String {
        try JSONColumn.encode(rule.json(includeSecrets: true))
    }

    static func rule(definition text: String, tenantID: String) throws -> Rule {
        guard let json = try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) else {
            throw DamagedRow(description: "a stored rule of tenant \(tenantID) is not JSON")
        }
        do {
            return try Rule(storedJSON: json, tenantID: tenantID)
        } catch {
            throw DamagedRow(description: "a stored rule of tenant \(tenantID) does not read back: \(error)")
        }
    }

    static func document<T: Encodable>(_ value: T) throws -> String {
        try JSONColumn.encode(value)
    }

    static func decode<T: Decodable>(_ type: T.Type, _ text: String, what: String) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(text.utf8))
        } catch {
            throw DamagedRow(description: "a stored \(what) does not read back")
        }
    }

    /// Text a store can keep (PostgreSQL refuses NUL bytes); ids with one match nothing.
    static func storable(_ values: String...) -> Bool {
        values.allSatisfy { !$0.utf8.contains(0) }
    }

    /// Refuses, with a clear error, a row whose key columns PostgreSQL could not keep.
    static func requireStorable(_ values: String..., what: String) throws {
        guard values.allSatisfy({ !$0.utf8.contains(0) }) else {
            throw DamagedRow(description: "a \(what) id, tenant or name may not contain NUL characters")
        }
    }

    /// One of 32 advisory locks for an alarm or firing id (FNV-1a): writers of one alarm (or
    /// firing) serialize, writers of different ones mostly do not. `base` names the table.
    static func lockStripe(base: Int64, _ id: String) -> Int64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in id.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return base + Int64(hash % 32)
    }

    /// The page after the fetched `limit + 1` rows: the first `limit`, and a cursor when there
    /// were more.
    static func page<Item: Sendable>(_ items: [Item], limit: Int, key: (Item) -> (Int64, String)) -> Page<Item> {
        let page = Array(items.prefix(max(limit, 0)))
        let next =
            items.count > limit ? page.last.map { RuleListCursor.cursor(milliseconds: key($0).0, id: key($0).1) } : nil
        return Page(items: page, nextCursor: next)
    }
}

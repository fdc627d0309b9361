import Foundation
import GRDB
import MeridianCore

/// Rule firings and their action outcomes in the embedded SQLite database, `meridian.sqlite`
/// (the registry's file; the `rules` migration component).
///
/// Firings are written at rule-firing rate, each followed by one write per action outcome, so
/// the file is synced at WAL checkpoints rather than at every commit (`synchronous = NORMAL`, as
/// presence): a crash of the process loses nothing, a power failure at most the last moments'
/// firings — never the file.
public final class SQLiteRuleFiringStore: RuleFiringStore, Sendable {
    /// Why the store could not be opened.
    public struct OpenError: Error, CustomStringConvertible {
        public var description: String
    }

    private let database: DatabaseQueue

    /// Opens the firings in the database at `path` — normally the registry's, which the registry
    /// opened first (WAL) — creating the rule tables if needed.
    ///
    /// - Throws: ``OpenError`` when the file is refused (corrupt, or rules from a newer
    ///   Meridian).
    public init(path: String) throws {
        do {
            database = try RuleSchema.sqliteMigrations.open(
                path: path,
                label: "meridian.firings",
                synchronous: "NORMAL"
            )
        } catch let refusal as SQLiteFile.Refusal {
            throw OpenError(description: refusal.description)
        }
    }

    private init(database: DatabaseQueue) {
        self.database = database
    }

    /// A store in memory (tests): gone when released.
    public static func inMemory() throws -> SQLiteRuleFiringStore {
        let database = try DatabaseQueue()
        try RuleSchema.sqliteMigrations.migrate(database, path: ":memory:")
        return SQLiteRuleFiringStore(database: database)
    }

    private static func firing(_ text: String) throws -> RuleFiring {
        try RuleRows.decode(RuleFiring.self, text, what: "rule firing")
    }

    public func insert(_ firing: RuleFiring) async throws {
        let document = try RuleRows.document(firing)
        try await database.write { db in
            try db.execute(
                sql: """
                    INSERT INTO rule_firings (id, tenant_id, rule_id, device_id, at, recorded_at, document)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (id) DO UPDATE SET tenant_id = excluded.tenant_id, rule_id = excluded.rule_id,
                    device_id = excluded.device_id, at = excluded.at, recorded_at = excluded.recorded_at, document = excluded.document
                    """,
                arguments: [
                    firing.id, firing.tenantID, firing.ruleID, firing.deviceID, firing.at,
                    RuleRows.milliseconds(firing.recordedAt),
                    document,
                ]
            )
        }
    }

    public func record(_ outcome: RuleActionOutcome, firingID: String) async throws {
        try await database.write { db in
            guard
                let text = try String.fetchOne(
                    db,
                    sql: "SELECT document FROM rule_firings WHERE id = ?",
                    arguments: [firingID]
                )
            else {
                return
            }
            var firing = try Self.firing(text)
            firing.actions.setOutcome(outcome)
            try db.execute(
                sql: "UPDATE rule_firings SET document = ? WHERE id = ?",
                arguments: [try RuleRows.document(firing), firingID]
            )
        }
    }

    public func firing(id: String, tenantID: String) async throws -> RuleFiring? {
        try await database.read { db in
            try String.fetchOne(
                db,
                sql: "SELECT document FROM rule_firings WHERE id = ? AND tenant_id = ?",
                arguments: [id, tenantID]
            )
            .map(Self.firing)
        }
    }

    public func firings(
        tenantID: String,
        ruleID: String?,
        deviceID: String?,
        limit: Int,
        cursor: String?
    ) async throws -> Page<RuleFiring> {
        var sql = "SELECT document FROM rule_firings WHERE tenant_id = ?"
        var arguments: [(any DatabaseValueConvertible)?] = [tenantID]
        if let ruleID {
            sql += " AND rule_id = ?"
            arguments.append(ruleID)
        }
        if let deviceID {
            sql += " AND device_id = ?"
            arguments.append(deviceID)
        }
        if let bound = cursor.flatMap(RuleListCursor.parse) {
            sql += " AND (at, id) < (?, ?)"
            arguments += [bound.milliseconds, bound.id] as [(any DatabaseValueConvertible)?]
        }
        sql += " ORDER BY at DESC, id DESC LIMIT ?"
        arguments.append(max(limit, 0) + 1)
        let statement = sql
        let values = StatementArguments(arguments)
        let firings = try await database.read { db in
            try String.fetchAll(db, sql: statement, arguments: values).map(Self.firing)
        }
        return RuleRows.page(firings, limit: limit) { ($0.at, $0.id) }
    }

    public func prune(recordedBefore date: Date) async throws -> Int {
        try await database.write { db in
            try db.execute(
                sql: "DELETE FROM rule_firings WHERE recorded_at < ?",
                arguments: [RuleRows.milliseconds(date)]
            )
            return db.changesCount
        }
    }
}

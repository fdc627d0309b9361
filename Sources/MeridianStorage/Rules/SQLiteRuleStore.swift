import Foundation
import GRDB
import MeridianCore

/// Rules and their versions in the embedded SQLite database, `meridian.sqlite` (the registry's
/// file; migrations under component `rules` in `meridian_migrations`).
///
/// Rules are what operators wrote and were told were saved: every write is synced to disk
/// (`synchronous = FULL`, as commands).
public final class SQLiteRuleStore: RuleStore, Sendable {
    /// Why the store could not be opened.
    public struct OpenError: Error, CustomStringConvertible {
        public var description: String
    }

    private let database: DatabaseQueue

    /// Opens the rules in the database at `path` — normally the registry's, which the registry
    /// opened first (WAL) — creating the rule tables if needed.
    ///
    /// - Throws: ``OpenError`` when the file is refused (corrupt, or rules from a newer
    ///   Meridian).
    public init(path: String) throws {
        do {
            database = try RuleSchema.sqliteMigrations.open(path: path, label: "meridian.rules", synchronous: "FULL")
        } catch let refusal as SQLiteFile.Refusal {
            throw OpenError(description: refusal.description)
        }
    }

    private init(database: DatabaseQueue) {
        self.database = database
    }

    /// A store in memory (tests): gone when released.
    public static func inMemory() throws -> SQLiteRuleStore {
        let database = try DatabaseQueue()
        try RuleSchema.sqliteMigrations.migrate(database, path: ":memory:")
        return SQLiteRuleStore(database: database)
    }

    private static func rule(_ row: Row) throws -> Rule {
        try RuleRows.rule(definition: row["definition"], tenantID: row["tenant_id"])
    }

    public func insert(_ rule: Rule) async throws {
        let definition = try RuleRows.definition(rule)
        try await database.write { db in
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM rules WHERE id = ?", arguments: [rule.id]) != nil {
                throw RuleStoreError.duplicateID(rule.id)
            }
            if try Bool.fetchOne(
                db,
                sql: "SELECT 1 FROM rules WHERE tenant_id = ? AND name = ?",
                arguments: [rule.tenantID, rule.name]
            ) != nil {
                throw RuleStoreError.nameTaken(rule.name)
            }
            try db.execute(
                sql: "INSERT INTO rules (id, tenant_id, name, version, definition) VALUES (?, ?, ?, ?, ?)",
                arguments: [rule.id, rule.tenantID, rule.name, rule.version, definition]
            )
            try db.execute(
                sql: "INSERT INTO rule_versions (rule_id, version, tenant_id, definition) VALUES (?, ?, ?, ?)",
                arguments: [rule.id, rule.version, rule.tenantID, definition]
            )
        }
    }

    public func update(_ rule: Rule, expectedVersion: Int) async throws -> Bool {
        let definition = try RuleRows.definition(rule)
        return try await database.write { db in
            let stored = try Int.fetchOne(
                db,
                sql: "SELECT version FROM rules WHERE id = ? AND tenant_id = ?",
                arguments: [rule.id, rule.tenantID]
            )
            guard stored == expectedVersion else { return false }
            if try Bool.fetchOne(
                db,
                sql: "SELECT 1 FROM rules WHERE tenant_id = ? AND name = ? AND id <> ?",
                arguments: [rule.tenantID, rule.name, rule.id]
            ) != nil {
                throw RuleStoreError.nameTaken(rule.name)
            }
            try db.execute(
                sql:
                    "UPDATE rules SET name = ?, version = ?, definition = ? WHERE id = ? AND tenant_id = ? AND version = ?",
                arguments: [rule.name, rule.version, definition, rule.id, rule.tenantID, expectedVersion]
            )
            guard db.changesCount == 1 else { return false }
            try db.execute(
                sql: "INSERT INTO rule_versions (rule_id, version, tenant_id, definition) VALUES (?, ?, ?, ?)",
                arguments: [rule.id, rule.version, rule.tenantID, definition]
            )
            return true
        }
    }

    public func delete(id: String, tenantID: String) async throws -> Bool {
        try await database.write { db in
            try db.execute(sql: "DELETE FROM rules WHERE id = ? AND tenant_id = ?", arguments: [id, tenantID])
            guard db.changesCount > 0 else { return false }
            try db.execute(sql: "DELETE FROM rule_versions WHERE rule_id = ?", arguments: [id])
            return true
        }
    }

    public func rule(id: String, tenantID: String) async throws -> Rule? {
        try await database.read { db in
            try Row.fetchOne(
                db,
                sql: "SELECT tenant_id, definition FROM rules WHERE id = ? AND tenant_id = ?",
                arguments: [id, tenantID]
            )
            .map(Self.rule)
        }
    }

    public func rule(named name: String, tenantID: String) async throws -> Rule? {
        try await database.read { db in
            try Row.fetchOne(
                db,
                sql: "SELECT tenant_id, definition FROM rules WHERE tenant_id = ? AND name = ?",
                arguments: [tenantID, name]
            ).map(Self.rule)
        }
    }

    public func rules(tenantID: String) async throws -> [Rule] {
        try await database.read { db in
            try Row.fetchAll(
                db,
                sql: "SELECT tenant_id, definition FROM rules WHERE tenant_id = ? ORDER BY name, id",
                arguments: [tenantID]
            ).map(Self.rule)
        }
    }

    public func allRules() async throws -> [Rule] {
        try await database.read { db in
            try Row.fetchAll(db, sql: "SELECT tenant_id, definition FROM rules ORDER BY tenant_id, name, id").map(
                Self.rule
            )
        }
    }

    public func versions(id: String, tenantID: String) async throws -> [Rule] {
        try await database.read { db in
            guard
                try Bool.fetchOne(
                    db,
                    sql: "SELECT 1 FROM rules WHERE id = ? AND tenant_id = ?",
                    arguments: [id, tenantID]
                ) != nil
            else {
                return []
            }
            return try Row.fetchAll(
                db,
                sql: "SELECT tenant_id, definition FROM rule_versions WHERE rule_id = ? ORDER BY version DESC",
                arguments: [id]
            ).map(Self.rule)
        }
    }
}

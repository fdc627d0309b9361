import Foundation
import MeridianCore
import PostgresNIO

/// Rules and their versions in PostgreSQL (the registry's database; migration component
/// `rules`): the same behaviour as ``SQLiteRuleStore``. Writers hold one advisory lock, so the
/// name and version checks hold across several nodes sharing the database.
public final class PostgresRuleStore: RuleStore, Sendable {
    /// Why the store could not be opened.
    public struct OpenError: Error, CustomStringConvertible {
        public var description: String
    }

    public let database: PostgresDatabase
    /// The advisory lock rule writers hold ("RULES" in ASCII).
    static let writeLock: Int64 = 0x5255_4C45_5300_0000

    /// Opens the rules in `database` (whose pool must be running) and migrates the rule tables.
    public init(database: PostgresDatabase) async throws {
        self.database = database
        do {
            try await database.checkConnection()
            try await database.migrate(RuleSchema.postgres)
        } catch let error as PostgresDatabase.DatabaseError {
            throw OpenError(description: error.description)
        }
    }

    private static func rule(_ row: PostgresRandomAccessRow) throws -> Rule {
        try RuleRows.rule(definition: try row.value("definition"), tenantID: try row.value("tenant_id"))
    }

    public func insert(_ rule: Rule) async throws {
        try RuleRows.requireStorable(rule.id, rule.tenantID, rule.name, what: "rule")
        let definition = try RuleRows.definition(rule)
        let version = Int64(rule.version)
        _ = try await database.transaction(.write(lock: Self.writeLock)) { session in
            if try session.row("SELECT 1 AS found FROM rules WHERE id = \(rule.id)") != nil {
                throw RuleStoreError.duplicateID(rule.id)
            }
            if try session.row(
                "SELECT 1 AS found FROM rules WHERE tenant_id = \(rule.tenantID) AND name = \(rule.name)"
            ) != nil {
                throw RuleStoreError.nameTaken(rule.name)
            }
            try session.execute(
                """
                INSERT INTO rules (id, tenant_id, name, version, definition)
                VALUES (\(rule.id), \(rule.tenantID), \(rule.name), \(version), \(definition))
                """
            )
            try session.execute(
                """
                INSERT INTO rule_versions (rule_id, version, tenant_id, definition)
                VALUES (\(rule.id), \(version), \(rule.tenantID), \(definition))
                """
            )
        }
    }

    public func update(_ rule: Rule, expectedVersion: Int) async throws -> Bool {
        guard RuleRows.storable(rule.id, rule.tenantID) else { return false }
        try RuleRows.requireStorable(rule.name, what: "rule")
        let definition = try RuleRows.definition(rule)
        let version = Int64(rule.version)
        let expected = Int64(expectedVersion)
        return try await database.transaction(.write(lock: Self.writeLock)) { session in
            let stored = try session.row(
                "SELECT version FROM rules WHERE id = \(rule.id) AND tenant_id = \(rule.tenantID)"
            )
            .map { try $0.value("version", as: Int64.self) }
            guard stored == expected else { return false }
            if try session.row(
                "SELECT 1 AS found FROM rules WHERE tenant_id = \(rule.tenantID) AND name = \(rule.name) AND id <> \(rule.id)"
            ) != nil {
                throw RuleStoreError.nameTaken(rule.name)
            }
            let changed = try session.execute(
                """
                UPDATE rules SET name = \(rule.name), version = \(version), definition = \(definition)
                WHERE id = \(rule.id) AND tenant_id = \(rule.tenantID) AND version = \(expected)
                """
            )
            guard changed == 1 else { return false }
            try session.execute(
                """
                INSERT INTO rule_versions (rule_id, version, tenant_id, definition)
                VALUES (\(rule.id), \(version), \(rule.tenantID), \(definition))
                """
            )
            return true
        }
    }

    public func delete(id: String, tenantID: String) async throws -> Bool {
        guard RuleRows.storable(id, tenantID) else { return false }
        return try await database.transaction(.write(lock: Self.writeLock)) { session in
            guard try session.execute("DELETE FROM rules WHERE id = \(id) AND tenant_id = \(tenantID)") > 0 else {
                return false
            }
            try session.execute("DELETE FROM rule_versions WHERE rule_id = \(id)")
            return true
        }
    }

    public func rule(id: String, tenantID: String) async throws -> Rule? {
        guard RuleRows.storable(id, tenantID) else { return nil }
        return try await database.transaction(.read) { session in
            try session.row("SELECT tenant_id, definition FROM rules WHERE id = \(id) AND tenant_id = \(tenantID)").map(
                Self.rule
            )
        }
    }

    public func rule(named name: String, tenantID: String) async throws -> Rule? {
        guard RuleRows.storable(name, tenantID) else { return nil }
        return try await database.transaction(.read) { session in
            try session.row("SELECT tenant_id, definition FROM rules WHERE tenant_id = \(tenantID) AND name = \(name)")
                .map(Self.rule)
        }
    }

    public func rules(tenantID: String) async throws -> [Rule] {
        guard RuleRows.storable(tenantID) else { return [] }
        return try await database.transaction(.read) { session in
            try session.rows("SELECT tenant_id, definition FROM rules WHERE tenant_id = \(tenantID) ORDER BY name, id")
                .map(Self.rule)
        }
    }

    public func allRules() async throws -> [Rule] {
        try await database.transaction(.read) { session in
            try session.rows("SELECT tenant_id, definition FROM rules ORDER BY tenant_id, name, id").map(Self.rule)
        }
    }

    public func versions(id: String, tenantID: String) async throws -> [Rule] {
        guard RuleRows.storable(id, tenantID) else { return [] }
        return try await database.transaction(.read) { session in
            guard try session.row("SELECT 1 AS found FROM rules WHERE id = \(id) AND tenant_id = \(tenantID)") != nil
            else { return [] }
            return try session.rows(
                "SELECT tenant_id, definition FROM rule_versions WHERE rule_id = \(id) ORDER BY version DESC"
            ).map(Self.rule)
        }
    }
}

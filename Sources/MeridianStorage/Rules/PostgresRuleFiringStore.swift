import Foundation
import MeridianCore
import PostgresNIO

/// Rule firings and their action outcomes in PostgreSQL (the registry's database; migration
/// component `rules`): the same behaviour as ``SQLiteRuleFiringStore``. Writers of one firing
/// serialize on one of 32 advisory locks (by firing id), so that two outcomes recorded at once
/// both stay, while writers of different firings mostly run side by side.
public final class PostgresRuleFiringStore: RuleFiringStore, Sendable {
    /// Why the store could not be opened.
    public struct OpenError: Error, CustomStringConvertible {
        public var description: String
    }

    public let database: PostgresDatabase
    /// The first of the firing writers' advisory locks ("FIRING" in ASCII, plus the stripe).
    static let writeLockBase: Int64 = 0x4649_5249_4E47_0000
    /// The lock pruning holds: none of the writers' (deleting touches rows of every stripe, and
    /// a deleted firing's late outcome is simply dropped).
    static let pruneLock: Int64 = 0x4649_5249_4E47_FFFF

    /// Opens the firings in `database` (whose pool must be running) and migrates the rule tables.
    public init(database: PostgresDatabase) async throws {
        self.database = database
        do {
            try await database.checkConnection()
            try await database.migrate(RuleSchema.postgres)
        } catch let error as PostgresDatabase.DatabaseError {
            throw OpenError(description: error.description)
        }
    }

    private static func firing(_ row: PostgresRandomAccessRow) throws -> RuleFiring {
        try RuleRows.decode(RuleFiring.self, try row.value("document"), what: "rule firing")
    }

    public func insert(_ firing: RuleFiring) async throws {
        try RuleRows.requireStorable(firing.id, firing.tenantID, firing.ruleID, firing.deviceID, what: "rule firing")
        let document = try RuleRows.document(firing)
        let recordedAt = RuleRows.milliseconds(firing.recordedAt)
        _ = try await database.transaction(.write(lock: RuleRows.lockStripe(base: Self.writeLockBase, firing.id))) {
            session in
            try session.execute(
                """
                INSERT INTO rule_firings (id, tenant_id, rule_id, device_id, at, recorded_at, document)
                VALUES (\(firing.id), \(firing.tenantID), \(firing.ruleID), \(firing.deviceID), \(firing.at), \(recordedAt), \(document))
                ON CONFLICT (id) DO UPDATE SET tenant_id = excluded.tenant_id, rule_id = excluded.rule_id,
                device_id = excluded.device_id, at = excluded.at, recorded_at = excluded.recorded_at, document = excluded.document
                """
            )
        }
    }

    public func record(_ outcome: RuleActionOutcome, firingID: String) async throws {
        guard RuleRows.storable(firingID) else { return }
        _ = try await database.transaction(.write(lock: RuleRows.lockStripe(base: Self.writeLockBase, firingID))) {
            session in
            guard let row = try session.row("SELECT document FROM rule_firings WHERE id = \(firingID) FOR UPDATE")
            else { return }
            var firing = try Self.firing(row)
            firing.actions.setOutcome(outcome)
            let document = try RuleRows.document(firing)
            try session.execute("UPDATE rule_firings SET document = \(document) WHERE id = \(firingID)")
        }
    }

    public func firing(id: String, tenantID: String) async throws -> RuleFiring? {
        guard RuleRows.storable(id, tenantID) else { return nil }
        return try await database.transaction(.read) { session in
            try session.row("SELECT document FROM rule_firings WHERE id = \(id) AND tenant_id = \(tenantID)").map(
                Self.firing
            )
        }
    }

    public func firings(
        tenantID: String,
        ruleID: String?,
        deviceID: String?,
        limit: Int,
        cursor: String?
    ) async throws -> Page<RuleFiring> {
        let empty = Page<RuleFiring>(items: [], nextCursor: nil)
        guard RuleRows.storable(tenantID, ruleID ?? "", deviceID ?? "") else { return empty }
        var statement = PostgresStatement("SELECT document FROM rule_firings WHERE tenant_id = ")
        let tenant = statement.bind(tenantID)
        statement.append(tenant)
        if let ruleID {
            let placeholder = statement.bind(ruleID)
            statement.append(" AND rule_id = \(placeholder)")
        }
        if let deviceID {
            let placeholder = statement.bind(deviceID)
            statement.append(" AND device_id = \(placeholder)")
        }
        if let bound = cursor.flatMap(RuleListCursor.parse) {
            guard RuleRows.storable(bound.id) else { return empty }
            let milliseconds = statement.bind(bound.milliseconds)
            let id = statement.bind(bound.id)
            statement.append(" AND (at, id) < (\(milliseconds), \(id))")
        }
        let fetch = statement.bind(Int64(max(limit, 0) + 1))
        statement.append(" ORDER BY at DESC, id DESC LIMIT \(fetch)")
        let query = statement.query
        let firings = try await database.transaction(.read) { session in
            try session.rows(query).map(Self.firing)
        }
        return RuleRows.page(firings, limit: limit) { ($0.at, $0.id) }
    }

    public func prune(recordedBefore date: Date) async throws -> Int {
        let bound = RuleRows.milliseconds(date)
        return try await database.transaction(.write(lock: Self.pruneLock)) { session in
            try session.execute("DELETE FROM rule_firings WHERE recorded_at < \(bound)")
        }
    }
}

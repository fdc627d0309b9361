import Foundation
import MeridianCore
import MeridianStorage
import Testing

/// The same cases against every `RuleStore`: what the rule API and the engine rely on — names
/// unique per tenant, compare-and-set updates with every version kept, deletes that take the
/// history along, tenants that never see each other's rules, rules that survive a restart —
/// must behave identically in memory, on SQLite and on PostgreSQL.
@Suite("RuleStore conformance")
struct RuleStoreConformanceTests {
    static let openers = RuleStoreContext<any RuleStore>.Openers(
        reference: { InMemoryRuleStore() },
        sqliteInMemory: { try SQLiteRuleStore.inMemory() },
        sqlitePath: { try SQLiteRuleStore(path: $0) },
        postgres: { try await PostgresRuleStore(database: $0) }
    )

    @Test("in memory and SQLite", arguments: RuleStoreConformance.cases, RuleStoreBackend.local)
    func local(_ conformanceCase: RuleConformanceCase<any RuleStore>, _ backend: RuleStoreBackend) async throws {
        try await RuleStoreContext.with(backend, Self.openers, conformanceCase.body)
    }

    @Test(
        "PostgreSQL",
        .enabled(if: PostgresTestServer.isConfigured, "needs MERIDIAN_TEST_POSTGRES_URL (bash scripts/test sets it)"),
        arguments: RuleStoreConformance.cases
    )
    func postgres(_ conformanceCase: RuleConformanceCase<any RuleStore>) async throws {
        try await RuleStoreContext.with(.postgres, Self.openers, conformanceCase.body)
    }
}

enum RuleStoreConformance {
    typealias Case = RuleConformanceCase<any RuleStore>

    static func rule(
        _ id: String,
        _ name: String,
        _ tenant: String,
        _ version: Int,
        _ threshold: Double,
        _ secret: String
    ) throws -> Rule {
        try RuleFixtures.rule(id, name: name, tenant: tenant, version: version, threshold: threshold, secret: secret)
    }

    static let cases: [Case] = [
        Case("a rule reads back whole, by id and by name, secrets included") { context in
            let overheat = try rule("r1", "overheat", "t1", 1, 80, "hmac-key")
            try await context.store.insert(overheat)
            #expect(try await context.store.rule(id: "r1", tenantID: "t1") == overheat)
            #expect(try await context.store.rule(named: "overheat", tenantID: "t1") == overheat)
            let stored = try #require(try await context.store.rule(id: "r1", tenantID: "t1"))
            guard case .webhook(let webhook)? = stored.definition.actions.first?.kind else {
                Issue.record("the webhook action did not survive: \(stored.definition.actions)")
                return
            }
            #expect(webhook.secret == "hmac-key")
            #expect(try await context.store.rule(id: "missing", tenantID: "t1") == nil)
            #expect(try await context.store.rule(named: "missing", tenantID: "t1") == nil)
            #expect(try await context.store.versions(id: "r1", tenantID: "t1") == [overheat])
        },
        Case("a tenant's rules list by name; all rules by tenant, then name") { context in
            try await context.store.insert(try rule("r1", "zeta", "t1", 1, 80, "s"))
            try await context.store.insert(try rule("r2", "alpha", "t1", 1, 80, "s"))
            try await context.store.insert(try rule("r3", "mid", "t1", 1, 80, "s"))
            try await context.store.insert(try rule("r4", "alpha", "t0", 1, 80, "s"))
            #expect(try await context.store.rules(tenantID: "t1").map(\.id) == ["r2", "r3", "r1"])
            #expect(try await context.store.rules(tenantID: "t0").map(\.id) == ["r4"])
            #expect(try await context.store.rules(tenantID: "t9").isEmpty)
            #expect(try await context.store.allRules().map(\.id) == ["r4", "r2", "r3", "r1"])
        },
        Case("a name is taken within a tenant, on insert and on rename; other tenants may use it") { context in
            try await context.store.insert(try rule("r1", "overheat", "t1", 1, 80, "s"))
            try await context.store.insert(try rule("r2", "cold", "t1", 1, 80, "s"))
            await #expect(throws: RuleStoreError.nameTaken("overheat")) {
                try await context.store.insert(try rule("r3", "overheat", "t1", 1, 80, "s"))
            }
            await #expect(throws: RuleStoreError.duplicateID("r1")) {
                try await context.store.insert(try rule("r1", "other", "t1", 1, 80, "s"))
            }
            // Another tenant may have a rule of the same name.
            try await context.store.insert(try rule("r4", "overheat", "t2", 1, 80, "s"))
            await #expect(throws: RuleStoreError.nameTaken("overheat")) {
                _ = try await context.store.update(try rule("r2", "overheat", "t1", 2, 80, "s"), expectedVersion: 1)
            }
            // The refused rename changed nothing.
            #expect(try await context.store.rule(id: "r2", tenantID: "t1")?.name == "cold")
            #expect(try await context.store.versions(id: "r2", tenantID: "t1").map(\.version) == [1])
            // A rename to a free name frees the old one.
            #expect(try await context.store.update(try rule("r2", "chilly", "t1", 2, 80, "s"), expectedVersion: 1))
            #expect(try await context.store.rule(named: "cold", tenantID: "t1") == nil)
            #expect(try await context.store.rule(named: "chilly", tenantID: "t1")?.id == "r2")
            try await context.store.insert(try rule("r5", "cold", "t1", 1, 80, "s"))
            // Keeping its own name is no conflict.
            #expect(try await context.store.update(try rule("r2", "chilly", "t1", 3, 85, "s"), expectedVersion: 2))
        },
        Case("an update is a compare-and-set on the version; every version is kept, newest first") { context in
            let first = try rule("r1", "overheat", "t1", 1, 80, "s")
            try await context.store.insert(first)
            let second = try rule("r1", "overheat", "t1", 2, 85, "s")
            #expect(try await context.store.update(second, expectedVersion: 1))
            // A writer that still holds version 1 loses.
            let stale = try rule("r1", "overheat", "t1", 2, 99, "s")
            #expect(try await context.store.update(stale, expectedVersion: 1) == false)
            #expect(try await context.store.rule(id: "r1", tenantID: "t1") == second)
            let third = try rule("r1", "overheated", "t1", 3, 90, "s")
            #expect(try await context.store.update(third, expectedVersion: 2))
            #expect(try await context.store.rule(id: "r1", tenantID: "t1") == third)
            let versions = try await context.store.versions(id: "r1", tenantID: "t1")
            #expect(versions == [third, second, first])
            guard case .threshold(let threshold) = versions.last?.definition.condition else {
                Issue.record("version 1's condition did not survive")
                return
            }
            #expect(threshold.raise.value == 80)
            // No such rule: nothing to update.
            #expect(
                try await context.store.update(try rule("r9", "ghost", "t1", 2, 80, "s"), expectedVersion: 1) == false
            )
            #expect(try await context.store.rule(id: "r9", tenantID: "t1") == nil)
        },
        Case("deleting a rule deletes its versions") { context in
            try await context.store.insert(try rule("r1", "overheat", "t1", 1, 80, "s"))
            #expect(try await context.store.update(try rule("r1", "overheat", "t1", 2, 85, "s"), expectedVersion: 1))
            #expect(try await context.store.delete(id: "r1", tenantID: "t1"))
            #expect(try await context.store.delete(id: "r1", tenantID: "t1") == false)
            #expect(try await context.store.rule(id: "r1", tenantID: "t1") == nil)
            #expect(try await context.store.rule(named: "overheat", tenantID: "t1") == nil)
            #expect(try await context.store.versions(id: "r1", tenantID: "t1").isEmpty)
            // The name and the id are free again, and the new rule has only its own history.
            let again = try rule("r1", "overheat", "t1", 1, 70, "s")
            try await context.store.insert(again)
            #expect(try await context.store.versions(id: "r1", tenantID: "t1") == [again])
        },
        Case("another tenant's rule id reads as missing and cannot be changed") { context in
            let mine = try rule("r1", "overheat", "t1", 1, 80, "s")
            try await context.store.insert(mine)
            #expect(try await context.store.rule(id: "r1", tenantID: "t2") == nil)
            #expect(try await context.store.rule(named: "overheat", tenantID: "t2") == nil)
            #expect(try await context.store.versions(id: "r1", tenantID: "t2").isEmpty)
            #expect(
                try await context.store.update(try rule("r1", "stolen", "t2", 2, 1, "s"), expectedVersion: 1) == false
            )
            #expect(try await context.store.delete(id: "r1", tenantID: "t2") == false)
            #expect(try await context.store.rule(id: "r1", tenantID: "t1") == mine)
            #expect(try await context.store.rules(tenantID: "t2").isEmpty)
        },
        Case("rules and their versions survive reopening the database (a restart)") { context in
            let first = try rule("r1", "overheat", "t1", 1, 80, "s")
            let second = try rule("r1", "overheat", "t1", 2, 85, "s")
            try await context.store.insert(first)
            #expect(try await context.store.update(second, expectedVersion: 1))
            try await context.reopen { again in
                let rules = try await again.allRules()
                let versions = try await again.versions(id: "r1", tenantID: "t1")
                #expect(rules == [second])
                #expect(versions == [second, first])
            }
        },
    ]
}

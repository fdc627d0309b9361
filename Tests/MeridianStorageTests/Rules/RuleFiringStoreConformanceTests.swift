import Foundation
import MeridianCore
import MeridianStorage
import Testing

/// The same cases against every `RuleFiringStore`: "why did this fire, and what did it do?" —
/// a firing reads back whole, action outcomes are replaced or appended as actions finish, lists
/// by rule and by device page newest first, retention prunes, tenants stay apart, data survives
/// a restart — identical in memory, on SQLite and on PostgreSQL.
@Suite("RuleFiringStore conformance")
struct RuleFiringStoreConformanceTests {
    static let openers = RuleStoreContext<any RuleFiringStore>.Openers(
        reference: { InMemoryRuleFiringStore() },
        sqliteInMemory: { try SQLiteRuleFiringStore.inMemory() },
        sqlitePath: { try SQLiteRuleFiringStore(path: $0) },
        postgres: { try await PostgresRuleFiringStore(database: $0) }
    )

    @Test("in memory and SQLite", arguments: RuleFiringStoreConformance.cases, RuleStoreBackend.local)
    func local(_ conformanceCase: RuleConformanceCase<any RuleFiringStore>, _ backend: RuleStoreBackend) async throws {
        try await RuleStoreContext.with(backend, Self.openers, conformanceCase.body)
    }

    @Test(
        "PostgreSQL",
        .enabled(if: PostgresTestServer.isConfigured, "needs MERIDIAN_TEST_POSTGRES_URL (bash scripts/test sets it)"),
        arguments: RuleFiringStoreConformance.cases
    )
    func postgres(_ conformanceCase: RuleConformanceCase<any RuleFiringStore>) async throws {
        try await RuleStoreContext.with(.postgres, Self.openers, conformanceCase.body)
    }
}

enum RuleFiringStoreConformance {
    typealias Case = RuleConformanceCase<any RuleFiringStore>
    static let base = RuleFixtures.base
    static let baseMilliseconds = RuleTime.milliseconds(RuleFixtures.base)

    static func firing(
        _ id: String,
        tenant: String = "t1",
        rule: String = "r1",
        device: String = "d1",
        at offset: Int64 = 0,
        recorded recordedOffset: Double = 0,
        event: RuleFiring.Event = .raise,
        actions: [RuleActionOutcome] = []
    ) -> RuleFiring {
        RuleFiring(
            id: id,
            tenantID: tenant,
            ruleID: rule,
            ruleName: "overheat",
            ruleVersion: 3,
            deviceID: device,
            event: event,
            at: baseMilliseconds + offset,
            recordedAt: base.addingTimeInterval(recordedOffset),
            message: "temp > 80 for 5m (temp = 81.5)",
            values: ["temp": 81.5, "door": "open", "reported.setpoint": 70],
            alarmID: event == .raise ? "alm_\(id)" : nil,
            actions: actions
        )
    }

    static func outcome(
        _ index: Int,
        _ type: String,
        _ status: RuleActionOutcome.Status,
        attempts: Int = 1,
        at offset: Double = 1
    )
        -> RuleActionOutcome
    {
        RuleActionOutcome(
            index: index,
            type: type,
            status: status,
            detail: "\(type) \(status.rawValue)",
            attempts: attempts,
            at: base.addingTimeInterval(offset)
        )
    }

    /// Every page of a list, following cursors.
    static func all(
        _ store: any RuleFiringStore,
        tenant: String = "t1",
        rule: String?,
        device: String?,
        limit: Int
    ) async throws -> (ids: [String], pages: Int) {
        var ids: [String] = []
        var cursor: String?
        var pages = 0
        repeat {
            let page = try await store.firings(
                tenantID: tenant,
                ruleID: rule,
                deviceID: device,
                limit: limit,
                cursor: cursor
            )
            ids += page.items.map(\.id)
            pages += 1
            cursor = page.nextCursor
        } while cursor != nil && pages < 100
        return (ids, pages)
    }

    static let cases: [Case] = [
        Case("a firing reads back whole, in its tenant only") { context in
            let raise = firing("f1", actions: [outcome(0, "webhook", .pending, attempts: 0)])
            let clear = firing("f2", at: 60_000, event: .clear)
            try await context.store.insert(raise)
            try await context.store.insert(clear)
            #expect(try await context.store.firing(id: "f1", tenantID: "t1") == raise)
            #expect(try await context.store.firing(id: "f2", tenantID: "t1") == clear)
            #expect(try await context.store.firing(id: "f1", tenantID: "t2") == nil)
            #expect(try await context.store.firing(id: "missing", tenantID: "t1") == nil)
            #expect(
                try await context.store.firings(tenantID: "t2", ruleID: nil, deviceID: nil, limit: 10, cursor: nil)
                    .items.isEmpty
            )
        },
        Case("an action's outcome replaces the one at its index, or is appended in index order") { context in
            try await context.store.insert(firing("f1", actions: [outcome(0, "webhook", .pending, attempts: 0)]))
            try await context.store.record(outcome(2, "command", .succeeded), firingID: "f1")
            try await context.store.record(outcome(1, "republish", .dropped), firingID: "f1")
            try await context.store.record(outcome(0, "webhook", .deadLettered, attempts: 5, at: 40), firingID: "f1")
            let stored = try #require(try await context.store.firing(id: "f1", tenantID: "t1"))
            #expect(
                stored.actions == [
                    outcome(0, "webhook", .deadLettered, attempts: 5, at: 40), outcome(1, "republish", .dropped),
                    outcome(2, "command", .succeeded),
                ]
            )
            // The rest of the firing is untouched.
            var expected = firing("f1")
            expected.actions = stored.actions
            #expect(stored == expected)
            // An outcome for a firing that is gone (pruned) is dropped quietly.
            try await context.store.record(outcome(0, "webhook", .succeeded), firingID: "missing")
            #expect(try await context.store.firing(id: "missing", tenantID: "t1") == nil)
        },
        Case("outcomes recorded at once all stay") { context in
            try await context.store.insert(firing("f1"))
            let store = context.store
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<8 {
                    group.addTask { try await store.record(outcome(index, "webhook", .succeeded), firingID: "f1") }
                }
                try await group.waitForAll()
            }
            #expect(try await store.firing(id: "f1", tenantID: "t1")?.actions.map(\.index) == Array(0..<8))
        },
        Case("firings list newest first by rule and by device, paging without loss") { context in
            // 24 firings: rules r0-r2, devices d0-d3, two per millisecond (ties break by id).
            var all: [RuleFiring] = []
            for index in 0..<24 {
                let id = "f" + String(format: "%02d", (index * 5) % 24)
                all.append(firing(id, rule: "r\(index % 3)", device: "d\(index % 4)", at: Int64(index / 2) * 1_000))
            }
            for item in all { try await context.store.insert(item) }
            try await context.store.insert(firing("x1", tenant: "t2", at: 99_000))
            func expected(rule: String?, device: String?) -> [String] {
                all.filter { firing in
                    (rule.map { firing.ruleID == $0 } ?? true) && (device.map { firing.deviceID == $0 } ?? true)
                }
                .sorted { ($0.at, $0.id) > ($1.at, $1.id) }.map(\.id)
            }
            let everything = try await Self.all(context.store, rule: nil, device: nil, limit: 10)
            #expect(everything.ids == expected(rule: nil, device: nil))
            #expect(everything.ids.count == 24)
            #expect(everything.pages == 3)
            #expect(Set(everything.ids).count == 24)
            let byRule = try await Self.all(context.store, rule: "r1", device: nil, limit: 3)
            #expect(byRule.ids == expected(rule: "r1", device: nil))
            #expect(byRule.ids.count == 8)
            let byDevice = try await Self.all(context.store, rule: nil, device: "d2", limit: 2)
            #expect(byDevice.ids == expected(rule: nil, device: "d2"))
            #expect(byDevice.ids.count == 6)
            let both = try await Self.all(context.store, rule: "r0", device: "d0", limit: 1)
            #expect(both.ids == expected(rule: "r0", device: "d0"))
            #expect(
                try await context.store.firings(tenantID: "t1", ruleID: "r9", deviceID: nil, limit: 5, cursor: nil)
                    .items.isEmpty
            )
            // The first page ends with a cursor made of the last item's time and id.
            let first = try await context.store.firings(
                tenantID: "t1",
                ruleID: nil,
                deviceID: nil,
                limit: 2,
                cursor: nil
            )
            let last = try #require(first.items.last)
            #expect(first.nextCursor == RuleListCursor.cursor(milliseconds: last.at, id: last.id))
        },
        Case("pruning deletes the firings recorded before the date and says how many") { context in
            for index in 0..<6 {
                try await context.store.insert(
                    firing(
                        "f\(index)",
                        tenant: index % 2 == 0 ? "t1" : "t2",
                        at: Int64(index),
                        recorded: Double(index) * 60
                    )
                )
            }
            #expect(try await context.store.prune(recordedBefore: base.addingTimeInterval(180)) == 3)
            #expect(try await context.store.firing(id: "f2", tenantID: "t1") == nil)
            #expect(try await context.store.firing(id: "f3", tenantID: "t2") != nil)
            #expect(try await context.store.prune(recordedBefore: base.addingTimeInterval(180)) == 0)
            let left = try await context.store.firings(
                tenantID: "t1",
                ruleID: nil,
                deviceID: nil,
                limit: 10,
                cursor: nil
            )
            #expect(left.items.map(\.id) == ["f4"])
        },
        Case("firings and their outcomes survive reopening the database (a restart)") { context in
            try await context.store.insert(firing("f1"))
            try await context.store.record(outcome(0, "webhook", .succeeded), firingID: "f1")
            try await context.reopen { again in
                let stored = try await again.firing(id: "f1", tenantID: "t1")
                let listed = try await again.firings(
                    tenantID: "t1",
                    ruleID: "r1",
                    deviceID: "d1",
                    limit: 5,
                    cursor: nil
                )
                #expect(stored?.actions == [outcome(0, "webhook", .succeeded)])
                #expect(listed.items.map(\.id) == ["f1"])
            }
        },
    ]
}

import Foundation
import MeridianCore
import MeridianStorage
import Testing

/// The same cases against every `AlarmStore`: an alarm's life (raised, repeated, acknowledged,
/// commented, cleared) with its history in order, the open alarms the engine reloads at start,
/// the API's filters and newest-first paging, tenants apart, data across a restart — identical
/// in memory, on SQLite and on PostgreSQL.
@Suite("AlarmStore conformance")
struct AlarmStoreConformanceTests {
    static let openers = RuleStoreContext<any AlarmStore>.Openers(
        reference: { InMemoryAlarmStore() },
        sqliteInMemory: { try SQLiteAlarmStore.inMemory() },
        sqlitePath: { try SQLiteAlarmStore(path: $0) },
        postgres: { try await PostgresAlarmStore(database: $0) }
    )

    @Test("in memory and SQLite", arguments: AlarmStoreConformance.cases, RuleStoreBackend.local)
    func local(_ conformanceCase: RuleConformanceCase<any AlarmStore>, _ backend: RuleStoreBackend) async throws {
        try await RuleStoreContext.with(backend, Self.openers, conformanceCase.body)
    }

    @Test(
        "PostgreSQL",
        .enabled(if: PostgresTestServer.isConfigured, "needs MERIDIAN_TEST_POSTGRES_URL (bash scripts/test sets it)"),
        arguments: AlarmStoreConformance.cases
    )
    func postgres(_ conformanceCase: RuleConformanceCase<any AlarmStore>) async throws {
        try await RuleStoreContext.with(.postgres, Self.openers, conformanceCase.body)
    }
}

enum AlarmStoreConformance {
    typealias Case = RuleConformanceCase<any AlarmStore>
    static let base = RuleFixtures.base
    static let operator_ = AlarmActor(kind: .user, id: "u1")

    /// A new alarm, raised through the ledger as the engine raises it.
    static func raised(
        _ id: String,
        tenant: String = "t1",
        rule: String = "r1",
        device: String = "d1",
        severity: AlarmSeverity = .major,
        at offset: Double = 0
    ) -> AlarmChange {
        var ledger = AlarmLedger(makeID: { id })
        return ledger.raise(
            tenantID: tenant,
            ruleID: rule,
            ruleVersion: 1,
            deviceID: device,
            severity: severity,
            message: "too hot",
            inputs: ["temp": 81.5],
            at: base.addingTimeInterval(offset)
        )
    }

    /// The same alarm, cleared by its rule.
    static func cleared(_ change: AlarmChange, at offset: Double) -> AlarmChange? {
        var ledger = AlarmLedger(openAlarms: [change.alarm])
        let alarm = change.alarm
        return ledger.clear(
            tenantID: alarm.tenantID,
            ruleID: alarm.ruleID,
            deviceID: alarm.deviceID,
            at: base.addingTimeInterval(offset)
        )
    }

    /// The same alarm, acknowledged by an operator.
    static func acknowledged(_ change: AlarmChange, at offset: Double) throws -> AlarmChange {
        var ledger = AlarmLedger(openAlarms: [change.alarm])
        return try ledger.acknowledge(
            id: change.alarm.id,
            tenantID: change.alarm.tenantID,
            by: operator_,
            at: base.addingTimeInterval(offset)
        )
    }

    /// 25 alarms over two tenants' worth of variety: rules r0-r2, devices d0-d4, every severity,
    /// every status; raised in pairs at the same millisecond (ties break by id).
    static func fleet() throws -> [AlarmChange] {
        var changes: [AlarmChange] = []
        for index in 0..<25 {
            let id = "alm_" + String(format: "%02d", (index * 7) % 25)
            var change = raised(
                id,
                rule: "r\(index % 3)",
                device: "d\(index % 5)",
                severity: AlarmSeverity.allCases[index % 5],
                at: Double(index / 2)
            )
            changes.append(change)
            if index % 4 == 1 {
                change = try acknowledged(change, at: 100)
                changes.append(change)
            } else if index % 4 == 2, let clear = cleared(change, at: 100) {
                changes.append(clear)
            }
        }
        return changes
    }

    /// The alarms as they ended up, in the lists' order: newest raise first, ties by id descending.
    static func expected(_ changes: [AlarmChange], _ filter: AlarmFilter) -> [Alarm] {
        var latest: [String: Alarm] = [:]
        for change in changes { latest[change.alarm.id] = change.alarm }
        return latest.values.filter(filter.matches).sorted {
            (RuleTime.milliseconds($0.raisedAt), $0.id) > (RuleTime.milliseconds($1.raisedAt), $1.id)
        }
    }

    /// Every page of a list, following cursors.
    static func all(
        _ store: any AlarmStore,
        _ filter: AlarmFilter,
        limit: Int
    ) async throws -> (items: [Alarm], pages: Int) {
        var items: [Alarm] = []
        var cursor: String?
        var pages = 0
        repeat {
            let page = try await store.alarms(filter, limit: limit, cursor: cursor)
            items += page.items
            pages += 1
            cursor = page.nextCursor
        } while cursor != nil && pages < 100
        return (items, pages)
    }

    static let cases: [Case] = [
        Case("an alarm's life: raised, repeated, acknowledged, commented, cleared, with its history in order") {
            context in
            let store = context.store
            var ledger = AlarmLedger(makeID: { "alm_1" })
            var changes: [AlarmChange] = []
            func save(_ change: AlarmChange) async throws {
                try await store.save(change)
                changes.append(change)
                #expect(try await store.alarm(id: "alm_1", tenantID: "t1") == change.alarm)
            }
            try await save(
                ledger.raise(
                    tenantID: "t1",
                    ruleID: "r1",
                    ruleVersion: 1,
                    deviceID: "d1",
                    severity: .minor,
                    message: "too hot",
                    inputs: ["temp": 81.5],
                    at: base
                )
            )
            #expect(try await store.openAlarms().map(\.id) == ["alm_1"])
            try await save(
                ledger.raise(
                    tenantID: "t1",
                    ruleID: "r1",
                    ruleVersion: 1,
                    deviceID: "d1",
                    severity: .critical,
                    message: "too hot",
                    inputs: ["temp": 95],
                    at: base.addingTimeInterval(60)
                )
            )
            try await save(
                try ledger.acknowledge(id: "alm_1", tenantID: "t1", by: operator_, at: base.addingTimeInterval(70))
            )
            #expect(try await store.openAlarms().map(\.status) == [.acknowledged])
            try await save(
                try ledger.comment(
                    id: "alm_1",
                    tenantID: "t1",
                    text: "on my way",
                    by: operator_,
                    at: base.addingTimeInterval(80)
                )
            )
            let clearing = ledger.clear(tenantID: "t1", ruleID: "r1", deviceID: "d1", at: base.addingTimeInterval(90))
            let clear = try #require(clearing)
            try await save(clear)

            let alarm = try #require(try await store.alarm(id: "alm_1", tenantID: "t1"))
            #expect(alarm.status == .cleared)
            #expect(alarm.count == 2)
            #expect(alarm.severity == .critical)
            #expect(alarm.lastInputs == ["temp": 95])
            #expect(alarm.acknowledgedBy == operator_)
            #expect(alarm.comments.map(\.text) == ["on my way"])
            let history = try await store.history(alarmID: "alm_1", tenantID: "t1")
            #expect(history.map(\.kind) == [.raised, .repeated, .acknowledged, .commented, .cleared])
            #expect(history == changes.map(AlarmHistoryEntry.init))
            #expect(history[3].comment == "on my way")
            #expect(history.map(\.at) == [0, 60, 70, 80, 90].map { base.addingTimeInterval($0) })
            // Cleared: history, no longer open.
            #expect(try await store.openAlarms().isEmpty)
        },
        Case("open alarms are the active and acknowledged ones of every tenant") { context in
            try await context.store.save(raised("alm_a", tenant: "t1", device: "d1"))
            let taken = try acknowledged(raised("alm_b", tenant: "t2", device: "d2"), at: 5)
            try await context.store.save(raised("alm_b", tenant: "t2", device: "d2"))
            try await context.store.save(taken)
            let gone = raised("alm_c", tenant: "t1", device: "d3")
            try await context.store.save(gone)
            try await context.store.save(try #require(cleared(gone, at: 5)))
            let open = try await context.store.openAlarms()
            #expect(open.map(\.id) == ["alm_a", "alm_b"])
            #expect(open.map(\.status) == [.active, .acknowledged])
        },
        Case("another tenant's alarm id reads as missing, and so does its history") { context in
            try await context.store.save(raised("alm_1", tenant: "t1"))
            #expect(try await context.store.alarm(id: "alm_1", tenantID: "t2") == nil)
            #expect(try await context.store.history(alarmID: "alm_1", tenantID: "t2").isEmpty)
            #expect(try await context.store.alarms(AlarmFilter(tenantID: "t2"), limit: 10, cursor: nil).items.isEmpty)
            #expect(try await context.store.history(alarmID: "alm_1", tenantID: "t1").count == 1)
            #expect(try await context.store.alarm(id: "missing", tenantID: "t1") == nil)
            #expect(try await context.store.history(alarmID: "missing", tenantID: "t1").isEmpty)
        },
        Case("alarm lists filter by status, severity, device, rule and raise time") { context in
            let changes = try fleet()
            for change in changes { try await context.store.save(change) }
            try await context.store.save(raised("alm_other", tenant: "t2"))
            let filters: [AlarmFilter] = [
                AlarmFilter(tenantID: "t1"),
                AlarmFilter(tenantID: "t1", statuses: [.active]),
                AlarmFilter(tenantID: "t1", statuses: [.active, .acknowledged]),
                AlarmFilter(tenantID: "t1", statuses: [.acknowledged, .cleared]),
                AlarmFilter(tenantID: "t1", statuses: [.cleared]),
                AlarmFilter(tenantID: "t1", severities: [.critical]),
                AlarmFilter(tenantID: "t1", severities: [.minor, .warning]),
                AlarmFilter(tenantID: "t1", deviceID: "d3"),
                AlarmFilter(tenantID: "t1", ruleID: "r2"),
                AlarmFilter(
                    tenantID: "t1",
                    raisedFrom: base.addingTimeInterval(3),
                    raisedBefore: base.addingTimeInterval(7)
                ),
                AlarmFilter(tenantID: "t1", raisedBefore: base.addingTimeInterval(1)),
                AlarmFilter(
                    tenantID: "t1",
                    statuses: [.active, .acknowledged],
                    severities: [.major, .critical],
                    ruleID: "r0"
                ),
                AlarmFilter(tenantID: "t1", deviceID: "d9"),
                AlarmFilter(tenantID: "t1", statuses: []),
                AlarmFilter(tenantID: "t2"),
            ]
            for filter in filters {
                let page = try await context.store.alarms(filter, limit: 100, cursor: nil)
                // Ids first, for a readable failure; then every field.
                let reference = expected(changes + [raised("alm_other", tenant: "t2")], filter)
                #expect(page.items.map(\.id) == reference.map(\.id), "\(filter)")
                #expect(page.items == reference)
                #expect(page.nextCursor == nil)
            }
            // Spot checks against hand-counted answers, so the reference cannot drift unnoticed.
            #expect(try await context.store.alarms(filters[0], limit: 100, cursor: nil).items.count == 25)
            // Raised at seconds 3..6: indexes 6...13.
            #expect(try await context.store.alarms(filters[9], limit: 100, cursor: nil).items.count == 8)
            // index % 4 == 2 cleared: 2, 6, 10, 14, 18, 22.
            #expect(try await context.store.alarms(filters[4], limit: 100, cursor: nil).items.count == 6)
            #expect(
                try await context.store.alarms(filters[7], limit: 100, cursor: nil).items.allSatisfy {
                    $0.deviceID == "d3"
                }
            )
        },
        Case("paging through 25 alarms 10 at a time gives every alarm once, newest first") { context in
            let changes = try fleet()
            for change in changes { try await context.store.save(change) }
            let filter = AlarmFilter(tenantID: "t1")
            let (items, pages) = try await all(context.store, filter, limit: 10)
            #expect(pages == 3)
            #expect(items.count == 25)
            #expect(Set(items.map(\.id)).count == 25)
            #expect(items == expected(changes, filter))
            let keys = items.map { (RuleTime.milliseconds($0.raisedAt), $0.id) }
            #expect(zip(keys, keys.dropFirst()).allSatisfy { $0 > $1 })
            // A filtered list pages the same way.
            let open = AlarmFilter(tenantID: "t1", statuses: [.active, .acknowledged])
            let (openItems, _) = try await all(context.store, open, limit: 4)
            #expect(openItems == expected(changes, open))
            // A cursor that does not parse starts from the top.
            #expect(
                try await context.store.alarms(filter, limit: 3, cursor: "garbage").items
                    == Array(expected(changes, filter).prefix(3))
            )
        },
        Case("alarms and their history survive reopening the database (a restart)") { context in
            let first = raised("alm_1")
            let taken = try acknowledged(first, at: 10)
            try await context.store.save(first)
            try await context.store.save(taken)
            try await context.reopen { again in
                let open = try await again.openAlarms()
                let history = try await again.history(alarmID: "alm_1", tenantID: "t1")
                #expect(open == [taken.alarm])
                #expect(history == [first, taken].map(AlarmHistoryEntry.init))
            }
        },
    ]
}

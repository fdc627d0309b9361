import Foundation
import MeridianCore
import Testing

@Suite("Alarms: one open alarm per rule and device, and its lifecycle")
struct AlarmLedgerTests {
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    let operatorActor = AlarmActor(kind: .user, id: "usr_ada")

    func raise(
        _ ledger: inout AlarmLedger,
        rule: String = "rule-hot",
        device: String = "d1",
        tenant: String = "t1",
        severity: AlarmSeverity = .major,
        temp: Double = 81,
        at offset: TimeInterval = 0
    ) -> AlarmChange {
        ledger.raise(
            tenantID: tenant,
            ruleID: rule,
            ruleVersion: 3,
            deviceID: device,
            severity: severity,
            message: "too hot",
            inputs: ["temp": .number(temp)],
            at: t0.addingTimeInterval(offset)
        )
    }

    @Test("repeated firings are counted on the open alarm, never duplicated; a higher severity raises it")
    func repeatedFiringsAreCounted() throws {
        var ledger = AlarmLedger()
        let first = raise(&ledger)
        #expect(first.kind == .raised)
        #expect(first.alarm.status == .active && first.alarm.count == 1 && first.alarm.ruleVersion == 3)
        let second = raise(&ledger, severity: .minor, temp: 85, at: 60)
        #expect(second.kind == .repeated)
        #expect(second.alarm.id == first.alarm.id)
        #expect(second.alarm.count == 2)
        #expect(second.alarm.severity == .major)  // a lower severity does not lower it
        #expect(second.alarm.inputs == ["temp": .number(81)] && second.alarm.lastInputs == ["temp": .number(85)])
        #expect(second.alarm.lastRaisedAt == t0.addingTimeInterval(60) && second.alarm.raisedAt == t0)
        let third = raise(&ledger, severity: .critical, at: 120)
        #expect(third.alarm.severity == .critical && third.alarm.count == 3)

        // Another device, another rule, another tenant: separate alarms.
        let otherDevice = raise(&ledger, device: "d2")
        let otherRule = raise(&ledger, rule: "rule-door")
        let otherTenant = raise(&ledger, tenant: "t2")
        #expect([otherDevice, otherRule, otherTenant].allSatisfy { $0.kind == .raised })
        #expect(Set([first.alarm.id, otherDevice.alarm.id, otherRule.alarm.id, otherTenant.alarm.id]).count == 4)
        #expect(ledger.openAlarms.count == 4)
    }

    @Test("active → acknowledged → cleared with who and when; a second acknowledgement is a conflict")
    func lifecycle() throws {
        var ledger = AlarmLedger()
        let raised = raise(&ledger)
        let acknowledged = try ledger.acknowledge(id: raised.alarm.id, tenantID: "t1", by: operatorActor, at: t0.addingTimeInterval(5))
        #expect(acknowledged.kind == .acknowledged)
        #expect(acknowledged.alarm.status == .acknowledged)
        #expect(acknowledged.alarm.acknowledgedBy == operatorActor)
        #expect(acknowledged.alarm.acknowledgedAt == t0.addingTimeInterval(5))
        #expect(throws: AlarmError(.conflict, "alarm \(raised.alarm.id) is already acknowledged", field: "status")) {
            try ledger.acknowledge(id: raised.alarm.id, tenantID: "t1", by: operatorActor, at: t0)
        }
        // Firing again keeps it acknowledged, counted.
        let repeated = raise(&ledger, at: 10)
        #expect(repeated.alarm.status == .acknowledged && repeated.alarm.count == 2)

        let ruleClear = ledger.clear(tenantID: "t1", ruleID: "rule-hot", deviceID: "d1", at: t0.addingTimeInterval(30))
        let cleared = try #require(ruleClear)
        #expect(cleared.kind == .cleared)
        #expect(cleared.alarm.status == .cleared)
        #expect(cleared.alarm.clearedBy == .rule("rule-hot"))
        #expect(cleared.alarm.clearedAt == t0.addingTimeInterval(30))
        #expect(ledger.open(tenantID: "t1", ruleID: "rule-hot", deviceID: "d1") == nil)
        // Clearing again: nothing to do.
        #expect(ledger.clear(tenantID: "t1", ruleID: "rule-hot", deviceID: "d1", at: t0) == nil)

        // The next firing opens a new alarm.
        let next = raise(&ledger, at: 40)
        #expect(next.kind == .raised && next.alarm.id != raised.alarm.id && next.alarm.count == 1)
    }

    @Test("an operator clears by hand; a cleared or foreign alarm is 404 for every operation")
    func manualClearAndTenants() throws {
        var ledger = AlarmLedger()
        let raised = raise(&ledger)
        #expect(throws: AlarmError.self) { try ledger.acknowledge(id: raised.alarm.id, tenantID: "t2", by: operatorActor, at: t0) }
        #expect(throws: AlarmError.self) { try ledger.clear(id: raised.alarm.id, tenantID: "t2", by: operatorActor, at: t0) }
        #expect(throws: AlarmError.self) { try ledger.comment(id: raised.alarm.id, tenantID: "t2", text: "x", by: operatorActor, at: t0) }
        #expect(ledger.open(id: raised.alarm.id, tenantID: "t2") == nil)

        let cleared = try ledger.clear(id: raised.alarm.id, tenantID: "t1", by: operatorActor, at: t0.addingTimeInterval(1))
        #expect(cleared.alarm.clearedBy == operatorActor)
        do {
            _ = try ledger.acknowledge(id: raised.alarm.id, tenantID: "t1", by: operatorActor, at: t0)
            Issue.record("acknowledging a cleared alarm must fail")
        } catch {
            #expect(error.code == .notFound && error.field == "id")
        }
    }

    @Test("comments need text, are trimmed, bounded, and kept in order with who and when")
    func comments() throws {
        var ledger = AlarmLedger()
        let raised = raise(&ledger)
        _ = try ledger.comment(id: raised.alarm.id, tenantID: "t1", text: "  checking the fan  ", by: operatorActor, at: t0.addingTimeInterval(1))
        let second = try ledger.comment(id: raised.alarm.id, tenantID: "t1", text: "fan replaced", by: .init(kind: .apiKey, id: "key_1"), at: t0.addingTimeInterval(2))
        #expect(second.alarm.comments.map(\.text) == ["checking the fan", "fan replaced"])
        #expect(second.alarm.comments.map(\.by.kind) == [.user, .apiKey])
        for bad in ["", "   \n", String(repeating: "x", count: AlarmLedger.maximumCommentLength + 1)] {
            do {
                _ = try ledger.comment(id: raised.alarm.id, tenantID: "t1", text: bad, by: operatorActor, at: t0)
                Issue.record("comment \(bad.prefix(10)) must be refused")
            } catch {
                #expect(error.code == .invalid && error.field == "text")
            }
        }
    }

    @Test("a ledger rebuilt from stored open alarms keeps counting them; a deleted device's alarms are cleared")
    func rebuildAndRemoveDevice() throws {
        var ledger = AlarmLedger()
        let first = raise(&ledger)
        _ = raise(&ledger, device: "d2")
        var rebuilt = AlarmLedger(openAlarms: ledger.openAlarms)
        let again = raise(&rebuilt, at: 5)
        #expect(again.kind == .repeated && again.alarm.id == first.alarm.id && again.alarm.count == 2)
        let removed = rebuilt.removeDevice("d1", tenantID: "t1", at: t0.addingTimeInterval(9), by: operatorActor)
        #expect(removed.map(\.alarm.id) == [first.alarm.id])
        #expect(removed.allSatisfy { $0.alarm.status == .cleared })
        #expect(rebuilt.openAlarms.map(\.deviceID) == ["d2"])
        #expect(AlarmSeverity.allCases.sorted(by: >) == [.critical, .major, .minor, .warning, .info])
    }
}

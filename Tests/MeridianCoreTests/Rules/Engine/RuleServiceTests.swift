import Foundation
import MeridianCore
import Testing

@Suite("Rule service: versions, apply, alarms")
struct RuleServiceTests {
    static let caller = Caller(tenantID: "t1", role: .operator, actor: AuditActor(kind: .user, id: "u1"))
    static let viewer = Caller(tenantID: "t1", role: .viewer, actor: AuditActor(kind: .user, id: "v1"))

    static func json(_ text: String) throws -> JSONValue { try #require(JSONValue.parse(Data(text.utf8))) }

    static func hot(_ value: Int, name: String = "hot", secret: String? = nil) throws -> JSONValue {
        let webhook = secret.map { #", "actions": [{"type": "webhook", "url": "https://example.com/h", "secret": "\#($0)"}]"# } ?? ""
        return try json(#"{"name": "\#(name)", "condition": {"threshold": {"key": "temp", "op": ">", "value": \#(value)}}, "alarm": {}\#(webhook)}"#)
    }

    @Test("every change is a new version, all kept; If-Match with a stale version is refused; viewers cannot write")
    func versions() async throws {
        let service = RuleService(store: InMemoryRuleStore())
        let created = try await service.create(try RuleService.definition(try Self.hot(80)), by: Self.caller)
        #expect(created.version == 1)
        let same = try await service.update(created.id, with: try RuleService.definition(try Self.hot(80)), by: Self.caller)
        #expect(same.version == 1)
        let updated = try await service.update("hot", with: try RuleService.definition(try Self.hot(85)), expectedVersion: 1, by: Self.caller)
        #expect(updated.version == 2)
        await #expect(throws: RegistryError.self) {
            try await service.update(created.id, with: try RuleService.definition(try Self.hot(90)), expectedVersion: 1, by: Self.caller)
        }
        let disabled = try await service.setEnabled("hot", false, by: Self.caller)
        #expect(disabled.version == 3 && !disabled.enabled)
        #expect(try await service.versions("hot", by: Self.viewer).map(\.version) == [3, 2, 1])
        await #expect(throws: RegistryError.self) { try await service.create(try RuleService.definition(try Self.hot(1, name: "v")), by: Self.viewer) }
        await #expect(throws: RegistryError.self) { try await service.create(try RuleService.definition(try Self.hot(1)), by: Self.caller) }
    }

    @Test("apply upserts by name and prunes; a mistake anywhere changes nothing and names rules[i]")
    func apply() async throws {
        let service = RuleService(store: InMemoryRuleStore())
        let first = try await service.apply([try Self.hot(80, name: "a"), try Self.hot(80, name: "b")], prune: false, by: Self.caller)
        #expect(first.created == ["a", "b"])
        let second = try await service.apply([try Self.hot(80, name: "a"), try Self.hot(81, name: "b"), try Self.hot(1, name: "c")], prune: false, by: Self.caller)
        #expect(second.unchanged == ["a"] && second.updated == ["b"] && second.created == ["c"])
        do {
            _ = try await service.apply([try Self.hot(1, name: "d"), try Self.json(#"{"name": "e", "condition": {"threshold": {"key": "t", "op": "~", "value": 1}}, "alarm": {}}"#)], prune: true, by: Self.caller)
            Issue.record("a bad rule was applied")
        } catch let error as RegistryError {
            #expect(error.field == "rules[1].condition.threshold.op")
        }
        #expect(try await service.rules(by: Self.viewer).map(\.name) == ["a", "b", "c"])
        let pruned = try await service.apply([try Self.hot(80, name: "a")], prune: true, by: Self.caller)
        #expect(pruned.unchanged == ["a"] && pruned.deleted == ["b", "c"])
        do {
            _ = try await service.apply([try Self.hot(1, name: "x"), try Self.hot(2, name: "x")], prune: false, by: Self.caller)
            Issue.record("two rules with one name were applied")
        } catch let error as RegistryError {
            #expect(error.field == "rules[1].name")
        }
    }

    @Test("a webhook written back with secretSet keeps its secret; a new secret replaces it")
    func secretsSurviveAReadBack() async throws {
        let service = RuleService(store: InMemoryRuleStore())
        let created = try await service.create(try RuleService.definition(try Self.hot(80, secret: "s1")), by: Self.caller)
        var shown = created.json(includeSecrets: false)
        if case .object(var object) = shown { object["description"] = .string("edited"); shown = .object(object) }
        let updated = try await service.update(created.id, with: try RuleService.definition(shown), by: Self.caller)
        guard case .webhook(let webhook) = updated.definition.actions.first?.kind else { Issue.record("no webhook"); return }
        #expect(webhook.secret == "s1" && updated.version == 2)
        let replaced = try await service.update(created.id, with: try RuleService.definition(try Self.hot(80, secret: "s2")), by: Self.caller)
        guard case .webhook(let other) = replaced.definition.actions.first?.kind else { Issue.record("no webhook"); return }
        #expect(other.secret == "s2")
    }

    @Test("alarms: one open per rule and device with firings counted; acknowledge, comment and clear with who and when; history in order in the store")
    func alarmLifecycle() async throws {
        let store = InMemoryAlarmStore()
        let alarms = try await AlarmService(store: store)
        let rule = Rule(id: "r1", tenantID: "t1", version: 1, definition: try RuleService.definition(try Self.hot(80)), createdAt: Date(), updatedAt: Date(), updatedBy: "u")
        let raised = alarms.raise(rule: rule, deviceID: "d1", severity: .minor, message: "hot", inputs: ["temp": .number(81)], at: Date())
        let repeated = alarms.raise(rule: rule, deviceID: "d1", severity: .critical, message: "hot", inputs: ["temp": .number(95)], at: Date())
        #expect(raised.kind == .raised && repeated.kind == .repeated)
        #expect(repeated.alarm.id == raised.alarm.id && repeated.alarm.count == 2 && repeated.alarm.severity == .critical)
        let id = raised.alarm.id
        await #expect(throws: RegistryError.self) { try await alarms.acknowledge(id, by: Self.viewer) }
        let acknowledged = try await alarms.acknowledge(id, by: Self.caller)
        #expect(acknowledged.status == .acknowledged && acknowledged.acknowledgedBy == AlarmActor(kind: .user, id: "u1"))
        await #expect(throws: RegistryError.self) { try await alarms.acknowledge(id, by: Self.caller) }
        _ = try await alarms.comment(id, text: "on my way", by: Self.caller)
        #expect(alarms.clear(ruleID: "r1", tenantID: "t1", deviceID: "d1", at: Date())?.alarm.status == .cleared)
        do {
            _ = try await alarms.clear(id, by: Self.caller)
            Issue.record("a cleared alarm was cleared again")
        } catch let error as RegistryError {
            #expect(error.code == .conflict)
        }
        do {
            _ = try await alarms.acknowledge("alm_nope", by: Self.caller)
            Issue.record("an unknown alarm was acknowledged")
        } catch let error as RegistryError {
            #expect(error.code == .notFound)
        }
        let history = try await alarms.history(id, by: Self.viewer)
        #expect(history.map(\.kind) == [.raised, .repeated, .acknowledged, .commented, .cleared])
        #expect(history[3].comment == "on my way")
        // The next firing opens a new alarm.
        let next = alarms.raise(rule: rule, deviceID: "d1", severity: .minor, message: "hot", inputs: [:], at: Date())
        #expect(next.kind == .raised && next.alarm.id != id)
        let open = try await alarms.alarms(AlarmFilter(tenantID: "t1", statuses: [.active, .acknowledged]), limit: 10, cursor: nil, by: Self.viewer)
        #expect(open.items.map(\.id) == [next.alarm.id])
        // Another tenant sees nothing.
        let stranger = Caller(tenantID: "t2", role: .owner, actor: AuditActor(kind: .user, id: "x"))
        await #expect(throws: RegistryError.self) { try await alarms.alarm(id, by: stranger) }
        await alarms.shutdown()
    }
}

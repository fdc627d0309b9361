import Foundation
import MeridianCore
import Testing

/// Rules end to end in the engine's core on a virtual clock: messages, presence, twin changes and
/// ticks carry their own times; nothing reads a clock.
@Suite("Rule engine core")
struct RuleEngineCoreTests {
    static let tenant = "t1"

    static func rule(_ id: String, _ json: String, version: Int = 1, tenant: String = tenant) throws -> Rule {
        let definition = try RuleDefinition(json: try #require(JSONValue.parse(Data(json.utf8))))
        return Rule(id: id, tenantID: tenant, version: version, definition: definition, createdAt: Date(), updatedAt: Date(), updatedBy: "test")
    }

    static func device(_ id: String, profile: String? = nil, labels: [String: String] = [:], tenant: String = tenant) -> RuleDeviceInfo {
        RuleDeviceInfo(device: Device(id: id, tenantID: tenant, name: id, profileID: profile, labels: labels, createdAt: Date()), profileName: profile.map { "\($0)-name" })
    }

    static func message(_ device: String, _ samples: [(String, Int64, TelemetryValue)], tenant: String = tenant) -> DeviceMessage {
        DeviceMessage(
            tenantID: tenant, deviceID: device, receivedAt: samples.first?.1 ?? 0,
            kind: .telemetry(samples.map { TelemetrySample(key: $0.0, timestamp: $0.1, value: $0.2) })
        )
    }

    /// Feeds `temp` values one per minute from `start`, returns (minute, raise?) of each transition.
    static func feed(_ core: inout RuleEngineCore, device: String, temps: [Double], start: Int64 = 0, step: Int64 = 60_000) -> [(Int, Bool)] {
        var result: [(Int, Bool)] = []
        for (index, temp) in temps.enumerated() {
            let time = start + Int64(index) * step
            for event in core.observe(message(device, [("temp", time, .number(temp))]), info: Self.device(device), now: time) {
                result.append((index, event.transition.isRaise))
            }
        }
        return result
    }

    @Test("a threshold with duration and hysteresis raises after it held for 5 minutes and clears after 1 minute under the clear level, without flapping in between")
    func thresholdWithDurationAndHysteresis() throws {
        var core = RuleEngineCore()
        core.load([
            try Self.rule("r1", #"{"name": "hot", "condition": {"threshold": {"key": "temp", "op": ">", "value": 80, "for": "5m", "clear": {"op": "<", "value": 75, "for": "1m"}}}, "alarm": {"severity": "major"}}"#)
        ])
        //                 0   1   2   3   4   5   6   7   8   9  10  11  12  13
        let temps: [Double] = [70, 81, 82, 83, 84, 85, 86, 78, 79, 77, 74, 76, 73, 72]
        let transitions = Self.feed(&core, device: "d1", temps: temps)
        // Above 80 from minute 1: held 5 minutes at minute 6. 78/79/77 (between 75 and 80) move
        // nothing; below 75 at minute 10, but 76 at 11 restarts the clear span; 73 at 12, 72 at 13 = 1 minute.
        #expect(transitions.map(\.0) == [6, 13])
        #expect(transitions.map(\.1) == [true, false])
    }

    @Test("a duration window does not hold across a gap longer than maxGap")
    func durationAcrossGaps() throws {
        var core = RuleEngineCore()
        core.load([try Self.rule("r1", #"{"name": "hot", "condition": {"threshold": {"key": "temp", "op": ">", "value": 80, "for": "5m", "maxGap": "2m"}}, "alarm": {}}"#)])
        var events: [RuleEngineEvent] = []
        // 81 at minute 0, silence, 81 at minute 10: not continuous (gap 10m > 2m).
        for minute: Int64 in [0, 10, 11, 12, 13, 14, 15] {
            events += core.observe(Self.message("d1", [("temp", minute * 60_000, .number(81))]), info: Self.device("d1"), now: minute * 60_000)
        }
        #expect(events.map(\.transition.reason.timestamp) == [15 * 60_000])
    }

    @Test("scopes: a device rule, a profile rule (by id or name) and a label-query rule each see only their devices; other tenants see none")
    func scopes() throws {
        var core = RuleEngineCore()
        let condition = #""condition": {"threshold": {"key": "temp", "op": ">", "value": 80}}, "alarm": {}"#
        core.load([
            try Self.rule("device", #"{"name": "a", "scope": {"device": "d1"}, \#(condition)}"#),
            try Self.rule("profile", #"{"name": "b", "scope": {"profile": "thermo"}, \#(condition)}"#),
            try Self.rule("profile-name", #"{"name": "c", "scope": {"profile": "thermo-name"}, \#(condition)}"#),
            try Self.rule("query", #"{"name": "d", "scope": {"query": "labels.site = \"p3\""}, \#(condition)}"#),
            try Self.rule("tenant", #"{"name": "e", \#(condition)}"#),
        ])
        func fired(_ info: RuleDeviceInfo) -> Set<String> {
            Set(core.observe(Self.message(info.device.id, [("temp", 1, .number(90))], tenant: info.device.tenantID), info: info, now: 1).map(\.rule.id))
        }
        #expect(fired(Self.device("d1")) == ["device", "tenant"])
        #expect(fired(Self.device("d2", profile: "thermo")) == ["profile", "profile-name", "tenant"])
        #expect(fired(Self.device("d3", labels: ["site": "p3"])) == ["query", "tenant"])
        #expect(fired(Self.device("d4", labels: ["site": "p4"])) == ["tenant"])
        #expect(fired(Self.device("d1", tenant: "other")).isEmpty)
    }

    @Test("an expression over latest values and the twin fires when the twin changes as well as on telemetry")
    func expressionWithTwin() throws {
        var core = RuleEngineCore()
        core.load([
            try Self.rule("r", #"{"name": "x", "condition": {"expression": {"expr": "temp > reported.setpoint + 5 && door == \"open\""}}, "alarm": {}}"#)
        ])
        core.track(Self.device("d1"), now: 0)
        #expect(core.needsTwin(tenantID: Self.tenant, deviceID: "d1"))
        core.setTwin(tenantID: Self.tenant, deviceID: "d1", reported: .object(["setpoint": .number(20)]), desired: .emptyObject)
        // 24 < 25: no; door unknown → unknown never fires.
        #expect(core.observe(Self.message("d1", [("temp", 1, .number(24))]), now: 1).isEmpty)
        #expect(core.observe(Self.message("d1", [("door", 2, .string("open"))]), now: 2).isEmpty)
        // The setpoint drops: 24 > 15 + 5 with the door open.
        let events = core.twinChanged(tenantID: Self.tenant, deviceID: "d1", reported: .object(["setpoint": .number(15)]), desired: .emptyObject, at: 3)
        #expect(events.map(\.transition.isRaise) == [true])
        #expect(events.first?.transition.reason.values == ["temp": .number(24), "door": .string("open")])
        // The door closes: clears.
        #expect(core.observe(Self.message("d1", [("door", 4, .string("closed"))]), now: 4).map(\.transition.isRaise) == [false])
    }

    @Test("window functions in expressions: avg over 10 minutes crosses the threshold only once the window's mean does")
    func windowFunctions() throws {
        var core = RuleEngineCore()
        core.load([try Self.rule("r", #"{"name": "avg", "condition": {"expression": {"expr": "avg(temp, 10m) > 50"}}, "alarm": {}}"#)])
        // One sample a minute: 40 × 5, then 70 × 10. The 10-minute mean passes 50 when
        // (sum of the last 11 samples, inclusive window) / count > 50.
        let temps = Array(repeating: 40.0, count: 5) + Array(repeating: 70.0, count: 10)
        let transitions = Self.feed(&core, device: "d1", temps: temps)
        var reference: Int?
        for index in temps.indices {
            let window = temps[max(0, index - 10)...index]
            if window.reduce(0, +) / Double(window.count) > 50 { reference = index; break }
        }
        #expect(transitions.first?.0 == reference)
    }

    @Test("no data: a device never heard from raises after the silence from the rule's start; a sample clears it")
    func noData() throws {
        var core = RuleEngineCore()
        core.load([try Self.rule("r", #"{"name": "silent", "condition": {"noData": {"for": "10m"}}, "alarm": {}}"#)])
        core.track(Self.device("d1"), now: 0)
        #expect(core.tick(now: 9 * 60_000).isEmpty)
        #expect(core.tick(now: 10 * 60_000).map(\.transition.isRaise) == [true])
        #expect(core.tick(now: 11 * 60_000).isEmpty)
        #expect(core.observe(Self.message("d1", [("x", 12 * 60_000, .number(1))]), now: 12 * 60_000).map(\.transition.isRaise) == [false])
    }

    @Test("presence: offline for longer than N raises at the tick after N; reconnecting clears")
    func presence() throws {
        var core = RuleEngineCore()
        core.load([try Self.rule("r", #"{"name": "offline", "condition": {"presence": {"for": "5m"}}, "alarm": {}}"#)])
        core.track(Self.device("d1"), online: true, now: 0)
        #expect(core.tick(now: 60 * 60_000).isEmpty)
        #expect(core.observePresence(tenantID: Self.tenant, deviceID: "d1", online: false, at: 61 * 60_000).isEmpty)
        #expect(core.tick(now: 65 * 60_000).isEmpty)
        #expect(core.tick(now: 66 * 60_000).map(\.transition.isRaise) == [true])
        #expect(core.observePresence(tenantID: Self.tenant, deviceID: "d1", online: true, at: 67 * 60_000).map(\.transition.isRaise) == [false])
    }

    @Test("the samples of one message are evaluated timestamp by timestamp, oldest first, whatever their order in the message")
    func samplesInTimeOrder() throws {
        var core = RuleEngineCore()
        core.load([try Self.rule("r", #"{"name": "hot", "condition": {"threshold": {"key": "temp", "op": ">", "value": 80}}, "alarm": {}}"#)])
        let events = core.observe(
            Self.message("d1", [("temp", 3_000, .number(70)), ("temp", 1_000, .number(70)), ("temp", 2_000, .number(90))]), info: Self.device("d1"), now: 3_000
        )
        #expect(events.map { ($0.transition.isRaise, $0.transition.reason.timestamp) }.elementsEqual([(true, 2_000), (false, 3_000)], by: ==))
    }

    @Test("a disabled rule evaluates nothing; a new version with another condition starts afresh, one with only new actions keeps its state")
    func versions() throws {
        var core = RuleEngineCore()
        let hot = #"{"name": "hot", "condition": {"threshold": {"key": "temp", "op": ">", "value": 80}}, "alarm": {}}"#
        core.load([try Self.rule("r", hot)])
        #expect(core.observe(Self.message("d1", [("temp", 1, .number(90))]), info: Self.device("d1"), now: 1).count == 1)
        #expect(core.isRaised(ruleID: "r", tenantID: Self.tenant, deviceID: "d1"))
        // New actions only: still raised, so 95 does not raise again.
        let withAction = #"{"name": "hot", "condition": {"threshold": {"key": "temp", "op": ">", "value": 80}}, "alarm": {}, "actions": [{"type": "command", "method": "cool"}]}"#
        #expect(core.upsert(try Self.rule("r", withAction, version: 2)) == false)
        #expect(core.observe(Self.message("d1", [("temp", 2, .number(95))]), now: 2).isEmpty)
        // Another threshold: state reset, 95 raises again.
        let hotter = #"{"name": "hot", "condition": {"threshold": {"key": "temp", "op": ">", "value": 90}}, "alarm": {}}"#
        #expect(core.upsert(try Self.rule("r", hotter, version: 3)) == true)
        #expect(core.observe(Self.message("d1", [("temp", 3, .number(95))]), now: 3).map(\.rule.version) == [3])
        // Disabled: nothing.
        let disabled = #"{"name": "hot", "enabled": false, "condition": {"threshold": {"key": "temp", "op": ">", "value": 90}}, "alarm": {}}"#
        core.upsert(try Self.rule("r", disabled, version: 4))
        #expect(core.observe(Self.message("d1", [("temp", 4, .number(50)), ("temp", 5, .number(99))]), now: 5).isEmpty)
        core.remove(ruleID: "r", tenantID: Self.tenant)
        #expect(!core.hasRules(tenantID: Self.tenant))
    }

    @Test("anomaly rules through the engine: a spike after warm-up raises with its z-score among the values")
    func anomaly() throws {
        var core = RuleEngineCore()
        core.load([try Self.rule("r", #"{"name": "spike", "condition": {"anomaly": {"kind": "ewma", "key": "v", "k": 4, "warmup": 30}}, "alarm": {}}"#)])
        var events: [RuleEngineEvent] = []
        for index in 0..<100 {
            let value = index == 70 ? 50 : 10 + sin(Double(index))
            events += core.observe(Self.message("d1", [("v", Int64(index) * 1_000, .number(value))]), info: Self.device("d1"), now: Int64(index) * 1_000)
        }
        let raise = try #require(events.first)
        #expect(raise.transition.isRaise && raise.transition.reason.timestamp == 70_000)
        #expect(raise.transition.reason.values["z"] != nil)
    }

    @Test("a rule marked raised at start (its alarm was open when the server stopped) clears at its clear condition instead of raising again")
    func assumeRaisedAfterRestart() throws {
        var core = RuleEngineCore()
        core.load([try Self.rule("r", #"{"name": "hot", "condition": {"threshold": {"key": "temp", "op": ">", "value": 80, "clear": {"op": "<", "value": 75}}}, "alarm": {}}"#)])
        core.track(Self.device("d1"), now: 0)
        let marked = core.assumeRaised(ruleID: "r", tenantID: Self.tenant, deviceID: "d1")
        let unknown = core.assumeRaised(ruleID: "r", tenantID: Self.tenant, deviceID: "unknown")
        #expect(marked && !unknown)
        #expect(core.observe(Self.message("d1", [("temp", 1, .number(90))]), now: 1).isEmpty)
        #expect(core.observe(Self.message("d1", [("temp", 2, .number(70))]), now: 2).map(\.transition.isRaise) == [false])
    }
}

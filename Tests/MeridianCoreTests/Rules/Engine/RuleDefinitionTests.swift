import Foundation
import MeridianCore
import Testing

@Suite("Rule definitions")
struct RuleDefinitionTests {
    static func parse(_ json: String) throws(ConditionSpecError) -> RuleDefinition {
        try RuleDefinition(json: JSONValue.parse(Data(json.utf8)) ?? .null)
    }

    static func error(_ json: String) -> ConditionSpecError? {
        do {
            _ = try parse(json)
            return nil
        } catch {
            return error
        }
    }

    @Test("every kind of mistake is refused with the field that caused it")
    func errorsNameTheField() {
        let cases: [(String, String)] = [
            (#"{"condition": {"threshold": {"key": "t", "value": 1}}, "alarm": {}}"#, "name"),
            (#"{"name": "x", "alarm": {}}"#, "condition"),
            (#"{"name": "x", "condition": {}, "alarm": {}}"#, "condition"),
            (#"{"name": "x", "condition": {"threshold": {"key": "t", "op": "=>", "value": 1}}, "alarm": {}}"#, "condition.threshold.op"),
            (#"{"name": "x", "condition": {"threshold": {"key": "t", "op": ">", "value": 1, "clear": {"for": "soon"}}}, "alarm": {}}"#, "condition.threshold.clear.for"),
            (#"{"name": "x", "condition": {"expression": {"expr": "temp >"}}, "alarm": {}}"#, "condition.expression.expr"),
            (#"{"name": "x", "condition": {"expression": {"expr": "temp + 1"}}, "alarm": {}}"#, "condition.expression.expr"),
            (#"{"name": "x", "condition": {"noData": {"for": "0s"}}, "alarm": {}}"#, "condition.noData.for"),
            (#"{"name": "x", "scope": {"device": "a", "profile": "b"}, "condition": {"presence": {"for": "1m"}}, "alarm": {}}"#, "scope"),
            (#"{"name": "x", "scope": {"query": "labels.site = "}, "condition": {"presence": {"for": "1m"}}, "alarm": {}}"#, "scope.query"),
            (#"{"name": "x", "condition": {"presence": {"for": "1m"}}, "alarm": {"severity": "huge"}}"#, "alarm.severity"),
            (#"{"name": "x", "condition": {"presence": {"for": "1m"}}}"#, "alarm"),
            (#"{"name": "x", "condition": {"presence": {"for": "1m"}}, "actions": [{"type": "command", "method": "a"}, {"type": "webhook", "url": "ftp://x"}]}"#, "actions[1].url"),
            (#"{"name": "x", "condition": {"presence": {"for": "1m"}}, "actions": [{"type": "republish", "topic": "a/#"}]}"#, "actions[0].topic"),
            (#"{"name": "x", "condition": {"presence": {"for": "1m"}}, "actions": [{"type": "twin", "desired": 3}]}"#, "actions[0].desired"),
            (#"{"name": "x", "condition": {"presence": {"for": "1m"}}, "actions": [{"type": "sms"}]}"#, "actions[0].type"),
            (#"{"name": "x", "condition": {"presence": {"for": "1m"}}, "actions": [{"type": "command", "method": "a", "when": "later"}]}"#, "actions[0].when"),
            (#"{"name": "x", "condition": {"presence": {"for": "1m"}}, "alarm": {}, "colour": "red"}"#, "colour"),
        ]
        for (json, field) in cases {
            #expect(Self.error(json)?.field == field, "\(json)")
        }
        // Expression errors carry their position.
        #expect(Self.error(#"{"name": "x", "condition": {"expression": {"expr": "temp > (3 +"}}, "alarm": {}}"#)?.message.hasSuffix("at 1:12") == true)
    }

    @Test("a definition reads back from its JSON form identically; the API form hides webhook secrets and a rule written back with secretSet keeps its secret")
    func roundTripAndSecrets() throws {
        let definition = try Self.parse(
            #"""
            {"name": "all", "description": "d", "scope": {"query": "labels.site = \"p3\""},
             "condition": {"expression": {"expr": "avg(temp, 10m) > 30", "for": "5m", "clear": "temp < 25", "clearFor": "1m"}},
             "alarm": {"severity": "critical", "message": "{{device.name}} hot"},
             "actions": [{"type": "webhook", "url": "https://example.com/h", "secret": "s3cret", "body": {"t": "{{values.temp}}"}, "when": "both"},
                         {"type": "republish", "topic": "alerts/{{device.id}}", "qos": 0},
                         {"type": "command", "method": "cool", "params": {"level": 2}},
                         {"type": "twin", "desired": {"fan": "on"}},
                         {"type": "telemetry", "key": "overheat", "value": 1, "when": "raise"}]}
            """#
        )
        #expect(try RuleDefinition(json: definition.json(includeSecrets: true)) == definition)
        let shown = definition.json(includeSecrets: false)
        #expect(!shown.jsonText.contains("s3cret"))
        #expect(shown.jsonText.contains(#""secretSet":true"#))
        let rule = Rule(id: "r", tenantID: "t", version: 3, definition: definition, createdAt: Date(timeIntervalSince1970: 1), updatedAt: Date(timeIntervalSince1970: 2), updatedBy: "user:u")
        let stored = try Rule(storedJSON: rule.json(includeSecrets: true), tenantID: "t")
        #expect(stored == rule)
    }

    @Test("templates: a lone placeholder keeps its type, placeholders in text become text, unknown names become empty")
    func templates() {
        let template = RuleTemplate(variables: ["values.temp": .number(81.5), "device.id": .string("d1"), "count": .number(3)])
        #expect(template.render(.string("{{values.temp}}")) == .number(81.5))
        #expect(template.render(.string("{{ device.id }} at {{values.temp}} ({{count}}){{nope}}")) == .string("d1 at 81.5 (3)"))
        #expect(template.render(.object(["a": .array([.string("{{device.id}}"), .bool(true)])])) == .object(["a": .array([.string("d1"), .bool(true)])]))
        #expect(template.text("{{unclosed") == "{{unclosed")
    }
}

import Foundation

/// Fills `{{name}}` placeholders in action templates (webhook bodies, republish topics and
/// payloads, command params, twin patches, derived values) from a firing.
///
/// Names: `device.id`, `device.name`, `rule.id`, `rule.name`, `rule.version`, `event` (raise or
/// clear), `message`, `severity`, `alarm.id`, `at` (ISO 8601), `at.ms`, and `values.<key>` for
/// the firing's input values. A string that is exactly one placeholder becomes that value with
/// its JSON type (`"{{values.temp}}"` → `81.5`); placeholders inside longer strings are
/// replaced by their text. Unknown names become empty (a template never fails a firing).
public struct RuleTemplate: Sendable {
    public var variables: [String: JSONValue]

    public init(variables: [String: JSONValue]) {
        self.variables = variables
    }

    /// The variables of a firing.
    public init(firing: RuleFiring, deviceName: String?, severity: AlarmSeverity?) {
        var variables: [String: JSONValue] = [
            "device.id": .string(firing.deviceID),
            "device.name": .string(deviceName ?? firing.deviceID),
            "rule.id": .string(firing.ruleID),
            "rule.name": .string(firing.ruleName),
            "rule.version": .number(Double(firing.ruleVersion)),
            "event": .string(firing.event.rawValue),
            "message": .string(firing.message),
            "at": .string(RuleTime.iso(milliseconds: firing.at)),
            "at.ms": .number(Double(firing.at)),
            "firing.id": .string(firing.id),
        ]
        if let severity { variables["severity"] = .string(severity.rawValue) }
        if let alarmID = firing.alarmID { variables["alarm.id"] = .string(alarmID) }
        for (key, value) in firing.values { variables["values.\(key)"] = value }
        self.variables = variables
    }

    /// The default webhook body and republish payload: the firing as JSON.
    public static func firingDocument(_ firing: RuleFiring, severity: AlarmSeverity?) -> JSONValue {
        var object: [String: JSONValue] = [
            "firing": .string(firing.id),
            "rule": .object(["id": .string(firing.ruleID), "name": .string(firing.ruleName), "version": .number(Double(firing.ruleVersion))]),
            "device": .string(firing.deviceID),
            "event": .string(firing.event.rawValue),
            "at": .string(RuleTime.iso(milliseconds: firing.at)),
            "message": .string(firing.message),
            "values": .object(firing.values),
        ]
        if let severity { object["severity"] = .string(severity.rawValue) }
        if let alarmID = firing.alarmID { object["alarm"] = .string(alarmID) }
        return .object(object)
    }

    /// Renders a JSON template.
    public func render(_ template: JSONValue) -> JSONValue {
        switch template {
        case .string(let text): render(string: text)
        case .array(let items): .array(items.map(render))
        case .object(let members): .object(members.mapValues(render))
        default: template
        }
    }

    /// Renders a string: a lone placeholder keeps its value's type.
    public func render(string text: String) -> JSONValue {
        guard text.contains("{{") else { return .string(text) }
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed.hasPrefix("{{"), trimmed.hasSuffix("}}"), trimmed.dropFirst(2).dropLast(2).range(of: "{{") == nil {
            let name = trimmed.dropFirst(2).dropLast(2).trimmingCharacters(in: .whitespaces)
            return variables[name] ?? .string("")
        }
        return .string(self.text(text))
    }

    /// Renders a string, every placeholder as text.
    public func text(_ text: String) -> String {
        var result = ""
        var rest = Substring(text)
        while let open = rest.range(of: "{{") {
            result += rest[..<open.lowerBound]
            guard let close = rest[open.upperBound...].range(of: "}}") else {
                result += rest[open.lowerBound...]
                return result
            }
            let name = rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            switch variables[name] {
            case .string(let value)?: result += value
            case .number(let value)?: result += value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
            case .bool(let value)?: result += value ? "true" : "false"
            case let value?: result += value.jsonText
            case nil: break
            }
            rest = rest[close.upperBound...]
        }
        result += rest
        return result
    }
}

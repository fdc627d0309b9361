import Foundation

/// The alarm a rule raises when its condition starts to hold, and clears when it stops.
public struct RuleAlarmSpec: Sendable, Hashable {
    public var severity: AlarmSeverity
    /// The alarm's title (a template; default: the rule's name).
    public var message: String?

    public init(severity: AlarmSeverity, message: String? = nil) {
        self.severity = severity
        self.message = message
    }
}

/// What a user writes to define a rule (the API's and `rules.yaml`'s form); a stored ``Rule``
/// adds its id, version and times.
///
/// ```json
/// {"name": "overheat", "scope": {"profile": "thermostat"},
///  "condition": {"threshold": {"key": "temp", "op": ">", "value": 80, "for": "5m",
///                              "clear": {"op": "<", "value": 75, "for": "1m"}}},
///  "alarm": {"severity": "major"},
///  "actions": [{"type": "webhook", "url": "https://example.com/hook", "secret": "s3cret"}]}
/// ```
public struct RuleDefinition: Sendable, Hashable {
    /// Unique in the tenant (1–128 characters); `meridian rule apply` matches rules by name.
    public var name: String
    public var description: String
    public var enabled: Bool
    public var scope: RuleScope
    public var condition: RuleCondition
    public var alarm: RuleAlarmSpec?
    public var actions: [RuleAction]

    /// Most actions per rule.
    public static let maximumActions = 16
    /// Longest name, in characters.
    public static let maximumNameLength = 128

    public init(
        name: String, description: String = "", enabled: Bool = true, scope: RuleScope = .tenant, condition: RuleCondition,
        alarm: RuleAlarmSpec? = nil, actions: [RuleAction] = []
    ) {
        self.name = name
        self.description = description
        self.enabled = enabled
        self.scope = scope
        self.condition = condition
        self.alarm = alarm
        self.actions = actions
    }

    /// Reads and checks a definition; the error names the offending field, prefixed with
    /// `path` when given (`rules[2].condition.threshold.op`). Fields the server sets (`id`,
    /// `version`, `createdAt`, `updatedAt`, `tenantId`) are accepted and ignored, so that a rule
    /// read from the API can be sent back.
    public init(json: JSONValue, path: String = "") throws(ConditionSpecError) {
        let reader = try ConditionSpecReader(json, path: path)
        try reader.refuseUnknown(allowed: [
            "name", "description", "enabled", "scope", "condition", "alarm", "actions",
            "id", "version", "createdAt", "updatedAt", "tenantId", "updatedBy",
        ])
        let name = try reader.requiredString("name").trimmingCharacters(in: .whitespaces)
        guard !name.isEmpty, name.count <= Self.maximumNameLength, !name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw ConditionSpecError(field: reader.field("name"), message: "must be 1 to \(Self.maximumNameLength) characters without control characters")
        }
        self.name = name
        description = try reader.string("description") ?? ""
        guard description.count <= 4_096 else {
            throw ConditionSpecError(field: reader.field("description"), message: "must be at most 4096 characters")
        }
        if let enabled = reader.object["enabled"], enabled != .null {
            guard case .bool(let flag) = enabled else { throw ConditionSpecError(field: reader.field("enabled"), message: "must be true or false") }
            self.enabled = flag
        } else {
            enabled = true
        }
        scope = reader.has("scope") ? try RuleScope(json: reader.object["scope"] ?? .null, path: reader.field("scope")) : .tenant
        guard let condition = reader.object["condition"], condition != .null else {
            throw ConditionSpecError(field: reader.field("condition"), message: "is required")
        }
        self.condition = try RuleCondition(json: condition, path: reader.field("condition"))
        if let alarm = reader.object["alarm"], alarm != .null {
            let alarmReader = try ConditionSpecReader(alarm, path: reader.field("alarm"))
            try alarmReader.refuseUnknown(allowed: ["severity", "message"])
            let severityText = try alarmReader.string("severity") ?? AlarmSeverity.major.rawValue
            guard let severity = AlarmSeverity(rawValue: severityText) else {
                throw ConditionSpecError(
                    field: alarmReader.field("severity"),
                    message: "must be one of \(AlarmSeverity.allCases.map(\.rawValue).joined(separator: ", "))"
                )
            }
            let message = try alarmReader.string("message")
            if let message, message.isEmpty || message.count > 1_024 {
                throw ConditionSpecError(field: alarmReader.field("message"), message: "must be 1 to 1024 characters")
            }
            self.alarm = RuleAlarmSpec(severity: severity, message: message)
        } else {
            alarm = nil
        }
        var actions: [RuleAction] = []
        if let list = reader.object["actions"], list != .null {
            guard case .array(let items) = list else {
                throw ConditionSpecError(field: reader.field("actions"), message: "must be a list of actions")
            }
            guard items.count <= Self.maximumActions else {
                throw ConditionSpecError(field: reader.field("actions"), message: "at most \(Self.maximumActions) actions")
            }
            for (index, item) in items.enumerated() {
                actions.append(try RuleAction(json: item, path: "\(reader.field("actions"))[\(index)]"))
            }
        }
        self.actions = actions
        guard self.alarm != nil || !actions.isEmpty else {
            throw ConditionSpecError(field: reader.field("alarm"), message: "a rule needs an alarm, an action, or both")
        }
    }

    /// The definition's JSON form (secrets only when `includeSecrets`).
    public func json(includeSecrets: Bool) -> JSONValue {
        var object: [String: JSONValue] = [
            "name": .string(name),
            "description": .string(description),
            "enabled": .bool(enabled),
            "scope": scope.json,
            "condition": condition.json,
            "actions": .array(actions.map { $0.json(includeSecrets: includeSecrets) }),
        ]
        if let alarm {
            var spec: [String: JSONValue] = ["severity": .string(alarm.severity.rawValue)]
            if let message = alarm.message { spec["message"] = .string(message) }
            object["alarm"] = .object(spec)
        }
        return .object(object)
    }
}

/// A stored rule: its definition, its identity and its version (one more per change).
public struct Rule: Sendable, Hashable {
    public var id: String
    public var tenantID: String
    public var version: Int
    public var definition: RuleDefinition
    public var createdAt: Date
    public var updatedAt: Date
    /// Who made this version (`user:<id>`, `api_key:<id>`).
    public var updatedBy: String

    public init(id: String, tenantID: String, version: Int, definition: RuleDefinition, createdAt: Date, updatedAt: Date, updatedBy: String) {
        self.id = id
        self.tenantID = tenantID
        self.version = version
        self.definition = definition
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.updatedBy = updatedBy
    }

    public var name: String { definition.name }
    public var enabled: Bool { definition.enabled }

    /// The rule's JSON form: the definition plus `id`, `version`, `createdAt`, `updatedAt`
    /// (ISO 8601), `updatedBy`.
    public func json(includeSecrets: Bool) -> JSONValue {
        guard case .object(var object) = definition.json(includeSecrets: includeSecrets) else { return .null }
        object["id"] = .string(id)
        object["version"] = .number(Double(version))
        object["createdAt"] = .string(RuleTime.iso(createdAt))
        object["updatedAt"] = .string(RuleTime.iso(updatedAt))
        object["updatedBy"] = .string(updatedBy)
        return .object(object)
    }

    /// Reads a stored rule back (the store's JSON column holds ``json(includeSecrets:)`` with
    /// secrets).
    public init(storedJSON json: JSONValue, tenantID: String) throws(ConditionSpecError) {
        definition = try RuleDefinition(json: json)
        guard case .string(let id)? = json["id"], case .number(let version)? = json["version"],
            case .string(let created)? = json["createdAt"], case .string(let updated)? = json["updatedAt"],
            let createdAt = RuleTime.date(created), let updatedAt = RuleTime.date(updated)
        else {
            throw ConditionSpecError(field: "id", message: "a stored rule needs id, version, createdAt and updatedAt")
        }
        self.id = id
        self.tenantID = tenantID
        self.version = Int(version)
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.updatedBy = json["updatedBy"]?.stringValue ?? ""
    }
}

/// ISO 8601 with milliseconds (`2026-11-22T05:00:00.000Z`), the form rule and alarm documents use.
public enum RuleTime {
    private static let style = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    public static func iso(_ date: Date) -> String { date.formatted(style) }

    public static func iso(milliseconds: Int64) -> String { iso(Date(timeIntervalSince1970: Double(milliseconds) / 1000)) }

    /// Reads ISO 8601 with or without fractional seconds.
    public static func date(_ text: String) -> Date? {
        if let date = try? Date(text, strategy: style) { return date }
        return try? Date(text, strategy: .iso8601)
    }

    public static func milliseconds(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded()) }
}

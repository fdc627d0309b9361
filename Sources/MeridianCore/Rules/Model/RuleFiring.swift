import Foundation

/// What became of one action of a firing.
public struct RuleActionOutcome: Sendable, Hashable, Codable {
    public enum Status: String, Sendable, Hashable, Codable {
        /// Queued, not done yet (a webhook still retrying).
        case pending
        case succeeded
        case failed
        /// Not run: its queue was full.
        case dropped
        /// A webhook whose last attempt failed: in the dead-letter list, replayable.
        case deadLettered = "dead_lettered"
    }

    /// The action's position in the rule's `actions`.
    public var index: Int
    /// `webhook`, `republish`, `command`, `twin`, `telemetry`.
    public var type: String
    public var status: Status
    /// What happened, for a person: `HTTP 200 after 2 attempts`, `command cmd_... queued`.
    public var detail: String
    public var attempts: Int
    public var at: Date

    public init(index: Int, type: String, status: Status, detail: String, attempts: Int = 0, at: Date) {
        self.index = index
        self.type = type
        self.status = status
        self.detail = detail
        self.attempts = attempts
        self.at = at
    }
}

/// One firing of a rule on a device — a raise or a clear — with the inputs that caused it and
/// what each action did: the answer to "why did this fire, and what did it do?".
public struct RuleFiring: Sendable, Hashable, Codable {
    public enum Event: String, Sendable, Hashable, Codable {
        case raise
        case clear
    }

    public var id: String
    public var tenantID: String
    public var ruleID: String
    public var ruleName: String
    public var ruleVersion: Int
    public var deviceID: String
    public var event: Event
    /// Sample (or tick) time of the transition, milliseconds since 1970.
    public var at: Int64
    /// When the engine recorded it.
    public var recordedAt: Date
    /// The condition's sentence (`temp > 80 for 5m (temp = 81.5)`).
    public var message: String
    /// The input values.
    public var values: [String: JSONValue]
    /// The alarm raised or cleared, if the rule has one.
    public var alarmID: String?
    public var actions: [RuleActionOutcome]

    public init(
        id: String, tenantID: String, ruleID: String, ruleName: String, ruleVersion: Int, deviceID: String, event: Event, at: Int64,
        recordedAt: Date, message: String, values: [String: JSONValue], alarmID: String?, actions: [RuleActionOutcome]
    ) {
        self.id = id
        self.tenantID = tenantID
        self.ruleID = ruleID
        self.ruleName = ruleName
        self.ruleVersion = ruleVersion
        self.deviceID = deviceID
        self.event = event
        self.at = at
        self.recordedAt = recordedAt
        self.message = message
        self.values = values
        self.alarmID = alarmID
        self.actions = actions
    }
}

/// One entry of an alarm's history: a change, who made it, and the alarm's state after it.
public struct AlarmHistoryEntry: Sendable, Hashable, Codable {
    public var alarmID: String
    public var kind: AlarmChange.Kind
    public var at: Date
    public var by: AlarmActor
    public var status: AlarmStatus
    public var severity: AlarmSeverity
    public var count: Int
    /// The comment's text (`commented`).
    public var comment: String?

    public init(_ change: AlarmChange) {
        alarmID = change.alarm.id
        kind = change.kind
        at = change.at
        by = change.by
        status = change.alarm.status
        severity = change.alarm.severity
        count = change.alarm.count
        comment = change.kind == .commented ? change.alarm.comments.last?.text : nil
    }

    public init(alarmID: String, kind: AlarmChange.Kind, at: Date, by: AlarmActor, status: AlarmStatus, severity: AlarmSeverity, count: Int, comment: String?) {
        self.alarmID = alarmID
        self.kind = kind
        self.at = at
        self.by = by
        self.status = status
        self.severity = severity
        self.count = count
        self.comment = comment
    }
}

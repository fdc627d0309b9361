import Foundation

/// How bad an alarm is, most severe first.
public enum AlarmSeverity: String, Sendable, Hashable, Codable, CaseIterable, Comparable {
    case critical
    case major
    case minor
    case warning
    case info

    /// `critical` is the greatest.
    public static func < (lhs: AlarmSeverity, rhs: AlarmSeverity) -> Bool {
        lhs.rank < rhs.rank
    }

    private var rank: Int {
        switch self {
        case .info: 0
        case .warning: 1
        case .minor: 2
        case .major: 3
        case .critical: 4
        }
    }
}

/// Where an alarm is in its life.
///
/// ```
/// active ─► acknowledged ─► cleared
///   └───────────────────────► cleared
/// ```
/// A rule raises an alarm (`active`); an operator acknowledges it ("I am on it"); the rule clears
/// it when its condition no longer holds, or an operator clears it by hand. A cleared alarm is
/// history: the next firing of the same rule on the same device opens a new alarm.
public enum AlarmStatus: String, Sendable, Hashable, Codable, CaseIterable {
    case active
    case acknowledged
    case cleared

    /// Whether the alarm is still open (not cleared): at most one per (rule, device).
    public var isOpen: Bool { self != .cleared }
}

/// Who did something to an alarm: a rule (raising, repeating, clearing) or a person or key
/// through the API.
public struct AlarmActor: Sendable, Hashable, Codable {
    public enum Kind: String, Sendable, Hashable, Codable {
        case rule
        case user
        case apiKey = "api_key"
    }

    public var kind: Kind
    public var id: String

    public init(kind: Kind, id: String) {
        self.kind = kind
        self.id = id
    }

    public static func rule(_ id: String) -> AlarmActor { AlarmActor(kind: .rule, id: id) }
}

/// A note an operator leaves on an alarm.
public struct AlarmComment: Sendable, Hashable, Codable {
    public var at: Date
    public var by: AlarmActor
    public var text: String

    public init(at: Date, by: AlarmActor, text: String) {
        self.at = at
        self.by = by
        self.text = text
    }
}

/// One alarm: a rule's condition holding on one device, from the first firing until it clears.
///
/// Repeated firings while it is open are counted (``count``, ``lastRaisedAt``, ``lastInputs``),
/// never opened as another alarm; a firing at a higher severity raises the alarm's severity.
public struct Alarm: Sendable, Hashable, Codable {
    public var id: String
    public var tenantID: String
    public var ruleID: String
    /// The rule's version that first raised it.
    public var ruleVersion: Int
    public var deviceID: String
    public var severity: AlarmSeverity
    public var status: AlarmStatus
    /// A short title, from the rule (its name, or its alarm text).
    public var message: String
    /// The input values of the first firing (telemetry keys and twin paths the condition read).
    public var inputs: [String: JSONValue]
    /// The input values of the latest firing.
    public var lastInputs: [String: JSONValue]
    /// Firings while open, the first included.
    public var count: Int
    public var raisedAt: Date
    public var lastRaisedAt: Date
    public var acknowledgedAt: Date?
    public var acknowledgedBy: AlarmActor?
    public var clearedAt: Date?
    public var clearedBy: AlarmActor?
    public var comments: [AlarmComment]

    public init(
        id: String,
        tenantID: String,
        ruleID: String,
        ruleVersion: Int,
        deviceID: String,
        severity: AlarmSeverity,
        message: String,
        inputs: [String: JSONValue],
        raisedAt: Date
    ) {
        self.id = id
        self.tenantID = tenantID
        self.ruleID = ruleID
        self.ruleVersion = ruleVersion
        self.deviceID = deviceID
        self.severity = severity
        self.status = .active
        self.message = message
        self.inputs = inputs
        self.lastInputs = inputs
        self.count = 1
        self.raisedAt = raisedAt
        self.lastRaisedAt = raisedAt
        self.comments = []
    }
}

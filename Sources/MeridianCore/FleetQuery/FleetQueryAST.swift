/// A parsed fleet query: a boolean expression over a device's fields.
public indirect enum FleetExpression: Sendable, Hashable {
    case and(FleetExpression, FleetExpression)
    case or(FleetExpression, FleetExpression)
    case not(FleetExpression)
    /// `field op literal`.
    case compare(FleetField, FleetComparison, FleetLiteral)
    /// `field IN [a, b, ...]`.
    case isIn(FleetField, [FleetLiteral])
    /// `EXISTS field`, `has(field)` or `field EXISTS`: the field has a value.
    case exists(FleetField)
    /// A boolean field on its own (`online`, `reported.enabled`): the field is `true`.
    case truthy(FleetField)
}

/// A comparison operator.
public enum FleetComparison: String, Sendable, Hashable, CaseIterable {
    case equal = "="
    case notEqual = "!="
    case less = "<"
    case lessOrEqual = "<="
    case greater = ">"
    case greaterOrEqual = ">="

    /// `<`, `<=`, `>`, `>=`.
    public var isOrdering: Bool { self != .equal && self != .notEqual }
}

/// A field of a device a query can read.
public enum FleetField: Sendable, Hashable, CustomStringConvertible {
    case id
    case name
    /// The profile's name or id (either matches).
    case profile
    /// `active`, `disabled`, `decommissioned`.
    case status
    case online
    /// The device's last-seen time (milliseconds since 1970).
    case lastSeen
    case label(String)
    /// A path into the device's metadata JSON.
    case metadata([String])
    /// A path into the twin's reported document.
    case reported([String])
    /// A path into the twin's desired document.
    case desired([String])
    /// The latest value of a telemetry key.
    case telemetry(String)

    public var description: String {
        switch self {
        case .id: "id"
        case .name: "name"
        case .profile: "profile"
        case .status: "status"
        case .online: "online"
        case .lastSeen: "lastSeen"
        case .label(let key): "labels.\(key)"
        case .metadata(let path): (["metadata"] + path).joined(separator: ".")
        case .reported(let path): (["reported"] + path).joined(separator: ".")
        case .desired(let path): (["desired"] + path).joined(separator: ".")
        case .telemetry(let key): "telemetry.\(key)"
        }
    }

    /// The type of the field's values; `dynamic` for JSON and telemetry values (any scalar).
    public var type: FleetType {
        switch self {
        case .id, .name, .profile, .status, .label: .string
        case .online: .boolean
        case .lastSeen: .time
        case .metadata, .reported, .desired, .telemetry: .dynamic
        }
    }
}

/// The type of a field or literal.
public enum FleetType: String, Sendable, Hashable {
    case string
    case number
    case boolean
    /// A point in time (`lastSeen`, `now - 1h`, an ISO 8601 string, epoch milliseconds).
    case time
    /// A JSON or telemetry value: whatever the device sent.
    case dynamic
}

/// A literal value in a query.
public enum FleetLiteral: Sendable, Hashable, CustomStringConvertible {
    case string(String)
    case number(Double)
    case boolean(Bool)
    /// `now`, `now - 1h`, `now + 30m`: milliseconds relative to the time of evaluation.
    case relativeTime(offsetMilliseconds: Int64)

    public var type: FleetType {
        switch self {
        case .string: .string
        case .number: .number
        case .boolean: .boolean
        case .relativeTime: .time
        }
    }

    public var description: String {
        switch self {
        case .string(let value): "\"\(value)\""
        case .number(let value): value.rounded() == value && abs(value) < 1e15 ? String(Int64(value)) : String(value)
        case .boolean(let value): String(value)
        case .relativeTime(let offset): offset == 0 ? "now" : "now \(offset < 0 ? "-" : "+") \(abs(offset))ms"
        }
    }
}

/// Which half of a device twin a path reads.
public enum RuleTwinSection: String, Sendable, Hashable, CaseIterable {
    /// What the device reported (`reported.a.b`).
    case reported
    /// What the platform asked for (`desired.a.b`).
    case desired
}

/// An aggregate over the recent samples of one numeric telemetry key, maintained incrementally
/// by the engine (see ``RuleSlidingWindow``).
public enum RuleWindowFunction: String, Sendable, Hashable, CaseIterable {
    /// Mean of the samples in the window: `avg(key, 10m)`.
    case avg
    /// Smallest sample in the window: `min_over(key, 5m)`.
    case min
    /// Largest sample in the window: `max_over(key, 5m)`.
    case max
    /// Last minus first sample in the window: `delta(key, 1h)`.
    case delta
    /// ``delta`` per second of time between the first and the last sample: `rate(key, 1m)`.
    case rate

    /// The name used in expressions.
    public var name: String {
        switch self {
        case .avg: "avg"
        case .min: "min_over"
        case .max: "max_over"
        case .delta: "delta"
        case .rate: "rate"
        }
    }

    /// The function named `name` in an expression, if it is a window function.
    public init?(name: String) {
        guard let function = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = function
    }
}

/// One window an expression reads: the engine keeps a ``RuleSlidingWindow`` per key spanning
/// the longest duration asked for that key.
public struct RuleExpressionWindow: Sendable, Hashable {
    /// The aggregate.
    public var function: RuleWindowFunction
    /// The telemetry key.
    public var key: String
    /// How far back from the latest sample, in milliseconds.
    public var durationMilliseconds: Int64

    /// A window.
    public init(function: RuleWindowFunction, key: String, durationMilliseconds: Int64) {
        self.function = function
        self.key = key
        self.durationMilliseconds = durationMilliseconds
    }
}

/// What a rule expression reads about one device when it is evaluated.
public protocol RuleExpressionContext {
    /// The latest value of a telemetry key, or nil when the device never sent it.
    func value(ofKey key: String) -> TelemetryValue?
    /// The value at `path` in the twin's reported or desired document, or nil when absent.
    func twin(_ section: RuleTwinSection, path: [String]) -> JSONValue?
    /// The aggregate of the key's samples over `durationMilliseconds` ending at its latest
    /// sample, or nil when there are not enough samples.
    func window(_ function: RuleWindowFunction, key: String, durationMilliseconds: Int64) -> Double?
}

/// The known types of a device's telemetry keys, used to type-check an expression when the rule
/// is saved. A key not listed is allowed and checked when the expression is evaluated.
public struct RuleExpressionSchema: Sendable, Hashable {
    /// Known key types.
    public var keys: [String: TelemetryValueType]

    /// A schema listing `keys`.
    public init(keys: [String: TelemetryValueType] = [:]) {
        self.keys = keys
    }

    /// No key known: everything is checked at evaluation.
    public static let empty = RuleExpressionSchema()
}

/// The outcome of a condition, three-valued: missing data or a value of an unexpected type gives
/// ``unknown``, and a rule never fires on ``unknown``.
public enum RuleExpressionResult: Sendable, Hashable {
    case `true`
    case `false`
    /// A value was missing, had an unexpected type at run time, or arithmetic had no result
    /// (division by zero, overflow).
    case unknown

    /// The result for a known boolean.
    public init(_ value: Bool) {
        self = value ? .true : .false
    }
}

/// A value computed while evaluating an expression.
public enum RuleExpressionValue: Sendable, Hashable {
    case number(Double)
    case bool(Bool)
    case string(String)
}

/// The static type of a sub-expression: a telemetry type, or unknown (a key not in the schema,
/// a twin path) when it is only known at evaluation.
public enum RuleExpressionType: Sendable, Hashable, CustomStringConvertible {
    case number
    case bool
    case string
    case unknown

    init(_ type: TelemetryValueType) {
        switch type {
        case .number: self = .number
        case .bool: self = .bool
        case .string: self = .string
        }
    }

    /// `a number`, `a bool`, `a string`, `unknown`.
    public var description: String {
        switch self {
        case .number: "a number"
        case .bool: "a bool"
        case .string: "a string"
        case .unknown: "of unknown type"
        }
    }
}

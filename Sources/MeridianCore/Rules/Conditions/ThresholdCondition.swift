/// A threshold with duration and hysteresis on one numeric key, as written in a rule:
///
/// ```json
/// {"key": "temp", "op": ">", "value": 80, "for": "5m",
///  "clear": {"op": "<", "value": 75, "for": "1m"}, "maxGap": "10m"}
/// ```
///
/// raises when `temp > 80` has held for 5 minutes and clears when `temp < 75` has held for 1
/// minute (see ``RuleDurationGate`` for what "held for" means across samples and gaps). `for`
/// defaults to `0s` (at once). Without `clear`, it clears at the first sample where the raise
/// condition no longer holds (its negation, no hysteresis); `clear.op` and `clear.value` default
/// to that negation and `clear.for` to `0s`. `maxGap` (default: none) is the longest silence
/// between two samples that still counts as continuous.
///
/// Decoding checks everything and throws ``ConditionSpecError`` naming the field (`clear.op`,
/// `for`); unknown fields are refused.
public struct ThresholdCondition: Sendable, Hashable, Codable {
    /// A comparison operator.
    public enum Operator: String, Sendable, Hashable, CaseIterable {
        case greater = ">"
        case greaterOrEqual = ">="
        case less = "<"
        case lessOrEqual = "<="
        case equal = "=="
        case notEqual = "!="

        /// Whether `value op threshold` holds.
        public func holds(_ value: Double, _ threshold: Double) -> Bool {
            switch self {
            case .greater: value > threshold
            case .greaterOrEqual: value >= threshold
            case .less: value < threshold
            case .lessOrEqual: value <= threshold
            case .equal: value == threshold
            case .notEqual: value != threshold
            }
        }

        /// The operator that holds exactly when this one does not.
        public var negated: Operator {
            switch self {
            case .greater: .lessOrEqual
            case .greaterOrEqual: .less
            case .less: .greaterOrEqual
            case .lessOrEqual: .greater
            case .equal: .notEqual
            case .notEqual: .equal
            }
        }
    }

    /// One comparison with its duration: `op value for`.
    public struct Comparison: Sendable, Hashable {
        public var op: Operator
        public var value: Double
        public var duration: ConditionDuration

        public init(op: Operator, value: Double, duration: ConditionDuration = .zero) {
            self.op = op
            self.value = value
            self.duration = duration
        }
    }

    /// The telemetry key compared.
    public var key: String
    /// When to raise.
    public var raise: Comparison
    /// When to clear, once raised.
    public var clear: Comparison
    /// The longest gap between samples that still counts as continuous (nil: no limit).
    public var maximumGap: ConditionDuration?

    /// A threshold; `clear` defaults to the negation of `raise` at once.
    public init(key: String, raise: Comparison, clear: Comparison? = nil, maximumGap: ConditionDuration? = nil) {
        self.key = key
        self.raise = raise
        self.clear = clear ?? Comparison(op: raise.op.negated, value: raise.value)
        self.maximumGap = maximumGap
    }

    /// Reads a spec from its JSON form, throwing an error that names the offending field.
    public init(json: JSONValue) throws(ConditionSpecError) {
        let reader = try ConditionSpecReader(json)
        try reader.refuseUnknown(allowed: ["key", "op", "value", "for", "clear", "maxGap"])
        key = try reader.key()
        let op = try Self.operator(reader, required: true) ?? .greater
        raise = Comparison(op: op, value: try reader.requiredNumber("value"), duration: try reader.duration("for") ?? .zero)
        if let clearJSON = reader.object["clear"], clearJSON != .null {
            let clearReader = try ConditionSpecReader(clearJSON, path: "clear")
            try clearReader.refuseUnknown(allowed: ["op", "value", "for"])
            clear = Comparison(
                op: try Self.operator(clearReader, required: false) ?? raise.op.negated,
                value: try clearReader.number("value") ?? raise.value,
                duration: try clearReader.duration("for") ?? .zero
            )
        } else {
            clear = Comparison(op: raise.op.negated, value: raise.value)
        }
        maximumGap = try reader.duration("maxGap")
    }

    private static func `operator`(_ reader: ConditionSpecReader, required: Bool) throws(ConditionSpecError) -> Operator? {
        guard let text = try reader.string("op") else {
            if required { throw ConditionSpecError(field: reader.field("op"), message: "is required") }
            return nil
        }
        guard let op = Operator(rawValue: text) else {
            throw ConditionSpecError(
                field: reader.field("op"),
                message: "must be one of \(Operator.allCases.map(\.rawValue).joined(separator: " "))"
            )
        }
        return op
    }

    /// The spec's JSON form (what ``init(json:)`` reads back).
    public var json: JSONValue {
        var object: [String: JSONValue] = [
            "key": .string(key), "op": .string(raise.op.rawValue), "value": .number(raise.value),
            "for": .string(raise.duration.description),
            "clear": .object([
                "op": .string(clear.op.rawValue), "value": .number(clear.value),
                "for": .string(clear.duration.description),
            ]),
        ]
        if let maximumGap { object["maxGap"] = .string(maximumGap.description) }
        return .object(object)
    }

    public init(from decoder: any Decoder) throws {
        try self.init(json: try JSONValue(from: decoder))
    }

    public func encode(to encoder: any Encoder) throws {
        try json.encode(to: encoder)
    }

    /// `temp > 80 for 5m`.
    public var raiseText: String { Self.text(key, raise) }
    /// `temp < 75 for 1m`.
    public var clearText: String { Self.text(key, clear) }

    private static func text(_ key: String, _ comparison: Comparison) -> String {
        let base = "\(key) \(comparison.op.rawValue) \(comparison.value.conditionText)"
        return comparison.duration == .zero ? base : "\(base) for \(comparison.duration)"
    }
}

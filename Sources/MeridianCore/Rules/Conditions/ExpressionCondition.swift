/// An expression condition, as written in a rule:
///
/// ```json
/// {"expr": "temp > reported.setpoint + 5 && door == \"open\"", "for": "1m",
///  "clear": "temp < reported.setpoint", "clearFor": "2m", "maxGap": "10m"}
/// ```
///
/// `expr` (required) is a ``RuleExpression`` that must be boolean; it raises when it has held for
/// `for` (default `0s`). `clear` (default: `expr` no longer holding) clears once it has held for
/// `clearFor` (default `0s`). `maxGap` as in ``ThresholdCondition``. Both expressions are parsed
/// and type-checked when the rule is saved; errors name the field and the position
/// (`expr: unknown function 'avgg' at 1:1`).
public struct ExpressionCondition: Sendable, Hashable {
    /// When to raise.
    public var expression: RuleExpression
    /// How long `expression` must hold before raising.
    public var duration: ConditionDuration
    /// When to clear (nil: when `expression` is false).
    public var clearExpression: RuleExpression?
    /// How long the clear condition must hold before clearing.
    public var clearDuration: ConditionDuration
    /// The longest gap between evaluations that still counts as continuous (nil: no limit).
    public var maximumGap: ConditionDuration?

    /// An expression condition.
    public init(
        expression: RuleExpression, duration: ConditionDuration = .zero, clearExpression: RuleExpression? = nil,
        clearDuration: ConditionDuration = .zero, maximumGap: ConditionDuration? = nil
    ) {
        self.expression = expression
        self.duration = duration
        self.clearExpression = clearExpression
        self.clearDuration = clearDuration
        self.maximumGap = maximumGap
    }

    /// Reads a spec from its JSON form, throwing an error that names the offending field.
    public init(json: JSONValue) throws(ConditionSpecError) {
        let reader = try ConditionSpecReader(json)
        try reader.refuseUnknown(allowed: ["expr", "for", "clear", "clearFor", "maxGap"])
        expression = try Self.compile(reader.requiredString("expr"), field: "expr")
        duration = try reader.duration("for") ?? .zero
        clearExpression = try reader.string("clear").map { text throws(ConditionSpecError) in try Self.compile(text, field: "clear") }
        clearDuration = try reader.duration("clearFor") ?? .zero
        maximumGap = try reader.duration("maxGap")
    }

    private static func compile(_ text: String, field: String) throws(ConditionSpecError) -> RuleExpression {
        let expression: RuleExpression
        do {
            expression = try RuleExpression.compile(text)
        } catch {
            throw ConditionSpecError(field: field, message: error.description)
        }
        guard expression.root.type == .bool || expression.root.type == .unknown else {
            throw ConditionSpecError(field: field, message: "must be a condition (true or false), not a \(expression.root.type)")
        }
        return expression
    }

    /// The spec's JSON form.
    public var json: JSONValue {
        var object: [String: JSONValue] = ["expr": .string(expression.source)]
        if duration > .zero { object["for"] = .string(duration.description) }
        if let clearExpression { object["clear"] = .string(clearExpression.source) }
        if clearDuration > .zero { object["clearFor"] = .string(clearDuration.description) }
        if let maximumGap { object["maxGap"] = .string(maximumGap.description) }
        return .object(object)
    }

    /// Every telemetry key either expression reads.
    public var referencedKeys: Set<String> {
        expression.referencedKeys.union(clearExpression?.referencedKeys ?? [])
    }

    /// Whether either expression reads the twin.
    public var readsTwin: Bool { expression.readsTwin || (clearExpression?.readsTwin ?? false) }

    /// Every window either expression reads.
    public var windows: [RuleExpressionWindow] { expression.windows + (clearExpression?.windows ?? []) }
}

/// Evaluates an ``ExpressionCondition`` for one device: each time one of its keys (or its twin)
/// changes, the engine calls ``observe(at:context:)`` with the device's current values.
public struct ExpressionConditionEvaluator: Sendable, Hashable {
    /// The condition evaluated.
    public let condition: ExpressionCondition
    private var gate: RuleDurationGate

    /// An evaluator, not raised.
    public init(_ condition: ExpressionCondition) {
        self.condition = condition
        gate = RuleDurationGate(raiseAfter: condition.duration, clearAfter: condition.clearDuration, maximumGap: condition.maximumGap)
    }

    /// Whether the condition is raised now.
    public var isRaised: Bool { gate.isRaised }

    /// Starts in the raised state (its alarm was open when the server stopped): the next clear
    /// condition clears it, instead of the alarm staying open for ever.
    public mutating func assumeRaised() { gate.assumeRaised() }

    /// Evaluates at `timestamp` against the device's values in `context`.
    public mutating func observe(at timestamp: Int64, context: some RuleExpressionContext) -> RuleTransition? {
        let raise = condition.expression.evaluate(in: context)
        let clear: Bool?
        if let clearExpression = condition.clearExpression {
            clear = clearExpression.evaluate(in: context).knownValue
        } else {
            clear = raise.knownValue.map { !$0 }
        }
        guard let change = gate.observe(at: timestamp, raiseHolds: raise.knownValue, clearHolds: clear) else { return nil }
        var values: [String: JSONValue] = [:]
        for key in condition.referencedKeys.sorted() {
            if let value = context.value(ofKey: key) { values[key] = value.ruleJSON }
        }
        switch change {
        case .raised:
            let suffix = condition.duration > .zero ? " for \(condition.duration)" : ""
            return .raise(RuleTransitionReason(message: "\(condition.expression.source)\(suffix)", timestamp: timestamp, values: values))
        case .cleared:
            let text = condition.clearExpression?.source ?? "not (\(condition.expression.source))"
            let suffix = condition.clearDuration > .zero ? " for \(condition.clearDuration)" : ""
            return .clear(RuleTransitionReason(message: "\(text)\(suffix)", timestamp: timestamp, values: values))
        }
    }
}

extension RuleExpressionResult {
    /// True or false, nil when unknown.
    public var knownValue: Bool? {
        switch self {
        case .true: true
        case .false: false
        case .unknown: nil
        }
    }
}

extension TelemetryValue {
    /// The value as JSON, for a firing's recorded inputs.
    public var ruleJSON: JSONValue {
        switch self {
        case .number(let number): number.isFinite ? .number(number) : .string("\(number)")
        case .bool(let bool): .bool(bool)
        case .string(let string): .string(string)
        }
    }
}

/// Evaluates one ``ThresholdCondition`` for one device, incrementally, sample by sample (no query
/// per sample): a ``RuleDurationGate`` fed with the raise and clear comparisons.
public struct ThresholdEvaluator: Sendable, Hashable {
    /// The condition evaluated.
    public let condition: ThresholdCondition
    private var gate: RuleDurationGate

    /// An evaluator, not raised.
    public init(_ condition: ThresholdCondition) {
        self.condition = condition
        gate = RuleDurationGate(
            raiseAfter: condition.raise.duration,
            clearAfter: condition.clear.duration,
            maximumGap: condition.maximumGap
        )
    }

    /// Whether the condition is raised now.
    public var isRaised: Bool { gate.isRaised }

    /// Starts in the raised state (its alarm was open when the server stopped): the next clear
    /// condition clears it, instead of the alarm staying open for ever.
    public mutating func assumeRaised() { gate.assumeRaised() }

    /// Feeds the condition's key's value at `timestamp` (nil, or a value that is not a number,
    /// counts as unknown). Returns a transition when the state changes.
    public mutating func observe(at timestamp: Int64, value: TelemetryValue?) -> RuleTransition? {
        guard case .number(let number)? = value, number.isFinite else {
            _ = gate.observe(at: timestamp, raiseHolds: nil, clearHolds: nil)
            return nil
        }
        return observe(at: timestamp, number: number)
    }

    /// Feeds a numeric value of the condition's key at `timestamp`.
    public mutating func observe(at timestamp: Int64, number: Double) -> RuleTransition? {
        let change = gate.observe(
            at: timestamp,
            raiseHolds: condition.raise.op.holds(number, condition.raise.value),
            clearHolds: condition.clear.op.holds(number, condition.clear.value)
        )
        guard let change else { return nil }
        let values: [String: JSONValue] = [condition.key: .number(number)]
        let detail = "(\(condition.key) = \(number.conditionText))"
        switch change {
        case .raised:
            return .raise(RuleTransitionReason(message: "\(condition.raiseText) \(detail)", timestamp: timestamp, values: values))
        case .cleared:
            return .clear(RuleTransitionReason(message: "\(condition.clearText) \(detail)", timestamp: timestamp, values: values))
        }
    }

    /// Feeds one telemetry sample; samples of other keys are ignored.
    public mutating func observe(_ sample: TelemetrySample) -> RuleTransition? {
        guard sample.key == condition.key else { return nil }
        return observe(at: sample.timestamp, value: sample.value)
    }
}

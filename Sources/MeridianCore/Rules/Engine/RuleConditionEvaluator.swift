/// The state of one rule's condition on one device, whatever its kind: fed samples, presence
/// events, twin changes and clock ticks, it returns the transitions to act on.
public enum RuleConditionEvaluator: Sendable {
    case threshold(ThresholdEvaluator)
    case expression(ExpressionConditionEvaluator)
    case noData(NoDataEvaluator)
    case presence(PresenceEvaluator)
    case ewma(EWMAAnomalyDetector)
    case seasonal(SeasonalAnomalyDetector)

    /// A fresh evaluator, started at `start` (ms; no data and presence count their time from
    /// there for a device never seen); `online` is the device's presence when known.
    public init(_ condition: RuleCondition, startedAt start: Int64, online: Bool?) {
        switch condition {
        case .threshold(let threshold): self = .threshold(ThresholdEvaluator(threshold))
        case .expression(let expression): self = .expression(ExpressionConditionEvaluator(expression))
        case .noData(let noData): self = .noData(NoDataEvaluator(noData, startedAt: start))
        case .presence(let presence): self = .presence(PresenceEvaluator(presence, offlineSince: online == true ? nil : start))
        case .anomaly(let anomaly):
            switch anomaly.kind {
            case .ewma: self = .ewma(EWMAAnomalyDetector(anomaly))
            case .seasonal: self = .seasonal(SeasonalAnomalyDetector(anomaly))
            }
        }
    }

    /// Whether the condition is raised now.
    public var isRaised: Bool {
        switch self {
        case .threshold(let evaluator): evaluator.isRaised
        case .expression(let evaluator): evaluator.isRaised
        case .noData(let evaluator): evaluator.isRaised
        case .presence(let evaluator): evaluator.isRaised
        case .ewma(let evaluator): evaluator.isRaised
        case .seasonal(let evaluator): evaluator.isRaised
        }
    }

    /// Starts raised (see ``RuleDurationGate/assumeRaised()``).
    public mutating func assumeRaised() {
        switch self {
        case .threshold(var evaluator): evaluator.assumeRaised(); self = .threshold(evaluator)
        case .expression(var evaluator): evaluator.assumeRaised(); self = .expression(evaluator)
        case .noData(var evaluator): evaluator.assumeRaised(); self = .noData(evaluator)
        case .presence(var evaluator): evaluator.assumeRaised(); self = .presence(evaluator)
        case .ewma(var evaluator): evaluator.assumeRaised(); self = .ewma(evaluator)
        case .seasonal(var evaluator): evaluator.assumeRaised(); self = .seasonal(evaluator)
        }
    }

    /// Feeds the samples of one timestamp of a message (already applied to `values`).
    public mutating func observe(_ samples: ArraySlice<TelemetrySample>, at timestamp: Int64, values: RuleDeviceValues) -> [RuleTransition] {
        var transitions: [RuleTransition] = []
        switch self {
        case .threshold(var evaluator):
            for sample in samples { if let transition = evaluator.observe(sample) { transitions.append(transition) } }
            self = .threshold(evaluator)
        case .expression(var evaluator):
            if let transition = evaluator.observe(at: timestamp, context: values) { transitions.append(transition) }
            self = .expression(evaluator)
        case .noData(var evaluator):
            for sample in samples { if let transition = evaluator.observe(sample) { transitions.append(transition) } }
            self = .noData(evaluator)
        case .presence:
            break
        case .ewma(var evaluator):
            for sample in samples { if let transition = evaluator.observe(sample) { transitions.append(transition) } }
            self = .ewma(evaluator)
        case .seasonal(var evaluator):
            for sample in samples { if let transition = evaluator.observe(sample) { transitions.append(transition) } }
            self = .seasonal(evaluator)
        }
        return transitions
    }

    /// The device's twin changed: expressions that read it are evaluated at `timestamp`.
    public mutating func twinChanged(at timestamp: Int64, values: RuleDeviceValues) -> RuleTransition? {
        guard case .expression(var evaluator) = self, evaluator.condition.readsTwin else { return nil }
        defer { self = .expression(evaluator) }
        return evaluator.observe(at: timestamp, context: values)
    }

    /// A presence event of the device.
    public mutating func observe(online: Bool, at timestamp: Int64) -> RuleTransition? {
        guard case .presence(var evaluator) = self else { return nil }
        defer { self = .presence(evaluator) }
        return evaluator.observe(online: online, at: timestamp)
    }

    /// Time passed: no data and presence may raise.
    public mutating func tick(now: Int64) -> RuleTransition? {
        switch self {
        case .noData(var evaluator):
            defer { self = .noData(evaluator) }
            return evaluator.tick(now: now)
        case .presence(var evaluator):
            defer { self = .presence(evaluator) }
            return evaluator.tick(now: now)
        default:
            return nil
        }
    }
}

/// Detects values far from a signal's recent behaviour: an exponentially weighted mean and
/// variance (``EWMABaseline``), the z-score `|x − mean| / sqrt(variance)` of each new sample, and
/// an anomaly when `z > k` (``AnomalyCondition``, kind `ewma`).
///
/// - **Warm-up**: the first `warmup` samples only teach the baseline; nothing fires before.
/// - **Robustness**: an anomalous sample is learned clipped to `mean ± k·deviation` (winsorised),
///   so a spike of ×10 does not drag the mean or blow up the variance and hide the next spike;
///   a lasting level shift is still learned within tens of samples, and the condition clears.
/// - **Raise/clear**: raises after `raiseAfter` consecutive anomalous samples, clears after
///   `clearAfter` consecutive samples back under `k`; transitions only on changes.
/// - Values that are not finite numbers are ignored (no learning, no state change).
///
/// **False-positive rate, measured on the simulator's clean signals** (tests in
/// `MeridianSimulatorTests/Anomaly`, seeded, one sample a minute for a simulated week):
/// FACTORY_MOTOR_FIGURES
public struct EWMAAnomalyDetector: Sendable, Hashable {
    /// The condition evaluated (its `kind` is not looked at).
    public let condition: AnomalyCondition
    /// The learned baseline.
    public private(set) var baseline = EWMABaseline()
    /// The last scored sample (nil during warm-up).
    public private(set) var lastScore: AnomalyScore?
    private var gate = AnomalyGate()

    /// A detector with an empty baseline.
    public init(_ condition: AnomalyCondition) {
        self.condition = condition
    }

    /// Whether the condition is raised now.
    public var isRaised: Bool { gate.isRaised }
    /// Whether the warm-up is over.
    public var isWarm: Bool { baseline.count >= condition.warmup }

    /// Feeds the key's value at `timestamp`; returns a transition when the state changes.
    public mutating func observe(at timestamp: Int64, value: Double) -> RuleTransition? {
        guard value.isFinite else { return nil }
        guard let score = condition.scoreAndLearn(value, baseline: &baseline) else {
            lastScore = nil
            return nil
        }
        lastScore = score
        let change = gate.observe(
            anomalous: score.isAnomalous,
            raiseAfter: condition.raiseAfter,
            clearAfter: condition.clearAfter
        )
        return change.map { condition.transition($0, x: value, score: score, at: timestamp, context: "") }
    }

    /// Feeds one telemetry sample; other keys and non-numbers are ignored.
    public mutating func observe(_ sample: TelemetrySample) -> RuleTransition? {
        guard sample.key == condition.key, case .number(let value) = sample.value else { return nil }
        return observe(at: sample.timestamp, value: value)
    }
}

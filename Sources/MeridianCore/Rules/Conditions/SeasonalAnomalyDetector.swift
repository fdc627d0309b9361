/// Detects values far from the same hour of day's behaviour, for signals with a daily cycle: 24
/// EWMA baselines, one per hour of day in UTC, each learning only its hour's samples, and the
/// z-score of a sample against its hour's baseline (``AnomalyCondition``, kind `seasonal`).
///
/// - **Warm-up per bucket**: a bucket scores nothing before it has learned `warmup` samples, so
///   the detector is fully armed after a day (or more) of data.
/// - The half-life counts samples of the same bucket: with a sample a minute and a half-life of
///   180, an hour's baseline forgets with a half-life of three days.
/// - Anomalous samples are learned clipped, and raise/clear work as in ``EWMAAnomalyDetector``
///   (one gate across buckets).
///
/// **False-positive rate, measured on the simulator's clean signals** (tests in
/// `MeridianSimulatorTests/Anomaly`, seeded, one sample a minute for a simulated week):
///
/// | Signal | Spec | Scored samples | Flagged | Rate | Bound asserted |
/// |---|---|---|---|---|---|
/// | thermostat `temperature`, 10 thermostats | k 4, half-life 120, warm-up 60 | 86,400 | 6 | 0.007 % | < 0.1 % |
///
/// (20 thermostats: 43 of 172,800, 0.025 %.) Not suited to signals that step with an on/off
/// actuator rather than with the time of day: the thermostat's `humidity` (5 % lower while
/// heating) flags 0.9 % of its samples at k 4 and 0.3 % at k 6.
public struct SeasonalAnomalyDetector: Sendable, Hashable {
    /// The condition evaluated (its `kind` is not looked at).
    public let condition: AnomalyCondition
    /// The baselines, by hour of day (UTC) 0…23.
    public private(set) var baselines = [EWMABaseline](repeating: EWMABaseline(), count: 24)
    /// The last scored sample (nil while its bucket warms up).
    public private(set) var lastScore: AnomalyScore?
    private var gate = AnomalyGate()

    /// A detector with empty baselines.
    public init(_ condition: AnomalyCondition) {
        self.condition = condition
    }

    /// Whether the condition is raised now.
    public var isRaised: Bool { gate.isRaised }

    /// Starts in the raised state (its alarm was open when the server stopped): the next clear
    /// condition clears it, instead of the alarm staying open for ever.
    public mutating func assumeRaised() { gate.assumeRaised() }

    /// The hour of day (UTC) of `timestamp`, 0…23.
    public static func hourOfDay(_ timestamp: Int64) -> Int {
        let day: Int64 = 86_400_000
        var milliseconds = timestamp % day
        if milliseconds < 0 { milliseconds += day }
        return Int(milliseconds / 3_600_000)
    }

    /// Feeds the key's value at `timestamp`; returns a transition when the state changes.
    public mutating func observe(at timestamp: Int64, value: Double) -> RuleTransition? {
        guard value.isFinite else { return nil }
        let hour = Self.hourOfDay(timestamp)
        guard let score = condition.scoreAndLearn(value, baseline: &baselines[hour]) else {
            lastScore = nil
            return nil
        }
        lastScore = score
        let change = gate.observe(
            anomalous: score.isAnomalous,
            raiseAfter: condition.raiseAfter,
            clearAfter: condition.clearAfter
        )
        let context = " for \(hour < 10 ? "0" : "")\(hour):00 UTC"
        return change.map { condition.transition($0, x: value, score: score, at: timestamp, context: context) }
    }

    /// Feeds one telemetry sample; other keys and non-numbers are ignored.
    public mutating func observe(_ sample: TelemetrySample) -> RuleTransition? {
        guard sample.key == condition.key, case .number(let value) = sample.value else { return nil }
        return observe(at: sample.timestamp, value: value)
    }
}

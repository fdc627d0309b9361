import Foundation

/// An anomaly condition on one numeric key, as written in a rule:
///
/// ```json
/// {"kind": "ewma", "key": "vibration", "k": 4, "halfLife": 30, "warmup": 50}
/// {"kind": "seasonal", "key": "temperature", "k": 5, "halfLife": 180, "warmup": 60}
/// ```
///
/// - `kind`: `ewma` (``EWMAAnomalyDetector``: a value far from its recent behaviour) or
///   `seasonal` (``SeasonalAnomalyDetector``: far from the same hour of day's behaviour).
/// - `k` (> 0, required): the z-score above which a sample is anomalous.
/// - `halfLife` (samples, ≥ 1) or `alpha` (0 < alpha ≤ 1), not both; default a half-life of 30
///   samples. `alpha = 1 − 2^(−1/halfLife)`: a sample's weight halves every `halfLife` samples
///   (for `seasonal`, samples of the same hour-of-day bucket).
/// - `warmup` (samples, default 30): how many samples (per bucket for `seasonal`) the baseline
///   learns from before the detector may fire.
/// - `raiseAfter` (samples, default 1): consecutive anomalous samples needed to raise.
/// - `clearAfter` (samples, default 5): consecutive samples back under `k` needed to clear.
/// - `minDeviation` (default 0): a floor under the standard deviation, in the key's unit, so
///   that a nearly constant signal does not make tiny changes look huge.
public struct AnomalyCondition: Sendable, Hashable, Codable {
    /// The detector kind.
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        case ewma
        case seasonal
    }

    public var kind: Kind
    /// The telemetry key watched.
    public var key: String
    /// The z-score threshold.
    public var k: Double
    /// The EWMA smoothing factor for each new sample, in (0, 1].
    public var alpha: Double
    /// Samples (per bucket for `seasonal`) learned before the detector may fire.
    public var warmup: Int
    /// Consecutive anomalous samples needed to raise.
    public var raiseAfter: Int
    /// Consecutive normal samples needed to clear.
    public var clearAfter: Int
    /// Floor under the standard deviation.
    public var minimumDeviation: Double
    /// Set when the spec gave a half-life, to write it back as given.
    public var halfLife: Double?

    /// A condition with a half-life in samples.
    public init(
        kind: Kind, key: String, k: Double, halfLife: Double = 30, warmup: Int = 30, raiseAfter: Int = 1,
        clearAfter: Int = 5, minimumDeviation: Double = 0
    ) {
        self.kind = kind
        self.key = key
        self.k = k
        self.alpha = Self.alpha(halfLife: halfLife)
        self.halfLife = halfLife
        self.warmup = warmup
        self.raiseAfter = raiseAfter
        self.clearAfter = clearAfter
        self.minimumDeviation = minimumDeviation
    }

    /// The smoothing factor of a half-life in samples.
    public static func alpha(halfLife: Double) -> Double {
        1 - pow(2, -1 / max(halfLife, 1e-9))
    }

    /// Reads a spec from its JSON form, throwing an error that names the offending field.
    public init(json: JSONValue) throws(ConditionSpecError) {
        let reader = try ConditionSpecReader(json)
        try reader.refuseUnknown(allowed: [
            "kind", "key", "k", "halfLife", "alpha", "warmup", "raiseAfter", "clearAfter", "minDeviation",
        ])
        let kindText = try reader.requiredString("kind")
        guard let kind = Kind(rawValue: kindText) else {
            throw ConditionSpecError(field: "kind", message: "must be ewma or seasonal")
        }
        self.kind = kind
        key = try reader.key()
        k = try reader.requiredNumber("k")
        guard k > 0 else { throw ConditionSpecError(field: "k", message: "must be greater than 0") }
        if reader.has("halfLife") && reader.has("alpha") {
            throw ConditionSpecError(field: "alpha", message: "give halfLife or alpha, not both")
        }
        if let alpha = try reader.number("alpha") {
            guard alpha > 0, alpha <= 1 else {
                throw ConditionSpecError(field: "alpha", message: "must be greater than 0 and at most 1")
            }
            self.alpha = alpha
            halfLife = nil
        } else {
            let halfLife = try reader.number("halfLife") ?? 30
            guard halfLife >= 1, halfLife <= 1_000_000 else {
                throw ConditionSpecError(field: "halfLife", message: "must be from 1 to 1000000 samples")
            }
            self.halfLife = halfLife
            alpha = Self.alpha(halfLife: halfLife)
        }
        warmup = try reader.integer("warmup", in: 1...1_000_000) ?? 30
        raiseAfter = try reader.integer("raiseAfter", in: 1...1_000_000) ?? 1
        clearAfter = try reader.integer("clearAfter", in: 1...1_000_000) ?? 5
        minimumDeviation = try reader.number("minDeviation") ?? 0
        guard minimumDeviation >= 0 else {
            throw ConditionSpecError(field: "minDeviation", message: "must be 0 or more")
        }
    }

    /// The spec's JSON form.
    public var json: JSONValue {
        var object: [String: JSONValue] = [
            "kind": .string(kind.rawValue), "key": .string(key), "k": .number(k), "warmup": .number(Double(warmup)),
            "raiseAfter": .number(Double(raiseAfter)), "clearAfter": .number(Double(clearAfter)),
            "minDeviation": .number(minimumDeviation),
        ]
        if let halfLife { object["halfLife"] = .number(halfLife) } else { object["alpha"] = .number(alpha) }
        return .object(object)
    }

    public init(from decoder: any Decoder) throws {
        try self.init(json: try JSONValue(from: decoder))
    }

    public func encode(to encoder: any Encoder) throws {
        try json.encode(to: encoder)
    }
}

/// An exponentially weighted mean and variance of one signal (West's incremental form):
/// `diff = x − mean; mean += α·diff; variance = (1 − α)·(variance + α·diff²)`.
public struct EWMABaseline: Sendable, Hashable {
    /// The weighted mean.
    public private(set) var mean = 0.0
    /// The weighted variance.
    public private(set) var variance = 0.0
    /// Samples learned.
    public private(set) var count = 0

    /// An empty baseline.
    public init() {}

    /// The standard deviation used for scoring: at least `floor`, and never exactly 0 (a
    /// constant signal's tiny floor makes any change anomalous, then the baseline adapts).
    public func deviation(floor: Double) -> Double {
        max(variance.squareRoot(), floor, 1e-9 * max(1, abs(mean)))
    }

    /// How many deviations `x` is from the mean.
    public func score(_ x: Double, floor: Double) -> Double {
        abs(x - mean) / deviation(floor: floor)
    }

    /// Learns `x` with smoothing factor `alpha` (the first sample sets the mean).
    public mutating func learn(_ x: Double, alpha: Double) {
        count += 1
        if count == 1 {
            mean = x
            variance = 0
            return
        }
        let diff = x - mean
        mean += alpha * diff
        variance = (1 - alpha) * (variance + alpha * diff * diff)
    }
}

/// The sample-count raise/clear state shared by the anomaly detectors: raise after `raiseAfter`
/// consecutive anomalous samples, clear after `clearAfter` consecutive normal ones; transitions
/// only on changes.
struct AnomalyGate: Sendable, Hashable {
    var isRaised = false
    private var run = 0

    mutating func assumeRaised() {
        isRaised = true
        run = 0
    }

    mutating func observe(anomalous: Bool, raiseAfter: Int, clearAfter: Int) -> RuleDurationGate.Change? {
        // While not raised, count anomalous samples; while raised, count normal ones.
        guard anomalous != isRaised else {
            run = 0
            return nil
        }
        run += 1
        guard run >= (isRaised ? clearAfter : raiseAfter) else { return nil }
        run = 0
        isRaised.toggle()
        return isRaised ? .raised : .cleared
    }
}

/// One scored sample of an anomaly detector.
public struct AnomalyScore: Sendable, Hashable {
    /// The baseline's mean before this sample.
    public var mean: Double
    /// The baseline's standard deviation (with its floor) before this sample.
    public var deviation: Double
    /// `|x − mean| / deviation`.
    public var z: Double
    /// Whether `z > k`.
    public var isAnomalous: Bool
}

extension AnomalyCondition {
    /// Scores `x` against `baseline` (nil while warming up), then learns it. An anomalous sample
    /// is learned clipped to `mean ± k·deviation`, so one spike moves the baseline no more than
    /// a sample at the edge of normal would (its variance grows by at most a factor
    /// (1 − α)(1 + α·k²) per anomalous sample: a lasting level shift is still learned, in tens of
    /// samples, and then clears).
    func scoreAndLearn(_ x: Double, baseline: inout EWMABaseline) -> AnomalyScore? {
        guard baseline.count >= warmup else {
            baseline.learn(x, alpha: alpha)
            return nil
        }
        let deviation = baseline.deviation(floor: minimumDeviation)
        let mean = baseline.mean
        let z = abs(x - mean) / deviation
        let anomalous = z > k
        let learned = anomalous ? mean + (x > mean ? k : -k) * deviation : x
        baseline.learn(learned, alpha: alpha)
        return AnomalyScore(mean: mean, deviation: deviation, z: z, isAnomalous: anomalous)
    }

    func transition(_ change: RuleDurationGate.Change, x: Double, score: AnomalyScore, at timestamp: Int64, context: String)
        -> RuleTransition
    {
        let values: [String: JSONValue] = [
            key: .number(x), "mean": .number(score.mean), "deviation": .number(score.deviation), "z": .number(score.z),
        ]
        let zText = (score.z * 100).rounded() / 100
        switch change {
        case .raised:
            return .raise(
                RuleTransitionReason(
                    message: "\(key) anomalous\(context): z = \(zText.conditionText) > \(k.conditionText)",
                    timestamp: timestamp,
                    values: values
                )
            )
        case .cleared:
            return .clear(
                RuleTransitionReason(
                    message: "\(key) back to normal\(context) for \(clearAfter) samples",
                    timestamp: timestamp,
                    values: values
                )
            )
        }
    }
}

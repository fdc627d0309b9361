import MeridianCore

/// A fitness wristband.
///
/// Its wearer sleeps at night (bedtime 22:00–24:00, waking 06:00–08:00 UTC, per device), rests
/// most of the day, and now and then walks (about every 2.5 hours, 3–20 minutes) or runs (about
/// every other day, 15–45 minutes): some 8,000–15,000 steps a day. Heart rate follows the
/// activity from the wearer's resting rate; steps accumulate at the walking or running cadence.
///
/// Telemetry: `heartRate` (bpm, 40…200), `spo2` (%, 88…100), `steps` (cumulative since start,
/// never decreasing), `activity` ("sleep", "rest", "walking", "running"), `heartRateAlert` (bool:
/// heart rate above the alert threshold). Desired: `heartRateAlert` (100…220 bpm, default 180).
/// Commands: `vibrate {"pattern": "short" | "long" | "double"}`.
public struct WearableModel: DeviceModel {
    public static let profile = SimulatedProfile.wearable
    static let commands = ["vibrate"]
    static let patterns = ["short", "long", "double"]

    enum Activity: String {
        case sleep, rest, walking, running
    }

    private var random: SimulationRandom
    private let deviceIndex: Int
    private let restingHeartRate: Double
    private let bedtime: Double
    private let wakeTime: Double
    private let cadence: Double

    private var activity = Activity.rest
    private var episodeRemaining = 0.0
    private var heartRate: Double
    private var steps = 0.0
    private var alertThreshold = 180.0
    private var vibrations = 0
    private var lastTime: Int64?

    public init(deviceIndex: Int, random: SimulationRandom) {
        var random = random
        self.deviceIndex = deviceIndex
        restingHeartRate = random.uniform(in: 55...75)
        bedtime = random.uniform(in: 22...24)
        wakeTime = random.uniform(in: 6...8)
        cadence = random.uniform(in: 0.9...1.1)
        heartRate = restingHeartRate
        self.random = random
    }

    private func asleep(at time: Int64) -> Bool {
        let hour = ModelMath.hourOfDay(time)
        return hour >= bedtime || hour < wakeTime
    }

    public mutating func sample(at time: Int64) -> [String: JSONValue] {
        let (count, step) = ModelMath.steps(ModelMath.elapsedSeconds(from: lastTime, to: time), maxStep: 10)
        let start = lastTime ?? time
        for index in 0..<count {
            advance(step, at: start + Int64(Double(index + 1) * step * 1000))
        }
        if count == 0 && episodeRemaining == 0 { activity = asleep(at: time) ? .sleep : .rest }
        lastTime = time

        let measuredHeartRate = ModelMath.clamp(heartRate + random.normal(standardDeviation: 1.5), 40...200).rounded()
        let spo2Mean = activity == .sleep ? 95.5 : 97.5
        let spo2 = ModelMath.clamp(random.normal(mean: spo2Mean, standardDeviation: 0.8), 88...100).rounded()
        return [
            "heartRate": .number(measuredHeartRate),
            "spo2": .number(spo2),
            "steps": .number(steps.rounded(.down)),
            "activity": .string(activity.rawValue),
            "heartRateAlert": .bool(measuredHeartRate > alertThreshold),
        ]
    }

    private mutating func advance(_ dt: Double, at time: Int64) {
        if episodeRemaining > 0 {
            episodeRemaining = max(episodeRemaining - dt, 0)
        }
        if episodeRemaining == 0 {
            if asleep(at: time) {
                activity = .sleep
            } else if random.bernoulli(dt / 115_200) {
                activity = .running
                episodeRemaining = random.uniform(in: 900...2700)
            } else if random.bernoulli(dt / 9000) {
                activity = .walking
                episodeRemaining = random.uniform(in: 180...1200)
            } else {
                activity = .rest
            }
        }
        let target: Double
        let stepsPerMinute: Double
        switch activity {
        case .sleep: (target, stepsPerMinute) = (restingHeartRate - 7, 0)
        case .rest: (target, stepsPerMinute) = (restingHeartRate + 5, 2)
        case .walking: (target, stepsPerMinute) = (restingHeartRate + 35, 105)
        case .running: (target, stepsPerMinute) = (min(restingHeartRate + 90, 185), 160)
        }
        heartRate +=
            (target - heartRate) * ModelMath.relax(dt, tau: 45)
            + random.normal(standardDeviation: 0.3 * dt.squareRoot())
        heartRate = ModelMath.clamp(heartRate, 40...200)
        steps += stepsPerMinute * cadence * dt / 60
    }

    public var reported: [String: JSONValue] {
        [
            "firmware": .string("band-os-1.9.7"),
            "serial": .string("WB-\(400_000 + deviceIndex)"),
            "heartRateAlert": .number(alertThreshold),
            "vibrations": .number(Double(vibrations)),
        ]
    }

    public mutating func applyDesired(_ desired: [String: JSONValue]) {
        if let value = Params.desiredNumber(desired, "heartRateAlert", in: 100...220) { alertThreshold = value }
    }

    public mutating func handle(method: String, params: JSONValue) throws -> JSONValue {
        switch method {
        case "vibrate":
            let pattern = try Params.optionalChoice(params, "pattern", Self.patterns) ?? "short"
            vibrations += 1
            return .object(["vibrated": .string(pattern)])
        default:
            throw SimulatedCommandError.unknownMethod(method, known: Self.commands)
        }
    }
}

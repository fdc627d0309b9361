import MeridianCore

/// An industrial induction motor (4-pole, 50 Hz) running around the clock.
///
/// The load follows the factory's day (busiest 08:00–18:00). The bearing wears with running time
/// (a bearing lasts 600–2000 running hours from new; a fleet starts with wear spread over 0–0.6, so
/// some motors already show warnings); vibration RMS grows with wear, slowly at first
/// and steeply near the end (ISO 10816: below 2.8 mm/s good, above 7.1 mm/s alarm). At full wear
/// the motor trips: it stops and reports `health` "failed" until `resetWear` (maintenance).
///
/// Telemetry: `rpm` (0…3000), `vibrationRms` (mm/s, 0…20), `temperature` (°C, 15…120), `load`
/// (%, 0…100), `running` (bool). Reported: `bearingWear` (0…1), `health` ("good", "warning",
/// "critical", "failed"), `targetRpm`. Desired: `targetRpm` (300…3000, default 1480).
/// Commands: `resetWear`, `setSpeed {"rpm": 300…3000}`.
public struct FactoryMotorModel: DeviceModel {
    public static let profile = SimulatedProfile.factoryMotor
    static let rpmRange = 300.0...3000.0
    static let commands = ["resetWear", "setSpeed"]

    private var random: SimulationRandom
    private let deviceIndex: Int
    /// Running seconds from new bearing to failure.
    private let lifetime: Double
    private let baseVibration: Double
    private let ambient: Double

    private var wear: Double
    private var targetRpm = 1480.0
    private var rpm: Double
    private var load = 0.7
    private var temperature: Double
    private var lastTime: Int64?

    public init(deviceIndex: Int, random: SimulationRandom) {
        var random = random
        self.deviceIndex = deviceIndex
        lifetime = random.uniform(in: 600...2000) * 3600
        baseVibration = random.uniform(in: 0.8...1.6)
        ambient = random.uniform(in: 20...30)
        wear = random.uniform(in: 0...0.6)
        rpm = 1480
        temperature = ambient + 25
        self.random = random
    }

    var running: Bool { wear < 1 }

    var health: String {
        switch wear {
        case ..<0.5: "good"
        case ..<0.8: "warning"
        case ..<1: "critical"
        default: "failed"
        }
    }

    public mutating func sample(at time: Int64) -> [String: JSONValue] {
        let (count, step) = ModelMath.steps(ModelMath.elapsedSeconds(from: lastTime, to: time), maxStep: 60)
        let start = lastTime ?? time
        for index in 0..<count {
            advance(step, at: start + Int64(Double(index + 1) * step * 1000))
        }
        if count == 0 { load = targetLoad(at: time) }
        lastTime = time

        let vibration: Double
        if running {
            let speedFactor = rpm / 1480
            vibration =
                baseVibration * (1 + 2 * wear) * (0.6 + 0.4 * speedFactor) * (0.8 + 0.3 * load)
                + 9 * wear * wear * wear
                + random.normal(standardDeviation: 0.08 + 0.3 * wear)
        } else {
            vibration = 0.02 + abs(random.normal(standardDeviation: 0.01))
        }
        return [
            "rpm": .number(
                ModelMath.round(ModelMath.clamp(rpm + (running ? random.normal(standardDeviation: 2) : 0), 0...3000), 0)
            ),
            "vibrationRms": .number(ModelMath.round(ModelMath.clamp(vibration, 0...20), 3)),
            "temperature": .number(
                ModelMath.round(ModelMath.clamp(temperature + random.normal(standardDeviation: 0.2), 15...120), 1)
            ),
            "load": .number(ModelMath.round(ModelMath.clamp(running ? load * 100 : 0, 0...100), 1)),
            "running": .bool(running),
        ]
    }

    /// The production load at `time`: 85 % by day, 55 % at night.
    private func targetLoad(at time: Int64) -> Double {
        0.7 + 0.15 * ModelMath.dailyCycle(time, peakHour: 13)
    }

    private mutating func advance(_ dt: Double, at time: Int64) {
        if running {
            load = ModelMath.clamp(targetLoad(at: time) + random.normal(standardDeviation: 0.03), 0.05...1)
            // Slip: an induction motor runs a few percent below its synchronous speed under load.
            let targetSpeed = targetRpm * (1 - 0.03 * load)
            rpm += (targetSpeed - rpm) * ModelMath.relax(dt, tau: 5)
            wear = min(wear + dt / lifetime * (0.5 + load) * (rpm / 1480), 1)
        } else {
            rpm += (0 - rpm) * ModelMath.relax(dt, tau: 10)
            if rpm < 1 { rpm = 0 }
        }
        let heat = running ? 20 + 40 * load + 25 * wear : 0
        temperature += (ambient + heat - temperature) * ModelMath.relax(dt, tau: 1200)
        temperature = ModelMath.clamp(temperature, 15...120)
    }

    public var reported: [String: JSONValue] {
        [
            "firmware": .string("drive-ctl-3.8.0"),
            "serial": .string("FM-\(300_000 + deviceIndex)"),
            "bearingWear": .number(ModelMath.round(wear, 4)),
            "health": .string(health),
            "targetRpm": .number(targetRpm),
        ]
    }

    public mutating func applyDesired(_ desired: [String: JSONValue]) {
        if let value = Params.desiredNumber(desired, "targetRpm", in: Self.rpmRange) { targetRpm = value }
    }

    public mutating func handle(method: String, params: JSONValue) throws -> JSONValue {
        switch method {
        case "resetWear":
            wear = 0
            return .object(["bearingWear": .number(0), "health": .string(health)])
        case "setSpeed":
            targetRpm = try Params.number(params, "rpm", in: Self.rpmRange)
            return .object(["targetRpm": .number(targetRpm)])
        default:
            throw SimulatedCommandError.unknownMethod(method, known: Self.commands)
        }
    }
}

import Foundation
import MeridianCore

/// A household electricity meter (230 V, 50 Hz).
///
/// The household's power follows a daily load curve: a base load (fridge, standby) all day, a
/// morning peak around 07:30 and a larger evening peak around 19:30 (UTC), with appliances
/// (kettle, oven) switching on now and then while people are awake. The voltage wanders around
/// 230 V within the EN 50160 band and sags a little under load. Energy is integrated from power:
/// some 8–17 kWh a day.
///
/// Telemetry: `energy` (kWh, cumulative, never decreasing), `power` (W, 0…12000), `voltage`
/// (V, 207…253), `current` (A, 0…60), `rate` ("standard", or "peak"/"offpeak" on the dual
/// tariff). Desired: `tariff` ("single" or "dual", off-peak 00:00–07:00). Commands: `readNow`
/// (answers the register: `energy`, `power`, `voltage`, `time`).
public struct SmartMeterModel: DeviceModel {
    public static let profile = SimulatedProfile.smartMeter
    static let commands = ["readNow"]

    private var random: SimulationRandom
    private let deviceIndex: Int
    private let baseLoad: Double
    private let morningPeak: Double
    private let eveningPeak: Double

    private var energy: Double
    private var power: Double
    private var voltageOffset = 0.0
    private var voltage = 230.0
    private var applianceWatts = 0.0
    private var applianceRemaining = 0.0
    private var tariff = "single"
    private var lastTime: Int64?

    public init(deviceIndex: Int, random: SimulationRandom) {
        var random = random
        self.deviceIndex = deviceIndex
        baseLoad = random.uniform(in: 100...250)
        morningPeak = random.uniform(in: 300...900)
        eveningPeak = random.uniform(in: 600...1500)
        energy = ModelMath.round(random.uniform(in: 1000...30_000), 3)
        power = baseLoad
        self.random = random
    }

    private func curve(at time: Int64) -> Double {
        let hour = ModelMath.hourOfDay(time)
        func bump(_ centre: Double, _ width: Double) -> Double {
            var distance = abs(hour - centre)
            distance = min(distance, 24 - distance)
            return exp(-(distance * distance) / (2 * width * width))
        }
        return baseLoad + morningPeak * bump(7.5, 1) + eveningPeak * bump(19.5, 1.8)
    }

    private func rate(at time: Int64) -> String {
        guard tariff == "dual" else { return "standard" }
        return ModelMath.hourOfDay(time) < 7 ? "offpeak" : "peak"
    }

    public mutating func sample(at time: Int64) -> [String: JSONValue] {
        let (count, step) = ModelMath.steps(ModelMath.elapsedSeconds(from: lastTime, to: time), maxStep: 30)
        let start = lastTime ?? time
        for index in 0..<count {
            advance(step, at: start + Int64(Double(index + 1) * step * 1000))
        }
        if count == 0 { power = curve(at: time) }
        lastTime = time
        let measuredVoltage = ModelMath.clamp(voltage + random.normal(standardDeviation: 0.3), 207...253)
        return [
            "energy": .number(ModelMath.round(energy, 4)),
            "power": .number(ModelMath.round(power, 1)),
            "voltage": .number(ModelMath.round(measuredVoltage, 1)),
            "current": .number(ModelMath.round(ModelMath.clamp(power / measuredVoltage, 0...60), 2)),
            "rate": .string(rate(at: time)),
        ]
    }

    private mutating func advance(_ dt: Double, at time: Int64) {
        if applianceRemaining > 0 {
            applianceRemaining = max(applianceRemaining - dt, 0)
            if applianceRemaining == 0 { applianceWatts = 0 }
        } else {
            let hour = ModelMath.hourOfDay(time)
            if hour >= 6.5 && hour < 23 && random.bernoulli(dt / 10_800) {
                // A kettle (2 kW, minutes) or an oven / washing machine (about 2 kW, up to an hour).
                if random.bernoulli(0.6) {
                    applianceWatts = random.uniform(in: 1800...2400)
                    applianceRemaining = random.uniform(in: 120...300)
                } else {
                    applianceWatts = random.uniform(in: 1000...2500)
                    applianceRemaining = random.uniform(in: 1200...3600)
                }
            }
        }
        power = ModelMath.clamp(
            curve(at: time) + applianceWatts + random.normal(standardDeviation: 0.03 * baseLoad),
            0...12_000
        )
        energy += power * dt / 3_600_000
        // The grid's voltage: a slow random walk pulled back to nominal, minus the sag under load.
        voltageOffset +=
            -voltageOffset * ModelMath.relax(dt, tau: 1800) + random.normal(standardDeviation: 0.05 * dt.squareRoot())
        voltageOffset = ModelMath.clamp(voltageOffset, -12...12)
        voltage = ModelMath.clamp(230 + voltageOffset - power / 1000 * 0.8, 207...253)
    }

    public var reported: [String: JSONValue] {
        [
            "firmware": .string("meter-fw-7.2.0"),
            "serial": .string("SM-\(500_000 + deviceIndex)"),
            "tariff": .string(tariff),
        ]
    }

    public mutating func applyDesired(_ desired: [String: JSONValue]) {
        if let value = Params.desiredChoice(desired, "tariff", ["single", "dual"]) { tariff = value }
    }

    public mutating func handle(method: String, params: JSONValue) throws -> JSONValue {
        switch method {
        case "readNow":
            return .object([
                "energy": .number(ModelMath.round(energy, 4)),
                "power": .number(ModelMath.round(power, 1)),
                "voltage": .number(ModelMath.round(voltage, 1)),
                "time": .number(Double(lastTime ?? 0)),
            ])
        default:
            throw SimulatedCommandError.unknownMethod(method, known: Self.commands)
        }
    }
}

import MeridianCore

/// A room thermostat.
///
/// The room loses heat toward the outside temperature (a daily cycle, coldest at 05:00, warmest at
/// 15:00, UTC) and the heating adds about 5 °C/h while on. The heating switches on below
/// `setpoint − hysteresis` and off above `setpoint + hysteresis`; `boost` heats to 2 °C above the
/// setpoint for a while.
///
/// Telemetry: `temperature` (°C, 0…35), `humidity` (%, 20…80), `setpoint` (°C), `heating` (bool),
/// `mode` ("heat" or "off"). Desired: `setpoint` (5…30, default 21), `mode`, `hysteresis`
/// (0.1…2, default 0.5). Commands: `setSetpoint {"value": 5…30}`, `boost {"minutes": 1…240}`.
public struct ThermostatModel: DeviceModel {
    public static let profile = SimulatedProfile.thermostat
    static let setpointRange = 5.0...30.0
    static let commands = ["setSetpoint", "boost"]

    private var random: SimulationRandom
    private let deviceIndex: Int
    /// Mean outside temperature of this device's climate (°C) and its daily swing.
    private let outsideMean: Double
    private let outsideSwing: Double
    /// How fast the room loses heat (time constant, seconds) and how fast heating warms it (°C/s).
    private let lossTau: Double
    private let heatRate: Double
    private let humidityMean: Double

    private var temperature: Double
    private var humidity: Double
    private var setpoint = 21.0
    private var hysteresis = 0.5
    private var mode = "heat"
    private var heating = false
    private var boostUntil: Int64?
    private var lastTime: Int64?

    public init(deviceIndex: Int, random: SimulationRandom) {
        var random = random
        self.deviceIndex = deviceIndex
        outsideMean = random.uniform(in: 0...14)
        outsideSwing = random.uniform(in: 3...7)
        lossTau = random.uniform(in: 6...10) * 3600
        heatRate = random.uniform(in: 4.5...6) / 3600
        humidityMean = random.uniform(in: 35...55)
        temperature = random.uniform(in: 18...22)
        humidity = humidityMean
        self.random = random
    }

    public mutating func sample(at time: Int64) -> [String: JSONValue] {
        let (count, step) = ModelMath.steps(ModelMath.elapsedSeconds(from: lastTime, to: time), maxStep: 60)
        let start = lastTime ?? time
        for index in 0..<count {
            advance(step, at: start + Int64(Double(index + 1) * step * 1000))
        }
        if count == 0 { updateHeating(at: time) }
        lastTime = time
        let measured = ModelMath.clamp(temperature + random.normal(standardDeviation: 0.05), 0...35)
        let measuredHumidity = ModelMath.clamp(humidity + random.normal(standardDeviation: 0.3), 20...80)
        return [
            "temperature": .number(ModelMath.round(measured, 2)),
            "humidity": .number(ModelMath.round(measuredHumidity, 1)),
            "setpoint": .number(setpoint),
            "heating": .bool(heating),
            "mode": .string(mode),
        ]
    }

    private mutating func advance(_ dt: Double, at time: Int64) {
        updateHeating(at: time)
        let outside = outsideMean + outsideSwing * ModelMath.dailyCycle(time, peakHour: 15)
        var change = (outside - temperature) * ModelMath.relax(dt, tau: lossTau)
        if heating { change += heatRate * dt }
        temperature = ModelMath.clamp(
            temperature + change + random.normal(standardDeviation: 0.005 * dt.squareRoot()),
            0...35
        )
        // Humidity drifts around its mean, a little lower while heating (warm air holds more).
        let humidityTarget = humidityMean - (heating ? 5 : 0) + 4 * ModelMath.dailyCycle(time, peakHour: 6)
        humidity +=
            (humidityTarget - humidity) * ModelMath.relax(dt, tau: 3600)
            + random.normal(standardDeviation: 0.02 * dt.squareRoot())
        humidity = ModelMath.clamp(humidity, 20...80)
    }

    private mutating func updateHeating(at time: Int64) {
        if let until = boostUntil, time >= until { boostUntil = nil }
        guard mode == "heat" else {
            heating = false
            return
        }
        let target = boostUntil == nil ? setpoint : setpoint + 2
        if temperature < target - hysteresis {
            heating = true
        } else if temperature > target + hysteresis {
            heating = false
        }
    }

    public var reported: [String: JSONValue] {
        [
            "firmware": .string("thermostat-2.3.1"),
            "serial": .string("TH-\(100_000 + deviceIndex)"),
            "setpoint": .number(setpoint),
            "hysteresis": .number(hysteresis),
            "mode": .string(mode),
        ]
    }

    public mutating func applyDesired(_ desired: [String: JSONValue]) {
        if let value = Params.desiredNumber(desired, "setpoint", in: Self.setpointRange) { setpoint = value }
        if let value = Params.desiredNumber(desired, "hysteresis", in: 0.1...2) { hysteresis = value }
        if let value = Params.desiredChoice(desired, "mode", ["heat", "off"]) { mode = value }
    }

    public mutating func handle(method: String, params: JSONValue) throws -> JSONValue {
        switch method {
        case "setSetpoint":
            setpoint = try Params.number(params, "value", in: Self.setpointRange)
            return .object(["setpoint": .number(setpoint)])
        case "boost":
            let minutes = try Params.optionalNumber(params, "minutes", in: 1...240) ?? 30
            guard mode == "heat" else { throw SimulatedCommandError.unavailable("the thermostat is off") }
            let until = (lastTime ?? 0) + Int64(minutes * 60_000)
            boostUntil = until
            return .object(["boostUntil": .number(Double(until))])
        default:
            throw SimulatedCommandError.unknownMethod(method, known: Self.commands)
        }
    }
}

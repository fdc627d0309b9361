import MeridianCore

/// The signal model of one simulated device: what it measures, the twin state it reports, how it
/// honours desired settings and answers commands.
///
/// Models are pure and deterministic: given the same ``SimulationRandom`` and the same calls
/// (sample times, desired settings, commands) they produce the same values. The simulator runner
/// keeps one model per virtual device and drives it from that device's clock.
public protocol DeviceModel: Sendable {
    /// The profile this model simulates.
    static var profile: SimulatedProfile { get }

    /// A device of this profile; `random` is the device's own stream (``SimulationRandom``).
    init(deviceIndex: Int, random: SimulationRandom)

    /// The telemetry at `time` (milliseconds since 1970), called at the device's reporting rate
    /// with increasing times. Values are finite numbers, booleans or strings only.
    mutating func sample(at time: Int64) -> [String: JSONValue]

    /// The device's reported twin state: firmware and the settings in effect.
    var reported: [String: JSONValue] { get }

    /// Applies desired twin settings (the merged desired document). Unknown keys are ignored, and
    /// so are values of the wrong type or out of range (the setting in effect stays, and
    /// ``reported`` shows it).
    mutating func applyDesired(_ desired: [String: JSONValue])

    /// Runs a command and returns its answer; throws ``SimulatedCommandError`` for an unknown
    /// method or bad parameters.
    mutating func handle(method: String, params: JSONValue) throws -> JSONValue
}

extension SimulatedProfile {
    /// The model type that simulates this profile.
    public var modelType: any DeviceModel.Type {
        switch self {
        case .thermostat: ThermostatModel.self
        case .coldChainTruck: ColdChainTruckModel.self
        case .factoryMotor: FactoryMotorModel.self
        case .wearable: WearableModel.self
        case .smartMeter: SmartMeterModel.self
        }
    }

    /// A model of this profile for device `deviceIndex` of a run seeded with `seed`, drawing from
    /// the device's model stream (stream 0).
    public func makeModel(deviceIndex: Int, seed: UInt64) -> any DeviceModel {
        modelType.init(deviceIndex: deviceIndex, random: SimulationRandom(seed: seed, deviceIndex: deviceIndex))
    }
}

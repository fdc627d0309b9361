/// The kinds of device the simulator can run; the raw value is the name used on the command line
/// and in fault specs (`spikes:2%@factory-motor`).
public enum SimulatedProfile: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// A room thermostat: temperature on a daily cycle, heating on/off toward the setpoint.
    case thermostat = "thermostat"
    /// A refrigerated truck: GPS route, door events, cargo temperature kept by the reefer.
    case coldChainTruck = "cold-chain-truck"
    /// An industrial motor: vibration, temperature and speed, with bearing wear toward failure.
    case factoryMotor = "factory-motor"
    /// A fitness wearable: heart rate, SpO2 and steps, with activity episodes.
    case wearable = "wearable"
    /// An electricity meter: cumulative energy, power and voltage on a daily load curve.
    case smartMeter = "smart-meter"

    /// The profile named `name` (its raw value; case-insensitive, `_` accepted for `-`).
    public init?(name: String) {
        let normalized = String(name.lowercased().map { $0 == "_" ? "-" : $0 })
        guard let profile = SimulatedProfile(rawValue: normalized) else { return nil }
        self = profile
    }

    public var description: String { rawValue }
}

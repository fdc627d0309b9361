import MQTTCore
import MeridianDevice

/// Where a simulated fleet's devices get their credentials.
public enum FleetCredentials: Sendable {
    /// Access tokens, one per device, used in order (device `i` gets token `i`); fewer tokens
    /// than devices is an error.
    case tokens([String])
    /// Each device provisions itself with a profile's provisioning key and secret (the profile
    /// must allow `allow-create`), as `<namePrefix>-<index>`.
    case provision(profileKey: String, profileSecret: String, namePrefix: String)
}

/// What to simulate: how many devices of which profiles, how fast, for how long, with which
/// faults, against which server.
public struct FleetPlan: Sendable {
    /// The server's host and MQTT port (`nil`: 1883, or 8883 with ``tls``).
    public var host: String
    public var port: Int?
    public var tls: MeridianDevice.TLS?
    public var credentials: FleetCredentials
    /// How many virtual devices.
    public var devices: Int = 100
    /// The profiles, assigned round robin: device `i` is `profiles[i % profiles.count]`.
    public var profiles: [SimulatedProfile] = SimulatedProfile.allCases
    /// Messages per second per device.
    public var rate: Double = 1
    /// How long to run; `nil` runs until cancelled.
    public var duration: Duration?
    /// The seed: the same seed gives every device the same signal (and faults) again.
    public var seed: UInt64 = 1
    /// Faults to inject.
    public var faults: [FaultSpec] = []
    /// MQTT 5 or 3.1.1.
    public var protocolVersion: MQTTProtocolVersion = .v5
    /// New connections (and provisionings) per second while the fleet starts: a ramp, rather
    /// than every device at once.
    public var connectRate: Double = 500
    /// Extra numeric keys (`x0`, `x1`, ...) added to every sample: larger payloads for benchmarks.
    public var extraKeys: Int = 0
    /// Called with each acknowledged batch's latencies (send → stored), for benchmarks.
    public var latencyRecorder: (@Sendable ([Duration]) -> Void)?

    public init(host: String, port: Int? = nil, credentials: FleetCredentials) {
        self.host = host
        self.port = port
        self.credentials = credentials
    }

    /// The profile of device `index`.
    public func profile(of index: Int) -> SimulatedProfile {
        profiles[index % profiles.count]
    }

    /// Checks the plan; the error names the setting.
    public func validate() throws {
        guard devices >= 1 else { throw FleetPlanError("devices: at least 1 (got \(devices))") }
        guard rate > 0, rate.isFinite else { throw FleetPlanError("rate: a positive number of messages per second (got \(rate))") }
        guard connectRate > 0, connectRate.isFinite else { throw FleetPlanError("connect rate: a positive number (got \(connectRate))") }
        guard !profiles.isEmpty else { throw FleetPlanError("profiles: at least one") }
        guard (0...1000).contains(extraKeys) else { throw FleetPlanError("extra keys: from 0 to 1000 (got \(extraKeys))") }
        if let duration, duration <= .zero { throw FleetPlanError("duration: must be positive") }
        if case .tokens(let tokens) = credentials, tokens.count < devices {
            throw FleetPlanError("tokens: \(tokens.count) tokens for \(devices) devices")
        }
    }
}

/// A plan that cannot run; the message names the setting.
public struct FleetPlanError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

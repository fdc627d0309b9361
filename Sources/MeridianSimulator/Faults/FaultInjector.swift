import MeridianCore

/// The faults of one simulated device: it alters the model's samples (stuck sensor, spikes,
/// dropouts, clock skew) and decides, tick by tick, what the runner does to the device's network
/// (disconnect, delay, packet loss, reboot).
///
/// Deterministic: built from the run's seed and the device's index, with a random stream per
/// fault, so the same run injects the same faults at the same ticks, and adding a fault does not
/// move the others.
public struct FaultInjector: Sendable {
    /// A fault this device has, with its own random stream.
    struct ActiveFault: Sendable {
        var spec: FaultSpec
        var random: SimulationRandom
    }

    /// The faults that concern this device: per-tick faults of its profile, and share-of-devices
    /// faults that selected it.
    public var faults: [FaultSpec] { active.map(\.spec) }
    /// The timestamp shift applied to this device's samples (0 without clock skew).
    public let clockSkewMilliseconds: Int64
    /// Whether one of this device's sensors is stuck.
    public var hasStuckSensor: Bool { active.contains { $0.spec.kind == .stuck } }

    private var active: [ActiveFault]
    /// The stuck sensor's key and frozen reading, fixed at the first sample that has a number.
    private var stuckReading: (key: String, value: JSONValue)?

    /// The faults of device `deviceIndex` (of `profile`) among `faults`, in a run seeded with `seed`.
    public init(faults: [FaultSpec], seed: UInt64, deviceIndex: Int, profile: SimulatedProfile) {
        var active: [ActiveFault] = []
        var skew: Int64 = 0
        var occurrences: [FaultSpec: UInt64] = [:]
        for spec in faults where spec.applies(to: profile) {
            // The stream depends on what the fault is, not on its position in the list.
            let occurrence = occurrences[spec, default: 0]
            occurrences[spec] = occurrence + 1
            let kindNumber = UInt64(FaultSpec.Kind.allCases.firstIndex(of: spec.kind) ?? 0)
            let profileNumber = UInt64((SimulatedProfile.allCases.firstIndex { $0 == spec.profile } ?? -1) + 1)
            let stream = 1_000 + kindNumber * 1_000 + profileNumber * 100 + occurrence
            var random = SimulationRandom(seed: seed, deviceIndex: deviceIndex, stream: stream)
            if spec.kind.scope == .shareOfDevices {
                guard random.bernoulli(spec.probability) else { continue }
                if spec.kind == .clockSkew, let amount = spec.durationMilliseconds {
                    let magnitude = random.uniform(in: 0.5...1) * Double(amount)
                    skew += Int64((random.bernoulli(0.5) ? magnitude : -magnitude).rounded())
                }
            }
            active.append(ActiveFault(spec: spec, random: random))
        }
        self.active = active
        clockSkewMilliseconds = skew
    }

    /// Whether this device has no fault at all (the runner may skip the injector).
    public var isEmpty: Bool { active.isEmpty }

    /// The model's sample at `time` as the device sends it: nil when it drops out, otherwise
    /// with its timestamp skewed, a stuck sensor frozen and perhaps a spike. Call once per sample.
    public mutating func apply(_ values: [String: JSONValue], at time: Int64) -> FaultedSample? {
        var sample = FaultedSample(time: time + clockSkewMilliseconds, values: values)
        var dropped = false
        for index in active.indices {
            switch active[index].spec.kind {
            case .stuck:
                if stuckReading == nil {
                    let keys = Self.numericKeys(values)
                    if let key = active[index].random.pick(keys), let value = values[key] {
                        stuckReading = (key, value)
                    }
                }
                if let stuck = stuckReading, sample.values[stuck.key] != nil {
                    sample.values[stuck.key] = stuck.value
                    sample.stuckKey = stuck.key
                }
            case .spikes:
                guard active[index].random.bernoulli(active[index].spec.probability) else { continue }
                let keys = Self.numericKeys(sample.values).filter { $0 != sample.stuckKey }
                if let key = active[index].random.pick(keys), let value = sample.values[key]?.numberValue {
                    let spiked = value * 10 + (value < 0 ? -1000 : 1000)
                    sample.values[key] = .number(spiked)
                    sample.spikedKey = key
                }
            case .dropouts:
                if active[index].random.bernoulli(active[index].spec.probability) { dropped = true }
            case .clockSkew, .disconnects, .networkDelay, .packetLoss, .reboots:
                continue
            }
        }
        return dropped ? nil : sample
    }

    /// What happens to the device's network at this tick (one reporting interval). Call once per
    /// tick, before sending that tick's message.
    public mutating func tick() -> NetworkFaults {
        var faults = NetworkFaults()
        for index in active.indices {
            let probability = active[index].spec.probability
            switch active[index].spec.kind {
            case .disconnects:
                if active[index].random.bernoulli(probability) { faults.shouldDisconnect = true }
            case .packetLoss:
                if active[index].random.bernoulli(probability) { faults.shouldDrop = true }
            case .reboots:
                if active[index].random.bernoulli(probability) { faults.shouldReboot = true }
            case .networkDelay:
                let amount = Double(active[index].spec.durationMilliseconds ?? 0)
                faults.delayMilliseconds += Int64((amount * active[index].random.uniform(in: 0.5...1.5)).rounded())
            case .stuck, .spikes, .dropouts, .clockSkew:
                continue
            }
        }
        return faults
    }

    private static func numericKeys(_ values: [String: JSONValue]) -> [String] {
        values.compactMap { key, value in value.numberValue == nil ? nil : key }.sorted()
    }
}

/// A sample after fault injection.
public struct FaultedSample: Sendable, Hashable {
    /// The timestamp the device sends (its clock: shifted by clock skew).
    public var time: Int64
    /// The values the device sends.
    public var values: [String: JSONValue]
    /// The key whose value spiked in this sample, if any.
    public var spikedKey: String?
    /// The key of the stuck sensor, if any.
    public var stuckKey: String?

    /// A sample at `time` with `values` and no fault marks.
    public init(time: Int64, values: [String: JSONValue], spikedKey: String? = nil, stuckKey: String? = nil) {
        self.time = time
        self.values = values
        self.spikedKey = spikedKey
        self.stuckKey = stuckKey
    }
}

/// What the runner does to a device's network at one tick.
public struct NetworkFaults: Sendable, Hashable {
    /// Drop the connection now (and reconnect as a real device would).
    public var shouldDisconnect = false
    /// Do not send this tick's message (lost on the way).
    public var shouldDrop = false
    /// Restart the device: disconnect, reconnect, resend its reported twin.
    public var shouldReboot = false
    /// Hold this tick's message back this long before sending it.
    public var delayMilliseconds: Int64 = 0

    /// No network fault.
    public init() {}
}

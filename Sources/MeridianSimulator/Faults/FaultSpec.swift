/// One fault to inject into a simulated fleet, as given on the command line:
/// `kind:percent%[:duration][@profile]`, e.g. `stuck:5%`, `spikes:2%@factory-motor`,
/// `clock-skew:5%:30s`, `network-delay:20%:200ms`.
///
/// The percentage means one of two things, by kind (``Scope``):
/// - **share of devices** (`stuck`, `clock-skew`, `network-delay`): that share of the fleet's
///   devices (of the given profile, with `@profile`) has the fault for the whole run; which
///   devices is decided from the run's seed and each device's index, so it is reproducible and
///   does not depend on the fleet's size.
/// - **per tick** (`spikes`, `dropouts`, `disconnects`, `packet-loss`, `reboots`): every device
///   (of the given profile) has the fault with that probability at every sample or tick.
public struct FaultSpec: Sendable, Hashable, CustomStringConvertible {
    /// The kinds of fault.
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        /// A sensor freezes: one numeric value repeats its first reading for the rest of the run.
        case stuck = "stuck"
        /// A numeric value jumps far out of its range (×10 ± 1000) in one sample.
        case spikes = "spikes"
        /// A sample is not sent.
        case dropouts = "dropouts"
        /// The device's clock is off: its samples' timestamps are shifted by between half and all
        /// of the duration, earlier or later (fixed per device).
        case clockSkew = "clock-skew"
        /// The device drops its connection (the runner reconnects it).
        case disconnects = "disconnects"
        /// The device's messages are delayed by 50–150 % of the duration.
        case networkDelay = "network-delay"
        /// A message is lost on the way (the runner does not send it).
        case packetLoss = "packet-loss"
        /// The device restarts (the runner reconnects it and resends its reported twin).
        case reboots = "reboots"

        /// Whether the percentage is a share of devices or a probability per tick.
        public var scope: Scope {
            switch self {
            case .stuck, .clockSkew, .networkDelay: .shareOfDevices
            case .spikes, .dropouts, .disconnects, .packetLoss, .reboots: .perTick
            }
        }

        /// Whether this kind takes a duration (`clock-skew:5%:30s`).
        public var takesDuration: Bool { self == .clockSkew || self == .networkDelay }
    }

    /// What a fault's percentage applies to.
    public enum Scope: Sendable, Hashable {
        /// The share of devices that have the fault for the whole run.
        case shareOfDevices
        /// The probability, for every device, at every sample or tick.
        case perTick
    }

    /// The kind of fault.
    public var kind: Kind
    /// The percentage, 0…100 (see ``Scope``).
    public var percent: Double
    /// The skew or delay in milliseconds, for the kinds that take one; nil otherwise.
    public var durationMilliseconds: Int64?
    /// Only devices of this profile, when set (`@profile`).
    public var profile: SimulatedProfile?

    /// A fault; `percent` must be within 0…100 and `durationMilliseconds` given exactly for the
    /// kinds that take one (the parser checks both; this initializer trusts its caller).
    public init(kind: Kind, percent: Double, durationMilliseconds: Int64? = nil, profile: SimulatedProfile? = nil) {
        self.kind = kind
        self.percent = percent
        self.durationMilliseconds = durationMilliseconds
        self.profile = profile
    }

    /// The percentage as a probability, 0…1.
    public var probability: Double { percent / 100 }

    /// Whether the fault concerns devices of `profile`.
    public func applies(to profile: SimulatedProfile) -> Bool {
        self.profile == nil || self.profile == profile
    }

    /// The spec in its command-line form.
    public var description: String {
        var text = "\(kind.rawValue):\(Params.format(percent))%"
        if let durationMilliseconds {
            text += durationMilliseconds % 1000 == 0 ? ":\(durationMilliseconds / 1000)s" : ":\(durationMilliseconds)ms"
        }
        if let profile { text += "@\(profile.rawValue)" }
        return text
    }
}

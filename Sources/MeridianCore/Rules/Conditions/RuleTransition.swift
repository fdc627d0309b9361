/// A change of a rule condition's state, emitted only when the state changes (a condition that
/// keeps holding does not raise again): what to raise or clear an alarm with.
public enum RuleTransition: Sendable, Hashable {
    /// The condition started to hold (for long enough): raise.
    case raise(RuleTransitionReason)
    /// The condition stopped holding (its clear condition held for long enough): clear.
    case clear(RuleTransitionReason)

    /// Whether this is a raise.
    public var isRaise: Bool {
        if case .raise = self { return true }
        return false
    }

    /// The why, when and with which input values.
    public var reason: RuleTransitionReason {
        switch self {
        case .raise(let reason), .clear(let reason): reason
        }
    }
}

/// Why a condition raised or cleared: a human sentence, the (virtual) time and the input values
/// that caused it — what "why did this fire?" shows.
public struct RuleTransitionReason: Sendable, Hashable {
    /// A short sentence, e.g. `temp > 80 for 5m (temp = 81.5)`.
    public var message: String
    /// Milliseconds since 1970 (UTC) of the sample or tick that caused the transition.
    public var timestamp: Int64
    /// The input values that caused it, by key (for anomaly conditions also `mean`, `deviation`,
    /// `z`; for no-data and presence the last-seen time in milliseconds).
    public var values: [String: JSONValue]

    /// A reason.
    public init(message: String, timestamp: Int64, values: [String: JSONValue] = [:]) {
        self.message = message
        self.timestamp = timestamp
        self.values = values
    }
}

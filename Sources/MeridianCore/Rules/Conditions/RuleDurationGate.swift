/// The duration and hysteresis state machine under every condition: fed, sample by sample, whether
/// the raise condition and the clear condition hold, it says when to raise and when to clear.
///
/// - It **raises** when the raise condition has held continuously for ``raiseAfter``: the
///   consecutive samples that all satisfy it span at least that long, from the first satisfying
///   sample to the current one (with a duration of 0, the first satisfying sample raises).
/// - Once raised, it **clears** when the clear condition has held continuously for
///   ``clearAfter``, measured the same way. With a clear condition different from the negation of
///   the raise condition (`temp > 80` raises, `temp < 75` clears) values between the two move
///   nothing: that is the hysteresis that keeps an oscillating value from flapping.
/// - A sample that does not satisfy the condition being timed restarts its span; so does an
///   unknown one (`nil`: the value is missing or not a number) — unknown never counts as holding,
///   and never raises or clears by itself.
/// - **Gaps**: a gap between two samples longer than ``maximumGap`` also restarts the span, so a
///   device silent for an hour does not "hold" `temp > 80 for 5m` across the silence on the
///   strength of one sample before it and one after. Without a maximum gap (`nil`), any two
///   consecutive satisfying samples count as continuous however far apart.
/// - Samples older than the newest one seen are ignored (time never goes backwards); samples with
///   the same timestamp are fine.
/// - Transitions are emitted only on changes: while raised, more satisfying samples return nil.
///
/// Time is the samples' own timestamps (milliseconds since 1970); the gate never reads a clock.
public struct RuleDurationGate: Sendable, Hashable {
    /// How long (in sample time) the raise condition must hold before raising.
    public let raiseAfter: ConditionDuration
    /// How long the clear condition must hold, once raised, before clearing.
    public let clearAfter: ConditionDuration
    /// The longest gap between consecutive samples that still counts as continuous; nil for no
    /// limit.
    public let maximumGap: ConditionDuration?

    /// Whether the condition is raised now.
    public private(set) var isRaised = false
    /// The first sample of the current run of samples satisfying the condition being timed.
    private var spanStart: Int64?
    /// The newest sample's timestamp.
    private var lastTimestamp: Int64?

    /// A gate, not raised.
    public init(raiseAfter: ConditionDuration, clearAfter: ConditionDuration, maximumGap: ConditionDuration? = nil) {
        self.raiseAfter = raiseAfter
        self.clearAfter = clearAfter
        self.maximumGap = maximumGap
    }

    /// Starts in the raised state (its alarm was open when the server stopped): the next clear
    /// condition clears it, instead of the alarm staying open for ever.
    public mutating func assumeRaised() {
        isRaised = true
        spanStart = nil
    }

    /// What a gate's step did.
    public enum Change: Sendable, Hashable {
        case raised
        case cleared
    }

    /// Feeds one sample: at `timestamp`, whether the raise condition holds and whether the clear
    /// condition holds (each `nil` when unknown). Only the one that matters now is looked at:
    /// the raise condition while not raised, the clear condition while raised. Returns the change,
    /// if any.
    public mutating func observe(at timestamp: Int64, raiseHolds: Bool?, clearHolds: Bool?) -> Change? {
        if let last = lastTimestamp {
            guard timestamp >= last else { return nil }
            if let maximumGap, timestamp - last > maximumGap.milliseconds { spanStart = nil }
        }
        lastTimestamp = timestamp
        let holds = isRaised ? clearHolds : raiseHolds
        guard holds == true else {
            spanStart = nil
            return nil
        }
        let start = spanStart ?? timestamp
        spanStart = start
        let needed = isRaised ? clearAfter : raiseAfter
        guard timestamp - start >= needed.milliseconds else { return nil }
        isRaised.toggle()
        spanStart = nil
        return isRaised ? .raised : .cleared
    }

    /// Feeds one sample of a condition without hysteresis: it raises when `holds` has been true
    /// for ``raiseAfter`` and clears when it has been false for ``clearAfter``.
    public mutating func observe(at timestamp: Int64, holds: Bool?) -> Change? {
        observe(at: timestamp, raiseHolds: holds, clearHolds: holds.map { !$0 })
    }
}

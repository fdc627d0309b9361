import Foundation

/// A device offline for longer than a duration, as written in a rule: `{"for": "5m"}`.
///
/// Evaluated by ``PresenceEvaluator``.
public struct PresenceCondition: Sendable, Hashable, Codable {
    /// How long the device must stay offline to raise (0s: at the first tick after it went
    /// offline).
    public var offlineFor: ConditionDuration

    /// A presence condition.
    public init(offlineFor: ConditionDuration) {
        self.offlineFor = offlineFor
    }

    /// Reads a spec from its JSON form, throwing an error that names the offending field.
    public init(json: JSONValue) throws(ConditionSpecError) {
        let reader = try ConditionSpecReader(json)
        try reader.refuseUnknown(allowed: ["for"])
        guard let duration = try reader.duration("for") else {
            throw ConditionSpecError(field: "for", message: "is required")
        }
        offlineFor = duration
    }

    /// The spec's JSON form.
    public var json: JSONValue { .object(["for": .string(offlineFor.description)]) }

    public init(from decoder: any Decoder) throws {
        try self.init(json: try JSONValue(from: decoder))
    }

    public func encode(to encoder: any Encoder) throws {
        try json.encode(to: encoder)
    }
}

/// Evaluates a ``PresenceCondition`` for one device on a virtual clock: presence changes arrive
/// through ``observe(online:at:)`` (or ``observe(_:)`` with a stored ``PresenceEvent``) and time
/// passes through ``tick(now:)``.
///
/// - It **raises** at the first tick where the device has been offline for at least the
///   duration (`now − offline since ≥ for`).
/// - It **clears** at the event that brings the device back online.
/// - Going offline again restarts the count; a repeated offline event does not (the device was
///   already offline). Events older than the newest one are ignored.
public struct PresenceEvaluator: Sendable, Hashable {
    /// The condition evaluated.
    public let condition: PresenceCondition
    /// Since when the device has been offline; nil while online.
    public private(set) var offlineSince: Int64?
    /// Whether the condition is raised now.
    public private(set) var isRaised = false

    /// Starts in the raised state (its alarm was open when the server stopped): the next clear
    /// condition clears it, instead of the alarm staying open for ever.
    public mutating func assumeRaised() { isRaised = true }
    private var lastEvent: Int64?

    /// An evaluator for a device that is online (or, with `offlineSince`, offline since then).
    public init(_ condition: PresenceCondition, offlineSince: Int64? = nil) {
        self.condition = condition
        self.offlineSince = offlineSince
    }

    /// The device went online (`true`) or offline (`false`) at `timestamp`.
    public mutating func observe(online: Bool, at timestamp: Int64) -> RuleTransition? {
        if let lastEvent, timestamp < lastEvent { return nil }
        lastEvent = timestamp
        if !online {
            if offlineSince == nil { offlineSince = timestamp }
            return nil
        }
        offlineSince = nil
        guard isRaised else { return nil }
        isRaised = false
        return .clear(RuleTransitionReason(message: "the device is back online", timestamp: timestamp))
    }

    /// A stored presence event of this device (its `online` after the event, at its time).
    public mutating func observe(_ event: PresenceEvent) -> RuleTransition? {
        observe(online: event.online, at: Int64((event.time.timeIntervalSince1970 * 1000).rounded()))
    }

    /// Time is now `now`: raises once the device has been offline long enough.
    public mutating func tick(now: Int64) -> RuleTransition? {
        guard !isRaised, let since = offlineSince, now - since >= condition.offlineFor.milliseconds else { return nil }
        isRaised = true
        return .raise(
            RuleTransitionReason(
                message: "the device has been offline for \(condition.offlineFor)",
                timestamp: now,
                values: ["offlineSince": .number(Double(since))]
            )
        )
    }
}

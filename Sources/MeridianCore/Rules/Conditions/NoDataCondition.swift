/// A device, or one of its keys, silent for longer than a duration, as written in a rule:
/// `{"for": "10m"}` (any telemetry of the device) or `{"key": "temp", "for": "10m"}`.
///
/// Evaluated by ``NoDataEvaluator``.
public struct NoDataCondition: Sendable, Hashable, Codable {
    /// The key watched; nil for any key of the device.
    public var key: String?
    /// How long the silence must last to raise (at least 1 ms).
    public var silence: ConditionDuration

    /// A no-data condition.
    public init(key: String? = nil, silence: ConditionDuration) {
        self.key = key
        self.silence = silence
    }

    /// Reads a spec from its JSON form, throwing an error that names the offending field.
    public init(json: JSONValue) throws(ConditionSpecError) {
        let reader = try ConditionSpecReader(json)
        try reader.refuseUnknown(allowed: ["key", "for"])
        key = reader.has("key") ? try reader.key() : nil
        guard let silence = try reader.duration("for") else {
            throw ConditionSpecError(field: "for", message: "is required")
        }
        guard silence > .zero else { throw ConditionSpecError(field: "for", message: "must be longer than 0s") }
        self.silence = silence
    }

    /// The spec's JSON form.
    public var json: JSONValue {
        var object: [String: JSONValue] = ["for": .string(silence.description)]
        if let key { object["key"] = .string(key) }
        return .object(object)
    }

    public init(from decoder: any Decoder) throws {
        try self.init(json: try JSONValue(from: decoder))
    }

    public func encode(to encoder: any Encoder) throws {
        try json.encode(to: encoder)
    }
}

/// Evaluates a ``NoDataCondition`` for one device on a virtual clock: samples arrive through
/// ``observe(at:key:)`` and time passes through ``tick(now:)``.
///
/// - It **raises** at the first tick where `now − last ≥ silence`, `last` being the newest
///   timestamp seen of the watched key (or of any key), or the evaluator's start when nothing has
///   been seen yet (a device that never reports raises `silence` after the rule started).
/// - It **clears** on the next sample of the watched key.
/// - Only ticks raise: a late sample after a long silence with no tick in between raises nothing
///   (the silence is already over). Raised, further ticks return nil.
/// - Sample timestamps older than `last` do not move it back (a device with a skewed clock does
///   not look silent), but such a sample still clears: data did arrive.
public struct NoDataEvaluator: Sendable, Hashable {
    /// The condition evaluated.
    public let condition: NoDataCondition
    /// The newest sample time (or the start).
    public private(set) var lastSeen: Int64
    /// Whether the condition is raised now.
    public private(set) var isRaised = false

    /// Starts in the raised state (its alarm was open when the server stopped): the next clear
    /// condition clears it, instead of the alarm staying open for ever.
    public mutating func assumeRaised() { isRaised = true }

    /// An evaluator started at `start` (milliseconds since 1970): the silence counts from there.
    public init(_ condition: NoDataCondition, startedAt start: Int64) {
        self.condition = condition
        lastSeen = start
    }

    /// A sample of `key` arrived with timestamp `timestamp`.
    public mutating func observe(at timestamp: Int64, key: String) -> RuleTransition? {
        if let watched = condition.key, watched != key { return nil }
        lastSeen = max(lastSeen, timestamp)
        guard isRaised else { return nil }
        isRaised = false
        return .clear(
            RuleTransitionReason(
                message: "\(subject) reported again",
                timestamp: timestamp,
                values: ["lastSeen": .number(Double(lastSeen))]
            )
        )
    }

    /// A telemetry sample arrived.
    public mutating func observe(_ sample: TelemetrySample) -> RuleTransition? {
        observe(at: sample.timestamp, key: sample.key)
    }

    /// Time is now `now`: raises once the silence is long enough.
    public mutating func tick(now: Int64) -> RuleTransition? {
        guard !isRaised, now - lastSeen >= condition.silence.milliseconds else { return nil }
        isRaised = true
        return .raise(
            RuleTransitionReason(
                message: "no data from \(subject) for \(condition.silence)",
                timestamp: now,
                values: ["lastSeen": .number(Double(lastSeen))]
            )
        )
    }

    private var subject: String { condition.key.map { "key \($0)" } ?? "the device" }
}

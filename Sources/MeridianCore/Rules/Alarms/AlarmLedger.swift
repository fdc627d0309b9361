import Foundation

/// Why an alarm operation was refused; the API turns it into problem+json (``field`` names the
/// offending input).
public struct AlarmError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Code: String, Sendable, Hashable {
        /// Input that does not validate (HTTP 422).
        case invalid
        /// No such alarm in the caller's tenant (HTTP 404).
        case notFound
        /// The alarm is not in a state that allows it: acknowledging a cleared alarm (HTTP 409).
        case conflict
    }

    public var code: Code
    public var message: String
    public var field: String?

    public init(_ code: Code, _ message: String, field: String? = nil) {
        self.code = code
        self.message = message
        self.field = field
    }

    public var description: String { message }
}

/// What happened to an alarm: one entry of its history, and one event on the live stream.
public struct AlarmChange: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable, Codable {
        /// A new alarm opened.
        case raised
        /// An open alarm fired again (counted; severity possibly raised).
        case repeated
        case acknowledged
        case cleared
        case commented
    }

    public var kind: Kind
    /// The alarm after the change.
    public var alarm: Alarm
    public var at: Date
    public var by: AlarmActor
}

/// The open alarms of a fleet and the rules of their life, without storage: at most one open
/// alarm per (rule, device), repeated firings counted, the lifecycle
/// active → acknowledged → cleared with who and when.
///
/// Not thread-safe: its owner (the alarm service) serializes access. Cleared alarms leave the
/// ledger (they are history, kept by the store); ``open(ruleID:deviceID:)`` never returns one.
public struct AlarmLedger: Sendable {
    private struct Key: Hashable {
        var tenantID: String
        var ruleID: String
        var deviceID: String
    }

    private var byKey: [Key: Alarm] = [:]
    private var keyByID: [String: Key] = [:]
    private let makeID: @Sendable () -> String

    /// Longest comment accepted, in characters.
    public static let maximumCommentLength = 4_096

    public init(openAlarms: [Alarm] = [], makeID: @escaping @Sendable () -> String = { "alm_" + MeridianID.generate() }) {
        self.makeID = makeID
        for alarm in openAlarms where alarm.status.isOpen {
            let key = Key(tenantID: alarm.tenantID, ruleID: alarm.ruleID, deviceID: alarm.deviceID)
            byKey[key] = alarm
            keyByID[alarm.id] = key
        }
    }

    /// The open alarm of a rule on a device, if any.
    public func open(tenantID: String, ruleID: String, deviceID: String) -> Alarm? {
        byKey[Key(tenantID: tenantID, ruleID: ruleID, deviceID: deviceID)]
    }

    /// The open alarm with this id in the tenant, if any.
    public func open(id: String, tenantID: String) -> Alarm? {
        guard let key = keyByID[id], key.tenantID == tenantID else { return nil }
        return byKey[key]
    }

    /// Every open alarm (unordered).
    public var openAlarms: [Alarm] { Array(byKey.values) }

    /// A rule fired on a device: opens an alarm, or counts the firing on the open one (raising
    /// its severity if this firing's is higher; an acknowledged alarm stays acknowledged).
    public mutating func raise(
        tenantID: String,
        ruleID: String,
        ruleVersion: Int,
        deviceID: String,
        severity: AlarmSeverity,
        message: String,
        inputs: [String: JSONValue],
        at: Date
    ) -> AlarmChange {
        let key = Key(tenantID: tenantID, ruleID: ruleID, deviceID: deviceID)
        if var alarm = byKey[key] {
            alarm.count += 1
            alarm.lastRaisedAt = max(alarm.lastRaisedAt, at)
            alarm.lastInputs = inputs
            alarm.severity = max(alarm.severity, severity)
            byKey[key] = alarm
            return AlarmChange(kind: .repeated, alarm: alarm, at: at, by: .rule(ruleID))
        }
        let alarm = Alarm(
            id: makeID(),
            tenantID: tenantID,
            ruleID: ruleID,
            ruleVersion: ruleVersion,
            deviceID: deviceID,
            severity: severity,
            message: message,
            inputs: inputs,
            raisedAt: at
        )
        byKey[key] = alarm
        keyByID[alarm.id] = key
        return AlarmChange(kind: .raised, alarm: alarm, at: at, by: .rule(ruleID))
    }

    /// The rule's condition no longer holds: clears its open alarm on the device; nil when there
    /// is none (nothing to do).
    public mutating func clear(tenantID: String, ruleID: String, deviceID: String, at: Date) -> AlarmChange? {
        let key = Key(tenantID: tenantID, ruleID: ruleID, deviceID: deviceID)
        guard let alarm = byKey[key] else { return nil }
        return close(alarm, key: key, at: at, by: .rule(ruleID))
    }

    /// An operator acknowledges an open alarm. Acknowledging twice is refused (409), so two
    /// operators learn that someone already took it.
    public mutating func acknowledge(id: String, tenantID: String, by actor: AlarmActor, at: Date) throws(AlarmError) -> AlarmChange {
        let (key, alarm) = try lookup(id: id, tenantID: tenantID)
        guard alarm.status == .active else {
            throw AlarmError(.conflict, "alarm \(id) is already acknowledged", field: "status")
        }
        var updated = alarm
        updated.status = .acknowledged
        updated.acknowledgedAt = at
        updated.acknowledgedBy = actor
        byKey[key] = updated
        return AlarmChange(kind: .acknowledged, alarm: updated, at: at, by: actor)
    }

    /// An operator clears an open alarm by hand (the rule's condition may still hold; its next
    /// firing then opens a new alarm).
    public mutating func clear(id: String, tenantID: String, by actor: AlarmActor, at: Date) throws(AlarmError) -> AlarmChange {
        let (key, alarm) = try lookup(id: id, tenantID: tenantID)
        return close(alarm, key: key, at: at, by: actor)
    }

    /// A comment on an open alarm (comments on cleared alarms go through the store).
    public mutating func comment(id: String, tenantID: String, text: String, by actor: AlarmActor, at: Date) throws(AlarmError) -> AlarmChange {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty else { throw AlarmError(.invalid, "a comment needs text", field: "text") }
        guard trimmed.count <= Self.maximumCommentLength else {
            throw AlarmError(.invalid, "a comment is at most \(Self.maximumCommentLength) characters", field: "text")
        }
        var (key, alarm) = try lookup(id: id, tenantID: tenantID)
        alarm.comments.append(AlarmComment(at: at, by: actor, text: trimmed))
        byKey[key] = alarm
        return AlarmChange(kind: .commented, alarm: alarm, at: at, by: actor)
    }

    /// Forgets a device's open alarms (the device was deleted); returns them, cleared.
    public mutating func removeDevice(_ deviceID: String, tenantID: String, at: Date, by actor: AlarmActor) -> [AlarmChange] {
        let keys = byKey.keys.filter { $0.deviceID == deviceID && $0.tenantID == tenantID }
        return keys.compactMap { key in byKey[key].map { close($0, key: key, at: at, by: actor) } }
    }

    private func lookup(id: String, tenantID: String) throws(AlarmError) -> (Key, Alarm) {
        guard let key = keyByID[id], key.tenantID == tenantID, let alarm = byKey[key] else {
            throw AlarmError(.notFound, "no open alarm \(id)", field: "id")
        }
        return (key, alarm)
    }

    private mutating func close(_ alarm: Alarm, key: Key, at: Date, by actor: AlarmActor) -> AlarmChange {
        var cleared = alarm
        cleared.status = .cleared
        cleared.clearedAt = at
        cleared.clearedBy = actor
        byKey[key] = nil
        keyByID[alarm.id] = nil
        return AlarmChange(kind: .cleared, alarm: cleared, at: at, by: actor)
    }
}

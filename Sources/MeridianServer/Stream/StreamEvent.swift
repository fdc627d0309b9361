import MeridianCore

/// One event waiting in a live-stream connection's outbox: a device message (telemetry), a
/// twin change (its JSON encoded once, for every connection, when it happened), or a presence
/// event (a connect or disconnect).
enum StreamEvent: Sendable {
    case telemetry(DeviceMessage)
    case presence(PresenceEvent)
    /// `members`: the event's JSON members after `"subscription"` (from `"device"` on, with the
    /// closing brace), see ``StreamServerMessage/twin(subscription:members:)``.
    case twin(tenantID: String, deviceID: String, members: String)
    /// An alarm change, its JSON members encoded once like a twin change's.
    case alarm(tenantID: String, deviceID: String, members: String)

    var deviceID: String {
        switch self {
        case .telemetry(let message): message.deviceID
        case .twin(_, let deviceID, _), .alarm(_, let deviceID, _): deviceID
        case .presence(let event): event.deviceID
        }
    }

    /// What the event weighs against the outbox's sample limit: its samples, or for a twin
    /// change one per 64 bytes of JSON (so that large twins count for their memory); a presence
    /// event one.
    var weight: Int {
        switch self {
        case .telemetry(let message): message.samples.count
        case .twin(_, _, let members), .alarm(_, _, let members): 1 + members.utf8.count / 64
        case .presence: 1
        }
    }

    /// A twin change as a stream event.
    static func twin(_ change: TwinChange) -> StreamEvent {
        let current = change.current
        let members = JSONValue.object([
            "device": .string(change.key.deviceID),
            "name": .string(change.key.name),
            "operation": .string(change.operation.rawValue),
            "version": .number(Double(current.version)),
            "timestamp": .number(Double(current.timestamp)),
            "actor": .object(["kind": .string(change.actor.kind.rawValue), "id": .string(change.actor.id)]),
            "patch": change.operation == .delete
                ? .null
                : .object(
                    [("desired", change.desiredPatch), ("reported", change.reportedPatch)].reduce(
                        into: [String: JSONValue]()
                    ) { patch, section in
                        if let value = section.1 { patch[section.0] = value }
                    }
                ),
            "desired": .object(current.desired),
            "reported": .object(current.reported),
            "delta": .object(current.delta),
        ]).jsonText
        // Drop the opening brace: the message starts with its type and subscription.
        return .twin(tenantID: change.key.tenantID, deviceID: change.key.deviceID, members: String(members.dropFirst()))
    }

    /// An alarm change as a stream event: `{"type":"alarm","subscription":..,"device":..,
    /// "change":"raised"|"repeated"|"acknowledged"|"cleared"|"commented","at":..,"by":{..},"alarm":{..}}`.
    static func alarm(_ change: AlarmChange) -> StreamEvent {
        let members = JSONValue.object([
            "device": .string(change.alarm.deviceID),
            "change": .string(change.kind.rawValue),
            "at": .string(RuleTime.iso(change.at)),
            "by": .object(["kind": .string(change.by.kind.rawValue), "id": .string(change.by.id)]),
            "alarm": AlarmJSON.alarm(change.alarm),
        ]).jsonText
        return .alarm(tenantID: change.alarm.tenantID, deviceID: change.alarm.deviceID, members: String(members.dropFirst()))
    }
}

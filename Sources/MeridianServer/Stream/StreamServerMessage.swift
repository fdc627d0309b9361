import MeridianCore

/// A message the server sends on the live stream (a JSON text frame). Every message is an
/// object with a `type`; events (today `telemetry`; later twin changes, presence, alarms) also
/// carry the `subscription` they answer and the `device` they are about.
enum StreamServerMessage: Sendable, Equatable {
    /// The connection is authenticated: `{"type":"authenticated","tenant":..,"role":..,"expiresAt":<ms>|null}`.
    case authenticated(tenantID: String, role: Role, expiresAt: Int64?)
    /// `{"type":"subscribed","id":..,"topic":..}`
    case subscribed(id: String, topic: StreamSubscription.Topic)
    /// `{"type":"unsubscribed","id":..}`
    case unsubscribed(id: String)
    /// `{"type":"error","code":..,"id":..,"error":..,"field":..,"devices":[..]}` (`id`, `field`
    /// and `devices` only when known).
    case error(StreamClientMessageError)
    /// `{"type":"pong"}` (with the ping's `id`, if it had one).
    case pong(id: String?)
    /// `{"type":"dropped","count":n}`: n device messages were discarded because this client
    /// did not read fast enough; the events after it are newer.
    case dropped(count: Int)

    /// The message as JSON text.
    var text: String {
        var json = TelemetryJSON(capacity: 96)
        json.text.append("{\"type\":")
        switch self {
        case .authenticated(let tenantID, let role, let expiresAt):
            json.string("authenticated")
            json.text.append(",\"tenant\":")
            json.string(tenantID)
            json.text.append(",\"role\":")
            json.string(role.rawValue)
            json.text.append(",\"expiresAt\":")
            json.text.append(expiresAt.map(String.init) ?? "null")
        case .subscribed(let id, let topic):
            json.string("subscribed")
            json.text.append(",\"id\":")
            json.string(id)
            json.text.append(",\"topic\":")
            json.string(topic.rawValue)
        case .unsubscribed(let id):
            json.string("unsubscribed")
            json.text.append(",\"id\":")
            json.string(id)
        case .error(let error):
            json.string("error")
            json.text.append(",\"code\":")
            json.string(error.code)
            if let id = error.id {
                json.text.append(",\"id\":")
                json.string(id)
            }
            json.text.append(",\"error\":")
            json.string(error.message)
            if let field = error.field {
                json.text.append(",\"field\":")
                json.string(field)
            }
            if !error.devices.isEmpty {
                json.text.append(",\"devices\":[")
                for (index, device) in error.devices.enumerated() {
                    if index > 0 { json.text.append(",") }
                    json.string(device)
                }
                json.text.append("]")
            }
        case .pong(let id):
            json.string("pong")
            if let id {
                json.text.append(",\"id\":")
                json.string(id)
            }
        case .dropped(let count):
            json.string("dropped")
            json.text.append(",\"count\":")
            json.text.append(String(count))
        }
        json.text.append("}")
        return json.text
    }

    /// `{"type":"twin","subscription":..,"device":..,"name":..,"operation":"update"|"delete",
    /// "version":..,"timestamp":..,"actor":{"kind","id"},"patch":..,"desired":..,"reported":..,"delta":..}`
    /// from the event's members (``StreamEvent/twin(_:)``).
    static func twin(subscription: String, members: String) -> String {
        event(type: "twin", subscription: subscription, members: members)
    }

    /// `{"type":<type>,"subscription":..,` followed by `members` (encoded once per event).
    static func event(type: String, subscription: String, members: String) -> String {
        var json = TelemetryJSON(capacity: 48 + members.utf8.count)
        json.text.append("{\"type\":")
        json.string(type)
        json.text.append(",\"subscription\":")
        json.string(subscription)
        json.text.append(",")
        json.text.append(members)
        return json.text
    }

    /// `{"type":"telemetry","subscription":..,"device":..,"samples":{"<key>":[{"ts":..,"value":..}]}}`
    /// for the samples of `message` whose key is in `keys` (all when nil), in the order the
    /// device sent them; nil when none is.
    static func telemetry(subscription: String, message: DeviceMessage, keys: Set<String>?) -> String? {
        let samples = message.samples
        var series: [String: [TelemetryPoint]] = [:]
        var count = 0
        for sample in samples where keys?.contains(sample.key) ?? true {
            series[sample.key, default: []].append(TelemetryPoint(timestamp: sample.timestamp, value: sample.value))
            count += 1
        }
        guard count > 0 else { return nil }
        var json = TelemetryJSON(capacity: 96 + count * 40)
        json.text.append("{\"type\":\"telemetry\",\"subscription\":")
        json.string(subscription)
        json.text.append(",\"device\":")
        json.string(message.deviceID)
        json.text.append(",\"samples\":")
        json.series(series)
        json.text.append("}")
        return json.text
    }

    /// `{"type":"presence","subscription":..,"device":..,"event":"connected"|"disconnected","time":<ms>,
    /// "online":..,"address":..,"protocol":..,"transport":..,"reason":..,"reasonCode":..}`
    /// (`address`, `reason` and `reasonCode` only when known).
    static func presence(subscription: String, event: PresenceEvent) -> String {
        var json = TelemetryJSON(capacity: 256)
        json.text.append("{\"type\":\"presence\",\"subscription\":")
        json.string(subscription)
        json.text.append(",\"device\":")
        json.string(event.deviceID)
        json.text.append(",\"event\":")
        json.string(event.kind.rawValue)
        json.text.append(",\"time\":")
        json.text.append(String(PresenceEventBody.milliseconds(event.time)))
        json.text.append(",\"online\":")
        json.text.append(event.online ? "true" : "false")
        if let address = event.address {
            json.text.append(",\"address\":")
            json.string(address)
        }
        json.text.append(",\"protocol\":")
        json.string(event.protocolName)
        json.text.append(",\"transport\":")
        json.string(event.transport)
        if let reason = event.reason {
            json.text.append(",\"reason\":")
            json.string(reason.rawValue)
        }
        if let code = event.reasonCode {
            json.text.append(",\"reasonCode\":")
            json.text.append(String(code))
        }
        json.text.append("}")
        return json.text
    }
}

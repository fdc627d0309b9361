import Foundation
import MeridianCore

/// A message a live-stream client sends (a JSON text frame), parsed and checked.
///
/// Unknown fields are ignored, so that newer clients can talk to older servers; a missing or
/// malformed field is a ``StreamClientMessageError`` naming it.
enum StreamClientMessage: Sendable, Equatable {
    /// `{"type":"auth","token":"..."}`: the first message of a connection whose upgrade
    /// carried no token; later, a fresh access token for the same tenant (keeps a connection
    /// open past the old token's expiry).
    case auth(token: String)
    /// `{"type":"subscribe","id":"...","topic":"telemetry","devices":[...] | "*","keys":[...]}`
    case subscribe(StreamSubscription)
    /// `{"type":"unsubscribe","id":"..."}`
    case unsubscribe(id: String)
    /// `{"type":"ping"}` (an `id`, if any, comes back in the pong).
    case ping(id: String?)

    /// Longest subscription id, in UTF-8 bytes.
    static let maximumIDLength = 128
    /// Most devices one subscription may name.
    static let maximumDevices = 1000
    /// Most keys one subscription may name.
    static let maximumKeys = 1000
    /// Longest device id.
    static let maximumDeviceIDLength = 128
    /// The message types a client may send.
    static let types = ["auth", "subscribe", "unsubscribe", "ping"]

    /// Parses one text message.
    static func parse(_ text: String) -> Result<StreamClientMessage, StreamClientMessageError> {
        let value: JSONValue
        do {
            value = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
        } catch {
            return .failure(StreamClientMessageError(code: "invalid-json", "the message is not valid JSON"))
        }
        guard case .object(let object) = value else {
            return .failure(StreamClientMessageError(code: "invalid-message", "the message must be a JSON object"))
        }
        // The id first, so that every later error can name the request it answers.
        var id: String?
        if let raw = object["id"] {
            guard let string = raw.stringValue, !string.isEmpty, string.utf8.count <= maximumIDLength else {
                return .failure(
                    StreamClientMessageError(
                        code: "invalid-message",
                        "id must be a string of 1 to \(maximumIDLength) bytes",
                        field: "id"
                    )
                )
            }
            id = string
        }
        guard let type = object["type"]?.stringValue else {
            return .failure(
                StreamClientMessageError(
                    code: "invalid-message",
                    id: id,
                    "type is missing or not a string",
                    field: "type"
                )
            )
        }
        switch type {
        case "auth":
            guard let token = object["token"]?.stringValue, !token.isEmpty else {
                return .failure(
                    StreamClientMessageError(
                        code: "invalid-message",
                        id: id,
                        "token must be a non-empty string",
                        field: "token"
                    )
                )
            }
            return .success(.auth(token: token))
        case "ping":
            return .success(.ping(id: id))
        case "unsubscribe":
            guard let id else {
                return .failure(
                    StreamClientMessageError(
                        code: "invalid-message",
                        "unsubscribe needs the subscription's id",
                        field: "id"
                    )
                )
            }
            return .success(.unsubscribe(id: id))
        case "subscribe":
            guard let id else {
                return .failure(
                    StreamClientMessageError(
                        code: "invalid-message",
                        "subscribe needs an id of the client's choice",
                        field: "id"
                    )
                )
            }
            return subscription(id: id, object).map { .subscribe($0) }
        default:
            return .failure(
                StreamClientMessageError(
                    code: "unknown-type",
                    id: id,
                    "unknown message type \(quoted(type)): expected one of \(types.joined(separator: ", "))",
                    field: "type"
                )
            )
        }
    }

    private static func subscription(
        id: String,
        _ object: [String: JSONValue]
    ) -> Result<StreamSubscription, StreamClientMessageError> {
        func invalid(_ message: String, field: String) -> Result<StreamSubscription, StreamClientMessageError> {
            .failure(StreamClientMessageError(code: "invalid-message", id: id, message, field: field))
        }
        let topics = StreamSubscription.Topic.allCases.map(\.rawValue)
        guard let name = object["topic"]?.stringValue, let topic = StreamSubscription.Topic(rawValue: name) else {
            return invalid("topic must be one of: \(topics.joined(separator: ", "))", field: "topic")
        }
        let devices: StreamSubscription.Devices
        switch object["devices"] {
        case .string("*")?:
            devices = .all
        case .array(let values)?:
            var ids: [String] = []
            var seen = Set<String>()
            for value in values {
                guard let device = value.stringValue, !device.isEmpty, device.utf8.count <= maximumDeviceIDLength else {
                    return invalid("devices must hold device ids (non-empty strings)", field: "devices")
                }
                if seen.insert(device).inserted { ids.append(device) }
            }
            guard !ids.isEmpty else {
                return invalid("devices must name at least one device, or be \"*\"", field: "devices")
            }
            guard ids.count <= maximumDevices else {
                return invalid(
                    "at most \(maximumDevices) devices per subscription (or \"*\" for all)",
                    field: "devices"
                )
            }
            devices = .some(ids)
        default:
            return invalid(
                "devices must be an array of device ids, or \"*\" for every device of the tenant",
                field: "devices"
            )
        }
        var keys: Set<String>?
        if topic != .telemetry, let given = object["keys"], given != .null {
            return invalid("keys apply to telemetry subscriptions only", field: "keys")
        }
        switch object["keys"] {
        case nil, .null?:
            keys = nil
        case .array(let values)?:
            var set = Set<String>()
            for value in values {
                guard let key = value.stringValue, !key.isEmpty, key.utf8.count <= TelemetryLimits.maximumKeyLength
                else {
                    return invalid(
                        "keys must hold telemetry keys (strings of 1 to \(TelemetryLimits.maximumKeyLength) bytes)",
                        field: "keys"
                    )
                }
                set.insert(key)
            }
            guard !set.isEmpty else {
                return invalid("keys must name at least one key, or be left out for all", field: "keys")
            }
            guard set.count <= maximumKeys else {
                return invalid("at most \(maximumKeys) keys per subscription", field: "keys")
            }
            keys = set
        default:
            return invalid("keys must be an array of telemetry keys", field: "keys")
        }
        return .success(StreamSubscription(id: id, topic: topic, devices: devices, keys: keys))
    }

    private static func quoted(_ text: String) -> String {
        "\"" + String(text.prefix(64)) + "\""
    }
}

/// Why a client's message was refused: sent back as `{"type":"error",...}`.
struct StreamClientMessageError: Error, Sendable, Equatable {
    /// Stable, machine-readable: `invalid-json`, `invalid-message`, `unknown-type`,
    /// `unknown-devices`, `unknown-subscription`, `limit`, `tenant-mismatch`, `unavailable`.
    var code: String
    /// The id of the request it answers, when the message had one.
    var id: String?
    var message: String
    /// The offending field.
    var field: String?
    /// For `unknown-devices`: the devices that are not the caller's tenant's.
    var devices: [String] = []

    init(code: String, id: String? = nil, _ message: String, field: String? = nil, devices: [String] = []) {
        self.code = code
        self.id = id
        self.message = message
        self.field = field
        self.devices = devices
    }
}

/// One subscription of a live-stream connection.
struct StreamSubscription: Sendable, Equatable {
    /// What a subscription follows. Telemetry today; twin changes, presence and alarms later,
    /// over the same connection and message format.
    enum Topic: String, Sendable, CaseIterable {
        case telemetry
        /// Devices' connects and disconnects.
        case presence
        /// Twin changes (every version of a device's twins, whoever made it).
        case twin
        /// Alarm changes (raised, repeated, acknowledged, cleared, commented) of the devices.
        case alarm
    }

    /// The devices it follows.
    enum Devices: Sendable, Equatable {
        /// Every device of the caller's tenant, also those created later.
        case all
        /// These devices (checked to be the tenant's when subscribing).
        case some([String])
    }

    /// Chosen by the client; names the subscription in every message it gets.
    var id: String
    var topic: Topic
    var devices: Devices
    /// Only these telemetry keys; nil: every key.
    var keys: Set<String>?
}

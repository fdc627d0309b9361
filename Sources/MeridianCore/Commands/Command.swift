import Foundation

/// Where a command is in its life.
///
/// ```
/// queued ─► sent ─► delivered ─► succeeded | failed | timed_out
///   │        └──────────┴──────► (two-way: the device's answer may come before `delivered`)
///   └─► expired (never sent before its expiry)
/// ```
/// `queued`: waiting for the device (persistent commands to an offline device). `sent`: published
/// to the device's connection. `delivered`: the device's MQTT client acknowledged it (QoS 1
/// PUBACK). `succeeded`/`failed`: the device answered (one-way commands succeed when delivered).
/// `expired`: still queued at its expiry. `timed_out`: sent, but no answer within the timeout.
public enum CommandState: String, Sendable, Hashable, Codable, CaseIterable {
    case queued
    case sent
    case delivered
    case succeeded
    case failed
    case expired
    case timedOut = "timed_out"

    /// Whether the command is finished: nothing changes it any more.
    public var isFinal: Bool {
        switch self {
        case .queued, .sent, .delivered: false
        case .succeeded, .failed, .expired, .timedOut: true
        }
    }

    /// The states a command waiting for its device's answer can be in.
    public static let awaitingAnswer: Set<CommandState> = [.sent, .delivered]
    /// The states that are not final.
    public static let open: Set<CommandState> = [.queued, .sent, .delivered]
}

/// The MQTT convention a command is delivered by (learned from what the device subscribes to).
public enum CommandConvention: String, Sendable, Hashable, Codable, CaseIterable {
    /// MQTT 5 request/response: `devices/{id}/commands/{method}` with Response Topic
    /// `devices/{id}/commands/response/{commandId}` and Correlation Data.
    case mqtt5
    /// MQTT 3.1.1: `devices/{id}/commands/request/{commandId}` with `{"method","params"}`, answered
    /// on `devices/{id}/commands/response/{commandId}`.
    case mqtt311 = "mqtt3"
    /// ThingsBoard server-side RPC: `v1/devices/me/rpc/request/{requestId}` with
    /// `{"method","params"}`, answered on `v1/devices/me/rpc/response/{requestId}`; the request
    /// id is a number, as ThingsBoard's own (``Command/thingsBoardRequestID``).
    case thingsBoard = "thingsboard"
}

/// A command (RPC) to one device: what to call, how to deliver it, and what came of it.
public struct Command: Sendable, Hashable, Codable {
    /// The request id a command carries on ThingsBoard's RPC topics: a positive 31-bit number
    /// derived from the command id (FNV-1a), because ThingsBoard's device SDKs parse the request
    /// id as an integer. Answers name it; ``CommandService/awaitingCommand(thingsBoardRequestID:tenantID:deviceID:)``
    /// finds the command again, also after a restart.
    public static func thingsBoardRequestID(_ commandID: String) -> Int {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in commandID.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        return Int(hash % 2_147_483_647) + 1
    }

    /// Random id (20 lower-case letters and digits); also the request id on the wire.
    public var id: String
    public var tenantID: String
    public var deviceID: String
    /// What the device should do (`reboot`, `setInterval`): 1–128 characters, no `/`, `+`, `#`.
    public var method: String
    /// Any JSON (an object usually).
    public var params: JSONValue
    /// One-way: nothing is expected back; it succeeds once delivered.
    public var oneWay: Bool
    /// Persistent: queued while the device is offline and delivered when it subscribes.
    public var persistent: Bool
    /// How long to wait for the answer once sent, in milliseconds.
    public var timeoutMs: Int
    /// A queued command not sent by then expires (nil: only persistent commands have one).
    public var expiresAt: Date?
    /// Who sent it (`api-key:…`, `user:…`).
    public var actor: String
    public var state: CommandState
    /// When it was created (and queued).
    public var createdAt: Date
    public var sentAt: Date?
    public var deliveredAt: Date?
    /// When it reached its final state.
    public var completedAt: Date?
    /// The convention it was sent with.
    public var convention: CommandConvention?
    /// The device's answer (succeeded).
    public var response: JSONValue?
    /// Why it failed, expired or timed out.
    public var error: String?

    public init(
        id: String, tenantID: String, deviceID: String, method: String, params: JSONValue, oneWay: Bool, persistent: Bool,
        timeoutMs: Int, expiresAt: Date?, actor: String, state: CommandState = .queued, createdAt: Date,
        sentAt: Date? = nil, deliveredAt: Date? = nil, completedAt: Date? = nil, convention: CommandConvention? = nil,
        response: JSONValue? = nil, error: String? = nil
    ) {
        self.id = id
        self.tenantID = tenantID
        self.deviceID = deviceID
        self.method = method
        self.params = params
        self.oneWay = oneWay
        self.persistent = persistent
        self.timeoutMs = timeoutMs
        self.expiresAt = expiresAt
        self.actor = actor
        self.state = state
        self.createdAt = createdAt
        self.sentAt = sentAt
        self.deliveredAt = deliveredAt
        self.completedAt = completedAt
        self.convention = convention
        self.response = response
        self.error = error
    }

    /// When a sent two-way command times out (nil before it is sent, or for one-way commands).
    public var answerDeadline: Date? {
        guard !oneWay, let sentAt else { return nil }
        return sentAt.addingTimeInterval(Double(timeoutMs) / 1000)
    }

    /// When the command must change state by itself if nothing else happens: a queued command's
    /// expiry, a sent two-way command's answer deadline (nil otherwise). The stores index it for
    /// the sweep.
    public var dueAt: Date? {
        switch state {
        case .queued: expiresAt
        case .sent, .delivered: answerDeadline
        default: nil
        }
    }

    /// The time of each state the command went through, by state name (`queued`, `sent`, ...).
    public var timestamps: [CommandState: Date] {
        var result: [CommandState: Date] = [.queued: createdAt]
        if let sentAt { result[.sent] = sentAt }
        if let deliveredAt { result[.delivered] = deliveredAt }
        if state.isFinal, let completedAt { result[state] = completedAt }
        return result
    }
}

/// What an operator asks for.
public struct CommandRequest: Sendable, Hashable {
    public var method: String
    public var params: JSONValue
    public var oneWay: Bool
    public var persistent: Bool
    /// nil: `commands.default_timeout_ms`.
    public var timeoutMs: Int?
    /// How long a persistent command may wait for its device (nil: `commands.max_expiry`).
    public var expiresInMs: Int?

    public init(
        method: String, params: JSONValue = .emptyObject, oneWay: Bool = false, persistent: Bool = false,
        timeoutMs: Int? = nil, expiresInMs: Int? = nil
    ) {
        self.method = method
        self.params = params
        self.oneWay = oneWay
        self.persistent = persistent
        self.timeoutMs = timeoutMs
        self.expiresInMs = expiresInMs
    }
}

/// One page of a device's commands, newest first.
public struct CommandPage: Sendable, Hashable {
    public var items: [Command]
    /// Pass as `before` for the next (older) page; nil on the last page.
    public var nextCursor: String?

    public init(items: [Command], nextCursor: String?) {
        self.items = items
        self.nextCursor = nextCursor
    }
}

/// A device's answer to a command.
public enum CommandOutcome: Sendable, Hashable {
    case success(JSONValue)
    case failure(String)

    /// The outcome a response payload stands for: `{"error": "..."}` (an object with only that
    /// key, a string) is a failure; any other JSON is the response; text that is not JSON is a
    /// string response. Nil for bytes that are not UTF-8.
    public static func parse(_ bytes: some Collection<UInt8>) -> CommandOutcome? {
        let data = Data(bytes)
        if data.isEmpty { return .success(.null) }
        if let value = try? JSONDecoder().decode(JSONValue.self, from: data) {
            if case .object(let object) = value, object.count == 1, case .string(let message)? = object["error"] {
                return .failure(message)
            }
            return .success(value)
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { return nil }
        return .success(.string(text))
    }
}

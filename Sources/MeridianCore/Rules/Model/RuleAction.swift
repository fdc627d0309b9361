import Foundation

/// Something a rule does when it raises or clears, beyond its alarm. Each action runs from its
/// own bounded queue, never on the ingest path; its outcome is recorded with the firing.
public struct RuleAction: Sendable, Hashable {
    /// When the action runs.
    public enum Trigger: String, Sendable, Hashable, CaseIterable {
        case raise
        case clear
        case both

        /// Whether the action runs for this transition.
        public func matches(raise isRaise: Bool) -> Bool {
            switch self {
            case .raise: isRaise
            case .clear: !isRaise
            case .both: true
            }
        }
    }

    /// What the action does.
    public enum Kind: Sendable, Hashable {
        case webhook(WebhookAction)
        case republish(RepublishAction)
        case command(CommandAction)
        case twin(TwinAction)
        case telemetry(DerivedTelemetryAction)

        /// `webhook`, `republish`, `command`, `twin`, `telemetry`.
        public var name: String {
            switch self {
            case .webhook: "webhook"
            case .republish: "republish"
            case .command: "command"
            case .twin: "twin"
            case .telemetry: "telemetry"
            }
        }
    }

    public var when: Trigger
    public var kind: Kind

    public init(when: Trigger = .raise, _ kind: Kind) {
        self.when = when
        self.kind = kind
    }

    /// An HTTP POST of a JSON body built from a template, signed with HMAC-SHA256 when a secret
    /// is set, retried with exponential backoff, dead-lettered after the last attempt.
    public struct WebhookAction: Sendable, Hashable {
        public var url: String
        public var secret: String?
        /// The body template (nil: the default firing document).
        public var body: JSONValue?
        public var timeout: ConditionDuration
        /// Attempts after the first (0–19).
        public var retries: Int
        /// Set when the spec said `"secretSet": true` without a secret (a rule read back from the
        /// API, which never shows secrets): the service keeps the previous version's secret.
        public var keepsSecret = false

        public init(url: String, secret: String? = nil, body: JSONValue? = nil, timeout: ConditionDuration = .seconds(5), retries: Int = 5) {
            self.url = url
            self.secret = secret
            self.body = body
            self.timeout = timeout
            self.retries = retries
        }
    }

    /// A message published by the broker to a topic (template), e.g. for other systems
    /// subscribed to `alerts/#`.
    public struct RepublishAction: Sendable, Hashable {
        public var topic: String
        public var payload: JSONValue?
        public var qos: Int
        public var retain: Bool

        public init(topic: String, payload: JSONValue? = nil, qos: Int = 1, retain: Bool = false) {
            self.topic = topic
            self.payload = payload
            self.qos = qos
            self.retain = retain
        }
    }

    /// A command sent to the device the rule fired on (one-way, queued if it is offline).
    public struct CommandAction: Sendable, Hashable {
        public var method: String
        public var params: JSONValue?

        public init(method: String, params: JSONValue? = nil) {
            self.method = method
            self.params = params
        }
    }

    /// A JSON merge patch of the desired state of the device's twin.
    public struct TwinAction: Sendable, Hashable {
        public var desired: JSONValue

        public init(desired: JSONValue) {
            self.desired = desired
        }
    }

    /// A telemetry value written for the device, as if it had sent it (`overheat = 1`).
    public struct DerivedTelemetryAction: Sendable, Hashable {
        public var key: String
        public var value: JSONValue

        public init(key: String, value: JSONValue) {
            self.key = key
            self.value = value
        }
    }
}

extension RuleAction {
    static let types = ["webhook", "republish", "command", "twin", "telemetry"]

    /// Reads an action, naming the offending field from `path` (`actions[1].url`).
    public init(json: JSONValue, path: String) throws(ConditionSpecError) {
        let reader = try ConditionSpecReader(json, path: path)
        let type = try reader.requiredString("type")
        let common: Set<String> = ["type", "when"]
        if let when = try reader.string("when") {
            guard let trigger = Trigger(rawValue: when) else {
                throw ConditionSpecError(field: reader.field("when"), message: "must be raise, clear or both")
            }
            self.when = trigger
        } else {
            self.when = .raise
        }
        switch type {
        case "webhook":
            try reader.refuseUnknown(allowed: common.union(["url", "secret", "secretSet", "body", "timeout", "retries"]))
            let url = try reader.requiredString("url")
            do {
                try WebhookRequest.validateURL(url)
            } catch let error as WebhookError {
                throw ConditionSpecError(field: reader.field("url"), message: error.message)
            } catch {
                throw ConditionSpecError(field: reader.field("url"), message: "must be an http:// or https:// URL with a host")
            }
            let secret = try reader.string("secret")
            if let secret, secret.isEmpty || secret.utf8.count > WebhookRequest.maximumSecretBytes {
                throw ConditionSpecError(field: reader.field("secret"), message: "must be 1 to \(WebhookRequest.maximumSecretBytes) bytes")
            }
            let timeout = try reader.duration("timeout") ?? .seconds(5)
            guard timeout >= .milliseconds(100), timeout <= .seconds(60) else {
                throw ConditionSpecError(field: reader.field("timeout"), message: "must be from 100ms to 60s")
            }
            var action = WebhookAction(
                url: url, secret: secret, body: reader.object["body"].flatMap { $0 == .null ? nil : $0 }, timeout: timeout,
                retries: try reader.integer("retries", in: 0...(WebhookRequest.attemptsRange.upperBound - 1)) ?? 5
            )
            action.keepsSecret = secret == nil && reader.object["secretSet"] == .bool(true)
            kind = .webhook(action)
        case "republish":
            try reader.refuseUnknown(allowed: common.union(["topic", "payload", "qos", "retain"]))
            let topic = try reader.requiredString("topic")
            guard !topic.isEmpty, topic.utf8.count <= 1024, !topic.contains("+"), !topic.contains("#"), !topic.hasPrefix("$") else {
                throw ConditionSpecError(field: reader.field("topic"), message: "must be a topic name (1 to 1024 bytes, no wildcards, not $...)")
            }
            var retain = false
            if let value = reader.object["retain"], value != .null {
                guard case .bool(let flag) = value else { throw ConditionSpecError(field: reader.field("retain"), message: "must be true or false") }
                retain = flag
            }
            kind = .republish(
                RepublishAction(
                    topic: topic, payload: reader.object["payload"].flatMap { $0 == .null ? nil : $0 },
                    qos: try reader.integer("qos", in: 0...1) ?? 1, retain: retain
                )
            )
        case "command":
            try reader.refuseUnknown(allowed: common.union(["method", "params"]))
            let method = try reader.requiredString("method")
            guard CommandService.isValidMethod(method) else {
                throw ConditionSpecError(field: reader.field("method"), message: "must be 1 to 128 characters without / + # $ or control characters")
            }
            kind = .command(CommandAction(method: method, params: reader.object["params"].flatMap { $0 == .null ? nil : $0 }))
        case "twin":
            try reader.refuseUnknown(allowed: common.union(["desired"]))
            guard case .object? = reader.object["desired"] else {
                throw ConditionSpecError(field: reader.field("desired"), message: "must be a JSON object (a merge patch of the desired state)")
            }
            kind = .twin(TwinAction(desired: reader.object["desired"] ?? .emptyObject))
        case "telemetry":
            try reader.refuseUnknown(allowed: common.union(["key", "value"]))
            let key = try reader.key()
            guard let value = reader.object["value"], value != .null else {
                throw ConditionSpecError(field: reader.field("value"), message: "is required (a number, true/false, or a string template)")
            }
            switch value {
            case .number, .bool, .string: break
            default: throw ConditionSpecError(field: reader.field("value"), message: "must be a number, true/false, or a string template")
            }
            kind = .telemetry(DerivedTelemetryAction(key: key, value: value))
        default:
            throw ConditionSpecError(field: reader.field("type"), message: "must be one of \(Self.types.joined(separator: ", "))")
        }
    }

    /// The action's JSON form; `secret` is written only when `includeSecrets` (the store), and
    /// otherwise replaced by `"secretSet": true` (the API).
    public func json(includeSecrets: Bool) -> JSONValue {
        var object: [String: JSONValue] = ["type": .string(kind.name), "when": .string(when.rawValue)]
        switch kind {
        case .webhook(let action):
            object["url"] = .string(action.url)
            if let secret = action.secret {
                if includeSecrets { object["secret"] = .string(secret) } else { object["secretSet"] = .bool(true) }
            }
            if let body = action.body { object["body"] = body }
            object["timeout"] = .string(action.timeout.description)
            object["retries"] = .number(Double(action.retries))
        case .republish(let action):
            object["topic"] = .string(action.topic)
            if let payload = action.payload { object["payload"] = payload }
            object["qos"] = .number(Double(action.qos))
            if action.retain { object["retain"] = .bool(true) }
        case .command(let action):
            object["method"] = .string(action.method)
            if let params = action.params { object["params"] = params }
        case .twin(let action):
            object["desired"] = action.desired
        case .telemetry(let action):
            object["key"] = .string(action.key)
            object["value"] = action.value
        }
        return .object(object)
    }
}

extension ConditionDuration {
    /// A duration of `count` milliseconds.
    public static func milliseconds(_ count: Int64) -> ConditionDuration { .init(milliseconds: count) }
}

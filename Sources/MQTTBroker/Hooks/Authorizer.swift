import MQTTCore

/// What a client wants to do with a topic.
public enum MQTTAction: String, Sendable, Hashable {
    /// Publish to a topic name (including its will topic, checked at CONNECT).
    case publish
    /// Subscribe to a topic filter.
    case subscribe
}

/// The authorizer's answer for one action on one topic.
public enum MQTTAuthorization: Sendable, Hashable {
    case allow
    /// Refuse; MQTT 5 clients receive ``ReasonCode/notAuthorized`` in PUBACK/PUBREC/SUBACK.
    case deny
}

/// Decides what a principal may publish and subscribe to.
///
/// Called on the connection's event loop for every PUBLISH and every subscription, so it must be
/// fast and must not block: answer from memory.
public protocol MQTTAuthorizer: Sendable {
    /// Decides one action. `topic` is a topic name for publishes and a topic filter (without a
    /// `$share/{group}/` prefix) for subscriptions, in its internal form (after the principal's
    /// ``MQTTTopicMapping``).
    func authorize(_ principal: MQTTPrincipal, _ action: MQTTAction, topic: String) -> MQTTAuthorization

    /// `true` when every action is allowed, so the broker may skip the call per message.
    var allowsEverything: Bool { get }

    /// `true` when principals without a topic mapping (``MQTTPrincipal/topicMapping`` nil) may
    /// publish to every topic that does not start with `$`: the broker then skips the call for
    /// those publishes (one branch instead of a call per message). Default `false`.
    var allowsUnmappedPrincipalsOutsideDollarTopics: Bool { get }
}

extension MQTTAuthorizer {
    public var allowsEverything: Bool { false }
    public var allowsUnmappedPrincipalsOutsideDollarTopics: Bool { false }
}

/// Allows every action on every topic except publishing to `$`-topics, which belong to the
/// broker. The default until the registry provides access rules.
public struct AllowAllAuthorizer: MQTTAuthorizer {
    public init() {}

    public func authorize(_ principal: MQTTPrincipal, _ action: MQTTAction, topic: String) -> MQTTAuthorization {
        .allow
    }

    public var allowsEverything: Bool { true }
}

import Logging
import MQTTBroker

/// Decides publishes and subscriptions from the principal alone (no I/O), on internal topic
/// names (after the principal's topic mapping):
///
/// - a device: only its own subtree `$tenants/{tenant}/devices/{device}/...`;
/// - a user or API key: subscribe to its tenant's `$tenants/{tenant}/devices/...`; publish
///   there too with role operator or above;
/// - a provisioning client: publish its own request topic, subscribe its own response topic;
/// - an anonymous client (`auth.allow_anonymous`): anything but the tenants' and provisioning
///   topics.
///
/// Anything else (`#`, `+/...`, `$SYS/#`, another device, another tenant) is denied, with a log
/// line naming the principal, the topic and the action.
struct RegistryAuthorizer: MQTTAuthorizer {
    let logger: Logger

    /// Only anonymous clients come without a topic mapping (every registry principal carries
    /// one), and they may use every topic outside the platform's `$tenants/` and `$provision/`.
    var allowsUnmappedPrincipalsOutsideDollarTopics: Bool { true }

    func authorize(_ principal: MQTTPrincipal, _ action: MQTTAction, topic: String) -> MQTTAuthorization {
        let decision = decide(principal, action, topic: topic)
        if decision == .deny { logDenial(principal, action, topic: topic) }
        return decision
    }

    func decide(_ principal: MQTTPrincipal, _ action: MQTTAction, topic: String) -> MQTTAuthorization {
        let attributes = principal.attributes
        guard let kind = attributes[AccessPrincipal.kindKey] else { return .deny }
        if kind == AccessPrincipal.Kind.anonymous.rawValue {
            return Self.isPlatformTopic(topic) ? .deny : .allow
        }
        let key = action == .publish ? AccessPrincipal.publishKey : AccessPrincipal.subscribeKey
        guard let subtree = attributes[key] else { return .deny }
        return Self.isWithin(topic, subtree) ? .allow : .deny
    }

    /// Whether `topic` (a name, or a filter whose wildcards come after the subtree) is the
    /// subtree itself or below it. A wildcard level before the end of the subtree never passes:
    /// the comparison is literal.
    static func isWithin(_ topic: String, _ subtree: String) -> Bool {
        let topicBytes = topic.utf8
        let subtreeBytes = subtree.utf8
        guard topicBytes.starts(with: subtreeBytes) else { return false }
        if topicBytes.count == subtreeBytes.count { return true }
        return topicBytes[topicBytes.index(topicBytes.startIndex, offsetBy: subtreeBytes.count)] == UInt8(ascii: "/")
    }

    /// Topics of tenants and of provisioning, never open to anonymous clients.
    static func isPlatformTopic(_ topic: String) -> Bool {
        isWithin(topic, "$tenants") || isWithin(topic, "$provision")
    }

    private func logDenial(_ principal: MQTTPrincipal, _ action: MQTTAction, topic: String) {
        var metadata: Logger.Metadata = [
            "mqtt.client_id": "\(principal.clientIdentifier)",
            "mqtt.topic": "\(topic)",
            "mqtt.action": "\(action.rawValue)",
            "access.kind": "\(principal.attributes[AccessPrincipal.kindKey] ?? "-")",
        ]
        for key in [AccessPrincipal.tenantKey, AccessPrincipal.deviceKey, AccessPrincipal.apiKeyKey, AccessPrincipal.userKey] {
            if let value = principal.attributes[key] { metadata[key] = "\(value)" }
        }
        logger.info("MQTT access denied", metadata: metadata)
    }
}

/// One prefix rewrite between the topic names a client uses and the names the broker routes on:
/// `external` (leading topic levels as the client writes them, e.g. `v1/devices/me`) stands for
/// `internal` (e.g. `$tenants/t1/devices/d1`). A topic or filter is rewritten when it equals
/// `external` or continues it with `/`; the rest (wildcards included) is kept as it is.
public struct MQTTTopicRewrite: Sendable, Hashable, CustomStringConvertible {
    /// Leading levels as the client sees them, without a trailing `/`.
    public var external: String
    /// What they stand for inside the broker, without a trailing `/`.
    public var `internal`: String

    public init(external: String, internal: String) {
        self.external = external
        self.internal = `internal`
    }

    /// `topic` with `from` replaced by `to`, or `nil` when `topic` does not start with the
    /// whole levels of `from`.
    @inline(__always)
    private static func replace(_ topic: String, prefix from: String, with to: String) -> String? {
        let topicBytes = topic.utf8
        let prefixBytes = from.utf8
        guard topicBytes.count >= prefixBytes.count, topicBytes.starts(with: prefixBytes) else { return nil }
        if topicBytes.count == prefixBytes.count { return to }
        let boundary = topicBytes.index(topicBytes.startIndex, offsetBy: prefixBytes.count)
        guard topicBytes[boundary] == UInt8(ascii: "/") else { return nil }
        return to + topic[boundary...]
    }

    /// The internal form of a topic name or filter the client wrote, or `nil` if this rewrite
    /// does not apply to it.
    public func toInternal(_ topic: String) -> String? {
        Self.replace(topic, prefix: external, with: `internal`)
    }

    /// The form the client sees of an internal topic name, or `nil` if this rewrite does not
    /// apply to it.
    public func toExternal(_ topic: String) -> String? {
        Self.replace(topic, prefix: `internal`, with: external)
    }

    public var description: String { "\(external) ⇄ \(`internal`)" }
}

/// How one connection's topic names map to the broker's: a list of ``MQTTTopicRewrite``s,
/// tried in order. The ``MQTTAuthenticator`` sets it on the ``MQTTPrincipal``; the broker then
/// rewrites, for that connection only, PUBLISH topic names in (after topic alias resolution),
/// SUBSCRIBE/UNSUBSCRIBE filters (the filter inside `$share/{group}/` too) and the will topic,
/// and the topic names of the messages it sends back, according to the subscription each
/// message matched. Topics no rewrite applies to pass unchanged (the ``MQTTAuthorizer`` then
/// decides about them). The authorizer and the ``MQTTMessageTap`` see internal names.
///
/// Principals without a mapping pay nothing for the feature.
public struct MQTTTopicMapping: Sendable, Hashable {
    /// The rewrites, tried in order; the first that applies wins.
    public var rewrites: [MQTTTopicRewrite]

    public init(_ rewrites: [MQTTTopicRewrite]) {
        self.rewrites = rewrites
    }

    /// The internal form of a topic name or filter and the rewrite used (`nil` when none
    /// applied and the topic is unchanged).
    public func toInternal(_ topic: String) -> (topic: String, rewrite: MQTTTopicRewrite?) {
        for rewrite in rewrites {
            if let mapped = rewrite.toInternal(topic) { return (mapped, rewrite) }
        }
        return (topic, nil)
    }

    /// The form the client sees of an internal topic name when no subscription says otherwise:
    /// the first rewrite that applies, or the name unchanged.
    public func toExternal(_ topic: String) -> String {
        for rewrite in rewrites {
            if let mapped = rewrite.toExternal(topic) { return mapped }
        }
        return topic
    }
}

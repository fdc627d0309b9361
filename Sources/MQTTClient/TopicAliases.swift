import MQTTCore

/// Topic aliases of one connection (MQTT 5 §3.3.2.3.4), in both directions.
struct TopicAliases: Sendable {
    /// Aliases the server allows us to use (its CONNACK topic alias maximum).
    var outboundMaximum: UInt16 = 0
    /// Aliases we allow the server to use (our CONNECT topic alias maximum).
    var inboundMaximum: UInt16 = 0
    private(set) var outbound: [String: UInt16] = [:]
    private(set) var inbound: [UInt16: String] = [:]

    /// The alias an outbound publish to `topic` would use: an existing one (send only the
    /// alias), a new one (send topic and alias, then ``commitOutbound(topic:alias:)``), or `nil`
    /// when aliases are not allowed or all are taken.
    func outboundAlias(for topic: String) -> (alias: UInt16, isNew: Bool)? {
        guard outboundMaximum > 0, !topic.isEmpty else { return nil }
        if let alias = outbound[topic] { return (alias, false) }
        guard outbound.count < Int(outboundMaximum) else { return nil }
        return (UInt16(outbound.count + 1), true)
    }

    /// Records that `alias` now stands for `topic` on this connection.
    mutating func commitOutbound(topic: String, alias: UInt16) {
        outbound[topic] = alias
    }

    /// Resolves an inbound publish's alias to its topic; `nil` when the alias is invalid.
    mutating func resolveInbound(_ packet: inout PublishPacket) -> Bool {
        guard let alias = packet.properties.topicAlias else { return !packet.topic.isEmpty }
        guard alias >= 1, alias <= inboundMaximum else { return false }
        if packet.topic.isEmpty {
            guard let topic = inbound[alias] else { return false }
            packet.topic = topic
        } else {
            inbound[alias] = packet.topic
        }
        return true
    }

    /// Forgets every alias (a new connection starts without any).
    mutating func reset(outboundMaximum: UInt16, inboundMaximum: UInt16) {
        self.outboundMaximum = outboundMaximum
        self.inboundMaximum = inboundMaximum
        outbound.removeAll()
        inbound.removeAll()
    }
}

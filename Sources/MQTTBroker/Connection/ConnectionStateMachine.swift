import MQTTCore
import NIOCore

/// The protocol rules of one client connection, independent of I/O: which packet may come
/// when, topic alias resolution, the features the broker announced, and keep-alive.
///
/// Packets and time go in; actions come out. The channel handler carries the actions out,
/// which keeps this testable with plain values and a virtual clock.
struct ConnectionStateMachine {
    enum Phase: Equatable {
        case awaitingConnect
        case authenticating
        case connected
        case closed
    }

    /// What the handler must do with a packet.
    enum Action {
        case connect(ConnectPacket)
        /// A PUBLISH with its topic alias resolved.
        case publish(PublishPacket, topic: String)
        case puback(PublishAckPacket)
        case pubrec(PublishAckPacket)
        case pubrel(PublishAckPacket)
        case pubcomp(PublishAckPacket)
        case subscribe(SubscribePacket)
        case unsubscribe(UnsubscribePacket)
        case pingreq
        case disconnect(DisconnectPacket)
        /// Close the connection: MQTT 5 peers get DISCONNECT (or CONNACK before connecting)
        /// with this reason code first.
        case close(ReasonCode, reason: String)
        /// Packet arrived after the connection started closing; ignore it.
        case ignore
    }

    /// Limits and features announced to the client in CONNACK.
    struct Announced {
        var topicAliasMaximum: UInt16
        var maximumQoS: QoS
        var retainAvailable: Bool
        var subscriptionIdentifiersAvailable: Bool
    }

    private(set) var phase: Phase = .awaitingConnect
    private(set) var version: MQTTProtocolVersion = .v3_1_1
    private var announced: Announced
    private var inboundAliases: [UInt16: String] = [:]
    /// Keep-alive in effect (seconds); 0 = none.
    private(set) var keepAlive: UInt16 = 0
    private(set) var lastActivity: NIODeadline
    /// Session expiry granted at CONNECT; MQTT 5 forbids raising it from 0 at DISCONNECT.
    private(set) var sessionExpiryInterval: UInt32 = 0

    init(announced: Announced, now: NIODeadline) {
        self.announced = announced
        self.lastActivity = now
    }

    /// Bytes arrived: the client is alive.
    mutating func touch(_ now: NIODeadline) {
        lastActivity = now
    }

    /// Whether the keep-alive has lapsed: nothing received for 1.5 × keep-alive. (At exactly
    /// the deadline it has: a check re-armed for that deadline must not find it still open.)
    func keepAliveExpired(now: NIODeadline) -> Bool {
        guard phase == .connected, keepAlive > 0 else { return false }
        return now - lastActivity >= .milliseconds(Int64(keepAlive) * 1500)
    }

    /// Whether packets may be processed now (not while authentication is in progress).
    var acceptsPackets: Bool { phase == .awaitingConnect || phase == .connected }

    mutating func connectAccepted(version: MQTTProtocolVersion, keepAlive: UInt16, sessionExpiryInterval: UInt32, now: NIODeadline) {
        self.phase = .connected
        self.version = version
        self.keepAlive = keepAlive
        self.sessionExpiryInterval = sessionExpiryInterval
        self.lastActivity = now
    }

    mutating func closing() {
        phase = .closed
    }

    /// Sets the version replies are encoded for before CONNECT was decoded.
    mutating func overrideVersion(_ version: MQTTProtocolVersion) {
        self.version = version
    }

    /// Decides what to do with a decoded packet.
    mutating func receive(_ packet: MQTTPacket) -> Action {
        switch phase {
        case .closed:
            return .ignore
        case .authenticating:
            return .close(.protocolError, reason: "packet received during authentication")
        case .awaitingConnect:
            guard case .connect(let connect) = packet else {
                return .close(.protocolError, reason: "first packet must be CONNECT, got \(packet.type)")
            }
            version = connect.protocolVersion
            phase = .authenticating
            return .connect(connect)
        case .connected:
            break
        }
        switch packet {
        case .connect:
            return .close(.protocolError, reason: "second CONNECT on a connection")
        case .publish(let publish):
            return receivePublish(publish)
        case .puback(let ack):
            return .puback(ack)
        case .pubrec(let ack):
            return .pubrec(ack)
        case .pubrel(let ack):
            return .pubrel(ack)
        case .pubcomp(let ack):
            return .pubcomp(ack)
        case .subscribe(let subscribe):
            if !announced.subscriptionIdentifiersAvailable && !subscribe.properties.subscriptionIdentifiers.isEmpty {
                return .close(.subscriptionIdentifiersNotSupported, reason: "subscription identifiers are not supported")
            }
            return .subscribe(subscribe)
        case .unsubscribe(let unsubscribe):
            return .unsubscribe(unsubscribe)
        case .pingreq:
            return .pingreq
        case .disconnect(let disconnect):
            if let requested = disconnect.properties.sessionExpiryInterval, sessionExpiryInterval == 0, requested != 0 {
                return .close(.protocolError, reason: "session expiry cannot be set at DISCONNECT when it was 0 at CONNECT")
            }
            phase = .closed
            return .disconnect(disconnect)
        case .auth:
            return .close(.protocolError, reason: "AUTH without an authentication method")
        case .connack, .suback, .unsuback, .pingresp:
            return .close(.protocolError, reason: "\(packet.type) is sent by servers, not clients")
        }
    }

    private mutating func receivePublish(_ publish: PublishPacket) -> Action {
        if publish.qos > announced.maximumQoS {
            return .close(.qosNotSupported, reason: "\(publish.qos) exceeds the maximum QoS \(announced.maximumQoS.rawValue)")
        }
        if publish.retain && !announced.retainAvailable {
            return .close(.retainNotSupported, reason: "retained messages are not supported")
        }
        guard version == .v5, !publish.properties.isEmpty else {
            return .publish(publish, topic: publish.topic)
        }
        if !publish.properties.subscriptionIdentifiers.isEmpty {
            return .close(.protocolError, reason: "PUBLISH from a client must not carry a subscription identifier")
        }
        guard let alias = publish.properties.topicAlias else {
            return .publish(publish, topic: publish.topic)
        }
        guard alias <= announced.topicAliasMaximum else {
            return .close(.topicAliasInvalid, reason: "topic alias \(alias) exceeds the maximum \(announced.topicAliasMaximum)")
        }
        if publish.topic.isEmpty {
            guard let topic = inboundAliases[alias] else {
                return .close(.protocolError, reason: "topic alias \(alias) is not defined")
            }
            return .publish(publish, topic: topic)
        }
        inboundAliases[alias] = publish.topic
        return .publish(publish, topic: publish.topic)
    }
}

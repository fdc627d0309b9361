import MQTTCore

/// Why a connection that had been accepted ended.
public enum MQTTDisconnectReason: String, Sendable, Hashable {
    /// The client sent DISCONNECT (any reason code, see ``MQTTDisconnection/reasonCode``).
    case clean
    /// No packet from the client within 1.5 × its keep alive.
    case keepAliveTimeout = "keepalive_timeout"
    /// A new connection with the same client identifier took the session over.
    case takenOver = "takeover"
    /// The platform ended it (``MQTTBroker/disconnect(where:reasonCode:reason:)``, e.g. a
    /// revoked credential); ``MQTTDisconnection/reasonCode`` says which reason it gave.
    case administrative
    /// The broker is shutting down.
    case serverShutdown = "server_shutdown"
    /// The client broke the protocol or a limit (malformed packet, packet too large, ...).
    case protocolError = "protocol_error"
    /// The network connection closed or failed without a DISCONNECT.
    case connectionLost = "connection_lost"
}

/// One accepted connection, as ``MQTTConnectionObserver``s see it.
public struct MQTTConnectionInfo: Sendable {
    /// Unique per connection in this process (a reconnect gets a new one).
    public var connectionID: UInt64
    /// Who the authenticator said the client is.
    public var principal: MQTTPrincipal
    /// The peer's address as `ip:port`, when known.
    public var remoteAddress: String?
    public var transport: MQTTTransport
    public var protocolVersion: MQTTProtocolVersion
    /// The keep alive in force, in seconds (0: none).
    public var keepAlive: UInt16

    public init(
        connectionID: UInt64, principal: MQTTPrincipal, remoteAddress: String?, transport: MQTTTransport,
        protocolVersion: MQTTProtocolVersion, keepAlive: UInt16
    ) {
        self.connectionID = connectionID
        self.principal = principal
        self.remoteAddress = remoteAddress
        self.transport = transport
        self.protocolVersion = protocolVersion
        self.keepAlive = keepAlive
    }
}

/// How and why a connection ended.
public struct MQTTDisconnection: Sendable, Hashable {
    public var reason: MQTTDisconnectReason
    /// The reason code of the DISCONNECT the client sent or the broker sent (MQTT 5; the one
    /// the broker would have sent for an MQTT 3.1.1 client), if any.
    public var reasonCode: ReasonCode?
    /// Words for the log: the server's reason string, or what the client's reason code means.
    public var detail: String?

    public init(reason: MQTTDisconnectReason, reasonCode: ReasonCode? = nil, detail: String? = nil) {
        self.reason = reason
        self.reasonCode = reasonCode
        self.detail = detail
    }
}

/// Follows the life of accepted connections: the platform's presence tracking and its way to
/// know when a device can receive what it sends (commands, twin changes).
///
/// Every method is called on the connection's event loop and must not block (hand slow work to
/// a task). Each has an empty default implementation. A broker without observers pays nothing.
public protocol MQTTConnectionObserver: Sendable {
    /// The client was accepted: called right after the successful CONNACK was written.
    func connected(_ connection: MQTTConnectionInfo)

    /// Subscriptions were granted (called after the SUBACK): the granted filters, as internal
    /// topic names (after the principal's ``MQTTTopicMapping``), `$share/{group}/` included.
    func subscribed(_ connection: MQTTConnectionInfo, filters: [String])

    /// The connection ended: called exactly once for every ``connected(_:)``.
    func disconnected(_ connection: MQTTConnectionInfo, _ disconnection: MQTTDisconnection)

    /// A message the platform published with a `deliveryTag`
    /// (``MQTTBroker/publish(topic:payload:qos:retain:properties:deliveryTag:)``) reached this
    /// client: it acknowledged it (PUBACK for QoS 1, PUBCOMP for QoS 2), or, at QoS 0, it was
    /// written to the connection.
    func delivered(_ connection: MQTTConnectionInfo, tag: UInt64)
}

extension MQTTConnectionObserver {
    public func connected(_ connection: MQTTConnectionInfo) {}
    public func subscribed(_ connection: MQTTConnectionInfo, filters: [String]) {}
    public func disconnected(_ connection: MQTTConnectionInfo, _ disconnection: MQTTDisconnection) {}
    public func delivered(_ connection: MQTTConnectionInfo, tag: UInt64) {}
}

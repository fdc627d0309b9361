import MQTTCore
import NIOCore

extension MQTTClient {
    /// Why a connection ended.
    public struct CloseReason: Sendable, CustomStringConvertible {
        /// The DISCONNECT the server sent before closing (MQTT 5), if any: its reason code and
        /// reason string say why the broker closed the connection.
        public var serverDisconnect: DisconnectPacket?
        /// What ended the connection, or `nil` for a close the client asked for
        /// (``MQTTClient/disconnect(reasonCode:properties:)`` or ``MQTTClient/close()``).
        public var error: MQTTClientError?
        /// Whether the client asked for the close.
        public var initiatedByClient: Bool

        /// A close reason.
        public init(serverDisconnect: DisconnectPacket? = nil, error: MQTTClientError? = nil, initiatedByClient: Bool) {
            self.serverDisconnect = serverDisconnect
            self.error = error
            self.initiatedByClient = initiatedByClient
        }

        /// The reason code of the server's DISCONNECT, if it sent one.
        public var serverReasonCode: ReasonCode? { serverDisconnect?.reasonCode }

        /// The reason string of the server's DISCONNECT, if it sent one.
        public var serverReasonString: String? { serverDisconnect?.properties.reasonString }

        /// A one-line summary.
        public var description: String {
            var parts: [String] = [initiatedByClient ? "closed by the client" : "closed"]
            if let serverDisconnect { parts.append("server DISCONNECT \(serverDisconnect.reasonCode)") }
            if let serverReasonString { parts.append("reason string: \(serverReasonString)") }
            if let error { parts.append("error: \(error)") }
            return parts.joined(separator: ", ")
        }
    }

    /// A change in the client's connection, delivered on ``MQTTClient/events``.
    public enum Event: Sendable {
        /// A connection (first or re-established) was accepted by the server.
        case connected(ConnAckPacket)
        /// A connection ended; `willReconnect` tells whether the reconnect policy takes over.
        case disconnected(CloseReason, willReconnect: Bool)
        /// Reconnect attempt `attempt` (1-based) starts after `delay`.
        case reconnecting(attempt: Int, delay: TimeAmount)
        /// A reconnect attempt failed.
        case reconnectFailed(attempt: Int, error: MQTTClientError)
    }
}

import MQTTCore
import NIOCore
import NIOSSL

extension MQTTClient {
    /// Everything that shapes one client: where it connects, how it speaks MQTT, and how it
    /// behaves when the connection drops.
    ///
    /// ```swift
    /// var configuration = MQTTClient.Configuration(host: "127.0.0.1", port: 1883, clientIdentifier: "sensor-1")
    /// configuration.protocolVersion = .v5
    /// configuration.keepAlive = .seconds(30)
    /// let client = MQTTClient(configuration: configuration, logger: logger)
    /// ```
    public struct Configuration: Sendable {
        /// How bytes reach the broker.
        public enum Transport: Sendable {
            /// Plain TCP.
            case tcp
            /// TLS over TCP, with NIOSSL's client configuration (trust roots, client certificate, ...).
            case tls(TLSConfiguration)
            /// MQTT over WebSocket (binary frames, sub-protocol `mqtt`), optionally over TLS.
            case webSocket(path: String = "/mqtt", tls: TLSConfiguration? = nil)
        }

        /// What the client does when an established connection is lost without the user asking.
        ///
        /// Reconnecting resumes the session (clean start off, the same client identifier,
        /// including one the server assigned) and re-sends unacknowledged QoS 1/2 publishes with
        /// the DUP flag. It subscribes to nothing by itself: the server keeps subscriptions in a
        /// resumed session, and a client whose session was lost must subscribe again.
        public struct ReconnectPolicy: Sendable {
            /// Whether to reconnect at all.
            public var isEnabled: Bool
            /// The delay before the first attempt.
            public var initialDelay: TimeAmount
            /// The longest delay between attempts.
            public var maximumDelay: TimeAmount
            /// The factor by which the delay grows after each failed attempt.
            public var multiplier: Double
            /// The fraction of each delay that is randomised (0 = none, 0.5 = ±50 %).
            public var jitter: Double
            /// Attempts per outage before giving up; `nil` tries forever.
            public var maximumAttempts: Int?
            /// Whether reconnects ask the server to resume the session (clean start off).
            public var resumeSession: Bool

            /// A policy; use ``disabled`` or ``exponentialBackoff(initialDelay:maximumDelay:multiplier:jitter:maximumAttempts:)``.
            public init(
                isEnabled: Bool,
                initialDelay: TimeAmount = .milliseconds(250),
                maximumDelay: TimeAmount = .seconds(30),
                multiplier: Double = 2,
                jitter: Double = 0.2,
                maximumAttempts: Int? = nil,
                resumeSession: Bool = true
            ) {
                self.isEnabled = isEnabled
                self.initialDelay = initialDelay
                self.maximumDelay = maximumDelay
                self.multiplier = multiplier
                self.jitter = jitter
                self.maximumAttempts = maximumAttempts
                self.resumeSession = resumeSession
            }

            /// Never reconnect (the default).
            public static var disabled: ReconnectPolicy { ReconnectPolicy(isEnabled: false) }

            /// Reconnect with exponential backoff and jitter.
            public static func exponentialBackoff(
                initialDelay: TimeAmount = .milliseconds(250),
                maximumDelay: TimeAmount = .seconds(30),
                multiplier: Double = 2,
                jitter: Double = 0.2,
                maximumAttempts: Int? = nil
            ) -> ReconnectPolicy {
                ReconnectPolicy(
                    isEnabled: true,
                    initialDelay: initialDelay,
                    maximumDelay: maximumDelay,
                    multiplier: multiplier,
                    jitter: jitter,
                    maximumAttempts: maximumAttempts
                )
            }

            /// The delay before attempt number `attempt` (1-based), jitter applied.
            public func delay<R: RandomNumberGenerator>(forAttempt attempt: Int, using generator: inout R) -> TimeAmount
            {
                let ceiling = Double(maximumDelay.nanoseconds)
                var base = Double(initialDelay.nanoseconds)
                var step = 1
                while step < attempt && base < ceiling {
                    base *= multiplier
                    step += 1
                }
                let capped = min(base, ceiling)
                let spread = max(0, min(1, jitter))
                let factor = spread == 0 ? 1 : Double.random(in: (1 - spread)...(1 + spread), using: &generator)
                let value = min(capped * factor, Double(maximumDelay.nanoseconds))
                return .nanoseconds(Int64(max(0, value)))
            }

            /// The delay before attempt number `attempt` (1-based), with system randomness.
            public func delay(forAttempt attempt: Int) -> TimeAmount {
                var generator = SystemRandomNumberGenerator()
                return delay(forAttempt: attempt, using: &generator)
            }
        }

        /// The broker's host name or IP address.
        public var host: String
        /// The broker's port.
        public var port: Int
        /// The transport; `.tcp` by default.
        public var transport: Transport
        /// The name the TLS handshake checks the certificate against (and sends as SNI);
        /// `nil` uses ``host`` unless it is an IP address.
        public var tlsServerName: String?
        /// MQTT 3.1.1 or 5.0 (the default).
        public var protocolVersion: MQTTProtocolVersion
        /// The client identifier; empty asks the server to assign one (MQTT 5, or 3.1.1 with clean session).
        public var clientIdentifier: String
        /// Clean start (5.0) / clean session (3.1.1) on the first connect.
        public var cleanStart: Bool
        /// The keep-alive interval sent in CONNECT; the client sends PINGREQ when it has sent
        /// nothing for this long. `.zero` disables keep-alive.
        public var keepAlive: TimeAmount
        /// How long to wait for PINGRESP before the connection counts as dead; `nil` waits one
        /// keep-alive interval.
        public var pingTimeout: TimeAmount?
        /// The user name, if any.
        public var username: String?
        /// The password, if any. Never logged nor put in error descriptions.
        public var password: ByteBuffer?
        /// The will message the server publishes if the connection ends without DISCONNECT.
        public var will: ConnectPacket.Will?
        /// MQTT 5 CONNECT properties: session expiry interval, receive maximum, topic alias
        /// maximum (how many aliases the server may use towards us), maximum packet size (also
        /// enforced on inbound packets), user properties, ...
        public var connectProperties: MQTTProperties
        /// How long TCP connect, TLS and WebSocket handshakes and CONNACK may take together.
        public var connectTimeout: TimeAmount
        /// What to do when an established connection drops; off by default.
        public var reconnect: ReconnectPolicy
        /// Whether inbound QoS 1/2 messages are acknowledged automatically (the default). When
        /// off, call ``MQTTClient/acknowledge(packetIdentifier:reasonCode:properties:)``; PUBREL is
        /// still answered with PUBCOMP automatically.
        public var automaticAcknowledgement: Bool
        /// Whether every QoS ≥ 0 publish uses an outbound topic alias when the server allows them.
        public var useTopicAliases: Bool
        /// Inbound messages buffered in ``MQTTClient/messages`` for a slow reader; `nil` is
        /// unbounded. When full, the newest messages are dropped (and logged).
        public var messageBufferSize: Int?
        /// Inbound packets buffered in ``MQTTClient/packets``; when full the oldest are dropped.
        /// `0` turns the stream off (it finishes at once), which saves a yield per packet in
        /// benchmarks.
        public var packetBufferSize: Int
        /// The largest WebSocket frame accepted from the server.
        public var webSocketMaximumFrameSize: Int

        /// A configuration with defaults: TCP, MQTT 5, clean start, 60 s keep-alive, 10 s
        /// connect timeout, no reconnect, automatic acknowledgement.
        public init(
            host: String,
            port: Int = 1883,
            transport: Transport = .tcp,
            protocolVersion: MQTTProtocolVersion = .v5,
            clientIdentifier: String,
            cleanStart: Bool = true,
            keepAlive: TimeAmount = .seconds(60),
            username: String? = nil,
            password: ByteBuffer? = nil,
            will: ConnectPacket.Will? = nil,
            connectProperties: MQTTProperties = .init(),
            connectTimeout: TimeAmount = .seconds(10),
            reconnect: ReconnectPolicy = .disabled
        ) {
            self.host = host
            self.port = port
            self.transport = transport
            self.tlsServerName = nil
            self.protocolVersion = protocolVersion
            self.clientIdentifier = clientIdentifier
            self.cleanStart = cleanStart
            self.keepAlive = keepAlive
            self.pingTimeout = nil
            self.username = username
            self.password = password
            self.will = will
            self.connectProperties = connectProperties
            self.connectTimeout = connectTimeout
            self.reconnect = reconnect
            self.automaticAcknowledgement = true
            self.useTopicAliases = false
            self.messageBufferSize = nil
            self.packetBufferSize = 4096
            self.webSocketMaximumFrameSize = 1 << 24
        }

        /// Sets the password from a string.
        public mutating func setPassword(_ password: String) {
            self.password = ByteBuffer(string: password)
        }

        /// The CONNECT packet this configuration describes.
        public func makeConnectPacket(clientIdentifier: String? = nil, cleanStart: Bool? = nil) -> ConnectPacket {
            let seconds = keepAlive.nanoseconds / 1_000_000_000
            return ConnectPacket(
                protocolVersion: protocolVersion,
                clientIdentifier: clientIdentifier ?? self.clientIdentifier,
                cleanStart: cleanStart ?? self.cleanStart,
                keepAlive: UInt16(clamping: max(0, seconds)),
                username: username,
                password: password,
                will: will,
                properties: protocolVersion == .v5 ? connectProperties : MQTTProperties()
            )
        }

        /// The largest packet the client accepts (the CONNECT maximum packet size, if set).
        var inboundMaximumPacketSize: Int {
            if protocolVersion == .v5, let maximum = connectProperties.maximumPacketSize { return Int(maximum) }
            return 268_435_460
        }

        /// The TLS configuration of the transport, if any.
        var tlsConfiguration: TLSConfiguration? {
            switch transport {
            case .tcp: return nil
            case .tls(let tls): return tls
            case .webSocket(_, let tls): return tls
            }
        }
    }
}

extension MQTTClient.Configuration: CustomStringConvertible, CustomReflectable {
    /// A summary without the password, the will payload or TLS key material.
    public var description: String {
        let transportName: String
        switch transport {
        case .tcp: transportName = "tcp"
        case .tls: transportName = "tls"
        case .webSocket(let path, let tls): transportName = tls == nil ? "ws \(path)" : "wss \(path)"
        }
        var text = "MQTTClient.Configuration(\(host):\(port), \(transportName), MQTT \(protocolVersion)"
        text += ", clientId: \(clientIdentifier), cleanStart: \(cleanStart), keepAlive: \(keepAlive)"
        if let username { text += ", username: \(username)" }
        if password != nil { text += ", password: <redacted>" }
        if let will { text += ", will: \(will.topic) \(will.qos)" }
        text += ", reconnect: \(reconnect.isEnabled ? "on" : "off"))"
        return text
    }

    /// A mirror that shows the ``description`` only, so `dump(_:)` and debuggers do not reveal
    /// the password.
    public var customMirror: Mirror {
        Mirror(self, children: ["description": description], displayStyle: .struct)
    }
}

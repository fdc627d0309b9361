import MQTTCore

/// Everything that shapes the broker's behaviour, with defaults that suit a single node serving
/// an IoT fleet. Listener addresses are not here: the server decides where the broker listens.
public struct BrokerConfiguration: Sendable {
    /// Resource limits. Going over one gets the proper reason code and a log line.
    public struct Limits: Sendable {
        /// Concurrent client connections; more are refused with "server busy" (0x89).
        public var maximumConnections: Int = 100_000
        /// Largest packet accepted from or sent to a client, fixed header included.
        public var maximumPacketSize: Int = 1_048_576
        /// QoS 1/2 messages a client may have unacknowledged towards the broker (MQTT 5 receive
        /// maximum announced in CONNACK).
        public var receiveMaximum: UInt16 = 1024
        /// QoS 1/2 messages the broker keeps in flight towards one client (lowered to the
        /// client's own receive maximum when it sets one).
        public var maximumInflight: Int = 1024
        /// Messages queued per session beyond the in-flight window, or while the client is
        /// offline; when full the oldest is dropped and counted.
        public var maximumQueuedMessages: Int = 10_000
        /// Seconds a publisher's PUBACK/PUBREC may be held back while an online subscriber it
        /// feeds has more than half of `maximumQueuedMessages` queued (flow control: the
        /// publisher's in-flight window fills and it waits instead of the queue overflowing).
        /// After this long the acknowledgements go out anyway. 0 turns flow control off.
        public var flowControlTimeout: Int = 5
        /// Messages of one connection whose ``MQTTTapDecision/acceptAfter(_:)`` or
        /// ``MQTTTapDecision/consumeAfter(_:)`` completion is still pending (every QoS counted).
        /// Beyond this the broker stops reading from the connection, so a publisher cannot run
        /// ahead of the platform's work (QoS 0 has no acknowledgement to hold back), and reads
        /// again once fewer than half are pending. Its keep-alive does not run out meanwhile.
        public var maximumPendingCompletions: Int = 64
        /// Bytes of QoS 0 traffic buffered for a client whose socket is not draining; beyond
        /// this, QoS 0 messages to it are dropped and counted.
        public var maximumPendingBytes: Int = 8 * 1_048_576
        /// Longest topic name or filter, in bytes.
        public var maximumTopicLength: Int = 1024
        /// Most levels in a topic name or filter.
        public var maximumTopicLevels: Int = 32
        /// Subscriptions one client may hold.
        public var maximumSubscriptionsPerClient: Int = 1000
        /// Longest client identifier, in bytes.
        public var maximumClientIdLength: Int = 256
        /// Inbound topic aliases a client may use (MQTT 5 topic alias maximum in CONNACK).
        public var topicAliasMaximum: UInt16 = 64
        /// Longest keep-alive a client may ask for, in seconds; clients asking for more (or for
        /// none) are told this value in CONNACK (MQTT 5). 0 means no limit.
        public var maximumKeepAlive: UInt16 = 0
        /// Seconds a new connection has to send CONNECT before it is closed.
        public var connectTimeout: Int = 10
        /// Longest session expiry interval granted, in seconds. Also the expiry of MQTT 3.1.1
        /// persistent sessions (clean session = 0). `UInt32.max` means never.
        public var maximumSessionExpiryInterval: UInt32 = UInt32.max

        public init() {}
    }

    /// Optional MQTT 5 features announced in CONNACK.
    public struct Features: Sendable {
        public var retainAvailable = true
        public var wildcardSubscriptionsAvailable = true
        public var subscriptionIdentifiersAvailable = true
        public var sharedSubscriptionsAvailable = true
        public var maximumQoS: QoS = .exactlyOnce

        public init() {}
    }

    public var limits = Limits()
    public var features = Features()
    /// How acknowledged messages survive a crash (needs a session store; without one the
    /// broker behaves as `.none`).
    public var durability: Durability = .strict
    /// With `.batch` durability: milliseconds between flushes to stable storage.
    public var syncInterval: Int = 100
    /// How often `$SYS/broker/...` topics are refreshed, in seconds; 0 disables them.
    public var sysInterval: Int = 10
    /// Version string published on `$SYS/broker/version`.
    public var version: String = "meridian"

    public init() {}
}

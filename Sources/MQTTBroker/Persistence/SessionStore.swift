import MQTTCore
import NIOCore

/// How hard the broker works to keep acknowledged messages across a crash.
public enum Durability: String, Sendable, CaseIterable, CustomStringConvertible {
    /// A QoS 1/2 PUBLISH is acknowledged after its state is on stable storage (fsync). A crash
    /// of the process or of the machine loses nothing that was acknowledged.
    case strict
    /// Acknowledged once written to the operating system; flushed to stable storage every
    /// `sync_interval`. A crash of the process loses nothing; a power loss or kernel crash may
    /// lose the last interval.
    case batch
    /// Memory only, like Mosquitto without persistence: a restart loses sessions, queued and
    /// retained messages.
    case none

    public var description: String { rawValue }
}

/// A message as stored (for queues and retained messages).
public struct PersistedMessage: Sendable, Hashable {
    public var id: Int64
    public var topic: String
    public var payload: ByteBuffer
    public var qos: QoS
    public var retain: Bool
    /// MQTT 5 properties, encoded (property length prefix included).
    public var properties: ByteBuffer
    public var origin: String
    /// Expiry as Unix time in milliseconds.
    public var expiresAt: Int64?

    public init(id: Int64, topic: String, payload: ByteBuffer, qos: QoS, retain: Bool, properties: ByteBuffer, origin: String, expiresAt: Int64?) {
        self.id = id
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties
        self.origin = origin
        self.expiresAt = expiresAt
    }
}

/// A session's own record: identity, expiry and pending will.
public struct PersistedSession: Sendable, Hashable {
    /// The session's persistent identity; a clean start creates a new one, a resume keeps it.
    public var id: Int64
    public var clientIdentifier: String
    public var username: String?
    public var attributes: [String: String]
    public var expiryInterval: UInt32
    /// When the client disconnected (Unix ms); `nil` while connected.
    public var disconnectedAt: Int64?
    public var will: PersistedMessage?
    public var willDelay: UInt32

    public init(
        id: Int64, clientIdentifier: String, username: String?, attributes: [String: String], expiryInterval: UInt32,
        disconnectedAt: Int64?, will: PersistedMessage?, willDelay: UInt32
    ) {
        self.id = id
        self.clientIdentifier = clientIdentifier
        self.username = username
        self.attributes = attributes
        self.expiryInterval = expiryInterval
        self.disconnectedAt = disconnectedAt
        self.will = will
        self.willDelay = willDelay
    }
}

public struct PersistedSubscription: Sendable, Hashable {
    public var sessionID: Int64
    /// The filter in its internal form (after the principal's topic mapping), with its
    /// `$share/{group}/` prefix if any.
    public var filter: String
    /// The MQTT 5 subscription options byte.
    public var options: UInt8
    public var identifier: Int?
    /// The rewrite the client's filter went through, so messages reach the client under the
    /// name it subscribed with also after a restart; `nil` when the filter was used as is.
    public var rewrite: MQTTTopicRewrite?

    public init(sessionID: Int64, filter: String, options: UInt8, identifier: Int?, rewrite: MQTTTopicRewrite? = nil) {
        self.sessionID = sessionID
        self.filter = filter
        self.options = options
        self.identifier = identifier
        self.rewrite = rewrite
    }
}

/// A message waiting for, or in flight to, one session.
public struct PersistedDelivery: Sendable, Hashable {
    public enum Phase: UInt8, Sendable {
        case queued = 0
        /// QoS 2 PUBLISH sent with `packetIdentifier`, waiting for PUBREC.
        case awaitingReceipt = 1
        /// QoS 2 PUBREC received, PUBREL sent, waiting for PUBCOMP.
        case awaitingCompletion = 2
    }

    public var sessionID: Int64
    /// Global order of deliveries; a session's queue is its deliveries by sequence.
    public var sequence: Int64
    public var messageID: Int64
    public var qos: QoS
    public var retain: Bool
    public var identifiers: [Int]
    public var packetIdentifier: UInt16?
    public var phase: Phase

    public init(sessionID: Int64, sequence: Int64, messageID: Int64, qos: QoS, retain: Bool, identifiers: [Int], packetIdentifier: UInt16?, phase: Phase) {
        self.sessionID = sessionID
        self.sequence = sequence
        self.messageID = messageID
        self.qos = qos
        self.retain = retain
        self.identifiers = identifiers
        self.packetIdentifier = packetIdentifier
        self.phase = phase
    }
}

/// One change to the broker's durable state.
public enum PersistenceOperation: Sendable, Hashable {
    case saveSession(PersistedSession)
    /// Removes a session with everything it owns (subscriptions, deliveries, inbound state).
    case removeSession(id: Int64)
    case sessionDisconnected(id: Int64, at: Int64)
    case addSubscription(PersistedSubscription)
    case removeSubscription(sessionID: Int64, filter: String)
    case saveMessage(PersistedMessage)
    case addDelivery(PersistedDelivery)
    case updateDelivery(sessionID: Int64, sequence: Int64, packetIdentifier: UInt16?, phase: PersistedDelivery.Phase)
    case removeDelivery(sessionID: Int64, sequence: Int64)
    /// An inbound QoS 2 packet identifier received and not yet released.
    case addInbound(sessionID: Int64, packetIdentifier: UInt16)
    case removeInbound(sessionID: Int64, packetIdentifier: UInt16)
    /// Sets (message) or clears (`nil`) the retained message of a topic.
    case setRetained(topic: String, messageID: Int64?)
}

/// Everything the broker needs to resume after a restart.
public struct RecoveredBrokerState: Sendable {
    public var sessions: [PersistedSession]
    public var subscriptions: [PersistedSubscription]
    /// In sequence order.
    public var deliveries: [PersistedDelivery]
    public var inbound: [(sessionID: Int64, packetIdentifier: UInt16)]
    public var messages: [Int64: PersistedMessage]
    /// Topic → message id.
    public var retained: [(topic: String, messageID: Int64)]
    public var highestMessageID: Int64
    public var highestSequence: Int64
    public var highestSessionID: Int64

    public init(
        sessions: [PersistedSession] = [], subscriptions: [PersistedSubscription] = [], deliveries: [PersistedDelivery] = [],
        inbound: [(sessionID: Int64, packetIdentifier: UInt16)] = [], messages: [Int64: PersistedMessage] = [:],
        retained: [(topic: String, messageID: Int64)] = [], highestMessageID: Int64 = 0, highestSequence: Int64 = 0,
        highestSessionID: Int64 = 0
    ) {
        self.sessions = sessions
        self.subscriptions = subscriptions
        self.deliveries = deliveries
        self.inbound = inbound
        self.messages = messages
        self.retained = retained
        self.highestMessageID = highestMessageID
        self.highestSequence = highestSequence
        self.highestSessionID = highestSessionID
    }
}

/// Where the broker keeps state that must survive a restart: persistent sessions, their
/// subscriptions, queued and in-flight messages, inbound QoS 2 state, retained messages and
/// pending wills.
///
/// The broker calls ``write(_:)`` from one writer thread with every change made since the
/// previous call (group commit: many messages, one transaction); it must apply them in order,
/// atomically, and return only once they are as durable as the store's durability mode
/// promises. It may throw; the broker then retries and keeps the affected acknowledgements held.
public protocol MQTTSessionStore: Sendable {
    /// Reads the stored state at start-up.
    func recover() throws -> RecoveredBrokerState
    /// Applies operations in one transaction, in order.
    func write(_ operations: [PersistenceOperation]) throws
    /// Bounded background clean-up (messages no longer referenced); returns rows removed.
    func purge(limit: Int) throws -> Int
    /// Flushes to stable storage now (for `batch` durability's periodic sync).
    func sync() throws
    /// Closes the store.
    func close() throws
}

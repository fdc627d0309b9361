import Logging
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A small asynchronous MQTT 3.1.1 / 5.0 client on SwiftNIO, over TCP, TLS or WebSocket.
///
/// ```swift
/// let client = MQTTClient(configuration: .init(host: "127.0.0.1", clientIdentifier: "sensor-1"))
/// try await client.connect()
/// _ = try await client.subscribe([.init("devices/+/telemetry", qos: .atLeastOnce)])
/// try await client.publish("devices/sensor-1/telemetry", payload: #"{"temp": 21.5}"#, qos: .atLeastOnce)
/// for await message in client.messages { ... }
/// try await client.disconnect()
/// ```
///
/// All mutable state of a client lives on one event loop of its group, and every connection
/// (the first and each reconnect) is bound to that loop, so inbound packets are handled where
/// they arrive; each API call hops onto the loop once.
///
/// The client is also a test tool: ``packets`` shows every inbound packet, ``send(_:)`` and
/// ``sendRaw(_:)`` write anything, manual acknowledgement holds messages unacknowledged, and
/// ``waitUntilClosed()`` says how and why the server closed the connection.
public final class MQTTClient: Sendable {
    /// State that may be read synchronously from any thread.
    struct Snapshot: Sendable {
        var isConnected = false
        var connAck: ConnAckPacket?
        var lastCloseReason: CloseReason?
    }

    /// The configuration the client was created with.
    public let configuration: Configuration
    /// The event loop all of the client's state and connections live on.
    public let eventLoop: any EventLoop

    /// Inbound application messages, in order, with server topic aliases resolved to the topic
    /// name. QoS 1/2 messages are acknowledged when received unless
    /// ``Configuration/automaticAcknowledgement`` is off. The stream spans reconnects and ends
    /// when the client is deinitialised. Iterate it from one task only.
    public let messages: AsyncStream<PublishPacket>
    /// Every packet received from the server, as decoded (before alias resolution), for tests
    /// and diagnostics. Bounded by ``Configuration/packetBufferSize``: the oldest are dropped
    /// (a size of 0 turns it off).
    public let packets: AsyncStream<MQTTPacket>
    /// Connection changes: connected, disconnected, reconnecting.
    public let events: AsyncStream<Event>

    private let core: NIOLoopBoundBox<ClientCore>
    private let snapshot: NIOLockedValueBox<Snapshot>

    /// Creates a client; nothing happens on the network until ``connect()``.
    ///
    /// - Parameters:
    ///   - configuration: Where and how to connect.
    ///   - eventLoopGroup: The group to take the client's event loop from.
    ///   - logger: Where the client logs (debug and trace only). Defaults to a no-op logger.
    public init(
        configuration: Configuration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "MQTTClient", factory: { _ in SwiftLogNoOpLogHandler() })
    ) {
        self.configuration = configuration
        let eventLoop = eventLoopGroup.next()
        self.eventLoop = eventLoop
        let messageBuffering: AsyncStream<PublishPacket>.Continuation.BufferingPolicy =
            configuration.messageBufferSize.map { .bufferingOldest($0) } ?? .unbounded
        let (messages, messagesContinuation) = AsyncStream.makeStream(
            of: PublishPacket.self,
            bufferingPolicy: messageBuffering
        )
        let (packets, packetsContinuation) = AsyncStream.makeStream(
            of: MQTTPacket.self,
            bufferingPolicy: .bufferingNewest(max(1, configuration.packetBufferSize))
        )
        let (events, eventsContinuation) = AsyncStream.makeStream(
            of: Event.self,
            bufferingPolicy: .bufferingNewest(1024)
        )
        self.messages = messages
        self.packets = packets
        self.events = events
        let snapshot = NIOLockedValueBox(Snapshot())
        self.snapshot = snapshot
        var logger = logger
        logger[metadataKey: "mqtt.client_id"] = "\(configuration.clientIdentifier)"
        self.core = NIOLoopBoundBox.makeBoxSendingValue(
            ClientCore(
                eventLoop: eventLoop,
                configuration: configuration,
                logger: logger,
                messages: messagesContinuation,
                packets: packetsContinuation,
                events: eventsContinuation,
                snapshot: snapshot
            ),
            eventLoop: eventLoop
        )
    }

    deinit {
        let core = self.core
        core.eventLoop.execute { core.value.shutDown() }
    }

    /// Whether a connection is established (CONNACK accepted) right now.
    public var isConnected: Bool { snapshot.withLockedValue { $0.isConnected } }

    /// The CONNACK of the current or most recent connection.
    public var connAck: ConnAckPacket? { snapshot.withLockedValue { $0.connAck } }

    /// Why the most recent connection ended, once it has.
    public var lastCloseReason: CloseReason? { snapshot.withLockedValue { $0.lastCloseReason } }

    /// The DISCONNECT the server sent when it last closed the connection (MQTT 5), if any.
    public var serverDisconnect: DisconnectPacket? { lastCloseReason?.serverDisconnect }

    // MARK: - connection

    /// Connects and sends CONNECT.
    ///
    /// - Returns: The server's CONNACK (its properties carry the server's limits).
    /// - Throws: ``MQTTClientError`` with code ``MQTTClientError/Code/connectionRefused`` and the
    ///   ``MQTTClientError/reasonCode`` when the server refuses; ``MQTTClientError/Code/connectTimeout``,
    ///   ``MQTTClientError/Code/connectionFailed``, ``MQTTClientError/Code/tlsHandshakeFailed`` or
    ///   ``MQTTClientError/Code/webSocketUpgradeFailed`` when the transport fails.
    @discardableResult
    public func connect() async throws -> ConnAckPacket {
        try await connect(rawConnect: nil)
    }

    /// Connects and sends `rawConnect` instead of the configured CONNECT, then waits for
    /// CONNACK, decoded as the configured protocol version. For tests of how a server treats
    /// malformed or unusual CONNECT packets.
    @discardableResult
    public func connect(sendingRawConnect rawConnect: ByteBuffer) async throws -> ConnAckPacket {
        try await connect(rawConnect: rawConnect)
    }

    private func connect(rawConnect: ByteBuffer?) async throws -> ConnAckPacket {
        let promise = eventLoop.makePromise(of: ConnAckPacket.self)
        let core = self.core
        eventLoop.execute { core.value.connect(rawConnect: rawConnect, promise: promise) }
        return try await promise.futureResult.get()
    }

    /// Sends DISCONNECT and closes the connection (and stops any reconnecting). The server
    /// discards the will. Returns once the connection is closed; does nothing if not connected.
    ///
    /// - Parameters:
    ///   - reasonCode: The MQTT 5 reason code, e.g. ``ReasonCode/disconnectWithWillMessage``.
    ///   - properties: MQTT 5 properties, e.g. a session expiry interval.
    public func disconnect(
        reasonCode: ReasonCode = .normalDisconnection,
        properties: MQTTProperties = .init()
    ) async throws {
        let promise = eventLoop.makePromise(of: CloseReason.self)
        let core = self.core
        let packet = DisconnectPacket(reasonCode: reasonCode, properties: properties)
        eventLoop.execute { core.value.disconnect(packet, promise: promise) }
        _ = try await promise.futureResult.get()
    }

    /// Drops the connection without DISCONNECT, as a crashed device would: the server publishes
    /// the will. Stops any reconnecting. Returns once the connection is closed.
    public func close() async {
        let promise = eventLoop.makePromise(of: CloseReason.self)
        let core = self.core
        eventLoop.execute { core.value.disconnect(nil, promise: promise) }
        _ = try? await promise.futureResult.get()
    }

    /// Waits until the connection is closed for good (not while the reconnect policy is still
    /// trying) and says why: the server's DISCONNECT, the error, or a client-side close.
    /// Returns at once if not connected.
    @discardableResult
    public func waitUntilClosed() async -> CloseReason {
        let promise = eventLoop.makePromise(of: CloseReason.self)
        let core = self.core
        eventLoop.execute { core.value.waitUntilClosed(promise: promise) }
        return (try? await promise.futureResult.get()) ?? CloseReason(initiatedByClient: true)
    }

    // MARK: - publishing

    /// Publishes a message.
    ///
    /// Returns once a QoS 0 message is written, after PUBACK for QoS 1, and after PUBCOMP for
    /// QoS 2. A refusal is not thrown: check the returned acknowledgement's
    /// ``PublishAckPacket/reasonCode`` (MQTT 5), e.g. 0x10 "no matching subscribers" or 0x87
    /// "not authorized". For QoS 2 it is the PUBREC (which carries those codes), or the PUBCOMP
    /// if that one reports a failure.
    ///
    /// While the server's receive maximum is reached, QoS 1/2 publishes wait for a slot; while
    /// the client is reconnecting they wait for the connection.
    ///
    /// - Parameters:
    ///   - topic: The topic name.
    ///   - payload: The payload.
    ///   - qos: The quality of service.
    ///   - retain: Whether the server retains the message.
    ///   - properties: MQTT 5 properties (user properties, response topic, correlation data...).
    ///   - useTopicAlias: Send an MQTT 5 topic alias when the server allows them; `nil` follows
    ///     ``Configuration/useTopicAliases``.
    /// - Returns: The acknowledgement for QoS 1/2, `nil` for QoS 0.
    /// - Throws: ``MQTTClientError``: ``MQTTClientError/Code/packetTooLarge`` (before sending) when
    ///   it exceeds the server's maximum packet size, ``MQTTClientError/Code/invalidArgument`` for
    ///   an invalid topic or a QoS/retain the server does not support, ``MQTTClientError/Code/notConnected``,
    ///   ``MQTTClientError/Code/connectionClosed``.
    @discardableResult
    public func publish(
        _ topic: String,
        payload: ByteBuffer,
        qos: QoS = .atMostOnce,
        retain: Bool = false,
        properties: MQTTProperties = .init(),
        useTopicAlias: Bool? = nil
    ) async throws -> PublishAckPacket? {
        do {
            try MQTTTopic.validateName(topic)
        } catch {
            throw MQTTClientError.invalidArgument("invalid topic name", underlying: error)
        }
        let packet = PublishPacket(topic: topic, payload: payload, qos: qos, retain: retain, properties: properties)
        return try await publish(packet, useTopicAlias: useTopicAlias)
    }

    /// Publishes a message whose payload is bytes.
    @discardableResult
    public func publish(
        _ topic: String,
        payload: [UInt8],
        qos: QoS = .atMostOnce,
        retain: Bool = false,
        properties: MQTTProperties = .init(),
        useTopicAlias: Bool? = nil
    ) async throws -> PublishAckPacket? {
        try await publish(
            topic,
            payload: ByteBuffer(bytes: payload),
            qos: qos,
            retain: retain,
            properties: properties,
            useTopicAlias: useTopicAlias
        )
    }

    /// Publishes a message whose payload is UTF-8 text.
    @discardableResult
    public func publish(
        _ topic: String,
        payload: String,
        qos: QoS = .atMostOnce,
        retain: Bool = false,
        properties: MQTTProperties = .init(),
        useTopicAlias: Bool? = nil
    ) async throws -> PublishAckPacket? {
        try await publish(
            topic,
            payload: ByteBuffer(string: payload),
            qos: qos,
            retain: retain,
            properties: properties,
            useTopicAlias: useTopicAlias
        )
    }

    /// Publishes a prepared PUBLISH packet; the client assigns its packet identifier (and clears
    /// DUP). The topic is not validated, so tests can send what a server must refuse.
    @discardableResult
    public func publish(_ packet: PublishPacket, useTopicAlias: Bool? = nil) async throws -> PublishAckPacket? {
        let promise = eventLoop.makePromise(of: PublishAckPacket?.self)
        let core = self.core
        let alias = useTopicAlias ?? configuration.useTopicAliases
        eventLoop.execute { core.value.publish(packet, useTopicAlias: alias, promise: promise) }
        return try await promise.futureResult.get()
    }

    // MARK: - subscriptions

    /// Subscribes and returns the SUBACK (one reason code per subscription: the granted QoS or a
    /// failure code; failures are not thrown).
    ///
    /// - Throws: ``MQTTClientError/Code/invalidArgument`` for an empty list or an invalid filter,
    ///   ``MQTTClientError/Code/notConnected``, ``MQTTClientError/Code/connectionClosed``.
    @discardableResult
    public func subscribe(
        _ subscriptions: [SubscribePacket.Subscription],
        properties: MQTTProperties = .init()
    ) async throws -> SubAckPacket {
        guard !subscriptions.isEmpty else {
            throw MQTTClientError.invalidArgument("SUBSCRIBE needs at least one topic filter")
        }
        for subscription in subscriptions {
            do {
                _ = try TopicFilter(subscription.topicFilter)
            } catch {
                throw MQTTClientError.invalidArgument("invalid topic filter", underlying: error)
            }
        }
        let promise = eventLoop.makePromise(of: SubAckPacket.self)
        let core = self.core
        eventLoop.execute { core.value.subscribe(subscriptions, properties: properties, promise: promise) }
        return try await promise.futureResult.get()
    }

    /// Subscribes to one filter.
    @discardableResult
    public func subscribe(
        _ topicFilter: String,
        qos: QoS = .atMostOnce,
        properties: MQTTProperties = .init()
    ) async throws -> SubAckPacket {
        try await subscribe([SubscribePacket.Subscription(topicFilter, qos: qos)], properties: properties)
    }

    /// Unsubscribes and returns the UNSUBACK (MQTT 5: one reason code per filter).
    @discardableResult
    public func unsubscribe(_ filters: [String], properties: MQTTProperties = .init()) async throws -> UnsubAckPacket {
        guard !filters.isEmpty else {
            throw MQTTClientError.invalidArgument("UNSUBSCRIBE needs at least one topic filter")
        }
        let promise = eventLoop.makePromise(of: UnsubAckPacket.self)
        let core = self.core
        eventLoop.execute { core.value.unsubscribe(filters, properties: properties, promise: promise) }
        return try await promise.futureResult.get()
    }

    // MARK: - manual acknowledgement

    /// Acknowledges a received QoS 1 (PUBACK) or QoS 2 (PUBREC) message when
    /// ``Configuration/automaticAcknowledgement`` is off. PUBREL is answered with PUBCOMP
    /// automatically.
    ///
    /// - Throws: ``MQTTClientError/Code/unknownPacketIdentifier`` if no received message awaits
    ///   this acknowledgement (on this connection), ``MQTTClientError/Code/notConnected``.
    public func acknowledge(
        packetIdentifier: UInt16,
        reasonCode: ReasonCode = .success,
        properties: MQTTProperties = .init()
    ) async throws {
        let promise = eventLoop.makePromise(of: Void.self)
        let core = self.core
        eventLoop.execute {
            core.value.acknowledge(
                packetIdentifier: packetIdentifier,
                reasonCode: reasonCode,
                properties: properties,
                promise: promise
            )
        }
        try await promise.futureResult.get()
    }

    // MARK: - raw access

    /// Writes a packet as it is, encoded for the configured protocol version, without any
    /// bookkeeping (no packet identifier, no acknowledgement tracking). For robustness tests.
    public func send(_ packet: MQTTPacket) async throws {
        let promise = eventLoop.makePromise(of: Void.self)
        let core = self.core
        eventLoop.execute { core.value.send(packet, promise: promise) }
        try await promise.futureResult.get()
    }

    /// Writes bytes as they are (over WebSocket, in one binary frame). For robustness tests.
    public func sendRaw(_ bytes: ByteBuffer) async throws {
        let promise = eventLoop.makePromise(of: Void.self)
        let core = self.core
        eventLoop.execute { core.value.sendRaw(bytes, promise: promise) }
        try await promise.futureResult.get()
    }
}

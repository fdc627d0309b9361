import Logging
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL

/// Everything mutable about one ``MQTTClient``, confined to the client's event loop (every
/// connection of the client is bound to that same loop, so its channel handler calls in
/// directly). The public API hops onto the loop once per call.
final class ClientCore {
    /// One connection attempt and, once CONNACK accepted it, the connection.
    final class Connection {
        enum Phase {
            /// TCP/TLS/WebSocket being set up.
            case transport
            /// CONNECT sent, awaiting CONNACK.
            case awaitingConnAck
            /// CONNACK accepted.
            case connected
        }

        let id: Int
        var phase: Phase = .transport
        var handler: MQTTClientChannelHandler?
        var channel: (any Channel)?
        var connectPromise: EventLoopPromise<ConnAckPacket>?
        var timeout: Scheduled<Void>?
        let connectPacket: ConnectPacket
        let rawConnect: ByteBuffer?
        /// 0 for a connect the user asked for, n for the n-th reconnect attempt.
        let reconnectAttempt: Int
        var closeRequested = false
        var serverDisconnect: DisconnectPacket?
        var error: MQTTClientError?
        var finished = false

        init(id: Int, connectPacket: ConnectPacket, rawConnect: ByteBuffer?, reconnectAttempt: Int) {
            self.id = id
            self.connectPacket = connectPacket
            self.rawConnect = rawConnect
            self.reconnectAttempt = reconnectAttempt
        }
    }

    /// What the server allows, from CONNACK.
    struct ServerLimits {
        var receiveMaximum = Int(UInt16.max)
        var maximumPacketSize: Int?
        var maximumQoS: QoS = .exactlyOnce
        var retainAvailable = true
    }

    /// A QoS 1/2 publish waiting for the server's receive maximum (or a reconnect).
    struct WaitingPublish {
        var packet: PublishPacket
        var useTopicAlias: Bool
        var promise: EventLoopPromise<PublishAckPacket?>
    }

    let eventLoop: any EventLoop
    let configuration: MQTTClient.Configuration
    private let logger: Logger
    private let messages: AsyncStream<PublishPacket>.Continuation
    private let packets: AsyncStream<MQTTPacket>.Continuation
    private let events: AsyncStream<MQTTClient.Event>.Continuation
    /// State readable from any thread.
    private let snapshot: NIOLockedValueBox<MQTTClient.Snapshot>

    private var session = ClientSession()
    private var aliases = TopicAliases()
    private var limits = ServerLimits()
    private var current: Connection?
    private var reconnectTask: Scheduled<Void>?
    private var nextConnectionID = 0
    private var assignedClientIdentifier: String?
    private var lastClose: MQTTClient.CloseReason?
    private var closeWaiters: [EventLoopPromise<MQTTClient.CloseReason>] = []
    private var publishPromises: [UInt16: EventLoopPromise<PublishAckPacket?>] = [:]
    private var subscribePromises: [UInt16: EventLoopPromise<SubAckPacket>] = [:]
    private var unsubscribePromises: [UInt16: EventLoopPromise<UnsubAckPacket>] = [:]
    private var waitingPublishes = CircularBuffer<WaitingPublish>()
    /// Built on the first TLS connect and reused.
    var sslContext: NIOSSLContext?
    private var isShutDown = false
    private let recordsPackets: Bool

    init(
        eventLoop: any EventLoop,
        configuration: MQTTClient.Configuration,
        logger: Logger,
        messages: AsyncStream<PublishPacket>.Continuation,
        packets: AsyncStream<MQTTPacket>.Continuation,
        events: AsyncStream<MQTTClient.Event>.Continuation,
        snapshot: NIOLockedValueBox<MQTTClient.Snapshot>
    ) {
        self.eventLoop = eventLoop
        self.configuration = configuration
        self.logger = logger
        self.messages = messages
        self.packets = packets
        self.events = events
        self.snapshot = snapshot
        self.recordsPackets = configuration.packetBufferSize > 0
        if !recordsPackets { packets.finish() }
    }

    private var version: MQTTProtocolVersion { configuration.protocolVersion }

    private var connected: Connection? {
        guard let current, current.phase == .connected else { return nil }
        return current
    }

    /// Whether QoS 1/2 publishes should wait for a connection instead of failing.
    private var isReconnecting: Bool {
        reconnectTask != nil || (current.map { $0.reconnectAttempt > 0 } ?? false)
    }

    // MARK: - API entry points (on the event loop)

    func connect(rawConnect: ByteBuffer?, promise: EventLoopPromise<ConnAckPacket>) {
        guard !isShutDown else { return promise.fail(MQTTClientError.shutDown()) }
        guard current == nil, reconnectTask == nil else { return promise.fail(MQTTClientError.alreadyConnected()) }
        let packet = configuration.makeConnectPacket(clientIdentifier: clientIdentifierForConnect)
        startConnection(connectPacket: packet, rawConnect: rawConnect, reconnectAttempt: 0, promise: promise)
    }

    private var clientIdentifierForConnect: String {
        configuration.clientIdentifier.isEmpty ? (assignedClientIdentifier ?? "") : configuration.clientIdentifier
    }

    func publish(_ packet: PublishPacket, useTopicAlias: Bool, promise: EventLoopPromise<PublishAckPacket?>) {
        guard !isShutDown else { return promise.fail(MQTTClientError.shutDown()) }
        if let connection = connected {
            if let error = check(packet) { return promise.fail(error) }
            if packet.qos == .atMostOnce {
                return sendUntracked(packet, on: connection, useTopicAlias: useTopicAlias, promise: promise)
            }
            if waitingPublishes.isEmpty && session.inflightCount < limits.receiveMaximum {
                sendTracked(packet, useTopicAlias: useTopicAlias, promise: promise)
            } else {
                waitingPublishes.append(WaitingPublish(packet: packet, useTopicAlias: useTopicAlias, promise: promise))
            }
        } else if packet.qos != .atMostOnce && isReconnecting {
            waitingPublishes.append(WaitingPublish(packet: packet, useTopicAlias: useTopicAlias, promise: promise))
        } else {
            promise.fail(MQTTClientError.notConnected())
        }
    }

    func subscribe(
        _ subscriptions: [SubscribePacket.Subscription],
        properties: MQTTProperties,
        promise: EventLoopPromise<SubAckPacket>
    ) {
        guard let connection = connected else { return promise.fail(MQTTClientError.notConnected()) }
        guard let identifier = session.allocateRequestIdentifier() else {
            return promise.fail(MQTTClientError.packetIdentifiersExhausted())
        }
        let packet = MQTTPacket.subscribe(
            SubscribePacket(packetIdentifier: identifier, subscriptions: subscriptions, properties: properties)
        )
        if let error = checkSize(packet) {
            session.releaseRequestIdentifier(identifier)
            return promise.fail(error)
        }
        subscribePromises[identifier] = promise
        connection.handler?.write(packet)
    }

    func unsubscribe(_ filters: [String], properties: MQTTProperties, promise: EventLoopPromise<UnsubAckPacket>) {
        guard let connection = connected else { return promise.fail(MQTTClientError.notConnected()) }
        guard let identifier = session.allocateRequestIdentifier() else {
            return promise.fail(MQTTClientError.packetIdentifiersExhausted())
        }
        let packet = MQTTPacket.unsubscribe(
            UnsubscribePacket(packetIdentifier: identifier, topicFilters: filters, properties: properties)
        )
        if let error = checkSize(packet) {
            session.releaseRequestIdentifier(identifier)
            return promise.fail(error)
        }
        unsubscribePromises[identifier] = promise
        connection.handler?.write(packet)
    }

    func acknowledge(
        packetIdentifier: UInt16,
        reasonCode: ReasonCode,
        properties: MQTTProperties,
        promise: EventLoopPromise<Void>
    ) {
        guard let connection = connected, let handler = connection.handler else {
            return promise.fail(MQTTClientError.notConnected())
        }
        guard let pending = session.takePendingAcknowledgement(packetIdentifier) else {
            return promise.fail(MQTTClientError.unknownPacketIdentifier(packetIdentifier))
        }
        let ack = PublishAckPacket(packetIdentifier: packetIdentifier, reasonCode: reasonCode, properties: properties)
        switch pending {
        case .puback: handler.write(.puback(ack), promise: promise)
        case .pubrec: handler.write(.pubrec(ack), promise: promise)
        }
    }

    func send(_ packet: MQTTPacket, promise: EventLoopPromise<Void>) {
        guard let handler = current?.handler else { return promise.fail(MQTTClientError.notConnected()) }
        handler.write(packet, promise: promise)
    }

    func sendRaw(_ bytes: ByteBuffer, promise: EventLoopPromise<Void>) {
        guard let handler = current?.handler else { return promise.fail(MQTTClientError.notConnected()) }
        handler.writeRaw(bytes, promise: promise)
    }

    func disconnect(_ packet: DisconnectPacket?, promise: EventLoopPromise<MQTTClient.CloseReason>) {
        if let reconnectTask {
            reconnectTask.cancel()
            self.reconnectTask = nil
            enterIdle(MQTTClient.CloseReason(initiatedByClient: true))
            return promise.succeed(lastClose!)
        }
        guard let connection = current else {
            return promise.succeed(lastClose ?? MQTTClient.CloseReason(initiatedByClient: true))
        }
        connection.closeRequested = true
        closeWaiters.append(promise)
        if let packet, connection.phase == .connected, let handler = connection.handler {
            handler.write(.disconnect(packet))
        }
        close(connection)
    }

    func waitUntilClosed(promise: EventLoopPromise<MQTTClient.CloseReason>) {
        if current == nil && reconnectTask == nil {
            return promise.succeed(lastClose ?? MQTTClient.CloseReason(initiatedByClient: true))
        }
        closeWaiters.append(promise)
    }

    /// The owning ``MQTTClient`` went away: drop the connection and end the streams.
    func shutDown() {
        isShutDown = true
        reconnectTask?.cancel()
        reconnectTask = nil
        if let current {
            current.closeRequested = true
            close(current)
        }
        failAllPending(MQTTClientError.shutDown())
        messages.finish()
        packets.finish()
        events.finish()
    }

    // MARK: - connecting

    private func startConnection(
        connectPacket: ConnectPacket,
        rawConnect: ByteBuffer?,
        reconnectAttempt: Int,
        promise: EventLoopPromise<ConnAckPacket>?
    ) {
        nextConnectionID += 1
        let connection = Connection(
            id: nextConnectionID,
            connectPacket: connectPacket,
            rawConnect: rawConnect,
            reconnectAttempt: reconnectAttempt
        )
        connection.connectPromise = promise
        current = connection
        let loopBoundSelf = NIOLoopBound(self, eventLoop: eventLoop)
        let connectionID = connection.id
        connection.timeout = eventLoop.scheduleTask(in: configuration.connectTimeout) {
            loopBoundSelf.value.connectTimedOut(connectionID)
        }
        logger.debug(
            "connecting",
            metadata: ["mqtt.client_id": "\(connectPacket.clientIdentifier)", "mqtt.attempt": "\(reconnectAttempt)"]
        )
        let channelFuture: EventLoopFuture<any Channel>
        do {
            channelFuture = try makeBootstrap(connectionID: connection.id).connect(
                host: configuration.host,
                port: configuration.port
            )
        } catch {
            finish(
                connection,
                error: MQTTClientError.connectionFailed("could not set up the connection", underlying: error)
            )
            return
        }
        channelFuture.assumeIsolated().whenComplete { result in
            switch result {
            case .success(let channel):
                if connection.finished || connection.closeRequested {
                    channel.close(promise: nil)
                } else {
                    connection.channel = channel
                    channel.closeFuture.assumeIsolated().whenComplete { _ in
                        self.finish(connection, error: nil)
                    }
                }
            case .failure(let error):
                let wrapped: MQTTClientError
                if let error = error as? MQTTClientError {
                    wrapped = error
                } else {
                    wrapped = MQTTClientError.connectionFailed(
                        "could not connect to \(self.configuration.host):\(self.configuration.port)",
                        underlying: error
                    )
                }
                self.finish(connection, error: wrapped)
            }
        }
    }

    private func connectTimedOut(_ id: Int) {
        guard let connection = current, connection.id == id, connection.phase != .connected else { return }
        connection.error = connection.error ?? MQTTClientError.connectTimeout()
        if connection.channel == nil && connection.handler == nil {
            finish(connection, error: nil)
        } else {
            close(connection)
        }
    }

    func transportSetupFailed(_ id: Int, error: MQTTClientError) {
        guard let connection = current, connection.id == id else { return }
        connection.error = connection.error ?? error
    }

    func transportSetupFailed(_ id: Int, error: any Error) {
        guard let connection = current, connection.id == id, connection.error == nil else { return }
        if let wrapped = Self.tlsError(error) { connection.error = wrapped }
    }

    /// `error` as a TLS failure, if it is one.
    private static func tlsError(_ error: any Error) -> MQTTClientError? {
        if error is NIOSSLError || error is NIOSSLExtraError || error is BoringSSLError {
            return MQTTClientError.tlsHandshakeFailed(underlying: error)
        }
        return nil
    }

    func webSocketUpgraded(_ id: Int) {
        guard let connection = current, connection.id == id, let handler = connection.handler else { return }
        handler.announceReady()
    }

    // MARK: - events from the channel handler

    /// The handler joined its pipeline (the transport may not be ready yet).
    func attach(_ handler: MQTTClientChannelHandler) {
        guard let connection = current, connection.id == handler.connectionID, !connection.finished else { return }
        connection.handler = handler
    }

    func transportReady(_ handler: MQTTClientChannelHandler) {
        guard let connection = current, connection.id == handler.connectionID, !connection.finished else {
            handler.close()
            return
        }
        connection.handler = handler
        if connection.closeRequested {
            handler.close()
            return
        }
        connection.phase = .awaitingConnAck
        if let raw = connection.rawConnect {
            handler.writeRaw(raw)
        } else {
            handler.write(.connect(connection.connectPacket))
        }
    }

    func transportClosed(_ handler: MQTTClientChannelHandler) {
        guard let connection = current, connection.id == handler.connectionID else { return }
        finish(connection, error: nil)
    }

    func transportFailed(_ handler: MQTTClientChannelHandler, error: any Error) {
        guard let connection = current, connection.id == handler.connectionID else { return }
        if connection.error == nil {
            if let error = error as? MQTTError {
                abort(connection, MQTTClientError.malformedPacket(underlying: error))
                return
            }
            if let tlsError = Self.tlsError(error) {
                connection.error = tlsError
            } else if let error = error as? MQTTClientError {
                connection.error = error
            } else if connection.phase == .connected {
                connection.error = MQTTClientError.connectionClosed("the connection failed", underlying: error)
            } else {
                connection.error = MQTTClientError.connectionFailed("the connection failed", underlying: error)
            }
        }
        logger.debug("connection error", metadata: ["mqtt.error": "\(error)"])
        close(connection)
    }

    func keepAliveTimedOut(_ handler: MQTTClientChannelHandler) {
        guard let connection = current, connection.id == handler.connectionID else { return }
        logger.debug("keep-alive timeout")
        connection.error = connection.error ?? MQTTClientError.keepAliveTimeout()
        close(connection)
    }

    func received(_ packet: MQTTPacket, on handler: MQTTClientChannelHandler) {
        guard let connection = current, connection.id == handler.connectionID, !connection.finished else { return }
        if recordsPackets { packets.yield(packet) }
        if connection.phase != .connected {
            switch packet {
            case .connack(let connAck) where connection.phase == .awaitingConnAck:
                receivedConnAck(connAck, on: connection, handler: handler)
            case .disconnect(let disconnect):
                receivedDisconnect(disconnect, on: connection)
            case .auth:
                break  // enhanced authentication is left to the caller (see `packets`/`send`)
            default:
                abort(connection, MQTTClientError.protocolViolation("the server sent \(packet.type) before CONNACK"))
            }
            return
        }
        switch packet {
        case .publish(let publish):
            receivedPublish(publish, on: connection, handler: handler)
        case .puback(let ack):
            switch session.receivedPuback(ack) {
            case .completed(let result): complete(ack.packetIdentifier, with: result)
            case .sendPubrel, .unknown:
                logger.trace(
                    "PUBACK for an unknown packet identifier",
                    metadata: ["mqtt.packet_id": "\(ack.packetIdentifier)"]
                )
            }
        case .pubrec(let ack):
            switch session.receivedPubrec(ack) {
            case .completed(let result):
                complete(ack.packetIdentifier, with: result)
            case .sendPubrel(let identifier):
                handler.write(.pubrel(PublishAckPacket(packetIdentifier: identifier)))
            case .unknown:
                handler.write(
                    .pubrel(
                        PublishAckPacket(packetIdentifier: ack.packetIdentifier, reasonCode: .packetIdentifierNotFound)
                    )
                )
            }
        case .pubrel(let ack):
            session.receivedPubrel(ack.packetIdentifier)
            handler.write(.pubcomp(PublishAckPacket(packetIdentifier: ack.packetIdentifier)))
        case .pubcomp(let ack):
            switch session.receivedPubcomp(ack) {
            case .completed(let result): complete(ack.packetIdentifier, with: result)
            case .sendPubrel, .unknown:
                logger.trace(
                    "PUBCOMP for an unknown packet identifier",
                    metadata: ["mqtt.packet_id": "\(ack.packetIdentifier)"]
                )
            }
        case .suback(let ack):
            session.releaseRequestIdentifier(ack.packetIdentifier)
            subscribePromises.removeValue(forKey: ack.packetIdentifier)?.succeed(ack)
        case .unsuback(let ack):
            session.releaseRequestIdentifier(ack.packetIdentifier)
            unsubscribePromises.removeValue(forKey: ack.packetIdentifier)?.succeed(ack)
        case .pingresp:
            handler.pingResponseReceived()
        case .disconnect(let disconnect):
            receivedDisconnect(disconnect, on: connection)
        case .auth:
            break
        case .connack, .connect, .subscribe, .unsubscribe, .pingreq:
            abort(connection, MQTTClientError.protocolViolation("the server sent \(packet.type)"))
        }
    }

    private func receivedConnAck(_ connAck: ConnAckPacket, on connection: Connection, handler: MQTTClientChannelHandler)
    {
        connection.timeout?.cancel()
        connection.timeout = nil
        guard !connAck.reasonCode.isFailure else {
            logger.debug("connection refused", metadata: ["mqtt.reason_code": "\(connAck.reasonCode)"])
            connection.error = MQTTClientError.connectionRefused(
                connAck.reasonCode,
                reasonString: connAck.properties.reasonString
            )
            close(connection)
            return
        }
        connection.phase = .connected
        let properties = connAck.properties
        limits = ServerLimits()
        if version == .v5 {
            limits.receiveMaximum = Int(properties.receiveMaximum ?? UInt16.max)
            limits.maximumPacketSize = properties.maximumPacketSize.map(Int.init)
            limits.maximumQoS = properties.maximumQoS.flatMap(QoS.init(rawValue:)) ?? .exactlyOnce
            limits.retainAvailable = properties.retainAvailable != 0
            if let assigned = properties.assignedClientIdentifier { assignedClientIdentifier = assigned }
        }
        aliases.reset(
            outboundMaximum: version == .v5 ? properties.topicAliasMaximum ?? 0 : 0,
            inboundMaximum: version == .v5 ? configuration.connectProperties.topicAliasMaximum ?? 0 : 0
        )

        // Session state (MQTT 5 §4.1): clean start discards ours; a server without our session
        // means its half is gone. Unacknowledged publishes go out again either way.
        if connection.connectPacket.cleanStart {
            failOutboundSession(MQTTClientError.connectionClosed("the session was discarded by a clean start"))
        } else if !connAck.sessionPresent {
            session.discardInbound()
        }
        session.connectionReplaced()
        for packet in session.retransmissions(sessionPresent: connAck.sessionPresent) {
            handler.write(packet)
        }

        let keepAliveSeconds = properties.serverKeepAlive.map(Int64.init) ?? Int64(connection.connectPacket.keepAlive)
        if keepAliveSeconds > 0 {
            let interval = TimeAmount.seconds(keepAliveSeconds)
            handler.startKeepAlive(interval: interval, timeout: configuration.pingTimeout ?? interval)
        }
        snapshot.withLockedValue {
            $0.isConnected = true
            $0.connAck = connAck
        }
        logger.debug(
            "connected",
            metadata: [
                "mqtt.client_id": "\(connection.connectPacket.clientIdentifier)",
                "mqtt.session_present": "\(connAck.sessionPresent)",
            ]
        )
        events.yield(.connected(connAck))
        connection.connectPromise?.succeed(connAck)
        connection.connectPromise = nil
        drainWaitingPublishes()
    }

    private func receivedDisconnect(_ disconnect: DisconnectPacket, on connection: Connection) {
        logger.debug("server sent DISCONNECT", metadata: ["mqtt.reason_code": "\(disconnect.reasonCode)"])
        connection.serverDisconnect = disconnect
        connection.error =
            connection.error
            ?? MQTTClientError.serverDisconnected(
                disconnect.reasonCode,
                reasonString: disconnect.properties.reasonString
            )
        close(connection)
    }

    private func receivedPublish(_ publish: PublishPacket, on connection: Connection, handler: MQTTClientChannelHandler)
    {
        var message = publish
        if version == .v5 {
            guard aliases.resolveInbound(&message) else {
                abort(
                    connection,
                    MQTTClientError.protocolViolation(
                        "the server used an invalid topic alias",
                        reasonCode: .topicAliasInvalid
                    )
                )
                return
            }
        }
        switch session.receivedPublish(message, automaticAcknowledgement: configuration.automaticAcknowledgement) {
        case .deliver(let ack):
            if case .dropped = messages.yield(message) {
                logger.debug("message buffer full, message dropped", metadata: ["mqtt.topic": "\(message.topic)"])
            }
            if let ack { handler.write(ack) }
        case .duplicate(let ack):
            if let ack { handler.write(ack) }
        }
    }

    // MARK: - outbound publishes

    /// A reason the server would refuse `packet`, checked before anything is sent.
    private func check(_ packet: PublishPacket) -> MQTTClientError? {
        if packet.qos > limits.maximumQoS {
            return MQTTClientError.invalidArgument("the server supports at most \(limits.maximumQoS)")
        }
        if packet.retain && !limits.retainAvailable {
            return MQTTClientError.invalidArgument("the server does not support retained messages")
        }
        return nil
    }

    private func checkSize(_ packet: MQTTPacket) -> MQTTClientError? {
        guard let maximum = limits.maximumPacketSize else { return nil }
        let size = packet.encodedSize(version: version)
        return size > maximum ? MQTTClientError.packetTooLarge(size: size, maximum: maximum) : nil
    }

    /// The form of `packet` that goes on the wire: with a topic alias if asked and allowed
    /// (the alias is committed only if the packet is sent).
    /// - Throws: ``MQTTClientError/Code/packetTooLarge`` if it exceeds the server's maximum.
    private func wireForm(of packet: PublishPacket, useTopicAlias: Bool) throws(MQTTClientError) -> PublishPacket {
        var wire = packet
        var newAlias: UInt16?
        if useTopicAlias, let (alias, isNew) = aliases.outboundAlias(for: packet.topic) {
            wire.properties.topicAlias = alias
            if isNew { newAlias = alias } else { wire.topic = "" }
        }
        if let error = checkSize(.publish(wire)) { throw error }
        if let newAlias { aliases.commitOutbound(topic: packet.topic, alias: newAlias) }
        return wire
    }

    private func sendUntracked(
        _ packet: PublishPacket,
        on connection: Connection,
        useTopicAlias: Bool,
        promise: EventLoopPromise<PublishAckPacket?>
    ) {
        let wire: PublishPacket
        do {
            wire = try wireForm(of: packet, useTopicAlias: useTopicAlias)
        } catch {
            return promise.fail(error)
        }
        let written = eventLoop.makePromise(of: Void.self)
        written.futureResult.map { nil as PublishAckPacket? }.cascade(to: promise)
        connection.handler?.write(.publish(wire), promise: written) ?? written.fail(MQTTClientError.notConnected())
    }

    private func sendTracked(_ packet: PublishPacket, useTopicAlias: Bool, promise: EventLoopPromise<PublishAckPacket?>)
    {
        guard let connection = connected, let handler = connection.handler else {
            return promise.fail(MQTTClientError.notConnected())
        }
        if let error = check(packet) { return promise.fail(error) }
        guard let identifier = session.allocateIdentifier() else {
            return promise.fail(MQTTClientError.packetIdentifiersExhausted())
        }
        var packet = packet
        packet.packetIdentifier = identifier
        packet.dup = false
        let wire: PublishPacket
        do {
            wire = try wireForm(of: packet, useTopicAlias: useTopicAlias)
        } catch {
            return promise.fail(error)
        }
        session.trackOutbound(packet)
        publishPromises[identifier] = promise
        handler.write(.publish(wire))
    }

    private func complete(_ identifier: UInt16, with ack: PublishAckPacket) {
        publishPromises.removeValue(forKey: identifier)?.succeed(ack)
        drainWaitingPublishes()
    }

    private func drainWaitingPublishes() {
        while connected != nil, session.inflightCount < limits.receiveMaximum, let next = waitingPublishes.popFirst() {
            sendTracked(next.packet, useTopicAlias: next.useTopicAlias, promise: next.promise)
        }
    }

    // MARK: - closing

    /// Closes after a protocol violation, telling an MQTT 5 server why.
    private func abort(_ connection: Connection, _ error: MQTTClientError) {
        logger.debug("closing after protocol error", metadata: ["mqtt.error": "\(error)"])
        connection.error = connection.error ?? error
        if version == .v5, connection.phase != .transport, let reasonCode = error.reasonCode,
            let handler = connection.handler
        {
            handler.write(.disconnect(DisconnectPacket(reasonCode: reasonCode)))
        }
        close(connection)
    }

    private func close(_ connection: Connection) {
        if let handler = connection.handler {
            handler.close()
        } else if let channel = connection.channel {
            channel.close(promise: nil)
        } else if connection.closeRequested || connection.error != nil {
            // The transport is still being set up; the connect future's completion closes it.
            finish(connection, error: nil)
        }
    }

    /// The connection (or attempt) is over: decide between reconnecting and going idle.
    private func finish(_ connection: Connection, error: MQTTClientError?) {
        guard !connection.finished else { return }
        connection.finished = true
        connection.timeout?.cancel()
        connection.timeout = nil
        guard current === connection else { return }
        current = nil
        session.releaseAllRequestIdentifiers()
        let requestError = MQTTClientError.connectionClosed()
        for promise in subscribePromises.values { promise.fail(requestError) }
        for promise in unsubscribePromises.values { promise.fail(requestError) }
        subscribePromises.removeAll()
        unsubscribePromises.removeAll()

        let error = connection.error ?? error
        let reason = MQTTClient.CloseReason(
            serverDisconnect: connection.serverDisconnect,
            error: connection.closeRequested
                ? nil : (error ?? MQTTClientError.connectionClosed("the server closed the connection")),
            initiatedByClient: connection.closeRequested
        )
        // Both at once: whoever sees `isConnected == false` also sees why.
        snapshot.withLockedValue {
            $0.isConnected = false
            $0.lastCloseReason = reason
        }
        let wasConnected = connection.phase == .connected

        if let promise = connection.connectPromise {
            connection.connectPromise = nil
            promise.fail(
                error
                    ?? MQTTClientError.connectionClosed(
                        connection.closeRequested
                            ? "disconnect() was called while connecting" : "the connection closed before CONNACK"
                    )
            )
        }

        let policy = configuration.reconnect
        if connection.reconnectAttempt > 0 && !wasConnected {
            // A reconnect attempt failed.
            let attemptError = error ?? MQTTClientError.connectionClosed()
            if !connection.closeRequested {
                events.yield(.reconnectFailed(attempt: connection.reconnectAttempt, error: attemptError))
            }
            if !connection.closeRequested && !isShutDown && Self.isRetryable(attemptError) {
                scheduleReconnect(attempt: connection.reconnectAttempt + 1, lastReason: reason)
            } else {
                enterIdle(reason)
            }
            return
        }
        if wasConnected && policy.isEnabled && !connection.closeRequested && !isShutDown && Self.isRetryable(reason) {
            logger.debug("connection lost, reconnecting", metadata: ["mqtt.reason": "\(reason)"])
            lastClose = reason
            snapshot.withLockedValue { $0.lastCloseReason = reason }
            events.yield(.disconnected(reason, willReconnect: true))
            scheduleReconnect(attempt: 1, lastReason: reason)
            return
        }
        if wasConnected || connection.closeRequested {
            logger.debug("connection closed", metadata: ["mqtt.reason": "\(reason)"])
        }
        enterIdle(reason)
    }

    private static func isRetryable(_ error: MQTTClientError) -> Bool {
        guard error.code == .connectionRefused, let reasonCode = error.reasonCode else { return true }
        // Refusals that another attempt will not change.
        switch reasonCode {
        case .unsupportedProtocolVersion, .clientIdentifierNotValid, .badUserNameOrPassword, .notAuthorized,
            .banned, .badAuthenticationMethod:
            return false
        default:
            return true
        }
    }

    private static func isRetryable(_ reason: MQTTClient.CloseReason) -> Bool {
        switch reason.serverReasonCode {
        case .some(.sessionTakenOver), .some(.banned), .some(.notAuthorized):
            return false
        default:
            return true
        }
    }

    private func scheduleReconnect(attempt: Int, lastReason: MQTTClient.CloseReason) {
        let policy = configuration.reconnect
        if let maximum = policy.maximumAttempts, attempt > maximum {
            enterIdle(lastReason)
            return
        }
        let delay = policy.delay(forAttempt: attempt)
        events.yield(.reconnecting(attempt: attempt, delay: delay))
        let loopBoundSelf = NIOLoopBound(self, eventLoop: eventLoop)
        reconnectTask = eventLoop.scheduleTask(in: delay) {
            loopBoundSelf.value.reconnect(attempt: attempt)
        }
    }

    private func reconnect(attempt: Int) {
        guard reconnectTask != nil else { return }
        reconnectTask = nil
        let cleanStart = configuration.reconnect.resumeSession ? false : configuration.cleanStart
        let packet = configuration.makeConnectPacket(
            clientIdentifier: clientIdentifierForConnect,
            cleanStart: cleanStart
        )
        startConnection(connectPacket: packet, rawConnect: nil, reconnectAttempt: attempt, promise: nil)
    }

    /// No connection and no reconnect pending: everyone waiting is told.
    private func enterIdle(_ reason: MQTTClient.CloseReason) {
        lastClose = reason
        snapshot.withLockedValue {
            $0.isConnected = false
            $0.lastCloseReason = reason
        }
        let error = reason.error ?? MQTTClientError.connectionClosed()
        failAllPending(error)
        events.yield(.disconnected(reason, willReconnect: false))
        let waiters = closeWaiters
        closeWaiters.removeAll()
        for waiter in waiters { waiter.succeed(reason) }
    }

    /// Fails every caller still waiting for an acknowledgement. The unacknowledged QoS 1/2
    /// publishes stay in the session and go out again on the next connect that resumes it.
    private func failAllPending(_ error: MQTTClientError) {
        for promise in publishPromises.values { promise.fail(error) }
        publishPromises.removeAll()
        for promise in subscribePromises.values { promise.fail(error) }
        subscribePromises.removeAll()
        for promise in unsubscribePromises.values { promise.fail(error) }
        unsubscribePromises.removeAll()
        while let waiting = waitingPublishes.popFirst() { waiting.promise.fail(error) }
    }

    /// Drops outbound session state (clean start): callers still waiting are failed.
    private func failOutboundSession(_ error: MQTTClientError) {
        for promise in publishPromises.values { promise.fail(error) }
        publishPromises.removeAll()
        session.discardAll()
    }
}

@available(*, unavailable)
extension ClientCore: Sendable {}

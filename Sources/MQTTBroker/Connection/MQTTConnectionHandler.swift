import Atomics
import DequeModule
import Logging
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore

/// One client connection: decodes packets, runs them through the ``ConnectionStateMachine``,
/// and carries out its actions against the session, the router and the hooks.
///
/// Output is coalesced: packets are encoded into one buffer per connection and flushed once per
/// event-loop iteration by the ``LoopContext``. The handler is used for every transport (TCP,
/// TLS and WebSocket put their own handlers in front of it) and belongs to its event loop.
final class MQTTConnectionHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = Never
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let broker: BrokerCore
    let loop: LoopContext
    private let transport: MQTTTransport
    private var context: ChannelHandlerContext?
    private var decoder: MQTTPacketDecoder
    private var cumulation: ByteBuffer?
    private var machine: ConnectionStateMachine
    private(set) var session: Session?
    private var clientIdentifier: String?
    private var output: ByteBuffer
    private var isDirty = false
    private var isWritable = true
    private var started = false
    private var finished = false
    private var overLimit = false
    /// When the connection was accepted (for the CONNECT timeout).
    private var acceptedAt: NIODeadline
    /// Output size of the last flush: the next output buffer starts at about this capacity.
    private var outputSizeHint = 256
    private var closeReason: String = "connection closed"
    private var publishWillOnClose = true
    private var clientMaximumPacketSize = Int.max
    private var clientTopicAliasMaximum: UInt16 = 0
    private var outboundAliases: [String: UInt16] = [:]
    private var sendReasonStrings = true
    private var refusedPublishLogged = false
    /// The principal's topic mapping (set once authenticated); `nil` for most clients.
    private var topicMapping: MQTTTopicMapping?
    /// Publisher flow control, while this client's acknowledgements are held for a congested
    /// subscriber (allocated only then, so an idle connection does not pay for it).
    private final class FlowControl {
        var congestedSessions: [Session] = []
        var timeoutTask: Scheduled<Void>?
    }
    private var flowControl: FlowControl?

    /// A packet waiting to be sent: until its loop's `ticket` is durable, for PUBACK/PUBREC
    /// marked `congestionGated` until flow control lets it go, and with a `completion` until
    /// the tap's completion of that number is done (0: none).
    private struct HeldPacket {
        enum Item {
            case control(MQTTPacket)
            case publish(Delivery, packetIdentifier: UInt16?, dup: Bool)
        }
        var ticket: UInt64
        var congestionGated: Bool
        var completion: UInt64 = 0
        var item: Item
    }
    /// Answers to the client's own packets (PUBACK, PUBREC, PUBCOMP), in order.
    private var heldAcknowledgements: Deque<HeldPacket> = []
    /// PUBLISH and PUBREL towards the client, in order.
    private var heldOutbound: Deque<HeldPacket> = []
    private var waitingForDurability = false
    /// Tap completions (``MQTTTapDecision/acceptAfter(_:)``) still pending, of every QoS.
    private var pendingCompletions = 0
    /// The number the next completion is known by (0 is "none").
    private var lastCompletion: UInt64 = 0
    /// Reading stopped because more than the limit of completions are pending.
    private var readPaused = false
    private var tapFailureLogged = false
    /// How completions find this connection: weakly, so a tap that is slow to complete does not
    /// keep a closed connection alive (allocated with the first completion).
    private final class CompletionTarget {
        weak var connection: MQTTConnectionHandler?
        init(_ connection: MQTTConnectionHandler) { self.connection = connection }
    }
    private var completionTarget: NIOLoopBound<CompletionTarget>?
    /// The verified client certificate, set by the TLS layer before CONNECT.
    var peerCertificate: MQTTPeerCertificate?
    /// The connection as the observers know it, from its CONNACK until they heard it ended
    /// (`nil` when the broker has no observers).
    private var observed: MQTTConnectionInfo?
    /// Why the connection is ending, once that is known (for the observers).
    private var disconnection: MQTTDisconnection?

    private var version: MQTTProtocolVersion { machine.version }
    /// Completes when the connection's channel has closed.
    var closeFuture: EventLoopFuture<Void>? { context?.channel.closeFuture }
    private var limits: BrokerConfiguration.Limits { broker.configuration.limits }

    init(broker: BrokerCore, loop: LoopContext, transport: MQTTTransport) {
        self.broker = broker
        self.loop = loop
        self.transport = transport
        self.decoder = MQTTPacketDecoder(maximumPacketSize: broker.configuration.limits.maximumPacketSize)
        let features = broker.configuration.features
        self.machine = ConnectionStateMachine(
            announced: .init(
                topicAliasMaximum: broker.configuration.limits.topicAliasMaximum,
                maximumQoS: features.maximumQoS,
                retainAvailable: features.retainAvailable,
                subscriptionIdentifiersAvailable: features.subscriptionIdentifiersAvailable
            ),
            now: loop.eventLoop.now
        )
        self.output = Self.emptyBuffer
        self.acceptedAt = loop.eventLoop.now
    }

    /// A buffer without storage of its own: idle connections hold no output memory.
    private static let emptyBuffer = ByteBuffer()

    /// The peer's address for log lines (derived when logging, not stored per connection).
    private var remoteAddress: String {
        guard let address = context?.channel.remoteAddress else { return "?" }
        return "\(address.ipAddress ?? "?"):\(address.port ?? 0)"
    }

    /// Logs with the connection's metadata; builds nothing when the level is filtered out.
    private func log(_ level: Logger.Level, _ message: @autoclosure () -> Logger.Message, _ extra: @autoclosure () -> Logger.Metadata = [:]) {
        guard broker.logger.logLevel <= level else { return }
        broker.logger.log(level: level, message(), metadata: logMetadata.merging(extra()) { $1 })
    }

    private var logMetadata: Logger.Metadata {
        [
            "mqtt.client_id": "\(clientIdentifier ?? "-")",
            "mqtt.remote": "\(remoteAddress)",
            "mqtt.transport": "\(transport.rawValue)",
        ]
    }

    // MARK: channel lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { start(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context: context)
        context.fireChannelActive()
    }

    private func start(context: ChannelHandlerContext) {
        guard !started else { return }
        started = true
        isWritable = context.channel.isWritable
        loop.connections[ObjectIdentifier(self)] = self
        broker.metrics.connectionOpened()
        if broker.metrics.connections.load(ordering: .relaxed) > limits.maximumConnections {
            overLimit = true
        }
        acceptedAt = context.eventLoop.now
        loop.connectionAdded()
    }

    /// Called by the loop's timer sweep: enforces the CONNECT timeout and the keep-alive.
    func checkTimers(now: NIODeadline) {
        switch machine.phase {
        case .awaitingConnect, .authenticating:
            let timeout = limits.connectTimeout
            guard timeout > 0, now - acceptedAt >= .seconds(Int64(timeout)) else { return }
            log(.debug, "no CONNECT in time, closing")
            publishWillOnClose = false
            closeReason = "no CONNECT within \(timeout) s"
            machine.closing()
            context?.close(promise: nil)
        case .connected:
            // A client the broker stopped reading from is not idle: its packets are waiting.
            if !readPaused && machine.keepAliveExpired(now: now) {
                close(.keepAliveTimeout, reason: "keep alive timeout (\(machine.keepAlive) s × 1.5)")
            }
        case .closed:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        finish()
        self.context = nil
    }

    private func finish() {
        guard started, !finished else { return }
        finished = true
        flowControl?.timeoutTask?.cancel()
        flowControl = nil
        heldAcknowledgements.removeAll()
        heldOutbound.removeAll()
        loop.connections[ObjectIdentifier(self)] = nil
        broker.metrics.connectionClosed()
        let wasConnected = session != nil
        if let session {
            session.connectionLost(self, publishWill: publishWillOnClose)
            self.session = nil
        }
        machine.closing()
        if wasConnected {
            log(.info, "client disconnected", ["mqtt.reason": "\(closeReason)"])
        }
        if let observed {
            self.observed = nil
            let ending = disconnection ?? MQTTDisconnection(reason: .connectionLost, detail: closeReason)
            for observer in broker.observers { observer.disconnected(observed, ending) }
        }
    }

    /// Tells the observers that the connection was accepted.
    private func notifyConnected(_ connect: ConnectPacket, keepAlive: UInt16) {
        guard !broker.observers.isEmpty, let session else { return }
        let address = context?.channel.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" }
        let info = MQTTConnectionInfo(
            connectionID: broker.connectionCounter.withLockedValue { value in
                value &+= 1
                return value
            },
            principal: session.principal, remoteAddress: address, transport: transport,
            protocolVersion: connect.protocolVersion, keepAlive: keepAlive
        )
        observed = info
        for observer in broker.observers { observer.connected(info) }
    }

    /// A message the platform tagged reached the client (acknowledged, or written at QoS 0).
    func delivered(tag: UInt64) {
        guard let observed else { return }
        for observer in broker.observers { observer.delivered(observed, tag: tag) }
    }

    /// Notes why the connection ends, unless an earlier cause is already known.
    private func ending(_ reason: MQTTDisconnectReason, _ reasonCode: ReasonCode?, _ detail: String?) {
        guard observed != nil, disconnection == nil else { return }
        disconnection = MQTTDisconnection(reason: reason, reasonCode: reasonCode, detail: detail)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        log(.debug, "connection error", ["error": "\(error)"])
        closeReason = "network error"
        ending(.connectionLost, nil, "network error: \(error)")
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        isWritable = context.channel.isWritable
        if isWritable && output.readableBytes > 0 { flushOutput() }
        context.fireChannelWritabilityChanged()
    }

    // MARK: reading

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        loop.stats.bytesReceived &+= buffer.readableBytes
        machine.touch(context.eventLoop.now)
        if var pending = cumulation {
            cumulation = nil
            pending.writeBuffer(&buffer)
            buffer = pending
        }
        process(&buffer)
        if buffer.readableBytes > 0 && machine.phase != .closed { keep(buffer) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        loop.readComplete()
        context.fireChannelReadComplete()
    }

    /// Keeps the unprocessed rest of a read without pinning a large read buffer.
    private func keep(_ buffer: ByteBuffer) {
        if buffer.storageCapacity > 4 * buffer.readableBytes + 4096 {
            var copy = ByteBufferAllocator().buffer(capacity: buffer.readableBytes)
            copy.writeImmutableBuffer(buffer)
            cumulation = copy
        } else {
            cumulation = buffer
        }
    }

    private func process(_ buffer: inout ByteBuffer) {
        while machine.acceptsPackets && !readPaused {
            let frame: (firstByte: UInt8, body: ByteBuffer)
            do {
                guard let next = try decoder.nextFrame(buffer: &buffer) else { return }
                frame = next
            } catch {
                violation(error, firstByte: buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) ?? 0, body: nil)
                return
            }
            loop.stats.packetIn(frame.firstByte >> 4)
            var body = frame.body
            let packet: MQTTPacket
            do {
                packet = try MQTTPacket.decode(firstByte: frame.firstByte, body: &body, version: decoder.protocolVersion ?? .v3_1_1)
            } catch {
                violation(error, firstByte: frame.firstByte, body: frame.body)
                return
            }
            if case .connect(let connect) = packet, decoder.protocolVersion == nil {
                decoder.protocolVersion = connect.protocolVersion
            }
            handle(packet)
        }
    }

    /// A packet broke the protocol. Before CONNECT was accepted, an MQTT 5 client gets a CONNACK
    /// with the reason (an MQTT 3.1.1 client only for an unsupported protocol version); after,
    /// an MQTT 5 client gets a DISCONNECT. Then the connection closes.
    private func violation(_ error: MQTTError, firstByte: UInt8, body: ByteBuffer?) {
        if machine.phase == .awaitingConnect {
            if firstByte >> 4 == MQTTPacketType.connect.rawValue, let body, let level = Self.peekProtocolLevel(body) {
                if level == MQTTProtocolVersion.v5.rawValue {
                    machine = machine.with(version: .v5)
                    refuse(error.reasonCode, reason: error.message, metric: "protocol")
                    return
                }
                if error.code == .unsupportedProtocolVersion {
                    refuse(.unsupportedProtocolVersion, reason: error.message, metric: "protocol")
                    return
                }
            }
            broker.metrics.connectionRefused("protocol")
            log(.info, "connection refused", ["mqtt.reason": "\(error.message)"])
            publishWillOnClose = false
            machine.closing()
            context?.close(promise: nil)
            return
        }
        close(error.reasonCode, reason: error.message)
    }

    /// The protocol level byte of a CONNECT body, if present.
    private static func peekProtocolLevel(_ body: ByteBuffer) -> UInt8? {
        guard let nameLength = body.getInteger(at: body.readerIndex, as: UInt16.self) else { return nil }
        return body.getInteger(at: body.readerIndex + 2 + Int(nameLength), as: UInt8.self)
    }

    private func handle(_ packet: MQTTPacket) {
        switch machine.receive(packet) {
        case .connect(let connect):
            handleConnect(connect)
        case .publish(let publish, let topic):
            handlePublish(publish, topic: topic)
        case .puback(let ack):
            session?.acknowledged(ack.packetIdentifier)
        case .pubrec(let ack):
            session?.received(ack.packetIdentifier, reasonCode: ack.reasonCode)
        case .pubrel(let ack):
            handlePubRel(ack)
        case .pubcomp(let ack):
            session?.completed(ack.packetIdentifier)
        case .subscribe(let subscribe):
            handleSubscribe(subscribe)
        case .unsubscribe(let unsubscribe):
            handleUnsubscribe(unsubscribe)
        case .pingreq:
            sendPacket(.pingresp)
        case .disconnect(let disconnect):
            handleDisconnect(disconnect)
        case .close(let reasonCode, let reason):
            close(reasonCode, reason: reason)
        case .ignore:
            break
        }
    }

    // MARK: CONNECT

    private func handleConnect(_ connect: ConnectPacket) {
        clientIdentifier = connect.clientIdentifier.isEmpty ? nil : connect.clientIdentifier
        if overLimit {
            refuse(.serverBusy, reason: "maximum connections (\(limits.maximumConnections)) reached", metric: "limit")
            return
        }
        if !broker.acceptingConnections.withLockedValue({ $0 }) {
            refuse(.serverUnavailable, reason: "server is shutting down", metric: "limit")
            return
        }
        var identifier = connect.clientIdentifier
        var assigned: String?
        if identifier.isEmpty {
            if connect.protocolVersion != .v5 && !connect.cleanStart {
                refuse(.clientIdentifierNotValid, reason: "an empty client identifier needs clean session", metric: "protocol")
                return
            }
            identifier = broker.assignClientIdentifier()
            if connect.protocolVersion == .v5 { assigned = identifier }
            clientIdentifier = identifier
        }
        if identifier.utf8.count > limits.maximumClientIdLength {
            refuse(.clientIdentifierNotValid, reason: "client identifier longer than \(limits.maximumClientIdLength) bytes", metric: "limit")
            return
        }
        if connect.properties.authenticationMethod != nil {
            refuse(.badAuthenticationMethod, reason: "extended authentication is not supported", metric: "auth")
            return
        }
        if let will = connect.will {
            if let problem = topicLimitProblem(will.topic) {
                refuse(.topicNameInvalid, reason: "will topic: \(problem)", metric: "limit")
                return
            }
            if will.topic.hasPrefix("$SYS") {
                refuse(.notAuthorized, reason: "will topic is reserved", metric: "auth")
                return
            }
            if will.qos > broker.configuration.features.maximumQoS {
                refuse(.qosNotSupported, reason: "will QoS is not supported", metric: "protocol")
                return
            }
            if will.retain && !broker.configuration.features.retainAvailable {
                refuse(.retainNotSupported, reason: "retained wills are not supported", metric: "protocol")
                return
            }
        }
        if connect.protocolVersion == .v5 {
            clientMaximumPacketSize = connect.properties.maximumPacketSize.map { Int($0) } ?? Int.max
            clientTopicAliasMaximum = connect.properties.topicAliasMaximum ?? 0
            sendReasonStrings = connect.properties.requestProblemInformation != 0
        }
        guard let context else { return }
        context.channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
        let request = MQTTAuthenticationRequest(
            clientIdentifier: identifier,
            username: connect.username,
            password: connect.password,
            protocolVersion: connect.protocolVersion,
            remoteAddress: context.channel.remoteAddress,
            transport: transport,
            certificate: peerCertificate,
            properties: connect.properties
        )
        let authenticator = broker.authenticator
        if let result = authenticator.authenticateImmediately(request) {
            authenticated(result, connect: connect, identifier: identifier, assigned: assigned)
            return
        }
        let promise = context.eventLoop.makePromise(of: MQTTAuthenticationResult.self)
        promise.completeWithTask { await authenticator.authenticate(request) }
        let clientIdentifier = identifier
        let assignedIdentifier = assigned
        promise.futureResult.assumeIsolated().whenSuccess { [self] result in
            self.authenticated(result, connect: connect, identifier: clientIdentifier, assigned: assignedIdentifier)
        }
    }

    private func authenticated(_ result: MQTTAuthenticationResult, connect: ConnectPacket, identifier: String, assigned: String?) {
        guard machine.phase == .authenticating, let context, context.channel.isActive else { return }
        var principal: MQTTPrincipal
        switch result {
        case .refuse(let reasonCode, let reason):
            refuse(reasonCode, reason: reason ?? "authentication failed", metric: "auth")
            return
        case .accept(let accepted):
            principal = accepted
        }
        principal.clientIdentifier = identifier
        topicMapping = principal.topicMapping
        var willTopic = connect.will?.topic ?? ""
        if let mapping = topicMapping, connect.will != nil {
            willTopic = mapping.toInternal(willTopic).topic
            if willTopic.hasPrefix("$SYS") || topicLimitProblem(willTopic) != nil {
                refuse(.notAuthorized, reason: "will topic not authorized", metric: "auth")
                return
            }
        }
        if connect.will != nil, !broker.authorizer.allowsEverything,
            broker.authorizer.authorize(principal, .publish, topic: willTopic) == .deny
        {
            refuse(.notAuthorized, reason: "will topic not authorized", metric: "auth")
            return
        }
        let v5 = connect.protocolVersion == .v5
        let requestedExpiry: UInt32 = v5 ? (connect.properties.sessionExpiryInterval ?? 0) : (connect.cleanStart ? 0 : UInt32.max)
        let expiry = min(requestedExpiry, limits.maximumSessionExpiryInterval)
        var keepAlive = connect.keepAlive
        var serverKeepAlive: UInt16?
        if limits.maximumKeepAlive > 0 && (keepAlive == 0 || keepAlive > limits.maximumKeepAlive) {
            keepAlive = limits.maximumKeepAlive
            if v5 { serverKeepAlive = keepAlive } else { keepAlive = connect.keepAlive }
        }
        let session = Session(clientIdentifier: identifier, principal: principal, loop: loop, broker: broker)
        session.expiryInterval = expiry
        if let will = connect.will {
            let message = BrokerMessage(
                publish: PublishPacket(topic: willTopic, payload: will.payload, qos: will.qos, retain: will.retain, properties: will.properties),
                topic: willTopic,
                origin: identifier,
                now: context.eventLoop.now,
                id: broker.persistence?.nextMessageID() ?? 0
            )
            session.will = PendingWill(message: message.compacted(), delay: v5 ? (will.properties.willDelayInterval ?? 0) : 0)
        }
        let grantedKeepAlive = keepAlive
        let announcedKeepAlive = serverKeepAlive
        session.beginSetup()
        broker.registry.open(session, cleanStart: connect.cleanStart).assumeIsolated().whenComplete { [self] result in
            self.broker.metrics.sessionsChanged(to: self.broker.registry.count)
            switch result {
            case .success(let resumed):
                self.established(
                    session, resumed: resumed, connect: connect, requestedExpiry: requestedExpiry,
                    keepAlive: grantedKeepAlive, serverKeepAlive: announcedKeepAlive, assigned: assigned
                )
            case .failure(let error):
                self.log(.error, "session setup failed", ["error": "\(error)"])
                session.attach(self, sendQuota: 1)
                session.connectionLost(self, publishWill: false)
                self.refuse(.unspecifiedError, reason: "session setup failed", metric: "protocol")
            }
        }
    }

    private func established(
        _ session: Session, resumed: Bool, connect: ConnectPacket, requestedExpiry: UInt32,
        keepAlive: UInt16, serverKeepAlive: UInt16?, assigned: String?
    ) {
        guard machine.phase == .authenticating, let context, context.channel.isActive else {
            // The client went away while its session was being set up: treat it as a lost connection.
            session.attach(self, sendQuota: 1)
            session.connectionLost(self, publishWill: true)
            return
        }
        self.session = session
        machine.connectAccepted(version: connect.protocolVersion, keepAlive: keepAlive, sessionExpiryInterval: session.expiryInterval, now: context.eventLoop.now)
        var properties = MQTTProperties()
        if connect.protocolVersion == .v5 {
            let features = broker.configuration.features
            if let assigned { properties.assignedClientIdentifier = assigned }
            if session.expiryInterval != requestedExpiry { properties.sessionExpiryInterval = session.expiryInterval }
            if let serverKeepAlive { properties.serverKeepAlive = serverKeepAlive }
            properties.receiveMaximum = limits.receiveMaximum
            if limits.topicAliasMaximum > 0 { properties.topicAliasMaximum = limits.topicAliasMaximum }
            properties.maximumPacketSize = UInt32(clamping: limits.maximumPacketSize)
            if features.maximumQoS != .exactlyOnce { properties.maximumQoS = features.maximumQoS.rawValue }
            if !features.retainAvailable { properties.retainAvailable = 0 }
            if !features.wildcardSubscriptionsAvailable { properties.wildcardSubscriptionAvailable = 0 }
            if !features.subscriptionIdentifiersAvailable { properties.subscriptionIdentifierAvailable = 0 }
            if !features.sharedSubscriptionsAvailable { properties.sharedSubscriptionAvailable = 0 }
        }
        // A persistent session (and its will) is durable before CONNACK says it exists.
        let mark = loop.persistence.count
        session.save()
        let connack = ConnAckPacket(sessionPresent: resumed, reasonCode: .success, properties: properties)
        let clientReceiveMaximum = connect.protocolVersion == .v5 ? Int(connect.properties.receiveMaximum ?? UInt16.max) : Int.max
        loop.whenDurable(loop.ticket(since: mark)) { [self] in
            guard self.machine.phase == .connected, self.context?.channel.isActive == true else {
                // Gone while the session was being stored: it was never attached, so detach it here.
                session.attach(self, sendQuota: 1)
                session.connectionLost(self, publishWill: self.publishWillOnClose)
                return
            }
            self.sendPacket(.connack(connack))
            self.notifyConnected(connect, keepAlive: keepAlive)
            self.log(
                .info, "client connected",
                [
                    "mqtt.protocol": "\(connect.protocolVersion)", "mqtt.clean_start": "\(connect.cleanStart)",
                    "mqtt.keep_alive": "\(keepAlive)", "mqtt.session_present": "\(resumed)",
                    // The principal's: an authenticator leaves out user names that are secrets.
                    "mqtt.username": "\(session.principal.username ?? "-")",
                    "mqtt.owner": "\(session.principal.sessionOwner ?? "-")",
                ]
            )
            self.loop.forgetQueueFull(clientIdentifier: session.clientIdentifier)
            session.attach(self, sendQuota: min(self.limits.maximumInflight, clientReceiveMaximum))
            self.resumeReading()
        }
    }

    private func resumeReading() {
        guard let context else { return }
        if var pending = cumulation {
            cumulation = nil
            process(&pending)
            if pending.readableBytes > 0 && machine.phase != .closed { keep(pending) }
        }
        if machine.phase != .closed && !readPaused {
            context.channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in }
        }
    }

    // MARK: PUBLISH

    private func topicLimitProblem(_ topic: String) -> String? {
        if topic.utf8.count > limits.maximumTopicLength { return "longer than \(limits.maximumTopicLength) bytes" }
        if MQTTTopic.levelCount(topic) > limits.maximumTopicLevels { return "more than \(limits.maximumTopicLevels) levels" }
        return nil
    }

    private func handlePublish(_ publish: PublishPacket, topic clientTopic: String) {
        guard let session else { return }
        let topic = topicMapping.map { $0.toInternal(clientTopic).topic } ?? clientTopic
        loop.stats.messagesReceived &+= 1
        if topic.utf8.count > limits.maximumTopicLength || MQTTTopic.levelCount(topic) > limits.maximumTopicLevels {
            rejectPublish(publish, .topicNameInvalid, reason: "topic exceeds the broker's limits", topic: topic)
            return
        }
        if topic.utf8.first == UInt8(ascii: "$") && topic.hasPrefix("$SYS") {
            rejectPublish(publish, .notAuthorized, reason: "$SYS topics are reserved for the broker", topic: topic)
            return
        }
        // Unmapped principals (anonymous clients) skip the hooks where they say so: one branch
        // per message instead of two calls.
        let unmapped = topicMapping == nil
        let authorized =
            broker.authorizesEverything
            || (unmapped && broker.authorizesUnmappedOutsideDollarTopics && topic.utf8.first != UInt8(ascii: "$"))
        if !authorized && broker.authorizer.authorize(session.principal, .publish, topic: topic) == .deny {
            rejectPublish(publish, .notAuthorized, reason: "not authorized to publish to this topic", topic: topic)
            return
        }
        if version == .v5, publish.properties.payloadFormatIndicator == 1, !mqttIsValidUTF8(publish.payload) {
            rejectPublish(publish, .payloadFormatInvalid, reason: "payload is marked UTF-8 but is not", topic: topic)
            return
        }
        if publish.qos == .exactlyOnce, let identifier = publish.packetIdentifier {
            if session.awaitingRelease.contains(identifier) {
                sendAcknowledgement(.pubrec(PublishAckPacket(packetIdentifier: identifier)))
                return
            }
            if session.awaitingRelease.count >= Int(limits.receiveMaximum) {
                close(.receiveMaximumExceeded, reason: "more than \(limits.receiveMaximum) QoS 2 messages awaiting release")
                return
            }
        }
        var consumed = false
        var completion: EventLoopFuture<Void>?
        if !unmapped || broker.tapsUnmappedPrincipals {
            let tapped = MQTTTapMessage(
                topic: topic, payload: publish.payload, qos: publish.qos, retain: publish.retain,
                properties: publish.properties, protocolVersion: version
            )
            switch broker.messageTap.inspect(tapped, from: session.principal) {
            case .accept:
                break
            case .reject(let reasonCode, let reason):
                rejectPublish(publish, reasonCode, reason: reason ?? "rejected", topic: topic)
                return
            case .consume:
                consumed = true
            case .acceptAfter(let future):
                completion = future
            case .consumeAfter(let future):
                consumed = true
                completion = future
            }
        }
        let mark = loop.persistence.count
        if !consumed {
            let message = BrokerMessage(
                publish: publish,
                topic: topic,
                origin: session.clientIdentifier,
                now: publish.properties.isEmpty ? NIODeadline.uptimeNanoseconds(0) : loop.eventLoop.now,
                id: broker.persistence?.nextMessageID() ?? 0
            )
            if publish.retain && broker.configuration.features.retainAvailable {
                loop.setRetained(message)
            }
            loop.route(message)
        }
        let acknowledgement: MQTTPacket
        switch publish.qos {
        case .atMostOnce:
            if let completion { waitForCompletion(completion, number: 0, packetIdentifier: nil, qos: .atMostOnce) }
            return
        case .atLeastOnce:
            acknowledgement = .puback(PublishAckPacket(packetIdentifier: publish.packetIdentifier!))
        case .exactlyOnce:
            session.receivedInbound(publish.packetIdentifier!)
            acknowledgement = .pubrec(PublishAckPacket(packetIdentifier: publish.packetIdentifier!))
        }
        // Acknowledged means durable: if routing stored anything (the message for a persistent
        // subscriber, a retained message, inbound QoS 2 state), the answer waits for it.
        let ticket = loop.ticket(since: mark)
        var number: UInt64 = 0
        if completion != nil {
            lastCompletion &+= 1
            number = lastCompletion
        }
        if loop.congested.isEmpty {
            sendAcknowledgement(acknowledgement, ticket: ticket, congestionGated: true, completion: number)
        } else {
            holdAcknowledgement(acknowledgement, ticket: ticket, completion: number, until: loop.congested)
            loop.congested.removeAll(keepingCapacity: true)
        }
        // Registered after the acknowledgement is held: a completion that is already done runs
        // its callback at once.
        if let completion { waitForCompletion(completion, number: number, packetIdentifier: publish.packetIdentifier, qos: publish.qos) }
    }

    // MARK: tap completions

    /// Waits for a tap completion: counts it (stopping reads past the limit) and, when it is
    /// done, releases or answers the held acknowledgement `number` on this connection's loop.
    private func waitForCompletion(_ completion: EventLoopFuture<Void>, number: UInt64, packetIdentifier: UInt16?, qos: QoS) {
        guard let context else { return }
        pendingCompletions += 1
        if pendingCompletions > limits.maximumPendingCompletions && !readPaused {
            readPaused = true
            context.channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
            log(.debug, "platform work pending, reading paused", ["mqtt.pending_completions": "\(pendingCompletions)"])
        }
        let target = completionTarget ?? NIOLoopBound(CompletionTarget(self), eventLoop: context.eventLoop)
        completionTarget = target
        let eventLoop = context.eventLoop
        completion.whenComplete { result in
            if eventLoop.inEventLoop {
                target.value.connection?.completed(number, result, packetIdentifier: packetIdentifier, qos: qos)
            } else {
                eventLoop.execute { target.value.connection?.completed(number, result, packetIdentifier: packetIdentifier, qos: qos) }
            }
        }
    }

    /// A tap completion is done (on this connection's loop).
    private func completed(_ number: UInt64, _ result: Result<Void, any Error>, packetIdentifier: UInt16?, qos: QoS) {
        guard started, !finished else { return }
        pendingCompletions -= 1
        if readPaused && pendingCompletions < limits.maximumPendingCompletions / 2 { resumeAfterCompletions() }
        guard machine.phase == .connected else { return }
        let position = number == 0 ? nil : heldAcknowledgements.firstIndex { $0.completion == number }
        switch result {
        case .success:
            guard let position else { return }
            heldAcknowledgements[position].completion = 0
            if position == 0 { releaseHeld() }
        case .failure(let error):
            let failure = error as? MQTTTapFailure
            var reasonCode = failure?.reasonCode ?? .unspecifiedError
            if reasonCode.rawValue < 0x80 { reasonCode = .unspecifiedError }
            let reason = failure?.reason
            let level: Logger.Level = tapFailureLogged ? .debug : .info
            tapFailureLogged = true
            let disconnecting = version != .v5 && packetIdentifier != nil
            let metadata: Logger.Metadata = [
                "mqtt.reason": "\(reasonCode): \(reason ?? (failure == nil ? "\(error)" : "-"))", "mqtt.qos": "\(qos.rawValue)",
            ]
            if disconnecting {
                log(level, "platform could not take a message, disconnecting the MQTT 3.1.1 client", metadata)
            } else {
                log(level, "platform could not take a message", metadata)
            }
            guard let packetIdentifier, let position else { return }
            // A refused QoS 2 message ends its exchange: the identifier is free again (and, for a
            // persistent session, durably so before the answer).
            let mark = loop.persistence.count
            if qos == .exactlyOnce { _ = session?.releasedInbound(packetIdentifier) }
            let ticket = loop.ticket(since: mark)
            if version != .v5 {
                // MQTT 3.1.1 has no negative acknowledgement: close, and the client resends. The
                // held entry stays, so no later acknowledgement overtakes it meanwhile.
                loop.whenDurable(ticket) { [self] in
                    self.close(.unspecifiedError, reason: "the platform could not take a message")
                }
                return
            }
            var properties = MQTTProperties()
            if sendReasonStrings, let reason { properties.reasonString = reason }
            let answer = PublishAckPacket(packetIdentifier: packetIdentifier, reasonCode: reasonCode, properties: properties)
            heldAcknowledgements[position].item = .control(qos == .atLeastOnce ? .puback(answer) : .pubrec(answer))
            heldAcknowledgements[position].ticket = max(heldAcknowledgements[position].ticket, ticket)
            heldAcknowledgements[position].completion = 0
            if position == 0 { releaseHeld() }
        }
    }

    /// Enough completions are done: read again, on a later turn of the loop (this may run
    /// inside packet processing, when a completion was already done as it was returned).
    private func resumeAfterCompletions() {
        readPaused = false
        guard let context else { return }
        context.eventLoop.assumeIsolated().execute { [self] in
            guard !self.readPaused, self.machine.phase == .connected else { return }
            self.log(.debug, "platform work caught up, reading resumed")
            self.machine.touch(self.loop.eventLoop.now)
            self.resumeReading()
        }
    }

    // MARK: flow control

    /// Sends an answer to the client's packet once `ticket` is durable, after answers already
    /// held (acknowledgements keep the order of the PUBLISHes, MQTT 5 §4.6); PUBACK/PUBREC are
    /// also held while flow control holds this publisher back.
    private func sendAcknowledgement(_ packet: MQTTPacket, ticket: UInt64 = 0, congestionGated: Bool = false, completion: UInt64 = 0) {
        if heldAcknowledgements.isEmpty && ticket <= loop.durableTicket && !(congestionGated && flowControl != nil) && completion == 0 {
            sendPacket(packet)
            return
        }
        heldAcknowledgements.append(HeldPacket(ticket: ticket, congestionGated: congestionGated, completion: completion, item: .control(packet)))
        if ticket > loop.durableTicket { awaitDurability() }
    }

    /// Sends a control packet towards the client (PUBREL) once `ticket` is durable, in order
    /// with held PUBLISHes.
    func sendOutbound(_ packet: MQTTPacket, ticket: UInt64) {
        if heldOutbound.isEmpty && ticket <= loop.durableTicket {
            sendPacket(packet)
            return
        }
        heldOutbound.append(HeldPacket(ticket: ticket, congestionGated: false, item: .control(packet)))
        if ticket > loop.durableTicket { awaitDurability() }
    }

    private func awaitDurability() {
        guard !waitingForDurability else { return }
        waitingForDurability = true
        loop.waitForDurability(self)
    }

    /// The loop's durable ticket advanced: send what no longer has to wait.
    func durabilityAdvanced() {
        waitingForDurability = false
        releaseHeld()
    }

    private func releaseHeld() {
        let durable = loop.durableTicket
        while let first = heldAcknowledgements.first, first.ticket <= durable, !(first.congestionGated && flowControl != nil), first.completion == 0 {
            heldAcknowledgements.removeFirst()
            if case .control(let packet) = first.item { sendPacket(packet) }
        }
        while let first = heldOutbound.first, first.ticket <= durable {
            heldOutbound.removeFirst()
            switch first.item {
            case .control(let packet):
                sendPacket(packet)
            case .publish(let delivery, let packetIdentifier, let dup):
                encodePublish(delivery, packetIdentifier: packetIdentifier, dup: dup, now: loop.eventLoop.now)
            }
        }
        if (heldAcknowledgements.first.map { $0.ticket > durable } ?? false) || (heldOutbound.first.map { $0.ticket > durable } ?? false) {
            awaitDurability()
        }
    }

    /// Holds an acknowledgement back while `sessions` are congested. The publisher's in-flight
    /// window fills and it pauses, so a slow subscriber's queue stops growing instead of
    /// overflowing; the subscriber's draining releases the acknowledgements.
    private func holdAcknowledgement(_ packet: MQTTPacket, ticket: UInt64, completion: UInt64, until sessions: [Session]) {
        let timeout = limits.flowControlTimeout
        guard timeout > 0, let context else {
            sendAcknowledgement(packet, ticket: ticket, congestionGated: true, completion: completion)
            return
        }
        let state = flowControl ?? FlowControl()
        let waiter = AcknowledgementWaiter(loop: loop, connection: NIOLoopBound(self, eventLoop: context.eventLoop))
        for session in sessions where !state.congestedSessions.contains(where: { $0 === session }) {
            if session.addWaiter(waiter) { state.congestedSessions.append(session) }
        }
        if state.congestedSessions.isEmpty {
            sendAcknowledgement(packet, ticket: ticket, congestionGated: true, completion: completion)
            return
        }
        flowControl = state
        sendAcknowledgement(packet, ticket: ticket, congestionGated: true, completion: completion)
        if state.timeoutTask == nil {
            broker.metrics.publisherThrottled()
            log(.debug, "subscriber congested, holding acknowledgements", ["mqtt.congested_client_id": "\(state.congestedSessions[0].clientIdentifier)"])
            state.timeoutTask = context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(Int64(timeout))) { [self] in
                self.flowControl?.timeoutTask = nil
                self.log(.info, "subscriber still congested, releasing held acknowledgements", ["mqtt.flow_control_timeout": "\(timeout)"])
                self.releaseAcknowledgements()
            }
        }
    }

    /// A session this client waits for drained (called on this connection's loop).
    func congestionEased() {
        guard let state = flowControl else { return }
        state.congestedSessions.removeAll { !$0.isCongested }
        if state.congestedSessions.isEmpty { releaseAcknowledgements() }
    }

    private func releaseAcknowledgements() {
        guard let state = flowControl else { return }
        flowControl = nil
        state.timeoutTask?.cancel()
        releaseHeld()
    }

    /// A PUBLISH the broker will not route. MQTT 5 publishers learn why from the PUBACK/PUBREC
    /// reason code; MQTT 3.1.1 has no way to say so, so they get a normal acknowledgement
    /// (MQTT 3.1.1 §3.3.5 allows this).
    private func rejectPublish(_ publish: PublishPacket, _ reasonCode: ReasonCode, reason: String, topic: String) {
        let level: Logger.Level = refusedPublishLogged ? .debug : .info
        refusedPublishLogged = true
        log(level, "publish refused", ["mqtt.topic": "\(topic)", "mqtt.reason": "\(reasonCode): \(reason)"])
        guard let identifier = publish.packetIdentifier else { return }
        let code = version == .v5 ? reasonCode : .success
        var properties = MQTTProperties()
        if version == .v5 && sendReasonStrings { properties.reasonString = reason }
        let ack = PublishAckPacket(packetIdentifier: identifier, reasonCode: code, properties: properties)
        sendAcknowledgement(publish.qos == .atLeastOnce ? .puback(ack) : .pubrec(ack))
    }

    private func handlePubRel(_ ack: PublishAckPacket) {
        let mark = loop.persistence.count
        let known = session?.releasedInbound(ack.packetIdentifier) ?? false
        let code: ReasonCode = known || version != .v5 ? .success : .packetIdentifierNotFound
        // The identifier's release must be durable before PUBCOMP, or after a crash a new
        // message reusing it would be taken for a duplicate.
        sendAcknowledgement(.pubcomp(PublishAckPacket(packetIdentifier: ack.packetIdentifier, reasonCode: code)), ticket: loop.ticket(since: mark))
    }

    // MARK: SUBSCRIBE / UNSUBSCRIBE

    private func handleSubscribe(_ subscribe: SubscribePacket) {
        guard let session else { return }
        let principal = session.principal
        let features = broker.configuration.features
        let identifier = subscribe.properties.subscriptionIdentifiers.first
        var codes: [ReasonCode] = []
        var granted: [String] = []
        var changes: [IndexChange] = []
        var retainedRequests: [(TopicFilter, SubscriptionOptions, Bool)] = []
        let mark = loop.persistence.count
        for subscription in subscribe.subscriptions {
            var filter: TopicFilter
            var rewrite: MQTTTopicRewrite?
            do {
                filter = try TopicFilter(subscription.topicFilter)
                if let topicMapping {
                    (filter, rewrite) = try Self.mapped(filter, topicMapping)
                }
            } catch {
                codes.append(.topicFilterInvalid)
                logRefusedSubscription(subscription.topicFilter, error.message)
                continue
            }
            if let problem = topicLimitProblem(filter.filter) {
                codes.append(.topicFilterInvalid)
                logRefusedSubscription(subscription.topicFilter, problem)
                continue
            }
            if filter.isShared {
                if !features.sharedSubscriptionsAvailable {
                    codes.append(.sharedSubscriptionsNotSupported)
                    continue
                }
                if subscription.options.noLocal && version == .v5 {
                    close(.protocolError, reason: "no local is not allowed on a shared subscription")
                    return
                }
            }
            if !features.wildcardSubscriptionsAvailable && MQTTTopic.hasWildcard(filter.filter) {
                codes.append(.wildcardSubscriptionsNotSupported)
                continue
            }
            if !broker.authorizer.allowsEverything && broker.authorizer.authorize(principal, .subscribe, topic: filter.filter) == .deny {
                codes.append(.notAuthorized)
                logRefusedSubscription(subscription.topicFilter, "not authorized")
                continue
            }
            let isNew = session.subscriptions[filter.raw] == nil
            if isNew && session.subscriptions.count >= limits.maximumSubscriptionsPerClient {
                codes.append(.quotaExceeded)
                logRefusedSubscription(subscription.topicFilter, "more than \(limits.maximumSubscriptionsPerClient) subscriptions")
                continue
            }
            var options = subscription.options
            options.qos = min(options.qos, features.maximumQoS)
            session.subscriptions[filter.raw] = StoredSubscription(filter: filter, options: options, identifier: identifier, rewrite: rewrite)
            if session.isPersistent {
                loop.record(
                    .addSubscription(
                        PersistedSubscription(
                            sessionID: session.persistentID, filter: filter.raw, options: options.byte, identifier: identifier, rewrite: rewrite
                        )
                    )
                )
            }
            changes.append(.add(filter: filter, entry: SubscriberEntry(session: session, options: options, identifier: identifier)))
            codes.append(.granted(options.qos))
            if observed != nil { granted.append(filter.raw) }
            if !filter.isShared { retainedRequests.append((filter, options, isNew)) }
        }
        let packetIdentifier = subscribe.packetIdentifier
        let done = changes.isEmpty ? loop.eventLoop.makeSucceededVoidFuture() : broker.applyIndexChanges(from: loop, changes)
        let reasonCodes = codes
        let grantedFilters = granted
        let retained = retainedRequests
        // A persistent session's new subscriptions are durable before SUBACK.
        let ticket = loop.ticket(since: mark)
        done.assumeIsolated().whenComplete { [self] _ in
            self.loop.whenDurable(ticket) { [self] in
                guard self.machine.phase == .connected, self.session === session else { return }
                self.sendPacket(.suback(SubAckPacket(packetIdentifier: packetIdentifier, reasonCodes: reasonCodes)))
                self.sendRetained(retained, identifier: identifier, to: session)
                if let observed = self.observed, !grantedFilters.isEmpty {
                    for observer in self.broker.observers { observer.subscribed(observed, filters: grantedFilters) }
                }
            }
        }
    }

    private func sendRetained(_ requests: [(TopicFilter, SubscriptionOptions, Bool)], identifier: Int?, to session: Session) {
        guard broker.configuration.features.retainAvailable else { return }
        let now = loop.eventLoop.now
        for (filter, options, isNew) in requests {
            switch options.retainHandling {
            case .doNotSend: continue
            case .sendIfNew where !isNew: continue
            default: break
            }
            for message in broker.retained.matching(filter.filter, now: now) {
                var delivery = Delivery(message: message, qos: min(message.qos, options.qos), retain: true, identifiers: identifier.map { [$0] } ?? [])
                if delivery.qos != .atMostOnce && session.isPersistent { loop.recordStoredDelivery(&delivery, to: session) }
                session.deliver(delivery)
            }
        }
    }

    /// A client's filter in its internal form (the filter inside `$share/{group}/` is the one
    /// rewritten) and the rewrite used.
    private static func mapped(_ filter: TopicFilter, _ mapping: MQTTTopicMapping) throws(MQTTError) -> (TopicFilter, MQTTTopicRewrite?) {
        let (inner, rewrite) = mapping.toInternal(filter.filter)
        guard rewrite != nil else { return (filter, nil) }
        let raw = filter.shareGroup.map { "$share/\($0)/\(inner)" } ?? inner
        return (try TopicFilter(raw), rewrite)
    }

    private func logRefusedSubscription(_ filter: String, _ reason: String) {
        log(.info, "subscription refused", ["mqtt.topic_filter": "\(filter)", "mqtt.reason": "\(reason)"])
    }

    private func handleUnsubscribe(_ unsubscribe: UnsubscribePacket) {
        guard let session else { return }
        var codes: [ReasonCode] = []
        var changes: [IndexChange] = []
        let mark = loop.persistence.count
        for clientFilter in unsubscribe.topicFilters {
            guard var filter = try? TopicFilter(clientFilter) else {
                codes.append(.topicFilterInvalid)
                continue
            }
            if let topicMapping {
                guard let mapped = try? Self.mapped(filter, topicMapping) else {
                    codes.append(.topicFilterInvalid)
                    continue
                }
                filter = mapped.0
            }
            let raw = filter.raw
            if session.subscriptions.removeValue(forKey: raw) != nil {
                if session.isPersistent { loop.record(.removeSubscription(sessionID: session.persistentID, filter: raw)) }
                changes.append(.remove(filter: filter, clientIdentifier: session.clientIdentifier))
                codes.append(.success)
            } else {
                codes.append(.noSubscriptionExisted)
            }
        }
        let packetIdentifier = unsubscribe.packetIdentifier
        let done = changes.isEmpty ? loop.eventLoop.makeSucceededVoidFuture() : broker.applyIndexChanges(from: loop, changes)
        let reasonCodes = codes
        let ticket = loop.ticket(since: mark)
        done.assumeIsolated().whenComplete { [self] _ in
            self.loop.whenDurable(ticket) { [self] in
                guard self.machine.phase == .connected else { return }
                self.sendPacket(.unsuback(UnsubAckPacket(packetIdentifier: packetIdentifier, reasonCodes: reasonCodes)))
            }
        }
    }

    // MARK: DISCONNECT and closing

    private func handleDisconnect(_ disconnect: DisconnectPacket) {
        publishWillOnClose = version == .v5 && disconnect.reasonCode == .disconnectWithWillMessage
        if let requested = disconnect.properties.sessionExpiryInterval, let session {
            session.expiryInterval = min(requested, limits.maximumSessionExpiryInterval)
            session.save()
        }
        closeReason = disconnect.reasonCode == .normalDisconnection ? "client disconnected" : "client disconnected: \(disconnect.reasonCode)"
        ending(.clean, disconnect.reasonCode, disconnect.properties.reasonString)
        closeAfterFlush()
    }

    /// Closes because of a protocol violation or limit (server-initiated, will published).
    func close(_ reasonCode: ReasonCode, reason: String) {
        guard machine.phase != .closed else { return }
        if machine.phase == .connected && version == .v5 {
            var properties = MQTTProperties()
            if sendReasonStrings { properties.reasonString = reason }
            sendPacket(.disconnect(DisconnectPacket(reasonCode: reasonCode, properties: properties)))
        }
        closeReason = "\(reasonCode): \(reason)"
        ending(reasonCode == .keepAliveTimeout ? .keepAliveTimeout : .protocolError, reasonCode, reason)
        if session == nil {
            broker.metrics.connectionRefused("protocol")
            log(.info, "connection refused", ["mqtt.reason": "\(closeReason)"])
        }
        machine.closing()
        closeAfterFlush()
    }

    /// Refuses a CONNECT with a CONNACK carrying the reason, then closes.
    private func refuse(_ reasonCode: ReasonCode, reason: String, metric: String) {
        broker.metrics.connectionRefused(metric)
        log(.info, "connection refused", ["mqtt.reason": "\(reasonCode): \(reason)"])
        var properties = MQTTProperties()
        if version == .v5 { properties.reasonString = reason }
        sendPacket(.connack(ConnAckPacket(sessionPresent: false, reasonCode: reasonCode, properties: properties)))
        publishWillOnClose = false
        closeReason = "refused: \(reason)"
        machine.closing()
        closeAfterFlush()
    }

    /// The session was taken over by a new connection with the same client identifier.
    func takenOver() {
        session = nil
        publishWillOnClose = false
        closeReason = "session taken over"
        ending(.takenOver, .sessionTakenOver, "session taken over")
        if version == .v5 && machine.phase == .connected {
            sendPacket(.disconnect(DisconnectPacket(reasonCode: .sessionTakenOver)))
        }
        log(.info, "client disconnected", ["mqtt.reason": "session taken over"])
        machine.closing()
        closeAfterFlush()
    }

    /// The platform ends the connection (``MQTTBroker/disconnect(where:reasonCode:reason:)``):
    /// MQTT 5 clients get DISCONNECT with `reasonCode`; the will is published, as for any
    /// server-initiated disconnection (MQTT 5 §3.1.2.5).
    func disconnectByServer(_ reasonCode: ReasonCode, reason: String) {
        guard machine.phase == .connected, session != nil else { return }
        log(.info, "disconnecting client", ["mqtt.reason": "\(reasonCode): \(reason)"])
        ending(.administrative, reasonCode, reason)
        close(reasonCode, reason: reason)
    }

    /// The broker is shutting down: MQTT 5 clients are told so (0x8B).
    func shutdown() {
        guard machine.phase != .closed else { return }
        publishWillOnClose = false
        closeReason = "server shutting down"
        ending(.serverShutdown, .serverShuttingDown, "server shutting down")
        if version == .v5 && machine.phase == .connected {
            sendPacket(.disconnect(DisconnectPacket(reasonCode: .serverShuttingDown)))
        }
        machine.closing()
        closeAfterFlush()
    }

    /// Closes the channel now, without waiting for pending writes (a peer that stopped reading
    /// must not hold up shutdown).
    func forceClose() {
        guard let context else { return }
        context.channel.close(mode: .all, promise: nil)
    }

    private func closeAfterFlush() {
        guard let context else { return }
        isDirty = false
        if output.readableBytes > 0 {
            let buffer = output
            output = Self.emptyBuffer
            loop.stats.bytesSent &+= buffer.readableBytes
            context.writeAndFlush(wrapOutboundOut(buffer)).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        } else {
            context.close(promise: nil)
        }
    }

    // MARK: writing

    /// Encodes a control packet into the connection's output.
    func sendPacket(_ packet: MQTTPacket) {
        prepareOutput()
        packet.write(to: &output, version: version)
        loop.stats.packetOut(packet.type)
        markDirty()
    }

    /// Encodes a PUBLISH for a delivery. Returns false when the message was dropped: larger than
    /// the client's maximum packet size, or QoS 0 to a client that is not reading fast enough.
    ///
    /// A delivery whose state must be durable first (`ticket`), or that would overtake held
    /// ones, waits in order; it has then passed the size check and counts as sent.
    func sendPublish(_ delivery: Delivery, packetIdentifier: UInt16?, dup: Bool, now: NIODeadline, ticket: UInt64 = 0) -> Bool {
        guard heldOutbound.isEmpty && ticket <= loop.durableTicket else {
            let message = delivery.message
            let topic = session?.externalTopic(message.topic) ?? message.topic
            var size = 2 + topic.utf8.count + message.payload.readableBytes + (packetIdentifier == nil ? 0 : 2)
            if version == .v5 { size += message.properties.encodedSize + 16 }
            if 1 + ByteBuffer.mqttVariableByteIntegerSize(size) + size > clientMaximumPacketSize {
                loop.stats.drop(.packetTooLarge)
                return false
            }
            heldOutbound.append(HeldPacket(ticket: ticket, congestionGated: false, item: .publish(delivery, packetIdentifier: packetIdentifier, dup: dup)))
            if ticket > loop.durableTicket { awaitDurability() }
            return true
        }
        return encodePublish(delivery, packetIdentifier: packetIdentifier, dup: dup, now: now)
    }

    @discardableResult
    private func encodePublish(_ delivery: Delivery, packetIdentifier: UInt16?, dup: Bool, now: NIODeadline) -> Bool {
        if packetIdentifier == nil && !isWritable && output.readableBytes >= limits.maximumPendingBytes {
            loop.stats.drop(.slowConsumer)
            return false
        }
        let message = delivery.message
        var topic = session?.externalTopic(message.topic) ?? message.topic
        var remaining = 2 + message.payload.readableBytes + (packetIdentifier == nil ? 0 : 2)
        var properties = MQTTProperties()
        var newAlias: UInt16 = 0
        if version == .v5 {
            properties = message.properties
            if let expiry = message.remainingExpiry(at: now) { properties.messageExpiryInterval = expiry }
            for identifier in delivery.identifiers { properties.append(.subscriptionIdentifier(identifier)) }
            if clientTopicAliasMaximum > 0 {
                if let alias = outboundAliases[topic] {
                    properties.append(.topicAlias(alias))
                    topic = ""
                } else if outboundAliases.count < Int(clientTopicAliasMaximum) {
                    newAlias = UInt16(outboundAliases.count + 1)
                    properties.append(.topicAlias(newAlias))
                }
            }
            remaining += properties.encodedSize
        }
        remaining += topic.utf8.count
        let total = 1 + ByteBuffer.mqttVariableByteIntegerSize(remaining) + remaining
        if total > clientMaximumPacketSize {
            loop.stats.drop(.packetTooLarge)
            return false
        }
        if newAlias != 0 { outboundAliases[topic] = newAlias }
        prepareOutput()
        let firstByte: UInt8 = 0x30 | (dup ? 0x08 : 0) | (delivery.qos.rawValue << 1) | (delivery.retain ? 0x01 : 0)
        output.writeInteger(firstByte)
        output.writeMQTTVariableByteInteger(remaining)
        output.writeMQTTString(topic)
        if let packetIdentifier { output.writeInteger(packetIdentifier) }
        if version == .v5 { properties.write(to: &output) }
        output.writeImmutableBuffer(message.payload)
        loop.stats.messagesSent &+= 1
        loop.stats.packetOut(.publish)
        markDirty()
        return true
    }

    /// Gives the output buffer storage sized like the last flush, on first use after a flush.
    @inline(__always)
    private func prepareOutput() {
        if output.capacity == 0 {
            output = ByteBufferAllocator().buffer(capacity: outputSizeHint)
        }
    }

    @inline(__always)
    private func markDirty() {
        if !isDirty {
            isDirty = true
            loop.markDirty(self)
        }
    }

    /// Writes and flushes the output gathered in this loop iteration (called by ``LoopContext``).
    func flushOutput() {
        isDirty = false
        guard isWritable, output.readableBytes > 0, let context, context.channel.isActive else { return }
        let buffer = output
        output = Self.emptyBuffer
        outputSizeHint = min(max(buffer.readableBytes, 256), 65_536)
        loop.stats.bytesSent &+= buffer.readableBytes
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }
}

extension ConnectionStateMachine {
    /// A copy that encodes replies for `version` (used to answer a malformed MQTT 5 CONNECT).
    func with(version: MQTTProtocolVersion) -> ConnectionStateMachine {
        var copy = self
        copy.overrideVersion(version)
        return copy
    }
}

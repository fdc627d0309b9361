import Atomics
import Logging
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle

/// A point-in-time view of the broker's counters.
public struct MQTTBrokerStatistics: Sendable {
    public var connections: Int
    public var sessions: Int
    public var subscriptions: Int
    public var retainedMessages: Int
    public var messagesReceived: Int
    public var messagesSent: Int
    public var messagesDropped: Int
    public var bytesReceived: Int
    public var bytesSent: Int
}

/// A bound listener socket.
public struct MQTTListener: Sendable {
    /// The address the listener is bound to (with the chosen port when 0 was asked for).
    public let localAddress: SocketAddress
    let channel: any Channel

    /// The bound port.
    public var port: Int { localAddress.port ?? 0 }

    /// Stops accepting new connections on this listener.
    public func close() async {
        try? await channel.close()
    }
}

/// The MQTT 3.1.1 / 5.0 broker.
///
/// Connections run on the event loops of the group given at creation; each loop keeps its own
/// replica of the subscription index, so publishing takes no global lock. Sessions stay on the
/// loop of the connection that opened them. Platform behaviour plugs in through the
/// ``MQTTAuthenticator``, ``MQTTAuthorizer`` and ``MQTTMessageTap`` hooks, and
/// ``MQTTConnectionObserver``s follow connections' lives.
///
/// Run it as a swift-service-lifecycle `Service`: `run()` publishes `$SYS` topics until
/// graceful shutdown, then disconnects every client (MQTT 5 clients with 0x8B).
public final class MQTTBroker: Service, Sendable {
    let core: BrokerCore
    /// The event loops connections run on.
    public let eventLoopGroup: any EventLoopGroup
    private let listeners = NIOLockedValueBox<[any Channel]>([])
    private let sysTask = NIOLockedValueBox<[RepeatedTask]>([])
    /// Spreads ``publish(topic:payload:qos:retain:properties:deliveryTag:)`` over the loops.
    let platformPublishCounter = NIOLockedValueBox<Int>(0)

    /// Creates a broker. Call ``bind(host:port:tlsContext:)`` (or ``bind(host:port:tls:)``) to listen, or
    /// ``addConnectionHandler(to:transport:)`` to serve channels set up elsewhere (WebSocket).
    public init(
        configuration: BrokerConfiguration = .init(),
        eventLoopGroup: any EventLoopGroup,
        authenticator: any MQTTAuthenticator = AllowAllAuthenticator(),
        authorizer: any MQTTAuthorizer = AllowAllAuthorizer(),
        messageTap: any MQTTMessageTap = NoMessageTap(),
        observers: [any MQTTConnectionObserver] = [],
        sessionStore: (any MQTTSessionStore)? = nil,
        logger: Logger
    ) {
        self.eventLoopGroup = eventLoopGroup
        self.core = BrokerCore(
            configuration: configuration,
            eventLoopGroup: eventLoopGroup,
            authenticator: authenticator,
            authorizer: authorizer,
            messageTap: messageTap,
            observers: observers,
            sessionStore: sessionStore,
            logger: logger
        )
    }

    /// What ``recover()`` found in the session store.
    public struct RecoverySummary: Sendable, CustomStringConvertible {
        public var sessions: Int
        public var subscriptions: Int
        public var queuedMessages: Int
        public var inflightMessages: Int
        public var retainedMessages: Int
        public var expiredSessions: Int

        public var description: String {
            "\(sessions) sessions, \(subscriptions) subscriptions, \(queuedMessages) queued and \(inflightMessages) in-flight messages, \(retainedMessages) retained messages"
        }
    }

    /// Loads persistent sessions, queued and in-flight messages, inbound QoS 2 state, retained
    /// messages and pending wills from the session store. Call it once, before listening.
    @discardableResult
    public func recover() async throws -> RecoverySummary {
        guard let persistence = core.persistence else {
            return RecoverySummary(sessions: 0, subscriptions: 0, queuedMessages: 0, inflightMessages: 0, retainedMessages: 0, expiredSessions: 0)
        }
        let state = try persistence.store.recover()
        persistence.resume(after: state)
        return try await Recovery(core: core, state: state).run()
    }

    /// The configuration the broker runs with.
    public var configuration: BrokerConfiguration { core.configuration }

    /// Adds the MQTT connection handler to `channel`, after whatever transport handlers
    /// (TLS, WebSocket) are already in its pipeline. Call it on the channel's event loop.
    public func addConnectionHandler(to channel: any Channel, transport: MQTTTransport, peerCertificate: MQTTPeerCertificate? = nil) throws {
        guard let loop = core.loopContext(for: channel.eventLoop) else {
            throw ChannelError.operationUnsupported
        }
        let handler = MQTTConnectionHandler(broker: core, loop: loop, transport: transport)
        handler.peerCertificate = peerCertificate
        try channel.pipeline.syncOperations.addHandler(handler)
    }

    /// Listens for MQTT over TCP (or TLS when `tlsContext` is given) on `host:port`; port 0
    /// picks a free port.
    public func bind(host: String, port: Int, tlsContext: NIOSSLContext? = nil) async throws -> MQTTListener {
        try await bind(host: host, port: port, tls: tlsContext.map { MQTTTLSContextProvider($0) })
    }

    /// Listens for MQTT over TLS (or TCP when `tls` is nil) on `host:port`; port 0 picks a free
    /// port. Each connection uses the provider's context of the moment it is accepted, so the
    /// certificate can be replaced while the listener runs. Clients that fail the handshake are
    /// closed with one log line; a verified client certificate reaches the
    /// ``MQTTAuthenticator`` in ``MQTTAuthenticationRequest/certificate``.
    public func bind(host: String, port: Int, tls: MQTTTLSContextProvider?) async throws -> MQTTListener {
        let channel = try await ServerBootstrap(group: eventLoopGroup)
            .serverChannelOption(ChannelOptions.backlog, value: 4096)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(ChannelOptions.maxMessagesPerRead, value: 16)
            // NIO keeps each channel's receive buffer between reads; starting small (and letting
            // busy publishers grow it) keeps an idle connection's footprint low.
            .childChannelOption(
                ChannelOptions.recvAllocator,
                value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 64, maximum: 65_536)
            )
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try self.addTLSHandlers(to: channel, tls: tls)
                    } else {
                        try self.addConnectionHandler(to: channel, transport: .tcp)
                    }
                }
            }
            .bind(host: host, port: port)
            .get()
        listeners.withLockedValue { $0.append(channel) }
        guard let address = channel.localAddress else { throw ChannelError.unknownLocalAddress }
        return MQTTListener(localAddress: address, channel: channel)
    }

    /// Counters as they are now.
    public var statistics: MQTTBrokerStatistics {
        let metrics = core.metrics
        return MQTTBrokerStatistics(
            connections: metrics.connections.load(ordering: .relaxed),
            sessions: core.registry.count,
            subscriptions: metrics.subscriptions.load(ordering: .relaxed),
            retainedMessages: core.retained.count,
            messagesReceived: metrics.messagesReceived.load(ordering: .relaxed),
            messagesSent: metrics.messagesSent.load(ordering: .relaxed),
            messagesDropped: metrics.messagesDropped.load(ordering: .relaxed),
            bytesReceived: metrics.bytesReceived.load(ordering: .relaxed),
            bytesSent: metrics.bytesSent.load(ordering: .relaxed)
        )
    }

    /// Starts periodic work (`$SYS` topics). Called by ``run()``; call it yourself when not
    /// running the broker as a service.
    public func start() {
        guard let loop = core.loops.first else { return }
        var tasks: [RepeatedTask] = []
        let interval = core.configuration.sysInterval
        if interval > 0 {
            let sys = SysTopics(core: core)
            tasks.append(loop.eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: .seconds(Int64(interval))) { _ in
                sys.publish(on: loop)
            })
        }
        if let persistence = core.persistence {
            if persistence.durability == .batch {
                let every = TimeAmount.milliseconds(Int64(max(1, core.configuration.syncInterval)))
                tasks.append(loop.eventLoop.scheduleRepeatedTask(initialDelay: every, delay: every) { _ in persistence.requestSync() })
            }
            tasks.append(loop.eventLoop.scheduleRepeatedTask(initialDelay: .seconds(5), delay: .seconds(5)) { _ in persistence.requestPurge() })
        }
        sysTask.withLockedValue { $0 = tasks }
    }

    /// Runs until graceful shutdown is requested, then shuts the broker down.
    public func run() async throws {
        start()
        try? await gracefulShutdown()
        await shutdown()
    }

    /// Stops accepting connections, disconnects every client (MQTT 5 clients with "server
    /// shutting down") and waits up to `timeout` for the connections to close.
    public func shutdown(timeout: TimeAmount = .seconds(5)) async {
        core.acceptingConnections.withLockedValue { $0 = false }
        sysTask.withLockedValue { tasks in
            for task in tasks { task.cancel() }
            tasks.removeAll()
        }
        let servers = listeners.withLockedValue { channels -> [any Channel] in
            defer { channels.removeAll() }
            return channels
        }
        for server in servers { try? await server.close() }
        var closing: [EventLoopFuture<Void>] = []
        for loop in core.loops {
            let futures = try? await loop.eventLoop.submit { () -> [EventLoopFuture<Void>] in
                var futures: [EventLoopFuture<Void>] = []
                for connection in loop.connections.values {
                    if let future = connection.closeFuture { futures.append(future) }
                    connection.shutdown()
                }
                loop.flush()
                loop.stopTimers()
                return futures
            }.get()
            closing.append(contentsOf: futures ?? [])
        }
        if let first = core.loops.first?.eventLoop, !closing.isEmpty {
            let deadline = first.scheduleTask(in: timeout) {}
            EventLoopFuture.andAllComplete(closing, on: first).whenComplete { _ in deadline.cancel() }
            _ = try? await deadline.futureResult.get()
            // Whatever did not close in time is closed now, so that nothing of the broker is
            // still running (or completing promises on other loops) when the caller shuts the
            // event loops down.
            for loop in core.loops {
                try? await loop.eventLoop.submit {
                    for connection in loop.connections.values { connection.forceClose() }
                }.get()
            }
            for future in closing { _ = try? await future.get() }
        }
        // Closing connections updates the subscription index on every loop, and those updates
        // complete back on the loop they came from: two rounds through every loop let all of it
        // finish (a promise left pending on a loop that is then shut down would leak).
        for _ in 0..<2 {
            for loop in core.loops { try? await loop.eventLoop.submit {}.get() }
        }
        // Sessions noted their disconnection; write everything pending, then close the store.
        if let persistence = core.persistence, let first = core.loops.first?.eventLoop {
            for loop in core.loops {
                try? await loop.eventLoop.submit { loop.handOffPersistence() }.get()
            }
            await persistence.shutdown(on: first)
        }
    }
}

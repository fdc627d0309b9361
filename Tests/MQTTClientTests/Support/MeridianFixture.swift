import Foundation
import Logging
import MQTTBroker
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket

/// Our own broker, in-process: an `MQTTBroker` on a two-loop event-loop group with a TCP
/// listener and a WebSocket listener (HTTP upgrade on `/mqtt` with subprotocol `mqtt`, wired
/// as `meridian serve` wires its HTTP port), plus TLS and secure WebSocket listeners when the
/// options ask for them. Persistence off, like the Mosquitto fixture.
///
/// ``kill()`` closes the listeners and every client socket without a goodbye and drops the
/// broker with all its state, as killing a broker process would; ``restart()`` starts a fresh
/// broker on the same ports. (The fixture sets up its own listeners, through the broker's public
/// `addConnectionHandler`, so that it holds every accepted socket.)
final class MeridianFixture: TestBrokerFixture, @unchecked Sendable {
    let host = "127.0.0.1"
    let mqttPort: Int
    let wsPort: Int
    let tlsPort: Int?
    let tlsWebSocketPort: Int?
    private let options: BrokerOptions
    private let lock = NSLock()
    private var running: Running?

    /// One incarnation of the broker.
    private struct Running {
        var group: MultiThreadedEventLoopGroup
        var broker: MQTTBroker
        var listeners: [any Channel]
        var connections: AcceptedChannels
        var ports: Ports
    }

    private struct Ports {
        var mqtt = 0
        var webSocket = 0
        var tls: Int?
        var tlsWebSocket: Int?
    }

    private init(options: BrokerOptions, running: Running) {
        self.options = options
        self.running = running
        self.mqttPort = running.ports.mqtt
        self.wsPort = running.ports.webSocket
        self.tlsPort = running.ports.tls
        self.tlsWebSocketPort = running.ports.tlsWebSocket
    }

    /// Starts a broker on free ports.
    static func start(_ options: BrokerOptions) async throws -> MeridianFixture {
        var ports = Ports()
        if options.tls != nil {
            ports.tls = 0
            if options.tlsWebSocket { ports.tlsWebSocket = 0 }
        }
        let running = try await launch(options, ports: ports)
        return MeridianFixture(options: options, running: running)
    }

    func kill() async {
        guard let running = takeRunning() else { return }
        for listener in running.listeners { try? await listener.close() }
        for connection in running.connections.all { try? await connection.close() }
        await Self.shutDown(running)
    }

    func restart() async throws {
        let ports = Ports(mqtt: mqttPort, webSocket: wsPort, tls: tlsPort, tlsWebSocket: tlsWebSocketPort)
        // The same ports again: one may briefly be held by another test's socket (an ephemeral
        // client port, or a listener on port 0), so retry for a while before giving up.
        var attempt = 0
        while true {
            do {
                let running = try await Self.launch(options, ports: ports)
                lock.withLock { self.running = running }
                return
            } catch {
                attempt += 1
                guard attempt < 100, "\(error)".contains("Address already in use") else { throw error }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    func stop() async {
        guard let running = takeRunning() else { return }
        for listener in running.listeners { try? await listener.close() }
        await Self.shutDown(running)
    }

    private func takeRunning() -> Running? {
        lock.withLock {
            defer { running = nil }
            return running
        }
    }

    /// Shuts the broker down (MQTT 5 clients still connected get 0x8B), lets the loops finish
    /// what they still hand each other, then stops them: a loop stopped with such a task pending
    /// would leak its promise, which debug builds trap on.
    private static func shutDown(_ running: Running) async {
        await running.broker.shutdown(timeout: .seconds(1))
        for _ in 0..<3 {
            for loop in running.group.makeIterator() { try? await loop.submit {}.get() }
        }
        try? await running.group.shutdownGracefully()
    }

    // MARK: setting up

    private static func launch(_ options: BrokerOptions, ports: Ports) async throws -> Running {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        var configuration = BrokerConfiguration()
        configuration.sysInterval = 0
        configuration.durability = .none
        if let size = options.maximumPacketSize { configuration.limits.maximumPacketSize = size }
        if let inflight = options.maximumInflightMessages { configuration.limits.maximumInflight = inflight }
        var logger = Logger(label: "meridian-fixture")
        logger.logLevel = .critical
        let broker = MQTTBroker(
            configuration: configuration,
            eventLoopGroup: group,
            authenticator: options.allowAnonymous ? AllowAllAuthenticator() : RefuseEveryoneAuthenticator(),
            logger: logger
        )
        var running = Running(
            group: group,
            broker: broker,
            listeners: [],
            connections: AcceptedChannels(),
            ports: ports
        )
        do {
            let tlsContext = try options.tls.map { try makeTLSContext($0) }
            let tcp = try await bindMQTT(
                broker,
                group: group,
                port: ports.mqtt,
                tls: nil,
                accepted: running.connections
            )
            running.listeners.append(tcp)
            running.ports.mqtt = tcp.localAddress?.port ?? 0
            let webSocket = try await bindWebSocket(
                broker,
                group: group,
                port: ports.webSocket,
                tls: nil,
                accepted: running.connections
            )
            running.listeners.append(webSocket)
            running.ports.webSocket = webSocket.localAddress?.port ?? 0
            if let tlsContext, let tlsPort = ports.tls {
                let secure = try await bindMQTT(
                    broker,
                    group: group,
                    port: tlsPort,
                    tls: tlsContext,
                    accepted: running.connections
                )
                running.listeners.append(secure)
                running.ports.tls = secure.localAddress?.port ?? 0
            }
            if let tlsContext, let tlsWebSocketPort = ports.tlsWebSocket {
                let secure = try await bindWebSocket(
                    broker,
                    group: group,
                    port: tlsWebSocketPort,
                    tls: tlsContext,
                    accepted: running.connections
                )
                running.listeners.append(secure)
                running.ports.tlsWebSocket = secure.localAddress?.port ?? 0
            }
            broker.start()
            return running
        } catch {
            for listener in running.listeners { try? await listener.close() }
            await shutDown(running)
            throw error
        }
    }

    private static func makeTLSContext(_ files: BrokerOptions.TLSFiles) throws -> NIOSSLContext {
        let chain = try NIOSSLCertificate.fromPEMFile(files.certificateFile).map {
            NIOSSLCertificateSource.certificate($0)
        }
        let key = try NIOSSLPrivateKey(file: files.keyFile, format: .pem)
        return try NIOSSLContext(
            configuration: .makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
        )
    }

    /// An MQTT listener (TLS when `tls` is given), set up as the broker's own `bind` does.
    private static func bindMQTT(
        _ broker: MQTTBroker,
        group: MultiThreadedEventLoopGroup,
        port: Int,
        tls: NIOSSLContext?,
        accepted: AcceptedChannels
    ) async throws -> any Channel {
        try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    accepted.add(channel)
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls))
                    }
                    try broker.addConnectionHandler(to: channel, transport: tls == nil ? .tcp : .tls)
                }
            }
            .bind(host: "127.0.0.1", port: port)
            .get()
    }

    /// An HTTP listener that upgrades `GET /mqtt` offering subprotocol `mqtt` to WebSocket and
    /// hands the connection to the broker; anything else gets 404.
    private static func bindWebSocket(
        _ broker: MQTTBroker,
        group: MultiThreadedEventLoopGroup,
        port: Int,
        tls: NIOSSLContext?,
        accepted: AcceptedChannels
    ) async throws -> any Channel {
        let maximumFrameSize = max(broker.configuration.limits.maximumPacketSize, 1 << 16)
        return try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                let upgrader = NIOWebSocketServerUpgrader(
                    maxFrameSize: maximumFrameSize,
                    automaticErrorHandling: true,
                    shouldUpgrade: { channel, head in
                        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
                        let offered = head.headers[canonicalForm: "Sec-WebSocket-Protocol"].map { $0.lowercased() }
                        guard path == "/mqtt", offered.contains("mqtt") else {
                            return channel.eventLoop.makeSucceededFuture(nil)
                        }
                        return channel.eventLoop.makeSucceededFuture(HTTPHeaders([("Sec-WebSocket-Protocol", "mqtt")]))
                    },
                    upgradePipelineHandler: { channel, _ in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(WebSocketMQTTHandler())
                            try broker.addConnectionHandler(
                                to: channel,
                                transport: tls == nil ? .webSocket : .secureWebSocket
                            )
                        }
                    }
                )
                return channel.eventLoop.makeCompletedFuture {
                    accepted.add(channel)
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls))
                    }
                    let notFound = NotFoundResponder()
                    let boundNotFound = NIOLoopBound(notFound, eventLoop: channel.eventLoop)
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                        withServerUpgrade: (
                            upgraders: [upgrader],
                            completionHandler: { context in
                                context.pipeline.syncOperations.removeHandler(boundNotFound.value, promise: nil)
                            }
                        )
                    )
                    try channel.pipeline.syncOperations.addHandler(notFound)
                }
            }
            .bind(host: "127.0.0.1", port: port)
            .get()
    }

    /// Answers requests that were not upgraded with 404.
    private final class NotFoundResponder: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard case .end = unwrapInboundIn(data) else { return }
            let head = HTTPResponseHead(version: .http1_1, status: .notFound, headers: ["Content-Length": "0"])
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}

/// What a broker without anonymous access and without any known user does (Mosquitto with
/// `allow_anonymous false` and no password file): refuses everyone.
private struct RefuseEveryoneAuthenticator: MQTTAuthenticator {
    func authenticate(_ request: MQTTAuthenticationRequest) async -> MQTTAuthenticationResult {
        request.username == nil ? .refuse(.notAuthorized) : .refuse(.badUserNameOrPassword)
    }
}

/// The sockets a fixture's listeners accepted and that are still open.
private final class AcceptedChannels: Sendable {
    private let channels = NIOLockedValueBox<[ObjectIdentifier: any Channel]>([:])

    func add(_ channel: any Channel) {
        let key = ObjectIdentifier(channel)
        channels.withLockedValue { $0[key] = channel }
        channel.closeFuture.whenComplete { _ in
            self.channels.withLockedValue { $0[key] = nil }
        }
    }

    var all: [any Channel] { channels.withLockedValue { Array($0.values) } }
}

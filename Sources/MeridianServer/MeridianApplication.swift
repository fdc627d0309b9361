import Atomics
import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import MQTTBroker
import MeridianStorage
import NIOCore
import NIOPosix
import Prometheus
import ServiceLifecycle
import UnixSignals

/// The `meridian serve` process: the MQTT broker (TCP, and WebSocket on the HTTP port) and the
/// HTTP server, on one shared event-loop group, run by one `ServiceGroup` that shuts everything
/// down gracefully on SIGTERM/SIGINT.
public struct MeridianApplication: Sendable {
    public let configuration: MeridianConfiguration
    public let logger: Logger

    public init(configuration: MeridianConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// The addresses the server ended up listening on.
    public struct Endpoints: Sendable {
        public var mqttPort: Int
        public var httpPort: Int

        /// The start-up line scripts read: `listening mqtt=… http=…`.
        public var listeningLine: String { "listening mqtt=\(mqttPort) http=\(httpPort)" }
    }

    /// Runs until SIGTERM/SIGINT, printing the `listening` line on stdout once every listener
    /// is bound.
    public func run() async throws {
        try await run(gracefulShutdownSignals: [.sigterm, .sigint]) { endpoints in
            // Unbuffered, so scripts reading a pipe see it at once.
            FileHandle.standardOutput.write(Data((endpoints.listeningLine + "\n").utf8))
        }
    }

    /// Runs the server; `onListening` is called once every listener is bound.
    public func run(
        gracefulShutdownSignals: [UnixSignal],
        onListening: @escaping @Sendable (Endpoints) async -> Void
    ) async throws {
        let registry = MeridianMetrics.bootstrap()
        try FileManager.default.createDirectory(atPath: configuration.dataDirectory, withIntermediateDirectories: true)
        let threads = EventLoopThreads.resolve(configuration.network.eventLoopThreads)
        logger.debug("event loops", metadata: ["threads": "\(threads)"])
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        do {
            try await serve(group: group, registry: registry, gracefulShutdownSignals: gracefulShutdownSignals, onListening: onListening)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        try await group.shutdownGracefully()
    }

    private func serve(
        group: MultiThreadedEventLoopGroup,
        registry: PrometheusCollectorRegistry,
        gracefulShutdownSignals: [UnixSignal],
        onListening: @escaping @Sendable (Endpoints) async -> Void
    ) async throws {
        var brokerConfiguration = configuration.broker
        if brokerConfiguration.version == BrokerConfiguration().version {
            brokerConfiguration.version = "meridian \(MeridianVersion.current)"
        }
        let store = try openSessionStore(durability: brokerConfiguration.durability)
        let broker = MQTTBroker(configuration: brokerConfiguration, eventLoopGroup: group, sessionStore: store, logger: logger)
        if store != nil {
            let started = NIODeadline.now()
            let summary = try await broker.recover()
            let milliseconds = (NIODeadline.now() - started).nanoseconds / 1_000_000
            logger.info(
                "recovered broker state",
                metadata: [
                    "sessions": "\(summary.sessions)", "subscriptions": "\(summary.subscriptions)",
                    "queued": "\(summary.queuedMessages)", "inflight": "\(summary.inflightMessages)",
                    "retained": "\(summary.retainedMessages)", "expired_sessions": "\(summary.expiredSessions)",
                    "duration_ms": "\(milliseconds)",
                ]
            )
        }
        let network = configuration.network
        let mqttListener: MQTTListener
        do {
            mqttListener = try await broker.bind(host: network.bind, port: network.mqttPort)
        } catch {
            throw MeridianStartupError("cannot listen for MQTT on \(network.bind):\(network.mqttPort): \(error)")
        }
        let readiness = ManagedAtomic(false)
        let router = Router()
        ServerRoutes.add(to: router, readiness: readiness, registry: registry, mqttPath: network.webSocketPath)
        let path = network.webSocketPath
        let mqttPort = mqttListener.port
        let logger = self.logger
        let app = Application(
            router: router,
            server: HTTPServerBuilder { responder in
                MQTTWebSocketChannel(responder: responder, broker: broker, path: path)
            },
            configuration: .init(address: .hostname(network.bind, port: network.httpPort), serverName: "meridian"),
            onServerRunning: { channel in
                let httpPort = channel.localAddress?.port ?? network.httpPort
                readiness.store(true, ordering: .relaxed)
                logger.info(
                    "meridian started",
                    metadata: ["mqtt.port": "\(mqttPort)", "http.port": "\(httpPort)", "data_dir": "\(configuration.dataDirectory)"]
                )
                await onListening(Endpoints(mqttPort: mqttPort, httpPort: httpPort))
            },
            eventLoopGroupProvider: .shared(group),
            logger: logger
        )
        let shutdownNotice = ShutdownNotice(readiness: readiness, logger: logger)
        let serviceGroup = ServiceGroup(
            configuration: .init(
                // Graceful shutdown runs in reverse order: readiness drops first, then the broker
                // disconnects every MQTT client (WebSocket ones included, which the HTTP server
                // would otherwise wait for), then the HTTP server stops.
                services: [
                    .init(service: app),
                    .init(service: broker),
                    .init(service: shutdownNotice),
                ],
                gracefulShutdownSignals: gracefulShutdownSignals,
                cancellationSignals: [],
                logger: logger
            )
        )
        try await serviceGroup.run()
        logger.info("meridian stopped")
    }
}

extension MeridianApplication {
    /// The broker's durable state, `broker.sqlite` in the data directory (none with
    /// `--durability none`). A database that is corrupt or from a newer version stops start-up.
    func openSessionStore(durability: Durability) throws -> (any MQTTSessionStore)? {
        guard durability != .none else { return nil }
        let path = (configuration.dataDirectory as NSString).appendingPathComponent("broker.sqlite")
        do {
            return try SQLiteSessionStore(path: path, durability: durability)
        } catch let error as SQLiteSessionStore.OpenError {
            throw MeridianStartupError(error.description)
        }
    }
}

/// Marks the server not ready as soon as shutdown begins, so load balancers stop routing to it.
private struct ShutdownNotice: Service {
    let readiness: ManagedAtomic<Bool>
    let logger: Logger

    func run() async throws {
        try? await gracefulShutdown()
        readiness.store(false, ordering: .relaxed)
        logger.info("shutting down: no new connections, disconnecting clients")
    }
}

/// A start-up failure with a message for the operator.
public struct MeridianStartupError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The version of this build.
public enum MeridianVersion {
    public static let current = "0.1.0"
}

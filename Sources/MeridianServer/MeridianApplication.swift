import Atomics
import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import MQTTBroker
import MeridianCore
import MeridianStorage
import NIOCore
import NIOPosix
import Prometheus
import ServiceLifecycle
import UnixSignals

/// The `meridian serve` process: the MQTT broker (TCP, and WebSocket on the HTTP port; with TLS
/// also MQTT over TLS, and secure WebSocket on the HTTPS port) and the HTTP(S) server, on one
/// shared event-loop group, run by one `ServiceGroup` that shuts everything down gracefully on
/// SIGTERM/SIGINT. SIGHUP reloads the TLS certificate.
public struct MeridianApplication: Sendable {
    public let configuration: MeridianConfiguration
    public let logger: Logger
    /// Called once every listener is bound, with what in-process companions need (`serve
    /// --demo`'s simulated fleet): it must return quickly (start a task for longer work).
    public var onReady: (@Sendable (ReadyPlatform) async -> Void)?

    public init(configuration: MeridianConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// The running server, for in-process companions.
    public struct ReadyPlatform: Sendable {
        public var endpoints: Endpoints
        /// The registry (nil when the server runs without one).
        public var registry: Registry?
        /// The tenant created by this start, on the first start of an empty database.
        public var firstStartTenantID: String?
        /// Rules (nil when the server runs without a registry).
        public var rules: RuleService?
    }

    /// The addresses the server ended up listening on.
    public struct Endpoints: Sendable {
        /// The MQTT over TCP port.
        public var mqttPort: Int
        /// The HTTP (and WebSocket) port.
        public var httpPort: Int
        /// The MQTT over TLS port; nil when TLS is disabled.
        public var mqttsPort: Int?
        /// The HTTPS (and secure WebSocket) port; nil when TLS is disabled.
        public var httpsPort: Int?

        /// Endpoints with these ports (no TLS ports: TLS disabled).
        public init(mqttPort: Int, httpPort: Int, mqttsPort: Int? = nil, httpsPort: Int? = nil) {
            self.mqttPort = mqttPort
            self.httpPort = httpPort
            self.mqttsPort = mqttsPort
            self.httpsPort = httpsPort
        }

        /// The start-up line scripts read: `listening mqtt=… http=…`, then `mqtts=… https=…`
        /// when TLS is enabled.
        public var listeningLine: String {
            var line = "listening mqtt=\(mqttPort) http=\(httpPort)"
            if let mqttsPort { line += " mqtts=\(mqttsPort)" }
            if let httpsPort { line += " https=\(httpsPort)" }
            return line
        }
    }

    /// Runs until SIGTERM/SIGINT, printing the `listening` line on stdout once every listener
    /// is bound. SIGHUP reloads the TLS certificate.
    public func run() async throws {
        try await run(gracefulShutdownSignals: [.sigterm, .sigint], printsFirstStartNotice: true) { endpoints in
            // Unbuffered, so scripts reading a pipe see it at once.
            FileHandle.standardOutput.write(Data((endpoints.listeningLine + "\n").utf8))
        }
    }

    /// Runs the server; `onListening` is called once every listener is bound.
    public func run(
        gracefulShutdownSignals: [UnixSignal],
        onListening: @escaping @Sendable (Endpoints) async -> Void
    ) async throws {
        try await run(gracefulShutdownSignals: gracefulShutdownSignals, printsFirstStartNotice: false, onListening: onListening)
    }

    /// `printsFirstStartNotice`: on the first start of an empty database without a bootstrap
    /// API key, print the admin's user name, password and the dashboard URL to stdout once,
    /// after `onListening`.
    func run(
        gracefulShutdownSignals: [UnixSignal],
        printsFirstStartNotice: Bool,
        onListening: @escaping @Sendable (Endpoints) async -> Void
    ) async throws {
        let registry = MeridianMetrics.bootstrap()
        try FileManager.default.createDirectory(atPath: configuration.dataDirectory, withIntermediateDirectories: true)
        let threads = EventLoopThreads.resolve(configuration.network.eventLoopThreads)
        logger.debug("event loops", metadata: ["threads": "\(threads)"])
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        do {
            if let database = try openDatabase(group: group) {
                // The pool runs around everything else: services still write while shutting down.
                try await database.withRunning { database in
                    try await serve(
                        group: group,
                        registry: registry,
                        database: database,
                        gracefulShutdownSignals: gracefulShutdownSignals,
                        printsFirstStartNotice: printsFirstStartNotice,
                        onListening: onListening
                    )
                }
            } else {
                try await serve(
                    group: group,
                    registry: registry,
                    database: nil,
                    gracefulShutdownSignals: gracefulShutdownSignals,
                    printsFirstStartNotice: printsFirstStartNotice,
                    onListening: onListening
                )
            }
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        try await group.shutdownGracefully()
    }

    private func serve(
        group: MultiThreadedEventLoopGroup,
        registry: PrometheusCollectorRegistry,
        database: PostgresDatabase?,
        gracefulShutdownSignals: [UnixSignal],
        printsFirstStartNotice: Bool,
        onListening: @escaping @Sendable (Endpoints) async -> Void
    ) async throws {
        var brokerConfiguration = configuration.broker
        if brokerConfiguration.version == BrokerConfiguration().version {
            brokerConfiguration.version = "meridian \(MeridianVersion.current)"
        }
        // The broker's state is checked before anything is created in the data directory: a
        // corrupt or newer broker.sqlite stops start-up with the directory untouched.
        let store = try openSessionStore(durability: brokerConfiguration.durability)
        // Then the registry: the broker's authentication and the API both stand on it.
        let platform = try await openPlatform(database: database)
        let firstStart: BootstrapResult? = if let platform { try await bootstrap(platform.registry) } else { nil }
        // Telemetry: the engine replays its WAL before any device can send more. On PostgreSQL
        // it shares the registry's database, whose pool runs until `serve` returns: after the
        // final checkpoint of the telemetry maintenance.
        let telemetry = try await openTelemetry(database: database)
        // Commands to devices, delivered through the gateway the broker tells about connections.
        let commands: CommandService? = platform == nil ? nil : try await openCommands(database: database)
        let commandBroker = BrokerReference()
        let gateway = commands.map { DeviceGateway(publisher: BrokerCommandPublisher(broker: commandBroker), service: $0, logger: self.logger) }
        if let commands, let gateway { commands.attach(gateway) }
        // Webhook actions: a bounded queue and workers; dead letters next to the registry.
        let webhooks: WebhookDispatcher? = platform == nil ? nil : try await openWebhooks(database: database)
        // The certificate comes first: a missing or bad one stops start-up before any port is
        // bound. SIGHUP is trapped before the `listening` line, so it never ends the process.
        var tls: TLSService?
        if configuration.tls.enabled {
            tls = try TLSService(
                configuration: configuration.tls,
                dataDirectory: configuration.dataDirectory,
                logger: logger
            )
        }
        let hangUps = await UnixSignalsSequence(trapping: .sighup)
        // Who may connect and what they may touch comes from the registry; revocations there
        // disconnect clients here.
        // Twins: in the registry's database (meridian.sqlite or PostgreSQL).
        var twins: TwinService?
        if let platform {
            let opened = try await openTwins(database: database)
            TwinMaintenance.followRegistry(platform.registry, twins: opened, logger: logger)
            twins = opened
        }
        let access = platform.map {
            AccessControl(
                registry: $0.registry, configuration: configuration.auth, tls: tls, telemetry: telemetry.pipeline, twins: twins,
                commands: commands, logger: self.logger
            )
        }
        // Presence: connects and disconnects of devices, stored next to the registry.
        let presence = try await openPresence(database: database, platform: platform, access: access)
        // Followers of device connections (presence, command delivery) add themselves here.
        var observers: [any MQTTConnectionObserver] = []
        if let presence { observers.append(PresenceObserver(presence: presence)) }
        if let gateway { observers.append(gateway) }
        let broker: MQTTBroker
        if let access {
            broker = MQTTBroker(
                configuration: brokerConfiguration, eventLoopGroup: group, authenticator: access.authenticator,
                authorizer: access.authorizer, messageTap: access.messageTap, observers: observers, sessionStore: store, logger: logger
            )
            await access.attach(broker)
        } else {
            broker = MQTTBroker(configuration: brokerConfiguration, eventLoopGroup: group, sessionStore: store, logger: logger)
        }
        commandBroker.set(broker)
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
        var mqttsPort: Int?
        if let tls {
            do {
                mqttsPort = try await broker.bind(host: network.bind, port: network.mqttsPort, tls: tls.mqtt).port
            } catch {
                throw MeridianStartupError(
                    "cannot listen for MQTT over TLS on \(network.bind):\(network.mqttsPort): \(error)"
                )
            }
        }
        let readiness = ManagedAtomic(false)
        let router = Router(context: MeridianRequestContext.self)
        ServerRoutes.add(to: router, readiness: readiness, registry: registry, mqttPath: network.webSocketPath)
        TLSAdminRoutes.add(to: router, tls: tls)
        // The live stream (WebSocket /api/v1/stream) stands on the API's authentication and is
        // fed by the telemetry pipeline.
        let stream: StreamEndpoint?
        // Rules: evaluated on the pipeline's durable batches, acting through the broker,
        // commands, twins and the pipeline itself.
        let rules: RuleServices? =
            if let platform {
                try await openRules(
                    database: database, platform: platform, telemetry: telemetry, presence: presence, twins: twins, commands: commands,
                    broker: commandBroker, webhooks: webhooks
                )
            } else {
                nil
            }
        if let platform {
            let apiServices = try await makeAPIServices(
                platform, telemetry: telemetry, presence: presence, twins: twins, commands: commands, rules: rules, webhooks: webhooks
            )
            APIRoutes.add(to: router, services: apiServices)
            stream = StreamEndpoint(
                hub: StreamHub(
                    services: apiServices, pipeline: telemetry.pipeline,
                    pingInterval: .seconds(Int64(configuration.api.streamPingInterval)), logger: self.logger
                )
            )
            StreamEndpoint.addRoutes(to: router)
        } else {
            stream = nil
        }
        let path = network.webSocketPath
        let logger = self.logger
        let dataDirectory = configuration.dataDirectory
        let listening = ListeningPorts(
            endpoints: Endpoints(mqttPort: mqttListener.port, httpPort: network.httpPort, mqttsPort: mqttsPort),
            awaitingHTTPS: tls != nil
        ) { endpoints in
            readiness.store(true, ordering: .relaxed)
            var metadata: Logger.Metadata = [
                "mqtt.port": "\(endpoints.mqttPort)",
                "http.port": "\(endpoints.httpPort)",
                "data_dir": "\(dataDirectory)",
            ]
            if let port = endpoints.mqttsPort { metadata["mqtts.port"] = "\(port)" }
            if let port = endpoints.httpsPort { metadata["https.port"] = "\(port)" }
            logger.info("meridian started", metadata: metadata)
            await onListening(endpoints)
            await onReady?(ReadyPlatform(endpoints: endpoints, registry: platform?.registry, firstStartTenantID: firstStart?.tenant.id, rules: rules?.rules))
            if printsFirstStartNotice, let firstStart, let notice = Self.firstStartNotice(firstStart, bind: network.bind, httpPort: endpoints.httpPort) {
                FileHandle.standardOutput.write(Data(notice.utf8))
            }
        }
        let app = Application(
            router: router,
            server: HTTPServerBuilder { responder in
                MQTTWebSocketChannel(responder: responder, broker: broker, path: path, stream: stream)
            },
            configuration: .init(address: .hostname(network.bind, port: network.httpPort), serverName: "meridian"),
            onServerRunning: { channel in
                await listening.bound(http: channel.localAddress?.port ?? network.httpPort)
            },
            eventLoopGroupProvider: .shared(group),
            logger: logger
        )
        // Shutdown runs backwards: the listeners stop before the pipeline drains, and the last
        // checkpoint comes after that.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: makeTelemetryMaintenance(telemetry, registry: platform?.registry)),
            .init(service: telemetry.pipeline),
            .init(service: app),
        ]
        if let presence { services.insert(.init(service: presence), at: 0) }
        // The engine stops after the pipeline has drained: it evaluates the last batches.
        if let rules { services.insert(.init(service: rules.engine), at: 0) }
        // Stopped last: what the rules queued until then is sent or dead-lettered.
        if let webhooks { services.insert(.init(service: webhooks), at: 0) }
        if let twins { services.append(.init(service: TwinMaintenance(twins: twins, interval: 3600, logger: logger))) }
        if let commands { services.append(.init(service: CommandSweeper(service: commands))) }
        if let tls {
            let httpsApp = Application(
                router: router,
                server: HTTPServerBuilder { responder in
                    HTTPSChildChannel(
                        base: MQTTWebSocketChannel(
                            responder: responder,
                            broker: broker,
                            path: path,
                            transport: .secureWebSocket,
                            stream: stream
                        ),
                        channels: tls.https,
                        logger: logger
                    )
                },
                configuration: .init(address: .hostname(network.bind, port: network.httpsPort), serverName: "meridian"),
                onServerRunning: { channel in
                    await listening.bound(https: channel.localAddress?.port ?? network.httpsPort)
                },
                eventLoopGroupProvider: .shared(group),
                logger: logger
            )
            services.append(.init(service: httpsApp))
        }
        let shutdownNotice = ShutdownNotice(readiness: readiness, logger: logger)
        // Graceful shutdown runs in reverse order: readiness drops first, then live-stream
        // connections close and the broker disconnects every MQTT client (WebSocket ones
        // included, which the HTTP servers would otherwise wait for), then the HTTP servers stop.
        services.append(.init(service: broker))
        if let stream { services.append(.init(service: stream.hub)) }
        services += [
            .init(service: ReloadOnHangUp(signals: hangUps, tls: tls, logger: logger)),
            .init(service: shutdownNotice),
        ]
        let serviceGroup = ServiceGroup(
            configuration: .init(
                services: services,
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

extension MeridianApplication {
    /// The PostgreSQL database of `database.url`, or nil for the embedded SQLite registry.
    /// Nothing connects yet.
    func openDatabase(group: any EventLoopGroup) throws -> PostgresDatabase? {
        let url = configuration.database.url
        guard !url.isEmpty else { return nil }
        let postgres: PostgresConfiguration
        do {
            postgres = try PostgresConfiguration(url: url)
        } catch {
            // Configuration checks catch this first; a configuration built in code may not.
            throw MeridianStartupError("invalid configuration: database.url = \(PostgresConfiguration.redact(url: url)): \(error)")
        }
        return PostgresDatabase(configuration: postgres, eventLoopGroup: group, logger: logger)
    }

    /// The platform registry: in PostgreSQL when `database` is given, else `meridian.sqlite` in
    /// the data directory. A database that cannot be reached, is corrupt or is from a newer
    /// version stops start-up.
    func openRegistry(database: PostgresDatabase?) async throws -> Registry? {
        if let database {
            do {
                let store = try await PostgresRegistryStore(database: database)
                logger.info("registry in PostgreSQL", metadata: ["database.url": "\(database.configuration.redactedURL)"])
                return Registry(store: store)
            } catch let error as PostgresRegistryStore.OpenError {
                throw MeridianStartupError("database.url: \(error.description)")
            }
        }
        let path = (configuration.dataDirectory as NSString).appendingPathComponent("meridian.sqlite")
        do {
            return Registry(store: try SQLiteRegistryStore(path: path))
        } catch let error as SQLiteRegistryStore.OpenError {
            throw MeridianStartupError(error.description)
        }
    }

    /// The registry and logger shared by the API and the broker's access control.
    func openPlatform(database: PostgresDatabase?) async throws -> Platform? {
        guard let registry = try await openRegistry(database: database) else { return nil }
        return Platform(registry: registry, logger: logger)
    }

    /// On an empty database: tenant `default` with an admin API key of exactly
    /// `MERIDIAN_BOOTSTRAP_API_KEY`, or with user `admin` and a random password (returned for
    /// printing once). Logged without secrets.
    func bootstrap(_ registry: Registry) async throws -> BootstrapResult? {
        let apiKey = configuration.api.bootstrapAPIKey ?? ProcessInfo.processInfo.environment["MERIDIAN_BOOTSTRAP_API_KEY"]
        guard let result = try await registry.bootstrapIfEmpty(apiKey: apiKey.flatMap { $0.isEmpty ? nil : $0 }) else {
            return nil
        }
        var metadata: Logger.Metadata = ["tenant.id": "\(result.tenant.id)"]
        if let id = result.apiKeyID { metadata["api_key.id"] = "\(id)" }
        if let username = result.adminUsername { metadata["user.name"] = "\(username)" }
        logger.info(
            result.apiKeyID != nil
                ? "first start: created tenant default with the bootstrap admin API key"
                : "first start: created tenant default and an admin user; its password is printed once on stdout",
            metadata: metadata
        )
        return result
    }

    /// The lines printed once after the `listening` line on a first start with a generated
    /// admin password; nil when there is nothing to print.
    static func firstStartNotice(_ result: BootstrapResult, bind: String, httpPort: Int) -> String? {
        guard let username = result.adminUsername, let password = result.adminPassword else { return nil }
        let host: String
        switch bind {
        case "0.0.0.0", "::", "[::]", "": host = "localhost"
        default: host = bind.contains(":") ? "[\(bind)]" : bind
        }
        return """
            first start: created tenant "\(result.tenant.name)" with admin user "\(username)", password: \(password)
            (shown only this once) log in at http://\(host):\(httpPort)/

            """
    }

    /// The telemetry engine and its pipeline: its WAL in `telemetry/` in the data directory,
    /// its chunks, rollups, head snapshots and latest values in `telemetry.sqlite` there, or in
    /// PostgreSQL when `database` is given (the registry's database).
    func openTelemetry(database: PostgresDatabase?) async throws -> TelemetryService {
        var engineConfiguration = TimeSeriesEngine.Configuration()
        engineConfiguration.chunkSamples = configuration.telemetry.chunkSamples
        engineConfiguration.retention = configuration.telemetry.retention
        let directory = (configuration.dataDirectory as NSString).appendingPathComponent("telemetry")
        var store: PostgresChunkStore?
        if let database {
            do {
                store = try await PostgresChunkStore(database: database)
            } catch let error as PostgresChunkStore.OpenError {
                throw MeridianStartupError("database.url: \(error.description)")
            }
            logger.info("telemetry in PostgreSQL", metadata: ["database.url": "\(database.configuration.redactedURL)"])
        }
        let engine: TimeSeriesEngine
        do {
            // Opening reads the store and replays the WAL: blocking work, off the cooperative pool.
            let logger = self.logger
            engine = try await NIOThreadPool.singleton.runIfActive { [store, engineConfiguration] in
                if let store {
                    return try TimeSeriesEngine(directory: directory, store: store, configuration: engineConfiguration, logger: logger)
                }
                return try TimeSeriesEngine(directory: directory, configuration: engineConfiguration, logger: logger)
            }
        } catch {
            throw MeridianStartupError("\(error)")
        }
        return TelemetryService(
            engine: engine, pipeline: TelemetryPipeline(engine: engine, logger: logger), defaultRetention: configuration.telemetry.retention, logger: logger
        )
    }

    /// Checkpoints and retention sweeps; a device's retention is its profile's override, else
    /// its tenant's, else the configured default.
    func makeTelemetryMaintenance(_ telemetry: TelemetryService, registry: Registry?) -> TelemetryMaintenance {
        let engine = telemetry.engine
        let fallback = telemetry.defaultRetention
        return TelemetryMaintenance(
            telemetry: telemetry, checkpointInterval: Double(configuration.telemetry.checkpointInterval), retentionInterval: 3600
        ) { tenantID, deviceID in
            if let registry {
                let caller = Caller(tenantID: tenantID, role: .owner, actor: AuditActor(kind: .system, id: "telemetry-retention"))
                if let profileID = try? await registry.device(deviceID, by: caller).profileID,
                    let retention = try? await telemetry.blocking({ try engine.retentionOverride(.profile, id: profileID) })
                {
                    return retention
                }
            }
            // The store may be PostgreSQL: read it off the cooperative pool.
            return (try? await telemetry.blocking { try engine.retentionOverride(.tenant, id: tenantID) }) ?? fallback
        }
    }

    /// The twin service over its store: the registry's PostgreSQL database when `database` is
    /// given, else `meridian.sqlite` in the data directory.
    func openTwins(database: PostgresDatabase?) async throws -> TwinService {
        let store: any TwinStore
        if let database {
            do {
                store = try await PostgresTwinStore(database: database)
            } catch let error as PostgresTwinStore.OpenError {
                throw MeridianStartupError("database.url: \(error.description)")
            }
        } else {
            let path = (configuration.dataDirectory as NSString).appendingPathComponent("meridian.sqlite")
            do {
                store = try SQLiteTwinStore(path: path)
            } catch let error as SQLiteTwinStore.OpenError {
                throw MeridianStartupError(error.description)
            }
        }
        return TwinService(store: store, limits: configuration.twin.limits)
    }

    func makeAPIServices(
        _ platform: Platform, telemetry: TelemetryService? = nil, presence: PresenceService? = nil, twins: TwinService? = nil,
        commands: CommandService? = nil, rules: RuleServices? = nil, webhooks: WebhookDispatcher? = nil
    ) async throws -> APIServices {
        let api = configuration.api
        return APIServices(
            registry: platform.registry,
            signer: try await APITokenSigner.load(
                dataDirectory: configuration.dataDirectory,
                lifetime: TimeInterval(api.accessTokenLifetime)
            ),
            loginLimiter: LoginRateLimiter(maximumFailures: api.loginMaximumFailures, window: TimeInterval(api.loginWindow)),
            refreshTokenLifetime: TimeInterval(api.refreshTokenLifetime),
            telemetry: telemetry,
            presence: presence,
            twins: twins,
            commands: commands,
            rules: rules,
            webhooks: webhooks,
            logger: platform.logger
        )
    }

    /// Presence in the registry's database (`meridian.sqlite` or PostgreSQL); nil without a
    /// registry. Connects and disconnects also refresh the devices' `lastSeenAt`.
    func openPresence(database: PostgresDatabase?, platform: Platform?, access: AccessControl?) async throws -> PresenceService? {
        guard let platform else { return nil }
        let store: any PresenceStore
        if let database {
            do {
                store = try await PostgresPresenceStore(database: database)
            } catch let error as PostgresDatabase.DatabaseError {
                throw MeridianStartupError("database.url: \(error.description)")
            }
        } else {
            let path = (configuration.dataDirectory as NSString).appendingPathComponent("meridian.sqlite")
            do {
                store = try SQLitePresenceStore(path: path)
            } catch let error as SQLitePresenceStore.OpenError {
                throw MeridianStartupError(error.description)
            }
        }
        let lastSeen = access?.lastSeen
        let days = configuration.presence.retentionDays
        return PresenceService(
            store: store, registry: platform.registry, retention: days > 0 ? .seconds(days * 86_400) : nil, logger: logger,
            noteSeen: { deviceID in lastSeen?.note(deviceID) }
        )
    }
}

/// Collects the ports of the HTTP and HTTPS servers (each reports when it is running) and calls
/// `onComplete` once, when every listener is bound.
private actor ListeningPorts {
    private var endpoints: Endpoints
    private var awaitingHTTP = true
    private var awaitingHTTPS: Bool
    private let onComplete: @Sendable (MeridianApplication.Endpoints) async -> Void

    typealias Endpoints = MeridianApplication.Endpoints

    init(endpoints: Endpoints, awaitingHTTPS: Bool, onComplete: @escaping @Sendable (Endpoints) async -> Void) {
        self.endpoints = endpoints
        self.awaitingHTTPS = awaitingHTTPS
        self.onComplete = onComplete
    }

    func bound(http port: Int) async {
        endpoints.httpPort = port
        awaitingHTTP = false
        await completeIfReady()
    }

    func bound(https port: Int) async {
        endpoints.httpsPort = port
        awaitingHTTPS = false
        await completeIfReady()
    }

    private func completeIfReady() async {
        guard !awaitingHTTP, !awaitingHTTPS else { return }
        awaitingHTTP = true  // once only
        await onComplete(endpoints)
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

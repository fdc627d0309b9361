import Foundation
import Logging
import MQTTBroker
import MQTTClient
import MQTTCore
import MeridianServer
import NIOCore
import ServiceLifecycleTestKit
import Synchronization
import Testing

/// A `MeridianApplication` running in this process on ephemeral 127.0.0.1 ports, stopped the
/// way swift-service-lifecycle stops a service group from outside: a graceful-shutdown trigger
/// (`testGracefulShutdown`), which the application's own `ServiceGroup` picks up from its task.
final class ServerFixture: Sendable {
    let endpoints: MeridianApplication.Endpoints
    let dataDirectory: String
    private let trigger: GracefulShutdownTestTrigger
    private let state: RunState
    private let task: Task<Void, Never>

    var mqttPort: Int { endpoints.mqttPort }
    var httpPort: Int { endpoints.httpPort }

    private init(
        endpoints: MeridianApplication.Endpoints,
        dataDirectory: String,
        trigger: GracefulShutdownTestTrigger,
        state: RunState,
        task: Task<Void, Never>
    ) {
        self.endpoints = endpoints
        self.dataDirectory = dataDirectory
        self.trigger = trigger
        self.state = state
        self.task = task
    }

    /// A configuration for tests: loopback, ports 0, two event loops, no `$SYS`, no durability,
    /// state in a fresh temporary directory.
    static func testConfiguration() -> MeridianConfiguration {
        var configuration = MeridianConfiguration()
        configuration.network.bind = "127.0.0.1"
        configuration.network.mqttPort = 0
        configuration.network.httpPort = 0
        configuration.network.mqttsPort = 0
        configuration.network.httpsPort = 0
        configuration.network.eventLoopThreads = 2
        configuration.dataDirectory =
            FileManager.default.temporaryDirectory
            .appendingPathComponent("meridian-server-tests-\(UUID().uuidString)").path
        configuration.broker.durability = .none
        configuration.broker.sysInterval = 0
        // The MQTT tests here connect without credentials (the registry's own are AccessTests).
        configuration.auth.allowAnonymous = true
        return configuration
    }

    /// Starts a server, runs `body` with it and stops it gracefully afterwards (also when
    /// `body` throws), removing its data directory unless `keepData` is set. `startTimeout`
    /// bounds the start (the whole test process may be busy then).
    static func with<T>(
        _ configuration: MeridianConfiguration = testConfiguration(),
        keepData: Bool = false,
        startTimeout: Duration = .seconds(60),
        _ body: (ServerFixture) async throws -> T
    ) async throws -> T {
        defer {
            if !keepData { try? FileManager.default.removeItem(atPath: configuration.dataDirectory) }
        }
        return try await testGracefulShutdown { trigger in
            let server = try await start(configuration, trigger: trigger, timeout: startTimeout)
            let result: Result<T, any Error>
            do {
                result = .success(try await body(server))
            } catch {
                result = .failure(error)
            }
            try await server.stop()
            return try result.get()
        }
    }

    private static func start(
        _ configuration: MeridianConfiguration,
        trigger: GracefulShutdownTestTrigger,
        timeout: Duration
    ) async throws -> ServerFixture {
        var logger = Logger(label: "server-tests")
        logger.logLevel = .critical
        let application = MeridianApplication(configuration: configuration, logger: logger)
        let state = RunState()
        // The task inherits the trigger's task-local shutdown manager.
        let task = Task {
            do {
                try await application.run(gracefulShutdownSignals: []) { endpoints in
                    state.listening(endpoints)
                }
                state.finished(nil)
            } catch {
                state.finished(error)
            }
        }
        do {
            try await serverEventually("the server to listen", within: timeout) {
                if let failure = state.failure { throw failure }
                return state.endpoints != nil
            }
        } catch {
            task.cancel()
            throw error
        }
        return ServerFixture(
            endpoints: state.endpoints!,
            dataDirectory: configuration.dataDirectory,
            trigger: trigger,
            state: state,
            task: task
        )
    }

    /// Whether `run` has returned.
    var isFinished: Bool { state.isFinished }

    /// Triggers graceful shutdown and waits for `run` to return; rethrows what it threw.
    /// Cancels the task if graceful shutdown takes longer than 15 s (and fails).
    func stop() async throws {
        trigger.triggerGracefulShutdown()
        do {
            try await serverEventually("the server to shut down", within: .seconds(15)) { state.isFinished }
        } catch {
            task.cancel()
            throw error
        }
        if let failure = state.failure { throw failure }
    }

    /// Cancels the task running the server and waits for it to end.
    func cancel() async throws {
        task.cancel()
        try await serverEventually("the server to stop after cancellation", within: .seconds(15)) { state.isFinished }
    }

    /// A client for this server over TCP or WebSocket (`/mqtt`).
    func client(
        _ clientIdentifier: String = serverClientID(),
        version: MQTTProtocolVersion = .v5,
        webSocket: Bool = false,
        configure: (inout MQTTClient.Configuration) -> Void = { _ in }
    ) -> MQTTClient {
        var configuration = MQTTClient.Configuration(
            host: "127.0.0.1",
            port: webSocket ? httpPort : mqttPort,
            transport: webSocket ? .webSocket(path: "/mqtt", tls: nil) : .tcp,
            protocolVersion: version,
            clientIdentifier: clientIdentifier
        )
        configuration.connectTimeout = .seconds(20)
        configure(&configuration)
        return MQTTClient(configuration: configuration)
    }

    /// `GET path` on the HTTP port.
    func get(_ path: String) async throws -> ServerHTTPResponse {
        try await ServerHTTPClient.get(port: httpPort, path: path)
    }

    /// The Prometheus samples at `/metrics`, by series (name and labels as written).
    func metrics() async throws -> [String: Double] {
        let response = try await get("/metrics")
        #expect(response.status == 200)
        return ServerHTTPClient.prometheusSamples(response.body)
    }
}

/// What the task running the application reported.
private final class RunState: Sendable {
    private struct State {
        var endpoints: MeridianApplication.Endpoints?
        var finished = false
        var failure: (any Error)?
    }

    private let state = Mutex(State())

    func listening(_ endpoints: MeridianApplication.Endpoints) {
        state.withLock { $0.endpoints = endpoints }
    }

    func finished(_ error: (any Error)?) {
        state.withLock {
            $0.finished = true
            $0.failure = error
        }
    }

    var endpoints: MeridianApplication.Endpoints? { state.withLock { $0.endpoints } }
    var isFinished: Bool { state.withLock { $0.finished } }
    var failure: (any Error)? { state.withLock { $0.failure } }
}

/// A unique client identifier.
func serverClientID(_ prefix: String = "client") -> String {
    "\(prefix)-\(UInt32.random(in: 0...UInt32.max))"
}

/// A unique topic prefix.
func serverTopicRoot(_ prefix: String) -> String {
    "\(prefix)/\(UInt32.random(in: 0...UInt32.max))"
}

struct ServerTestTimeout: Error, CustomStringConvertible {
    var description: String
}

/// Waits until `condition` holds, checking every 10 ms; throws after `timeout`.
func serverEventually(
    _ what: @autoclosure () -> String,
    within timeout: Duration = .seconds(10),
    _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while try await !condition() {
        guard ContinuousClock.now < deadline else {
            throw ServerTestTimeout(description: "\(what()) did not happen within \(timeout)")
        }
        try await Task.sleep(for: .milliseconds(10))
    }
}

/// Everything a client receives on its `messages` stream, recorded by a task.
final class ServerInbox: Sendable {
    private let received = ServerRecords()
    private let task: Task<Void, Never>

    init(_ client: MQTTClient) {
        let received = self.received
        let messages = client.messages
        task = Task {
            for await message in messages { received.append(message) }
        }
    }

    deinit {
        task.cancel()
    }

    var all: [PublishPacket] { received.all }

    /// Waits until at least `count` messages arrived and returns them.
    @discardableResult
    func wait(forCount count: Int, within timeout: Duration = .seconds(10)) async throws -> [PublishPacket] {
        try await serverEventually("\(count) messages (have \(received.all.count))", within: timeout) {
            self.received.all.count >= count
        }
        return all
    }
}

private final class ServerRecords: Sendable {
    private let messages = Mutex<[PublishPacket]>([])

    func append(_ message: PublishPacket) {
        messages.withLock { $0.append(message) }
    }

    var all: [PublishPacket] { messages.withLock { $0 } }
}

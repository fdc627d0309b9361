import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import MeridianCore
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import MeridianServer

/// A webhook endpoint for tests: a real Hummingbird server on 127.0.0.1, port 0. `POST /hook`
/// records each request and answers the next status of its script (the last one, once the
/// script is used up).
final class WebhookTestReceiver: Sendable {
    struct Received: Sendable {
        var headers: HTTPFields
        var body: String

        func header(_ name: String) -> String? {
            HTTPField.Name(name).flatMap { headers[$0] }
        }
    }

    private let state = Mutex((script: [Int](), received: [Received]()))
    let port: Int

    private init(port: Int) {
        self.port = port
    }

    var url: String { "http://127.0.0.1:\(port)/hook" }
    var received: [Received] { state.withLock { $0.received } }
    var count: Int { state.withLock { $0.received.count } }

    /// The statuses of the next answers, in order; the last repeats.
    func answer(_ statuses: Int...) {
        state.withLock { $0.script = statuses }
    }

    fileprivate func record(_ received: Received) -> Int {
        state.withLock { state in
            state.received.append(received)
            guard !state.script.isEmpty else { return 200 }
            return state.script.count > 1 ? state.script.removeFirst() : state.script[0]
        }
    }

    /// Runs `body` with a receiver answering `statuses` (default 200).
    static func with<T: Sendable>(answering statuses: [Int] = [200], _ body: @Sendable (WebhookTestReceiver) async throws -> T) async throws -> T {
        let holder = ReceiverHolder()
        let router = Router()
        router.post("/hook") { request, _ -> Response in
            let buffer = try await request.body.collect(upTo: 1 << 20)
            let receiver = holder.receiver.withLock { $0 }
            let status = receiver?.record(Received(headers: request.headers, body: String(buffer: buffer))) ?? 500
            if (300...399).contains(status) {
                return Response(status: .init(code: status), headers: [.location: "/elsewhere"])
            }
            return Response(status: .init(code: status))
        }
        router.post("/elsewhere") { _, _ -> Response in Response(status: .ok) }
        var logger = Logger(label: "webhook-receiver")
        logger.logLevel = .critical
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)), logger: logger)
        return try await app.test(.live) { client in
            let receiver = WebhookTestReceiver(port: try #require(client.port))
            receiver.answer(contentsOf: statuses)
            holder.receiver.withLock { $0 = receiver }
            return try await body(receiver)
        }
    }

    func answer(contentsOf statuses: [Int]) {
        state.withLock { $0.script = statuses }
    }
}

private final class ReceiverHolder: Sendable {
    let receiver = Mutex<WebhookTestReceiver?>(nil)
}

/// An endpoint that accepts connections and never answers (a hung webhook receiver).
final class HungEndpoint: Sendable {
    private let channel: any Channel
    var url: String { "http://127.0.0.1:\(channel.localAddress?.port ?? 0)/hook" }

    private init(channel: any Channel) {
        self.channel = channel
    }

    static func with<T: Sendable>(_ body: @Sendable (HungEndpoint) async throws -> T) async throws -> T {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 2048)
            .childChannelInitializer { _ in MultiThreadedEventLoopGroup.singleton.any().makeSucceededVoidFuture() }
            .bind(host: "127.0.0.1", port: 0).get()
        let endpoint = HungEndpoint(channel: channel)
        do {
            let result = try await body(endpoint)
            try? await channel.close()
            return result
        } catch {
            try? await channel.close()
            throw error
        }
    }
}

/// Collects a dispatcher's outcomes.
final class WebhookOutcomes: Sendable {
    private let outcomes = Mutex([(request: WebhookRequest, outcome: WebhookOutcome)]())

    var all: [(request: WebhookRequest, outcome: WebhookOutcome)] { outcomes.withLock { $0 } }

    var handler: WebhookDispatcher.OutcomeHandler {
        { request, outcome in self.outcomes.withLock { $0.append((request, outcome)) } }
    }

    /// The outcome of the request with this delivery id, once there is one (20 s at most).
    func outcome(of deliveryID: String, sourceLocation: SourceLocation = #_sourceLocation) async throws -> WebhookOutcome {
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if let found = outcomes.withLock({ $0.first { $0.request.deliveryID == deliveryID }?.outcome }) { return found }
            try await Task.sleep(for: .milliseconds(10))
        }
        Issue.record("no outcome for \(deliveryID) within 20 s", sourceLocation: sourceLocation)
        throw CancellationError()
    }
}

enum WebhookTesting {
    /// Retries in tens of milliseconds.
    static let fastRetries = WebhookRetryPolicy(base: .milliseconds(10), factor: 2, cap: .milliseconds(50))

    static var logger: Logger {
        var logger = Logger(label: "webhook-tests")
        logger.logLevel = .critical
        return logger
    }

    /// A running dispatcher over `store` for `body`; shut down afterwards (also when it throws).
    static func withDispatcher<T: Sendable>(
        store: any WebhookDeadLetterStore = InMemoryWebhookDeadLetterStore(), workers: Int = 4, capacity: Int = 10_000,
        outcomes: WebhookOutcomes? = nil, _ body: @Sendable (WebhookDispatcher) async throws -> T
    ) async throws -> T {
        var configuration = WebhookDispatcher.Configuration()
        configuration.workers = workers
        configuration.queueCapacity = capacity
        configuration.retryPolicy = fastRetries
        configuration.shutdownGrace = .milliseconds(100)
        let dispatcher = WebhookDispatcher(store: store, configuration: configuration, logger: logger, onOutcome: outcomes?.handler)
        let running = Task { try await dispatcher.run() }
        do {
            let result = try await body(dispatcher)
            await dispatcher.shutdown()
            try await running.value
            return result
        } catch {
            await dispatcher.shutdown()
            _ = try? await running.value
            throw error
        }
    }

    static func request(
        _ url: String, secret: String? = "whsec_test", body: String = #"{"device":"d1","temp":81.5}"#, maxAttempts: Int = 3,
        timeoutMs: Int64 = 5000, tenant: String = "t1", rule: String? = "r1"
    ) -> WebhookRequest {
        WebhookRequest(
            url: url, body: body, secret: secret, timeoutMs: timeoutMs, maxAttempts: maxAttempts, tenantID: tenant, ruleID: rule,
            deviceID: "d1", firingID: "f1"
        )
    }

    /// Waits until `condition` holds (20 s at most).
    static func eventually(
        _ what: String, sourceLocation: SourceLocation = #_sourceLocation, _ condition: @Sendable () async throws -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + .seconds(20)
        while try await !condition() {
            guard ContinuousClock.now < deadline else {
                Issue.record("\(what) did not happen within 20 s", sourceLocation: sourceLocation)
                return
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}

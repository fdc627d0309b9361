import AsyncHTTPClient
import Foundation
import Logging
import MeridianCore
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization

/// Sends webhooks: a bounded queue that ``enqueue(_:)`` fills without ever waiting, and a fixed
/// number of workers that POST each request, retry it with ``WebhookRetryPolicy`` (408, 429,
/// 5xx, timeouts and connection errors), and store a ``WebhookDeadLetter`` when the last attempt
/// fails or the endpoint refuses it (another 4xx, or a 3xx: redirects are not followed).
///
/// A slow or hung endpoint only ever holds the workers, never the caller: a full queue makes
/// ``enqueue(_:)`` return false at once, and the caller records the action as dropped.
///
/// It is a `Service`: ``run()`` runs the workers until graceful shutdown (or ``shutdown()``).
/// Stopping is never silent: requests still queued, waiting for a retry, or not finished within
/// ``Configuration/shutdownGrace`` are dead-lettered (with the attempts they had), so they can be
/// replayed once the server is back.
public final class WebhookDispatcher: Service, Sendable {
    /// How the dispatcher queues and sends.
    public struct Configuration: Sendable {
        /// Requests accepted and not finished (queued, being sent, or waiting for a retry) at most.
        public var queueCapacity: Int = 10_000
        /// Requests sent at once.
        public var workers: Int = 8
        /// When failed attempts are tried again.
        public var retryPolicy: WebhookRetryPolicy = .standard
        /// How long attempts under way may finish once shutdown begins before they are cancelled.
        public var shutdownGrace: Duration = .seconds(2)
        /// How much of a response body is read (and thrown away) so that the connection can be reused.
        public var maximumResponseBytes: Int = 64 * 1024

        public init() {}
    }

    /// Told what became of each request taken by ``enqueue(_:)`` (delivered or dead-lettered) and
    /// of each replay. Never told about a refused ``enqueue(_:)``: its caller knows. Must return
    /// quickly (it runs on a worker).
    public typealias OutcomeHandler = @Sendable (WebhookRequest, WebhookOutcome) -> Void

    /// The dead letters.
    public let store: any WebhookDeadLetterStore
    public let configuration: Configuration
    private let client: HTTPClient
    private let logger: Logger
    private let state: Mutex<State>

    /// A dispatcher over `store`, sending with `httpClient` (by default one client shared by every
    /// dispatcher in the process, which follows no redirects and is never shut down).
    public init(
        store: any WebhookDeadLetterStore, configuration: Configuration = Configuration(), httpClient: HTTPClient? = nil,
        logger: Logger, onOutcome: OutcomeHandler? = nil
    ) {
        self.store = store
        var configuration = configuration
        configuration.queueCapacity = max(1, configuration.queueCapacity)
        configuration.workers = max(1, configuration.workers)
        self.configuration = configuration
        self.client = httpClient ?? Self.sharedClient
        self.logger = logger
        self.state = Mutex(State(outcomeHandler: onOutcome))
    }

    /// The process's webhook client: HTTP/1.1 and HTTP/2, TLS with the system's roots, no
    /// redirects, no retries of its own (the dispatcher's policy decides), never shut down.
    static let sharedClient: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 64
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    /// Replaces the outcome handler (the rule engine sets it once it exists).
    public func setOutcomeHandler(_ handler: OutcomeHandler?) {
        state.withLock { $0.outcomeHandler = handler }
    }

    /// Requests accepted and not finished yet.
    public var pending: Int { state.withLock { $0.outstanding } }

    // MARK: Queue

    /// Queues `request` for delivery; false (at once) when the queue is full or the dispatcher
    /// is stopping. Never waits for the network.
    @discardableResult
    public func enqueue(_ request: WebhookRequest) -> Bool {
        let job = Job(request: request, enqueuedAt: Date())
        let handOff: CheckedContinuation<Job?, Never>?
        let accepted: Bool
        (accepted, handOff) = state.withLock { state in
            guard !state.stopping, state.outstanding < configuration.queueCapacity else { return (false, nil) }
            state.outstanding += 1
            if !state.idleWorkers.isEmpty { return (true, state.idleWorkers.removeFirst()) }
            state.queue.append(job)
            return (true, nil)
        }
        handOff?.resume(returning: job)
        return accepted
    }

    /// The next job for a worker; nil once stopping.
    private func nextJob() async -> Job? {
        await withCheckedContinuation { (continuation: CheckedContinuation<Job?, Never>) in
            let immediate: Job?? = state.withLock { state in
                if state.stopping { return .some(nil) }
                if let job = state.queue.popFirst() { return .some(job) }
                state.idleWorkers.append(continuation)
                return .none
            }
            if let immediate { continuation.resume(returning: immediate) }
        }
    }

    // MARK: Running

    /// Runs the workers until graceful shutdown, cancellation or ``shutdown()``; then
    /// dead-letters what is left (see the type's description) and returns.
    public func run() async throws {
        let alreadyRunning = state.withLock { state -> Bool in
            defer { state.running = true }
            return state.running
        }
        guard !alreadyRunning else { return }
        await withGracefulShutdownHandler {
            await withTaskCancellationHandler {
                await runWorkers()
            } onCancel: {
                self.beginShutdown()
            }
        } onGracefulShutdown: {
            self.beginShutdown()
        }
        await drainQueue()
        let waiters = state.withLock { state in
            state.finished = true
            defer { state.finishWaiters = [] }
            return state.finishWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    private func runWorkers() async {
        let workers = configuration.workers
        let grace = configuration.shutdownGrace
        await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<workers {
                group.addTask {
                    while let job = await self.nextJob() { await self.deliver(job) }
                    return true
                }
            }
            await waitUntilStopping()
            // Attempts under way may finish within the grace; then they are cancelled.
            group.addTask {
                try? await Task.sleep(for: grace)
                return false
            }
            var running = workers
            while let isWorker = await group.next() {
                if isWorker {
                    running -= 1
                    if running == 0 { group.cancelAll() }
                } else {
                    group.cancelAll()
                }
            }
        }
    }

    /// Stops taking requests, ends the workers (attempts under way get ``Configuration/shutdownGrace``),
    /// dead-letters what is left, and returns once that is done. Works whether or not ``run()``
    /// was started.
    public func shutdown() async {
        beginShutdown()
        let mustDrain = state.withLock { state -> Bool in
            // Without a run() to do it, the caller drains.
            if !state.running {
                state.running = true
                return true
            }
            return false
        }
        if mustDrain {
            await drainQueue()
            let waiters = state.withLock { state in
                state.finished = true
                defer { state.finishWaiters = [] }
                return state.finishWaiters
            }
            for waiter in waiters { waiter.resume() }
            return
        }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = state.withLock { state -> Bool in
                if state.finished { return true }
                state.finishWaiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }

    private func beginShutdown() {
        let (idle, stopWaiters) = state.withLock { state -> ([CheckedContinuation<Job?, Never>], [CheckedContinuation<Void, Never>]) in
            guard !state.stopping else { return ([], []) }
            state.stopping = true
            defer {
                state.idleWorkers = []
                state.stopWaiters = [:]
            }
            return (state.idleWorkers, Array(state.stopWaiters.values))
        }
        for worker in idle { worker.resume(returning: nil) }
        for waiter in stopWaiters { waiter.resume() }
    }

    private var isStopping: Bool { state.withLock { $0.stopping } }

    /// Returns once shutdown has begun, or when the task is cancelled.
    private func waitUntilStopping() async {
        let id = state.withLock { state -> UInt64 in
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state -> Bool in
                    if state.stopping || Task.isCancelled { return true }
                    state.stopWaiters[id] = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.stopWaiters.removeValue(forKey: id) }?.resume()
        }
    }

    /// Sleeps for `delay`; false when shutdown began (or the task was cancelled) first.
    private func backOff(_ delay: Duration) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask { (try? await Task.sleep(for: delay)) != nil }
            group.addTask {
                await self.waitUntilStopping()
                return false
            }
            let slept = await group.next() ?? false
            group.cancelAll()
            return slept && !Task.isCancelled
        }
    }

    /// Dead-letters every request still queued (never sent: the server stopped first).
    private func drainQueue() async {
        let jobs = state.withLock { state -> [Job] in
            var jobs: [Job] = []
            while let job = state.queue.popFirst() { jobs.append(job) }
            return jobs
        }
        guard !jobs.isEmpty else { return }
        logger.info("webhooks: dead-lettering requests not sent before shutdown", metadata: ["webhook.count": "\(jobs.count)"])
        let now = Date()
        for job in jobs {
            let deadLetter = WebhookDeadLetter(
                request: job.request, attempts: 0, lastError: "not sent: the server stopped first", firstAttemptAt: now,
                lastAttemptAt: now, createdAt: now
            )
            await finish(job.request, .deadLettered(await persist(deadLetter)))
        }
    }

    // MARK: Delivery

    /// Attempts `job` until it is delivered, refused, out of attempts, or shutdown stops it.
    private func deliver(_ job: Job) async {
        let request = job.request
        let maxAttempts = max(1, request.maxAttempts)
        var attempt = 0
        var firstAttemptAt: Date?
        var last: Attempt
        var lastAt: Date
        while true {
            attempt += 1
            lastAt = Date()
            if firstAttemptAt == nil { firstAttemptAt = lastAt }
            last = await send(request)
            if case .delivered(let status) = last {
                await finish(request, .delivered(status: status, attempts: attempt))
                return
            }
            guard case .failed(_, _, let retryable, let retryAfter) = last, retryable, attempt < maxAttempts, !isStopping else { break }
            var delay = configuration.retryPolicy.delay(afterAttempt: attempt)
            if let retryAfter { delay = max(delay, min(retryAfter, configuration.retryPolicy.cap)) }
            guard await backOff(delay) else { break }
        }
        guard case .failed(let status, let reason, _, _) = last else { return }
        let deadLetter = WebhookDeadLetter(
            request: request, attempts: attempt, lastError: reason, lastStatus: status, firstAttemptAt: firstAttemptAt ?? lastAt,
            lastAttemptAt: lastAt
        )
        logger.info(
            "webhook dead-lettered",
            metadata: [
                "webhook.delivery_id": "\(request.deliveryID)", "webhook.host": "\(request.redactedURL)",
                "webhook.attempts": "\(attempt)", "webhook.error": "\(reason)", "tenant.id": "\(request.tenantID)",
                "rule.id": "\(request.ruleID ?? "")",
            ]
        )
        await finish(request, .deadLettered(await persist(deadLetter)))
    }

    /// Counts the request as finished and tells the outcome handler.
    private func finish(_ request: WebhookRequest, _ outcome: WebhookOutcome) async {
        let handler = state.withLock { state in
            state.outstanding = max(0, state.outstanding - 1)
            return state.outcomeHandler
        }
        handler?(request, outcome)
    }

    /// Stores a dead letter, also while the calling task is being cancelled (shutdown): what
    /// could not be sent must not be lost on the way out.
    private func persist(_ deadLetter: WebhookDeadLetter) async -> WebhookDeadLetter {
        let store = self.store
        do {
            try await Task { try await store.insert(deadLetter) }.value
        } catch {
            logger.error(
                "webhook dead letter could not be stored",
                metadata: ["webhook.delivery_id": "\(deadLetter.request.deliveryID)", "error": "\(error)"]
            )
        }
        return deadLetter
    }

    /// What one attempt came to.
    enum Attempt: Sendable {
        case delivered(status: Int)
        /// `status` when the endpoint answered; `retryAfter` from its Retry-After header.
        case failed(status: Int?, reason: String, retryable: Bool, retryAfter: Duration?)
    }

    /// One POST of `request`, signed now.
    func send(_ request: WebhookRequest) async -> Attempt {
        var http = HTTPClientRequest(url: request.url)
        http.method = .POST
        http.headers.add(name: "Content-Type", value: "application/json")
        http.headers.add(name: "User-Agent", value: "Meridian")
        http.headers.add(name: WebhookSignature.deliveryHeaderName, value: request.deliveryID)
        let body = ByteBuffer(string: request.body)
        if let secret = request.secret {
            let timestamp = Int64(Date().timeIntervalSince1970)
            http.headers.add(
                name: WebhookSignature.headerName,
                value: WebhookSignature.sign(body: body.readableBytesView, secret: secret, timestamp: timestamp)
            )
        }
        http.body = .bytes(body)
        let timeoutMs = max(1, request.timeoutMs)
        do {
            let response = try await client.execute(http, timeout: .milliseconds(timeoutMs))
            let status = Int(response.status.code)
            // Read a little of the body (the connection can then be reused); never kept.
            var read = 0
            do {
                for try await chunk in response.body {
                    read += chunk.readableBytes
                    if read > configuration.maximumResponseBytes { break }
                }
            } catch {
                // The status already tells the outcome.
            }
            if (200...299).contains(status) { return .delivered(status: status) }
            let retryable = WebhookRetryPolicy.isRetryable(status: status)
            var reason = "HTTP \(status)"
            if (300...399).contains(status) { reason += " (redirects are not followed)" }
            let retryAfter = response.headers.first(name: "Retry-After").flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
                .map { Duration.seconds(max(0, $0)) }
            return .failed(status: status, reason: reason, retryable: retryable, retryAfter: retryable ? retryAfter : nil)
        } catch {
            return .failed(status: nil, reason: Self.reason(for: error, timeoutMs: timeoutMs), retryable: Self.isRetryable(error), retryAfter: nil)
        }
    }

    /// A short account of a failed attempt: `timed out after 5 s`, `connection refused`. Never
    /// the URL (it may carry credentials), the body or the secret.
    static func reason(for error: any Error, timeoutMs: Int64) -> String {
        if isCancellation(error) { return "cancelled: the server stopped" }
        if let error = error as? HTTPClientError {
            switch error {
            case .deadlineExceeded, .readTimeout, .connectTimeout, .writeTimeout, .tlsHandshakeTimeout, .getConnectionFromPoolTimeout:
                return "timed out after \(describe(milliseconds: timeoutMs))"
            case .invalidURL, .emptyHost, .emptyScheme:
                return "invalid URL"
            case .remoteConnectionClosed:
                return "connection closed by the endpoint before it answered"
            default:
                return "request failed: \(error)"
            }
        }
        if let error = error as? IOError {
            if error.errnoCode == ECONNREFUSED { return "connection refused" }
            return "connection failed: \(String(cString: strerror(error.errnoCode)).lowercased())"
        }
        let text = String(describing: error)
        if text.lowercased().contains("refused") { return "connection refused" }
        if text.lowercased().contains("timed out") || text.lowercased().contains("timeout") {
            return "timed out after \(describe(milliseconds: timeoutMs))"
        }
        return "connection failed: \(String(text.prefix(200)))"
    }

    /// Whether a failed attempt (no answer) is worth another: everything but a bad URL or a
    /// cancellation.
    static func isRetryable(_ error: any Error) -> Bool {
        if isCancellation(error) { return false }
        if let error = error as? HTTPClientError {
            switch error {
            case .invalidURL, .emptyHost, .emptyScheme: return false
            default: return true
            }
        }
        return true
    }

    private static func isCancellation(_ error: any Error) -> Bool {
        error is CancellationError || (error as? HTTPClientError) == .cancelled
    }

    /// `5 s`, `0.25 s`.
    static func describe(milliseconds: Int64) -> String {
        milliseconds % 1000 == 0 ? "\(milliseconds / 1000) s" : "\(Double(milliseconds) / 1000) s"
    }

    // MARK: Replay

    /// Sends a dead letter again: one attempt, signed with a new timestamp, with the same
    /// delivery id. Delivered: the dead letter is deleted. Failed: it stays, with `attempts`,
    /// `lastError`, `lastStatus` and `lastAttemptAt` updated and `replays` one more.
    ///
    /// - Throws: ``WebhookError`` notFound (no such dead letter in the tenant) or unavailable
    ///   (shutting down); store errors.
    public func replay(id: String, tenantID: String) async throws -> WebhookOutcome {
        guard !isStopping else { throw WebhookError.unavailable("the server is shutting down; replay later") }
        guard let deadLetter = try await store.get(id: id, tenantID: tenantID) else {
            throw WebhookError.notFound("no dead letter \(id)")
        }
        let attemptedAt = Date()
        let outcome: WebhookOutcome
        switch await send(deadLetter.request) {
        case .delivered(let status):
            _ = try await store.delete(id: deadLetter.id, tenantID: tenantID)
            outcome = .delivered(status: status, attempts: 1)
        case .failed(let status, let reason, _, _):
            var updated = deadLetter
            updated.attempts += 1
            updated.lastError = reason
            updated.lastStatus = status
            updated.lastAttemptAt = attemptedAt
            updated.replays += 1
            _ = try await store.update(updated)
            outcome = .deadLettered(updated)
        }
        logger.info(
            "webhook dead letter replayed",
            metadata: [
                "webhook.dead_letter_id": "\(deadLetter.id)", "webhook.delivery_id": "\(deadLetter.request.deliveryID)",
                "webhook.delivered": "\(outcome.isDelivered)", "tenant.id": "\(tenantID)",
            ]
        )
        let handler = state.withLock { $0.outcomeHandler }
        handler?(deadLetter.request, outcome)
        return outcome
    }

    // MARK: State

    private struct Job: Sendable {
        var request: WebhookRequest
        var enqueuedAt: Date
    }

    private struct State {
        var queue = FIFO<Job>()
        var outstanding = 0
        var idleWorkers: [CheckedContinuation<Job?, Never>] = []
        var stopping = false
        var stopWaiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var nextWaiterID: UInt64 = 0
        var running = false
        var finished = false
        var finishWaiters: [CheckedContinuation<Void, Never>] = []
        var outcomeHandler: OutcomeHandler?

        init(outcomeHandler: OutcomeHandler?) {
            self.outcomeHandler = outcomeHandler
        }
    }
}

extension WebhookOutcome {
    /// Whether the webhook was delivered.
    public var isDelivered: Bool {
        if case .delivered = self { return true }
        return false
    }
}

/// A first-in first-out queue on an array: amortised O(1) at both ends.
struct FIFO<Element> {
    private var storage: [Element] = []
    private var head = 0

    var count: Int { storage.count - head }
    var isEmpty: Bool { count == 0 }

    mutating func append(_ element: Element) {
        storage.append(element)
    }

    mutating func popFirst() -> Element? {
        guard head < storage.count else { return nil }
        let element = storage[head]
        head += 1
        if head > 1024 && head * 2 > storage.count {
            storage.removeFirst(head)
            head = 0
        } else if head == storage.count {
            storage.removeAll(keepingCapacity: true)
            head = 0
        }
        return element
    }
}

extension FIFO: Sendable where Element: Sendable {}

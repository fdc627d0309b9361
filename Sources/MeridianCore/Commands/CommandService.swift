import Foundation
import Synchronization

/// Commands (RPC) to devices: validation and rate limits, the state machine over a
/// ``CommandStore``, delivery through a ``CommandTransport``, device answers, expiry and
/// timeouts, and waiting for a command to finish.
///
/// Every state change is a compare-and-set in the store, so each command finishes exactly once
/// however answers, acknowledgements, timeouts and expiries race.
public final class CommandService: Sendable {
    /// Limits and defaults (`commands.*` configuration keys).
    public struct Settings: Sendable, Hashable {
        /// Timeout of two-way commands that name none.
        public var defaultTimeoutMs: Int = 10_000
        /// Longest timeout accepted.
        public var maximumTimeoutMs: Int = 600_000
        /// Longest a persistent command may stay queued (also its default expiry).
        public var maximumExpiryMs: Int = 7 * 24 * 3_600_000
        /// Largest `params` accepted, as JSON bytes.
        public var maximumParamsBytes: Int = 65_536

        public init() {}
    }

    public let store: any CommandStore
    public let settings: Settings
    public let limiter: CommandRateLimiter
    private let logger: CommandLog
    private let now: @Sendable () -> Date
    private let transportBox = Mutex<(any CommandTransport)?>(nil)
    /// Someone waiting for a command to finish, and the timer that ends the wait.
    private struct Waiter {
        var continuation: CheckedContinuation<Void, Never>
        var timer: Task<Void, Never>?
    }

    private let waiters = Mutex<[String: [UInt64: Waiter]]>([:])
    /// Devices whose queue is being delivered (value: deliver again when done, something new
    /// may have come), so that one device's queued commands go out one at a time, in order.
    private let delivering = Mutex<[String: Bool]>([:])
    /// The convention each command was last published by (``publishing(commandID:by:)``): a
    /// transport that probes learns it only while publishing, and the device may acknowledge
    /// or answer before the probe returns; every later write records this one.
    private let publishedBy = Mutex<[String: CommandConvention]>([:])
    private let nextWaiter = Atomic<UInt64>(0)
    private let observers = Mutex<[@Sendable (Command) -> Void]>([])

    public init(
        store: any CommandStore, settings: Settings = Settings(), limiter: CommandRateLimiter, logger: @escaping CommandLog = { _, _, _ in },
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.store = store
        self.settings = settings
        self.limiter = limiter
        self.logger = logger
        self.now = now
    }

    /// Connects the service to the devices (the gateway is created after the service).
    public func attach(_ transport: any CommandTransport) {
        transportBox.withLock { $0 = transport }
    }

    /// Calls `observer` after every state change (live streams).
    public func observe(_ observer: @escaping @Sendable (Command) -> Void) {
        observers.withLock { $0.append(observer) }
    }

    private var transport: (any CommandTransport)? { transportBox.withLock { $0 } }

    // MARK: sending

    /// Longest method name.
    public static let maximumMethodLength = 128

    /// Whether `method` may name a command: 1–128 characters, none of `/ + # $` or control
    /// characters (it becomes a topic level).
    public static func isValidMethod(_ method: String) -> Bool {
        guard !method.isEmpty, method.utf8.count <= maximumMethodLength else { return false }
        return method.unicodeScalars.allSatisfy { scalar in
            !"/+#$".unicodeScalars.contains(scalar) && !(scalar.value < 0x20 || scalar.value == 0x7F)
        } && method != "request" && method != "response"
    }

    /// Creates a command for `deviceID` (which the caller checked exists in `tenantID`) and
    /// sends it if the device is connected. Returns the command as it is then: `sent` (or already
    /// further), or `queued` for a persistent command to an offline device.
    ///
    /// - Throws: ``CommandError`` `invalid` (naming the field), `rateLimited`, or `deviceOffline`
    ///   for a non-persistent command to a device that is not connected (recorded as `failed`).
    public func send(_ request: CommandRequest, tenantID: String, deviceID: String, actor: String) async throws -> Command {
        guard Self.isValidMethod(request.method) else {
            throw CommandError.invalid(
                "method must be 1–\(Self.maximumMethodLength) characters without / + # $ or control characters, and not request or response",
                field: "method"
            )
        }
        let timeout = request.timeoutMs ?? settings.defaultTimeoutMs
        guard timeout >= 1, timeout <= settings.maximumTimeoutMs else {
            throw CommandError.invalid("timeoutMs must be from 1 to \(settings.maximumTimeoutMs)", field: "timeoutMs")
        }
        if let expiry = request.expiresInMs {
            guard request.persistent else {
                throw CommandError.invalid("expiresInMs is only for persistent commands", field: "expiresInMs")
            }
            guard expiry >= 1, expiry <= settings.maximumExpiryMs else {
                throw CommandError.invalid("expiresInMs must be from 1 to \(settings.maximumExpiryMs) (commands.max_expiry_ms)", field: "expiresInMs")
            }
        }
        let paramsSize = (try? JSONEncoder().encode(request.params).count) ?? 0
        guard paramsSize <= settings.maximumParamsBytes else {
            throw CommandError.invalid("params may be at most \(settings.maximumParamsBytes) bytes of JSON", field: "params")
        }
        let created = now()
        if let refusal = limiter.acquire(tenantID: tenantID, deviceID: deviceID, now: created) {
            let limit = refusal.scope == "device" ? limiter.perDevice : limiter.perTenant
            logger(.info, "command refused: rate limit", ["device.id": "\(deviceID)", "tenant.id": "\(tenantID)", "command.limit": "\(refusal.scope)"])
            throw CommandError.rateLimited(
                "too many commands for this \(refusal.scope) (at most \(limit) a minute); retry later", retryAfter: refusal.retryAfter
            )
        }
        let expiry = request.persistent ? created.addingTimeInterval(Double(request.expiresInMs ?? settings.maximumExpiryMs) / 1000) : nil
        let command = Command(
            id: MeridianID.generate(), tenantID: tenantID, deviceID: deviceID, method: request.method, params: request.params,
            oneWay: request.oneWay, persistent: request.persistent, timeoutMs: timeout, expiresAt: expiry, actor: actor,
            createdAt: created
        )
        try await store.insert(command)
        let dispatched = try await dispatch(command)
        if dispatched.state == .queued && !command.persistent {
            var failed = dispatched
            failed.state = .failed
            failed.completedAt = now()
            failed.error = "the device is not connected (send it as persistent to queue it)"
            if try await store.transition(failed, from: [.queued]) { changed(failed) }
            throw CommandError.deviceOffline("device \(deviceID) is not connected; send the command with persistent: true to queue it", commandID: command.id)
        }
        logger(.debug, "command created", ["command.id": "\(command.id)", "device.id": "\(deviceID)", "command.state": "\(dispatched.state.rawValue)"])
        return dispatched
    }

    /// Sends a queued command if its device can be reached; returns it as it is afterwards.
    private func dispatch(_ command: Command) async throws -> Command {
        guard command.state == .queued, let transport, let convention = transport.route(tenantID: command.tenantID, deviceID: command.deviceID) else {
            return command
        }
        var sent = command
        sent.state = .sent
        sent.sentAt = now()
        sent.convention = convention
        // Marked sent before it goes out, so that a quick answer finds it waiting.
        guard try await store.transition(sent, from: [.queued]) else { return try await store.command(id: command.id) ?? command }
        changed(sent)
        if let used = await transport.send(sent, by: convention) {
            logger(.debug, "command sent", ["command.id": "\(sent.id)", "device.id": "\(sent.deviceID)", "command.convention": "\(used.rawValue)"])
            if used != convention {
                // The transport had to find the device's convention: record the one that reached
                // it, whatever state the command has reached meanwhile (the device may have
                // acknowledged or answered already).
                for _ in 0..<5 {
                    guard var current = try await store.command(id: sent.id), current.convention != used else { break }
                    current.convention = used
                    if try await store.transition(current, from: [current.state]) { break }
                }
            }
            return try await store.command(id: sent.id) ?? sent
        }
        // The device went away between the lookup and the publish: back to the queue.
        var again = sent
        again.state = .queued
        again.sentAt = nil
        again.convention = nil
        if try await store.transition(again, from: [.sent]) {
            changed(again)
            return again
        }
        return try await store.command(id: sent.id) ?? sent
    }

    /// Sends `deviceID`'s queued commands, oldest first (the device connected and subscribed);
    /// expired ones expire instead.
    public func deliverQueued(tenantID: String, deviceID: String) async {
        let key = tenantID + "/" + deviceID
        let first = delivering.withLock { delivering -> Bool in
            if delivering[key] != nil {
                delivering[key] = true
                return false
            }
            delivering[key] = false
            return true
        }
        guard first else { return }  // the running delivery goes round again
        while true {
            await deliverQueuedOnce(tenantID: tenantID, deviceID: deviceID)
            let again = delivering.withLock { delivering -> Bool in
                if delivering[key] == true {
                    delivering[key] = false
                    return true
                }
                delivering[key] = nil
                return false
            }
            if !again { return }
        }
    }

    private func deliverQueuedOnce(tenantID: String, deviceID: String) async {
        do {
            for command in try await store.queued(tenantID: tenantID, deviceID: deviceID) {
                if let expiresAt = command.expiresAt, expiresAt <= now() {
                    try await expire(command)
                    continue
                }
                let result = try await dispatch(command)
                if result.state == .queued { break }  // gone again
            }
        } catch {
            logger(.error, "could not deliver queued commands", ["device.id": "\(deviceID)", "error": String(describing: error)])
        }
    }

    // MARK: device side

    /// The transport is about to publish command `commandID` by `convention` (it may try
    /// several in turn while it looks for the one a device listens on).
    public func publishing(commandID: String, by convention: CommandConvention) {
        publishedBy.withLock { conventions in
            if conventions.count >= 100_000 { conventions.removeAll() }
            conventions[commandID] = convention
        }
    }

    private func publishedConvention(_ commandID: String) -> CommandConvention? {
        publishedBy.withLock { $0[commandID] }
    }

    /// The device's MQTT client acknowledged the command: `delivered` (a one-way command
    /// succeeds then).
    public func delivered(commandID: String) async {
        do {
            guard var command = try await store.command(id: commandID), command.state == .sent else { return }
            if let convention = publishedConvention(commandID) { command.convention = convention }
            let time = now()
            command.deliveredAt = time
            if command.oneWay {
                command.state = .succeeded
                command.completedAt = time
            } else {
                command.state = .delivered
            }
            if try await store.transition(command, from: [.sent]) { changed(command) }
        } catch {
            logger(.error, "could not record a command delivery", ["command.id": "\(commandID)", "error": String(describing: error)])
        }
    }

    /// The id of the device's command waiting for an answer whose ThingsBoard request id
    /// (``Command/thingsBoardRequestID(_:)``) is `requestID`; nil when none is.
    public func awaitingCommand(thingsBoardRequestID requestID: Int, tenantID: String, deviceID: String) async -> String? {
        var cursor: String?
        // Commands waiting for answers are the device's newest: a few pages at most.
        for _ in 0..<10 {
            guard let page = try? await store.commands(tenantID: tenantID, deviceID: deviceID, limit: 100, before: cursor) else { return nil }
            for command in page.items
            where CommandState.awaitingAnswer.contains(command.state) && Command.thingsBoardRequestID(command.id) == requestID {
                return command.id
            }
            guard let next = page.nextCursor else { return nil }
            cursor = next
        }
        return nil
    }

    /// A device answered command `commandID`: records the outcome if the command is this
    /// device's and is waiting for an answer.
    public func answer(commandID: String, tenantID: String, deviceID: String, outcome: CommandOutcome) async -> CommandAnswerVerdict {
        do {
            guard var command = try await store.command(id: commandID) else {
                logger(.info, "command answer refused: unknown command", ["device.id": "\(deviceID)", "command.id": "\(commandID)"])
                return .unknown
            }
            guard command.tenantID == tenantID, command.deviceID == deviceID else {
                logger(.info, "command answer refused: the command is another device's", ["device.id": "\(deviceID)", "command.id": "\(commandID)"])
                return .notYours
            }
            guard !command.oneWay, CommandState.awaitingAnswer.contains(command.state) else {
                logger(.info, "command answer refused: the command is finished", ["device.id": "\(deviceID)", "command.id": "\(commandID)", "command.state": "\(command.state.rawValue)"])
                return .finished
            }
            let time = now()
            if let convention = publishedConvention(commandID) { command.convention = convention }
            command.completedAt = time
            if command.deliveredAt == nil { command.deliveredAt = time }
            switch outcome {
            case .success(let value):
                command.state = .succeeded
                command.response = value
            case .failure(let message):
                command.state = .failed
                command.error = String(message.prefix(1024))
            }
            guard try await store.transition(command, from: CommandState.awaitingAnswer) else { return .finished }
            publishedBy.withLock { _ = $0.removeValue(forKey: commandID) }
            changed(command)
            return .accepted
        } catch {
            logger(.error, "could not record a command answer", ["command.id": "\(commandID)", "error": String(describing: error)])
            return .unknown
        }
    }

    // MARK: expiry and timeouts

    /// Expires queued commands past their expiry and times out two-way commands past their
    /// deadline. Run periodically (``CommandSweeper``) and whenever a waiter's deadline passes.
    public func sweep() async {
        do {
            let time = now()
            for command in try await store.due(at: time, limit: 1_000) {
                if command.state == .queued, let expiresAt = command.expiresAt, expiresAt <= time {
                    try await expire(command)
                } else if let deadline = command.answerDeadline, deadline <= time, CommandState.awaitingAnswer.contains(command.state) {
                    try await timeOut(command)
                }
            }
        } catch {
            logger(.error, "command sweep failed", ["error": String(describing: error)])
        }
    }

    private func expire(_ command: Command) async throws {
        var expired = command
        expired.state = .expired
        expired.completedAt = now()
        expired.error = "not delivered before its expiry"
        if try await store.transition(expired, from: [.queued]) {
            logger(.info, "command expired", ["command.id": "\(command.id)", "device.id": "\(command.deviceID)"])
            changed(expired)
        }
    }

    private func timeOut(_ command: Command) async throws {
        var timedOut = command
        timedOut.state = .timedOut
        timedOut.completedAt = now()
        timedOut.error = "no answer within \(command.timeoutMs) ms"
        if try await store.transition(timedOut, from: CommandState.awaitingAnswer) {
            logger(.info, "command timed out", ["command.id": "\(command.id)", "device.id": "\(command.deviceID)"])
            changed(timedOut)
        }
    }

    // MARK: reading and waiting

    /// The command `id` of `deviceID` in `tenantID`; `notFound` otherwise.
    public func command(id: String, tenantID: String, deviceID: String) async throws -> Command {
        guard let command = try await store.command(id: id), command.tenantID == tenantID, command.deviceID == deviceID else {
            throw CommandError.notFound("device \(deviceID) has no command \(id)")
        }
        return command
    }

    /// A device's commands, newest first.
    public func commands(tenantID: String, deviceID: String, limit: Int, before: String?) async throws -> CommandPage {
        if let before, CommandCursor.parse(before) == nil {
            throw CommandError.invalid("cursor is not one this API returned", field: "cursor")
        }
        return try await store.commands(tenantID: tenantID, deviceID: deviceID, limit: limit, before: before)
    }

    /// Waits until a sent two-way command finishes or its answer deadline passes (then it times
    /// out); returns it as it is then. A queued or one-way command is returned as it is.
    public func awaitAnswer(_ command: Command) async throws -> Command {
        guard !command.oneWay, !command.state.isFinal, let deadline = command.answerDeadline else { return command }
        let remaining = deadline.timeIntervalSince(now())
        if remaining > 0 {
            await waitForChange(of: command.id, upTo: remaining)
        }
        var current = try await store.command(id: command.id) ?? command
        if !current.state.isFinal, let deadline = current.answerDeadline, deadline <= now() {
            try await timeOut(current)
            current = try await store.command(id: command.id) ?? current
        }
        return current
    }

    /// Suspends until command `id` reaches a final state here, or `seconds` pass.
    private func waitForChange(of id: String, upTo seconds: TimeInterval) async {
        let token = nextWaiter.add(1, ordering: .relaxed).newValue
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            waiters.withLock { $0[id, default: [:]][token] = Waiter(continuation: continuation, timer: nil) }
            let timer = Task { [weak self] in
                // It may have finished before the waiter was registered.
                if let self, (try? await self.store.command(id: id))?.state.isFinal == true {
                    self.resumeWaiter(id: id, token: token)
                    return
                }
                try? await Task.sleep(for: .milliseconds(Int64(seconds * 1000) + 1))
                self?.resumeWaiter(id: id, token: token)
            }
            // Keep the timer to cancel it when the command finishes first (unless that already happened).
            let registered = waiters.withLock { waiters -> Bool in
                guard waiters[id]?[token] != nil else { return false }
                waiters[id]?[token]?.timer = timer
                return true
            }
            if !registered { timer.cancel() }
        }
    }

    private func resumeWaiter(id: String, token: UInt64) {
        let waiter = waiters.withLock { waiters -> Waiter? in
            let waiter = waiters[id]?.removeValue(forKey: token)
            if waiters[id]?.isEmpty == true { waiters[id] = nil }
            return waiter
        }
        waiter?.continuation.resume()
    }

    /// After every state change: wake waiters of finished commands, tell observers.
    private func changed(_ command: Command) {
        if command.state.isFinal {
            let finished = waiters.withLock { $0.removeValue(forKey: command.id) } ?? [:]
            for waiter in finished.values {
                waiter.timer?.cancel()
                waiter.continuation.resume()
            }
        }
        for observer in observers.withLock({ $0 }) { observer(command) }
    }
}

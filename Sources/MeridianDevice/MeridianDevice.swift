import Foundation
import Logging
import MQTTClient
import MQTTCore
import MeridianCore
import NIOCore
import NIOPosix

/// A device's connection to Meridian: telemetry with an offline buffer, its twin, and commands.
///
/// ```swift
/// let device = MeridianDevice(configuration: .init(host: "localhost", credentials: .accessToken(token)))
/// await device.onDesiredChange { desired, version in print("desired now", desired) }
/// await device.onCommand("reboot") { params in ["ok": true] }
/// try await device.connect()
/// try await device.send(["temperature": 21.5, "heating": true])
/// _ = try await device.report(["firmware": "1.0.3"])
/// ```
///
/// Telemetry goes into a bounded buffer first (in memory, or also on disk) and is sent in
/// batches at QoS 1 by one sender, in order; a sample leaves the buffer only when the server
/// acknowledged it (stored). While the device is offline the buffer fills, and it drains when the
/// connection is back: no sample is lost across disconnects and server restarts. The connection
/// reconnects by itself (exponential backoff with jitter) and resumes its session, so
/// subscriptions and commands queued for the device survive.
public actor MeridianDevice {
    /// Counters of what the device did.
    public struct Statistics: Sendable, Hashable {
        /// Samples the server acknowledged.
        public var acknowledged = 0
        /// Samples dropped because the buffer was full (``BufferOverflow/dropOldest``).
        public var dropped = 0
        /// Samples the server refused (e.g. an invalid payload); not retried.
        public var refused = 0
        /// Samples waiting in the buffer.
        public var buffered = 0
        /// Connections made (the first and every reconnect).
        public var connections = 0
        /// Commands answered.
        public var commands = 0
    }

    /// What happened to the device's connection and data.
    public enum Event: Sendable {
        case connected(sessionPresent: Bool)
        case disconnected(reason: String, willReconnect: Bool)
        case reconnecting(attempt: Int)
        /// The server refused telemetry (not retried): how many samples, and why.
        case telemetryRefused(samples: Int, reason: String)
    }

    public let configuration: Configuration
    /// Connection changes and refusals, for logs and dashboards (newest 256 kept when not read).
    public nonisolated let events: AsyncStream<Event>

    private let client: MQTTClient
    private let logger: Logger
    private let eventsContinuation: AsyncStream<Event>.Continuation
    private var buffer: TelemetryBuffer
    private var statistics = Statistics()
    private var isConnected = false
    private var wantsConnection = false
    private var senderWaiters: [CheckedContinuation<Void, Never>] = []
    private var pending: [String: CheckedContinuation<JSONValue, any Error>] = [:]
    private var desiredHandler: (@Sendable ([String: JSONValue], Int) async -> Void)?
    private var desiredQueue: AsyncStream<([String: JSONValue], Int)>.Continuation?
    private var commandHandlers: [String: @Sendable (JSONValue) async throws -> JSONValue] = [:]
    private var fallbackCommandHandler: (@Sendable (String, JSONValue) async throws -> JSONValue)?
    private var acknowledgedHandler: (@Sendable ([Duration]) -> Void)?
    /// The readers of the client's events and messages: started once, for the device's life
    /// (an AsyncStream ends for good when the task reading it is cancelled).
    private var streamTasks: [Task<Void, Never>] = []
    /// The sender and the desired-state handler's queue: from connect to disconnect.
    private var tasks: [Task<Void, Never>] = []

    /// A device; nothing happens on the network before ``connect()``.
    ///
    /// - Throws: ``MeridianDeviceError/invalidConfiguration(_:)`` for unusable TLS material,
    ///   ``MeridianDeviceError/storage(_:)`` when the buffer directory cannot be used.
    public init(
        configuration: Configuration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "MeridianDevice", factory: { _ in SwiftLogNoOpLogHandler() })
    ) throws {
        self.configuration = configuration
        self.logger = logger
        var clientConfiguration = try configuration.clientConfiguration()
        clientConfiguration.packetBufferSize = 0
        clientConfiguration.messageBufferSize = 10_000
        client = MQTTClient(configuration: clientConfiguration, eventLoopGroup: eventLoopGroup)
        buffer = try TelemetryBuffer(
            directory: configuration.telemetry.bufferDirectory,
            name: configuration.effectiveClientIdentifier
        )
        (events, eventsContinuation) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .bufferingNewest(256))
        statistics.buffered = buffer.count
    }

    deinit {
        for task in tasks + streamTasks { task.cancel() }
        eventsContinuation.finish()
    }

    // MARK: connecting

    /// Connects, retrying with the reconnect policy's backoff until the server answers, then
    /// subscribes to the device's twin and command topics and starts sending buffered telemetry.
    ///
    /// - Throws: ``MeridianDeviceError/refused(_:_:)`` when the server refuses the credentials
    ///   (not retried); the last connection error after the policy's maximum attempts.
    public func connect() async throws {
        guard !wantsConnection else { return }
        wantsConnection = true
        startTasks()
        var attempt = 0
        while true {
            attempt += 1
            do {
                try await client.connect()
                return
            } catch let error as MQTTClientError {
                if error.code == .connectionRefused {
                    wantsConnection = false
                    let code = error.reasonCode ?? .unspecifiedError
                    throw MeridianDeviceError.refused(code, error.reasonString ?? error.message)
                }
                if let limit = configuration.reconnect.maximumAttempts, attempt >= limit {
                    wantsConnection = false
                    throw error
                }
                let delay = configuration.reconnect.delay(forAttempt: attempt)
                logger.debug(
                    "device connect failed; retrying",
                    metadata: ["error": "\(error)", "retry.delay_ms": "\(delay.nanoseconds / 1_000_000)"]
                )
                eventsContinuation.yield(.reconnecting(attempt: attempt))
                try await Task.sleep(for: .nanoseconds(delay.nanoseconds))
            }
        }
    }

    /// Disconnects cleanly. Samples not yet acknowledged stay in the buffer (and on disk, when
    /// configured); call ``flush(timeout:)`` first to wait for them.
    public func disconnect() async {
        wantsConnection = false
        try? await client.disconnect()
        isConnected = false
        for task in tasks { task.cancel() }
        tasks.removeAll()
        wakeSender()
    }

    /// Drops the connection without a DISCONNECT, as a device losing power or network would.
    /// Reconnecting is up to the caller (``connect()``). For tests and simulations.
    public func dropConnection() async {
        wantsConnection = false
        await client.close()
        isConnected = false
        for task in tasks { task.cancel() }
        tasks.removeAll()
        wakeSender()
    }

    /// Whether the MQTT connection is up.
    public var connected: Bool { isConnected }

    /// The counters so far.
    public var stats: Statistics {
        var current = statistics
        current.buffered = buffer.count
        return current
    }

    private func startTasks() {
        if streamTasks.isEmpty {
            let events = client.events
            let messages = client.messages
            streamTasks.append(Task { [weak self] in
                for await event in events {
                    guard let self else { return }
                    await self.handle(event)
                }
            })
            streamTasks.append(Task { [weak self] in
                for await message in messages {
                    guard let self else { return }
                    await self.handle(message)
                }
            })
        }
        guard tasks.isEmpty else { return }
        tasks.append(Task { [weak self] in
            await self?.sendLoop()
        })
        if let handler = desiredHandler { startDesiredQueue(handler) }
    }

    private func handle(_ event: MQTTClient.Event) async {
        switch event {
        case .connected(let connAck):
            isConnected = true
            statistics.connections += 1
            eventsContinuation.yield(.connected(sessionPresent: connAck.sessionPresent))
            logger.debug("device connected", metadata: ["mqtt.session_present": "\(connAck.sessionPresent)"])
            if !connAck.sessionPresent {
                await subscribe()
            }
            wakeSender()
            if desiredHandler != nil {
                // Desired settings may have changed while offline: apply the current delta.
                let device = self
                Task { await device.synchronizeDesired() }
            }
        case .disconnected(let reason, let willReconnect):
            isConnected = false
            eventsContinuation.yield(.disconnected(reason: "\(reason)", willReconnect: willReconnect))
            if !willReconnect && wantsConnection {
                // The client gave up (its policy's attempt limit): keep trying, from scratch.
                wantsConnection = false
                let device = self
                Task { try? await device.connect() }
            }
        case .reconnecting(let attempt, _):
            eventsContinuation.yield(.reconnecting(attempt: attempt))
        case .reconnectFailed:
            break
        }
    }

    private func subscribe() async {
        let prefix = configuration.topicPrefix
        var filters = [
            SubscribePacket.Subscription("\(prefix)/twin/#", qos: .atLeastOnce)
        ]
        switch configuration.protocolVersion {
        case .v5:
            filters.append(.init("\(prefix)/commands/+", qos: .atLeastOnce))
        default:
            filters.append(.init("\(prefix)/commands/request/+", qos: .atLeastOnce))
            filters.append(.init("\(prefix)/errors", qos: .atLeastOnce))
        }
        do {
            let subAck = try await client.subscribe(filters)
            for (filter, code) in zip(filters, subAck.reasonCodes) where code.isFailure {
                logger.error(
                    "device subscription refused",
                    metadata: ["mqtt.topic_filter": "\(filter.topicFilter)", "mqtt.reason_code": "\(code)"]
                )
            }
        } catch {
            logger.debug("device subscribe failed (retried on the next connect)", metadata: ["error": "\(error)"])
        }
    }

    // MARK: telemetry

    /// Queues one sample: `values` (numbers, booleans, strings) at time `at`. Returns once it is in
    /// the buffer (and on disk, when configured); it is sent in the next batch.
    ///
    /// - Throws: ``MeridianDeviceError/invalidTelemetry(_:)`` for an empty set or a value that is
    ///   not a number, boolean or string (naming the key), or a number that is not finite;
    ///   ``MeridianDeviceError/bufferFull`` when full and ``BufferOverflow/rejectNew`` is set.
    public func send(_ values: [String: JSONValue], at time: Date = Date()) throws {
        guard !values.isEmpty else { throw MeridianDeviceError.invalidTelemetry("no values") }
        for (key, value) in values {
            guard !key.isEmpty else { throw MeridianDeviceError.invalidTelemetry("an empty key") }
            switch value {
            case .number(let number) where !number.isFinite:
                throw MeridianDeviceError.invalidTelemetry("\(key): \(number) is not a finite number")
            case .number, .bool, .string:
                continue
            default:
                throw MeridianDeviceError.invalidTelemetry("\(key): only numbers, booleans and strings are telemetry")
            }
        }
        if buffer.count >= configuration.telemetry.bufferCapacity {
            switch configuration.telemetry.overflow {
            case .rejectNew:
                throw MeridianDeviceError.bufferFull
            case .dropOldest:
                if try buffer.dropOldest() { statistics.dropped += 1 }
            }
        }
        let milliseconds = Int64((time.timeIntervalSince1970 * 1000).rounded())
        var json = "{\"ts\":\(milliseconds),\"values\":"
        JSONValue.object(values).write(to: &json)
        json += "}"
        try buffer.append(json)
        wakeSender()
    }

    /// Calls `handler` with each acknowledged batch's latencies: for every sample, the time from
    /// ``send(_:at:)`` to the server's acknowledgement (by then it is stored and queryable). For
    /// benchmarks; it runs on the device's actor and must return quickly.
    public func onAcknowledged(_ handler: @escaping @Sendable ([Duration]) -> Void) {
        acknowledgedHandler = handler
    }

    /// Waits until every buffered sample is acknowledged (or `timeout` passes).
    ///
    /// - Returns: Whether the buffer is empty.
    @discardableResult
    public func flush(timeout: Duration = .seconds(30)) async -> Bool {
        if buffer.isEmpty { return true }
        let deadline = ContinuousClock.now + timeout
        while !buffer.isEmpty && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
        return buffer.isEmpty
    }

    private func wakeSender() {
        let waiters = senderWaiters
        senderWaiters.removeAll()
        for waiter in waiters { waiter.resume() }
    }

    private func waitForWork() async {
        await withCheckedContinuation { senderWaiters.append($0) }
    }

    /// The one sender: a batch from the front of the buffer, published at QoS 1, removed once
    /// acknowledged; on a lost connection the same samples go again after the reconnect.
    private func sendLoop() async {
        let topic = "\(configuration.topicPrefix)/telemetry"
        while !Task.isCancelled {
            guard isConnected, !buffer.isEmpty else {
                await waitForWork()
                continue
            }
            if buffer.count < configuration.telemetry.maximumBatch && configuration.telemetry.linger > .zero {
                try? await Task.sleep(for: configuration.telemetry.linger)
            }
            let batch = buffer.front(configuration.telemetry.maximumBatch)
            guard let last = batch.last else { continue }
            var payload = "["
            for (index, entry) in batch.enumerated() {
                if index > 0 { payload += "," }
                payload += entry.json
            }
            payload += "]"
            do {
                let ack = try await client.publish(topic, payload: payload, qos: .atLeastOnce)
                let code = ack?.reasonCode ?? .success
                if code.isFailure && Self.isTransient(code) {
                    try? await Task.sleep(for: .seconds(1))
                    continue
                }
                if code.isFailure {
                    let reason = ack?.properties.reasonString ?? "\(code)"
                    statistics.refused += batch.count
                    logger.error(
                        "the server refused telemetry; dropped",
                        metadata: ["telemetry.samples": "\(batch.count)", "mqtt.reason_code": "\(code)", "reason": "\(reason)"]
                    )
                    eventsContinuation.yield(.telemetryRefused(samples: batch.count, reason: reason))
                } else {
                    statistics.acknowledged += batch.count
                    if let acknowledgedHandler {
                        let now = ContinuousClock.now
                        acknowledgedHandler(batch.map { now - $0.added })
                    }
                }
                try buffer.remove(through: last.sequence)
            } catch {
                // Not connected or the connection closed mid-publish: wait for the next
                // connection and send the same samples again (the server keeps the last write
                // of a repeated timestamp, so a repeat stores nothing twice).
                if isConnected && !client.isConnected { isConnected = false }
                if !isConnected || !(error is MQTTClientError) {
                    try? await Task.sleep(for: .milliseconds(100))
                }
            }
        }
    }

    /// Refusals worth retrying: the server is busy or over quota, not the data being wrong.
    private static func isTransient(_ code: ReasonCode) -> Bool {
        code == .serverBusy || code == .quotaExceeded || code == .implementationSpecificError
            || code == .unspecifiedError || code == .messageRateTooHigh
    }

    // MARK: twin

    /// The device's twin as the server has it.
    public struct TwinState: Sendable, Hashable {
        public var desired: [String: JSONValue]
        public var reported: [String: JSONValue]
        /// Desired members that differ from reported ones.
        public var delta: [String: JSONValue]
        public var version: Int
    }

    /// Reads the twin from the server.
    public func twin() async throws -> TwinState {
        let answer = try await request("twin/get", body: [:])
        let state = answer["state"]?.objectValue ?? [:]
        return TwinState(
            desired: state["desired"]?.objectValue ?? [:],
            reported: state["reported"]?.objectValue ?? [:],
            delta: state["delta"]?.objectValue ?? [:],
            version: Int(answer["version"]?.numberValue ?? 0)
        )
    }

    /// Reports state (a JSON merge patch of `reported`: `nil` values remove members).
    ///
    /// - Returns: The twin's new version.
    /// - Throws: ``MeridianDeviceError/rejected(code:message:)`` when the server refuses it (too
    ///   deep, too large, a stale `version`).
    @discardableResult
    public func report(_ reported: [String: JSONValue], version: Int? = nil) async throws -> Int {
        var body: [String: JSONValue] = ["state": ["reported": .object(reported)]]
        if let version { body["version"] = .number(Double(version)) }
        let answer = try await request("twin/update", body: body)
        return Int(answer["version"]?.numberValue ?? 0)
    }

    /// Calls `handler` with the desired members that differ from reported ones, and the twin's
    /// version: after each change of `desired` that leaves a difference, and after every
    /// (re)connect when there is one (changes made while the device was offline). Calls come one
    /// at a time, in order. Typically the handler applies the settings and ``report(_:version:)``s them.
    public func onDesiredChange(_ handler: @escaping @Sendable ([String: JSONValue], Int) async -> Void) {
        desiredHandler = handler
        desiredQueue?.finish()
        desiredQueue = nil
        if !tasks.isEmpty { startDesiredQueue(handler) }
    }

    private func startDesiredQueue(_ handler: @escaping @Sendable ([String: JSONValue], Int) async -> Void) {
        let (stream, continuation) = AsyncStream.makeStream(of: ([String: JSONValue], Int).self)
        desiredQueue = continuation
        tasks.append(Task {
            for await (delta, version) in stream { await handler(delta, version) }
        })
    }

    private func synchronizeDesired() async {
        do {
            let twin = try await twin()
            if !twin.delta.isEmpty { desiredQueue?.yield((twin.delta, twin.version)) }
        } catch {
            logger.debug("device could not read its twin after connecting", metadata: ["error": "\(error)"])
        }
    }

    private func request(_ operation: String, body: [String: JSONValue]) async throws -> JSONValue {
        guard isConnected else { throw MeridianDeviceError.notConnected }
        let token = UUID().uuidString
        var body = body
        body["clientToken"] = .string(token)
        let payload = JSONValue.object(body).jsonText
        let topic = "\(configuration.topicPrefix)/\(operation)"
        let timeout = configuration.requestTimeout
        return try await withCheckedThrowingContinuation { continuation in
            pending[token] = continuation
            let device = self
            Task {
                do {
                    _ = try await device.client.publish(topic, payload: payload, qos: .atLeastOnce)
                } catch {
                    await device.resolve(token, .failure(error))
                    return
                }
                try? await Task.sleep(for: timeout)
                await device.resolve(token, .failure(MeridianDeviceError.timedOut(operation)))
            }
        }
    }

    private func resolve(_ token: String, _ result: Result<JSONValue, any Error>) {
        pending.removeValue(forKey: token)?.resume(with: result)
    }

    // MARK: commands

    /// Answers commands named `method` with what `handler` returns (any JSON); a thrown error
    /// answers `{"error": "<its description>"}`. Commands without a handler are answered with an
    /// error naming the method.
    public func onCommand(_ method: String, _ handler: @escaping @Sendable (JSONValue) async throws -> JSONValue) {
        commandHandlers[method] = handler
    }

    /// Answers every command whose method has no handler of its own (``onCommand(_:_:)``):
    /// `handler` gets the method and the params.
    public func onOtherCommands(_ handler: @escaping @Sendable (String, JSONValue) async throws -> JSONValue) {
        fallbackCommandHandler = handler
    }

    private func answer(method: String, params: JSONValue, topic: String, correlation: ByteBuffer?) {
        var handler = commandHandlers[method]
        if handler == nil, let fallback = fallbackCommandHandler {
            handler = { @Sendable params in try await fallback(method, params) }
        }
        let device = self
        Task {
            var answer: JSONValue
            if let handler {
                do {
                    answer = try await handler(params)
                } catch {
                    answer = ["error": .string("\(error)")]
                }
            } else {
                answer = ["error": .string("unknown method \(method)")]
            }
            var properties = MQTTProperties()
            properties.correlationData = correlation
            do {
                _ = try await device.client.publish(topic, payload: answer.jsonText, qos: .atLeastOnce, properties: properties)
                await device.countCommand()
            } catch {
                await device.logCommandFailure(method: method, error: error)
            }
        }
    }

    private func countCommand() { statistics.commands += 1 }

    private func logCommandFailure(method: String, error: any Error) {
        logger.error("device could not answer a command", metadata: ["command.method": "\(method)", "error": "\(error)"])
    }

    // MARK: inbound messages

    private func handle(_ message: PublishPacket) {
        let prefix = configuration.topicPrefix + "/"
        guard message.topic.hasPrefix(prefix) else { return }
        let path = message.topic.dropFirst(prefix.count)
        let payload = JSONValue.parse(Data(message.payload.readableBytesView)) ?? .null
        if path.hasPrefix("twin/") {
            handleTwin(path: String(path), payload: payload)
        } else if path.hasPrefix("commands/request/") {
            // MQTT 3.1.1: {"id", "method", "params"}; answer on commands/response/{id}.
            let id = String(path.dropFirst("commands/request/".count))
            answer(
                method: payload["method"]?.stringValue ?? "",
                params: payload["params"] ?? .emptyObject,
                topic: prefix + "commands/response/" + id,
                correlation: nil
            )
        } else if path.hasPrefix("commands/") {
            // MQTT 5 request/response: the method is the last level, the params the payload.
            let method = String(path.dropFirst("commands/".count))
            guard let responseTopic = message.properties.responseTopic else {
                logger.error("device got a command without a response topic", metadata: ["command.method": "\(method)"])
                return
            }
            answer(method: method, params: payload, topic: responseTopic, correlation: message.properties.correlationData)
        } else if path == "errors" {
            logger.error("the server reported an error", metadata: ["error": "\(payload.jsonText)"])
        }
    }

    private func handleTwin(path: String, payload: JSONValue) {
        switch path {
        case "twin/get/accepted", "twin/update/accepted", "twin/delete/accepted":
            if let token = payload["clientToken"]?.stringValue { resolve(token, .success(payload)) }
        case "twin/get/rejected", "twin/update/rejected", "twin/delete/rejected":
            if let token = payload["clientToken"]?.stringValue {
                let code = Int(payload["code"]?.numberValue ?? 0)
                resolve(token, .failure(MeridianDeviceError.rejected(code: code, message: payload["message"]?.stringValue ?? "")))
            }
        case "twin/delta":
            let delta = payload["state"]?.objectValue ?? [:]
            if !delta.isEmpty { desiredQueue?.yield((delta, Int(payload["version"]?.numberValue ?? 0))) }
        default:
            break
        }
    }
}

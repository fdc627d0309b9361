import Logging
import NIOCore
import MeridianCore
import Metrics
import NIOConcurrencyHelpers
import ServiceLifecycle

/// The live stream's switchboard: which open stream connection follows which devices of which
/// tenant, fed by the telemetry pipeline with every durable batch.
///
/// The pipeline calls ``deliver(_:)`` on its writer thread; it looks the batch's devices up in
/// an immutable snapshot of the index (taken under a short lock) and hands each interested
/// connection its messages in one ``StreamOutbox/offer(_:)`` — no encoding, no waiting, no
/// I/O on the writer thread. Connections encode and send on their own event loops.
///
/// Connections only ever appear under their own tenant, so a subscriber receives nothing of
/// another tenant whatever it asks for. It also follows the registry: a revoked API key closes
/// the connections that authenticated with it (close code 4401). On graceful shutdown every
/// connection is closed with 1001 (going away) and new upgrades are refused.
public final class StreamHub: Service, Sendable {
    /// What one connection follows.
    enum Interest: Sendable, Equatable {
        case none
        /// Every device of its tenant.
        case all
        case devices(Set<String>)
    }

    /// A registered connection, as the hub sees it.
    struct Connection: Sendable {
        var tenantID: String
        /// The API key it authenticated with (nil for an access token).
        var apiKeyID: String?
        var interest: Interest
        /// Whose presence events it follows.
        var presenceInterest: Interest = .none
        let outbox: StreamOutbox
        /// Closes the connection (from any thread) with a WebSocket close code and reason.
        let close: @Sendable (_ code: UInt16, _ reason: String) -> Void
    }

    /// A tenant's interested connections: those following every device, and those following
    /// some by device (a connection is in one or the other, never both).
    struct TenantIndex: Sendable {
        var everyDevice: [StreamOutbox] = []
        var byDevice: [String: [StreamOutbox]] = [:]
    }

    fileprivate struct State {
        var connections: [UInt64: Connection] = [:]
        var index: [String: TenantIndex] = [:]
        /// The same for presence subscriptions.
        var presenceIndex: [String: TenantIndex] = [:]
        var nextID: UInt64 = 0
        var accepting = true

        /// Rebuilds `tenantID`'s presence index from its connections.
        mutating func reindexPresence(_ tenantID: String) {
            var tenant = TenantIndex()
            for connection in connections.values where connection.tenantID == tenantID {
                switch connection.presenceInterest {
                case .none: break
                case .all: tenant.everyDevice.append(connection.outbox)
                case .devices(let devices):
                    for device in devices { tenant.byDevice[device, default: []].append(connection.outbox) }
                }
            }
            if tenant.everyDevice.isEmpty && tenant.byDevice.isEmpty {
                presenceIndex.removeValue(forKey: tenantID)
            } else {
                presenceIndex[tenantID] = tenant
            }
        }

        /// Rebuilds `tenantID`'s index from its connections.
        mutating func reindex(_ tenantID: String) {
            var tenant = TenantIndex()
            for connection in connections.values where connection.tenantID == tenantID {
                switch connection.interest {
                case .none: break
                case .all: tenant.everyDevice.append(connection.outbox)
                case .devices(let devices):
                    for device in devices { tenant.byDevice[device, default: []].append(connection.outbox) }
                }
            }
            if tenant.everyDevice.isEmpty && tenant.byDevice.isEmpty {
                index.removeValue(forKey: tenantID)
            } else {
                index[tenantID] = tenant
            }
        }
    }

    /// The API's authentication and registry (device checks, revocations).
    let services: APIServices
    let pipeline: TelemetryPipeline
    let outboxLimits: StreamOutbox.Limits
    /// Silence from a client after which it is pinged; after twice as long it is closed.
    let pingInterval: TimeAmount
    let logger: Logger
    private let state = NIOLockedValueBox(State())
    private let listener: UInt64
    private let presenceListener: UInt64?
    private let droppedCounter = Counter(label: "meridian_stream_dropped_messages_total")
    private let connectionsGauge = Gauge(label: "meridian_stream_connections")

    /// Starts following `pipeline` and the registry's revocations.
    public convenience init(services: APIServices, pipeline: TelemetryPipeline, pingInterval: TimeAmount = .seconds(30), logger: Logger) {
        self.init(services: services, pipeline: pipeline, outboxLimits: StreamOutbox.Limits(), pingInterval: pingInterval, logger: logger)
    }

    init(
        services: APIServices, pipeline: TelemetryPipeline, outboxLimits: StreamOutbox.Limits, pingInterval: TimeAmount = .seconds(30),
        logger: Logger
    ) {
        self.services = services
        self.pipeline = pipeline
        self.outboxLimits = outboxLimits
        self.pingInterval = pingInterval
        self.logger = logger
        let state = self.state
        let droppedCounter = self.droppedCounter
        listener = pipeline.addListener { batch in
            Self.deliver(batch, state: state, droppedCounter: droppedCounter)
        }
        presenceListener = services.presence?.addListener { event in
            Self.deliver(event, state: state, droppedCounter: droppedCounter)
        }
        // Twin changes, encoded once, to the connections following the device.
        services.twins?.observe { [state] change in
            Self.deliver(StreamEvent.twin(change), tenantID: change.key.tenantID, state: state, droppedCounter: droppedCounter)
        }
        // Alarm changes, encoded once, to the connections following the device.
        services.rules?.alarms.observe { [state] change in
            Self.deliver(StreamEvent.alarm(change), tenantID: change.alarm.tenantID, state: state, droppedCounter: droppedCounter)
        }
        services.registry.observe { [state] change in
            guard case .apiKeyRevoked(let apiKeyID) = change else { return }
            let closing = state.withLockedValue { state in
                state.connections.values.filter { $0.apiKeyID == apiKeyID }.map(\.close)
            }
            for close in closing { close(StreamCloseCode.unauthenticated, "API key revoked") }
        }
    }

    /// Runs until graceful shutdown, then closes every stream connection and refuses new ones.
    public func run() async throws {
        try? await gracefulShutdown()
        shutdown()
    }

    /// Closes every connection (1001, going away), refuses new ones, stops following the
    /// pipeline.
    func shutdown() {
        pipeline.removeListener(listener)
        if let presenceListener { services.presence?.removeListener(presenceListener) }
        let closing = state.withLockedValue { state in
            state.accepting = false
            return state.connections.values.map(\.close)
        }
        for close in closing { close(StreamCloseCode.goingAway, "server shutting down") }
    }

    /// Whether new connections are taken (false once shutting down).
    var isAccepting: Bool { state.withLockedValue { $0.accepting } }

    /// Registers a connection of `tenantID` (following nothing yet). Nil when shutting down.
    func register(
        tenantID: String,
        apiKeyID: String?,
        outbox: StreamOutbox,
        close: @escaping @Sendable (UInt16, String) -> Void
    ) -> UInt64? {
        let id = state.withLockedValue { state -> UInt64? in
            guard state.accepting else { return nil }
            state.nextID += 1
            state.connections[state.nextID] = Connection(
                tenantID: tenantID,
                apiKeyID: apiKeyID,
                interest: .none,
                outbox: outbox,
                close: close
            )
            return state.nextID
        }
        if id != nil { connectionsGauge.record(count) }
        return id
    }

    /// What connection `id` follows from now on.
    func setInterest(_ id: UInt64, _ interest: Interest) {
        state.withLockedValue { state in
            guard var connection = state.connections[id], connection.interest != interest else { return }
            connection.interest = interest
            state.connections[id] = connection
            state.reindex(connection.tenantID)
        }
    }

    /// Whose presence events connection `id` follows from now on.
    func setPresenceInterest(_ id: UInt64, _ interest: Interest) {
        state.withLockedValue { state in
            guard var connection = state.connections[id], connection.presenceInterest != interest else { return }
            connection.presenceInterest = interest
            state.connections[id] = connection
            state.reindexPresence(connection.tenantID)
        }
    }

    /// The credential connection `id` now stands on (after a token renewal).
    func setCredential(_ id: UInt64, apiKeyID: String?) {
        state.withLockedValue { state in state.connections[id]?.apiKeyID = apiKeyID }
    }

    /// Forgets connection `id` (closed).
    func unregister(_ id: UInt64) {
        state.withLockedValue { state in
            guard let connection = state.connections.removeValue(forKey: id) else { return }
            if connection.interest != .none { state.reindex(connection.tenantID) }
            if connection.presenceInterest != .none { state.reindexPresence(connection.tenantID) }
        }
        connectionsGauge.record(count)
    }

    /// Open connections.
    var count: Int { state.withLockedValue { $0.connections.count } }

    /// Hands a durable batch to the connections following its devices (on the pipeline's
    /// writer thread: returns at once).
    private static func deliver(
        _ batch: [DeviceMessage],
        state: NIOLockedValueBox<State>,
        droppedCounter: Counter
    ) {
        let index = state.withLockedValue { $0.index }
        guard !index.isEmpty else { return }
        var targets: [ObjectIdentifier: (outbox: StreamOutbox, messages: [DeviceMessage])] = [:]
        for message in batch {
            guard let tenant = index[message.tenantID] else { continue }
            for outbox in tenant.everyDevice {
                targets[ObjectIdentifier(outbox), default: (outbox, [])].messages.append(message)
            }
            for outbox in tenant.byDevice[message.deviceID] ?? [] {
                targets[ObjectIdentifier(outbox), default: (outbox, [])].messages.append(message)
            }
        }
        var dropped = 0
        for target in targets.values { dropped += target.outbox.offer(target.messages) }
        if dropped > 0 { droppedCounter.increment(by: dropped) }
    }
}

extension StreamHub {
    /// Hands a presence event to the connections following its device's presence (on the
    /// broker's event loop that reported it: returns at once).
    private static func deliver(_ event: PresenceEvent, state: NIOLockedValueBox<State>, droppedCounter: Counter) {
        guard let tenant = state.withLockedValue({ $0.presenceIndex[event.tenantID] }) else { return }
        var dropped = 0
        for outbox in tenant.everyDevice + (tenant.byDevice[event.deviceID] ?? []) {
            dropped += outbox.offer(events: [.presence(event)])
        }
        if dropped > 0 { droppedCounter.increment(by: dropped) }
    }

    /// Hands one event of `tenantID` to the connections following its device.
    fileprivate static func deliver(_ event: StreamEvent, tenantID: String, state: NIOLockedValueBox<State>, droppedCounter: Counter) {
        guard let tenant = state.withLockedValue({ $0.index[tenantID] }) else { return }
        var dropped = 0
        for outbox in tenant.everyDevice + (tenant.byDevice[event.deviceID] ?? []) {
            dropped += outbox.offer(events: [event])
        }
        if dropped > 0 { droppedCounter.increment(by: dropped) }
    }
}

/// The close codes the live stream uses besides RFC 6455's.
enum StreamCloseCode {
    /// 1001: the server is shutting down.
    static let goingAway: UInt16 = 1001
    /// 4401: not authenticated, or no longer (bad or missing first-message token, revoked API
    /// key, expired token). Authenticate again and reconnect.
    static let unauthenticated: UInt16 = 4401
}

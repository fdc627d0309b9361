import Foundation
import Logging
import MeridianCore
import NIOConcurrencyHelpers
import ServiceLifecycle

/// Devices' presence: which are connected (``PresenceTracker``), their connect and disconnect
/// events — stored in batches (``PresenceStore``), streamed to listeners (the live stream) —
/// and the answers of `GET /devices/{id}/presence` and `/presence/events`.
///
/// ``connected(_:)`` and ``disconnected(deviceID:connectionID:reason:reasonCode:)`` are called
/// on the broker's event loops: they update memory, hand the event to the listeners and queue
/// it for the store, and return at once. The queue is written every ``flushInterval`` (one
/// transaction for many events) and is bounded: beyond ``maximumPending`` the oldest unwritten
/// events are dropped with a warning.
public final class PresenceService: Service, FleetPresenceSource, Sendable {
    public let tracker = PresenceTracker()
    let store: any PresenceStore
    let registry: Registry
    let logger: Logger
    let flushInterval: Duration
    /// How long events are kept (nil: forever); swept every ``sweepInterval``.
    let retention: Duration?
    static let sweepInterval: Duration = .seconds(3600)
    /// Most events waiting to be written.
    static let maximumPending = 100_000
    /// Called with a device id on every connect and disconnect (keeps the registry's
    /// `lastSeenAt` in step with presence).
    private let noteSeen: @Sendable (String) -> Void
    private let now: @Sendable () -> Date

    private struct State {
        var pending: [PresenceEvent] = []
        var flushScheduled = false
        var listeners: [UInt64: @Sendable (PresenceEvent) -> Void] = [:]
        var nextListener: UInt64 = 0
    }

    private let state = NIOLockedValueBox(State())
    /// One flush at a time, so that events are stored in the order they happened.
    private let writer = SerialGate()

    public init(
        store: any PresenceStore, registry: Registry, flushInterval: Duration = .milliseconds(100), retention: Duration? = nil,
        logger: Logger,
        now: @escaping @Sendable () -> Date = { Date() }, noteSeen: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.store = store
        self.registry = registry
        self.flushInterval = flushInterval
        self.retention = retention
        self.logger = logger
        self.now = now
        self.noteSeen = noteSeen
    }

    /// Deletes expired events every hour until graceful shutdown, then writes what is pending
    /// (after the broker, which shuts down first, has reported its last disconnects).
    public func run() async throws {
        if retention != nil {
            await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    await self.sweep()
                    try? await Task.sleep(for: Self.sweepInterval)
                }
            }
        } else {
            try? await gracefulShutdown()
        }
        await flush()
    }

    /// Deletes the events older than the retention.
    func sweep() async {
        guard let retention else { return }
        let seconds = Double(retention.components.seconds)
        do {
            let deleted = try await store.deleteEvents(before: now().addingTimeInterval(-seconds))
            if deleted > 0 { logger.info("deleted expired presence events", metadata: ["presence.deleted": "\(deleted)"]) }
        } catch {
            logger.warning("could not delete expired presence events", metadata: ["error": "\(error)"])
        }
    }

    // MARK: Events from the broker

    /// A device connection was accepted.
    public func connected(_ connection: PresenceConnection) {
        record(tracker.connected(connection, at: now()))
    }

    /// A device connection ended.
    public func disconnected(deviceID: String, connectionID: UInt64, reason: PresenceReason, reasonCode: UInt8?) {
        guard let event = tracker.disconnected(deviceID: deviceID, connectionID: connectionID, reason: reason, reasonCode: reasonCode, at: now()) else {
            return
        }
        record(event)
    }

    private func record(_ event: PresenceEvent) {
        noteSeen(event.deviceID)
        let (schedule, dropped, listeners) = state.withLockedValue { state -> (Bool, Int, [@Sendable (PresenceEvent) -> Void]) in
            state.pending.append(event)
            var dropped = 0
            if state.pending.count > Self.maximumPending {
                dropped = state.pending.count - Self.maximumPending
                state.pending.removeFirst(dropped)
            }
            let schedule = !state.flushScheduled
            state.flushScheduled = true
            return (schedule, dropped, Array(state.listeners.values))
        }
        for listener in listeners { listener(event) }
        if dropped > 0 {
            logger.warning("presence events dropped: the store does not keep up", metadata: ["presence.dropped": "\(dropped)"])
        }
        guard schedule else { return }
        let interval = flushInterval
        Task { [self] in
            try? await Task.sleep(for: interval)
            await flush()
        }
    }

    /// Writes the pending events now.
    public func flush() async {
        await writer.acquire()
        let events = state.withLockedValue { state -> [PresenceEvent] in
            let events = state.pending
            state.pending.removeAll()
            state.flushScheduled = false
            return events
        }
        if !events.isEmpty {
            do {
                try await store.append(events)
            } catch {
                logger.warning("could not store presence events", metadata: ["presence.events": "\(events.count)", "error": "\(error)"])
            }
        }
        await writer.release()
    }

    // MARK: Listeners (the live stream)

    /// Calls `listener` with every event from now on, synchronously on the reporting thread:
    /// it must return at once. Returns a token for ``removeListener(_:)``.
    @discardableResult
    public func addListener(_ listener: @escaping @Sendable (PresenceEvent) -> Void) -> UInt64 {
        state.withLockedValue { state in
            state.nextListener += 1
            state.listeners[state.nextListener] = listener
            return state.nextListener
        }
    }

    public func removeListener(_ token: UInt64) {
        _ = state.withLockedValue { $0.listeners.removeValue(forKey: token) }
    }

    // MARK: Queries

    /// Those of `deviceIDs` with an open connection (fleet queries' `online`).
    public func onlineDevices(among deviceIDs: [String]) async throws -> Set<String> {
        tracker.onlineDevices(among: deviceIDs)
    }

    /// The caller's device's presence now (404 for another tenant's device).
    public func presence(of deviceID: String, by caller: Caller) async throws -> DevicePresence {
        let device = try await registry.device(deviceID, by: caller)
        let snapshot = tracker.snapshot(deviceID)
        let time = Registry.milliseconds(now())
        if let newest = snapshot.newest ?? snapshot.connections.first {
            return DevicePresence(
                online: true, lastSeen: time, since: snapshot.onlineSince, address: newest.address, protocolName: newest.protocolName,
                transport: newest.transport, connections: snapshot.connections.count, lastDisconnectReason: nil
            )
        }
        var last = snapshot.lastDisconnect
        if last == nil {
            await flush()
            last = try await store.events(tenantID: caller.tenantID, deviceID: deviceID, before: nil, limit: 1).first
        }
        let lastSeen = [device.lastSeenAt, last?.time].compactMap { $0 }.max()
        return DevicePresence(
            online: false, lastSeen: lastSeen, since: last?.time, address: last?.address, protocolName: last?.protocolName,
            transport: last?.transport, connections: 0, lastDisconnectReason: last?.kind == .disconnected ? last?.reason : nil
        )
    }

    /// The caller's device's connect and disconnect events, newest first, with a sequence below
    /// `before` (a page cursor), at most `limit`.
    public func events(of deviceID: String, before: Int64?, limit: Int, by caller: Caller) async throws -> Page<PresenceEvent> {
        _ = try await registry.device(deviceID, by: caller)
        await flush()
        let limit = min(max(1, limit), Registry.maxPageSize)
        let events = try await store.events(tenantID: caller.tenantID, deviceID: deviceID, before: before, limit: limit + 1)
        guard events.count > limit else { return Page(items: events, nextCursor: nil) }
        let items = Array(events.prefix(limit))
        return Page(items: items, nextCursor: items.last.map { String($0.sequence) })
    }

    /// Forgets a deleted device's presence and events.
    public func deleteDevice(_ deviceID: String) async throws {
        tracker.forget(deviceID)
        await flush()
        try await store.deleteEvents(deviceID: deviceID)
    }
}

extension TelemetryService: FleetTelemetrySource {}

/// A first-come, first-served lock for async code (never blocks a thread).
private actor SerialGate {
    private var busy = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func acquire() async {
        guard busy else {
            busy = true
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    func release() {
        if waiters.isEmpty {
            busy = false
        } else {
            waiters.removeFirst().resume()
        }
    }
}

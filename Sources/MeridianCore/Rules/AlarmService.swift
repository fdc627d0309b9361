import Foundation
import Synchronization

/// Alarms: the ledger of open alarms (at most one per rule and device, repeats counted), kept in
/// memory and written through to an ``AlarmStore``, with the operator's lifecycle
/// (acknowledge, clear, comment) and observers for the live stream.
///
/// Rule raises and clears change the ledger at once (the engine never waits for storage); the
/// store is written in order by one writer task, so history keeps the order of changes.
public final class AlarmService: Sendable {
    public let store: any AlarmStore
    private let ledger: Mutex<AlarmLedger>
    private let observers = Mutex<[@Sendable (AlarmChange) -> Void]>([])
    private let writes: AsyncStream<AlarmChange>.Continuation
    private let writer: Task<Void, Never>
    private let pendingWrites = PendingCount()
    private let now: @Sendable () -> Date

    /// Opens the service over `store`, loading its open alarms into the ledger. `onWriteError` is
    /// told when the store refuses a change (it is logged by the caller; the alarm stays in
    /// memory).
    public init(
        store: any AlarmStore, now: @escaping @Sendable () -> Date = { Date() },
        onWriteError: @escaping @Sendable (AlarmChange, any Error) -> Void = { _, _ in }
    ) async throws {
        self.store = store
        self.now = now
        ledger = Mutex(AlarmLedger(openAlarms: try await store.openAlarms()))
        let (stream, continuation) = AsyncStream<AlarmChange>.makeStream()
        writes = continuation
        let pendingWrites = pendingWrites
        writer = Task {
            for await change in stream {
                do {
                    try await store.save(change)
                } catch {
                    onWriteError(change, error)
                }
                pendingWrites.value.subtract(1, ordering: .relaxed)
            }
        }
    }

    deinit {
        writes.finish()
    }

    /// Calls `observer` after every change (on the thread that made it; it must return quickly).
    public func observe(_ observer: @escaping @Sendable (AlarmChange) -> Void) {
        observers.withLock { $0.append(observer) }
    }

    private func publish(_ change: AlarmChange) {
        pendingWrites.value.add(1, ordering: .relaxed)
        writes.yield(change)
        for observer in observers.withLock({ $0 }) { observer(change) }
    }

    /// Waits until every change so far is in the store (tests, shutdown).
    public func flush() async {
        while pendingWrites.value.load(ordering: .relaxed) > 0 { try? await Task.sleep(for: .milliseconds(2)) }
    }

    /// Stops the writer after the changes so far are stored.
    public func shutdown() async {
        writes.finish()
        await writer.value
    }

    /// A rule fired on a device: opens an alarm or counts the firing on the open one.
    @discardableResult
    public func raise(rule: Rule, deviceID: String, severity: AlarmSeverity, message: String, inputs: [String: JSONValue], at: Date) -> AlarmChange {
        let change = ledger.withLock {
            $0.raise(
                tenantID: rule.tenantID, ruleID: rule.id, ruleVersion: rule.version, deviceID: deviceID, severity: severity, message: message,
                inputs: inputs, at: at
            )
        }
        publish(change)
        return change
    }

    /// A rule's condition stopped holding: clears its open alarm on the device, if any.
    @discardableResult
    public func clear(ruleID: String, tenantID: String, deviceID: String, at: Date) -> AlarmChange? {
        guard let change = ledger.withLock({ $0.clear(tenantID: tenantID, ruleID: ruleID, deviceID: deviceID, at: at) }) else { return nil }
        publish(change)
        return change
    }

    /// Clears every open alarm of a rule (the rule was deleted, disabled or its condition
    /// changed), as the rule.
    public func clearAll(ruleID: String, tenantID: String) {
        let changes = ledger.withLock { ledger in
            ledger.openAlarms.filter { $0.ruleID == ruleID && $0.tenantID == tenantID }.compactMap {
                ledger.clear(tenantID: tenantID, ruleID: ruleID, deviceID: $0.deviceID, at: now())
            }
        }
        for change in changes { publish(change) }
    }

    /// The open alarm of a rule on a device.
    public func openAlarm(ruleID: String, tenantID: String, deviceID: String) -> Alarm? {
        ledger.withLock { $0.open(tenantID: tenantID, ruleID: ruleID, deviceID: deviceID) }
    }

    /// Every open alarm (from memory).
    public var allOpenAlarms: [Alarm] { ledger.withLock { $0.openAlarms } }

    /// Every open alarm of a tenant (from memory).
    public func openAlarms(tenantID: String) -> [Alarm] {
        ledger.withLock { $0.openAlarms.filter { $0.tenantID == tenantID } }
    }

    private static func actor(_ caller: Caller) -> AlarmActor {
        AlarmActor(kind: caller.actor.kind == .apiKey ? .apiKey : .user, id: caller.actor.id)
    }

    private static func require(_ caller: Caller, _ role: Role) throws {
        guard caller.role.allows(role) else {
            throw RegistryError(.forbidden, "this needs role \(role.rawValue) or above; the caller is \(caller.role.rawValue)")
        }
    }

    private static func registryError(_ error: AlarmError) -> RegistryError {
        switch error.code {
        case .invalid: RegistryError(.invalid, error.message, field: error.field)
        case .notFound: RegistryError(.notFound, error.message, field: error.field)
        case .conflict: RegistryError(.conflict, error.message, field: error.field)
        }
    }

    /// An alarm by id (open ones from memory, so they are current; cleared ones from the store).
    public func alarm(_ id: String, by caller: Caller) async throws -> Alarm {
        try Self.require(caller, .viewer)
        if let open = ledger.withLock({ $0.open(id: id, tenantID: caller.tenantID) }) { return open }
        await flush()
        guard let stored = try await store.alarm(id: id, tenantID: caller.tenantID) else { throw RegistryError.notFound("alarm") }
        return stored
    }

    /// Alarms by filter (the filter's tenant is the caller's), newest first.
    public func alarms(_ filter: AlarmFilter, limit: Int, cursor: String?, by caller: Caller) async throws -> Page<Alarm> {
        try Self.require(caller, .viewer)
        var scoped = filter
        scoped.tenantID = caller.tenantID
        await flush()
        return try await store.alarms(scoped, limit: limit, cursor: cursor)
    }

    /// An alarm's history, oldest first.
    public func history(_ id: String, by caller: Caller) async throws -> [AlarmHistoryEntry] {
        _ = try await alarm(id, by: caller)
        await flush()
        return try await store.history(alarmID: id, tenantID: caller.tenantID)
    }

    /// An operator acknowledges an open alarm.
    public func acknowledge(_ id: String, by caller: Caller) async throws -> Alarm {
        try Self.require(caller, .operator)
        return try await operate(id, caller: caller) { ledger, actor, time throws(AlarmError) in
            try ledger.acknowledge(id: id, tenantID: caller.tenantID, by: actor, at: time)
        }
    }

    /// An operator clears an open alarm by hand.
    public func clear(_ id: String, by caller: Caller) async throws -> Alarm {
        try Self.require(caller, .operator)
        return try await operate(id, caller: caller) { ledger, actor, time throws(AlarmError) in
            try ledger.clear(id: id, tenantID: caller.tenantID, by: actor, at: time)
        }
    }

    /// An operator comments on an open alarm.
    public func comment(_ id: String, text: String, by caller: Caller) async throws -> Alarm {
        try Self.require(caller, .operator)
        return try await operate(id, caller: caller) { ledger, actor, time throws(AlarmError) in
            try ledger.comment(id: id, tenantID: caller.tenantID, text: text, by: actor, at: time)
        }
    }

    private func operate(
        _ id: String, caller: Caller, _ body: (inout AlarmLedger, AlarmActor, Date) throws(AlarmError) -> AlarmChange
    ) async throws -> Alarm {
        let actor = Self.actor(caller)
        let time = now()
        let result = ledger.withLock { ledger -> Result<AlarmChange, AlarmError> in
            do throws(AlarmError) {
                return .success(try body(&ledger, actor, time))
            } catch {
                return .failure(error)
            }
        }
        switch result {
        case .success(let change):
            publish(change)
            return change.alarm
        case .failure(let error):
            if error.code == .notFound {
                await flush()
                guard try await store.alarm(id: id, tenantID: caller.tenantID) != nil else { throw RegistryError.notFound("alarm") }
                throw RegistryError(.conflict, "alarm \(id) is cleared", field: "status")
            }
            throw Self.registryError(error)
        }
    }
}

/// Changes handed to the store writer and not written yet.
private final class PendingCount: Sendable {
    let value = Atomic<Int>(0)
}

import Foundation
import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Synchronization

/// Carries every event loop's state changes to the ``MQTTSessionStore`` on one writer thread,
/// with group commit: while one transaction commits (and fsyncs), the next batches queue up, and
/// the next transaction takes them all.
///
/// Each loop hands over its changes once per flush under a ticket number; when a transaction
/// holding a loop's ticket is durable, the loop is told, and connections holding packets for that
/// ticket (PUBACK, PUBREC, SUBACK, ...) send them. Within one transaction, a delivery that was
/// added and removed again (a fast subscriber acknowledged it before it reached the disk) is
/// dropped entirely, and so is a message no surviving row refers to.
final class PersistencePipeline: Sendable {
    private struct Handoff {
        var loop: LoopContext
        var ticket: UInt64
        var operations: [PersistenceOperation]
    }

    private struct Queue {
        var handoffs: [Handoff] = []
        var draining = false
        var syncRequested = false
        var purgeRequested = false
        var stopped = false
    }

    let store: any MQTTSessionStore
    let durability: Durability
    private let logger: Logger
    private let queue = Mutex(Queue())
    private let writer: NIOThreadPool
    private let idle = NIOLockedValueBox<[EventLoopPromise<Void>]>([])
    private let failures = Counter(label: "mqtt_persistence_failures_total")
    private let transactions = Counter(label: "mqtt_persistence_transactions_total")
    private let operationsWritten = Counter(label: "mqtt_persistence_operations_total")

    /// Identities handed out for messages, delivery sequence numbers and sessions.
    let messageIDs = Synchronization.Atomic<Int64>(0)
    let sequences = Synchronization.Atomic<Int64>(0)
    let sessionIDs = Synchronization.Atomic<Int64>(0)

    init(store: any MQTTSessionStore, durability: Durability, logger: Logger) {
        self.store = store
        self.durability = durability
        self.logger = logger
        self.writer = NIOThreadPool(numberOfThreads: 1)
        self.writer.start()
    }

    func nextMessageID() -> Int64 { messageIDs.wrappingAdd(1, ordering: .relaxed).newValue }
    func nextSequence() -> Int64 { sequences.wrappingAdd(1, ordering: .relaxed).newValue }
    func nextSessionID() -> Int64 { sessionIDs.wrappingAdd(1, ordering: .relaxed).newValue }

    /// Continues identities after those found at start-up.
    func resume(after state: RecoveredBrokerState) {
        messageIDs.store(state.highestMessageID, ordering: .relaxed)
        sequences.store(state.highestSequence, ordering: .relaxed)
        sessionIDs.store(state.highestSessionID, ordering: .relaxed)
    }

    /// Queues a loop's changes under `ticket`.
    func submit(from loop: LoopContext, ticket: UInt64, operations: [PersistenceOperation]) {
        let startDrain = queue.withLock { queue -> Bool in
            queue.handoffs.append(Handoff(loop: loop, ticket: ticket, operations: operations))
            if queue.draining || queue.stopped { return false }
            queue.draining = true
            return true
        }
        if startDrain { scheduleDrain() }
    }

    /// Asks the writer to flush to stable storage (`batch` durability).
    func requestSync() {
        requestMaintenance { $0.syncRequested = true }
    }

    /// Asks the writer to remove a bounded number of unreferenced messages.
    func requestPurge() {
        requestMaintenance { $0.purgeRequested = true }
    }

    private func requestMaintenance(_ mark: (inout Queue) -> Void) {
        let startDrain = queue.withLock { queue -> Bool in
            mark(&queue)
            if queue.draining || queue.stopped { return false }
            queue.draining = true
            return true
        }
        if startDrain { scheduleDrain() }
    }

    private func scheduleDrain() {
        writer.submit { [self] state in
            guard case .active = state else { return }
            self.drain()
        }
    }

    /// Writes until nothing is pending. Runs on the writer thread only.
    private func drain() {
        while true {
            let (handoffs, sync, purge) = queue.withLock { queue -> ([Handoff], Bool, Bool) in
                let taken = (queue.handoffs, queue.syncRequested, queue.purgeRequested)
                queue.handoffs.removeAll()
                queue.syncRequested = false
                queue.purgeRequested = false
                if taken.0.isEmpty && !taken.1 && !taken.2 { queue.draining = false }
                return taken
            }
            if handoffs.isEmpty && !sync && !purge {
                let waiters = idle.withLockedValue { waiters -> [EventLoopPromise<Void>] in
                    defer { waiters.removeAll() }
                    return waiters
                }
                for waiter in waiters { waiter.succeed() }
                return
            }
            if !handoffs.isEmpty { commit(handoffs) }
            if sync { withRetries("sync") { try store.sync() } }
            if purge {
                withRetries("purge") {
                    let removed = try store.purge(limit: 10_000)
                    if removed > 0 { logger.debug("purged unreferenced messages", metadata: ["count": "\(removed)"]) }
                }
            }
        }
    }

    private func commit(_ handoffs: [Handoff]) {
        let operations = Self.collapse(handoffs.flatMap(\.operations))
        if !operations.isEmpty {
            withRetries("write") { try store.write(operations) }
            transactions.increment()
            operationsWritten.increment(by: operations.count)
        }
        var highest: [ObjectIdentifier: (LoopContext, UInt64)] = [:]
        for handoff in handoffs {
            let key = ObjectIdentifier(handoff.loop)
            if let existing = highest[key], existing.1 >= handoff.ticket { continue }
            highest[key] = (handoff.loop, handoff.ticket)
        }
        for (loop, ticket) in highest.values {
            loop.eventLoop.execute { loop.durable(upTo: ticket) }
        }
    }

    /// Retries a store call until it succeeds, so acknowledged data is never given up on; the
    /// acknowledgements waiting for it stay held meanwhile.
    private func withRetries(_ what: String, _ body: () throws -> Void) {
        var attempt = 0
        while true {
            do {
                try body()
                if attempt > 0 { logger.notice("session store recovered", metadata: ["operation": "\(what)", "attempts": "\(attempt + 1)"]) }
                return
            } catch {
                attempt += 1
                failures.increment()
                if attempt == 1 || attempt % 30 == 0 {
                    logger.error("session store \(what) failed; retrying", metadata: ["error": "\(error)", "attempt": "\(attempt)"])
                }
                if queue.withLock({ $0.stopped }) && attempt >= 3 { return }
                Thread.sleep(forTimeInterval: min(1.0, 0.05 * Double(attempt)))
            }
        }
    }

    /// Drops work that cancels out within one transaction: deliveries added and removed again
    /// (and updates in between), and messages nothing left refers to.
    static func collapse(_ operations: [PersistenceOperation]) -> [PersistenceOperation] {
        struct Key: Hashable {
            var session: Int64
            var sequence: Int64
        }
        var added: [Key: Int] = [:]
        var cancelled = Set<Key>()
        for (index, operation) in operations.enumerated() {
            switch operation {
            case .addDelivery(let delivery):
                added[Key(session: delivery.sessionID, sequence: delivery.sequence)] = index
            case .removeDelivery(let session, let sequence):
                let key = Key(session: session, sequence: sequence)
                if added[key] != nil { cancelled.insert(key) }
            default:
                break
            }
        }
        if cancelled.isEmpty { return operations }
        var referenced = Set<Int64>()
        for operation in operations {
            switch operation {
            case .addDelivery(let delivery) where !cancelled.contains(Key(session: delivery.sessionID, sequence: delivery.sequence)):
                referenced.insert(delivery.messageID)
            case .setRetained(_, let messageID?):
                referenced.insert(messageID)
            case .saveSession(let session):
                if let will = session.will { referenced.insert(will.id) }
            default:
                break
            }
        }
        return operations.filter { operation in
            switch operation {
            case .addDelivery(let delivery):
                return !cancelled.contains(Key(session: delivery.sessionID, sequence: delivery.sequence))
            case .updateDelivery(let session, let sequence, _, _), .removeDelivery(let session, let sequence):
                return !cancelled.contains(Key(session: session, sequence: sequence))
            case .saveMessage(let message):
                return referenced.contains(message.id)
            default:
                return true
            }
        }
    }

    /// Completes once everything submitted so far is written.
    func quiesce(on eventLoop: any EventLoop) -> EventLoopFuture<Void> {
        let promise = eventLoop.makePromise(of: Void.self)
        let alreadyIdle = queue.withLock { queue -> Bool in
            if !queue.draining && queue.handoffs.isEmpty { return true }
            idle.withLockedValue { $0.append(promise) }
            return false
        }
        if alreadyIdle { promise.succeed() }
        return promise.futureResult
    }

    /// Writes what is pending, then stops the writer and closes the store.
    func shutdown(on eventLoop: any EventLoop) async {
        _ = try? await quiesce(on: eventLoop).get()
        queue.withLock { $0.stopped = true }
        try? await writer.shutdownGracefully()
        do {
            try store.close()
        } catch {
            logger.error("closing the session store failed", metadata: ["error": "\(error)"])
        }
    }
}

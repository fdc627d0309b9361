import Foundation
import MQTTCore
import NIOCore
import Synchronization

@testable import MQTTBroker

/// A session store that keeps its "disk" in memory and applies operations the way a database
/// would, so the broker's durability logic can be tested (and restarted) without SQLite. Writes
/// can be held back to prove acknowledgements wait for them.
final class MemorySessionStore: MQTTSessionStore, Sendable {
    struct Disk: Sendable {
        var sessions: [Int64: PersistedSession] = [:]
        var subscriptions: [Int64: [String: PersistedSubscription]] = [:]
        var deliveries: [Int64: [Int64: PersistedDelivery]] = [:]
        var inbound: [Int64: Set<UInt16>] = [:]
        var messages: [Int64: PersistedMessage] = [:]
        var retained: [String: Int64] = [:]
        var transactions = 0
        var operations: [PersistenceOperation] = []
    }

    let disk = Mutex(Disk())
    private let gate = Mutex(true)
    private let condition = NSCondition()

    /// While closed, `write` blocks (the "fsync" takes forever).
    func setOpen(_ open: Bool) {
        condition.lock()
        gate.withLock { $0 = open }
        condition.broadcast()
        condition.unlock()
    }

    func write(_ operations: [PersistenceOperation]) throws {
        condition.lock()
        while !gate.withLock({ $0 }) { condition.wait() }
        condition.unlock()
        disk.withLock { disk in
            disk.transactions += 1
            disk.operations.append(contentsOf: operations)
            for operation in operations { Self.apply(operation, to: &disk) }
        }
    }

    private static func apply(_ operation: PersistenceOperation, to disk: inout Disk) {
        switch operation {
        case .saveSession(let session):
            if let will = session.will { disk.messages[will.id] = will }
            disk.sessions[session.id] = session
        case .removeSession(let id):
            disk.sessions[id] = nil
            disk.subscriptions[id] = nil
            disk.deliveries[id] = nil
            disk.inbound[id] = nil
        case .sessionDisconnected(let id, let at):
            disk.sessions[id]?.disconnectedAt = at
        case .addSubscription(let subscription):
            disk.subscriptions[subscription.sessionID, default: [:]][subscription.filter] = subscription
        case .removeSubscription(let session, let filter):
            disk.subscriptions[session]?[filter] = nil
        case .saveMessage(let message):
            disk.messages[message.id] = message
        case .addDelivery(let delivery):
            disk.deliveries[delivery.sessionID, default: [:]][delivery.sequence] = delivery
        case .updateDelivery(let session, let sequence, let packetIdentifier, let phase):
            disk.deliveries[session]?[sequence]?.packetIdentifier = packetIdentifier
            disk.deliveries[session]?[sequence]?.phase = phase
        case .removeDelivery(let session, let sequence):
            disk.deliveries[session]?[sequence] = nil
        case .addInbound(let session, let identifier):
            disk.inbound[session, default: []].insert(identifier)
        case .removeInbound(let session, let identifier):
            disk.inbound[session]?.remove(identifier)
        case .setRetained(let topic, let messageID):
            disk.retained[topic] = messageID
        }
    }

    func recover() throws -> RecoveredBrokerState {
        disk.withLock { disk in
            RecoveredBrokerState(
                sessions: Array(disk.sessions.values),
                subscriptions: disk.subscriptions.values.flatMap { $0.values },
                deliveries: disk.deliveries.values.flatMap { $0.values }.sorted { $0.sequence < $1.sequence },
                inbound: disk.inbound.flatMap { session, ids in ids.map { (sessionID: session, packetIdentifier: $0) } },
                messages: disk.messages,
                retained: disk.retained.map { (topic: $0.key, messageID: $0.value) },
                highestMessageID: disk.messages.keys.max() ?? 0,
                highestSequence: disk.deliveries.values.flatMap { $0.keys }.max() ?? 0,
                highestSessionID: disk.sessions.keys.max() ?? 0
            )
        }
    }

    func purge(limit: Int) throws -> Int { 0 }
    func sync() throws {}
    func close() throws {}

    var queuedOnDisk: Int { disk.withLock { $0.deliveries.values.reduce(0) { $0 + $1.count } } }
}

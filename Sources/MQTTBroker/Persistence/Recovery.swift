import DequeModule
import MQTTCore
import NIOCore

/// Rebuilds sessions, subscriptions, queues, in-flight state and retained messages from what
/// the session store recovered, before the broker accepts connections.
struct Recovery {
    let core: BrokerCore
    let state: RecoveredBrokerState

    /// A session's restored parts, built off-loop and installed on the session's loop.
    private struct Restored: @unchecked Sendable {
        var record: PersistedSession
        var subscriptions: [String: StoredSubscription] = [:]
        var queue: [Delivery] = []
        var inflight: [(UInt16, InflightWindow.Entry)] = []
        var awaitingRelease: Set<UInt16> = []
    }

    func run() async throws -> MQTTBroker.RecoverySummary {
        guard let firstLoop = core.loops.first else {
            return .init(sessions: 0, subscriptions: 0, queuedMessages: 0, inflightMessages: 0, retainedMessages: 0, expiredSessions: 0)
        }
        let now = firstLoop.eventLoop.now
        let wallClock = firstLoop.wallClock
        var messages: [Int64: BrokerMessage] = [:]
        for (id, stored) in state.messages {
            messages[id] = BrokerMessage(recovered: stored, now: now, wallClock: wallClock)
        }

        // A crash between a clean start and the removal of the older session can leave two
        // records for one client: the newer one wins.
        var newest: [String: PersistedSession] = [:]
        var superseded: [Int64] = []
        for session in state.sessions {
            if let existing = newest[session.clientIdentifier] {
                if existing.id < session.id {
                    superseded.append(existing.id)
                    newest[session.clientIdentifier] = session
                } else {
                    superseded.append(session.id)
                }
            } else {
                newest[session.clientIdentifier] = session
            }
        }
        var restored: [Int64: Restored] = [:]
        for session in newest.values { restored[session.id] = Restored(record: session) }

        var orphanedDeliveries: [(Int64, Int64)] = []
        var subscriptionCount = 0
        for subscription in state.subscriptions {
            guard restored[subscription.sessionID] != nil, let filter = try? TopicFilter(subscription.filter),
                let options = try? SubscriptionOptions(byte: subscription.options, version: .v5)
            else { continue }
            restored[subscription.sessionID]!.subscriptions[subscription.filter] = StoredSubscription(
                filter: filter, options: options, identifier: subscription.identifier, rewrite: subscription.rewrite
            )
            subscriptionCount += 1
        }
        var queued = 0
        var inflight = 0
        for stored in state.deliveries {
            guard restored[stored.sessionID] != nil, let message = messages[stored.messageID] else {
                orphanedDeliveries.append((stored.sessionID, stored.sequence))
                continue
            }
            let delivery = Delivery(message: message, qos: stored.qos, retain: stored.retain, identifiers: stored.identifiers, sequence: stored.sequence)
            switch (stored.phase, stored.packetIdentifier) {
            case (.awaitingReceipt, let identifier?):
                restored[stored.sessionID]!.inflight.append((identifier, InflightWindow.Entry(delivery: delivery, phase: .awaitingAcknowledgement)))
                inflight += 1
            case (.awaitingCompletion, let identifier?):
                restored[stored.sessionID]!.inflight.append((identifier, InflightWindow.Entry(delivery: delivery, phase: .awaitingCompletion)))
                inflight += 1
            default:
                restored[stored.sessionID]!.queue.append(delivery)
                queued += 1
            }
        }
        for entry in state.inbound where restored[entry.sessionID] != nil {
            restored[entry.sessionID]!.awaitingRelease.insert(entry.packetIdentifier)
        }

        var retainedCount = 0
        for (_, messageID) in state.retained {
            guard let message = messages[messageID] else { continue }
            core.retained.set(message.with(retain: true))
            retainedCount += 1
        }
        core.metrics.retainedCount(core.retained.count)

        // Install each session on a loop, round robin; its connection will move it when the
        // client comes back on another loop.
        let loops = core.loops
        var expired = 0
        let wallNow = wallClock.nowMilliseconds()
        var installed: [Session] = []
        for (index, entry) in restored.values.sorted(by: { $0.record.id < $1.record.id }).enumerated() {
            let loop = loops[index % loops.count]
            let record = entry.record
            let disconnectedAt = record.disconnectedAt ?? wallNow
            if record.expiryInterval != UInt32.max && disconnectedAt + Int64(record.expiryInterval) * 1000 <= wallNow {
                expired += 1
            }
            let will = record.will.flatMap { messages[$0.id] }.map { PendingWill(message: $0, delay: record.willDelay) }
            let core = self.core
            let future = loop.eventLoop.flatSubmit { () -> EventLoopFuture<Session> in
                let principal = MQTTPrincipal(clientIdentifier: record.clientIdentifier, username: record.username, attributes: record.attributes)
                let session = Session(clientIdentifier: record.clientIdentifier, principal: principal, loop: loop, broker: core)
                let since = loop.wallClock.deadline(at: disconnectedAt, now: loop.eventLoop.now)
                return core.registry.open(session, cleanStart: false).flatMap { _ in
                    session.restore(
                        expiryInterval: record.expiryInterval,
                        will: will,
                        subscriptions: entry.subscriptions,
                        deliveries: entry.queue,
                        inflight: entry.inflight,
                        awaitingRelease: entry.awaitingRelease,
                        disconnectedSince: since,
                        persistentID: record.id
                    )
                    let changes = entry.subscriptions.values.map { stored in
                        IndexChange.add(filter: stored.filter, entry: SubscriberEntry(session: session, options: stored.options, identifier: stored.identifier))
                    }
                    let indexed = changes.isEmpty ? loop.eventLoop.makeSucceededVoidFuture() : core.applyIndexChanges(from: loop, changes)
                    return indexed.map { session }
                }
            }
            installed.append(try await future.get())
        }
        // Timers only now: a will due at once must find every recovered subscription in place.
        for loop in loops {
            let sessions = installed.filter { $0.loop === loop }
            try await loop.eventLoop.submit { for session in sessions { session.startRestoredTimers() } }.get()
        }
        core.metrics.sessionsChanged(to: core.registry.count)

        if !superseded.isEmpty || !orphanedDeliveries.isEmpty {
            let superseded = superseded
            let orphanedDeliveries = orphanedDeliveries
            try await firstLoop.eventLoop.submit {
                for id in superseded { firstLoop.record(.removeSession(id: id)) }
                for (session, sequence) in orphanedDeliveries { firstLoop.record(.removeDelivery(sessionID: session, sequence: sequence)) }
                firstLoop.handOffPersistence()
            }.get()
        }
        return .init(
            sessions: restored.count, subscriptions: subscriptionCount, queuedMessages: queued, inflightMessages: inflight,
            retainedMessages: retainedCount, expiredSessions: expired
        )
    }
}

import DequeModule
import Logging
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import Synchronization

/// A publisher connection waiting for a congested session to drain (flow control).
struct AcknowledgementWaiter: Sendable {
    let loop: LoopContext
    let connection: NIOLoopBound<MQTTConnectionHandler>

    func notify() {
        let connection = self.connection
        loop.eventLoop.execute { connection.value.congestionEased() }
    }
}

/// A subscription as the session remembers it (to restore it on resume and answer UNSUBSCRIBE).
struct StoredSubscription {
    /// The filter in its internal form (after the principal's topic mapping).
    var filter: TopicFilter
    var options: SubscriptionOptions
    var identifier: Int?
    /// The rewrite the client's filter went through, if any: messages matched by this
    /// subscription reach the client under the external name again.
    var rewrite: MQTTTopicRewrite? = nil
}

/// How a session names messages towards its client (see ``Session/externalTopic(_:)``).
enum OutboundNaming {
    /// Internal names as they are (no subscription went through a rewrite, no mapping).
    case unchanged
    /// Every subscription used this one rewrite.
    case single(MQTTTopicRewrite)
    /// Subscriptions differ: the first (by filter) that matches a topic decides.
    case perFilter([(filter: String, rewrite: MQTTTopicRewrite?)])
}

/// What a session hands to its successor when a client resumes it on another connection.
struct SessionState {
    var subscriptions: [String: StoredSubscription]
    var inflight: [(UInt16, InflightWindow.Entry)]
    var queue: Deque<Delivery>
    var awaitingRelease: Set<UInt16>
    /// The session's identity in the session store, and whether it has a row there.
    var persistentID: Int64
    var stored: Bool
    /// The session this state was taken from; it forwards what still reaches it.
    var predecessor: Session
}

/// The will a session publishes if its connection ends without a normal DISCONNECT.
struct PendingWill {
    var message: BrokerMessage
    var delay: UInt32
}

/// An MQTT session: subscriptions, queued and in-flight messages, inbound QoS 2 state, will
/// and expiry. It outlives connections when the client asked for a persistent session.
///
/// A session lives on one event loop (the loop of the connection that created it) and all its
/// mutable state is touched only there; other loops hand it deliveries in batches. When a
/// client resumes its session from a connection on another loop, a new `Session` on that loop
/// adopts the state and the old one forwards whatever still reaches it.
final class Session: @unchecked Sendable {
    enum State {
        case active
        /// Taken over by a newer session of the same client; forward deliveries to it.
        case moved(Session)
        case ended
    }

    /// The client identifier (the principal's).
    var clientIdentifier: String { principal.clientIdentifier }
    let loop: LoopContext
    var eventLoop: any EventLoop { loop.eventLoop }
    private unowned let broker: BrokerCore

    private let online = Synchronization.Atomic<Bool>(false)
    /// Whether a connection is attached (readable from any loop; used by shared subscriptions).
    var isOnline: Bool { online.load(ordering: .relaxed) }

    /// The queue's length, readable from any loop (publisher flow control).
    private let depth = Synchronization.Atomic<Int>(0)
    /// Whether publishers wait in ``BrokerCore/waiters`` for this session to drain.
    private let hasWaiters = Synchronization.Atomic<Bool>(false)
    /// Queue length from which the session counts as congested: half the queue limit.
    private var highWatermark: Int { max(1, broker.configuration.limits.maximumQueuedMessages / 2) }
    private var lowWatermark: Int { highWatermark / 2 }

    /// Whether publishers feeding this session should be slowed down: the client is connected
    /// but not keeping up, and its queue is past the high watermark. (Offline sessions are not
    /// congested: their queue simply drops the oldest message when full, so one absent client
    /// never stalls the publishers.)
    var isCongested: Bool {
        online.load(ordering: .relaxed) && depth.load(ordering: .relaxed) >= highWatermark
    }

    private(set) var connection: MQTTConnectionHandler?
    private(set) var state: State = .active

    private let persistentIDValue: Synchronization.Atomic<Int64>
    private let persistentFlag = Synchronization.Atomic<Bool>(false)
    /// The session's identity in the session store (kept when a client resumes the session,
    /// new on a clean start). Readable from any loop.
    var persistentID: Int64 { persistentIDValue.load(ordering: .relaxed) }
    /// Whether QoS 1/2 deliveries to this session are stored durably: the broker keeps durable
    /// state and the session outlives its connection. Readable from any loop.
    var isPersistent: Bool { persistentFlag.load(ordering: .relaxed) }
    /// Whether the session has a row in the session store.
    private var stored = false
    /// Subscriptions by internal filter (with its `$share/{group}/` prefix, if any).
    var subscriptions: [String: StoredSubscription] = [:] {
        didSet { outboundNamingStale = true }
    }
    private var outboundNamingStale = false
    private var outboundNaming = OutboundNaming.unchanged
    private var inflight = InflightWindow()
    private var queue: Deque<Delivery> = []
    /// Inbound QoS 2 packet identifiers received and not yet released by PUBREL.
    var awaitingRelease: Set<UInt16> = []
    /// Seconds the session outlives its connection; `UInt32.max` = forever.
    var expiryInterval: UInt32 = 0 {
        didSet { persistentFlag.store(loop.isDurable && expiryInterval > 0, ordering: .relaxed) }
    }
    var principal: MQTTPrincipal
    var will: PendingWill?
    /// What a later takeover waits for: a connection setting the session up (see
    /// ``beginSetup()``) and fences still on their way (see ``adopt(_:)``).
    private var settleBlockers = 0
    private var setupWaiters: [() -> Void] = []
    /// Fences not yet arrived from the loops (see ``adopt(_:)``); while any is missing,
    /// deliveries routed here directly wait in `held`.
    private var pendingFences = 0
    private var held: [Delivery] = []
    /// While disconnected: one timer for whichever comes first, the will delay or the expiry.
    private var timer: Scheduled<Void>?
    private var disconnectedAt: NIODeadline?
    /// How many QoS 1/2 messages may be in flight to the current connection.
    private var sendQuota = 1

    init(clientIdentifier: String, principal: MQTTPrincipal, loop: LoopContext, broker: BrokerCore) {
        precondition(principal.clientIdentifier == clientIdentifier, "a session's principal names its client")
        self.principal = principal
        self.loop = loop
        self.broker = broker
        self.persistentIDValue = Synchronization.Atomic(broker.persistence?.nextSessionID() ?? 0)
        loop.sessionAdded(self)
    }

    /// Drops queued messages whose expiry passed (and their stored rows); returns how many
    /// queued messages it examined (at most about `budget`).
    func purgeExpired(now: NIODeadline, budget: Int) -> Int {
        guard !queue.isEmpty else { return 1 }
        let examined = min(queue.count, max(budget, 1))
        var kept = Deque<Delivery>()
        kept.reserveCapacity(queue.count)
        for (index, delivery) in queue.enumerated() {
            if index < examined && delivery.message.isExpired(at: now) {
                discard(delivery, reason: .expired)
            } else {
                kept.append(delivery)
            }
        }
        if kept.count != queue.count {
            queue = kept
            updateDepth()
        }
        return examined
    }

    // MARK: durable state

    private func record(_ operation: PersistenceOperation) {
        loop.record(operation)
    }

    /// Stores (or updates) the session's own record — identity, expiry, will — when it is
    /// persistent; a session that stopped being persistent is removed from the store.
    func save() {
        guard loop.isDurable else { return }
        guard isPersistent else {
            if stored { removeFromStore() }
            return
        }
        let now = eventLoop.now
        record(
            .saveSession(
                PersistedSession(
                    id: persistentID,
                    clientIdentifier: clientIdentifier,
                    username: principal.username,
                    attributes: principal.attributes,
                    expiryInterval: expiryInterval,
                    disconnectedAt: connection == nil ? disconnectedAt.map { loop.wallClock.milliseconds(at: $0, now: now) } : nil,
                    will: will.flatMap { $0.message.id == 0 ? nil : $0.message.persisted(now: now, wallClock: loop.wallClock) },
                    willDelay: will?.delay ?? 0
                )
            )
        )
        stored = true
    }

    private func removeFromStore() {
        guard stored else { return }
        record(.removeSession(id: persistentID))
        stored = false
    }

    /// Registers a publisher to be told when this session is no longer congested. Returns
    /// false if it is not congested any more (then nothing was registered).
    func addWaiter(_ waiter: AcknowledgementWaiter) -> Bool {
        broker.waiters.withLockedValue { $0[ObjectIdentifier(self), default: []].append(waiter) }
        hasWaiters.store(true, ordering: .relaxed)
        // Re-check after registering, so a drain that happened in between is not missed.
        return isCongested
    }

    /// Publishes the queue length and wakes waiting publishers once it is low enough.
    private func updateDepth() {
        let count = queue.count
        depth.store(count, ordering: .relaxed)
        if count <= lowWatermark || !isOnline, hasWaiters.load(ordering: .relaxed) {
            releaseWaiters()
        }
    }

    private func releaseWaiters() {
        hasWaiters.store(false, ordering: .relaxed)
        let woken = broker.waiters.withLockedValue { $0.removeValue(forKey: ObjectIdentifier(self)) } ?? []
        for waiter in woken { waiter.notify() }
    }

    var queuedCount: Int { queue.count }
    var inflightCount: Int { inflight.count }
    var isEnded: Bool { if case .ended = state { return true } else { return false } }

    // MARK: connection lifecycle

    /// Attaches a connection and sends what the session holds: in-flight messages again (DUP),
    /// PUBRELs for QoS 2 messages awaiting completion, then the queue.
    /// Marks the session as being set up by a connection (between `SessionRegistry.open` and
    /// ``attach(_:sendQuota:)``). A later connection with the same client identifier takes it
    /// over only once the setup has finished, so that it finds the connection to disconnect.
    func beginSetup() {
        eventLoop.assertInEventLoop()
        settleBlockers += 1
        setupPending = true
    }

    private var setupPending = false

    /// Runs `body` once the session has settled: no connection setting it up and no fences
    /// on their way (at once if so).
    func whenSetupFinished(_ body: @escaping () -> Void) {
        eventLoop.assertInEventLoop()
        if settleBlockers > 0 { setupWaiters.append(body) } else { body() }
    }

    private func finishSetup() {
        guard setupPending else { return }
        setupPending = false
        unblockSettle()
    }

    private func unblockSettle() {
        settleBlockers -= 1
        guard settleBlockers == 0 else { return }
        let waiters = setupWaiters
        setupWaiters = []
        for waiter in waiters { waiter() }
    }

    func attach(_ connection: MQTTConnectionHandler, sendQuota: Int) {
        eventLoop.assertInEventLoop()
        timer?.cancel()
        timer = nil
        disconnectedAt = nil
        self.connection = connection
        self.sendQuota = max(1, sendQuota)
        online.store(true, ordering: .relaxed)
        let now = eventLoop.now
        for (identifier, entry) in inflight.inOrder {
            switch entry.phase {
            case .awaitingAcknowledgement:
                let delivered = connection.sendPublish(entry.delivery, packetIdentifier: identifier, dup: true, now: now)
                if !delivered { inflight.remove(identifier) }
            case .awaitingCompletion:
                connection.sendOutbound(.pubrel(PublishAckPacket(packetIdentifier: identifier)), ticket: 0)
            }
        }
        pump()
        // Last: a waiting takeover may run from here and detach the connection again.
        finishSetup()
    }

    /// Detaches the connection when it closes. `publishWill` is false after a normal DISCONNECT.
    func connectionLost(_ connection: MQTTConnectionHandler, publishWill: Bool) {
        eventLoop.assertInEventLoop()
        guard self.connection === connection else { return }
        self.connection = nil
        online.store(false, ordering: .relaxed)
        if hasWaiters.load(ordering: .relaxed) { releaseWaiters() }
        guard case .active = state else { return }
        if !publishWill { will = nil }
        if expiryInterval == 0 {
            publishWillNow()
            end()
            return
        }
        if let will, min(will.delay, expiryInterval) == 0 { publishWillNow() }
        disconnectedAt = eventLoop.now
        if stored { record(.sessionDisconnected(id: persistentID, at: loop.wallClock.nowMilliseconds())) }
        armTimer()
    }

    private var willDeadline: NIODeadline? {
        guard let will, let disconnectedAt else { return nil }
        return disconnectedAt + .seconds(Int64(min(will.delay, expiryInterval)))
    }

    private var expiryDeadline: NIODeadline? {
        guard expiryInterval != UInt32.max, let disconnectedAt else { return nil }
        return disconnectedAt + .seconds(Int64(expiryInterval))
    }

    /// Schedules the timer for the next of the will delay and the session expiry.
    private func armTimer() {
        timer?.cancel()
        timer = nil
        let next = [willDeadline, expiryDeadline].compactMap { $0 }.min()
        guard let next else { return }
        timer = eventLoop.scheduleTask(deadline: next) { [self] in
            self.timer = nil
            self.timerFired()
        }
    }

    private func timerFired() {
        guard connection == nil, case .active = state else { return }
        let now = eventLoop.now
        if let deadline = willDeadline, now >= deadline { publishWillNow() }
        if let deadline = expiryDeadline, now >= deadline {
            broker.logger.debug("session expired", metadata: ["mqtt.client_id": "\(clientIdentifier)"])
            publishWillNow()
            end()
            return
        }
        armTimer()
    }

    /// Publishes the pending will, if any, once.
    func publishWillNow() {
        guard let will else { return }
        self.will = nil
        if stored { save() }
        loop.publishWill(will.message, principal: principal)
    }

    /// Ends the session: it leaves the registry and the subscription index, and its queue goes.
    func end() {
        eventLoop.assertInEventLoop()
        if case .ended = state { return }
        state = .ended
        timer?.cancel()
        timer = nil
        loop.sessionRemoved(self)
        removeFromStore()
        if broker.registry.remove(self) { broker.metrics.sessionsChanged(to: broker.registry.count) }
        let filters = subscriptions.values.map(\.filter)
        subscriptions.removeAll()
        if !filters.isEmpty {
            _ = broker.applyIndexChanges(from: loop, [.removeAll(clientIdentifier: clientIdentifier, filters: filters)])
        }
        queue.removeAll()
        inflight = InflightWindow()
        awaitingRelease.removeAll()
        updateDepth()
        releaseWaiters()
    }

    /// Called on this session's loop when a newer connection of the same client takes it over.
    /// Disconnects the current connection (MQTT 5: 0x8E), settles the will, and either hands
    /// the state over (`discard == false`) or ends the session.
    func takeOver(by successor: Session, discard: Bool) -> EventLoopFuture<SessionState?> {
        eventLoop.assertInEventLoop()
        if let connection {
            self.connection = nil
            online.store(false, ordering: .relaxed)
            connection.takenOver()
        }
        timer?.cancel()
        timer = nil
        disconnectedAt = nil
        guard case .active = state else { return eventLoop.makeSucceededFuture(nil) }
        if discard {
            // The old session ends now, so its will goes now (MQTT 5 §3.1.3.2.2).
            publishWillNow()
            removeFromStore()
            loop.handOffPersistence()
            state = .ended
            loop.sessionRemoved(self)
            let filters = subscriptions.values.map(\.filter)
            subscriptions.removeAll()
            queue.removeAll()
            inflight = InflightWindow()
            awaitingRelease.removeAll()
            updateDepth()
            releaseWaiters()
            guard !filters.isEmpty else { return eventLoop.makeSucceededFuture(nil) }
            return broker.applyIndexChanges(from: loop, [.removeAll(clientIdentifier: clientIdentifier, filters: filters)])
                .map { nil }
        }
        // A new connection to the session arrived in time: the will is not sent.
        will = nil
        state = .moved(successor)
        loop.sessionRemoved(self)
        let handed = SessionState(
            subscriptions: subscriptions, inflight: inflight.inOrder, queue: queue, awaitingRelease: awaitingRelease,
            persistentID: persistentID, stored: stored, predecessor: self
        )
        stored = false
        // The writer must see this loop's changes to the session before the successor's.
        loop.handOffPersistence()
        subscriptions.removeAll()
        queue.removeAll()
        inflight = InflightWindow()
        awaitingRelease.removeAll()
        updateDepth()
        releaseWaiters()
        return eventLoop.makeSucceededFuture(handed)
    }

    /// Takes over a predecessor's state and points its subscriptions at this session.
    ///
    /// Each loop switches its replica of the subscription index on its own time; until then it
    /// routes to the predecessor, which forwards with one more hop. So that one publisher's
    /// messages keep their order (MQTT 5 §4.6), every loop, right after switching, sends a
    /// fence along the old path (its outbox to the predecessor's loop, the predecessor's
    /// forward to this one). Deliveries routed here directly wait until every loop's fence has
    /// arrived: by then everything sent along the old path has. A further takeover waits for
    /// the fences too.
    func adopt(_ handed: SessionState) -> EventLoopFuture<Void> {
        eventLoop.assertInEventLoop()
        persistentIDValue.store(handed.persistentID, ordering: .relaxed)
        stored = handed.stored
        subscriptions = handed.subscriptions
        for (identifier, entry) in handed.inflight { inflight.restore(identifier, entry) }
        var merged = handed.queue
        merged.append(contentsOf: queue)
        queue = merged
        updateDepth()
        awaitingRelease = handed.awaitingRelease
        let changes = subscriptions.values.map { stored in
            IndexChange.add(filter: stored.filter, entry: SubscriberEntry(session: self, options: stored.options, identifier: stored.identifier))
        }
        if changes.isEmpty { return eventLoop.makeSucceededVoidFuture() }
        let predecessor = handed.predecessor
        pendingFences += broker.loops.count
        settleBlockers += 1
        return broker.applyIndexChanges(from: loop, changes) { context in
            context.sendFence(through: predecessor)
        }
    }

    /// On the predecessor, in its state `.moved`: passes a fence on to the successor, behind
    /// every delivery it forwarded before.
    func forwardFence() {
        eventLoop.assertInEventLoop()
        guard case .moved(let successor) = state else { return }
        if successor.loop === loop {
            successor.fenceArrived()
        } else {
            successor.eventLoop.execute { successor.fenceArrived() }
        }
    }

    private func fenceArrived() {
        eventLoop.assertInEventLoop()
        guard pendingFences > 0 else { return }
        pendingFences -= 1
        guard pendingFences == 0 else { return }
        let waiting = held
        held = []
        for delivery in waiting { deliverNow(delivery) }
        unblockSettle()
    }

    // MARK: outbound topic names

    /// The name the client sees for an internal topic name: rewritten back with the rewrite of
    /// the subscription that matched it (retained and queued messages too, also after a
    /// restart, since subscriptions keep their rewrite), or by the principal's mapping when no
    /// subscription matches any more. Sessions without rewrites return the name at once.
    func externalTopic(_ topic: String) -> String {
        if outboundNamingStale { rebuildOutboundNaming() }
        switch outboundNaming {
        case .unchanged:
            guard let mapping = principal.topicMapping else { return topic }
            for stored in subscriptions.values where MQTTTopic.matches(filter: stored.filter.filter, name: topic) { return topic }
            return mapping.toExternal(topic)
        case .single(let rewrite):
            return rewrite.toExternal(topic) ?? principal.topicMapping?.toExternal(topic) ?? topic
        case .perFilter(let filters):
            for entry in filters where MQTTTopic.matches(filter: entry.filter, name: topic) {
                return entry.rewrite.flatMap { $0.toExternal(topic) } ?? topic
            }
            return principal.topicMapping?.toExternal(topic) ?? topic
        }
    }

    private func rebuildOutboundNaming() {
        outboundNamingStale = false
        var first: MQTTTopicRewrite??
        var uniform = true
        for stored in subscriptions.values {
            if let seen = first {
                if seen != stored.rewrite { uniform = false; break }
            } else {
                first = .some(stored.rewrite)
            }
        }
        if uniform {
            if case .some(.some(let rewrite)) = first {
                outboundNaming = .single(rewrite)
            } else {
                outboundNaming = .unchanged
            }
            return
        }
        outboundNaming = .perFilter(
            subscriptions.values.map { (filter: $0.filter.filter, rewrite: $0.rewrite) }.sorted { $0.filter < $1.filter }
        )
    }

    // MARK: delivery

    /// Delivers a message to this session (on its loop): sent now if the client is connected
    /// and the in-flight window allows, queued otherwise (QoS 1/2 only).
    func deliver(_ delivery: Delivery) {
        if pendingFences > 0, case .active = state {
            held.append(delivery)
            return
        }
        deliverNow(delivery)
    }

    /// Delivers at once, also while fences are on their way: what the predecessor forwards was
    /// routed before anything held here.
    private func deliverNow(_ delivery: Delivery) {
        switch state {
        case .active:
            break
        case .moved(let successor):
            if successor.loop === loop {
                successor.deliverNow(delivery)
            } else {
                successor.eventLoop.execute { successor.deliverNow(delivery) }
            }
            return
        case .ended:
            return
        }
        let now = eventLoop.now
        if delivery.message.isExpired(at: now) {
            discard(delivery, reason: .expired)
            return
        }
        if delivery.qos == .atMostOnce {
            guard let connection else { return }  // QoS 0 is not queued for offline clients
            if connection.sendPublish(delivery, packetIdentifier: nil, dup: false, now: now), delivery.message.deliveryTag != 0 {
                connection.delivered(tag: delivery.message.deliveryTag)
            }
            return
        }
        if connection != nil, queue.isEmpty, inflight.count < sendQuota {
            send(delivery, now: now)
            return
        }
        enqueue(delivery)
    }

    /// Puts a QoS 1/2 delivery in flight and sends it. A stored QoS 2 delivery's packet
    /// identifier is made durable before the PUBLISH goes out: after a crash it must be re-sent
    /// with the same identifier, or the client would take it for a new message.
    private func send(_ delivery: Delivery, now: NIODeadline) {
        guard let connection else { return }
        let identifier = inflight.add(delivery)
        var ticket: UInt64 = 0
        if delivery.sequence != 0 && delivery.qos == .exactlyOnce {
            record(.updateDelivery(sessionID: persistentID, sequence: delivery.sequence, packetIdentifier: identifier, phase: .awaitingReceipt))
            ticket = loop.currentTicket
        }
        if !connection.sendPublish(delivery, packetIdentifier: identifier, dup: false, now: now, ticket: ticket) {
            inflight.remove(identifier)
            discard(delivery, reason: nil)
        }
    }

    /// Forgets a delivery that will not be sent (expired, dropped, refused), in the store too.
    private func discard(_ delivery: Delivery, reason: BrokerMetrics.DropReason?) {
        if let reason { loop.stats.drop(reason) }
        if delivery.sequence != 0 { record(.removeDelivery(sessionID: persistentID, sequence: delivery.sequence)) }
    }

    private func enqueue(_ delivery: Delivery) {
        let limit = broker.configuration.limits.maximumQueuedMessages
        if queue.count >= limit {
            if limit == 0 {
                discard(delivery, reason: .queueFull)
                return
            }
            discard(queue.removeFirst(), reason: .queueFull)
            loop.noteQueueFull(clientIdentifier: clientIdentifier)
        }
        var stored = delivery
        stored.message = delivery.message.compacted()
        queue.append(stored)
        depth.store(queue.count, ordering: .relaxed)
    }

    /// Sends queued messages while the in-flight window has room.
    private func pump() {
        guard let connection else { return }
        let now = eventLoop.now
        while inflight.count < sendQuota, let delivery = queue.popFirst() {
            if delivery.message.isExpired(at: now) {
                discard(delivery, reason: .expired)
                continue
            }
            if delivery.qos == .atMostOnce {
                if connection.sendPublish(delivery, packetIdentifier: nil, dup: false, now: now), delivery.message.deliveryTag != 0 {
                    connection.delivered(tag: delivery.message.deliveryTag)
                }
                continue
            }
            send(delivery, now: now)
        }
        updateDepth()
    }

    // MARK: acknowledgements from the client

    /// PUBACK for a QoS 1 message.
    func acknowledged(_ identifier: UInt16) {
        guard let entry = inflight.remove(identifier) else { return }
        if entry.delivery.sequence != 0 { record(.removeDelivery(sessionID: persistentID, sequence: entry.delivery.sequence)) }
        if entry.delivery.message.deliveryTag != 0 { connection?.delivered(tag: entry.delivery.message.deliveryTag) }
        pump()
    }

    /// PUBREC for a QoS 2 message: answer PUBREL (or end the exchange on an error code). For a
    /// stored delivery the new phase is made durable first, so that after a crash the broker
    /// re-sends PUBREL, not the message.
    func received(_ identifier: UInt16, reasonCode: ReasonCode) {
        guard let entry = inflight[identifier] else {
            connection?.sendOutbound(.pubrel(PublishAckPacket(packetIdentifier: identifier, reasonCode: .packetIdentifierNotFound)), ticket: 0)
            return
        }
        if reasonCode.isFailure {
            inflight.remove(identifier)
            discard(entry.delivery, reason: nil)
            pump()
            return
        }
        var ticket: UInt64 = 0
        if case .awaitingAcknowledgement = entry.phase {
            inflight.setPhase(identifier, .awaitingCompletion)
            if entry.delivery.sequence != 0 {
                record(
                    .updateDelivery(sessionID: persistentID, sequence: entry.delivery.sequence, packetIdentifier: identifier, phase: .awaitingCompletion)
                )
                ticket = loop.currentTicket
            }
        }
        connection?.sendOutbound(.pubrel(PublishAckPacket(packetIdentifier: identifier)), ticket: ticket)
    }

    /// PUBCOMP for a QoS 2 message.
    func completed(_ identifier: UInt16) {
        guard let entry = inflight.remove(identifier) else { return }
        if entry.delivery.sequence != 0 { record(.removeDelivery(sessionID: persistentID, sequence: entry.delivery.sequence)) }
        if entry.delivery.message.deliveryTag != 0 { connection?.delivered(tag: entry.delivery.message.deliveryTag) }
        pump()
    }

    // MARK: inbound QoS 2

    /// A QoS 2 PUBLISH was accepted: remember its identifier until PUBREL (durably for a
    /// persistent session).
    func receivedInbound(_ identifier: UInt16) {
        awaitingRelease.insert(identifier)
        if isPersistent { record(.addInbound(sessionID: persistentID, packetIdentifier: identifier)) }
    }

    /// PUBREL: forget the identifier. Returns whether it was known.
    func releasedInbound(_ identifier: UInt16) -> Bool {
        guard awaitingRelease.remove(identifier) != nil else { return false }
        if isPersistent { record(.removeInbound(sessionID: persistentID, packetIdentifier: identifier)) }
        return true
    }

    // MARK: recovery

    /// Restores a session read back from the session store, as disconnected since
    /// `disconnectedSince`; its will and expiry timers run from there once
    /// ``startRestoredTimers()`` is called.
    func restore(
        expiryInterval: UInt32,
        will: PendingWill?,
        subscriptions: [String: StoredSubscription],
        deliveries: [Delivery],
        inflight restoredInflight: [(UInt16, InflightWindow.Entry)],
        awaitingRelease: Set<UInt16>,
        disconnectedSince: NIODeadline,
        persistentID: Int64
    ) {
        eventLoop.assertInEventLoop()
        persistentIDValue.store(persistentID, ordering: .relaxed)
        self.expiryInterval = expiryInterval
        self.will = will
        self.subscriptions = subscriptions
        for (identifier, entry) in restoredInflight { inflight.restore(identifier, entry) }
        queue = Deque(deliveries)
        depth.store(queue.count, ordering: .relaxed)
        self.awaitingRelease = awaitingRelease
        stored = true
        disconnectedAt = disconnectedSince
    }

    /// Starts the will and expiry timers of a restored session. Recovery calls it once every
    /// session is back, so that a will due at once reaches subscribers recovered after it.
    func startRestoredTimers() {
        eventLoop.assertInEventLoop()
        armTimer()
    }
}

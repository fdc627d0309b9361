import Logging
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore

/// The broker's shared parts: configuration, hooks, per-loop contexts, sessions, retained
/// messages and counters. Internal; ``MQTTBroker`` is the public face.
final class BrokerCore: Sendable {
    let configuration: BrokerConfiguration
    let logger: Logger
    let authenticator: any MQTTAuthenticator
    let authorizer: any MQTTAuthorizer
    let messageTap: any MQTTMessageTap
    /// Followers of connections' lives (presence, command delivery); empty for most brokers.
    let observers: [any MQTTConnectionObserver]
    /// Numbers connections for ``MQTTConnectionInfo/connectionID``.
    let connectionCounter = NIOLockedValueBox<UInt64>(0)
    /// The hooks' answers that let a publish skip them, read once (not per message).
    let authorizesEverything: Bool
    let authorizesUnmappedOutsideDollarTopics: Bool
    let tapsUnmappedPrincipals: Bool
    /// Carries durable changes to the session store; `nil` when state lives in memory only.
    let persistence: PersistencePipeline?
    let registry = SessionRegistry()
    let retained = RetainedStore()
    let metrics = BrokerMetrics()
    let startedAt = NIODeadline.now()
    /// One context per event loop of the group. Set once in `init`, immutable afterwards.
    nonisolated(unsafe) private(set) var loops: [LoopContext] = []
    nonisolated(unsafe) private var loopsByIdentifier: [ObjectIdentifier: LoopContext] = [:]
    private let assignedIdentifierCounter = NIOLockedValueBox<UInt64>(0)
    let acceptingConnections = NIOLockedValueBox(true)
    /// Publishers waiting for congested sessions to drain, by session (flow control). Kept
    /// here rather than in each session: only sessions being waited for need an entry.
    let waiters = NIOLockedValueBox<[ObjectIdentifier: [AcknowledgementWaiter]]>([:])

    init(
        configuration: BrokerConfiguration,
        eventLoopGroup: any EventLoopGroup,
        authenticator: any MQTTAuthenticator,
        authorizer: any MQTTAuthorizer,
        messageTap: any MQTTMessageTap,
        observers: [any MQTTConnectionObserver] = [],
        sessionStore: (any MQTTSessionStore)?,
        logger: Logger
    ) {
        self.configuration = configuration
        self.observers = observers
        self.logger = logger
        self.authenticator = authenticator
        self.authorizer = authorizer
        self.messageTap = messageTap
        self.authorizesEverything = authorizer.allowsEverything
        self.authorizesUnmappedOutsideDollarTopics = authorizer.allowsUnmappedPrincipalsOutsideDollarTopics
        self.tapsUnmappedPrincipals = messageTap.inspectsUnmappedPrincipals
        if let sessionStore, configuration.durability != .none {
            self.persistence = PersistencePipeline(store: sessionStore, durability: configuration.durability, logger: logger)
        } else {
            self.persistence = nil
        }
        var eventLoops: [any EventLoop] = []
        for eventLoop in eventLoopGroup.makeIterator() where !eventLoops.contains(where: { $0 === eventLoop }) {
            eventLoops.append(eventLoop)
        }
        var contexts: [LoopContext] = []
        var byIdentifier: [ObjectIdentifier: LoopContext] = [:]
        for (index, eventLoop) in eventLoops.enumerated() {
            let context = LoopContext(index: index, eventLoop: eventLoop, loopCount: eventLoops.count, broker: self)
            contexts.append(context)
            byIdentifier[ObjectIdentifier(eventLoop)] = context
        }
        self.loops = contexts
        self.loopsByIdentifier = byIdentifier
    }

    /// The context of the loop a channel runs on, if it belongs to the broker's group.
    func loopContext(for eventLoop: any EventLoop) -> LoopContext? {
        loopsByIdentifier[ObjectIdentifier(eventLoop)]
    }

    /// Applies index changes to the calling loop's replica at once and to every other replica
    /// through its loop; completes on `origin`'s loop when all are done. `afterApply` runs on
    /// each loop right after its replica changed.
    func applyIndexChanges(
        from origin: LoopContext,
        _ changes: [IndexChange],
        afterApply: (@Sendable (LoopContext) -> Void)? = nil
    ) -> EventLoopFuture<Void> {
        origin.eventLoop.assertInEventLoop()
        let delta = origin.apply(changes)
        if delta != 0 { metrics.subscriptionsChanged(by: delta) }
        afterApply?(origin)
        if loops.count == 1 { return origin.eventLoop.makeSucceededVoidFuture() }
        var futures: [EventLoopFuture<Void>] = []
        for context in loops where context !== origin {
            futures.append(
                context.eventLoop.submit {
                    _ = context.apply(changes)
                    afterApply?(context)
                }
            )
        }
        return EventLoopFuture.andAllSucceed(futures, on: origin.eventLoop)
    }

    /// A fresh client identifier for clients that sent an empty one.
    func assignClientIdentifier() -> String {
        let n = assignedIdentifierCounter.withLockedValue { value -> UInt64 in
            value += 1
            return value
        }
        let random = UInt64.random(in: 0..<UInt64.max)
        return "auto-\(String(random, radix: 36))-\(n)"
    }
}

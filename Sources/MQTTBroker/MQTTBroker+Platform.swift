import MQTTCore
import NIOConcurrencyHelpers
import NIOCore

extension MQTTBroker {
    /// Disconnects every connected client whose principal matches `predicate`, on every event
    /// loop at once (e.g. when a credential is revoked). MQTT 5 clients receive DISCONNECT
    /// with `reasonCode` (``ReasonCode/administrativeAction`` 0x98 or
    /// ``ReasonCode/notAuthorized`` 0x87 are the usual ones) and `reason` as reason string;
    /// MQTT 3.1.1 clients are closed. Wills are published, as for any disconnection the
    /// server initiates (MQTT 5 §3.1.2.5). Clients still authenticating are not affected.
    ///
    /// - Returns: the number of connections closed.
    @discardableResult
    public func disconnect(
        where predicate: @escaping @Sendable (MQTTPrincipal) -> Bool,
        reasonCode: ReasonCode = .administrativeAction,
        reason: String
    ) async -> Int {
        let futures = core.loops.map { loop in
            loop.eventLoop.submit { () -> Int in
                var closed = 0
                for connection in Array(loop.connections.values) {
                    guard let session = connection.session, predicate(session.principal) else { continue }
                    connection.disconnectByServer(reasonCode, reason: reason)
                    closed += 1
                }
                loop.flush()
                return closed
            }
        }
        var total = 0
        for future in futures { total += (try? await future.get()) ?? 0 }
        return total
    }

    /// Publishes a message from the platform itself (e.g. the answer to a provisioning
    /// request): retained if asked and routed like a client's message, to internal topic
    /// names. It bypasses the ``MQTTAuthorizer`` and the ``MQTTMessageTap``. Returns once the
    /// message was routed and, if it had to be stored (a retained message, a QoS 1/2 message
    /// for a persistent session), stored durably.
    ///
    /// With a `deliveryTag`, the ``MQTTConnectionObserver``s hear
    /// ``MQTTConnectionObserver/delivered(_:tag:)`` from every client the message reaches.
    ///
    /// - Returns: the number of sessions the message was routed to (online or queued for a
    ///   persistent session); 0 when no subscription matched.
    /// - Throws: ``MQTTError`` when `topic` is not a valid topic name.
    @discardableResult
    public func publish(
        topic: String,
        payload: ByteBuffer,
        qos: QoS = .atMostOnce,
        retain: Bool = false,
        properties: MQTTProperties = .init(),
        deliveryTag: UInt64? = nil
    ) async throws -> Int {
        try MQTTTopic.validateName(topic)
        let loops = core.loops
        guard !loops.isEmpty else { return 0 }
        let loop = loops[nextPublishLoop(count: loops.count)]
        let core = self.core
        let qos = min(qos, core.configuration.features.maximumQoS)
        let publish = PublishPacket(topic: topic, payload: payload, qos: qos, retain: retain, properties: properties)
        return try await loop.eventLoop.flatSubmit { () -> EventLoopFuture<Int> in
            let mark = loop.persistence.count
            let message = BrokerMessage(
                publish: publish, topic: topic, origin: "", now: loop.eventLoop.now, id: core.persistence?.nextMessageID() ?? 0,
                deliveryTag: deliveryTag ?? 0
            )
            let routed = loop.publishInternal(message)
            let promise = loop.eventLoop.makePromise(of: Int.self)
            loop.whenDurable(loop.ticket(since: mark)) { promise.succeed(routed) }
            return promise.futureResult
        }.get()
    }

    private func nextPublishLoop(count: Int) -> Int {
        platformPublishCounter.withLockedValue { value in
            value &+= 1
            return value % count
        }
    }
}

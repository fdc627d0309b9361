import MQTTCore
import NIOCore
import NIOEmbedded
import Synchronization
import Testing

@testable import MQTTBroker

/// Records what the broker tells its observers, in order.
final class RecordingObserver: MQTTConnectionObserver {
    enum Event: Equatable {
        case connected(client: String, id: UInt64)
        case subscribed(client: String, filters: [String])
        case disconnected(client: String, id: UInt64, reason: MQTTDisconnectReason, code: ReasonCode?)
        case delivered(client: String, tag: UInt64)
    }

    let events = Mutex<[Event]>([])
    let infos = Mutex<[MQTTConnectionInfo]>([])

    func connected(_ connection: MQTTConnectionInfo) {
        infos.withLock { $0.append(connection) }
        events.withLock { $0.append(.connected(client: connection.principal.clientIdentifier, id: connection.connectionID)) }
    }

    func subscribed(_ connection: MQTTConnectionInfo, filters: [String]) {
        events.withLock { $0.append(.subscribed(client: connection.principal.clientIdentifier, filters: filters)) }
    }

    func disconnected(_ connection: MQTTConnectionInfo, _ disconnection: MQTTDisconnection) {
        events.withLock {
            $0.append(
                .disconnected(
                    client: connection.principal.clientIdentifier, id: connection.connectionID, reason: disconnection.reason,
                    code: disconnection.reasonCode
                )
            )
        }
    }

    func delivered(_ connection: MQTTConnectionInfo, tag: UInt64) {
        events.withLock { $0.append(.delivered(client: connection.principal.clientIdentifier, tag: tag)) }
    }

    var recorded: [Event] { events.withLock { $0 } }

    /// The disconnections recorded, as (client, reason, reason code).
    var disconnections: [(String, MQTTDisconnectReason, ReasonCode?)] {
        recorded.compactMap { event in
            if case .disconnected(let client, _, let reason, let code) = event { (client, reason, code) } else { nil }
        }
    }
}

@Suite("Connection observers: presence and delivery events from the broker")
struct ConnectionObserverTests {
    @Test("connect, subscribe and a clean DISCONNECT are reported once each, with address, transport, version and keep alive")
    func lifecycleOfACleanConnection() async throws {
        let observer = RecordingObserver()
        let broker = TestBroker(observers: [observer])
        let (client, _) = try await broker.connect("device-1", version: .v3_1_1, keepAlive: 30)
        try await client.subscribe("devices/device-1/commands/#", qos: .atLeastOnce)
        try await client.disconnect()
        try await client.expectClosed()
        let info = try #require(observer.infos.withLock { $0.first })
        #expect(info.remoteAddress == "127.0.0.1:40000")
        #expect(info.transport == .tcp && info.protocolVersion == .v3_1_1 && info.keepAlive == 30)
        #expect(info.principal.clientIdentifier == "device-1")
        #expect(
            observer.recorded == [
                .connected(client: "device-1", id: info.connectionID),
                .subscribed(client: "device-1", filters: ["devices/device-1/commands/#"]),
                .disconnected(client: "device-1", id: info.connectionID, reason: .clean, code: .normalDisconnection),
            ]
        )
    }

    @Test("refused subscriptions are not reported; only the granted filters are")
    func onlyGrantedFiltersAreReported() async throws {
        let observer = RecordingObserver()
        let broker = TestBroker(observers: [observer])
        let (client, _) = try await broker.connect("c")
        let suback = try await client.subscribe([
            .init(topicFilter: "a/#", options: SubscriptionOptions(qos: .atMostOnce)),
            .init(topicFilter: "bad/#/x", options: SubscriptionOptions(qos: .atMostOnce)),
        ])
        #expect(suback.reasonCodes.count == 2)
        #expect(observer.recorded.contains(.subscribed(client: "c", filters: ["a/#"])))
    }

    @Test("a keep alive timeout, a takeover, a server-side disconnect, a lost connection and a protocol error each carry their reason")
    func disconnectReasons() async throws {
        let observer = RecordingObserver()
        let broker = TestBroker(observers: [observer])

        let (idle, _) = try await broker.connect("idle", keepAlive: 10)
        await broker.advance(by: .seconds(16))
        try await idle.expectClosed()

        let (first, _) = try await broker.connect("twice")
        let (second, _) = try await broker.connect("twice")
        try await first.expectClosed()

        let (revoked, _) = try await broker.connect("revoked", username: "revoked")
        #expect(await broker.broker.disconnect(where: { $0.username == "revoked" }, reasonCode: .notAuthorized, reason: "credential revoked") == 1)
        try await revoked.expectClosed()

        let (lost, _) = try await broker.connect("lost")
        try await lost.drop()

        let (rude, _) = try await broker.connect("rude")
        try await rude.sendRaw([0x30, 0x02, 0x00, 0x00])  // PUBLISH with an empty topic name and no alias
        try await rude.expectClosed()

        let reasons = observer.disconnections
        #expect(reasons.contains { $0 == ("idle", .keepAliveTimeout, .keepAliveTimeout) })
        #expect(reasons.contains { $0 == ("twice", .takenOver, .sessionTakenOver) })
        #expect(reasons.contains { $0 == ("revoked", .administrative, .notAuthorized) })
        #expect(reasons.contains { $0.0 == "lost" && $0.1 == .connectionLost })
        #expect(reasons.contains { $0.0 == "rude" && $0.1 == .protocolError })
        // Every connection that was reported connected is reported gone exactly once, except the
        // one still open.
        let connected = observer.recorded.compactMap { event -> UInt64? in if case .connected(_, let id) = event { id } else { nil } }
        let gone = observer.recorded.compactMap { event -> UInt64? in if case .disconnected(_, let id, _, _) = event { id } else { nil } }
        #expect(Set(connected).count == connected.count && connected.count == 6)
        #expect(Set(gone).count == gone.count && gone.count == 5)
        #expect(await second.isActive)

        await broker.shutdown()
        #expect(observer.disconnections.contains { $0 == ("twice", .serverShutdown, .serverShuttingDown) })
    }

    @Test("a tagged platform message is reported delivered when the client acknowledges it, not before; the publish says how many sessions it reached")
    func deliveryOfTaggedMessages() async throws {
        let observer = RecordingObserver()
        let broker = TestBroker(observers: [observer])
        let (client, _) = try await broker.connect("d")
        try await client.subscribe("commands/#", qos: .atLeastOnce)
        #expect(try await broker.broker.publish(topic: "nobody/here", payload: ByteBuffer(string: "x"), qos: .atLeastOnce, deliveryTag: 5) == 0)
        let routed = try await broker.broker.publish(topic: "commands/reboot", payload: ByteBuffer(string: "{}"), qos: .atLeastOnce, deliveryTag: 42)
        #expect(routed == 1)
        let message = try await client.nextPublish()
        #expect(message.topic == "commands/reboot")
        #expect(!observer.recorded.contains(.delivered(client: "d", tag: 42)))
        try await client.send(.puback(PublishAckPacket(packetIdentifier: try #require(message.packetIdentifier))))
        await broker.loop.run()
        #expect(observer.recorded.contains(.delivered(client: "d", tag: 42)))

        // QoS 0: delivered when written; an untagged message is never reported.
        try await broker.broker.publish(topic: "commands/ping", payload: ByteBuffer(string: "{}"), qos: .atMostOnce, deliveryTag: 7)
        try await broker.broker.publish(topic: "commands/quiet", payload: ByteBuffer(string: "{}"), qos: .atLeastOnce)
        _ = try await client.nextPublish()
        let untagged = try await client.nextPublish()
        try await client.send(.puback(PublishAckPacket(packetIdentifier: try #require(untagged.packetIdentifier))))
        await broker.loop.run()
        let delivered = observer.recorded.compactMap { event -> UInt64? in if case .delivered(_, let tag) = event { tag } else { nil } }
        #expect(delivered == [42, 7])
    }

    @Test("a tagged message queued for an offline persistent session is reported when the client comes back and acknowledges it")
    func deliveryAfterReconnect() async throws {
        let observer = RecordingObserver()
        let broker = TestBroker(observers: [observer])
        var expiry = MQTTProperties()
        expiry.sessionExpiryInterval = 600
        let (client, _) = try await broker.connect("p", cleanStart: false, properties: expiry)
        try await client.subscribe("commands/#", qos: .atLeastOnce)
        try await client.disconnect()
        try await client.expectClosed()
        #expect(try await broker.broker.publish(topic: "commands/later", payload: ByteBuffer(string: "{}"), qos: .atLeastOnce, deliveryTag: 9) == 1)
        #expect(!observer.recorded.contains(.delivered(client: "p", tag: 9)))
        let (back, connack) = try await broker.connect("p", cleanStart: false, properties: expiry)
        #expect(connack.sessionPresent)
        let message = try await back.nextPublish()
        try await back.send(.puback(PublishAckPacket(packetIdentifier: try #require(message.packetIdentifier))))
        await broker.loop.run()
        #expect(observer.recorded.contains(.delivered(client: "p", tag: 9)))
    }
}

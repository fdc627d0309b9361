import MQTTCore
import NIOCore
import NIOEmbedded
import Synchronization
import Testing

@testable import MQTTBroker

@Suite("Durability")
struct DurabilityTests {
    static let persistent: MQTTProperties = [.sessionExpiryInterval(3600)]

    @Test func acknowledgementWaitsUntilTheQueuedMessageIsDurable() async throws {
        let store = MemorySessionStore()
        let broker = TestBroker(store: store)
        let (subscriber, _) = try await broker.connect("sub", cleanStart: false, properties: Self.persistent)
        try await subscriber.subscribe("t", qos: .atLeastOnce)
        try await subscriber.drop()
        let (publisher, _) = try await broker.connect("pub")
        store.setOpen(false)
        try await publisher.send(.publish(PublishPacket(topic: "t", payload: ByteBuffer(string: "m"), qos: .atLeastOnce, packetIdentifier: 1)))
        try await Task.sleep(for: .milliseconds(50))
        #expect(try await publisher.drain().isEmpty, "no PUBACK before the write is durable")
        store.setOpen(true)
        guard case .puback(let ack) = try await publisher.next() else {
            Issue.record("expected PUBACK")
            return
        }
        #expect(ack.packetIdentifier == 1)
        #expect(store.queuedOnDisk == 1)
    }

    @Test func messagesToNonPersistentSessionsNeverWait() async throws {
        let store = MemorySessionStore()
        let broker = TestBroker(store: store)
        let (subscriber, _) = try await broker.connect("sub")
        try await subscriber.subscribe("t", qos: .atLeastOnce)
        let (publisher, _) = try await broker.connect("pub")
        store.setOpen(false)
        #expect(try await publisher.publish("t", "m", qos: .atLeastOnce)?.reasonCode == .success)
        #expect(try await subscriber.nextPublish().payload.string == "m")
        store.setOpen(true)
        #expect(store.disk.withLock { $0.messages.isEmpty })
    }

    @Test func restartRecoversSessionsQueuesSubscriptionsAndRetained() async throws {
        let store = MemorySessionStore()
        do {
            let broker = TestBroker(store: store)
            let (subscriber, _) = try await broker.connect("sub", version: .v3_1_1, cleanStart: false)
            try await subscriber.subscribe("q/#", qos: .exactlyOnce)
            try await subscriber.drop()
            let (publisher, _) = try await broker.connect("pub")
            for i in 0..<20 { try await publisher.publish("q/\(i)", "m\(i)", qos: .atLeastOnce) }
            let rec = try await publisher.publish("q/two", "exactly", qos: .exactlyOnce)
            try await publisher.release(rec!.packetIdentifier)
            try await publisher.publish("r", "kept", qos: .atLeastOnce, retain: true)
            // The process dies: no shutdown, nothing more is written.
        }
        let broker = TestBroker(store: store)
        let summary = try await broker.broker.recover()
        #expect(summary.sessions == 1)
        #expect(summary.queuedMessages == 21)
        #expect(summary.retainedMessages == 1)
        let (subscriber, connack) = try await broker.connect("sub", version: .v3_1_1, cleanStart: false)
        #expect(connack.sessionPresent)
        var payloads: [String] = []
        while payloads.count < 21 {
            let message = try await subscriber.nextPublish()
            payloads.append(message.payload.string)
            if message.qos == .atLeastOnce {
                try await subscriber.send(.puback(PublishAckPacket(packetIdentifier: message.packetIdentifier!)))
            } else {
                try await subscriber.send(.pubrec(PublishAckPacket(packetIdentifier: message.packetIdentifier!)))
                _ = try await subscriber.next()
                try await subscriber.send(.pubcomp(PublishAckPacket(packetIdentifier: message.packetIdentifier!)))
            }
        }
        #expect(payloads == (0..<20).map { "m\($0)" } + ["exactly"])
        // The subscription came back too.
        let (publisher, _) = try await broker.connect("pub2")
        try await publisher.publish("q/live", "live", qos: .atLeastOnce)
        let live = try await subscriber.nextPublish()
        #expect(live.payload.string == "live")
        try await subscriber.send(.puback(PublishAckPacket(packetIdentifier: live.packetIdentifier!)))
        let (late, _) = try await broker.connect("late")
        try await late.subscribe("r", qos: .atLeastOnce)
        #expect(try await late.nextPublish().payload.string == "kept")
        // Acknowledged deliveries leave the store.
        try await Task.sleep(for: .milliseconds(50))
        await broker.loop.run()
        #expect(store.queuedOnDisk == 0)
    }

    @Test func inboundQoS2StateSurvivesARestart() async throws {
        let store = MemorySessionStore()
        do {
            let broker = TestBroker(store: store)
            let (subscriber, _) = try await broker.connect("sub", cleanStart: false, properties: Self.persistent)
            try await subscriber.subscribe("t", qos: .exactlyOnce)
            try await subscriber.drop()
            let (publisher, _) = try await broker.connect("pub", cleanStart: false, properties: Self.persistent)
            // PUBREC received, PUBREL never sent: then the broker dies.
            _ = try await publisher.publish("t", "once", qos: .exactlyOnce)
        }
        let broker = TestBroker(store: store)
        try await broker.broker.recover()
        let (publisher, connack) = try await broker.connect("pub", cleanStart: false, properties: Self.persistent)
        #expect(connack.sessionPresent)
        // The publisher re-sends with DUP: it must not be routed a second time.
        try await publisher.send(.publish(PublishPacket(topic: "t", payload: ByteBuffer(string: "once"), qos: .exactlyOnce, dup: true, packetIdentifier: 1)))
        guard case .pubrec = try await publisher.next() else {
            Issue.record("expected PUBREC")
            return
        }
        try await publisher.release(1)
        let (subscriber, _) = try await broker.connect("sub", cleanStart: false, properties: Self.persistent)
        #expect(try await subscriber.nextPublish().payload.string == "once")
        try await subscriber.expectNothing()
    }

    @Test func qos2InFlightIsResentWithTheSameIdentifierAfterARestart() async throws {
        let store = MemorySessionStore()
        var identifier: UInt16 = 0
        do {
            let broker = TestBroker(store: store)
            let (subscriber, _) = try await broker.connect("sub", cleanStart: false, properties: Self.persistent)
            try await subscriber.subscribe("t", qos: .exactlyOnce)
            let (publisher, _) = try await broker.connect("pub")
            let rec = try await publisher.publish("t", "q2", qos: .exactlyOnce)
            try await publisher.release(rec!.packetIdentifier)
            let message = try await subscriber.nextPublish()
            identifier = message.packetIdentifier!
            // The subscriber never answers; the broker dies.
        }
        let broker = TestBroker(store: store)
        try await broker.broker.recover()
        let (subscriber, _) = try await broker.connect("sub", cleanStart: false, properties: Self.persistent)
        let again = try await subscriber.nextPublish()
        #expect(again.packetIdentifier == identifier)
        #expect(again.dup)
    }

    @Test func cleanStartRemovesTheStoredSession() async throws {
        let store = MemorySessionStore()
        let broker = TestBroker(store: store)
        let (first, _) = try await broker.connect("c", cleanStart: false, properties: Self.persistent)
        try await first.subscribe("t", qos: .atLeastOnce)
        try await first.drop()
        _ = try await broker.connect("c", cleanStart: true)
        try await Task.sleep(for: .milliseconds(50))
        await broker.loop.run()
        #expect(store.disk.withLock { $0.sessions.isEmpty && $0.subscriptions.values.allSatisfy(\.isEmpty) })
    }

    @Test func deliveriesAcknowledgedBeforeTheCommitNeverReachTheDisk() {
        let message = PersistedMessage(id: 7, topic: "t", payload: ByteBuffer(), qos: .atLeastOnce, retain: false, properties: ByteBuffer(), origin: "p", expiresAt: nil)
        let delivery = PersistedDelivery(sessionID: 1, sequence: 9, messageID: 7, qos: .atLeastOnce, retain: false, identifiers: [], packetIdentifier: nil, phase: .queued)
        let kept = PersistedDelivery(sessionID: 2, sequence: 10, messageID: 7, qos: .atLeastOnce, retain: false, identifiers: [], packetIdentifier: nil, phase: .queued)
        let collapsed = PersistencePipeline.collapse([.saveMessage(message), .addDelivery(delivery), .removeDelivery(sessionID: 1, sequence: 9)])
        #expect(collapsed.isEmpty)
        let partial = PersistencePipeline.collapse([
            .saveMessage(message), .addDelivery(delivery), .addDelivery(kept), .removeDelivery(sessionID: 1, sequence: 9),
        ])
        #expect(partial == [.saveMessage(message), .addDelivery(kept)])
        let untouched: [PersistenceOperation] = [.removeDelivery(sessionID: 3, sequence: 1)]
        #expect(PersistencePipeline.collapse(untouched) == untouched)
    }
}

import MQTTCore
import NIOCore
import Testing

@testable import MQTTBroker

@Suite("Sessions")
struct SessionTests {
    @Test(arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func persistentSessionQueuesWhileOffline(version: MQTTProtocolVersion) async throws {
        let broker = TestBroker()
        let expiry: MQTTProperties = version == .v5 ? [.sessionExpiryInterval(3600)] : []
        let (subscriber, first) = try await broker.connect("sub", version: version, cleanStart: false, properties: expiry)
        #expect(first.sessionPresent == false)
        try await subscriber.subscribe("q/#", qos: .exactlyOnce)
        try await subscriber.disconnect()
        try await subscriber.expectClosed()

        let (publisher, _) = try await broker.connect("pub")
        try await publisher.publish("q/0", "zero", qos: .atMostOnce)
        try await publisher.publish("q/1", "one", qos: .atLeastOnce)
        let rec = try await publisher.publish("q/2", "two", qos: .exactlyOnce)
        try await publisher.release(rec!.packetIdentifier)

        let (again, resumed) = try await broker.connect("sub", version: version, cleanStart: false, properties: expiry)
        #expect(resumed.sessionPresent == true)
        let one = try await again.nextPublish()
        let two = try await again.nextPublish()
        #expect([one.payload.string, two.payload.string] == ["one", "two"], "QoS 0 is not queued for offline clients")
        #expect(one.qos == .atLeastOnce && two.qos == .exactlyOnce)
        // The subscription survived: live messages arrive too.
        try await publisher.publish("q/3", "live", qos: .atMostOnce)
        #expect(try await again.nextPublish().payload.string == "live")
    }

    @Test func cleanStartDiscardsTheSession() async throws {
        let broker = TestBroker()
        let (subscriber, _) = try await broker.connect("sub", cleanStart: false, properties: [.sessionExpiryInterval(3600)])
        try await subscriber.subscribe("t", qos: .atLeastOnce)
        try await subscriber.drop()
        let (publisher, _) = try await broker.connect("pub")
        try await publisher.publish("t", "queued", qos: .atLeastOnce)
        let (fresh, connack) = try await broker.connect("sub", cleanStart: true)
        #expect(connack.sessionPresent == false)
        try await publisher.publish("t", "after", qos: .atLeastOnce)
        try await fresh.expectNothing()
        #expect(broker.statistics.subscriptions == 0)
    }

    @Test func resumedSessionRedeliversUnacknowledgedWithDup() async throws {
        let broker = TestBroker()
        let properties: MQTTProperties = [.sessionExpiryInterval(600)]
        let (subscriber, _) = try await broker.connect("sub", cleanStart: false, properties: properties)
        try await subscriber.subscribe("t", qos: .exactlyOnce)
        let (publisher, _) = try await broker.connect("pub")
        try await publisher.publish("t", "q1", qos: .atLeastOnce)
        let rec = try await publisher.publish("t", "q2", qos: .exactlyOnce)
        try await publisher.release(rec!.packetIdentifier)
        let rec2 = try await publisher.publish("t", "q2-second", qos: .exactlyOnce)
        try await publisher.release(rec2!.packetIdentifier)
        let first = try await subscriber.nextPublish()
        let second = try await subscriber.nextPublish()
        let third = try await subscriber.nextPublish()
        #expect(first.dup == false)
        // Acknowledge only the PUBREC of the third; leave the first two unacknowledged.
        try await subscriber.send(.pubrec(PublishAckPacket(packetIdentifier: third.packetIdentifier!)))
        guard case .pubrel = try await subscriber.next() else {
            Issue.record("expected PUBREL")
            return
        }
        try await subscriber.drop()

        let (again, connack) = try await broker.connect("sub", cleanStart: false, properties: properties)
        #expect(connack.sessionPresent)
        let packets = try await again.drain()
        guard packets.count == 3, case .publish(let p1) = packets[0], case .publish(let p2) = packets[1], case .pubrel(let rel) = packets[2] else {
            Issue.record("expected PUBLISH, PUBLISH, PUBREL, got \(packets.map(\.type))")
            return
        }
        #expect(p1.dup && p2.dup)
        #expect(p1.packetIdentifier == first.packetIdentifier && p1.payload.string == "q1")
        #expect(p2.packetIdentifier == second.packetIdentifier && p2.payload.string == "q2")
        #expect(rel.packetIdentifier == third.packetIdentifier)
    }

    @Test func takeoverDisconnectsTheOlderConnection() async throws {
        let broker = TestBroker()
        let (old, _) = try await broker.connect("same")
        try await old.subscribe("t", qos: .atMostOnce)
        let (new, _) = try await broker.connect("same", cleanStart: false)
        guard case .disconnect(let disconnect) = try await old.next() else {
            Issue.record("expected DISCONNECT")
            return
        }
        #expect(disconnect.reasonCode == .sessionTakenOver)
        try await old.expectClosed()
        let (publisher, _) = try await broker.connect("pub")
        try await publisher.publish("t", "to-new")
        #expect(try await new.nextPublish().payload.string == "to-new")
        #expect(broker.statistics.sessions == 2)
    }

    @Test func sessionExpiresAfterItsInterval() async throws {
        let broker = TestBroker()
        let (subscriber, _) = try await broker.connect("sub", cleanStart: false, properties: [.sessionExpiryInterval(10)])
        try await subscriber.subscribe("t", qos: .atLeastOnce)
        try await subscriber.drop()
        await broker.advance(by: .seconds(9))
        #expect(broker.statistics.sessions == 1)
        await broker.advance(by: .seconds(2))
        #expect(broker.statistics.sessions == 0)
        #expect(broker.statistics.subscriptions == 0)
        let (_, connack) = try await broker.connect("sub", cleanStart: false, properties: [.sessionExpiryInterval(10)])
        #expect(connack.sessionPresent == false)
    }

    @Test func disconnectCanShortenTheExpiry() async throws {
        let broker = TestBroker()
        let (client, _) = try await broker.connect("c", cleanStart: false, properties: [.sessionExpiryInterval(100)])
        try await client.disconnect(properties: [.sessionExpiryInterval(0)])
        try await client.expectClosed()
        #expect(broker.statistics.sessions == 0)
    }

    @Test func disconnectCannotRaiseAZeroExpiry() async throws {
        let broker = TestBroker()
        let (client, _) = try await broker.connect("c")
        try await client.disconnect(properties: [.sessionExpiryInterval(60)])
        guard case .disconnect(let disconnect) = try await client.next() else {
            Issue.record("expected DISCONNECT")
            return
        }
        #expect(disconnect.reasonCode == .protocolError)
    }

    @Test func queueIsBoundedAndDropsTheOldest() async throws {
        let broker = TestBroker { $0.limits.maximumQueuedMessages = 3 }
        let (subscriber, _) = try await broker.connect("sub", cleanStart: false, properties: [.sessionExpiryInterval(60)])
        try await subscriber.subscribe("t", qos: .atLeastOnce)
        try await subscriber.drop()
        let (publisher, _) = try await broker.connect("pub")
        for i in 0..<5 { try await publisher.publish("t", "m\(i)", qos: .atLeastOnce) }
        let (again, _) = try await broker.connect("sub", cleanStart: false, properties: [.sessionExpiryInterval(60)])
        let payloads = try await again.drain().compactMap { packet -> String? in
            if case .publish(let p) = packet { return p.payload.string }
            return nil
        }
        #expect(payloads == ["m2", "m3", "m4"])
        #expect(broker.statistics.messagesDropped == 2)
    }

    @Test func expiredMessagesAreNotDeliveredAndExpiryCountsDown() async throws {
        let broker = TestBroker()
        let (subscriber, _) = try await broker.connect("sub", cleanStart: false, properties: [.sessionExpiryInterval(600)])
        try await subscriber.subscribe("t", qos: .atLeastOnce)
        try await subscriber.drop()
        let (publisher, _) = try await broker.connect("pub")
        try await publisher.publish("t", "short", qos: .atLeastOnce, properties: [.messageExpiryInterval(5)])
        try await publisher.publish("t", "long", qos: .atLeastOnce, properties: [.messageExpiryInterval(100)])
        await broker.advance(by: .seconds(30))
        let (again, _) = try await broker.connect("sub", cleanStart: false, properties: [.sessionExpiryInterval(600)])
        let message = try await again.nextPublish()
        #expect(message.payload.string == "long")
        #expect(message.properties.messageExpiryInterval == 70)
        try await again.expectNothing()
    }

    @Test func inflightWindowFollowsTheClientsReceiveMaximum() async throws {
        let broker = TestBroker()
        let (subscriber, _) = try await broker.connect("sub", properties: [.receiveMaximum(2)])
        try await subscriber.subscribe("t", qos: .atLeastOnce)
        let (publisher, _) = try await broker.connect("pub")
        for i in 0..<5 { try await publisher.publish("t", "\(i)", qos: .atLeastOnce) }
        let first = try await subscriber.drain()
        #expect(first.count == 2)
        for packet in first {
            if case .publish(let p) = packet { try await subscriber.send(.puback(PublishAckPacket(packetIdentifier: p.packetIdentifier!))) }
        }
        #expect(try await subscriber.drain().count == 2)
    }

    @Test func receiveMaximumExceededByQoS2Publisher() async throws {
        let broker = TestBroker { $0.limits.receiveMaximum = 2 }
        let (client, _) = try await broker.connect("c")
        for id: UInt16 in 1...3 {
            try await client.send(.publish(PublishPacket(topic: "t", payload: ByteBuffer(), qos: .exactlyOnce, packetIdentifier: id)))
        }
        let packets = try await client.drain()
        #expect(packets.map(\.type) == [.pubrec, .pubrec, .disconnect])
        if case .disconnect(let disconnect) = packets.last { #expect(disconnect.reasonCode == .receiveMaximumExceeded) }
    }
}

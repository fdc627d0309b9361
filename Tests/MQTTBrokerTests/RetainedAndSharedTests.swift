import MQTTCore
import NIOCore
import Testing

@testable import MQTTBroker

@Suite("Retained messages and shared subscriptions")
struct RetainedAndSharedTests {
    @Test func retainedSetReplaceDelete() async throws {
        let broker = TestBroker()
        let (publisher, _) = try await broker.connect("pub")
        try await publisher.publish("r/a", "1", retain: true)
        try await publisher.publish("r/a", "2", retain: true)
        try await publisher.publish("r/b", "b", qos: .atLeastOnce, retain: true)
        let (first, _) = try await broker.connect("first")
        try await first.subscribe("r/+", qos: .atLeastOnce)
        let got = try await first.drain().compactMap { packet -> String? in
            if case .publish(let p) = packet, p.retain { return "\(p.topic)=\(p.payload.string)" }
            return nil
        }
        #expect(Set(got) == ["r/a=2", "r/b=b"])
        try await publisher.publish("r/a", "", retain: true)
        let (second, _) = try await broker.connect("second")
        try await second.subscribe("r/#", qos: .atMostOnce)
        let after = try await second.drain().compactMap { packet -> String? in
            if case .publish(let p) = packet { return p.topic }
            return nil
        }
        #expect(after == ["r/b"])
        #expect(broker.statistics.retainedMessages == 1)
    }

    @Test func retainHandlingOptions() async throws {
        let broker = TestBroker()
        let (publisher, _) = try await broker.connect("pub")
        try await publisher.publish("r", "v", retain: true)
        let (client, _) = try await broker.connect("c")
        try await client.subscribe("r", options: SubscriptionOptions(qos: .atMostOnce, retainHandling: .doNotSend))
        try await client.expectNothing()
        try await client.unsubscribe(["r"])
        try await client.subscribe("r", options: SubscriptionOptions(qos: .atMostOnce, retainHandling: .sendIfNew))
        #expect(try await client.nextPublish().retain)
        try await client.subscribe("r", options: SubscriptionOptions(qos: .atMostOnce, retainHandling: .sendIfNew))
        try await client.expectNothing()
        try await client.subscribe("r", options: SubscriptionOptions(qos: .atMostOnce, retainHandling: .sendOnSubscribe))
        #expect(try await client.nextPublish().retain)
    }

    @Test func wildcardsDoNotReachSysRetainedMessages() async throws {
        let broker = TestBroker { $0.sysInterval = 1 }
        broker.broker.start()
        await broker.advance(by: .seconds(1))
        let (client, _) = try await broker.connect("c")
        try await client.subscribe("#", qos: .atMostOnce)
        try await client.expectNothing()
        try await client.subscribe("$SYS/broker/version", qos: .atMostOnce)
        #expect(try await client.nextPublish().payload.string == "meridian")
    }

    @Test func expiredRetainedMessageIsNotSent() async throws {
        let broker = TestBroker()
        let (publisher, _) = try await broker.connect("pub")
        try await publisher.publish("r", "soon gone", retain: true, properties: [.messageExpiryInterval(10)])
        await broker.advance(by: .seconds(11))
        let (client, _) = try await broker.connect("c")
        try await client.subscribe("r", qos: .atMostOnce)
        try await client.expectNothing()
        #expect(broker.statistics.retainedMessages == 0)
    }

    @Test func sharedSubscriptionRoundRobin() async throws {
        let broker = TestBroker()
        let (a, _) = try await broker.connect("a")
        let (b, _) = try await broker.connect("b")
        try await a.subscribe("$share/workers/jobs/#", qos: .atLeastOnce)
        try await b.subscribe("$share/workers/jobs/#", qos: .atLeastOnce)
        let (other, _) = try await broker.connect("other")
        try await other.subscribe("$share/audit/jobs/#", qos: .atMostOnce)
        let (publisher, _) = try await broker.connect("pub")
        for i in 0..<10 { try await publisher.publish("jobs/\(i)", "\(i)") }
        let countA = try await a.drain().count
        let countB = try await b.drain().count
        #expect(countA == 5 && countB == 5)
        #expect(try await other.drain().count == 10)
    }

    @Test func sharedSubscriptionPrefersOnlineMembers() async throws {
        let broker = TestBroker()
        let (a, _) = try await broker.connect("a", cleanStart: false, properties: [.sessionExpiryInterval(60)])
        try await a.subscribe("$share/g/t", qos: .atLeastOnce)
        let (b, _) = try await broker.connect("b")
        try await b.subscribe("$share/g/t", qos: .atLeastOnce)
        try await a.drop()
        let (publisher, _) = try await broker.connect("pub")
        for i in 0..<4 { try await publisher.publish("t", "\(i)", qos: .atLeastOnce) }
        #expect(try await b.drain().count == 4)
    }

    @Test func sharedSubscriptionsGetNoRetainedMessagesAndRefuseNoLocal() async throws {
        let broker = TestBroker()
        let (publisher, _) = try await broker.connect("pub")
        try await publisher.publish("t", "kept", retain: true)
        let (client, _) = try await broker.connect("c")
        try await client.subscribe("$share/g/t", qos: .atMostOnce)
        try await client.expectNothing()
        try await client.send(
            .subscribe(SubscribePacket(packetIdentifier: 9, subscriptions: [.init(topicFilter: "$share/g/x", options: .init(qos: .atMostOnce, noLocal: true))]))
        )
        guard case .disconnect(let disconnect) = try await client.next() else {
            Issue.record("expected DISCONNECT")
            return
        }
        #expect(disconnect.reasonCode == .protocolError)
    }
}

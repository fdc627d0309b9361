import MQTTCore
import NIOCore
import Testing

@testable import MQTTBroker

@Suite("Publish and subscribe")
struct PublishSubscribeTests {
    @Test(arguments: [QoS.atMostOnce, .atLeastOnce, .exactlyOnce])
    func deliversAtEveryQoS(qos: QoS) async throws {
        let broker = TestBroker()
        let (subscriber, _) = try await broker.connect("sub")
        let suback = try await subscriber.subscribe("a/+", qos: .exactlyOnce)
        #expect(suback.reasonCodes == [.grantedQoS2])
        let (publisher, _) = try await broker.connect("pub")
        let ack = try await publisher.publish("a/b", "hello", qos: qos)
        if qos == .exactlyOnce { try await publisher.release(ack!.packetIdentifier) }
        let message = try await subscriber.nextPublish()
        #expect(message.topic == "a/b")
        #expect(message.payload.string == "hello")
        #expect(message.qos == qos)
        #expect(message.retain == false)
        if qos == .atLeastOnce {
            try await subscriber.send(.puback(PublishAckPacket(packetIdentifier: message.packetIdentifier!)))
        } else if qos == .exactlyOnce {
            try await subscriber.send(.pubrec(PublishAckPacket(packetIdentifier: message.packetIdentifier!)))
            guard case .pubrel(let rel) = try await subscriber.next() else {
                Issue.record("expected PUBREL")
                return
            }
            #expect(rel.packetIdentifier == message.packetIdentifier)
            try await subscriber.send(.pubcomp(PublishAckPacket(packetIdentifier: rel.packetIdentifier)))
        }
        try await subscriber.expectNothing()
        #expect(broker.statistics.messagesReceived == 1)
        #expect(broker.statistics.messagesSent == 1)
    }

    @Test func downgradesToTheSubscriptionQoS() async throws {
        let broker = TestBroker()
        let (subscriber, _) = try await broker.connect("sub")
        try await subscriber.subscribe("t", qos: .atMostOnce)
        let (publisher, _) = try await broker.connect("pub")
        try await publisher.publish("t", "x", qos: .atLeastOnce)
        let message = try await subscriber.nextPublish()
        #expect(message.qos == .atMostOnce)
        #expect(message.packetIdentifier == nil)
    }

    @Test func qos2DuplicateIsDeliveredOnce() async throws {
        let broker = TestBroker()
        let (subscriber, _) = try await broker.connect("sub")
        try await subscriber.subscribe("t", qos: .atMostOnce)
        let (publisher, _) = try await broker.connect("pub")
        let packet = PublishPacket(topic: "t", payload: ByteBuffer(string: "once"), qos: .exactlyOnce, packetIdentifier: 7)
        try await publisher.send(.publish(packet))
        var duplicate = packet
        duplicate.dup = true
        try await publisher.send(.publish(duplicate))
        #expect(try await publisher.drain().map(\.type) == [.pubrec, .pubrec])
        try await publisher.release(7)
        _ = try await subscriber.nextPublish()
        try await subscriber.expectNothing()
        // After PUBREL the identifier is free again: a new message with it is delivered.
        try await publisher.send(.publish(packet))
        _ = try await subscriber.nextPublish()
    }

    @Test func keepsOrderPerPublisher() async throws {
        let broker = TestBroker()
        let (subscriber, _) = try await broker.connect("sub")
        try await subscriber.subscribe("seq", qos: .atLeastOnce)
        let (publisher, _) = try await broker.connect("pub")
        for i in 0..<200 {
            let id = UInt16(i + 1)
            try await publisher.send(.publish(PublishPacket(topic: "seq", payload: ByteBuffer(string: "\(i)"), qos: .atLeastOnce, packetIdentifier: id)))
        }
        var received: [String] = []
        while received.count < 200 {
            let message = try await subscriber.nextPublish()
            received.append(message.payload.string)
            try await subscriber.send(.puback(PublishAckPacket(packetIdentifier: message.packetIdentifier!)))
        }
        #expect(received == (0..<200).map(String.init))
    }

    @Test func systemTopicsAreNotMatchedByLeadingWildcards() async throws {
        let broker = TestBroker { $0.sysInterval = 1 }
        let (all, _) = try await broker.connect("all")
        try await all.subscribe("#", qos: .atMostOnce)
        try await all.subscribe("+/broker/#", qos: .atMostOnce)
        let (sys, _) = try await broker.connect("sys")
        try await sys.subscribe("$SYS/broker/clients/connected", qos: .atMostOnce)
        broker.broker.start()
        await broker.advance(by: .seconds(1))
        let message = try await sys.nextPublish()
        #expect(message.topic == "$SYS/broker/clients/connected")
        #expect(message.payload.string == "2")
        #expect(message.retain == false, "a live delivery clears RETAIN")
        try await all.expectNothing()
        let (late, _) = try await broker.connect("late")
        try await late.subscribe("$SYS/broker/clients/connected", qos: .atMostOnce)
        #expect(try await late.nextPublish().retain, "retained on subscribe")
    }

    @Test func clientsCannotPublishToSys() async throws {
        let broker = TestBroker()
        let (subscriber, _) = try await broker.connect("sub")
        try await subscriber.subscribe("$SYS/#", qos: .atMostOnce)
        let (publisher, _) = try await broker.connect("pub")
        let ack = try await publisher.publish("$SYS/broker/fake", "1", qos: .atLeastOnce)
        #expect(ack?.reasonCode == .notAuthorized)
        try await subscriber.expectNothing()
    }

    @Test func overlappingSubscriptionsDeliverOnceAtTheHighestQoS() async throws {
        let broker = TestBroker()
        let (subscriber, _) = try await broker.connect("sub")
        try await subscriber.subscribe("a/#", qos: .atMostOnce, properties: [.subscriptionIdentifier(1)])
        try await subscriber.subscribe("a/b", qos: .atLeastOnce, properties: [.subscriptionIdentifier(2)])
        let (publisher, _) = try await broker.connect("pub")
        try await publisher.publish("a/b", "x", qos: .exactlyOnce)
        let message = try await subscriber.nextPublish()
        #expect(message.qos == .atLeastOnce)
        #expect(Set(message.properties.subscriptionIdentifiers) == [1, 2])
        try await subscriber.expectNothing()
    }

    @Test func noLocalSkipsOwnMessages() async throws {
        let broker = TestBroker()
        let (client, _) = try await broker.connect("me")
        try await client.subscribe("echo", options: SubscriptionOptions(qos: .atMostOnce, noLocal: true))
        try await client.publish("echo", "mine")
        try await client.expectNothing()
        let (other, _) = try await broker.connect("other")
        try await other.publish("echo", "theirs")
        #expect(try await client.nextPublish().payload.string == "theirs")
    }

    @Test func retainAsPublishedKeepsTheFlag() async throws {
        let broker = TestBroker()
        let (keep, _) = try await broker.connect("keep")
        try await keep.subscribe("r", options: SubscriptionOptions(qos: .atMostOnce, retainAsPublished: true))
        let (clear, _) = try await broker.connect("clear")
        try await clear.subscribe("r", qos: .atMostOnce)
        let (publisher, _) = try await broker.connect("pub")
        try await publisher.publish("r", "v", retain: true)
        #expect(try await keep.nextPublish().retain == true)
        #expect(try await clear.nextPublish().retain == false)
    }

    @Test func propertiesPassThrough() async throws {
        let broker = TestBroker()
        let (subscriber, _) = try await broker.connect("sub")
        try await subscriber.subscribe("req", qos: .atMostOnce)
        let (publisher, _) = try await broker.connect("pub")
        let properties: MQTTProperties = [
            .responseTopic("resp/1"), .correlationData(ByteBuffer(bytes: [1, 2, 3])), .contentType("application/json"),
            .payloadFormatIndicator(1), .userProperty("k", "v"), .userProperty("k", "w"),
        ]
        try await publisher.publish("req", "{}", properties: properties)
        let message = try await subscriber.nextPublish()
        #expect(message.properties.responseTopic == "resp/1")
        #expect(message.properties.correlationData == ByteBuffer(bytes: [1, 2, 3]))
        #expect(message.properties.contentType == "application/json")
        #expect(message.properties.payloadFormatIndicator == 1)
        #expect(message.properties.userProperties.map { "\($0.key)=\($0.value)" } == ["k=v", "k=w"])
    }

    @Test func mqtt311SubscriberGetsNoProperties() async throws {
        let broker = TestBroker()
        let (subscriber, _) = try await broker.connect("sub", version: .v3_1_1)
        try await subscriber.subscribe("t", qos: .atMostOnce)
        let (publisher, _) = try await broker.connect("pub")
        try await publisher.publish("t", "x", properties: [.userProperty("a", "b")])
        let message = try await subscriber.nextPublish()
        #expect(message.payload.string == "x")
    }

    @Test func unsubscribeStopsDelivery() async throws {
        let broker = TestBroker()
        let (subscriber, _) = try await broker.connect("sub")
        try await subscriber.subscribe("t", qos: .atMostOnce)
        let unsuback = try await subscriber.unsubscribe(["t", "never"])
        #expect(unsuback.reasonCodes == [.success, .noSubscriptionExisted])
        let (publisher, _) = try await broker.connect("pub")
        try await publisher.publish("t", "x")
        try await subscriber.expectNothing()
        #expect(broker.statistics.subscriptions == 0)
    }

    @Test func invalidFiltersAreRefusedPerFilter() async throws {
        let broker = TestBroker()
        let (v5, _) = try await broker.connect("v5")
        let suback = try await v5.subscribe([.init("a/#/b", qos: .atMostOnce), .init("ok/+", qos: .atLeastOnce), .init("$share/g", qos: .atMostOnce)])
        #expect(suback.reasonCodes == [.topicFilterInvalid, .grantedQoS1, .topicFilterInvalid])
        let (v3, _) = try await broker.connect("v3", version: .v3_1_1)
        let old = try await v3.subscribe([.init("a+", qos: .atMostOnce), .init("x", qos: .exactlyOnce)])
        #expect(old.reasonCodes.map(\.rawValue) == [0x80, 0x02])
    }

    @Test func subscriptionQuotaAndLimits() async throws {
        let broker = TestBroker {
            $0.limits.maximumSubscriptionsPerClient = 2
            $0.limits.maximumTopicLevels = 3
            $0.limits.maximumTopicLength = 20
        }
        let (client, _) = try await broker.connect("c")
        let suback = try await client.subscribe([
            .init("a", qos: .atMostOnce), .init("b", qos: .atMostOnce), .init("c", qos: .atMostOnce),
            .init("a", qos: .atLeastOnce),
        ])
        #expect(suback.reasonCodes == [.grantedQoS0, .grantedQoS0, .quotaExceeded, .grantedQoS1])
        let limits = try await client.subscribe([.init("a/b/c/d", qos: .atMostOnce), .init(String(repeating: "x", count: 21), qos: .atMostOnce)])
        #expect(limits.reasonCodes == [.topicFilterInvalid, .topicFilterInvalid])
        let ack = try await client.publish("a/b/c/d", "x", qos: .atLeastOnce)
        #expect(ack?.reasonCode == .topicNameInvalid)
    }

    @Test func maximumQoSCapsGrants() async throws {
        let broker = TestBroker { $0.features.maximumQoS = .atLeastOnce }
        let (client, _) = try await broker.connect("c")
        #expect(try await client.subscribe("t", qos: .exactlyOnce).reasonCodes == [.grantedQoS1])
        try await client.send(.publish(PublishPacket(topic: "t", payload: ByteBuffer(), qos: .exactlyOnce, packetIdentifier: 1)))
        guard case .disconnect(let disconnect) = try await client.next() else {
            Issue.record("expected DISCONNECT")
            return
        }
        #expect(disconnect.reasonCode == .qosNotSupported)
    }

    @Test func authorizerDecidesPublishAndSubscribe() async throws {
        struct OwnTopicsOnly: MQTTAuthorizer {
            func authorize(_ principal: MQTTPrincipal, _ action: MQTTAction, topic: String) -> MQTTAuthorization {
                topic.hasPrefix("devices/\(principal.clientIdentifier)/") ? .allow : .deny
            }
        }
        let broker = TestBroker(authorizer: OwnTopicsOnly())
        let (client, _) = try await broker.connect("d1")
        let suback = try await client.subscribe([.init("devices/d1/#", qos: .atLeastOnce), .init("devices/d2/#", qos: .atLeastOnce), .init("#", qos: .atMostOnce)])
        #expect(suback.reasonCodes == [.grantedQoS1, .notAuthorized, .notAuthorized])
        #expect(try await client.publish("devices/d2/x", "no", qos: .atLeastOnce)?.reasonCode == .notAuthorized)
        #expect(try await client.publish("devices/d1/x", "yes", qos: .atLeastOnce)?.reasonCode == .success)
        #expect(try await client.nextPublish().topic == "devices/d1/x")
    }

    @Test func messageTapSeesAndCanRejectMessages() async throws {
        final class Tap: MQTTMessageTap, @unchecked Sendable {
            var seen: [String] = []
            func inspect(_ message: MQTTTapMessage, from principal: MQTTPrincipal) -> MQTTTapDecision {
                seen.append("\(principal.clientIdentifier):\(message.topic)")
                return message.payload.readableBytes == 0 ? .reject(.payloadFormatInvalid, reason: "empty") : .accept
            }
        }
        let tap = Tap()
        let broker = TestBroker(messageTap: tap)
        let (subscriber, _) = try await broker.connect("sub")
        try await subscriber.subscribe("t", qos: .atMostOnce)
        let (publisher, _) = try await broker.connect("pub")
        let rejected = try await publisher.publish("t", "", qos: .atLeastOnce)
        #expect(rejected?.reasonCode == .payloadFormatInvalid)
        #expect(rejected?.properties.reasonString == "empty")
        try await publisher.publish("t", "ok", qos: .atLeastOnce)
        #expect(try await subscriber.nextPublish().payload.string == "ok")
        #expect(tap.seen == ["pub:t", "pub:t"])
    }

    @Test func invalidUTF8PayloadMarkedAsTextIsRefused() async throws {
        let broker = TestBroker()
        let (client, _) = try await broker.connect("c")
        try await client.send(
            .publish(PublishPacket(topic: "t", payload: ByteBuffer(bytes: [0xFF, 0xFE]), qos: .atLeastOnce, packetIdentifier: 1, properties: [.payloadFormatIndicator(1)]))
        )
        guard case .puback(let ack) = try await client.next() else {
            Issue.record("expected PUBACK")
            return
        }
        #expect(ack.reasonCode == .payloadFormatInvalid)
    }
}

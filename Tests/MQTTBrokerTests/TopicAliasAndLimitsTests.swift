import MQTTCore
import NIOCore
import Testing

@testable import MQTTBroker

@Suite("Topic aliases and packet limits")
struct TopicAliasAndLimitsTests {
    @Test func inboundAliasesResolveToTheirTopic() async throws {
        let broker = TestBroker()
        let (subscriber, _) = try await broker.connect("sub")
        try await subscriber.subscribe("long/topic/name", qos: .atMostOnce)
        let (publisher, _) = try await broker.connect("pub")
        try await publisher.publish("long/topic/name", "first", properties: [.topicAlias(3)])
        try await publisher.publish("", "second", properties: [.topicAlias(3)])
        #expect(try await subscriber.nextPublish().payload.string == "first")
        let second = try await subscriber.nextPublish()
        #expect(second.topic == "long/topic/name" && second.payload.string == "second")
    }

    @Test func undefinedOrOversizedAliasesCloseTheConnection() async throws {
        let broker = TestBroker { $0.limits.topicAliasMaximum = 5 }
        let (undefined, _) = try await broker.connect("a")
        try await undefined.publish("", "x", properties: [.topicAlias(2)])
        guard case .disconnect(let first) = try await undefined.next() else {
            Issue.record("expected DISCONNECT")
            return
        }
        #expect(first.reasonCode == .protocolError)
        let (oversized, _) = try await broker.connect("b")
        try await oversized.publish("t", "x", properties: [.topicAlias(6)])
        guard case .disconnect(let second) = try await oversized.next() else {
            Issue.record("expected DISCONNECT")
            return
        }
        #expect(second.reasonCode == .topicAliasInvalid)
    }

    @Test func outboundAliasesWhenTheClientAllowsThem() async throws {
        let broker = TestBroker()
        let (subscriber, _) = try await broker.connect("sub", properties: [.topicAliasMaximum(1)])
        try await subscriber.subscribe("#", qos: .atMostOnce)
        let (publisher, _) = try await broker.connect("pub")
        try await publisher.publish("x/y", "1")
        try await publisher.publish("x/y", "2")
        try await publisher.publish("other", "3")
        let first = try await subscriber.nextPublish()
        let second = try await subscriber.nextPublish()
        let third = try await subscriber.nextPublish()
        #expect(first.topic == "x/y" && first.properties.topicAlias == 1)
        #expect(second.topic == "" && second.properties.topicAlias == 1)
        #expect(third.topic == "other" && third.properties.topicAlias == nil, "only one alias allowed")
    }

    @Test func oversizedPacketGetsDisconnect0x95() async throws {
        let broker = TestBroker { $0.limits.maximumPacketSize = 128 }
        let (client, _) = try await broker.connect("c")
        try await client.publish("t", String(repeating: "x", count: 200))
        guard case .disconnect(let disconnect) = try await client.next() else {
            Issue.record("expected DISCONNECT")
            return
        }
        #expect(disconnect.reasonCode == .packetTooLarge)
        try await client.expectClosed()
    }

    @Test func messagesLargerThanTheClientsMaximumAreDropped() async throws {
        let broker = TestBroker()
        let (subscriber, _) = try await broker.connect("sub", properties: [.maximumPacketSize(64)])
        try await subscriber.subscribe("t", qos: .atLeastOnce)
        let (publisher, _) = try await broker.connect("pub")
        try await publisher.publish("t", String(repeating: "x", count: 100), qos: .atLeastOnce)
        try await publisher.publish("t", "small", qos: .atLeastOnce)
        #expect(try await subscriber.nextPublish().payload.string == "small")
        #expect(broker.statistics.messagesDropped == 1)
    }

    @Test func malformedPacketAfterConnectGetsDisconnect0x81() async throws {
        let broker = TestBroker()
        let (client, _) = try await broker.connect("c")
        try await client.sendRaw([0x36, 0x03, 0x00, 0x01, 0x61])  // PUBLISH with QoS 3
        guard case .disconnect(let disconnect) = try await client.next() else {
            Issue.record("expected DISCONNECT")
            return
        }
        #expect(disconnect.reasonCode == .malformedPacket)
        try await client.expectClosed()
    }

    @Test func packetsSplitAcrossReadsAndJoinedInOneRead() async throws {
        let broker = TestBroker()
        let (subscriber, _) = try await broker.connect("sub")
        try await subscriber.subscribe("t", qos: .atMostOnce)
        let (publisher, _) = try await broker.connect("pub")
        var bytes = ByteBuffer()
        for i in 0..<10 {
            MQTTPacket.publish(PublishPacket(topic: "t", payload: ByteBuffer(string: "m\(i)"))).write(to: &bytes, version: .v5)
        }
        // Feed in chunks of 3 bytes, then everything else at once.
        var rest = bytes
        for _ in 0..<10 {
            try await publisher.sendRaw(rest.readSlice(length: 3)!)
        }
        try await publisher.sendRaw(rest)
        var payloads: [String] = []
        for _ in 0..<10 { payloads.append(try await subscriber.nextPublish().payload.string) }
        #expect(payloads == (0..<10).map { "m\($0)" })
    }
}

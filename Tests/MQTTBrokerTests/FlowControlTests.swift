import MQTTCore
import NIOCore
import Testing

@testable import MQTTBroker

@Suite("Publisher flow control")
struct FlowControlTests {
    /// A subscriber that reads slowly makes the broker hold the publisher's PUBACKs (so a
    /// windowed publisher pauses) instead of dropping queued messages.
    @Test func slowSubscriberHoldsPublisherAcknowledgementsInsteadOfDropping() async throws {
        let broker = TestBroker {
            $0.limits.maximumQueuedMessages = 10  // high watermark 5, low 2
            $0.limits.maximumInflight = 1
        }
        let (subscriber, _) = try await broker.connect("slow")
        try await subscriber.subscribe("t", qos: .atLeastOnce)
        let (publisher, _) = try await broker.connect("fast")
        for i in 1...8 {
            try await publisher.send(.publish(PublishPacket(topic: "t", payload: ByteBuffer(string: "\(i)"), qos: .atLeastOnce, packetIdentifier: UInt16(i))))
        }
        // One message in flight, 2–6 queued; the 7th finds the queue at the high watermark (5),
        // so its acknowledgement and every later one are held.
        let acked = try await publisher.drain().compactMap { if case .puback(let a) = $0 { a.packetIdentifier } else { nil } }
        #expect(acked == [1, 2, 3, 4, 5, 6])
        // The subscriber catches up: acknowledgements are released in order, nothing is dropped.
        var received: [String] = []
        while received.count < 8 {
            let message = try await subscriber.nextPublish()
            received.append(message.payload.string)
            try await subscriber.send(.puback(PublishAckPacket(packetIdentifier: message.packetIdentifier!)))
        }
        #expect(received == (1...8).map(String.init))
        let released = try await publisher.drain().compactMap { if case .puback(let a) = $0 { a.packetIdentifier } else { nil } }
        #expect(released == [7, 8])
        #expect(broker.statistics.messagesDropped == 0)
    }

    @Test func heldAcknowledgementsAreReleasedAfterTheTimeout() async throws {
        let broker = TestBroker {
            $0.limits.maximumQueuedMessages = 4
            $0.limits.maximumInflight = 1
            $0.limits.flowControlTimeout = 3
        }
        let (subscriber, _) = try await broker.connect("stuck")
        try await subscriber.subscribe("t", qos: .atLeastOnce)
        let (publisher, _) = try await broker.connect("pub")
        for i in 1...6 {
            try await publisher.send(.publish(PublishPacket(topic: "t", payload: ByteBuffer(string: "\(i)"), qos: .atLeastOnce, packetIdentifier: UInt16(i))))
        }
        let before = try await publisher.drain().count
        #expect(before < 6)
        await broker.advance(by: .seconds(3))
        let after = try await publisher.drain().count
        #expect(before + after == 6, "every PUBACK is sent once the timeout passes")
        _ = subscriber
    }

    @Test func offlineSubscribersNeverThrottlePublishers() async throws {
        let broker = TestBroker { $0.limits.maximumQueuedMessages = 4 }
        let (subscriber, _) = try await broker.connect("away", cleanStart: false, properties: [.sessionExpiryInterval(60)])
        try await subscriber.subscribe("t", qos: .atLeastOnce)
        try await subscriber.drop()
        let (publisher, _) = try await broker.connect("pub")
        for i in 1...10 {
            let ack = try await publisher.publish("t", "\(i)", qos: .atLeastOnce)
            #expect(ack?.reasonCode == .success)
        }
        #expect(broker.statistics.messagesDropped == 6)
    }
}

import MQTTClient
import MQTTCore
import NIOCore
import Testing

@Suite("Publishing and subscribing")
struct PublishSubscribeTests {
    @Test(
        "each message arrives exactly once at the subscribed QoS",
        arguments: TestBrokerKind.allCases,
        allPairs([QoS.atMostOnce, .atLeastOnce, .exactlyOnce], [MQTTProtocolVersion.v3_1_1, .v5])
    )
    func deliveredOnce(kind: TestBrokerKind, setup: (QoS, MQTTProtocolVersion)) async throws {
        let (qos, version) = setup
        try await withBroker(kind) { broker in
            let publisher = makeClient(broker, version: version)
            let subscriber = makeClient(broker, version: version)
            try await publisher.connect()
            try await subscriber.connect()
            let messages = StreamRecorder(subscriber.messages)
            let packets = StreamRecorder(subscriber.packets)
            let topic = uniqueTopic()
            let subAck = try await subscriber.subscribe(topic, qos: qos)
            #expect(subAck.reasonCodes == [ReasonCode.granted(qos)])

            let ack = try await publisher.publish(topic, payload: [0x01, 0x02, 0x03], qos: qos)
            if qos == .atMostOnce {
                #expect(ack == nil)
            } else {
                #expect(ack?.reasonCode == .success)
            }

            let message = try await messages.first()
            #expect(message.topic == topic)
            #expect(Array(message.payload.readableBytesView) == [0x01, 0x02, 0x03])
            #expect(message.qos == qos)
            if qos == .exactlyOnce {
                // The broker released the message: our PUBREC was answered with PUBREL.
                try await packets.first { if case .pubrel = $0 { return true } else { return false } }
            }
            try await Task.sleep(for: .milliseconds(300))
            #expect(messages.all.count == 1)

            try await publisher.disconnect()
            try await subscriber.disconnect()
        }
    }

    @Test(
        "a retained message reaches a later subscriber with the retain flag",
        arguments: TestBrokerKind.allCases,
        [MQTTProtocolVersion.v3_1_1, .v5]
    )
    func retained(kind: TestBrokerKind, version: MQTTProtocolVersion) async throws {
        try await withBroker(kind) { broker in
            let publisher = makeClient(broker, version: version)
            try await publisher.connect()
            let topic = uniqueTopic("retained")
            try await publisher.publish(topic, payload: "21.5", qos: .atLeastOnce, retain: true)

            let subscriber = makeClient(broker, version: version)
            try await subscriber.connect()
            let messages = StreamRecorder(subscriber.messages)
            try await subscriber.subscribe(topic, qos: .atLeastOnce)
            let message = try await messages.first()
            #expect(message.retain)
            #expect(message.payload.string == "21.5")

            // A message published while subscribed is not flagged as retained.
            try await publisher.publish(topic, payload: "22.0", qos: .atLeastOnce, retain: true)
            let live = try await messages.first(from: 1)
            #expect(!live.retain)
            #expect(live.payload.string == "22.0")

            try await publisher.disconnect()
            try await subscriber.disconnect()
        }
    }

    @Test(
        "MQTT 5 user properties, response topic, correlation data and content type pass through",
        arguments: TestBrokerKind.allCases
    )
    func propertiesPassThrough(kind: TestBrokerKind) async throws {
        try await withBroker(kind) { broker in
            let requester = makeClient(broker)
            let responder = makeClient(broker)
            try await requester.connect()
            try await responder.connect()
            let requests = StreamRecorder(responder.messages)
            let topic = uniqueTopic("requests")
            try await responder.subscribe(topic, qos: .atLeastOnce)

            var properties = MQTTProperties()
            properties.userProperties = [("trace-id", "abc-123"), ("unit", "celsius"), ("unit", "kelvin")]
            properties.responseTopic = "replies/requester"
            properties.correlationData = ByteBuffer(bytes: [0xCA, 0xFE])
            properties.contentType = "application/json"
            try await requester.publish(topic, payload: "{}", qos: .atLeastOnce, properties: properties)

            let message = try await requests.first()
            let userProperties = message.properties.userProperties
            #expect(userProperties.map(\.key) == ["trace-id", "unit", "unit"])
            #expect(userProperties.map(\.value) == ["abc-123", "celsius", "kelvin"])
            #expect(message.properties.responseTopic == "replies/requester")
            #expect(message.properties.correlationData == ByteBuffer(bytes: [0xCA, 0xFE]))
            #expect(message.properties.contentType == "application/json")

            try await requester.disconnect()
            try await responder.disconnect()
        }
    }

    // Mosquitto only: 0x10 is optional in MQTT 5 (a server "MAY" send it) and our broker
    // always answers 0x00.
    @Test("the PUBACK reason code reaches the caller (0x10 no matching subscribers)")
    func noMatchingSubscribers() async throws {
        try await withBroker(.mosquitto) { broker in
            let client = makeClient(broker)
            try await client.connect()
            let ack = try await client.publish(uniqueTopic("nobody"), payload: "x", qos: .atLeastOnce)
            #expect(ack?.reasonCode == .noMatchingSubscribers)
            try await client.disconnect()
        }
    }

    @Test(
        "publishes over the server's maximum packet size throw before sending; the connection stays up",
        arguments: TestBrokerKind.allCases
    )
    func maximumPacketSize(kind: TestBrokerKind) async throws {
        var options = BrokerOptions()
        options.maximumPacketSize = 1000
        try await withBroker(kind, options) { broker in
            let client = makeClient(broker)
            let connAck = try await client.connect()
            #expect(connAck.properties.maximumPacketSize == 1000)
            let topic = uniqueTopic()
            let error = await #expect(throws: MQTTClientError.self) {
                try await client.publish(topic, payload: [UInt8](repeating: 7, count: 2000), qos: .atLeastOnce)
            }
            #expect(error?.code == .packetTooLarge)
            #expect(client.isConnected)
            let ack = try await client.publish(topic, payload: [UInt8](repeating: 7, count: 100), qos: .atLeastOnce)
            #expect(ack != nil)
            try await client.disconnect()
        }
    }

    @Test("outbound topic aliases: the subscriber sees the full topic every time", arguments: TestBrokerKind.allCases)
    func outboundTopicAliases(kind: TestBrokerKind) async throws {
        try await withBroker(kind) { broker in
            let publisher = makeClient(broker) { $0.useTopicAliases = true }
            let subscriber = makeClient(broker)
            let connAck = try await publisher.connect()
            let maximum = try #require(connAck.properties.topicAliasMaximum)
            #expect(maximum > 0)
            try await subscriber.connect()
            let messages = StreamRecorder(subscriber.messages)
            let topic = uniqueTopic("alias")
            try await subscriber.subscribe(topic, qos: .atLeastOnce)
            for index in 0..<3 {
                try await publisher.publish(topic, payload: "m\(index)", qos: .atLeastOnce)
            }
            let received = try await messages.wait(forCount: 3)
            #expect(received.map(\.topic) == [topic, topic, topic])
            #expect(received.map(\.payload.string) == ["m0", "m1", "m2"])
            try await publisher.disconnect()
            try await subscriber.disconnect()
        }
    }

    @Test(
        "many concurrent QoS 1 and 2 publishes all complete with distinct packet identifiers",
        arguments: TestBrokerKind.allCases
    )
    func concurrentPublishes(kind: TestBrokerKind) async throws {
        try await withBroker(kind) { broker in
            let publisher = makeClient(broker)
            let subscriber = makeClient(broker)
            try await publisher.connect()
            try await subscriber.connect()
            let messages = StreamRecorder(subscriber.messages)
            let topic = uniqueTopic("burst")
            try await subscriber.subscribe(topic, qos: .exactlyOnce)
            let count = 200
            try await withThrowingTaskGroup(of: PublishAckPacket?.self) { group in
                for index in 0..<count {
                    group.addTask {
                        try await publisher.publish(
                            topic,
                            payload: "\(index)",
                            qos: index.isMultiple(of: 2) ? .atLeastOnce : .exactlyOnce
                        )
                    }
                }
                var identifiers: [UInt16] = []
                for try await ack in group {
                    identifiers.append(try #require(ack).packetIdentifier)
                }
                #expect(identifiers.count == count)
            }
            let received = try await messages.wait(forCount: count, within: .seconds(10))
            #expect(Set(received.map(\.payload.string)).count == count)
            try await publisher.disconnect()
            try await subscriber.disconnect()
        }
    }
}

import MQTTClient
import MQTTCore
import NIOCore
import Testing

@Suite("Sessions, wills and acknowledgements")
struct SessionTests {
    @Test(
        "close() drops the connection without DISCONNECT and the broker publishes the will",
        arguments: TestBrokerKind.allCases,
        [MQTTProtocolVersion.v3_1_1, .v5]
    )
    func willAfterClose(kind: TestBrokerKind, version: MQTTProtocolVersion) async throws {
        try await withBroker(kind) { broker in
            let willTopic = uniqueTopic("will")
            let watcher = makeClient(broker, version: version)
            try await watcher.connect()
            let wills = StreamRecorder(watcher.messages)
            try await watcher.subscribe(willTopic, qos: .atLeastOnce)

            let device = makeClient(broker, version: version) {
                $0.will = ConnectPacket.Will(
                    topic: willTopic,
                    payload: ByteBuffer(string: "offline"),
                    qos: .atLeastOnce
                )
            }
            try await device.connect()
            await device.close()
            #expect(!device.isConnected)
            #expect(device.lastCloseReason?.initiatedByClient == true)

            let will = try await wills.first()
            #expect(will.topic == willTopic)
            #expect(will.payload.string == "offline")
            try await watcher.disconnect()
        }
    }

    @Test("disconnect() sends DISCONNECT: no will", arguments: TestBrokerKind.allCases)
    func noWillAfterDisconnect(kind: TestBrokerKind) async throws {
        try await withBroker(kind) { broker in
            let willTopic = uniqueTopic("will")
            let watcher = makeClient(broker)
            try await watcher.connect()
            let wills = StreamRecorder(watcher.messages)
            try await watcher.subscribe(willTopic, qos: .atLeastOnce)
            let device = makeClient(broker) {
                $0.will = ConnectPacket.Will(
                    topic: willTopic,
                    payload: ByteBuffer(string: "offline"),
                    qos: .atLeastOnce
                )
            }
            try await device.connect()
            try await device.disconnect()
            try await Task.sleep(for: .milliseconds(500))
            #expect(wills.all.isEmpty)
            try await watcher.disconnect()
        }
    }

    @Test(
        "QoS 1 messages published while a persistent subscriber is away arrive when it resumes",
        arguments: TestBrokerKind.allCases,
        [MQTTProtocolVersion.v3_1_1, .v5]
    )
    func persistentSession(kind: TestBrokerKind, version: MQTTProtocolVersion) async throws {
        try await withBroker(kind) { broker in
            let topic = uniqueTopic("persistent")
            let subscriberID = uniqueClientID("subscriber")
            let configure: (inout MQTTClient.Configuration) -> Void = {
                $0.cleanStart = false
                if version == .v5 { $0.connectProperties.sessionExpiryInterval = 300 }
            }
            let first = makeClient(broker, clientID: subscriberID, version: version, configure: configure)
            let firstConnAck = try await first.connect()
            #expect(!firstConnAck.sessionPresent)
            try await first.subscribe(topic, qos: .atLeastOnce)
            try await first.disconnect()

            let publisher = makeClient(broker, version: version)
            try await publisher.connect()
            for index in 0..<3 {
                try await publisher.publish(topic, payload: "queued-\(index)", qos: .atLeastOnce)
            }
            try await publisher.disconnect()

            let second = makeClient(broker, clientID: subscriberID, version: version, configure: configure)
            let messages = StreamRecorder(second.messages)
            let connAck = try await second.connect()
            #expect(connAck.sessionPresent)
            let received = try await messages.wait(forCount: 3)
            #expect(received.map(\.payload.string) == ["queued-0", "queued-1", "queued-2"])
            try await second.disconnect(properties: version == .v5 ? [.sessionExpiryInterval(0)] : [])
        }
    }

    @Test(
        "manual acknowledgement leaves messages unacknowledged, holding the broker's in-flight window",
        arguments: TestBrokerKind.allCases
    )
    func manualAcknowledgement(kind: TestBrokerKind) async throws {
        var options = BrokerOptions()
        options.maximumInflightMessages = 1
        try await withBroker(kind, options) { broker in
            let topic = uniqueTopic("manual")
            let subscriber = makeClient(broker) { $0.automaticAcknowledgement = false }
            try await subscriber.connect()
            let messages = StreamRecorder(subscriber.messages)
            let packets = StreamRecorder(subscriber.packets)
            try await subscriber.subscribe(topic, qos: .atLeastOnce)

            let publisher = makeClient(broker)
            try await publisher.connect()
            try await publisher.publish(topic, payload: "first", qos: .atLeastOnce)
            try await publisher.publish(topic, payload: "second", qos: .atLeastOnce)

            let first = try await messages.first()
            #expect(first.payload.string == "first")
            // With one message in flight and no PUBACK, the broker holds the second one back.
            try await Task.sleep(for: .milliseconds(500))
            #expect(messages.all.count == 1)
            #expect(packets.all.filter { if case .publish = $0 { true } else { false } }.count == 1)

            await #expect(throws: MQTTClientError.unknownPacketIdentifier(9999)) {
                try await subscriber.acknowledge(packetIdentifier: 9999)
            }
            try await subscriber.acknowledge(packetIdentifier: try #require(first.packetIdentifier))
            let second = try await messages.first(from: 1)
            #expect(second.payload.string == "second")
            try await subscriber.acknowledge(packetIdentifier: try #require(second.packetIdentifier))

            try await publisher.disconnect()
            try await subscriber.disconnect()
        }
    }

    @Test(
        "manual acknowledgement at QoS 2: PUBREC on acknowledge, PUBCOMP on PUBREL",
        arguments: TestBrokerKind.allCases
    )
    func manualAcknowledgementQoS2(kind: TestBrokerKind) async throws {
        try await withBroker(kind) { broker in
            let topic = uniqueTopic("manual2")
            let subscriber = makeClient(broker) { $0.automaticAcknowledgement = false }
            try await subscriber.connect()
            let messages = StreamRecorder(subscriber.messages)
            let packets = StreamRecorder(subscriber.packets)
            try await subscriber.subscribe(topic, qos: .exactlyOnce)

            let publisher = makeClient(broker)
            try await publisher.connect()
            try await publisher.publish(topic, payload: "once", qos: .exactlyOnce)
            let message = try await messages.first()
            try await Task.sleep(for: .milliseconds(200))
            #expect(!packets.all.contains { if case .pubrel = $0 { true } else { false } })
            try await subscriber.acknowledge(packetIdentifier: try #require(message.packetIdentifier))
            try await packets.first { if case .pubrel = $0 { true } else { false } }
            try await publisher.disconnect()
            try await subscriber.disconnect()
        }
    }
}

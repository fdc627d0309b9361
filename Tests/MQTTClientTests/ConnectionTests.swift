import MQTTClient
import MQTTCore
import NIOCore
import Testing

@Suite("Connecting")
struct ConnectionTests {
    @Test(
        "connect, subscribe, publish and disconnect",
        arguments: TestBrokerKind.allCases,
        allPairs([MQTTProtocolVersion.v3_1_1, .v5], TestTransport.allCases)
    )
    func connectsAndExchangesMessages(kind: TestBrokerKind, setup: (MQTTProtocolVersion, TestTransport)) async throws {
        let (version, transport) = setup
        try await withBroker(kind) { broker in
            let client = makeClient(broker, version: version, transport: transport)
            let connAck = try await client.connect()
            #expect(connAck.reasonCode == .success)
            #expect(connAck.sessionPresent == false)
            #expect(client.isConnected)

            let messages = StreamRecorder(client.messages)
            let topic = uniqueTopic()
            let subAck = try await client.subscribe(topic, qos: .atLeastOnce)
            #expect(subAck.reasonCodes == [.grantedQoS1])
            let ack = try await client.publish(topic, payload: "hello", qos: .atLeastOnce)
            #expect(ack?.reasonCode == .success)

            let message = try await messages.first()
            #expect(message.topic == topic)
            #expect(message.payload.string == "hello")
            #expect(message.qos == .atLeastOnce)

            let unsubAck = try await client.unsubscribe([topic])
            if version == .v5 { #expect(unsubAck.reasonCodes == [.success]) }

            try await client.disconnect()
            #expect(!client.isConnected)
            #expect(client.lastCloseReason?.initiatedByClient == true)
            #expect(client.lastCloseReason?.error == nil)
        }
    }

    @Test("a CONNECT with an unsupported protocol level is refused with 0x84", arguments: TestBrokerKind.allCases)
    func refusedProtocolLevel(kind: TestBrokerKind) async throws {
        try await withBroker(kind) { broker in
            let client = makeClient(broker, version: .v5)
            // CONNECT "MQTT" level 6, clean start, keep alive 60, no properties, client id "bad".
            var connect = ByteBuffer()
            connect.writeBytes([0x10, 16, 0x00, 0x04])
            connect.writeString("MQTT")
            connect.writeBytes([0x06, 0x02, 0x00, 0x3C, 0x00, 0x00, 0x03])
            connect.writeString("bad")
            let error = await #expect(throws: MQTTClientError.self) {
                try await client.connect(sendingRawConnect: connect)
            }
            #expect(error?.code == .connectionRefused)
            #expect(error?.reasonCode == .unsupportedProtocolVersion)
            #expect(!client.isConnected)
        }
    }

    @Test(
        "refused credentials surface the CONNACK reason code, never the password",
        arguments: TestBrokerKind.allCases,
        [MQTTProtocolVersion.v3_1_1, .v5]
    )
    func refusedCredentials(kind: TestBrokerKind, version: MQTTProtocolVersion) async throws {
        var options = BrokerOptions()
        options.allowAnonymous = false
        try await withBroker(kind, options) { broker in
            let client = makeClient(broker, version: version) {
                $0.username = "device-7"
                $0.setPassword("s3cr3t-pa55")
            }
            let error = await #expect(throws: MQTTClientError.self) {
                try await client.connect()
            }
            #expect(error?.code == .connectionRefused)
            let reason = try #require(error?.reasonCode)
            #expect(reason == .notAuthorized || reason == .badUserNameOrPassword)
            let description = String(describing: error)
            #expect(!description.contains("s3cr3t"))
            #expect(description.contains("refused"))
        }
    }

    @Test(
        "a protocol violation makes the broker close the connection, and the client says so",
        arguments: TestBrokerKind.allCases
    )
    func serverClosesOnProtocolViolation(kind: TestBrokerKind) async throws {
        try await withBroker(kind) { broker in
            let client = makeClient(broker, version: .v5)
            try await client.connect()
            // A second CONNECT is a protocol error (MQTT 5 §3.1).
            try await client.send(.connect(ConnectPacket(clientIdentifier: "again")))
            let reason = await client.waitUntilClosed()
            #expect(!reason.initiatedByClient)
            #expect(reason.error != nil)
            #expect(!client.isConnected)
            if let serverReason = reason.serverReasonCode {
                #expect(serverReason == .protocolError)
                #expect(client.serverDisconnect?.reasonCode == .protocolError)
            }
        }
    }

    @Test("connecting to a port nobody listens on fails with connectionFailed")
    func connectionFailure() async throws {
        let port = try MosquittoFixture.freePort()
        let client = MQTTClient(configuration: .init(host: "127.0.0.1", port: port, clientIdentifier: uniqueClientID()))
        let error = await #expect(throws: MQTTClientError.self) {
            try await client.connect()
        }
        #expect(error?.code == .connectionFailed)
    }

    @Test("operations before connect fail with notConnected")
    func notConnected() async throws {
        let client = MQTTClient(configuration: .init(host: "127.0.0.1", clientIdentifier: uniqueClientID()))
        await #expect(throws: MQTTClientError.notConnected()) {
            try await client.publish("a/b", payload: "x", qos: .atLeastOnce)
        }
        await #expect(throws: MQTTClientError.notConnected()) {
            try await client.subscribe("a/b")
        }
    }

    @Test("connect twice fails with alreadyConnected", arguments: TestBrokerKind.allCases)
    func alreadyConnected(kind: TestBrokerKind) async throws {
        try await withBroker(kind) { broker in
            let client = makeClient(broker)
            try await client.connect()
            await #expect(throws: MQTTClientError.alreadyConnected()) {
                try await client.connect()
            }
            try await client.disconnect()
        }
    }

    @Test("packetBufferSize 0 turns the packets stream off; messages still flow", arguments: TestBrokerKind.allCases)
    func packetsStreamOff(kind: TestBrokerKind) async throws {
        try await withBroker(kind) { broker in
            let client = makeClient(broker) { $0.packetBufferSize = 0 }
            var iterator = client.packets.makeAsyncIterator()
            #expect(await iterator.next() == nil)
            try await client.connect()
            let messages = StreamRecorder(client.messages)
            let topic = uniqueTopic()
            try await client.subscribe(topic, qos: .atLeastOnce)
            try await client.publish(topic, payload: "x", qos: .atLeastOnce)
            #expect(try await messages.first().payload.string == "x")
            try await client.disconnect()
        }
    }
}

@Suite("Configuration")
struct ConfigurationTests {
    @Test("the configuration's description and mirror never show the password")
    func passwordRedacted() {
        var configuration = MQTTClient.Configuration(host: "broker.local", clientIdentifier: "device-1")
        configuration.username = "device-1"
        configuration.setPassword("hunter2-secret")
        let described = String(describing: configuration)
        #expect(described.contains("broker.local"))
        #expect(described.contains("<redacted>"))
        #expect(!described.contains("hunter2"))
        var dumped = ""
        dump(configuration, to: &dumped)
        #expect(!dumped.contains("hunter2"))
        #expect(!dumped.contains("104, 117"))  // the bytes of "hu"
    }
}

import MQTTClient
import MQTTCore
import NIOCore
import Testing

/// Behaviour that needs a server misbehaving on cue.
@Suite("Against a scripted server")
struct ScriptedServerTests {
    private func withServer(_ body: (ScriptedServer) async throws -> Void) async throws {
        let server = try await ScriptedServer.start()
        do {
            try await body(server)
            await server.stop()
        } catch {
            await server.stop()
            throw error
        }
    }

    private func client(
        _ server: ScriptedServer,
        configure: (inout MQTTClient.Configuration) -> Void = { _ in }
    ) -> MQTTClient {
        var configuration = MQTTClient.Configuration(
            host: server.host,
            port: server.port,
            clientIdentifier: uniqueClientID()
        )
        configuration.connectTimeout = .seconds(20)
        configure(&configuration)
        return MQTTClient(configuration: configuration)
    }

    /// Connects `client`, answering its CONNECT with `connAck`.
    private func connect(
        _ client: MQTTClient,
        to server: ScriptedServer,
        index: Int = 0,
        connAck: ConnAckPacket = ConnAckPacket()
    ) async throws -> ScriptedConnection {
        async let connected = client.connect()
        let connection = try await server.connection(index)
        try await connection.next(.connect)
        try await connection.send(.connack(connAck))
        _ = try await connected
        return connection
    }

    @Test("publishes beyond the server's receive maximum wait for a free slot instead of failing")
    func receiveMaximum() async throws {
        try await withServer { server in
            let client = client(server)
            let connection = try await connect(
                client,
                to: server,
                connAck: ConnAckPacket(properties: [.receiveMaximum(2)])
            )
            let results = StreamRecorder(
                AsyncStream<PublishAckPacket?> { continuation in
                    for index in 0..<5 {
                        Task {
                            let ack = try? await client.publish("t/\(index)", payload: "x", qos: .atLeastOnce)
                            continuation.yield(ack)
                        }
                    }
                }
            )
            try await connection.packets.first { publishPacket($0) != nil }
            try await Task.sleep(for: .milliseconds(200))
            var published = connection.all(.publish).compactMap(publishPacket)
            #expect(published.count == 2)

            try await connection.send(.puback(PublishAckPacket(packetIdentifier: published[0].packetIdentifier!)))
            try await results.wait(forCount: 1)
            try await Task.sleep(for: .milliseconds(200))
            published = connection.all(.publish).compactMap(publishPacket)
            #expect(published.count == 3)

            for publish in published.dropFirst() {
                try await connection.send(.puback(PublishAckPacket(packetIdentifier: publish.packetIdentifier!)))
            }
            try await connection.packets.wait(forCount: 1 + 5)  // CONNECT + 5 PUBLISH
            for publish in connection.all(.publish).compactMap(publishPacket).dropFirst(3) {
                try await connection.send(.puback(PublishAckPacket(packetIdentifier: publish.packetIdentifier!)))
            }
            let acks = try await results.wait(forCount: 5)
            #expect(acks.allSatisfy { $0?.reasonCode == .success })
            let identifiers = connection.all(.publish).compactMap { publishPacket($0)?.packetIdentifier }
            #expect(Set(identifiers).count == 5)
            try await client.disconnect()
        }
    }

    @Test("after reconnecting, unacknowledged QoS 1 and 2 publishes are re-sent with DUP, and PUBREL after PUBREC")
    func resendsAfterReconnect() async throws {
        try await withServer { server in
            let client = client(server) {
                $0.reconnect = .exponentialBackoff(initialDelay: .milliseconds(50), maximumDelay: .milliseconds(100))
            }
            let first = try await connect(client, to: server)
            let qos1 = StreamRecorder(
                AsyncStream<PublishAckPacket?> { continuation in
                    Task { continuation.yield(try? await client.publish("a/1", payload: "one", qos: .atLeastOnce)) }
                }
            )
            let qos2 = StreamRecorder(
                AsyncStream<PublishAckPacket?> { continuation in
                    Task { continuation.yield(try? await client.publish("a/2", payload: "two", qos: .exactlyOnce)) }
                }
            )
            try await first.packets.wait(forCount: 3)  // CONNECT + 2 PUBLISH
            let sent = first.all(.publish).compactMap(publishPacket)
            let qos2Publish = try #require(sent.first { $0.qos == .exactlyOnce })
            let qos1Publish = try #require(sent.first { $0.qos == .atLeastOnce })
            try await first.send(.pubrec(PublishAckPacket(packetIdentifier: qos2Publish.packetIdentifier!)))
            try await first.next(.pubrel)
            first.close()

            let second = try await server.connection(1)
            guard case .connect(let connect) = try await second.next(.connect) else { return }
            #expect(connect.cleanStart == false)
            try await second.send(.connack(ConnAckPacket(sessionPresent: true)))
            try await second.packets.wait(forCount: 3)
            let resentPublish = try #require(second.all(.publish).compactMap(publishPacket).first)
            #expect(resentPublish.dup)
            #expect(resentPublish.packetIdentifier == qos1Publish.packetIdentifier)
            #expect(resentPublish.topic == "a/1")
            guard case .pubrel(let pubrel) = try await second.next(.pubrel) else { return }
            #expect(pubrel.packetIdentifier == qos2Publish.packetIdentifier)

            try await second.send(.puback(PublishAckPacket(packetIdentifier: qos1Publish.packetIdentifier!)))
            try await second.send(.pubcomp(PublishAckPacket(packetIdentifier: qos2Publish.packetIdentifier!)))
            #expect(try await qos1.first()?.reasonCode == .success)
            #expect(try await qos2.first()?.packetIdentifier == qos2Publish.packetIdentifier)
            try await client.disconnect()
        }
    }

    @Test("server topic aliases resolve to the topic name; an unknown alias closes with 0x94")
    func inboundTopicAliases() async throws {
        try await withServer { server in
            let client = client(server) { $0.connectProperties.topicAliasMaximum = 4 }
            let messages = StreamRecorder(client.messages)
            let connection = try await connect(client, to: server)
            guard case .connect(let connect) = try await connection.next(.connect) else { return }
            #expect(connect.properties.topicAliasMaximum == 4)

            try await connection.send(
                .publish(
                    PublishPacket(
                        topic: "devices/7/telemetry",
                        payload: ByteBuffer(string: "1"),
                        properties: [.topicAlias(2)]
                    )
                )
            )
            try await connection.send(
                .publish(PublishPacket(topic: "", payload: ByteBuffer(string: "2"), properties: [.topicAlias(2)]))
            )
            let received = try await messages.wait(forCount: 2)
            #expect(received.map(\.topic) == ["devices/7/telemetry", "devices/7/telemetry"])

            try await connection.send(
                .publish(PublishPacket(topic: "", payload: ByteBuffer(string: "3"), properties: [.topicAlias(3)]))
            )
            guard case .disconnect(let disconnect) = try await connection.next(.disconnect) else { return }
            #expect(disconnect.reasonCode == .topicAliasInvalid)
            let reason = await client.waitUntilClosed()
            #expect(reason.error?.code == .protocolViolation)
            #expect(reason.error?.reasonCode == .topicAliasInvalid)
            #expect(messages.all.count == 2)
        }
    }

    @Test("the server's DISCONNECT reason code and reason string are kept after the close")
    func serverDisconnect() async throws {
        try await withServer { server in
            let client = client(server)
            let connection = try await connect(client, to: server)
            try await connection.send(
                .disconnect(DisconnectPacket(reasonCode: .protocolError, properties: [.reasonString("bad things")]))
            )
            connection.close()
            let reason = await client.waitUntilClosed()
            #expect(reason.serverReasonCode == .protocolError)
            #expect(reason.serverReasonString == "bad things")
            #expect(reason.error == MQTTClientError.serverDisconnected(.protocolError))
            #expect(client.serverDisconnect?.reasonCode == .protocolError)
        }
    }

    @Test("a server that stops answering PINGREQ is dropped after the ping timeout")
    func keepAliveTimeout() async throws {
        try await withServer { server in
            let client = client(server) {
                $0.keepAlive = .seconds(1)
                $0.pingTimeout = .milliseconds(500)
            }
            let connection = try await connect(client, to: server)
            try await connection.next(.pingreq, within: .seconds(15))
            let reason = await client.waitUntilClosed()
            #expect(reason.error?.code == .keepAliveTimeout)
        }
    }

    @Test("no CONNACK within the connect timeout fails with connectTimeout")
    func connectTimeout() async throws {
        try await withServer { server in
            let client = client(server) { $0.connectTimeout = .milliseconds(300) }
            let error = await #expect(throws: MQTTClientError.self) {
                try await client.connect()
            }
            #expect(error?.code == .connectTimeout)
            #expect(!client.isConnected)
        }
    }

    @Test("a QoS above the server's maximum QoS is refused before sending")
    func maximumQoS() async throws {
        try await withServer { server in
            let client = client(server)
            let connection = try await connect(
                client,
                to: server,
                connAck: ConnAckPacket(properties: [.maximumQoS(1), .retainAvailable(0)])
            )
            let qosError = await #expect(throws: MQTTClientError.self) {
                try await client.publish("t", payload: "x", qos: .exactlyOnce)
            }
            #expect(qosError?.code == .invalidArgument)
            let retainError = await #expect(throws: MQTTClientError.self) {
                try await client.publish("t", payload: "x", retain: true)
            }
            #expect(retainError?.code == .invalidArgument)
            #expect(connection.all(.publish).isEmpty)
            try await client.disconnect()
        }
    }

    @Test("manual acknowledgement: nothing is acknowledged until acknowledge(), and PUBREL always gets PUBCOMP")
    func manualAcknowledgementWireLevel() async throws {
        try await withServer { server in
            let client = client(server) { $0.automaticAcknowledgement = false }
            let messages = StreamRecorder(client.messages)
            let connection = try await connect(client, to: server)
            try await connection.send(
                .publish(
                    PublishPacket(
                        topic: "q/1",
                        payload: ByteBuffer(string: "1"),
                        qos: .atLeastOnce,
                        packetIdentifier: 10
                    )
                )
            )
            try await connection.send(
                .publish(
                    PublishPacket(
                        topic: "q/2",
                        payload: ByteBuffer(string: "2"),
                        qos: .exactlyOnce,
                        packetIdentifier: 11
                    )
                )
            )
            try await messages.wait(forCount: 2)
            try await Task.sleep(for: .milliseconds(200))
            #expect(connection.all(.puback).isEmpty)
            #expect(connection.all(.pubrec).isEmpty)

            try await client.acknowledge(packetIdentifier: 11, reasonCode: .success)
            guard case .pubrec(let pubrec) = try await connection.next(.pubrec) else { return }
            #expect(pubrec.packetIdentifier == 11)
            try await connection.send(.pubrel(PublishAckPacket(packetIdentifier: 11)))
            try await connection.next(.pubcomp)
            try await client.acknowledge(packetIdentifier: 10, reasonCode: .unspecifiedError)
            guard case .puback(let puback) = try await connection.next(.puback) else { return }
            #expect(puback.reasonCode == .unspecifiedError)
            try await client.disconnect()
            try await connection.next(.disconnect)
        }
    }

    @Test("sendRaw writes bytes untouched")
    func sendRaw() async throws {
        try await withServer { server in
            let client = client(server)
            let connection = try await connect(client, to: server)
            try await client.sendRaw(ByteBuffer(bytes: [0xC0, 0x00]))  // PINGREQ
            try await connection.next(.pingreq)
            try await client.disconnect()
        }
    }
}

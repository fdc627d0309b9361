import MQTTClient
import MQTTCore
import NIOCore
import NIOWebSocket
import Testing

@Suite("WebSocket transport")
struct WebSocketTransportTests {
    @Test("binary frames out; fragmented and packed frames in; ping answered with pong; close answered")
    func framing() async throws {
        let server = try await ScriptedWebSocketServer.start()
        do {
            var configuration = MQTTClient.Configuration(
                host: server.host,
                port: server.port,
                transport: .webSocket(path: "/mqtt", tls: nil),
                clientIdentifier: uniqueClientID()
            )
            configuration.connectTimeout = .seconds(20)
            let client = MQTTClient(configuration: configuration)
            let messages = StreamRecorder(client.messages)
            async let connected = client.connect()

            // CONNECT arrives in masked binary frames (the recorder unmasks them).
            let connectFrame = try await server.frames.first()
            #expect(connectFrame.opcode == .binary)
            #expect(server.receivedBytes.first == 0x10)

            // CONNACK split across a binary frame and a continuation frame.
            try await server.send(.binary, fin: false, [0x20, 0x03])
            try await server.send(.continuation, fin: true, [0x00, 0x00, 0x00])
            let connAck = try await connected
            #expect(connAck.reasonCode == .success)

            // Two PUBLISH packets in one frame, then one PUBLISH split over three frames.
            var packed = ByteBuffer()
            MQTTPacket.publish(PublishPacket(topic: "a", payload: ByteBuffer(string: "1"))).write(
                to: &packed,
                version: .v5
            )
            MQTTPacket.publish(PublishPacket(topic: "b", payload: ByteBuffer(string: "2"))).write(
                to: &packed,
                version: .v5
            )
            try await server.send(.binary, Array(packed.readableBytesView))
            var split = ByteBuffer()
            MQTTPacket.publish(PublishPacket(topic: "c", payload: ByteBuffer(string: "three"))).write(
                to: &split,
                version: .v5
            )
            let bytes = Array(split.readableBytesView)
            try await server.send(.binary, fin: false, Array(bytes[0..<2]))
            try await server.send(.continuation, fin: false, Array(bytes[2..<5]))
            try await server.send(.continuation, fin: true, Array(bytes[5...]))
            let received = try await messages.wait(forCount: 3)
            #expect(received.map(\.topic) == ["a", "b", "c"])
            #expect(received.map(\.payload.string) == ["1", "2", "three"])

            // Ping → pong with the same data.
            try await server.send(.ping, [0x68, 0x69])
            let pong = try await server.frames.first { $0.opcode == .pong }
            #expect(Array(pong.data.readableBytesView) == [0x68, 0x69])

            // Close → the client answers with a close frame and the connection ends.
            try await server.send(.connectionClose, [0x03, 0xE8])
            try await server.frames.first { $0.opcode == .connectionClose }
            let reason = await client.waitUntilClosed()
            #expect(!reason.initiatedByClient)
            #expect(!client.isConnected)
            await server.stop()
        } catch {
            await server.stop()
            throw error
        }
    }

    @Test("a server that refuses the upgrade gives webSocketUpgradeFailed")
    func upgradeRefused() async throws {
        let server = try await ScriptedWebSocketServer.start()
        var configuration = MQTTClient.Configuration(
            host: server.host,
            port: server.port,
            transport: .webSocket(path: "/not-mqtt", tls: nil),
            clientIdentifier: uniqueClientID()
        )
        configuration.connectTimeout = .seconds(20)
        let client = MQTTClient(configuration: configuration)
        let error = await #expect(throws: MQTTClientError.self) {
            try await client.connect()
        }
        #expect(error?.code == .webSocketUpgradeFailed)
        await server.stop()
    }
}

import MQTTClient
import MQTTCore
import NIOCore
import Synchronization
import Testing

@testable import MQTTBroker

/// Consumes messages published to `requests/...` and records them.
final class ConsumingTap: MQTTMessageTap {
    let consumed = Mutex<[String]>([])

    func inspect(_ message: MQTTTapMessage, from principal: MQTTPrincipal) -> MQTTTapDecision {
        guard message.topic.hasPrefix("requests/") else { return .accept }
        consumed.withLock { $0.append("\(principal.clientIdentifier):\(message.topic):\(String(buffer: message.payload))") }
        return .consume
    }
}

@Suite("Platform hooks: server-side disconnect, platform publish, consuming tap")
struct PlatformHooksTests {
    @Test("disconnect(where:) closes every matching client (MQTT 5 with the reason code), publishes their wills and leaves the rest")
    func disconnectWhereClosesMatchingClients() async throws {
        let broker = TestBroker()
        let (watcher, _) = try await broker.connect("watcher")
        try await watcher.subscribe("wills/#", qos: .atMostOnce)
        let v5 = try await broker.client()
        let will = ConnectPacket.Will(topic: "wills/a", payload: ByteBuffer(string: "a gone"), qos: .atMostOnce, retain: false)
        #expect(try await v5.connect("a", username: "revoked", will: will).reasonCode == .success)
        let (v311, _) = try await broker.connect("b", version: .v3_1_1, username: "revoked")
        let (kept, _) = try await broker.connect("c", username: "fine")
        let closed = await broker.broker.disconnect(where: { $0.username == "revoked" }, reasonCode: .administrativeAction, reason: "credential revoked")
        #expect(closed == 2)
        guard case .disconnect(let disconnect) = try await v5.next() else {
            Issue.record("expected DISCONNECT")
            return
        }
        #expect(disconnect.reasonCode == .administrativeAction)
        #expect(disconnect.properties.reasonString == "credential revoked")
        try await v5.expectClosed()
        try await v311.expectClosed()
        #expect(await kept.isActive)
        let published = try await watcher.nextPublish()
        #expect(published.topic == "wills/a" && published.payload.string == "a gone")
        #expect(await broker.broker.disconnect(where: { $0.username == "revoked" }, reason: "again") == 0)
    }

    @Test("disconnect(where:) reaches clients on every event loop at once")
    func disconnectWhereCoversEveryLoop() async throws {
        try await SocketBroker.with { fixture in
            var clients: [MQTTClient] = []
            for index in 0..<6 {
                let client = fixture.client { $0.username = index % 2 == 0 ? "victim" : "other" }
                _ = try await client.connect()
                clients.append(client)
            }
            let loops = Set(clients.compactMap { fixture.loopIndex(of: $0.configuration.clientIdentifier) })
            #expect(loops.count == fixture.loopCount)
            let closed = await fixture.broker.disconnect(where: { $0.username == "victim" }, reasonCode: .notAuthorized, reason: "revoked")
            #expect(closed == 3)
            for (index, client) in clients.enumerated() where index % 2 == 0 {
                try await eventually("client \(index) disconnected") { !client.isConnected }
                #expect(client.serverDisconnect?.reasonCode == .notAuthorized)
            }
            for (index, client) in clients.enumerated() where index % 2 == 1 {
                #expect(client.isConnected)
                try await client.disconnect()
            }
        }
    }

    @Test("the platform can publish into the broker: routed, retained, QoS kept")
    func platformPublishIsRouted() async throws {
        let broker = TestBroker()
        let (subscriber, _) = try await broker.connect("s")
        try await subscriber.subscribe("answers/#", qos: .atLeastOnce)
        try await broker.broker.publish(topic: "answers/1", payload: ByteBuffer(string: "hello"), qos: .atLeastOnce, retain: true)
        let message = try await subscriber.nextPublish()
        #expect(message.topic == "answers/1" && message.payload.string == "hello" && message.qos == .atLeastOnce)
        let (late, _) = try await broker.connect("late")
        try await late.subscribe("answers/1", qos: .atMostOnce)
        #expect(try await late.nextPublish().payload.string == "hello")
        await #expect(throws: MQTTError.self) {
            try await broker.broker.publish(topic: "answers/+", payload: ByteBuffer())
        }
    }

    @Test("a consumed message is acknowledged (QoS 1 and 2) but neither routed nor retained")
    func consumedMessagesAreAcknowledgedNotRouted() async throws {
        let tap = ConsumingTap()
        let broker = TestBroker(messageTap: tap)
        let (everything, _) = try await broker.connect("all")
        try await everything.subscribe("#", qos: .exactlyOnce)
        let (client, _) = try await broker.connect("p")
        #expect(try await client.publish("requests/one", "1", qos: .atLeastOnce)?.reasonCode == .success)
        let pubrec = try await client.publish("requests/two", "2", qos: .exactlyOnce, retain: true)
        #expect(pubrec?.reasonCode == .success)
        try await client.release(pubrec!.packetIdentifier)
        try await client.publish("other", "routed", qos: .atMostOnce)
        #expect(try await everything.nextPublish().topic == "other")
        try await everything.expectNothing()
        #expect(tap.consumed.withLock { $0 } == ["p:requests/one:1", "p:requests/two:2"])
        let (late, _) = try await broker.connect("late")
        try await late.subscribe("requests/#", qos: .atMostOnce)
        try await late.expectNothing()
    }
}

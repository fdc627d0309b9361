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

/// Counts its calls; denies `$`-topics and, for mapped principals, everything outside their
/// `$tenants/` subtree. Declares that unmapped principals may use every topic outside `$`.
final class CountingAuthorizer: MQTTAuthorizer {
    let calls = Mutex<[String]>([])

    func authorize(_ principal: MQTTPrincipal, _ action: MQTTAction, topic: String) -> MQTTAuthorization {
        calls.withLock { $0.append("\(principal.username ?? "-") \(action.rawValue) \(topic)") }
        if principal.topicMapping == nil { return topic.hasPrefix("$") ? .deny : .allow }
        return topic.hasPrefix("$tenants/t1/") ? .allow : .deny
    }

    var allowsUnmappedPrincipalsOutsideDollarTopics: Bool { true }
}

/// Counts its calls; declares it has nothing to do with unmapped principals' messages.
final class CountingTap: MQTTMessageTap {
    let calls = Mutex<[String]>([])

    func inspect(_ message: MQTTTapMessage, from principal: MQTTPrincipal) -> MQTTTapDecision {
        calls.withLock { $0.append("\(principal.username ?? "-") \(message.topic)") }
        return .accept
    }

    var inspectsUnmappedPrincipals: Bool { false }
}

@Suite("Hooks skipped per message where they say so")
struct HookFastPathTests {
    @Test("unmapped principals' publishes outside $-topics skip the authorizer and the tap; $-topics and mapped principals still go through both")
    func unmappedPublishesSkipTheHooks() async throws {
        let authorizer = CountingAuthorizer()
        let tap = CountingTap()
        let broker = TestBroker(authenticator: MappingAuthenticator(), authorizer: authorizer, messageTap: tap)
        let (watcher, _) = try await broker.connect("watcher")
        try await watcher.subscribe("plain/#", qos: .atLeastOnce)
        let (anonymous, _) = try await broker.connect("anon")
        for index in 0..<5 { _ = try await anonymous.publish("plain/\(index)", "x", qos: .atLeastOnce) }
        for _ in 0..<5 { _ = try await watcher.nextPublish() }
        #expect(authorizer.calls.withLock { $0.filter { $0.contains(" publish ") } }.isEmpty)
        #expect(tap.calls.withLock { $0 }.isEmpty)

        // A $-topic from an unmapped principal is still asked about, and refused.
        let refused = try await anonymous.publish("$tenants/t1/devices/d1/telemetry", "sneak", qos: .atLeastOnce)
        #expect(refused?.reasonCode == .notAuthorized)
        #expect(authorizer.calls.withLock { $0 } .contains("- publish $tenants/t1/devices/d1/telemetry"))

        // A mapped principal goes through both hooks for every publish.
        let (device, _) = try await broker.connect("dev", username: "device:t1:d1")
        _ = try await device.publish("devices/d1/telemetry", "ok", qos: .atLeastOnce)
        #expect(authorizer.calls.withLock { $0 }.contains("device:t1:d1 publish $tenants/t1/devices/d1/telemetry"))
        #expect(tap.calls.withLock { $0 } == ["device:t1:d1 $tenants/t1/devices/d1/telemetry"])
        let outside = try await device.publish("devices/d2/telemetry", "no", qos: .atLeastOnce)
        #expect(outside?.reasonCode == .notAuthorized)
    }
}

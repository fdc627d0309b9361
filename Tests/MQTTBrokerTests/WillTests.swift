import MQTTCore
import NIOCore
import Testing

@testable import MQTTBroker

@Suite("Wills and keep-alive")
struct WillTests {
    static func will(_ payload: String = "gone", delay: UInt32? = nil, retain: Bool = false) -> ConnectPacket.Will {
        var properties = MQTTProperties()
        if let delay { properties.willDelayInterval = delay }
        return ConnectPacket.Will(topic: "status/c", payload: ByteBuffer(string: payload), qos: .atLeastOnce, retain: retain, properties: properties)
    }

    @Test(arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func willIsPublishedWhenTheConnectionDrops(version: MQTTProtocolVersion) async throws {
        let broker = TestBroker()
        let (watcher, _) = try await broker.connect("w")
        try await watcher.subscribe("status/#", qos: .atLeastOnce)
        let (client, _) = try await broker.connect("c", version: version, will: Self.will())
        try await client.drop()
        let message = try await watcher.nextPublish()
        #expect(message.topic == "status/c" && message.payload.string == "gone" && message.qos == .atLeastOnce)
    }

    @Test func noWillAfterNormalDisconnect() async throws {
        let broker = TestBroker()
        let (watcher, _) = try await broker.connect("w")
        try await watcher.subscribe("status/#", qos: .atLeastOnce)
        let (client, _) = try await broker.connect("c", will: Self.will())
        try await client.disconnect()
        try await client.expectClosed()
        try await watcher.expectNothing()
    }

    @Test func disconnectWithWillMessagePublishesIt() async throws {
        let broker = TestBroker()
        let (watcher, _) = try await broker.connect("w")
        try await watcher.subscribe("status/#", qos: .atLeastOnce)
        let (client, _) = try await broker.connect("c", will: Self.will())
        try await client.disconnect(.disconnectWithWillMessage)
        #expect(try await watcher.nextPublish().payload.string == "gone")
    }

    @Test func willDelayWaitsAndIsCancelledByReconnect() async throws {
        let broker = TestBroker()
        let (watcher, _) = try await broker.connect("w")
        try await watcher.subscribe("status/#", qos: .atLeastOnce)
        let expiry: MQTTProperties = [.sessionExpiryInterval(300)]
        let (client, _) = try await broker.connect("c", cleanStart: false, will: Self.will(delay: 10), properties: expiry)
        try await client.drop()
        await broker.advance(by: .seconds(5))
        try await watcher.expectNothing()
        _ = try await broker.connect("c", cleanStart: false, properties: expiry)
        await broker.advance(by: .seconds(20))
        try await watcher.expectNothing()

        let (other, _) = try await broker.connect("d", cleanStart: false, will: Self.will("late", delay: 10), properties: expiry)
        try await other.drop()
        await broker.advance(by: .seconds(9))
        try await watcher.expectNothing()
        await broker.advance(by: .seconds(2))
        #expect(try await watcher.nextPublish().payload.string == "late")
    }

    @Test func willGoesWhenTheSessionEndsBeforeTheDelay() async throws {
        let broker = TestBroker()
        let (watcher, _) = try await broker.connect("w")
        try await watcher.subscribe("status/#", qos: .atLeastOnce)
        let (client, _) = try await broker.connect("c", cleanStart: false, will: Self.will(delay: 100), properties: [.sessionExpiryInterval(5)])
        try await client.drop()
        await broker.advance(by: .seconds(6))
        #expect(try await watcher.nextPublish().payload.string == "gone")
    }

    @Test func retainedWillIsRetained() async throws {
        let broker = TestBroker()
        let (client, _) = try await broker.connect("c", will: Self.will("offline", retain: true))
        try await client.drop()
        let (late, _) = try await broker.connect("late")
        try await late.subscribe("status/c", qos: .atLeastOnce)
        let message = try await late.nextPublish()
        #expect(message.retain && message.payload.string == "offline")
    }

    @Test(arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func keepAliveTimeoutClosesAndPublishesTheWill(version: MQTTProtocolVersion) async throws {
        let broker = TestBroker()
        let (watcher, _) = try await broker.connect("w")
        try await watcher.subscribe("status/#", qos: .atLeastOnce)
        let (client, _) = try await broker.connect("c", version: version, keepAlive: 10, will: Self.will())
        await broker.advance(by: .seconds(14))
        #expect(await client.isActive, "still within 1.5 × keep-alive")
        try await client.send(.pingreq)
        guard case .pingresp = try await client.next() else {
            Issue.record("expected PINGRESP")
            return
        }
        await broker.advance(by: .seconds(14))
        #expect(await client.isActive, "the PINGREQ restarted the keep-alive")
        await broker.advance(by: .seconds(2))
        if version == .v5 {
            guard case .disconnect(let disconnect) = try await client.next() else {
                Issue.record("expected DISCONNECT")
                return
            }
            #expect(disconnect.reasonCode == .keepAliveTimeout)
        }
        try await client.expectClosed()
        #expect(try await watcher.nextPublish().payload.string == "gone")
    }
}

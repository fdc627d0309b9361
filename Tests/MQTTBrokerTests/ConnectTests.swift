import MQTTCore
import NIOCore
import Testing

@testable import MQTTBroker

@Suite("CONNECT and CONNACK")
struct ConnectTests {
    @Test(arguments: [MQTTProtocolVersion.v3_1, .v3_1_1, .v5])
    func acceptsEveryProtocolVersion(version: MQTTProtocolVersion) async throws {
        let broker = TestBroker()
        let client = try await broker.client(version)
        let connack = try await client.connect("c1")
        #expect(connack.reasonCode == .success)
        #expect(connack.sessionPresent == false)
        #expect(broker.statistics.connections == 1)
    }

    @Test func announcesLimitsInMQTT5Connack() async throws {
        let broker = TestBroker { config in
            config.limits.receiveMaximum = 77
            config.limits.topicAliasMaximum = 9
            config.limits.maximumPacketSize = 4096
            config.features.maximumQoS = .atLeastOnce
            config.features.retainAvailable = false
        }
        let (_, connack) = try await broker.connect("c1")
        #expect(connack.properties.receiveMaximum == 77)
        #expect(connack.properties.topicAliasMaximum == 9)
        #expect(connack.properties.maximumPacketSize == 4096)
        #expect(connack.properties.maximumQoS == 1)
        #expect(connack.properties.retainAvailable == 0)
    }

    @Test func assignsClientIdentifierForEmptyOne() async throws {
        let broker = TestBroker()
        let (_, connack) = try await broker.connect("")
        let assigned = try #require(connack.properties.assignedClientIdentifier)
        #expect(!assigned.isEmpty)
        let (_, other) = try await broker.connect("")
        #expect(other.properties.assignedClientIdentifier != assigned)
    }

    @Test func refusesEmptyIdentifierWithoutCleanSessionIn311() async throws {
        let broker = TestBroker()
        let client = try await broker.client(.v3_1_1)
        let connack = try await client.connect("", cleanStart: false)
        #expect(connack.reasonCode == .clientIdentifierNotValid)
        try await client.expectClosed()
    }

    @Test func refusesOverlongClientIdentifier() async throws {
        let broker = TestBroker { $0.limits.maximumClientIdLength = 8 }
        let client = try await broker.client(.v5)
        let connack = try await client.connect("123456789")
        #expect(connack.reasonCode == .clientIdentifierNotValid)
        #expect(connack.properties.reasonString != nil)
        try await client.expectClosed()
    }

    @Test func unsupportedProtocolLevelGetsReturnCode1() async throws {
        let broker = TestBroker()
        let client = try await broker.client(.v3_1_1)
        // CONNECT "MQTT" level 6.
        try await client.sendRaw([0x10, 0x0C, 0x00, 0x04, 0x4D, 0x51, 0x54, 0x54, 0x06, 0x02, 0x00, 0x3C, 0x00, 0x00])
        guard case .connack(let connack) = try await client.next() else {
            Issue.record("expected CONNACK")
            return
        }
        #expect(connack.reasonCode == .unsupportedProtocolVersion)
        try await client.expectClosed()
    }

    @Test func malformedMQTT5ConnectGetsConnack0x81() async throws {
        let broker = TestBroker()
        let client = try await broker.client(.v5)
        // MQTT 5 CONNECT with the reserved connect flag set.
        try await client.sendRaw([0x10, 0x0D, 0x00, 0x04, 0x4D, 0x51, 0x54, 0x54, 0x05, 0x03, 0x00, 0x3C, 0x00, 0x00, 0x00])
        guard case .connack(let connack) = try await client.next() else {
            Issue.record("expected CONNACK")
            return
        }
        #expect(connack.reasonCode == .malformedPacket)
        try await client.expectClosed()
    }

    @Test func firstPacketMustBeConnect() async throws {
        let broker = TestBroker()
        let client = try await broker.client(.v3_1_1)
        try await client.send(.pingreq)
        try await client.expectClosed()
        #expect(try await client.drain().isEmpty)
    }

    @Test func secondConnectIsAProtocolError() async throws {
        let broker = TestBroker()
        let (client, _) = try await broker.connect("c1")
        try await client.send(.connect(ConnectPacket(clientIdentifier: "c1")))
        guard case .disconnect(let disconnect) = try await client.next() else {
            Issue.record("expected DISCONNECT")
            return
        }
        #expect(disconnect.reasonCode == .protocolError)
        try await client.expectClosed()
    }

    @Test func closesConnectionsThatNeverSendConnect() async throws {
        let broker = TestBroker { $0.limits.connectTimeout = 5 }
        let client = try await broker.client(.v5)
        await broker.advance(by: .seconds(4))
        #expect(await client.isActive)
        await broker.advance(by: .seconds(2))
        try await client.expectClosed()
    }

    @Test func refusesConnectionsOverTheLimit() async throws {
        let broker = TestBroker { $0.limits.maximumConnections = 2 }
        _ = try await broker.connect("a")
        _ = try await broker.connect("b")
        let third = try await broker.client(.v5)
        let connack = try await third.connect("c")
        #expect(connack.reasonCode == .serverBusy)
        try await third.expectClosed()
    }

    @Test func authenticatorRefusalReachesTheClient() async throws {
        struct Refuser: MQTTAuthenticator {
            func authenticate(_ request: MQTTAuthenticationRequest) async -> MQTTAuthenticationResult {
                request.username == "good" ? .accept(MQTTPrincipal(clientIdentifier: request.clientIdentifier)) : .refuse(.badUserNameOrPassword, reason: "no")
            }
        }
        let broker = TestBroker(authenticator: Refuser())
        let v5 = try await broker.client(.v5)
        #expect(try await v5.connect("x", username: "bad").reasonCode == .badUserNameOrPassword)
        try await v5.expectClosed()
        let v3 = try await broker.client(.v3_1_1)
        let connack = try await v3.connect("y", username: "bad")
        #expect(connack.reasonCode.connectReturnCode == 0x04)
        let good = try await broker.client(.v3_1_1)
        #expect(try await good.connect("z", username: "good").reasonCode == .success)
    }

    @Test func extendedAuthenticationIsRefusedCleanly() async throws {
        let broker = TestBroker()
        let client = try await broker.client(.v5)
        let connack = try await client.connect("x", properties: [.authenticationMethod("SCRAM-SHA-1")])
        #expect(connack.reasonCode == .badAuthenticationMethod)
    }

    @Test func serverKeepAliveOverridesLongKeepAlive() async throws {
        let broker = TestBroker { $0.limits.maximumKeepAlive = 30 }
        let (_, connack) = try await broker.connect("c", keepAlive: 300)
        #expect(connack.properties.serverKeepAlive == 30)
        let (_, none) = try await broker.connect("d", keepAlive: 20)
        #expect(none.properties.serverKeepAlive == nil)
    }

    @Test func shutdownTellsMQTT5ClientsWhy() async throws {
        let broker = TestBroker()
        let (v5, _) = try await broker.connect("a")
        let (v3, _) = try await broker.connect("b", version: .v3_1_1)
        await broker.shutdown()
        guard case .disconnect(let disconnect) = try await v5.next() else {
            Issue.record("expected DISCONNECT")
            return
        }
        #expect(disconnect.reasonCode == .serverShuttingDown)
        try await v5.expectClosed()
        try await v3.expectClosed()
        #expect(try await v3.drain().isEmpty)
    }
}

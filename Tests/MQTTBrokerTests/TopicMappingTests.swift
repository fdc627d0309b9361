import MQTTCore
import NIOCore
import Synchronization
import Testing

@testable import MQTTBroker

/// Gives principals Meridian's mapping from the user name: `device:T:D` is device D of tenant
/// T (`devices/D/...` and `v1/devices/me/...` are `$tenants/T/devices/D/...`), `user:T` a user
/// of tenant T (`devices/...` is `$tenants/T/devices/...`); anything else is unmapped.
struct MappingAuthenticator: MQTTAuthenticator {
    static func mapping(for username: String?) -> MQTTTopicMapping? {
        let parts = (username ?? "").split(separator: ":").map(String.init)
        switch parts.first {
        case "device" where parts.count == 3:
            let inside = "$tenants/\(parts[1])/devices/\(parts[2])"
            return MQTTTopicMapping([
                MQTTTopicRewrite(external: "devices/\(parts[2])", internal: inside),
                MQTTTopicRewrite(external: "v1/devices/me", internal: inside),
            ])
        case "user" where parts.count == 2:
            return MQTTTopicMapping([MQTTTopicRewrite(external: "devices", internal: "$tenants/\(parts[1])/devices")])
        default:
            return nil
        }
    }

    func authenticate(_ request: MQTTAuthenticationRequest) async -> MQTTAuthenticationResult {
        authenticateImmediately(request)!
    }

    func authenticateImmediately(_ request: MQTTAuthenticationRequest) -> MQTTAuthenticationResult? {
        .accept(
            MQTTPrincipal(
                clientIdentifier: request.clientIdentifier, username: request.username, topicMapping: Self.mapping(for: request.username)
            )
        )
    }
}

/// Records what the authorizer is asked, and allows it.
final class RecordingAuthorizer: MQTTAuthorizer {
    let asked = Mutex<[String]>([])

    func authorize(_ principal: MQTTPrincipal, _ action: MQTTAction, topic: String) -> MQTTAuthorization {
        asked.withLock { $0.append("\(action.rawValue) \(topic)") }
        return .allow
    }
}

@Suite("Per-principal topic mapping")
struct TopicMappingTests {
    @Test("a rewrite applies to whole leading levels only")
    func rewriteMatchesWholeLevels() {
        let rewrite = MQTTTopicRewrite(external: "devices/d1", internal: "$tenants/t/devices/d1")
        #expect(rewrite.toInternal("devices/d1") == "$tenants/t/devices/d1")
        #expect(rewrite.toInternal("devices/d1/telemetry") == "$tenants/t/devices/d1/telemetry")
        #expect(rewrite.toInternal("devices/d1/#") == "$tenants/t/devices/d1/#")
        #expect(rewrite.toInternal("devices/d10/telemetry") == nil)
        #expect(rewrite.toInternal("devices/+/telemetry") == nil)
        #expect(rewrite.toInternal("#") == nil)
        #expect(rewrite.toExternal("$tenants/t/devices/d1/rpc/1") == "devices/d1/rpc/1")
        #expect(rewrite.toExternal("$tenants/t/devices/d12/rpc/1") == nil)
    }

    @Test("tenants are isolated: a wildcard subscriber sees only its own tenant's devices, unmapped clients none")
    func tenantsAreIsolatedEvenWithWildcards() async throws {
        let broker = TestBroker(authenticator: MappingAuthenticator())
        let (userT1, _) = try await broker.connect("u1", username: "user:t1")
        let (userT2, _) = try await broker.connect("u2", username: "user:t2")
        let (anonymous, _) = try await broker.connect("anon")
        try await userT1.subscribe("devices/+/telemetry", qos: .atMostOnce)
        try await userT2.subscribe("devices/+/telemetry", qos: .atMostOnce)
        _ = try await anonymous.subscribe([.init("#", qos: .atMostOnce), .init("+/+/+", qos: .atMostOnce), .init("devices/+/telemetry", qos: .atMostOnce)])
        let (device, _) = try await broker.connect("d1", username: "device:t1:d1")
        try await device.publish("v1/devices/me/telemetry", "tb", qos: .atMostOnce)
        try await device.publish("devices/d1/telemetry", "native", qos: .atMostOnce)
        let first = try await userT1.nextPublish()
        let second = try await userT1.nextPublish()
        #expect(first.topic == "devices/d1/telemetry" && first.payload.string == "tb")
        #expect(second.topic == "devices/d1/telemetry" && second.payload.string == "native")
        try await userT2.expectNothing()
        try await anonymous.expectNothing()
    }

    @Test("outbound names follow the filter form the receiving subscription used")
    func outboundNamesFollowTheSubscriptionsForm() async throws {
        let broker = TestBroker(authenticator: MappingAuthenticator())
        let (thingsboard, _) = try await broker.connect("d1-tb", username: "device:t1:d1")
        let (native, _) = try await broker.connect("d1-native", username: "device:t1:d1")
        try await thingsboard.subscribe("v1/devices/me/rpc/request/+", qos: .atLeastOnce)
        try await native.subscribe("devices/d1/rpc/request/+", qos: .atLeastOnce)
        let (user, _) = try await broker.connect("u1", username: "user:t1")
        try await user.publish("devices/d1/rpc/request/1", "{}", qos: .atLeastOnce)
        #expect(try await thingsboard.nextPublish().topic == "v1/devices/me/rpc/request/1")
        #expect(try await native.nextPublish().topic == "devices/d1/rpc/request/1")
    }

    @Test("the authorizer sees internal names, for publishes, subscriptions, shared filters and wills")
    func authorizerSeesInternalNames() async throws {
        let authorizer = RecordingAuthorizer()
        let broker = TestBroker(authenticator: MappingAuthenticator(), authorizer: authorizer)
        let client = try await broker.client()
        let will = ConnectPacket.Will(topic: "v1/devices/me/status", payload: ByteBuffer(string: "gone"), qos: .atMostOnce, retain: false)
        let connack = try await client.connect("d1", username: "device:t1:d1", will: will)
        #expect(connack.reasonCode == .success)
        _ = try await client.subscribe([.init("$share/g/devices/d1/cmd/#", qos: .atMostOnce), .init("#", qos: .atMostOnce)])
        try await client.publish("devices/d1/x", "1", qos: .atLeastOnce)
        #expect(
            authorizer.asked.withLock { $0 } == [
                "publish $tenants/t1/devices/d1/status",
                "subscribe $tenants/t1/devices/d1/cmd/#",
                "subscribe #",
                "publish $tenants/t1/devices/d1/x",
            ]
        )
    }

    @Test("shared subscriptions, unsubscribe and wills work with mapped names")
    func sharedUnsubscribeAndWill() async throws {
        let broker = TestBroker(authenticator: MappingAuthenticator())
        let (user, _) = try await broker.connect("u1", username: "user:t1")
        try await user.subscribe("$share/workers/devices/+/status", qos: .atMostOnce)
        let device = try await broker.client()
        let will = ConnectPacket.Will(topic: "v1/devices/me/status", payload: ByteBuffer(string: "offline"), qos: .atMostOnce, retain: false)
        #expect(try await device.connect("d1", username: "device:t1:d1", will: will).reasonCode == .success)
        try await device.publish("devices/d1/status", "online", qos: .atMostOnce)
        #expect(try await user.nextPublish().topic == "devices/d1/status")
        try await device.drop()
        let last = try await user.nextPublish()
        #expect(last.topic == "devices/d1/status" && last.payload.string == "offline")
        let unsuback = try await user.unsubscribe(["$share/workers/devices/+/status"])
        #expect(unsuback.reasonCodes == [.success])
        let (again, _) = try await broker.connect("d1", username: "device:t1:d1")
        try await again.publish("devices/d1/status", "online", qos: .atMostOnce)
        try await user.expectNothing()
    }

    @Test("retained messages reach later subscribers under their own names")
    func retainedMessagesUseTheSubscribersNames() async throws {
        let broker = TestBroker(authenticator: MappingAuthenticator())
        let (device, _) = try await broker.connect("d1", username: "device:t1:d1")
        try await device.publish("v1/devices/me/attributes", "{\"fw\":1}", qos: .atLeastOnce, retain: true)
        let (native, _) = try await broker.connect("d1-native", username: "device:t1:d1")
        try await native.subscribe("devices/d1/attributes", qos: .atLeastOnce)
        #expect(try await native.nextPublish().topic == "devices/d1/attributes")
        let (user, _) = try await broker.connect("u1", username: "user:t1")
        try await user.subscribe("devices/#", qos: .atLeastOnce)
        #expect(try await user.nextPublish().topic == "devices/d1/attributes")
        let (otherTenant, _) = try await broker.connect("u2", username: "user:t2")
        try await otherTenant.subscribe("devices/#", qos: .atLeastOnce)
        try await otherTenant.expectNothing()
    }

    @Test("outbound topic aliases apply to the name the client sees")
    func outboundAliasesUseExternalNames() async throws {
        let broker = TestBroker(authenticator: MappingAuthenticator())
        let device = try await broker.client()
        let connack = try await device.connect("d1", username: "device:t1:d1", properties: [.topicAliasMaximum(5)])
        #expect(connack.reasonCode == .success)
        try await device.subscribe("v1/devices/me/rpc/request/+", qos: .atMostOnce)
        let (user, _) = try await broker.connect("u1", username: "user:t1")
        try await user.publish("devices/d1/rpc/request/1", "a", qos: .atMostOnce)
        try await user.publish("devices/d1/rpc/request/1", "b", qos: .atMostOnce)
        let first = try await device.nextPublish()
        let second = try await device.nextPublish()
        #expect(first.topic == "v1/devices/me/rpc/request/1")
        #expect(first.properties.topicAlias == 1)
        #expect(second.topic == "" && second.properties.topicAlias == 1)
    }

    @Test("a persistent session keeps the names its client subscribed with across a restart")
    func mappingSurvivesARestart() async throws {
        let store = MemorySessionStore()
        do {
            let broker = TestBroker(authenticator: MappingAuthenticator(), store: store)
            let (device, _) = try await broker.connect("d1", version: .v3_1_1, cleanStart: false, username: "device:t1:d1")
            try await device.subscribe("v1/devices/me/rpc/request/+", qos: .atLeastOnce)
            try await device.drop()
            let (user, _) = try await broker.connect("u1", username: "user:t1")
            try await user.publish("devices/d1/rpc/request/7", "queued", qos: .atLeastOnce)
        }
        let broker = TestBroker(authenticator: MappingAuthenticator(), store: store)
        try await broker.broker.recover()
        let (device, connack) = try await broker.connect("d1", version: .v3_1_1, cleanStart: false, username: "device:t1:d1")
        #expect(connack.sessionPresent)
        let queued = try await device.nextPublish()
        #expect(queued.topic == "v1/devices/me/rpc/request/7")
        try await device.send(.puback(PublishAckPacket(packetIdentifier: queued.packetIdentifier!)))
        let (user, _) = try await broker.connect("u1", username: "user:t1")
        try await user.publish("devices/d1/rpc/request/8", "live", qos: .atLeastOnce)
        #expect(try await device.nextPublish().topic == "v1/devices/me/rpc/request/8")
    }
}

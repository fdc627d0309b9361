import Foundation
import Logging
import MQTTBroker
import MQTTClient
import MQTTCore
import MeridianCore
import NIOCore
import Synchronization
import Testing

@testable import MeridianServer

/// A logger that drops everything (the denials would flood the test output).
let quietLogger: Logger = {
    var logger = Logger(label: "access-tests")
    logger.logLevel = .critical
    return logger
}()

@Suite("MQTT access: authorizer decisions")
struct AccessAuthorizerTests {
    static let device = AccessPrincipal.device(
        DeviceIdentity(deviceID: "d1", tenantID: "t1", credentialID: "c1", credentialType: .token), clientIdentifier: "d1", username: nil
    )
    static let viewer = AccessPrincipal.member(kind: .user, tenantID: "t1", role: .viewer, id: "u1", clientIdentifier: "u1", username: "alice")
    static let operatorKey = AccessPrincipal.member(kind: .apiKey, tenantID: "t1", role: .operator, id: "k1", clientIdentifier: "k1", username: nil)
    static let provisioning = AccessPrincipal.provisioning(clientIdentifier: "p", connectionKey: "abc")
    static let anonymous = AccessPrincipal.anonymous(clientIdentifier: "a")

    struct Case: Sendable, CustomTestStringConvertible {
        var who: String
        var principal: MQTTPrincipal
        var action: MQTTAction
        var topic: String
        var allowed: Bool
        var testDescription: String { "\(who) \(action.rawValue) \(topic) → \(allowed ? "allow" : "deny")" }
    }

    static let cases: [Case] = [
        // A device: its own subtree only.
        Case(who: "device", principal: device, action: .publish, topic: "$tenants/t1/devices/d1/telemetry", allowed: true),
        Case(who: "device", principal: device, action: .subscribe, topic: "$tenants/t1/devices/d1/rpc/request/+", allowed: true),
        Case(who: "device", principal: device, action: .subscribe, topic: "$tenants/t1/devices/d1/#", allowed: true),
        Case(who: "device", principal: device, action: .subscribe, topic: "#", allowed: false),
        Case(who: "device", principal: device, action: .subscribe, topic: "+/devices/d1/telemetry", allowed: false),
        Case(who: "device", principal: device, action: .subscribe, topic: "$SYS/#", allowed: false),
        Case(who: "device", principal: device, action: .subscribe, topic: "$tenants/#", allowed: false),
        Case(who: "device", principal: device, action: .subscribe, topic: "$tenants/t1/devices/+/telemetry", allowed: false),
        Case(who: "device", principal: device, action: .publish, topic: "$tenants/t1/devices/d2/telemetry", allowed: false),
        Case(who: "device", principal: device, action: .publish, topic: "$tenants/t1/devices/d10/telemetry", allowed: false),
        Case(who: "device", principal: device, action: .publish, topic: "$tenants/t2/devices/d1/telemetry", allowed: false),
        Case(who: "device", principal: device, action: .publish, topic: "devices/d2/telemetry", allowed: false),
        Case(who: "device", principal: device, action: .publish, topic: "anything", allowed: false),
        // Users and API keys: their tenant's devices; publishing needs operator.
        Case(who: "viewer", principal: viewer, action: .subscribe, topic: "$tenants/t1/devices/+/telemetry", allowed: true),
        Case(who: "viewer", principal: viewer, action: .subscribe, topic: "$tenants/t1/devices/#", allowed: true),
        Case(who: "viewer", principal: viewer, action: .publish, topic: "$tenants/t1/devices/d1/rpc/request/1", allowed: false),
        Case(who: "viewer", principal: viewer, action: .subscribe, topic: "$tenants/t2/devices/#", allowed: false),
        Case(who: "viewer", principal: viewer, action: .subscribe, topic: "#", allowed: false),
        Case(who: "viewer", principal: viewer, action: .subscribe, topic: "$tenants/+/devices/#", allowed: false),
        Case(who: "operator key", principal: operatorKey, action: .publish, topic: "$tenants/t1/devices/d1/rpc/request/1", allowed: true),
        Case(who: "operator key", principal: operatorKey, action: .publish, topic: "$tenants/t2/devices/d1/rpc/request/1", allowed: false),
        Case(who: "operator key", principal: operatorKey, action: .publish, topic: "$SYS/broker/x", allowed: false),
        // Provisioning: its own request and response topics only.
        Case(who: "provisioning", principal: provisioning, action: .publish, topic: "$provision/abc/request", allowed: true),
        Case(who: "provisioning", principal: provisioning, action: .subscribe, topic: "$provision/abc/response", allowed: true),
        Case(who: "provisioning", principal: provisioning, action: .subscribe, topic: "$provision/+/response", allowed: false),
        Case(who: "provisioning", principal: provisioning, action: .publish, topic: "$provision/other/request", allowed: false),
        Case(who: "provisioning", principal: provisioning, action: .subscribe, topic: "#", allowed: false),
        Case(who: "provisioning", principal: provisioning, action: .publish, topic: "$tenants/t1/devices/d1/telemetry", allowed: false),
        // Anonymous (auth.allow_anonymous): everything but the platform's topics.
        Case(who: "anonymous", principal: anonymous, action: .subscribe, topic: "#", allowed: true),
        Case(who: "anonymous", principal: anonymous, action: .publish, topic: "sensors/1", allowed: true),
        Case(who: "anonymous", principal: anonymous, action: .publish, topic: "$tenants/t1/devices/d1/telemetry", allowed: false),
        Case(who: "anonymous", principal: anonymous, action: .subscribe, topic: "$tenants/#", allowed: false),
        Case(who: "anonymous", principal: anonymous, action: .subscribe, topic: "$provision/#", allowed: false),
        // A principal the integration did not make.
        Case(who: "unknown", principal: MQTTPrincipal(clientIdentifier: "x"), action: .subscribe, topic: "a", allowed: false),
    ]

    @Test("each kind of principal may reach exactly its own topics", arguments: cases)
    func decision(_ test: Case) {
        let authorizer = RegistryAuthorizer(logger: quietLogger)
        #expect(authorizer.authorize(test.principal, test.action, topic: test.topic) == (test.allowed ? .allow : .deny))
    }

    @Test("a device's native and ThingsBoard topics are one internal subtree")
    func deviceMapping() throws {
        let mapping = try #require(Self.device.topicMapping)
        #expect(mapping.toInternal("devices/d1/telemetry").topic == "$tenants/t1/devices/d1/telemetry")
        #expect(mapping.toInternal("v1/devices/me/telemetry").topic == "$tenants/t1/devices/d1/telemetry")
        #expect(mapping.toInternal("devices/d2/telemetry").rewrite == nil)
        let member = try #require(Self.viewer.topicMapping)
        #expect(member.toInternal("devices/+/telemetry").topic == "$tenants/t1/devices/+/telemetry")
    }
}

@Suite("MQTT access: authentication against the registry")
struct AccessAuthenticationTests {
    static func authenticator(_ registry: FakeAccessRegistry, allowAnonymous: Bool = false, cache: AuthenticationCache = .init()) -> RegistryAuthenticator {
        RegistryAuthenticator(
            registry: registry, cache: cache, allowAnonymous: allowAnonymous, certificateMapping: .fingerprint,
            authorities: CertificateAuthorities(),
            lastSeen: LastSeenRecorder(logger: quietLogger) { devices, time in try await registry.markSeen(deviceIDs: devices, at: time) },
            logger: quietLogger
        )
    }

    static func request(username: String?, password: String?, certificate: MQTTPeerCertificate? = nil) -> MQTTAuthenticationRequest {
        MQTTAuthenticationRequest(
            clientIdentifier: "client", username: username, password: password.map { ByteBuffer(string: $0) }, protocolVersion: .v5,
            remoteAddress: nil, transport: certificate == nil ? .tcp : .tls, certificate: certificate
        )
    }

    static func principal(_ result: MQTTAuthenticationResult?) -> MQTTPrincipal? {
        if case .accept(let principal) = result { return principal }
        return nil
    }

    static func refusal(_ result: MQTTAuthenticationResult?) -> ReasonCode? {
        if case .refuse(let code, _) = result { return code }
        return nil
    }

    @Test("tokens, device passwords, certificates, API keys and users each authenticate as the right principal")
    func methods() async throws {
        let registry = FakeAccessRegistry()
        registry.addToken("token-0123456789abcdef", device: "d1", credential: "c1")
        registry.state.withLock { state in
            state.passwords["truck-7"] = ("s3cret-pass", DeviceIdentity(deviceID: "d2", tenantID: "t1", credentialID: "c2", credentialType: .password))
            state.certificates["ab12"] = DeviceIdentity(deviceID: "d3", tenantID: "t2", credentialID: "c3", credentialType: .certificate)
            let user = User(id: "u1", username: "alice", passwordHash: "-", createdAt: Date())
            state.users["alice"] = ("wonderland", LoginResult(user: user, memberships: [Membership(userID: "u1", tenantID: "t1", role: .viewer)]))
        }
        registry.addAPIKey("mk_operatorkey", id: "k1", role: .operator)
        let auth = Self.authenticator(registry)

        let token = try #require(Self.principal(await auth.authenticate(Self.request(username: "token-0123456789abcdef", password: nil))))
        #expect(token.attributes["device.id"] == "d1" && token.attributes["credential.id"] == "c1")
        // ThingsBoard devices may send any password with the token.
        let tokenWithPassword = Self.principal(await auth.authenticate(Self.request(username: "token-0123456789abcdef", password: "x")))
        #expect(tokenWithPassword?.attributes["device.id"] == "d1")
        let password = try #require(Self.principal(await auth.authenticate(Self.request(username: "truck-7", password: "s3cret-pass"))))
        #expect(password.attributes["device.id"] == "d2")
        let certificate = MQTTPeerCertificate(subject: "CN=d3", commonName: "d3", subjectAlternativeNames: [], sha256Fingerprint: "ab12", der: [1])
        let byCertificate = try #require(Self.principal(await auth.authenticate(Self.request(username: nil, password: nil, certificate: certificate))))
        #expect(byCertificate.attributes["device.id"] == "d3" && byCertificate.attributes["tenant.id"] == "t2")
        let key = try #require(Self.principal(await auth.authenticate(Self.request(username: "anything", password: "mk_operatorkey"))))
        #expect(key.attributes["api_key.id"] == "k1" && key.attributes["access.publish"] == "$tenants/t1/devices")
        let user = try #require(Self.principal(await auth.authenticate(Self.request(username: "alice", password: "wonderland"))))
        #expect(user.attributes["user.id"] == "u1" && user.attributes["access.role"] == "viewer" && user.attributes["access.publish"] == nil)
        let provisioning = try #require(Self.principal(auth.authenticateImmediately(Self.request(username: "provision", password: nil))))
        #expect(provisioning.attributes["access.kind"] == "provision")
    }

    @Test("unknown credentials get 0x86, missing ones 0x87, anonymous only when allowed, registry failure 0x88")
    func refusals() async throws {
        let registry = FakeAccessRegistry()
        let auth = Self.authenticator(registry)
        #expect(Self.refusal(await auth.authenticate(Self.request(username: "nobody-0123456789abc", password: nil))) == .badUserNameOrPassword)
        #expect(Self.refusal(await auth.authenticate(Self.request(username: "alice", password: "wrong"))) == .badUserNameOrPassword)
        #expect(Self.refusal(await auth.authenticate(Self.request(username: "x", password: "mk_unknown"))) == .badUserNameOrPassword)
        #expect(Self.refusal(await auth.authenticate(Self.request(username: nil, password: nil))) == .notAuthorized)
        let anonymous = Self.principal(await Self.authenticator(registry, allowAnonymous: true).authenticate(Self.request(username: nil, password: nil)))
        #expect(anonymous?.attributes["access.kind"] == "anonymous")
        // A verified certificate that names no device (e.g. from tls.client_ca): refused, or
        // anonymous where anonymous clients are allowed — and not cached as such.
        let stranger = MQTTPeerCertificate(subject: "CN=x", commonName: "x", subjectAlternativeNames: [], sha256Fingerprint: "cd34", der: [2])
        let certificateOnly = Self.request(username: nil, password: nil, certificate: stranger)
        #expect(Self.refusal(await auth.authenticate(certificateOnly)) == .badUserNameOrPassword)
        let open = Self.authenticator(registry, allowAnonymous: true)
        #expect(Self.principal(await open.authenticate(certificateOnly))?.attributes["access.kind"] == "anonymous")
        #expect(open.authenticateImmediately(certificateOnly) == nil)
        registry.state.withLock { $0.failing = true }
        #expect(Self.refusal(await auth.authenticate(Self.request(username: "token-0123456789abcdef", password: nil))) == .serverUnavailable)
    }

    @Test("a repeated authentication is answered from the cache, until the registry reports a revocation")
    func cacheAndInvalidation() async throws {
        let registry = FakeAccessRegistry()
        registry.addToken("token-0123456789abcdef", device: "d1", credential: "c1")
        registry.addAPIKey("mk_key", id: "k1", role: .viewer)
        let access = AccessControl(registry: registry, configuration: .init(), tls: nil, logger: quietLogger)
        registry.observe { change in access.handle(change) }
        let auth = access.authenticator
        let request = Self.request(username: "token-0123456789abcdef", password: nil)
        #expect(auth.authenticateImmediately(request) == nil)
        #expect(Self.principal(await auth.authenticate(request)) != nil)
        let lookups = registry.lookups
        let cached = Self.principal(auth.authenticateImmediately(request))
        #expect(cached?.attributes["device.id"] == "d1")
        #expect(cached?.clientIdentifier == "client")
        #expect(registry.lookups == lookups)
        // A wrong secret is never answered from the cache.
        #expect(auth.authenticateImmediately(Self.request(username: "token-0123456789abcdeX", password: nil)) == nil)
        let keyRequest = Self.request(username: nil, password: "mk_key")
        #expect(Self.principal(await auth.authenticate(keyRequest)) != nil)
        #expect(Self.principal(auth.authenticateImmediately(keyRequest)) != nil)

        registry.emit(.credentialRevoked(deviceID: "d1", credentialID: "c1"))
        #expect(auth.authenticateImmediately(request) == nil)
        #expect(Self.refusal(await auth.authenticate(request)) == .badUserNameOrPassword)
        #expect(Self.principal(auth.authenticateImmediately(keyRequest)) != nil)
        registry.emit(.apiKeyRevoked(apiKeyID: "k1"))
        #expect(auth.authenticateImmediately(keyRequest) == nil)
    }

    @Test("devices' connects are recorded as last seen, in one batch for a burst of connects")
    func lastSeenIsBatched() async throws {
        let registry = FakeAccessRegistry()
        for index in 0..<20 { registry.addToken("token-0123456789abcd\(index)", device: "d\(index)", credential: "c\(index)") }
        registry.addAPIKey("mk_key", id: "k1", role: .viewer)
        let auth = Self.authenticator(registry)
        for index in 0..<20 {
            #expect(Self.principal(await auth.authenticate(Self.request(username: "token-0123456789abcd\(index)", password: nil))) != nil)
        }
        // Cached answers count as seen too; API keys are not devices.
        #expect(Self.principal(auth.authenticateImmediately(Self.request(username: "token-0123456789abcd0", password: nil))) != nil)
        #expect(Self.principal(await auth.authenticate(Self.request(username: nil, password: "mk_key"))) != nil)
        try await serverEventually("the batch to be written", within: .seconds(60)) { !registry.state.withLock { $0.seen.isEmpty } }
        let batches = registry.state.withLock { $0.seen }
        #expect(batches.count == 1)
        #expect(Set(batches.joined()) == Set((0..<20).map { "d\($0)" }))
    }

    @Test("the cache keeps no more than its capacity")
    func cacheIsBounded() {
        let cache = AuthenticationCache(capacity: 3)
        for index in 0..<10 {
            cache.store(MQTTPrincipal(clientIdentifier: "c\(index)"), for: "k\(index)")
        }
        #expect(cache.count == 3)
        #expect(cache.lookup("k9") != nil && cache.lookup("k0") == nil)
    }
}

@Suite("MQTT access: through the broker")
struct AccessBrokerTests {
    @Test("a revoked credential's connection is closed at once (0x98) and its reconnection refused (0x86)")
    func revocationDisconnects() async throws {
        try await AccessBroker.with { fixture in
            fixture.registry.addToken("token-revoked-0123456789", device: "d1", credential: "c1")
            fixture.registry.addToken("token-kept-0123456789ab", device: "d2", credential: "c2")
            let revoked = try await fixture.connected(username: "token-revoked-0123456789")
            let kept = try await fixture.connected(username: "token-kept-0123456789ab")
            fixture.registry.emit(.credentialRevoked(deviceID: "d1", credentialID: "c1"))
            // Closed by the server, not by a keep-alive timeout (how fast is not a test's business).
            try await serverEventually("the revoked client is disconnected", within: .seconds(15)) { !revoked.isConnected }
            #expect(revoked.serverDisconnect?.reasonCode == .administrativeAction)
            #expect(kept.isConnected)
            #expect(await fixture.refusal(username: "token-revoked-0123456789") == .badUserNameOrPassword)
            #expect(await fixture.refusal(username: "token-revoked-0123456789", version: .v3_1_1) == .badUserNameOrPassword)
            fixture.registry.emit(.deviceRevoked(deviceID: "d2", reason: "disabled"))
            try await serverEventually("the disabled device is disconnected", within: .seconds(15)) { !kept.isConnected }
        }
    }

    @Test("ThingsBoard telemetry reaches an API-key subscriber as devices/{id}/telemetry; other tenants see nothing")
    func thingsboardTelemetryIsMapped() async throws {
        try await AccessBroker.with { fixture in
            fixture.registry.addToken("token-d1-0123456789abcd", device: "d1", credential: "c1")
            fixture.registry.addAPIKey("mk_t1", id: "k1", tenant: "t1", role: .viewer)
            fixture.registry.addAPIKey("mk_t2", id: "k2", tenant: "t2", role: .admin)
            let subscriber = try await fixture.connected(password: "mk_t1")
            let otherTenant = try await fixture.connected(password: "mk_t2")
            #expect(try await subscriber.subscribe("devices/+/telemetry", qos: .atLeastOnce).reasonCodes == [.grantedQoS1])
            #expect(try await otherTenant.subscribe("devices/+/telemetry", qos: .atLeastOnce).reasonCodes == [.grantedQoS1])
            let device = try await fixture.connected(username: "token-d1-0123456789abcd")
            #expect(try await device.subscribe("#").reasonCodes == [.notAuthorized])
            #expect(try await device.publish("devices/d2/telemetry", payload: "x", qos: .atLeastOnce)?.reasonCode == .notAuthorized)
            try await device.publish("v1/devices/me/telemetry", payload: "{\"t\":21}", qos: .atLeastOnce)
            let message = try #require(try await nextMessage(subscriber))
            #expect(message.topic == "devices/d1/telemetry")
            #expect(String(buffer: message.payload) == "{\"t\":21}")
            // A viewer may not publish commands.
            #expect(try await subscriber.publish("devices/d1/rpc/request/1", payload: "{}", qos: .atLeastOnce)?.reasonCode == .notAuthorized)
            try await Task.sleep(for: .milliseconds(100))
            try await otherTenant.disconnect()
            try await device.disconnect()
            try await subscriber.disconnect()
        }
    }

    @Test("provisioning over MQTT answers on the requester's own /provision/response")
    func provisioningOverMQTT() async throws {
        try await AccessBroker.with { fixture in
            fixture.registry.state.withLock { $0.provisionKeys["pk"] = ("ps", "t1", true, []) }
            let requester = try await fixture.connected(username: "provision")
            let bystander = try await fixture.connected(username: "provision")
            #expect(try await requester.subscribe("/provision/response", qos: .atLeastOnce).reasonCodes == [.grantedQoS1])
            #expect(try await bystander.subscribe("/provision/response", qos: .atLeastOnce).reasonCodes == [.grantedQoS1])
            #expect(try await bystander.subscribe("#").reasonCodes == [.notAuthorized])
            let request = #"{"provisionDeviceKey":"pk","provisionDeviceSecret":"ps","deviceName":"sensor-1"}"#
            #expect(try await requester.publish("/provision/request", payload: request, qos: .atLeastOnce)?.reasonCode == .success)
            let answer = try #require(try await nextMessage(requester))
            #expect(answer.topic == "/provision/response")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(answer.payload.readableBytesView)) as? [String: Any])
            #expect(json["status"] as? String == "SUCCESS")
            #expect(json["credentialsType"] as? String == "ACCESS_TOKEN")
            let token = try #require(json["credentialsValue"] as? String)
            // The new token connects as the new device.
            let device = try await fixture.connected(username: token)
            try await device.disconnect()
            // A wrong secret gets a failure.
            try await requester.publish("/provision/request", payload: #"{"provisionDeviceKey":"pk","provisionDeviceSecret":"no"}"#, qos: .atLeastOnce)
            let failure = try #require(try await nextMessage(requester))
            let failureJSON = try #require(try JSONSerialization.jsonObject(with: Data(failure.payload.readableBytesView)) as? [String: Any])
            #expect(failureJSON["status"] as? String == "FAILURE")
            try await Task.sleep(for: .milliseconds(100))
            try await bystander.disconnect()
            try await requester.disconnect()
        }
    }

    @Test("a claim request sets the claim code and is not routed")
    func claimingOverMQTT() async throws {
        try await AccessBroker.with { fixture in
            fixture.registry.addToken("token-d1-0123456789abcd", device: "d1", credential: "c1")
            fixture.registry.addAPIKey("mk_t1", id: "k1", role: .viewer)
            let watcher = try await fixture.connected(password: "mk_t1")
            try await watcher.subscribe("devices/#", qos: .atLeastOnce)
            let device = try await fixture.connected(username: "token-d1-0123456789abcd")
            #expect(try await device.publish("v1/devices/me/claim", payload: #"{"secretKey":"abc","durationMs":60000}"#, qos: .atLeastOnce)?.reasonCode == .success)
            try await serverEventually("the claim code is set", within: .seconds(15)) { fixture.registry.state.withLock { !$0.claims.isEmpty } }
            let claim = fixture.registry.state.withLock { $0.claims.first }
            #expect(claim?.deviceID == "d1" && claim?.code == "abc" && claim?.duration == 60)
            try await device.publish("devices/d1/telemetry", payload: "after", qos: .atLeastOnce)
            let seen = try #require(try await nextMessage(watcher))
            #expect(seen.topic == "devices/d1/telemetry")
            try await device.disconnect()
            try await watcher.disconnect()
        }
    }

    @Test("anonymous clients connect only with auth.allow_anonymous, and never reach tenants' topics")
    func anonymousClients() async throws {
        try await AccessBroker.with { fixture in
            #expect(await fixture.refusal() == .notAuthorized)
            #expect(await fixture.refusal(version: .v3_1_1) == .notAuthorized)
        }
        try await AccessBroker.with(allowAnonymous: true) { fixture in
            fixture.registry.addToken("token-d1-0123456789abcd", device: "d1", credential: "c1")
            let anonymous = try await fixture.connected()
            #expect(try await anonymous.subscribe([.init("#", qos: .atMostOnce), .init("$tenants/#", qos: .atMostOnce)]).reasonCodes == [.grantedQoS0, .notAuthorized])
            let device = try await fixture.connected(username: "token-d1-0123456789abcd")
            try await device.publish("devices/d1/telemetry", payload: "private", qos: .atLeastOnce)
            try await anonymous.publish("open/topic", payload: "public", qos: .atLeastOnce)
            let message = try #require(try await nextMessage(anonymous))
            #expect(message.topic == "open/topic")
            try await device.disconnect()
            try await anonymous.disconnect()
        }
    }
}

import Foundation
import Logging
import MQTTBroker
import MQTTClient
import MQTTCore
import MeridianCore
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import MeridianServer

/// An in-memory registry for the broker integration's tests: devices by token, password and
/// certificate fingerprint, API keys and users, provisioning and claim codes, with call counts
/// and change notifications under the test's control.
final class FakeAccessRegistry: AccessRegistry {
    struct State {
        var tokens: [String: DeviceIdentity] = [:]
        var passwords: [String: (password: String, identity: DeviceIdentity)] = [:]
        var certificates: [String: DeviceIdentity] = [:]
        var apiKeys: [String: APIKey] = [:]
        var users: [String: (password: String, result: LoginResult)] = [:]
        var provisionKeys: [String: (secret: String, tenantID: String, allowCreate: Bool, registered: Set<String>)] = [:]
        var claims: [(deviceID: String, code: String, duration: TimeInterval)] = []
        var authorities: [String] = []
        var lookups = 0
        /// Every markSeen call's device ids.
        var seen: [[String]] = []
        var observers: [@Sendable (RegistryChange) -> Void] = []
        var failing = false
    }

    let state = Mutex(State())

    var lookups: Int { state.withLock { $0.lookups } }

    func identity(_ device: String, tenant: String = "t1", credential: String, type: CredentialType = .token) -> DeviceIdentity {
        DeviceIdentity(deviceID: device, tenantID: tenant, credentialID: credential, credentialType: type)
    }

    func addToken(_ token: String, device: String, tenant: String = "t1", credential: String) {
        state.withLock { $0.tokens[token] = identity(device, tenant: tenant, credential: credential) }
    }

    func addAPIKey(_ secret: String, id: String, tenant: String = "t1", role: Role) {
        let key = APIKey(id: id, tenantID: tenant, name: id, role: role, keyHash: Secrets.sha256(secret), prefix: "mk_", createdAt: Date())
        state.withLock { $0.apiKeys[secret] = key }
    }

    /// Revokes what a change names and notifies the observers, as the registry does after commit.
    func emit(_ change: RegistryChange) {
        let observers = state.withLock { state -> [@Sendable (RegistryChange) -> Void] in
            switch change {
            case .credentialRevoked(_, let credential):
                state.tokens = state.tokens.filter { $0.value.credentialID != credential }
                state.passwords = state.passwords.filter { $0.value.identity.credentialID != credential }
            case .deviceRevoked(let device, _):
                state.tokens = state.tokens.filter { $0.value.deviceID != device }
            case .apiKeyRevoked(let id):
                state.apiKeys = state.apiKeys.filter { $0.value.id != id }
            case .certificateAuthorityAdded:
                break
            }
            return state.observers
        }
        for observer in observers { observer(change) }
    }

    private func count() throws {
        try state.withLock { state in
            state.lookups += 1
            if state.failing { throw RegistryError(.forbidden, "registry offline (test)") }
        }
    }

    func observe(_ observer: @escaping @Sendable (RegistryChange) -> Void) {
        state.withLock { $0.observers.append(observer) }
    }

    func authenticateDevice(token: String) async throws -> DeviceIdentity? {
        try count()
        return state.withLock { $0.tokens[token] }
    }

    func authenticateDevice(username: String, password: String) async throws -> DeviceIdentity? {
        try count()
        return state.withLock { state in
            guard let entry = state.passwords[username], entry.password == password else { return nil }
            return entry.identity
        }
    }

    func authenticateDevice(
        certificateFingerprint: String, commonName: String?, issuerFingerprint: String?, mapping: CertificateMapping
    ) async throws -> DeviceIdentity? {
        try count()
        return state.withLock { $0.certificates[certificateFingerprint] }
    }

    func authenticateAPIKey(_ secret: String) async throws -> APIKey? {
        try count()
        return state.withLock { $0.apiKeys[secret] }
    }

    func login(username: String, password: String, remoteAddress: String?) async throws -> LoginResult {
        try count()
        guard let entry = state.withLock({ $0.users[username] }), entry.password == password else {
            throw RegistryError(.unauthenticated, "bad user name or password")
        }
        return entry.result
    }

    func provision(_ request: ProvisionRequest) async throws -> (device: Device, credential: IssuedCredential) {
        try count()
        return try state.withLock { state in
            guard let profile = state.provisionKeys[request.provisionKey], profile.secret == request.provisionSecret else {
                throw RegistryError(.unauthenticated, "unknown provisioning key or secret")
            }
            let name = request.deviceName ?? "device-\(state.tokens.count + 1)"
            if !profile.allowCreate && !profile.registered.contains(name) {
                throw RegistryError(.forbidden, "the device is not pre-registered")
            }
            let deviceID = "dev-\(name)"
            let token = "tok-\(name)-\(UUID().uuidString)"
            state.tokens[token] = DeviceIdentity(deviceID: deviceID, tenantID: profile.tenantID, credentialID: "cred-\(name)", credentialType: .token)
            let credential = Credential(id: "cred-\(name)", tenantID: profile.tenantID, deviceID: deviceID, type: .token, createdAt: Date())
            return (
                Device(id: deviceID, tenantID: profile.tenantID, name: name, createdAt: Date()),
                IssuedCredential(credential: credential, token: token)
            )
        }
    }

    func setClaimCode(deviceID: String, code: String, duration: TimeInterval, actor: AuditActor) async throws {
        try count()
        state.withLock { $0.claims.append((deviceID, code, duration)) }
    }

    func allCertificateAuthorityPEMs() async throws -> [String] {
        state.withLock { $0.authorities }
    }

    func markSeen(deviceIDs: [String], at time: Date) async throws {
        state.withLock { $0.seen.append(deviceIDs) }
    }
}

/// A broker on its own two-loop group with the registry integration's hooks, listening on an
/// ephemeral port.
final class AccessBroker: Sendable {
    let group: MultiThreadedEventLoopGroup
    let broker: MQTTBroker
    let access: AccessControl
    let registry: FakeAccessRegistry
    let port: Int

    private init(group: MultiThreadedEventLoopGroup, broker: MQTTBroker, access: AccessControl, registry: FakeAccessRegistry, port: Int) {
        self.group = group
        self.broker = broker
        self.access = access
        self.registry = registry
        self.port = port
    }

    static func with<T>(
        allowAnonymous: Bool = false,
        _ body: (AccessBroker) async throws -> T
    ) async throws -> T {
        let registry = FakeAccessRegistry()
        var configuration = MeridianConfiguration.Auth()
        configuration.allowAnonymous = allowAnonymous
        var logger = Logger(label: "access-tests")
        logger.logLevel = .critical
        let access = AccessControl(registry: registry, configuration: configuration, tls: nil, logger: logger)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        var brokerConfiguration = BrokerConfiguration()
        brokerConfiguration.sysInterval = 0
        let broker = MQTTBroker(
            configuration: brokerConfiguration, eventLoopGroup: group, authenticator: access.authenticator,
            authorizer: access.authorizer, messageTap: access.messageTap, logger: logger
        )
        await access.attach(broker)
        let fixture: AccessBroker
        do {
            let listener = try await broker.bind(host: "127.0.0.1", port: 0)
            fixture = AccessBroker(group: group, broker: broker, access: access, registry: registry, port: listener.port)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        do {
            let result = try await body(fixture)
            await fixture.stop()
            return result
        } catch {
            await fixture.stop()
            throw error
        }
    }

    private func stop() async {
        await broker.shutdown(timeout: .seconds(2))
        for _ in 0..<3 {
            for loop in group.makeIterator() { try? await loop.submit {}.get() }
        }
        try? await group.shutdownGracefully()
    }

    func client(
        _ clientIdentifier: String = "c-\(UInt32.random(in: 0...UInt32.max))",
        username: String? = nil,
        password: String? = nil,
        version: MQTTProtocolVersion = .v5
    ) -> MQTTClient {
        var configuration = MQTTClient.Configuration(
            host: "127.0.0.1", port: port, protocolVersion: version, clientIdentifier: clientIdentifier,
            username: username, password: password.map { ByteBuffer(string: $0) }
        )
        configuration.connectTimeout = .seconds(20)
        return MQTTClient(configuration: configuration)
    }

    /// A connected client; fails the test when the broker refuses it.
    func connected(_ clientIdentifier: String = "c-\(UInt32.random(in: 0...UInt32.max))", username: String? = nil, password: String? = nil) async throws -> MQTTClient {
        let client = client(clientIdentifier, username: username, password: password)
        _ = try await client.connect()
        return client
    }

    /// The reason code the broker refuses a CONNECT with, or nil if it accepts it.
    func refusal(username: String? = nil, password: String? = nil, version: MQTTProtocolVersion = .v5) async -> ReasonCode? {
        let client = client(username: username, password: password, version: version)
        do {
            _ = try await client.connect()
            try? await client.disconnect()
            return nil
        } catch let error as MQTTClientError {
            return error.reasonCode ?? .unspecifiedError
        } catch {
            return .unspecifiedError
        }
    }
}

/// The next message on `client`, within `timeout`.
func nextMessage(_ client: MQTTClient, within timeout: Duration = .seconds(15)) async throws -> PublishPacket? {
    try await withThrowingTaskGroup(of: PublishPacket?.self) { group in
        group.addTask {
            var iterator = client.messages.makeAsyncIterator()
            return await iterator.next()
        }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        let first = try await group.next() ?? nil
        group.cancelAll()
        return first
    }
}

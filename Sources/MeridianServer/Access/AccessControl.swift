import Logging
import MQTTBroker
import MQTTCore
import MeridianCore
import NIOConcurrencyHelpers
import NIOSSL

/// The broker's link to the registry: the hooks it gives the broker (authenticator, authorizer,
/// message tap), and what it does when the registry changes — disconnect the clients whose
/// device, credential or API key was revoked (at once, MQTT 5 clients with 0x98 administrative
/// action), forget cached authentications, and keep the MQTT TLS listener trusting every
/// tenant's certificate authority.
///
/// Create it before the broker, give the broker its hooks, then call ``attach(_:)``.
final class AccessControl: Sendable {
    let authenticator: RegistryAuthenticator
    let authorizer: RegistryAuthorizer
    let messageTap: RegistryMessageTap
    let cache: AuthenticationCache
    let authorities: CertificateAuthorities
    let lastSeen: LastSeenRecorder
    private let registry: any AccessRegistry
    private let broker = BrokerReference()
    private let tls: TLSService?
    private let logger: Logger
    /// Refreshes started and the newest one applied: an older answer never replaces a newer one.
    private let refreshes = NIOLockedValueBox((started: 0, applied: 0))

    init(
        registry: any AccessRegistry, configuration: MeridianConfiguration.Auth, tls: TLSService?, telemetry: TelemetryPipeline? = nil,
        twins: TwinService? = nil, commands: CommandService? = nil, logger: Logger
    ) {
        self.registry = registry
        self.tls = tls
        self.logger = logger
        let cache = AuthenticationCache()
        let authorities = CertificateAuthorities()
        self.cache = cache
        self.authorities = authorities
        let lastSeen = LastSeenRecorder(logger: logger) { devices, time in
            try await registry.markSeen(deviceIDs: devices, at: time)
        }
        self.lastSeen = lastSeen
        self.authenticator = RegistryAuthenticator(
            registry: registry, cache: cache, allowAnonymous: configuration.allowAnonymous,
            certificateMapping: configuration.certificateMapping, authorities: authorities, lastSeen: lastSeen,
            logger: logger
        )
        self.authorizer = RegistryAuthorizer(logger: logger)
        let brokerReference = broker
        self.messageTap = RegistryMessageTap(
            registry: registry, broker: brokerReference, logger: logger,
            telemetry: telemetry.map { MQTTTelemetryAdapter(pipeline: $0, broker: brokerReference, logger: logger) },
            twins: twins.map { MQTTTwinAdapter(twins: $0, broker: brokerReference, logger: logger) },
            commands: commands.map { MQTTCommandAdapter(service: $0, broker: brokerReference, logger: logger) }
        )
        messageTap.twins?.start()
    }

    /// Starts following the registry: revocations disconnect clients, new certificate
    /// authorities become trusted. Loads the authorities once now.
    func attach(_ broker: MQTTBroker) async {
        self.broker.set(broker)
        registry.observe { [self] change in self.handle(change) }
        await refreshAuthorities()
    }

    /// Reacts to one registry change (called synchronously after the registry committed it).
    func handle(_ change: RegistryChange) {
        let predicate: @Sendable (MQTTPrincipal) -> Bool
        let reason: String
        switch change {
        case .deviceRevoked(let deviceID, let why):
            predicate = { $0.attributes[AccessPrincipal.deviceKey] == deviceID }
            reason = "device revoked: \(why)"
        case .credentialRevoked(_, let credentialID):
            predicate = { $0.attributes[AccessPrincipal.credentialKey] == credentialID }
            reason = "credential revoked"
        case .apiKeyRevoked(let apiKeyID):
            predicate = { $0.attributes[AccessPrincipal.apiKeyKey] == apiKeyID }
            reason = "API key revoked"
        case .certificateAuthorityAdded:
            Task { await refreshAuthorities() }
            return
        }
        // Forget first, so a reconnection goes to the registry (and is refused there).
        cache.invalidate(where: predicate)
        guard let broker = broker.value else { return }
        let logger = self.logger
        Task {
            let closed = await broker.disconnect(where: predicate, reasonCode: .administrativeAction, reason: reason)
            if closed > 0 { logger.info("disconnected revoked MQTT clients", metadata: ["mqtt.connections": "\(closed)", "mqtt.reason": "\(reason)"]) }
        }
    }

    /// Reads every tenant's CA from the registry and, if they changed, makes the MQTT TLS
    /// listener trust them (new connections; established ones are not affected).
    func refreshAuthorities() async {
        let ticket = refreshes.withLockedValue { state -> Int in
            state.started += 1
            return state.started
        }
        let pems: [String]
        do {
            pems = try await registry.allCertificateAuthorityPEMs()
        } catch {
            logger.error("could not read the tenants' certificate authorities", metadata: ["error": "\(error)"])
            return
        }
        let current = refreshes.withLockedValue { state -> Bool in
            guard ticket > state.applied else { return false }
            state.applied = ticket
            return true
        }
        guard current else { return }
        let logger = self.logger
        let changed = authorities.replace(withPEMs: pems) { problem in
            logger.warning("skipping a tenant certificate authority", metadata: ["tls.reason": "\(problem)"])
        }
        guard changed, let tls else { return }
        do {
            try tls.setMQTTClientAuthorities(authorities.current.map(\.nioCertificate))
            logger.info("MQTT TLS listener trusts the tenants' certificate authorities", metadata: ["tls.authorities": "\(authorities.current.count)"])
        } catch {
            logger.error("could not trust the tenants' certificate authorities", metadata: ["error": "\(error)"])
        }
    }
}

import Crypto
import Foundation
import Logging
import MQTTBroker
import MQTTCore
import MeridianCore
import NIOCore
import X509

/// Authenticates MQTT clients against the registry:
///
/// - user name `provision`: a provisioning client (see ``AccessPrincipal/provisioning(clientIdentifier:connectionKey:)``);
/// - a verified client certificate (TLS listener): the device it identifies, by fingerprint
///   or common name (`auth.certificate_mapping`);
/// - a password that is an API key (`mk_...`): an operator principal of the key's tenant
///   with the key's role;
/// - a user name without password: a device access token (ThingsBoard style);
/// - a user name and password: a device's password credential, else a device access token
///   sent as user name (any password), else a user of the platform;
/// - no user name: anonymous when `auth.allow_anonymous`, refused otherwise.
///
/// Unknown credentials get CONNACK 0x86 bad user name or password (MQTT 3.1.1: 4), no
/// credentials at all 0x87 not authorized (3.1.1: 5), a registry failure 0x88 server
/// unavailable (3.1.1: 3). Successful results are cached (``AuthenticationCache``), so a
/// reconnecting client is answered on its event loop without I/O.
struct RegistryAuthenticator: MQTTAuthenticator {
    let registry: any AccessRegistry
    let cache: AuthenticationCache
    let allowAnonymous: Bool
    let certificateMapping: CertificateMapping
    /// The certificate authorities client certificates may have been issued by, to tell the
    /// registry which one issued a certificate.
    let authorities: CertificateAuthorities
    /// Devices' last-seen times, noted at every accepted device CONNECT.
    let lastSeen: LastSeenRecorder
    let logger: Logger

    /// Prefix of API keys.
    static let apiKeyPrefix = "mk_"
    /// Shortest access token the registry issues (shorter user names are never tried as tokens).
    static let minimumTokenLength = 16

    private enum Method: String {
        case certificate
        case apiKey = "api-key"
        case token
        case password
    }

    func authenticateImmediately(_ request: MQTTAuthenticationRequest) -> MQTTAuthenticationResult? {
        if request.username == AccessPrincipal.provisioningUsername && request.certificate == nil {
            return .accept(AccessPrincipal.provisioning(clientIdentifier: request.clientIdentifier, connectionKey: Self.connectionKey()))
        }
        if request.username == nil && request.certificate == nil && !Self.isAPIKey(request.password) {
            if allowAnonymous { return .accept(AccessPrincipal.anonymous(clientIdentifier: request.clientIdentifier)) }
            return .refuse(.notAuthorized, reason: "credentials required")
        }
        if let cached = cache.lookup(cacheKey(request)) {
            var principal = cached
            principal.clientIdentifier = request.clientIdentifier
            noteSeen(principal)
            return .accept(principal)
        }
        return nil
    }

    /// A user name for a log line: it may be an access token (or a password typed into the wrong
    /// field), so only its first four characters and its length.
    static func redacted(_ username: String?) -> String {
        guard let username else { return "-" }
        if username == AccessPrincipal.provisioningUsername { return username }
        return "\(username.prefix(4))… (\(username.count) characters)"
    }

    func authenticate(_ request: MQTTAuthenticationRequest) async -> MQTTAuthenticationResult {
        if let immediate = authenticateImmediately(request) { return immediate }
        do {
            guard let principal = try await lookUp(request) else {
                logger.info(
                    "MQTT authentication failed",
                    metadata: ["mqtt.client_id": "\(request.clientIdentifier)", "mqtt.username": "\(Self.redacted(request.username))"]
                )
                return .refuse(.badUserNameOrPassword, reason: "bad user name or password")
            }
            // Not anonymous answers: a certificate registered later must be recognised.
            if principal.attributes[AccessPrincipal.kindKey] != AccessPrincipal.Kind.anonymous.rawValue {
                cache.store(principal, for: cacheKey(request))
            }
            noteSeen(principal)
            return .accept(principal)
        } catch {
            logger.error(
                "MQTT authentication could not reach the registry",
                metadata: ["mqtt.client_id": "\(request.clientIdentifier)", "error": "\(error)"]
            )
            return .refuse(.serverUnavailable, reason: "authentication is unavailable, try again later")
        }
    }

    private func lookUp(_ request: MQTTAuthenticationRequest) async throws -> MQTTPrincipal? {
        let client = request.clientIdentifier
        let username = request.username
        let password = request.password.map { String(buffer: $0) }
        if let certificate = request.certificate {
            if let identity = try await registry.authenticateDevice(
                certificateFingerprint: certificate.sha256Fingerprint,
                commonName: certificate.commonName,
                issuerFingerprint: authorities.issuerFingerprint(of: certificate.der),
                mapping: certificateMapping
            ) {
                return AccessPrincipal.device(identity, clientIdentifier: client, username: username)
            }
            // A certificate the TLS listener verified (e.g. against `tls.client_ca`) that names
            // no device: the client may still identify itself otherwise, or be anonymous
            // where that is allowed.
            if username == nil && !Self.isAPIKey(request.password) {
                return allowAnonymous ? AccessPrincipal.anonymous(clientIdentifier: client) : nil
            }
        }
        if let password, password.hasPrefix(Self.apiKeyPrefix) {
            if let key = try await registry.authenticateAPIKey(password) {
                return AccessPrincipal.member(kind: .apiKey, tenantID: key.tenantID, role: key.role, id: key.id, clientIdentifier: client, username: username)
            }
            return nil
        }
        guard let username, !username.isEmpty else { return nil }
        let tryToken = username.utf8.count >= Self.minimumTokenLength
        guard let password else {
            guard tryToken, let identity = try await registry.authenticateDevice(token: username) else { return nil }
            // The user name is the token, a secret: the principal (logged, and kept with a
            // persistent session) does not carry it.
            return AccessPrincipal.device(identity, clientIdentifier: client, username: nil)
        }
        if let identity = try await registry.authenticateDevice(username: username, password: password) {
            return AccessPrincipal.device(identity, clientIdentifier: client, username: username)
        }
        if tryToken, let identity = try await registry.authenticateDevice(token: username) {
            return AccessPrincipal.device(identity, clientIdentifier: client, username: nil)
        }
        let login: LoginResult
        do {
            login = try await registry.login(username: username, password: password, remoteAddress: request.remoteAddress?.ipAddress)
        } catch let error as RegistryError where error.code == .unauthenticated || error.code == .notFound || error.code == .forbidden {
            return nil
        }
        // A user in several tenants picks one with the MQTT 5 user property `tenant`;
        // otherwise the first (by tenant id).
        let wanted = request.properties.userProperties.first { $0.key == "tenant" }?.value
        let memberships = login.memberships.sorted { $0.tenantID < $1.tenantID }
        guard let membership = wanted.map({ tenant in memberships.first { $0.tenantID == tenant } }) ?? memberships.first else {
            return nil
        }
        return AccessPrincipal.member(
            kind: .user, tenantID: membership.tenantID, role: membership.role, id: login.user.id, clientIdentifier: client, username: username
        )
    }

    private func noteSeen(_ principal: MQTTPrincipal) {
        if let deviceID = principal.attributes[AccessPrincipal.deviceKey] { lastSeen.note(deviceID) }
    }

    private func cacheKey(_ request: MQTTAuthenticationRequest) -> String {
        var password = request.password.map { Array($0.readableBytesView) }
        if password == nil, request.username == nil { password = [] }
        let tenant = request.properties.userProperties.first { $0.key == "tenant" }?.value
        return AuthenticationCache.key(
            kind: tenant.map { "tenant:\($0)" } ?? "-",
            username: request.username,
            password: password,
            certificateFingerprint: request.certificate?.sha256Fingerprint
        )
    }

    private static func isAPIKey(_ password: ByteBuffer?) -> Bool {
        guard let password else { return false }
        return password.readableBytesView.starts(with: apiKeyPrefix.utf8)
    }

    /// A random key naming one provisioning connection's private topics.
    private static func connectionKey() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<2).map { _ in String(generator.next() as UInt64, radix: 36) }.joined(separator: "-")
    }
}

import Foundation

// CONTRACT — the signatures below are what the API (MeridianServer/API) and the broker
// integration (MeridianServer/Access) call. Bodies are filled in by the registry work; keep the
// signatures (adding is fine).

/// The platform's registry of tenants, users, API keys, devices, profiles, credentials,
/// certificate authorities and the audit log: validation, tenant scoping, audit records, and
/// change notifications. Every change is written together with its audit entry, in one
/// transaction.
public final class Registry: Sendable {
    public init(store: any RegistryStore, now: @escaping @Sendable () -> Date = { Date() }) {
        fatalError("unimplemented")
    }

    /// Called (synchronously, after commit) for every change that affects connected clients.
    public func observe(_ observer: @escaping @Sendable (RegistryChange) -> Void) { fatalError("unimplemented") }

    // MARK: First start

    /// On an empty database: creates tenant `default` and either an admin API key with exactly
    /// `apiKey`, or (nil) an admin user `admin` with a random password returned once. On a
    /// database that has tenants: nil, nothing changes.
    public func bootstrapIfEmpty(apiKey: String?) async throws -> BootstrapResult? { fatalError("unimplemented") }

    // MARK: Tenants and users

    public func tenants(of userID: String) async throws -> [Tenant] { fatalError("unimplemented") }
    public func tenant(_ id: String) async throws -> Tenant { fatalError("unimplemented") }
    /// A new tenant whose owner is the calling user (API keys cannot create tenants).
    public func createTenant(name: String, by caller: Caller) async throws -> Tenant { fatalError("unimplemented") }
    /// Adds a user to the caller's tenant (creating the user if the name is new; `password`
    /// required then). Only owners may grant `owner`.
    public func addUser(username: String, password: String?, role: Role, by caller: Caller) async throws -> TenantUser { fatalError("unimplemented") }
    public func users(by caller: Caller) async throws -> [TenantUser] { fatalError("unimplemented") }
    public func setRole(userID: String, role: Role, by caller: Caller) async throws -> TenantUser { fatalError("unimplemented") }
    /// Removes the user from the caller's tenant (the last owner cannot be removed).
    public func removeUser(userID: String, by caller: Caller) async throws { fatalError("unimplemented") }
    /// Checks a user's password; throws `.unauthenticated` (same message whether the user exists
    /// or not).
    public func login(username: String, password: String, remoteAddress: String?) async throws -> LoginResult { fatalError("unimplemented") }
    /// A new refresh token (returned once, stored hashed) for the user in that tenant.
    public func issueRefreshToken(userID: String, tenantID: String, lifetime: TimeInterval) async throws -> String { fatalError("unimplemented") }
    /// Exchanges a refresh token for a new one (the old one is revoked) and the user's current
    /// role; throws `.unauthenticated` when unknown, expired, revoked, or the user lost access.
    public func refresh(token: String, lifetime: TimeInterval) async throws -> (user: User, membership: Membership, refreshToken: String) { fatalError("unimplemented") }

    // MARK: API keys

    /// A new key (the secret is returned once; stored hashed). A caller cannot create a key with
    /// a role above its own.
    public func createAPIKey(name: String, role: Role, expiresAt: Date?, by caller: Caller) async throws -> (key: APIKey, secret: String) { fatalError("unimplemented") }
    public func apiKeys(by caller: Caller) async throws -> [APIKey] { fatalError("unimplemented") }
    public func revokeAPIKey(id: String, by caller: Caller) async throws { fatalError("unimplemented") }
    /// The key with this secret, if usable; records its last use (at most once a minute).
    public func authenticateAPIKey(_ secret: String) async throws -> APIKey? { fatalError("unimplemented") }

    // MARK: Profiles

    /// Returns the profile and, when one was generated, the provisioning secret (shown once).
    public func createProfile(_ draft: ProfileDraft, by caller: Caller) async throws -> (profile: DeviceProfile, provisioningSecret: String?) { fatalError("unimplemented") }
    public func profiles(by caller: Caller) async throws -> [DeviceProfile] { fatalError("unimplemented") }
    public func profile(_ id: String, by caller: Caller) async throws -> DeviceProfile { fatalError("unimplemented") }
    public func updateProfile(_ id: String, _ draft: ProfileDraft, by caller: Caller) async throws -> (profile: DeviceProfile, provisioningSecret: String?) { fatalError("unimplemented") }
    /// Refused (conflict) while devices use it.
    public func deleteProfile(_ id: String, by caller: Caller) async throws { fatalError("unimplemented") }

    // MARK: Devices

    public func createDevice(_ draft: DeviceDraft, by caller: Caller) async throws -> Device { fatalError("unimplemented") }
    public func device(_ id: String, by caller: Caller) async throws -> Device { fatalError("unimplemented") }
    /// `query.tenantID` is replaced by the caller's tenant.
    public func devices(_ query: DeviceQuery, by caller: Caller) async throws -> Page<Device> { fatalError("unimplemented") }
    public func updateDevice(_ id: String, _ patch: DevicePatch, by caller: Caller) async throws -> Device { fatalError("unimplemented") }
    /// Deletes the device, its credentials and claim codes.
    public func deleteDevice(_ id: String, by caller: Caller) async throws { fatalError("unimplemented") }
    /// Revokes every credential, marks it decommissioned (kept for its history) or, with
    /// `purge`, deletes it; the audit log records which.
    public func decommissionDevice(_ id: String, purge: Bool, by caller: Caller) async throws -> Device? { fatalError("unimplemented") }
    /// All or nothing: every row is validated first (also against each other and the existing
    /// devices); any bad row → `.invalid` with ``RegistryError/rowErrors``, nothing created.
    public func importDevices(_ rows: [DeviceImport.Row], by caller: Caller) async throws -> [Device] { fatalError("unimplemented") }

    // MARK: Credentials and certificates

    public func createCredential(deviceID: String, _ request: CredentialRequest, by caller: Caller) async throws -> IssuedCredential { fatalError("unimplemented") }
    public func credentials(deviceID: String, by caller: Caller) async throws -> [Credential] { fatalError("unimplemented") }
    public func revokeCredential(deviceID: String, credentialID: String, by caller: Caller) async throws { fatalError("unimplemented") }
    /// The tenant's CAs; the built-in one is created on first use.
    public func certificateAuthorities(by caller: Caller) async throws -> [CertificateAuthority] { fatalError("unimplemented") }
    /// Registers a CA certificate (PEM) the tenant runs itself.
    public func registerCertificateAuthority(pem: String, by caller: Caller) async throws -> CertificateAuthority { fatalError("unimplemented") }
    /// Every tenant's CA certificates (PEM), for the TLS listener's client-certificate trust.
    public func allCertificateAuthorityPEMs() async throws -> [String] { fatalError("unimplemented") }

    // MARK: Device authentication (the broker calls these at CONNECT)

    /// The active device holding this usable token, or nil.
    public func authenticateDevice(token: String) async throws -> DeviceIdentity? { fatalError("unimplemented") }
    public func authenticateDevice(username: String, password: String) async throws -> DeviceIdentity? { fatalError("unimplemented") }
    /// By a verified client certificate: its fingerprint (registered credential), or — with
    /// `.commonName` — its CN as device id when issued by that device's tenant's CA
    /// (`issuerFingerprint`, SHA-256 of the issuing CA certificate's DER, when known).
    public func authenticateDevice(certificateFingerprint: String, commonName: String?, issuerFingerprint: String?, mapping: CertificateMapping) async throws -> DeviceIdentity? { fatalError("unimplemented") }
    /// Whether the device may still be connected with that credential (status active,
    /// credential usable).
    public func isStillAuthorized(_ identity: DeviceIdentity) async throws -> Bool { fatalError("unimplemented") }
    /// Records a device's last-seen time (batched by the caller; cheap).
    public func markSeen(deviceIDs: [String], at time: Date) async throws { fatalError("unimplemented") }

    // MARK: Provisioning and claiming

    /// A device registers itself with its profile's provisioning key and secret; returns the
    /// device and its new credential. Throws `.unauthenticated` for a bad key or secret,
    /// `.forbidden` when the profile does not allow it (e.g. not pre-registered).
    public func provision(_ request: ProvisionRequest) async throws -> (device: Device, credential: IssuedCredential) { fatalError("unimplemented") }
    /// Sets (replaces) the device's claim code, valid for `duration`. Called by the device
    /// itself (actor kind `.device`) or by an operator of the device's current tenant.
    public func setClaimCode(deviceID: String, code: String, duration: TimeInterval, actor: AuditActor) async throws { fatalError("unimplemented") }
    /// Moves the device with this id or name and a matching, unexpired claim code into the
    /// caller's tenant: its old credentials are revoked and the code is used up.
    public func claimDevice(deviceID: String, code: String, by caller: Caller) async throws -> Device { fatalError("unimplemented") }

    // MARK: Audit

    /// The caller's tenant's entries, newest first.
    public func auditEntries(by caller: Caller, limit: Int, before: Int64?) async throws -> Page<AuditEntry> { fatalError("unimplemented") }
    /// Walks the whole chain.
    public func verifyAudit() async throws -> AuditChain.Verification { fatalError("unimplemented") }
}

/// Parsing bulk-import files into rows (no storage access; the registry validates against
/// storage).
public enum DeviceImport {
    /// One row of an import, with where it came from.
    public struct Row: Sendable, Hashable {
        /// CSV: the 1-based line number; JSON: the 0-based array index.
        public var line: Int
        public var draft: DeviceDraft

        public init(line: Int, draft: DeviceDraft) {
            self.line = line
            self.draft = draft
        }
    }

    /// CSV with a header row: `name` (required), `id`, `profile`, `labels` (`k=v;k2=v2`), and
    /// any `label.<key>` columns. Throws ``RegistryError`` with a row error per bad row.
    public static func parseCSV(_ text: String) throws -> [Row] { fatalError("unimplemented") }
    /// A JSON array of ``DeviceDraft`` objects.
    public static func parseJSON(_ data: Data) throws -> [Row] { fatalError("unimplemented") }
}

/// The storage the registry runs on (SQLite now, PostgreSQL later). Defined by the registry work.
public protocol RegistryStore: Sendable {}

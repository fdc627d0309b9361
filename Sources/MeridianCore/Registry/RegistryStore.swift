import Foundation

/// The storage the registry runs on (SQLite now, PostgreSQL later).
///
/// A store only stores: it runs the registry's reads and writes in transactions and knows the SQL.
/// Validation, hashing, tenant scoping, audit records and change notification are the
/// ``Registry``'s. Everything one ``write(_:)`` body does — the change and its audit entries —
/// commits together or not at all; writes are serialized (one writer at a time), so a check made
/// inside a write body still holds when the body's insert runs.
public protocol RegistryStore: Sendable {
    /// Runs `body` in a read-only transaction (a consistent snapshot).
    func read<T: Sendable>(_ body: @escaping @Sendable (any RegistryTransaction) throws -> T) async throws -> T
    /// Runs `body` in a write transaction: committed when it returns, rolled back when it throws.
    func write<T: Sendable>(_ body: @escaping @Sendable (any RegistryTransaction) throws -> T) async throws -> T
}

/// The registry's view of one open transaction. Lookups return nil (never throw) for a missing
/// row; a violated uniqueness constraint throws ``RegistryError`` with code `conflict`.
/// Nothing here checks tenants: every method does exactly what it says.
public protocol RegistryTransaction {
    // MARK: Tenants
    func tenantCount() throws -> Int
    func insertTenant(_ tenant: Tenant) throws
    func tenant(id: String) throws -> Tenant?

    // MARK: Users and memberships
    func insertUser(_ user: User) throws
    func user(id: String) throws -> User?
    func user(username: String) throws -> User?
    /// Inserts or replaces the user's role in the tenant.
    func saveMembership(_ membership: Membership) throws
    func membership(userID: String, tenantID: String) throws -> Membership?
    func memberships(userID: String) throws -> [Membership]
    func memberships(tenantID: String) throws -> [Membership]
    func deleteMembership(userID: String, tenantID: String) throws

    // MARK: Refresh tokens
    func insertRefreshToken(_ token: RefreshToken) throws
    func refreshToken(hash: String) throws -> RefreshToken?
    func revokeRefreshToken(hash: String, at time: Date) throws

    // MARK: API keys
    func insertAPIKey(_ key: APIKey) throws
    func apiKey(id: String) throws -> APIKey?
    func apiKey(hash: String) throws -> APIKey?
    func apiKeys(tenantID: String) throws -> [APIKey]
    func revokeAPIKey(id: String, at time: Date) throws
    func setAPIKeyLastUsed(id: String, at time: Date) throws

    // MARK: Profiles
    func insertProfile(_ profile: DeviceProfile) throws
    func updateProfile(_ profile: DeviceProfile) throws
    func profile(id: String) throws -> DeviceProfile?
    func profile(tenantID: String, name: String) throws -> DeviceProfile?
    func profile(provisioningKey: String) throws -> DeviceProfile?
    func profiles(tenantID: String) throws -> [DeviceProfile]
    func deleteProfile(id: String) throws
    func deviceCount(profileID: String) throws -> Int

    // MARK: Devices
    func insertDevice(_ device: Device) throws
    /// Replaces every field of the device with this id (labels included).
    func updateDevice(_ device: Device) throws
    func device(id: String) throws -> Device?
    func device(tenantID: String, name: String) throws -> Device?
    /// The query's tenant's devices matching every filter, ordered by id, after `query.after`,
    /// at most `query.limit`.
    func devices(_ query: DeviceQuery) throws -> [Device]
    /// Deletes the device with its labels, credentials and claim code.
    func deleteDevice(id: String) throws
    func markSeen(deviceIDs: [String], at time: Date) throws

    // MARK: Credentials
    func insertCredential(_ credential: Credential) throws
    func credential(id: String) throws -> Credential?
    func credentials(deviceID: String, tenantID: String) throws -> [Credential]
    func credential(tokenHash: String) throws -> Credential?
    /// The unrevoked password credential with this user name.
    func credential(username: String) throws -> Credential?
    func credential(certificateFingerprint: String) throws -> Credential?
    func revokeCredential(id: String, at time: Date) throws

    // MARK: Certificate authorities
    func insertCertificateAuthority(_ authority: CertificateAuthority) throws
    func certificateAuthorities(tenantID: String) throws -> [CertificateAuthority]
    func allCertificateAuthorities() throws -> [CertificateAuthority]

    // MARK: Claim codes
    /// Inserts or replaces the device's claim code.
    func saveClaimCode(_ code: ClaimCode) throws
    func claimCode(deviceID: String) throws -> ClaimCode?
    /// Claim codes of devices with this name, in any tenant.
    func claimCodes(deviceName: String) throws -> [ClaimCode]
    func deleteClaimCode(deviceID: String) throws

    // MARK: Audit log
    /// The entry with the highest sequence.
    func lastAuditEntry() throws -> AuditEntry?
    func appendAuditEntry(_ entry: AuditEntry) throws
    /// The tenant's entries with sequence below `before` (all when nil), newest first.
    func auditEntries(tenantID: String, before: Int64?, limit: Int) throws -> [AuditEntry]
    /// All entries with sequence after `after`, oldest first.
    func auditEntries(after: Int64, limit: Int) throws -> [AuditEntry]
}

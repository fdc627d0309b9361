import Foundation
import MeridianCore
import PostgresNIO

/// ``RegistryTransaction`` over one PostgreSQL connection inside a transaction: the same
/// statements and results as ``SQLiteRegistryTransaction``.
///
/// Differences PostgreSQL forces, hidden here:
/// - A failed statement fails the whole transaction in PostgreSQL (SQLite undoes just the
///   statement). Inserts therefore use `ON CONFLICT DO NOTHING` and report a conflict when no
///   row went in, and updates that can hit a unique constraint run under a savepoint: a
///   conflict leaves the transaction usable, as in SQLite.
/// - PostgreSQL text cannot hold NUL characters: a lookup by such a string finds nothing
///   (nothing stored can contain one) instead of failing.
struct PostgresRegistryTransaction: RegistryTransaction {
    let session: PostgresSession

    // MARK: helpers

    /// A statement that may hit a unique constraint, under a savepoint: a violation rolls back
    /// to it and throws `conflict`, leaving the transaction usable.
    private func guarded(_ query: PostgresQuery) throws {
        try session.execute("SAVEPOINT registry_statement")
        do {
            try session.execute(query)
        } catch let error as PostgresDatabase.DatabaseError {
            try session.execute("ROLLBACK TO SAVEPOINT registry_statement")
            try session.execute("RELEASE SAVEPOINT registry_statement")
            if error.sqlState == "23505" { throw RegistryError.conflict(nil, "already exists") }
            throw error
        }
        try session.execute("RELEASE SAVEPOINT registry_statement")
    }

    /// An `INSERT ... ON CONFLICT DO NOTHING`: no row inserted means a unique constraint
    /// (any of the table's) said no.
    private func insert(_ query: PostgresQuery) throws {
        guard try session.execute(query) == 1 else { throw RegistryError.conflict(nil, "already exists") }
    }

    /// Whether `value` can be stored at all (PostgreSQL text holds no NUL).
    private static func storable(_ value: String) -> Bool {
        !value.utf8.contains(0)
    }

    private static func milliseconds(_ date: Date?) -> Int64? {
        date.map { Int64(($0.timeIntervalSince1970 * 1000).rounded()) }
    }
    private static func milliseconds(_ date: Date) -> Int64 {
        Int64((date.timeIntervalSince1970 * 1000).rounded())
    }
    private static func date(_ row: PostgresRandomAccessRow, _ column: String) throws -> Date? {
        try row.optional(column, as: Int64.self).map { Date(timeIntervalSince1970: Double($0) / 1000) }
    }
    private static func requiredDate(_ row: PostgresRandomAccessRow, _ column: String) throws -> Date {
        try date(row, column) ?? Date(timeIntervalSince1970: 0)
    }

    private static func json<T: Encodable>(_ value: T) throws -> String {
        try JSONColumn.encode(value)
    }

    private static func decode<T: Decodable>(_ type: T.Type, _ text: String?, default value: T) -> T {
        JSONColumn.decode(type, text, default: value)
    }

    // MARK: Tenants

    func tenantCount() throws -> Int {
        Int(try session.row("SELECT COUNT(*) AS n FROM tenants")?.value("n", as: Int64.self) ?? 0)
    }

    func insertTenant(_ tenant: Tenant) throws {
        try insert(
            "INSERT INTO tenants (id, name, created_at) VALUES (\(tenant.id), \(tenant.name), \(Self.milliseconds(tenant.createdAt))) ON CONFLICT DO NOTHING"
        )
    }

    func tenant(id: String) throws -> Tenant? {
        guard Self.storable(id) else { return nil }
        return try session.row("SELECT * FROM tenants WHERE id = \(id)").map(Self.tenant)
    }

    private static func tenant(_ row: PostgresRandomAccessRow) throws -> Tenant {
        Tenant(id: try row.value("id"), name: try row.value("name"), createdAt: try requiredDate(row, "created_at"))
    }

    // MARK: Users

    func insertUser(_ user: User) throws {
        try insert(
            """
            INSERT INTO users (id, username, password_hash, created_at, disabled)
            VALUES (\(user.id), \(user.username), \(user.passwordHash), \(Self.milliseconds(user.createdAt)), \(user.disabled))
            ON CONFLICT DO NOTHING
            """
        )
    }

    func user(id: String) throws -> User? {
        guard Self.storable(id) else { return nil }
        return try session.row("SELECT * FROM users WHERE id = \(id)").map(Self.user)
    }

    func user(username: String) throws -> User? {
        guard Self.storable(username) else { return nil }
        return try session.row("SELECT * FROM users WHERE username = \(username)").map(Self.user)
    }

    private static func user(_ row: PostgresRandomAccessRow) throws -> User {
        User(
            id: try row.value("id"),
            username: try row.value("username"),
            passwordHash: try row.value("password_hash"),
            createdAt: try requiredDate(row, "created_at"),
            disabled: try row.value("disabled")
        )
    }

    func saveMembership(_ membership: Membership) throws {
        try session.execute(
            """
            INSERT INTO memberships (user_id, tenant_id, role) VALUES (\(membership.userID), \(membership.tenantID), \(membership.role.rawValue))
            ON CONFLICT (user_id, tenant_id) DO UPDATE SET role = EXCLUDED.role
            """
        )
    }

    func membership(userID: String, tenantID: String) throws -> Membership? {
        guard Self.storable(userID), Self.storable(tenantID) else { return nil }
        return try session.row("SELECT * FROM memberships WHERE user_id = \(userID) AND tenant_id = \(tenantID)")
            .flatMap(Self.membership)
    }

    func memberships(userID: String) throws -> [Membership] {
        guard Self.storable(userID) else { return [] }
        return try session.rows("SELECT * FROM memberships WHERE user_id = \(userID) ORDER BY tenant_id").compactMap(
            Self.membership
        )
    }

    func memberships(tenantID: String) throws -> [Membership] {
        guard Self.storable(tenantID) else { return [] }
        return try session.rows("SELECT * FROM memberships WHERE tenant_id = \(tenantID) ORDER BY user_id").compactMap(
            Self.membership
        )
    }

    func deleteMembership(userID: String, tenantID: String) throws {
        guard Self.storable(userID), Self.storable(tenantID) else { return }
        try session.execute("DELETE FROM memberships WHERE user_id = \(userID) AND tenant_id = \(tenantID)")
    }

    private static func membership(_ row: PostgresRandomAccessRow) throws -> Membership? {
        guard let role = Role(rawValue: try row.value("role")) else { return nil }
        return Membership(userID: try row.value("user_id"), tenantID: try row.value("tenant_id"), role: role)
    }

    // MARK: Refresh tokens

    func insertRefreshToken(_ token: RefreshToken) throws {
        try insert(
            """
            INSERT INTO refresh_tokens (token_hash, user_id, tenant_id, created_at, expires_at, revoked_at)
            VALUES (\(token.tokenHash), \(token.userID), \(token.tenantID), \(Self.milliseconds(token.createdAt)),
                \(Self.milliseconds(token.expiresAt)), \(Self.milliseconds(token.revokedAt)))
            ON CONFLICT DO NOTHING
            """
        )
    }

    func refreshToken(hash: String) throws -> RefreshToken? {
        guard Self.storable(hash) else { return nil }
        return try session.row("SELECT * FROM refresh_tokens WHERE token_hash = \(hash)").map { row in
            RefreshToken(
                tokenHash: try row.value("token_hash"),
                userID: try row.value("user_id"),
                tenantID: try row.value("tenant_id"),
                createdAt: try Self.requiredDate(row, "created_at"),
                expiresAt: try Self.requiredDate(row, "expires_at"),
                revokedAt: try Self.date(row, "revoked_at")
            )
        }
    }

    func revokeRefreshToken(hash: String, at time: Date) throws {
        guard Self.storable(hash) else { return }
        try session.execute(
            "UPDATE refresh_tokens SET revoked_at = \(Self.milliseconds(time)) WHERE token_hash = \(hash) AND revoked_at IS NULL"
        )
    }

    // MARK: API keys

    func insertAPIKey(_ key: APIKey) throws {
        try insert(
            """
            INSERT INTO api_keys (id, tenant_id, name, role, key_hash, prefix, created_at, expires_at, last_used_at, revoked_at)
            VALUES (\(key.id), \(key.tenantID), \(key.name), \(key.role.rawValue), \(key.keyHash), \(key.prefix),
                \(Self.milliseconds(key.createdAt)), \(Self.milliseconds(key.expiresAt)), \(Self.milliseconds(key.lastUsedAt)),
                \(Self.milliseconds(key.revokedAt)))
            ON CONFLICT DO NOTHING
            """
        )
    }

    func apiKey(id: String) throws -> APIKey? {
        guard Self.storable(id) else { return nil }
        return try session.row("SELECT * FROM api_keys WHERE id = \(id)").flatMap(Self.apiKey)
    }

    func apiKey(hash: String) throws -> APIKey? {
        guard Self.storable(hash) else { return nil }
        return try session.row("SELECT * FROM api_keys WHERE key_hash = \(hash)").flatMap(Self.apiKey)
    }

    func apiKeys(tenantID: String) throws -> [APIKey] {
        guard Self.storable(tenantID) else { return [] }
        return try session.rows("SELECT * FROM api_keys WHERE tenant_id = \(tenantID) ORDER BY created_at, id")
            .compactMap(Self.apiKey)
    }

    func revokeAPIKey(id: String, at time: Date) throws {
        guard Self.storable(id) else { return }
        try session.execute(
            "UPDATE api_keys SET revoked_at = \(Self.milliseconds(time)) WHERE id = \(id) AND revoked_at IS NULL"
        )
    }

    func setAPIKeyLastUsed(id: String, at time: Date) throws {
        guard Self.storable(id) else { return }
        try session.execute("UPDATE api_keys SET last_used_at = \(Self.milliseconds(time)) WHERE id = \(id)")
    }

    private static func apiKey(_ row: PostgresRandomAccessRow) throws -> APIKey? {
        guard let role = Role(rawValue: try row.value("role")) else { return nil }
        return APIKey(
            id: try row.value("id"),
            tenantID: try row.value("tenant_id"),
            name: try row.value("name"),
            role: role,
            keyHash: try row.value("key_hash"),
            prefix: try row.value("prefix"),
            createdAt: try requiredDate(row, "created_at"),
            expiresAt: try date(row, "expires_at"),
            lastUsedAt: try date(row, "last_used_at"),
            revokedAt: try date(row, "revoked_at")
        )
    }

    // MARK: Profiles

    func insertProfile(_ profile: DeviceProfile) throws {
        try insert(
            """
            INSERT INTO profiles (id, tenant_id, name, description, transport, provisioning_mode, provisioning_key,
                provisioning_secret_hash, created_at)
            VALUES (\(profile.id), \(profile.tenantID), \(profile.name), \(profile.description), \(try Self.json(profile.transport)),
                \(profile.provisioning.mode.rawValue), \(profile.provisioning.key), \(profile.provisioning.secretHash),
                \(Self.milliseconds(profile.createdAt)))
            ON CONFLICT DO NOTHING
            """
        )
    }

    func updateProfile(_ profile: DeviceProfile) throws {
        try guarded(
            """
            UPDATE profiles SET name = \(profile.name), description = \(profile.description), transport = \(try Self.json(profile.transport)),
                provisioning_mode = \(profile.provisioning.mode.rawValue), provisioning_key = \(profile.provisioning.key),
                provisioning_secret_hash = \(profile.provisioning.secretHash)
            WHERE id = \(profile.id)
            """
        )
    }

    func profile(id: String) throws -> DeviceProfile? {
        guard Self.storable(id) else { return nil }
        return try session.row("SELECT * FROM profiles WHERE id = \(id)").map(Self.profile)
    }

    func profile(tenantID: String, name: String) throws -> DeviceProfile? {
        guard Self.storable(tenantID), Self.storable(name) else { return nil }
        return try session.row("SELECT * FROM profiles WHERE tenant_id = \(tenantID) AND name = \(name)").map(
            Self.profile
        )
    }

    func profile(provisioningKey: String) throws -> DeviceProfile? {
        guard Self.storable(provisioningKey) else { return nil }
        return try session.row("SELECT * FROM profiles WHERE provisioning_key = \(provisioningKey)").map(Self.profile)
    }

    func profiles(tenantID: String) throws -> [DeviceProfile] {
        guard Self.storable(tenantID) else { return [] }
        return try session.rows("SELECT * FROM profiles WHERE tenant_id = \(tenantID) ORDER BY name").map(Self.profile)
    }

    func deleteProfile(id: String) throws {
        guard Self.storable(id) else { return }
        try session.execute("DELETE FROM profiles WHERE id = \(id)")
    }

    func deviceCount(profileID: String) throws -> Int {
        guard Self.storable(profileID) else { return 0 }
        return Int(
            try session.row("SELECT COUNT(*) AS n FROM devices WHERE profile_id = \(profileID)")?.value(
                "n",
                as: Int64.self
            ) ?? 0
        )
    }

    private static func profile(_ row: PostgresRandomAccessRow) throws -> DeviceProfile {
        DeviceProfile(
            id: try row.value("id"),
            tenantID: try row.value("tenant_id"),
            name: try row.value("name"),
            description: try row.value("description"),
            transport: decode(JSONValue.self, try row.optional("transport"), default: .emptyObject),
            provisioning: ProvisioningSettings(
                mode: ProvisioningSettings.Mode(rawValue: try row.value("provisioning_mode")) ?? .disabled,
                key: try row.optional("provisioning_key"),
                secretHash: try row.optional("provisioning_secret_hash")
            ),
            createdAt: try requiredDate(row, "created_at")
        )
    }

    // MARK: Devices

    func insertDevice(_ device: Device) throws {
        try insert(
            """
            INSERT INTO devices (id, tenant_id, name, profile_id, labels, metadata, created_at, last_seen_at, status)
            VALUES (\(device.id), \(device.tenantID), \(device.name), \(device.profileID), \(try Self.json(device.labels)),
                \(try Self.json(device.metadata)), \(Self.milliseconds(device.createdAt)), \(Self.milliseconds(device.lastSeenAt)),
                \(device.status.rawValue))
            ON CONFLICT DO NOTHING
            """
        )
        try insertLabels(device)
    }

    private func insertLabels(_ device: Device) throws {
        guard !device.labels.isEmpty else { return }
        // One statement for all of them: the keys and values as two parallel arrays.
        let keys = Array(device.labels.keys)
        let values = keys.map { device.labels[$0] ?? "" }
        try session.execute(
            """
            INSERT INTO device_labels (device_id, tenant_id, key, value)
            SELECT \(device.id), \(device.tenantID), k, v FROM unnest(\(keys)::text[], \(values)::text[]) AS l(k, v)
            """
        )
    }

    func updateDevice(_ device: Device) throws {
        try guarded(
            """
            UPDATE devices SET tenant_id = \(device.tenantID), name = \(device.name), profile_id = \(device.profileID),
                labels = \(try Self.json(device.labels)), metadata = \(try Self.json(device.metadata)),
                last_seen_at = \(Self.milliseconds(device.lastSeenAt)), status = \(device.status.rawValue)
            WHERE id = \(device.id)
            """
        )
        try session.execute("DELETE FROM device_labels WHERE device_id = \(device.id)")
        try insertLabels(device)
    }

    func device(id: String) throws -> Device? {
        guard Self.storable(id) else { return nil }
        return try session.row("SELECT * FROM devices WHERE id = \(id)").map(Self.device)
    }

    func device(tenantID: String, name: String) throws -> Device? {
        guard Self.storable(tenantID), Self.storable(name) else { return nil }
        return try session.row("SELECT * FROM devices WHERE tenant_id = \(tenantID) AND name = \(name)").map(
            Self.device
        )
    }

    func devices(_ query: DeviceQuery) throws -> [Device] {
        let labels = query.labels.sorted { $0.key < $1.key }
        let texts =
            [query.tenantID, query.after ?? "", query.profileID ?? "", query.namePrefix ?? ""]
            + labels.flatMap { [$0.key, $0.value] }
        guard texts.allSatisfy(Self.storable) else { return [] }
        // With a label filter, the first label's index drives the scan (only matching devices are
        // read, already in id order); otherwise the tenant's (tenant_id, id) index does.
        var statement: PostgresStatement
        let idColumn: String
        if let (key, value) = labels.first {
            statement = PostgresStatement(
                "SELECT d.* FROM device_labels l0 JOIN devices d ON d.id = l0.device_id WHERE "
            )
            let tenant = statement.bind(query.tenantID)
            let keyPlaceholder = statement.bind(key)
            let valuePlaceholder = statement.bind(value)
            statement.append(
                "l0.tenant_id = \(tenant) AND l0.key = \(keyPlaceholder) AND l0.value = \(valuePlaceholder)"
            )
            statement.append(" AND d.tenant_id = \(tenant)")
            idColumn = "l0.device_id"
        } else {
            statement = PostgresStatement("SELECT d.* FROM devices d WHERE ")
            let tenant = statement.bind(query.tenantID)
            statement.append("d.tenant_id = \(tenant)")
            idColumn = "d.id"
        }
        if let after = query.after {
            let placeholder = statement.bind(after)
            statement.append(" AND \(idColumn) > \(placeholder)")
        }
        if let status = query.status {
            let placeholder = statement.bind(status.rawValue)
            statement.append(" AND d.status = \(placeholder)")
        }
        if let profileID = query.profileID {
            let placeholder = statement.bind(profileID)
            statement.append(" AND d.profile_id = \(placeholder)")
        }
        if let prefix = query.namePrefix, !prefix.isEmpty {
            // Byte-wise, as in SQLite (no LIKE: it has wildcards); the column is COLLATE "C".
            let placeholder = statement.bind(prefix)
            statement.append(" AND starts_with(d.name, \(placeholder))")
        }
        for (key, value) in labels.dropFirst() {
            let keyPlaceholder = statement.bind(key)
            let valuePlaceholder = statement.bind(value)
            statement.append(
                " AND EXISTS (SELECT 1 FROM device_labels l WHERE l.device_id = d.id AND l.key = \(keyPlaceholder) AND l.value = \(valuePlaceholder))"
            )
        }
        let limit = statement.bind(Int64(max(0, query.limit)))
        statement.append(" ORDER BY \(idColumn) LIMIT \(limit)")
        return try session.rows(statement.query).map(Self.device)
    }

    func deleteDevice(id: String) throws {
        guard Self.storable(id) else { return }
        try session.execute("DELETE FROM device_labels WHERE device_id = \(id)")
        try session.execute("DELETE FROM credentials WHERE device_id = \(id)")
        try session.execute("DELETE FROM claim_codes WHERE device_id = \(id)")
        try session.execute("DELETE FROM devices WHERE id = \(id)")
    }

    func markSeen(deviceIDs: [String], at time: Date) throws {
        let ids = deviceIDs.filter(Self.storable)
        guard !ids.isEmpty else { return }
        // In chunks, so that one statement never carries an unbounded array.
        var start = 0
        while start < ids.count {
            let chunk = Array(ids[start..<min(start + 5000, ids.count)])
            try session.execute(
                "UPDATE devices SET last_seen_at = \(Self.milliseconds(time)) WHERE id = ANY(\(chunk)::text[])"
            )
            start += chunk.count
        }
    }

    private static func device(_ row: PostgresRandomAccessRow) throws -> Device {
        Device(
            id: try row.value("id"),
            tenantID: try row.value("tenant_id"),
            name: try row.value("name"),
            profileID: try row.optional("profile_id"),
            labels: decode([String: String].self, try row.optional("labels"), default: [:]),
            metadata: decode(JSONValue.self, try row.optional("metadata"), default: .emptyObject),
            createdAt: try requiredDate(row, "created_at"),
            lastSeenAt: try date(row, "last_seen_at"),
            status: DeviceStatus(rawValue: try row.value("status")) ?? .disabled
        )
    }

    // MARK: Credentials

    func insertCredential(_ credential: Credential) throws {
        try insert(
            """
            INSERT INTO credentials (id, tenant_id, device_id, type, created_at, expires_at, revoked_at, token_hash, username,
                password_hash, certificate_fingerprint, certificate_pem, certificate_common_name)
            VALUES (\(credential.id), \(credential.tenantID), \(credential.deviceID), \(credential.type.rawValue),
                \(Self.milliseconds(credential.createdAt)), \(Self.milliseconds(credential.expiresAt)),
                \(Self.milliseconds(credential.revokedAt)), \(credential.tokenHash), \(credential.username), \(credential.passwordHash),
                \(credential.certificateFingerprint), \(credential.certificatePEM), \(credential.certificateCommonName))
            ON CONFLICT DO NOTHING
            """
        )
    }

    func credential(id: String) throws -> Credential? {
        guard Self.storable(id) else { return nil }
        return try session.row("SELECT * FROM credentials WHERE id = \(id)").flatMap(Self.credential)
    }

    func credentials(deviceID: String, tenantID: String) throws -> [Credential] {
        guard Self.storable(deviceID), Self.storable(tenantID) else { return [] }
        return try session.rows(
            "SELECT * FROM credentials WHERE device_id = \(deviceID) AND tenant_id = \(tenantID) ORDER BY created_at, id"
        ).compactMap(Self.credential)
    }

    func credential(tokenHash: String) throws -> Credential? {
        guard Self.storable(tokenHash) else { return nil }
        return try session.row("SELECT * FROM credentials WHERE token_hash = \(tokenHash)").flatMap(Self.credential)
    }

    func credential(username: String) throws -> Credential? {
        guard Self.storable(username) else { return nil }
        return try session.row("SELECT * FROM credentials WHERE username = \(username) AND revoked_at IS NULL").flatMap(
            Self.credential
        )
    }

    func credential(certificateFingerprint: String) throws -> Credential? {
        guard Self.storable(certificateFingerprint) else { return nil }
        return try session.row("SELECT * FROM credentials WHERE certificate_fingerprint = \(certificateFingerprint)")
            .flatMap(Self.credential)
    }

    func revokeCredential(id: String, at time: Date) throws {
        guard Self.storable(id) else { return }
        try session.execute(
            "UPDATE credentials SET revoked_at = \(Self.milliseconds(time)) WHERE id = \(id) AND revoked_at IS NULL"
        )
    }

    private static func credential(_ row: PostgresRandomAccessRow) throws -> Credential? {
        guard let type = CredentialType(rawValue: try row.value("type")) else { return nil }
        return Credential(
            id: try row.value("id"),
            tenantID: try row.value("tenant_id"),
            deviceID: try row.value("device_id"),
            type: type,
            createdAt: try requiredDate(row, "created_at"),
            expiresAt: try date(row, "expires_at"),
            revokedAt: try date(row, "revoked_at"),
            tokenHash: try row.optional("token_hash"),
            username: try row.optional("username"),
            passwordHash: try row.optional("password_hash"),
            certificateFingerprint: try row.optional("certificate_fingerprint"),
            certificatePEM: try row.optional("certificate_pem"),
            certificateCommonName: try row.optional("certificate_common_name")
        )
    }

    // MARK: Certificate authorities

    func insertCertificateAuthority(_ authority: CertificateAuthority) throws {
        try insert(
            """
            INSERT INTO certificate_authorities (id, tenant_id, kind, certificate_pem, private_key_pem, fingerprint, subject, created_at)
            VALUES (\(authority.id), \(authority.tenantID), \(authority.kind.rawValue), \(authority.certificatePEM),
                \(authority.privateKeyPEM), \(authority.fingerprint), \(authority.subject), \(Self.milliseconds(authority.createdAt)))
            ON CONFLICT DO NOTHING
            """
        )
    }

    func certificateAuthorities(tenantID: String) throws -> [CertificateAuthority] {
        guard Self.storable(tenantID) else { return [] }
        return try session.rows(
            "SELECT * FROM certificate_authorities WHERE tenant_id = \(tenantID) ORDER BY created_at, id"
        )
        .compactMap(Self.authority)
    }

    func allCertificateAuthorities() throws -> [CertificateAuthority] {
        try session.rows("SELECT * FROM certificate_authorities ORDER BY tenant_id, created_at, id").compactMap(
            Self.authority
        )
    }

    private static func authority(_ row: PostgresRandomAccessRow) throws -> CertificateAuthority? {
        guard let kind = CertificateAuthority.Kind(rawValue: try row.value("kind")) else { return nil }
        return CertificateAuthority(
            id: try row.value("id"),
            tenantID: try row.value("tenant_id"),
            kind: kind,
            certificatePEM: try row.value("certificate_pem"),
            privateKeyPEM: try row.optional("private_key_pem"),
            fingerprint: try row.value("fingerprint"),
            subject: try row.value("subject"),
            createdAt: try requiredDate(row, "created_at")
        )
    }

    // MARK: Claim codes

    func saveClaimCode(_ code: ClaimCode) throws {
        try session.execute(
            """
            INSERT INTO claim_codes (device_id, code_hash, created_at, expires_at)
            VALUES (\(code.deviceID), \(code.codeHash), \(Self.milliseconds(code.createdAt)), \(Self.milliseconds(code.expiresAt)))
            ON CONFLICT (device_id) DO UPDATE SET code_hash = EXCLUDED.code_hash, created_at = EXCLUDED.created_at,
                expires_at = EXCLUDED.expires_at
            """
        )
    }

    func claimCode(deviceID: String) throws -> ClaimCode? {
        guard Self.storable(deviceID) else { return nil }
        return try session.row("SELECT * FROM claim_codes WHERE device_id = \(deviceID)").map(Self.claimCode)
    }

    func claimCodes(deviceName: String) throws -> [ClaimCode] {
        guard Self.storable(deviceName) else { return [] }
        return try session.rows(
            "SELECT c.* FROM claim_codes c JOIN devices d ON d.id = c.device_id WHERE d.name = \(deviceName)"
        )
        .map(Self.claimCode)
    }

    func deleteClaimCode(deviceID: String) throws {
        guard Self.storable(deviceID) else { return }
        try session.execute("DELETE FROM claim_codes WHERE device_id = \(deviceID)")
    }

    private static func claimCode(_ row: PostgresRandomAccessRow) throws -> ClaimCode {
        ClaimCode(
            deviceID: try row.value("device_id"),
            codeHash: try row.value("code_hash"),
            createdAt: try requiredDate(row, "created_at"),
            expiresAt: try requiredDate(row, "expires_at")
        )
    }

    // MARK: Audit log

    func lastAuditEntry() throws -> AuditEntry? {
        try session.row("SELECT * FROM audit_log ORDER BY sequence DESC LIMIT 1").map(Self.auditEntry)
    }

    func appendAuditEntry(_ entry: AuditEntry) throws {
        try insert(
            """
            INSERT INTO audit_log (sequence, timestamp_ms, tenant_id, actor_kind, actor_id, actor_remote_address, action, target,
                details, previous_hash, hash)
            VALUES (\(entry.sequence), \(entry.timestampMilliseconds), \(entry.tenantID), \(entry.actor.kind.rawValue),
                \(entry.actor.id), \(entry.actor.remoteAddress), \(entry.action), \(entry.target), \(try Self.json(entry.details)),
                \(entry.previousHash), \(entry.hash))
            ON CONFLICT DO NOTHING
            """
        )
    }

    func auditEntries(tenantID: String, before: Int64?, limit: Int) throws -> [AuditEntry] {
        guard Self.storable(tenantID) else { return [] }
        return try session.rows(
            """
            SELECT * FROM audit_log WHERE tenant_id = \(tenantID) AND sequence < \(before ?? Int64.max)
            ORDER BY sequence DESC LIMIT \(Int64(max(0, limit)))
            """
        ).map(Self.auditEntry)
    }

    func auditEntries(after: Int64, limit: Int) throws -> [AuditEntry] {
        try session.rows(
            "SELECT * FROM audit_log WHERE sequence > \(after) ORDER BY sequence LIMIT \(Int64(max(0, limit)))"
        )
        .map(Self.auditEntry)
    }

    /// Reads an audit row without trusting it: a NULL where none belongs, an unknown actor kind
    /// or details that are not JSON (all signs of editing by hand) yield an entry that cannot
    /// verify, never a crash.
    private static func auditEntry(_ row: PostgresRandomAccessRow) -> AuditEntry {
        var readable = true
        func text(_ column: String) -> String {
            if let value = try? row.value(column, as: String.self) { return value }
            readable = false
            return ""
        }
        func optionalText(_ column: String) -> String? {
            do {
                return try row.optional(column, as: String.self)
            } catch {
                readable = false
                return nil
            }
        }
        func integer(_ column: String) -> Int64 {
            if let value = try? row.value(column, as: Int64.self) { return value }
            readable = false
            return -1
        }
        let kind =
            AuditActor.Kind(rawValue: text("actor_kind"))
            ?? {
                readable = false
                return .system
            }()
        let details: [String: String]
        if let decoded = try? JSONDecoder().decode([String: String].self, from: Data(text("details").utf8)) {
            details = decoded
        } else {
            readable = false
            details = [:]
        }
        let entry = AuditEntry(
            sequence: integer("sequence"),
            timestampMilliseconds: integer("timestamp_ms"),
            tenantID: optionalText("tenant_id"),
            actor: AuditActor(kind: kind, id: text("actor_id"), remoteAddress: optionalText("actor_remote_address")),
            action: text("action"),
            target: text("target"),
            details: details,
            previousHash: text("previous_hash"),
            hash: text("hash")
        )
        guard readable else {
            // A hash that cannot match: the verifier reports this entry as changed.
            var unreadable = entry
            unreadable.hash = "unreadable"
            return unreadable
        }
        return entry
    }
}

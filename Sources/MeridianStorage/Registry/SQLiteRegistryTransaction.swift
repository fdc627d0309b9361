import Foundation
import GRDB
import MeridianCore

/// ``RegistryTransaction`` over one GRDB connection inside a transaction.
struct SQLiteRegistryTransaction: RegistryTransaction {
    let db: Database

    init(_ db: Database) {
        self.db = db
    }

    // MARK: helpers

    private func run(_ sql: String, _ arguments: StatementArguments = []) throws {
        do {
            try db.cachedStatement(sql: sql).execute(arguments: arguments)
        } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE
            || error.extendedResultCode == .SQLITE_CONSTRAINT_PRIMARYKEY
        {
            throw RegistryError.conflict(nil, "already exists")
        }
    }

    private func one(_ sql: String, _ arguments: StatementArguments = []) throws -> Row? {
        try Row.fetchOne(db.cachedStatement(sql: sql), arguments: arguments)
    }

    private func all(_ sql: String, _ arguments: StatementArguments = []) throws -> [Row] {
        try Row.fetchAll(db.cachedStatement(sql: sql), arguments: arguments)
    }

    /// Times are stored as milliseconds since 1970 (the registry works in whole milliseconds, so
    /// a time reads back equal to what was written).
    private static func seconds(_ date: Date?) -> Int64? {
        date.map { Int64(($0.timeIntervalSince1970 * 1000).rounded()) }
    }
    private static func date(_ row: Row, _ column: String) -> Date? {
        (row[column] as Int64?).map { Date(timeIntervalSince1970: Double($0) / 1000) }
    }
    private static func requiredDate(_ row: Row, _ column: String) -> Date {
        date(row, column) ?? Date(timeIntervalSince1970: 0)
    }

    private static func json<T: Encodable>(_ value: T) throws -> String {
        try JSONColumn.encode(value)
    }

    private static func decode<T: Decodable>(_ type: T.Type, _ text: String?, default value: T) -> T {
        JSONColumn.decode(type, text, default: value)
    }

    // MARK: Tenants

    func tenantCount() throws -> Int {
        try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM tenants") ?? 0
    }

    func insertTenant(_ tenant: Tenant) throws {
        try run("INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)", [tenant.id, tenant.name, Self.seconds(tenant.createdAt)])
    }

    func tenant(id: String) throws -> Tenant? {
        try one("SELECT * FROM tenants WHERE id = ?", [id]).map(Self.tenant)
    }

    private static func tenant(_ row: Row) -> Tenant {
        Tenant(id: row["id"], name: row["name"], createdAt: requiredDate(row, "created_at"))
    }

    // MARK: Users

    func insertUser(_ user: User) throws {
        try run(
            "INSERT INTO users (id, username, password_hash, created_at, disabled) VALUES (?, ?, ?, ?, ?)",
            [user.id, user.username, user.passwordHash, Self.seconds(user.createdAt), user.disabled]
        )
    }

    func user(id: String) throws -> User? {
        try one("SELECT * FROM users WHERE id = ?", [id]).map(Self.user)
    }

    func user(username: String) throws -> User? {
        try one("SELECT * FROM users WHERE username = ?", [username]).map(Self.user)
    }

    private static func user(_ row: Row) -> User {
        User(id: row["id"], username: row["username"], passwordHash: row["password_hash"], createdAt: requiredDate(row, "created_at"), disabled: row["disabled"])
    }

    func saveMembership(_ membership: Membership) throws {
        try run(
            "INSERT OR REPLACE INTO memberships (user_id, tenant_id, role) VALUES (?, ?, ?)",
            [membership.userID, membership.tenantID, membership.role.rawValue]
        )
    }

    func membership(userID: String, tenantID: String) throws -> Membership? {
        try one("SELECT * FROM memberships WHERE user_id = ? AND tenant_id = ?", [userID, tenantID]).flatMap(Self.membership)
    }

    func memberships(userID: String) throws -> [Membership] {
        try all("SELECT * FROM memberships WHERE user_id = ? ORDER BY tenant_id", [userID]).compactMap(Self.membership)
    }

    func memberships(tenantID: String) throws -> [Membership] {
        try all("SELECT * FROM memberships WHERE tenant_id = ? ORDER BY user_id", [tenantID]).compactMap(Self.membership)
    }

    func deleteMembership(userID: String, tenantID: String) throws {
        try run("DELETE FROM memberships WHERE user_id = ? AND tenant_id = ?", [userID, tenantID])
    }

    private static func membership(_ row: Row) -> Membership? {
        guard let role = Role(rawValue: row["role"]) else { return nil }
        return Membership(userID: row["user_id"], tenantID: row["tenant_id"], role: role)
    }

    // MARK: Refresh tokens

    func insertRefreshToken(_ token: RefreshToken) throws {
        try run(
            "INSERT INTO refresh_tokens (token_hash, user_id, tenant_id, created_at, expires_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?)",
            [token.tokenHash, token.userID, token.tenantID, Self.seconds(token.createdAt), Self.seconds(token.expiresAt), Self.seconds(token.revokedAt)]
        )
    }

    func refreshToken(hash: String) throws -> RefreshToken? {
        try one("SELECT * FROM refresh_tokens WHERE token_hash = ?", [hash]).map { row in
            RefreshToken(
                tokenHash: row["token_hash"], userID: row["user_id"], tenantID: row["tenant_id"],
                createdAt: Self.requiredDate(row, "created_at"), expiresAt: Self.requiredDate(row, "expires_at"),
                revokedAt: Self.date(row, "revoked_at")
            )
        }
    }

    func revokeRefreshToken(hash: String, at time: Date) throws {
        try run("UPDATE refresh_tokens SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL", [Self.seconds(time), hash])
    }

    // MARK: API keys

    func insertAPIKey(_ key: APIKey) throws {
        try run(
            "INSERT INTO api_keys (id, tenant_id, name, role, key_hash, prefix, created_at, expires_at, last_used_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                key.id, key.tenantID, key.name, key.role.rawValue, key.keyHash, key.prefix, Self.seconds(key.createdAt),
                Self.seconds(key.expiresAt), Self.seconds(key.lastUsedAt), Self.seconds(key.revokedAt),
            ]
        )
    }

    func apiKey(id: String) throws -> APIKey? {
        try one("SELECT * FROM api_keys WHERE id = ?", [id]).flatMap(Self.apiKey)
    }

    func apiKey(hash: String) throws -> APIKey? {
        try one("SELECT * FROM api_keys WHERE key_hash = ?", [hash]).flatMap(Self.apiKey)
    }

    func apiKeys(tenantID: String) throws -> [APIKey] {
        try all("SELECT * FROM api_keys WHERE tenant_id = ? ORDER BY created_at, id", [tenantID]).compactMap(Self.apiKey)
    }

    func revokeAPIKey(id: String, at time: Date) throws {
        try run("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", [Self.seconds(time), id])
    }

    func setAPIKeyLastUsed(id: String, at time: Date) throws {
        try run("UPDATE api_keys SET last_used_at = ? WHERE id = ?", [Self.seconds(time), id])
    }

    private static func apiKey(_ row: Row) -> APIKey? {
        guard let role = Role(rawValue: row["role"]) else { return nil }
        return APIKey(
            id: row["id"], tenantID: row["tenant_id"], name: row["name"], role: role, keyHash: row["key_hash"],
            prefix: row["prefix"], createdAt: requiredDate(row, "created_at"), expiresAt: date(row, "expires_at"),
            lastUsedAt: date(row, "last_used_at"), revokedAt: date(row, "revoked_at")
        )
    }

    // MARK: Profiles

    func insertProfile(_ profile: DeviceProfile) throws {
        try run(
            "INSERT INTO profiles (id, tenant_id, name, description, transport, provisioning_mode, provisioning_key, provisioning_secret_hash, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                profile.id, profile.tenantID, profile.name, profile.description, try Self.json(profile.transport),
                profile.provisioning.mode.rawValue, profile.provisioning.key, profile.provisioning.secretHash,
                Self.seconds(profile.createdAt),
            ]
        )
    }

    func updateProfile(_ profile: DeviceProfile) throws {
        try run(
            "UPDATE profiles SET name = ?, description = ?, transport = ?, provisioning_mode = ?, provisioning_key = ?, provisioning_secret_hash = ? WHERE id = ?",
            [
                profile.name, profile.description, try Self.json(profile.transport), profile.provisioning.mode.rawValue,
                profile.provisioning.key, profile.provisioning.secretHash, profile.id,
            ]
        )
    }

    func profile(id: String) throws -> DeviceProfile? {
        try one("SELECT * FROM profiles WHERE id = ?", [id]).map(Self.profile)
    }

    func profile(tenantID: String, name: String) throws -> DeviceProfile? {
        try one("SELECT * FROM profiles WHERE tenant_id = ? AND name = ?", [tenantID, name]).map(Self.profile)
    }

    func profile(provisioningKey: String) throws -> DeviceProfile? {
        try one("SELECT * FROM profiles WHERE provisioning_key = ?", [provisioningKey]).map(Self.profile)
    }

    func profiles(tenantID: String) throws -> [DeviceProfile] {
        try all("SELECT * FROM profiles WHERE tenant_id = ? ORDER BY name", [tenantID]).map(Self.profile)
    }

    func deleteProfile(id: String) throws {
        try run("DELETE FROM profiles WHERE id = ?", [id])
    }

    func deviceCount(profileID: String) throws -> Int {
        try Int.fetchOne(db.cachedStatement(sql: "SELECT COUNT(*) FROM devices WHERE profile_id = ?"), arguments: [profileID]) ?? 0
    }

    private static func profile(_ row: Row) -> DeviceProfile {
        DeviceProfile(
            id: row["id"], tenantID: row["tenant_id"], name: row["name"], description: row["description"],
            transport: decode(JSONValue.self, row["transport"], default: .emptyObject),
            provisioning: ProvisioningSettings(
                mode: ProvisioningSettings.Mode(rawValue: row["provisioning_mode"]) ?? .disabled,
                key: row["provisioning_key"], secretHash: row["provisioning_secret_hash"]
            ),
            createdAt: requiredDate(row, "created_at")
        )
    }

    // MARK: Devices

    func insertDevice(_ device: Device) throws {
        try run(
            "INSERT INTO devices (id, tenant_id, name, profile_id, labels, metadata, created_at, last_seen_at, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                device.id, device.tenantID, device.name, device.profileID, try Self.json(device.labels),
                try Self.json(device.metadata), Self.seconds(device.createdAt), Self.seconds(device.lastSeenAt),
                device.status.rawValue,
            ]
        )
        try insertLabels(device)
    }

    private func insertLabels(_ device: Device) throws {
        for (key, value) in device.labels {
            try run("INSERT INTO device_labels (device_id, tenant_id, key, value) VALUES (?, ?, ?, ?)", [device.id, device.tenantID, key, value])
        }
    }

    func updateDevice(_ device: Device) throws {
        try run(
            "UPDATE devices SET tenant_id = ?, name = ?, profile_id = ?, labels = ?, metadata = ?, last_seen_at = ?, status = ? WHERE id = ?",
            [
                device.tenantID, device.name, device.profileID, try Self.json(device.labels), try Self.json(device.metadata),
                Self.seconds(device.lastSeenAt), device.status.rawValue, device.id,
            ]
        )
        try run("DELETE FROM device_labels WHERE device_id = ?", [device.id])
        try insertLabels(device)
    }

    func device(id: String) throws -> Device? {
        try one("SELECT * FROM devices WHERE id = ?", [id]).map(Self.device)
    }

    func device(tenantID: String, name: String) throws -> Device? {
        try one("SELECT * FROM devices WHERE tenant_id = ? AND name = ?", [tenantID, name]).map(Self.device)
    }

    func devices(_ query: DeviceQuery) throws -> [Device] {
        // With a label filter, the first label's index drives the scan (only matching devices are
        // read, already in id order); otherwise the tenant's (tenant_id, id) index does.
        let labels = query.labels.sorted { $0.key < $1.key }
        var sql: String
        var arguments: StatementArguments
        let idColumn: String
        if let (key, value) = labels.first {
            sql = """
                SELECT d.* FROM device_labels l0 JOIN devices d ON d.id = l0.device_id
                WHERE l0.tenant_id = ? AND l0.key = ? AND l0.value = ? AND d.tenant_id = ?
                """
            arguments = [query.tenantID, key, value, query.tenantID]
            idColumn = "l0.device_id"
        } else {
            sql = "SELECT d.* FROM devices d WHERE d.tenant_id = ?"
            arguments = [query.tenantID]
            idColumn = "d.id"
        }
        if let after = query.after {
            sql += " AND \(idColumn) > ?"
            arguments += [after]
        }
        if let status = query.status {
            sql += " AND d.status = ?"
            arguments += [status.rawValue]
        }
        if let profileID = query.profileID {
            sql += " AND d.profile_id = ?"
            arguments += [profileID]
        }
        if let prefix = query.namePrefix, !prefix.isEmpty {
            // Byte-wise prefix comparison (no LIKE: it is case-insensitive and has wildcards).
            sql += " AND substr(CAST(d.name AS BLOB), 1, ?) = CAST(? AS BLOB)"
            arguments += [prefix.utf8.count, prefix]
        }
        for (key, value) in labels.dropFirst() {
            sql += " AND EXISTS (SELECT 1 FROM device_labels l WHERE l.device_id = d.id AND l.key = ? AND l.value = ?)"
            arguments += [key, value]
        }
        sql += " ORDER BY \(idColumn) LIMIT ?"
        arguments += [max(0, query.limit)]
        return try Row.fetchAll(db, sql: sql, arguments: arguments).map(Self.device)
    }

    func deleteDevice(id: String) throws {
        try run("DELETE FROM device_labels WHERE device_id = ?", [id])
        try run("DELETE FROM credentials WHERE device_id = ?", [id])
        try run("DELETE FROM claim_codes WHERE device_id = ?", [id])
        try run("DELETE FROM devices WHERE id = ?", [id])
    }

    func markSeen(deviceIDs: [String], at time: Date) throws {
        // In chunks that stay below SQLite's bound-parameter limit.
        var start = 0
        while start < deviceIDs.count {
            let chunk = deviceIDs[start..<min(start + 500, deviceIDs.count)]
            let placeholders = Array(repeating: "?", count: chunk.count).joined(separator: ",")
            var arguments: StatementArguments = [Self.seconds(time)]
            arguments += StatementArguments(Array(chunk))
            try db.execute(sql: "UPDATE devices SET last_seen_at = ? WHERE id IN (\(placeholders))", arguments: arguments)
            start += chunk.count
        }
    }

    private static func device(_ row: Row) -> Device {
        Device(
            id: row["id"], tenantID: row["tenant_id"], name: row["name"], profileID: row["profile_id"],
            labels: decode([String: String].self, row["labels"], default: [:]),
            metadata: decode(JSONValue.self, row["metadata"], default: .emptyObject),
            createdAt: requiredDate(row, "created_at"), lastSeenAt: date(row, "last_seen_at"),
            status: DeviceStatus(rawValue: row["status"]) ?? .disabled
        )
    }

    // MARK: Credentials

    func insertCredential(_ credential: Credential) throws {
        try run(
            """
            INSERT INTO credentials (id, tenant_id, device_id, type, created_at, expires_at, revoked_at, token_hash, username,
                password_hash, certificate_fingerprint, certificate_pem, certificate_common_name)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            [
                credential.id, credential.tenantID, credential.deviceID, credential.type.rawValue,
                Self.seconds(credential.createdAt), Self.seconds(credential.expiresAt), Self.seconds(credential.revokedAt),
                credential.tokenHash, credential.username, credential.passwordHash, credential.certificateFingerprint,
                credential.certificatePEM, credential.certificateCommonName,
            ]
        )
    }

    func credential(id: String) throws -> Credential? {
        try one("SELECT * FROM credentials WHERE id = ?", [id]).flatMap(Self.credential)
    }

    func credentials(deviceID: String, tenantID: String) throws -> [Credential] {
        try all("SELECT * FROM credentials WHERE device_id = ? AND tenant_id = ? ORDER BY created_at, id", [deviceID, tenantID])
            .compactMap(Self.credential)
    }

    func credential(tokenHash: String) throws -> Credential? {
        try one("SELECT * FROM credentials WHERE token_hash = ?", [tokenHash]).flatMap(Self.credential)
    }

    func credential(username: String) throws -> Credential? {
        try one("SELECT * FROM credentials WHERE username = ? AND revoked_at IS NULL", [username]).flatMap(Self.credential)
    }

    func credential(certificateFingerprint: String) throws -> Credential? {
        try one("SELECT * FROM credentials WHERE certificate_fingerprint = ?", [certificateFingerprint]).flatMap(Self.credential)
    }

    func revokeCredential(id: String, at time: Date) throws {
        try run("UPDATE credentials SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", [Self.seconds(time), id])
    }

    private static func credential(_ row: Row) -> Credential? {
        guard let type = CredentialType(rawValue: row["type"]) else { return nil }
        return Credential(
            id: row["id"], tenantID: row["tenant_id"], deviceID: row["device_id"], type: type,
            createdAt: requiredDate(row, "created_at"), expiresAt: date(row, "expires_at"), revokedAt: date(row, "revoked_at"),
            tokenHash: row["token_hash"], username: row["username"], passwordHash: row["password_hash"],
            certificateFingerprint: row["certificate_fingerprint"], certificatePEM: row["certificate_pem"],
            certificateCommonName: row["certificate_common_name"]
        )
    }

    // MARK: Certificate authorities

    func insertCertificateAuthority(_ authority: CertificateAuthority) throws {
        try run(
            "INSERT INTO certificate_authorities (id, tenant_id, kind, certificate_pem, private_key_pem, fingerprint, subject, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                authority.id, authority.tenantID, authority.kind.rawValue, authority.certificatePEM, authority.privateKeyPEM,
                authority.fingerprint, authority.subject, Self.seconds(authority.createdAt),
            ]
        )
    }

    func certificateAuthorities(tenantID: String) throws -> [CertificateAuthority] {
        try all("SELECT * FROM certificate_authorities WHERE tenant_id = ? ORDER BY created_at, id", [tenantID]).compactMap(Self.authority)
    }

    func allCertificateAuthorities() throws -> [CertificateAuthority] {
        try all("SELECT * FROM certificate_authorities ORDER BY tenant_id, created_at, id").compactMap(Self.authority)
    }

    private static func authority(_ row: Row) -> CertificateAuthority? {
        guard let kind = CertificateAuthority.Kind(rawValue: row["kind"]) else { return nil }
        return CertificateAuthority(
            id: row["id"], tenantID: row["tenant_id"], kind: kind, certificatePEM: row["certificate_pem"],
            privateKeyPEM: row["private_key_pem"], fingerprint: row["fingerprint"], subject: row["subject"],
            createdAt: requiredDate(row, "created_at")
        )
    }

    // MARK: Claim codes

    func saveClaimCode(_ code: ClaimCode) throws {
        try run(
            "INSERT OR REPLACE INTO claim_codes (device_id, code_hash, created_at, expires_at) VALUES (?, ?, ?, ?)",
            [code.deviceID, code.codeHash, Self.seconds(code.createdAt), Self.seconds(code.expiresAt)]
        )
    }

    func claimCode(deviceID: String) throws -> ClaimCode? {
        try one("SELECT * FROM claim_codes WHERE device_id = ?", [deviceID]).map(Self.claimCode)
    }

    func claimCodes(deviceName: String) throws -> [ClaimCode] {
        try all("SELECT c.* FROM claim_codes c JOIN devices d ON d.id = c.device_id WHERE d.name = ?", [deviceName]).map(Self.claimCode)
    }

    func deleteClaimCode(deviceID: String) throws {
        try run("DELETE FROM claim_codes WHERE device_id = ?", [deviceID])
    }

    private static func claimCode(_ row: Row) -> ClaimCode {
        ClaimCode(deviceID: row["device_id"], codeHash: row["code_hash"], createdAt: requiredDate(row, "created_at"), expiresAt: requiredDate(row, "expires_at"))
    }

    // MARK: Audit log

    func lastAuditEntry() throws -> AuditEntry? {
        try one("SELECT * FROM audit_log ORDER BY sequence DESC LIMIT 1").map(Self.auditEntry)
    }

    func appendAuditEntry(_ entry: AuditEntry) throws {
        try run(
            """
            INSERT INTO audit_log (sequence, timestamp_ms, tenant_id, actor_kind, actor_id, actor_remote_address, action, target,
                details, previous_hash, hash)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            [
                entry.sequence, entry.timestampMilliseconds, entry.tenantID, entry.actor.kind.rawValue, entry.actor.id,
                entry.actor.remoteAddress, entry.action, entry.target, try Self.json(entry.details), entry.previousHash, entry.hash,
            ]
        )
    }

    func auditEntries(tenantID: String, before: Int64?, limit: Int) throws -> [AuditEntry] {
        try all(
            "SELECT * FROM audit_log WHERE tenant_id = ? AND sequence < ? ORDER BY sequence DESC LIMIT ?",
            [tenantID, before ?? Int64.max, max(0, limit)]
        ).map(Self.auditEntry)
    }

    func auditEntries(after: Int64, limit: Int) throws -> [AuditEntry] {
        try all("SELECT * FROM audit_log WHERE sequence > ? ORDER BY sequence LIMIT ?", [after, max(0, limit)]).map(Self.auditEntry)
    }

    /// Reads an audit row without trusting it: a NULL, a value of the wrong type or an unknown
    /// actor kind (all signs of editing by hand) yields an entry that cannot verify, never a
    /// crash.
    private static func auditEntry(_ row: Row) -> AuditEntry {
        var readable = true
        func text(_ column: String) -> String {
            if let value = String.fromDatabaseValue(row[column] as DatabaseValue) { return value }
            readable = false
            return ""
        }
        func optionalText(_ column: String) -> String? {
            let value = row[column] as DatabaseValue
            if value.isNull { return nil }
            if let text = String.fromDatabaseValue(value) { return text }
            readable = false
            return nil
        }
        func integer(_ column: String) -> Int64 {
            if let value = Int64.fromDatabaseValue(row[column] as DatabaseValue) { return value }
            readable = false
            return -1
        }
        let kindText = text("actor_kind")
        let kind = AuditActor.Kind(rawValue: kindText) ?? {
            readable = false
            return .system
        }()
        let detailsText = text("details")
        let details: [String: String]
        if let decoded = try? JSONDecoder().decode([String: String].self, from: Data(detailsText.utf8)) {
            details = decoded
        } else {
            readable = false
            details = [:]
        }
        let entry = AuditEntry(
            sequence: integer("sequence"), timestampMilliseconds: integer("timestamp_ms"), tenantID: optionalText("tenant_id"),
            actor: AuditActor(kind: kind, id: text("actor_id"), remoteAddress: optionalText("actor_remote_address")),
            action: text("action"), target: text("target"), details: details, previousHash: text("previous_hash"),
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

import Foundation
import Synchronization

// CONTRACT — the signatures below are what the API (MeridianServer/API) and the broker
// integration (MeridianServer/Access) call. Bodies are filled in by the registry work; keep the
// signatures (adding is fine).

/// The platform's registry of tenants, users, API keys, devices, profiles, credentials,
/// certificate authorities and the audit log: validation, tenant scoping, audit records, and
/// change notifications. Every change is written together with its audit entry, in one
/// transaction.
public final class Registry: Sendable {
    let store: any RegistryStore
    let now: @Sendable () -> Date
    private let observers = Mutex<[@Sendable (RegistryChange) -> Void]>([])

    /// Largest page of a list.
    public static let maxPageSize = 1000
    /// Largest bulk import.
    public static let maxImportRows = 100_000
    /// How often an API key's last-used time is written at most.
    static let lastUsedResolution: TimeInterval = 60

    /// `now` is the registry's clock; its times are kept to whole milliseconds (what storage
    /// keeps), so what a call returns equals what a later read returns.
    public init(store: any RegistryStore, now: @escaping @Sendable () -> Date = { Date() }) {
        self.store = store
        self.now = { Registry.milliseconds(now()) }
    }

    /// `date` rounded to whole milliseconds.
    public static func milliseconds(_ date: Date) -> Date {
        Date(timeIntervalSince1970: (date.timeIntervalSince1970 * 1000).rounded() / 1000)
    }

    /// Called (synchronously, after commit) for every change that affects connected clients.
    public func observe(_ observer: @escaping @Sendable (RegistryChange) -> Void) {
        observers.withLock { $0.append(observer) }
    }

    func currentObservers() -> [@Sendable (RegistryChange) -> Void] {
        observers.withLock { $0 }
    }

    // MARK: First start

    /// On an empty database: creates tenant `default` and either an admin API key with exactly
    /// `apiKey`, or (nil) an admin user `admin` with a random password returned once. On a
    /// database that has tenants: nil, nothing changes.
    ///
    /// The key (or user) gets role `owner`.
    public func bootstrapIfEmpty(apiKey: String?) async throws -> BootstrapResult? {
        let empty = try await store.read { try $0.tenantCount() == 0 }
        guard empty else { return nil }
        if let apiKey, apiKey.isEmpty || apiKey.count > 512 {
            throw RegistryError.invalid("apiKey", "the bootstrap API key must be 1-512 characters")
        }
        let password = apiKey == nil ? Secrets.generate() : nil
        let passwordHash = password.map { PasswordHash.make($0) }
        let time = now()
        return try await write { tx, changes -> BootstrapResult? in
            guard try tx.tenantCount() == 0 else { return nil }
            let tenant = Tenant(id: MeridianID.generate(), name: "default", createdAt: time)
            try tx.insertTenant(tenant)
            changes.audit(tenant.id, .system, "tenant.create", "tenant:\(tenant.id)", ["name": tenant.name])
            if let apiKey {
                let key = APIKey(
                    id: MeridianID.generate(), tenantID: tenant.id, name: "bootstrap", role: .owner,
                    keyHash: Secrets.sha256(apiKey), prefix: Self.keyPrefix(apiKey), createdAt: time
                )
                try tx.insertAPIKey(key)
                changes.audit(tenant.id, .system, "apikey.create", "apikey:\(key.id)", ["name": key.name, "role": key.role.rawValue])
                return BootstrapResult(tenant: tenant, adminUsername: nil, adminPassword: nil, apiKeyID: key.id)
            }
            let user = User(id: MeridianID.generate(), username: "admin", passwordHash: passwordHash ?? "", createdAt: time)
            try tx.insertUser(user)
            try tx.saveMembership(Membership(userID: user.id, tenantID: tenant.id, role: .owner))
            changes.audit(tenant.id, .system, "user.add", "user:\(user.id)", ["username": user.username, "role": Role.owner.rawValue])
            return BootstrapResult(tenant: tenant, adminUsername: user.username, adminPassword: password, apiKeyID: nil)
        }
    }

    // MARK: Tenants and users

    public func tenants(of userID: String) async throws -> [Tenant] {
        try await store.read { tx in
            try tx.memberships(userID: userID).compactMap { try tx.tenant(id: $0.tenantID) }
        }
    }

    public func tenant(_ id: String) async throws -> Tenant {
        guard let tenant = try await store.read({ try $0.tenant(id: id) }) else { throw RegistryError.notFound("tenant") }
        return tenant
    }

    /// A new tenant whose owner is the calling user (API keys cannot create tenants).
    public func createTenant(name: String, by caller: Caller) async throws -> Tenant {
        guard caller.actor.kind == .user else {
            throw RegistryError(.forbidden, "only users can create tenants")
        }
        if let problem = RegistryValidation.name(name) { throw problem.error }
        let time = now()
        return try await write { tx, changes in
            guard try tx.user(id: caller.actor.id) != nil else { throw RegistryError(.unauthenticated, "unknown user") }
            let tenant = Tenant(id: MeridianID.generate(), name: name, createdAt: time)
            try tx.insertTenant(tenant)
            try tx.saveMembership(Membership(userID: caller.actor.id, tenantID: tenant.id, role: .owner))
            changes.audit(tenant.id, caller.actor, "tenant.create", "tenant:\(tenant.id)", ["name": name])
            return tenant
        }
    }

    /// Adds a user to the caller's tenant (creating the user if the name is new; `password`
    /// required then). Only owners may grant `owner`.
    ///
    /// For a user that exists already, `password` is ignored: a tenant's admin never sets the
    /// password of a user who may belong to other tenants.
    public func addUser(username: String, password: String?, role: Role, by caller: Caller) async throws -> TenantUser {
        try Self.require(caller, .admin)
        try Self.checkGrant(role, by: caller)
        if let problem = RegistryValidation.username(username) { throw problem.error }
        let existing = try await store.read { try $0.user(username: username) }
        var passwordHash: String?
        if existing == nil {
            guard let password else { throw RegistryError.invalid("password", "a new user needs a password") }
            if let problem = RegistryValidation.password(password) { throw problem.error }
            passwordHash = PasswordHash.make(password)
        }
        let time = now()
        let newHash = passwordHash
        return try await write { tx, changes in
            var user: User
            if let found = try tx.user(username: username) {
                user = found
            } else {
                guard let newHash else { throw RegistryError.conflict("username", "the user was just removed; try again") }
                user = User(id: MeridianID.generate(), username: username, passwordHash: newHash, createdAt: time)
                try tx.insertUser(user)
            }
            if try tx.membership(userID: user.id, tenantID: caller.tenantID) != nil {
                throw RegistryError.conflict("username", "the user is already a member of this tenant")
            }
            try tx.saveMembership(Membership(userID: user.id, tenantID: caller.tenantID, role: role))
            changes.audit(caller.tenantID, caller.actor, "user.add", "user:\(user.id)", ["username": username, "role": role.rawValue])
            return TenantUser(user: user.redacted, role: role)
        }
    }

    /// The tenant's users and their roles. Users the registry returns never carry their password
    /// hash (``User/passwordHash`` is empty), here or from any other call.
    public func users(by caller: Caller) async throws -> [TenantUser] {
        try Self.require(caller, .viewer)
        return try await store.read { tx in
            try tx.memberships(tenantID: caller.tenantID).compactMap { membership in
                try tx.user(id: membership.userID).map { TenantUser(user: $0.redacted, role: membership.role) }
            }
        }
    }

    public func setRole(userID: String, role: Role, by caller: Caller) async throws -> TenantUser {
        try Self.require(caller, .admin)
        try Self.checkGrant(role, by: caller)
        return try await write { tx, changes in
            guard let membership = try tx.membership(userID: userID, tenantID: caller.tenantID),
                let user = try tx.user(id: userID)
            else { throw RegistryError.notFound("user") }
            if membership.role == role { return TenantUser(user: user.redacted, role: role) }
            try Self.checkGrant(membership.role, by: caller)
            if membership.role == .owner, try Self.ownerCount(tx, caller.tenantID) <= 1 {
                throw RegistryError.conflict("role", "the last owner of a tenant cannot be demoted")
            }
            try tx.saveMembership(Membership(userID: userID, tenantID: caller.tenantID, role: role))
            changes.audit(
                caller.tenantID, caller.actor, "user.role", "user:\(userID)", ["from": membership.role.rawValue, "to": role.rawValue]
            )
            return TenantUser(user: user.redacted, role: role)
        }
    }

    /// Removes the user from the caller's tenant (the last owner cannot be removed).
    public func removeUser(userID: String, by caller: Caller) async throws {
        try Self.require(caller, .admin)
        try await write { tx, changes in
            guard let membership = try tx.membership(userID: userID, tenantID: caller.tenantID) else {
                throw RegistryError.notFound("user")
            }
            try Self.checkGrant(membership.role, by: caller)
            if membership.role == .owner, try Self.ownerCount(tx, caller.tenantID) <= 1 {
                throw RegistryError.conflict(nil, "the last owner of a tenant cannot be removed")
            }
            try tx.deleteMembership(userID: userID, tenantID: caller.tenantID)
            changes.audit(caller.tenantID, caller.actor, "user.remove", "user:\(userID)", ["role": membership.role.rawValue])
        }
    }

    /// Checks a user's password; throws `.unauthenticated` (same message whether the user exists
    /// or not).
    public func login(username: String, password: String, remoteAddress: String?) async throws -> LoginResult {
        let found = try await store.read { tx -> (User, [Membership])? in
            guard let user = try tx.user(username: username) else { return nil }
            return (user, try tx.memberships(userID: user.id))
        }
        let failure = RegistryError(.unauthenticated, "unknown user name or wrong password")
        guard let (user, memberships) = found else {
            // The same work as for a real user, so timing does not tell who exists.
            _ = await PasswordHash.verifyOffPool(password, against: Self.dummyPasswordHash)
            throw failure
        }
        guard await PasswordHash.verifyOffPool(password, against: user.passwordHash), !user.disabled else { throw failure }
        return LoginResult(user: user.redacted, memberships: memberships)
    }

    /// A new refresh token (returned once, stored hashed) for the user in that tenant.
    public func issueRefreshToken(userID: String, tenantID: String, lifetime: TimeInterval) async throws -> String {
        let token = Secrets.generate(prefix: "mr_")
        let time = now()
        try await store.write { tx in
            guard try tx.membership(userID: userID, tenantID: tenantID) != nil else {
                throw RegistryError(.unauthenticated, "the user is not a member of this tenant")
            }
            try tx.insertRefreshToken(
                RefreshToken(tokenHash: Secrets.sha256(token), userID: userID, tenantID: tenantID, createdAt: time, expiresAt: time.addingTimeInterval(lifetime))
            )
        }
        return token
    }

    /// Exchanges a refresh token for a new one (the old one is revoked) and the user's current
    /// role; throws `.unauthenticated` when unknown, expired, revoked, or the user lost access.
    public func refresh(token: String, lifetime: TimeInterval) async throws -> (user: User, membership: Membership, refreshToken: String) {
        let newToken = Secrets.generate(prefix: "mr_")
        let time = now()
        let (user, membership) = try await store.write { tx -> (User, Membership) in
            let failure = RegistryError(.unauthenticated, "the refresh token is unknown, expired or revoked")
            let hash = Secrets.sha256(token)
            guard let old = try tx.refreshToken(hash: hash), old.revokedAt == nil, old.expiresAt > time,
                let user = try tx.user(id: old.userID), !user.disabled,
                let membership = try tx.membership(userID: old.userID, tenantID: old.tenantID)
            else { throw failure }
            try tx.revokeRefreshToken(hash: hash, at: time)
            try tx.insertRefreshToken(
                RefreshToken(
                    tokenHash: Secrets.sha256(newToken), userID: user.id, tenantID: old.tenantID, createdAt: time,
                    expiresAt: time.addingTimeInterval(lifetime)
                )
            )
            return (user, membership)
        }
        return (user.redacted, membership, newToken)
    }

    // MARK: API keys

    /// A new key (the secret is returned once; stored hashed). A caller cannot create a key with
    /// a role above its own.
    public func createAPIKey(name: String, role: Role, expiresAt: Date?, by caller: Caller) async throws -> (key: APIKey, secret: String) {
        try Self.require(caller, .admin)
        try Self.checkGrant(role, by: caller)
        if let problem = RegistryValidation.name(name) { throw problem.error }
        let time = now()
        if let problem = RegistryValidation.expiry(expiresAt, now: time) { throw problem.error }
        let expiresAt = expiresAt.map(Self.milliseconds)
        let secret = Secrets.generate(prefix: "mk_")
        let key = APIKey(
            id: MeridianID.generate(), tenantID: caller.tenantID, name: name, role: role, keyHash: Secrets.sha256(secret),
            prefix: Self.keyPrefix(secret), createdAt: time, expiresAt: expiresAt
        )
        try await write { tx, changes in
            try tx.insertAPIKey(key)
            var details = ["name": name, "role": role.rawValue]
            if let expiresAt { details["expiresAt"] = Self.timestamp(expiresAt) }
            changes.audit(caller.tenantID, caller.actor, "apikey.create", "apikey:\(key.id)", details)
        }
        return (key, secret)
    }

    public func apiKeys(by caller: Caller) async throws -> [APIKey] {
        try Self.require(caller, .viewer)
        return try await store.read { try $0.apiKeys(tenantID: caller.tenantID) }
    }

    /// Revokes the key (revoking a revoked key changes nothing). A caller cannot revoke a key
    /// with a role above its own.
    public func revokeAPIKey(id: String, by caller: Caller) async throws {
        try Self.require(caller, .admin)
        let time = now()
        try await write { tx, changes in
            guard let key = try tx.apiKey(id: id), key.tenantID == caller.tenantID else { throw RegistryError.notFound("API key") }
            try Self.checkGrant(key.role, by: caller)
            guard key.revokedAt == nil else { return }
            try tx.revokeAPIKey(id: id, at: time)
            changes.audit(caller.tenantID, caller.actor, "apikey.revoke", "apikey:\(id)", ["name": key.name])
            changes.notify(.apiKeyRevoked(apiKeyID: id))
        }
    }

    /// The key with this secret, if usable; records its last use (at most once a minute).
    public func authenticateAPIKey(_ secret: String) async throws -> APIKey? {
        let hash = Secrets.sha256(secret)
        let time = now()
        guard var key = try await store.read({ try $0.apiKey(hash: hash) }),
            Secrets.constantTimeEquals(key.keyHash, hash), key.isUsable(at: time)
        else { return nil }
        if key.lastUsedAt.map({ time.timeIntervalSince($0) >= Self.lastUsedResolution || time < $0 }) ?? true {
            let id = key.id
            try await store.write { try $0.setAPIKeyLastUsed(id: id, at: time) }
            key.lastUsedAt = time
        }
        return key
    }

    // MARK: Profiles

    /// Returns the profile and, when one was generated, the provisioning secret (shown once).
    public func createProfile(_ draft: ProfileDraft, by caller: Caller) async throws -> (profile: DeviceProfile, provisioningSecret: String?) {
        try Self.require(caller, .admin)
        let (settings, generatedSecret) = try Self.provisioningSettings(draft, existing: nil)
        let time = now()
        let profile = DeviceProfile(
            id: MeridianID.generate(), tenantID: caller.tenantID, name: draft.name, description: draft.description ?? "",
            transport: draft.transport ?? .emptyObject, provisioning: settings, createdAt: time
        )
        try await write { tx, changes in
            if try tx.profile(tenantID: caller.tenantID, name: draft.name) != nil {
                throw RegistryError.conflict("name", "a profile with this name exists")
            }
            if let key = settings.key, try tx.profile(provisioningKey: key) != nil {
                throw RegistryError.conflict("provisioningKey", "this provisioning key is taken")
            }
            try tx.insertProfile(profile)
            changes.audit(
                caller.tenantID, caller.actor, "profile.create", "profile:\(profile.id)",
                ["name": profile.name, "provisioningMode": settings.mode.rawValue]
            )
        }
        return (profile, generatedSecret)
    }

    public func profiles(by caller: Caller) async throws -> [DeviceProfile] {
        try Self.require(caller, .viewer)
        return try await store.read { try $0.profiles(tenantID: caller.tenantID) }
    }

    public func profile(_ id: String, by caller: Caller) async throws -> DeviceProfile {
        try Self.require(caller, .viewer)
        guard let profile = try await store.read({ try $0.profile(id: id) }), profile.tenantID == caller.tenantID else {
            throw RegistryError.notFound("profile")
        }
        return profile
    }

    /// Replaces the profile's settings. Provisioning key and secret are kept unless the draft
    /// gives new ones (generated when provisioning is switched on and there are none).
    public func updateProfile(_ id: String, _ draft: ProfileDraft, by caller: Caller) async throws -> (profile: DeviceProfile, provisioningSecret: String?) {
        try Self.require(caller, .admin)
        let current = try await profile(id, by: caller)
        let (settings, generatedSecret) = try Self.provisioningSettings(draft, existing: current.provisioning)
        var profile = current
        profile.name = draft.name
        profile.description = draft.description ?? ""
        profile.transport = draft.transport ?? .emptyObject
        profile.provisioning = settings
        let updated = profile
        try await write { tx, changes in
            guard let stored = try tx.profile(id: id), stored.tenantID == caller.tenantID else { throw RegistryError.notFound("profile") }
            if let other = try tx.profile(tenantID: caller.tenantID, name: draft.name), other.id != id {
                throw RegistryError.conflict("name", "a profile with this name exists")
            }
            if let key = settings.key, let other = try tx.profile(provisioningKey: key), other.id != id {
                throw RegistryError.conflict("provisioningKey", "this provisioning key is taken")
            }
            try tx.updateProfile(updated)
            var details = ["name": updated.name, "provisioningMode": settings.mode.rawValue]
            if settings.secretHash != stored.provisioning.secretHash { details["provisioningSecret"] = "changed" }
            changes.audit(caller.tenantID, caller.actor, "profile.update", "profile:\(id)", details)
        }
        return (updated, generatedSecret)
    }

    /// Refused (conflict) while devices use it.
    public func deleteProfile(_ id: String, by caller: Caller) async throws {
        try Self.require(caller, .admin)
        try await write { tx, changes in
            guard let profile = try tx.profile(id: id), profile.tenantID == caller.tenantID else { throw RegistryError.notFound("profile") }
            let count = try tx.deviceCount(profileID: id)
            guard count == 0 else { throw RegistryError.conflict(nil, "\(count) devices use this profile") }
            try tx.deleteProfile(id: id)
            changes.audit(caller.tenantID, caller.actor, "profile.delete", "profile:\(id)", ["name": profile.name])
        }
    }

    // MARK: Devices

    public func createDevice(_ draft: DeviceDraft, by caller: Caller) async throws -> Device {
        try Self.require(caller, .operator)
        if let problem = RegistryValidation.draft(draft).first { throw problem.error }
        let time = now()
        return try await write { tx, changes in
            let device = try Self.newDevice(draft, tenantID: caller.tenantID, time: time, tx: tx)
            try tx.insertDevice(device)
            changes.audit(caller.tenantID, caller.actor, "device.create", "device:\(device.id)", Self.details(device))
            return device
        }
    }

    public func device(_ id: String, by caller: Caller) async throws -> Device {
        try Self.require(caller, .viewer)
        guard let device = try await store.read({ try $0.device(id: id) }), device.tenantID == caller.tenantID else {
            throw RegistryError.notFound("device")
        }
        return device
    }

    /// `query.tenantID` is replaced by the caller's tenant. `profileID` may also be a profile
    /// name; `limit` is capped at ``maxPageSize``.
    public func devices(_ query: DeviceQuery, by caller: Caller) async throws -> Page<Device> {
        try Self.require(caller, .viewer)
        guard query.limit >= 1 else { throw RegistryError.invalid("limit", "must be at least 1") }
        let limit = min(query.limit, Self.maxPageSize)
        let scoped = {
            var scoped = query
            scoped.tenantID = caller.tenantID
            scoped.limit = limit + 1
            return scoped
        }()
        let devices = try await store.read { tx -> [Device] in
            if let reference = query.profileID {
                guard let profile = try Self.findProfile(reference, tenantID: caller.tenantID, tx: tx) else { return [] }
                var resolved = scoped
                resolved.profileID = profile.id
                return try tx.devices(resolved)
            }
            return try tx.devices(scoped)
        }
        if devices.count > limit {
            let items = Array(devices.prefix(limit))
            return Page(items: items, nextCursor: items.last?.id)
        }
        return Page(items: devices, nextCursor: nil)
    }

    public func updateDevice(_ id: String, _ patch: DevicePatch, by caller: Caller) async throws -> Device {
        try Self.require(caller, .operator)
        if let name = patch.name, let problem = RegistryValidation.name(name) { throw problem.error }
        if let labels = patch.labels, let problem = RegistryValidation.labels(labels) { throw problem.error }
        if let problem = RegistryValidation.metadata(patch.metadata) { throw problem.error }
        if patch.status == .decommissioned {
            throw RegistryError.invalid("status", "decommission a device with its own call, not by setting its status")
        }
        return try await write { tx, changes in
            guard var device = try tx.device(id: id), device.tenantID == caller.tenantID else { throw RegistryError.notFound("device") }
            var changed: [String] = []
            if let name = patch.name, name != device.name {
                if try tx.device(tenantID: caller.tenantID, name: name) != nil {
                    throw RegistryError.conflict("name", "a device with this name exists")
                }
                device.name = name
                changed.append("name")
            }
            if let reference = patch.profile {
                let profileID: String?
                if reference.isEmpty {
                    profileID = nil
                } else {
                    guard let profile = try Self.findProfile(reference, tenantID: caller.tenantID, tx: tx) else {
                        throw RegistryError.invalid("profile", "no such profile")
                    }
                    profileID = profile.id
                }
                if profileID != device.profileID {
                    device.profileID = profileID
                    changed.append("profile")
                }
            }
            if let labels = patch.labels, labels != device.labels {
                device.labels = labels
                changed.append("labels")
            }
            if let metadata = patch.metadata, metadata != device.metadata {
                device.metadata = metadata
                changed.append("metadata")
            }
            if let status = patch.status, status != device.status {
                guard device.status != .decommissioned else {
                    throw RegistryError.conflict("status", "a decommissioned device cannot be enabled again")
                }
                device.status = status
                changed.append("status")
                if status == .disabled { changes.notify(.deviceRevoked(deviceID: id, reason: "disabled")) }
            }
            guard !changed.isEmpty else { return device }
            try tx.updateDevice(device)
            var details = ["fields": changed.joined(separator: ",")]
            if changed.contains("status") { details["status"] = device.status.rawValue }
            if changed.contains("name") { details["name"] = device.name }
            changes.audit(caller.tenantID, caller.actor, "device.update", "device:\(id)", details)
            return device
        }
    }

    /// Deletes the device, its credentials and claim codes.
    public func deleteDevice(_ id: String, by caller: Caller) async throws {
        try Self.require(caller, .operator)
        try await write { tx, changes in
            guard let device = try tx.device(id: id), device.tenantID == caller.tenantID else { throw RegistryError.notFound("device") }
            try tx.deleteDevice(id: id)
            changes.audit(caller.tenantID, caller.actor, "device.delete", "device:\(id)", ["name": device.name])
            changes.notify(.deviceRevoked(deviceID: id, reason: "deleted"))
        }
    }

    /// Revokes every credential, marks it decommissioned (kept for its history) or, with
    /// `purge`, deletes it; the audit log records which.
    public func decommissionDevice(_ id: String, purge: Bool, by caller: Caller) async throws -> Device? {
        try Self.require(caller, .operator)
        let time = now()
        return try await write { tx, changes -> Device? in
            guard var device = try tx.device(id: id), device.tenantID == caller.tenantID else { throw RegistryError.notFound("device") }
            let revoked = try Self.revokeAll(deviceID: id, tenantID: caller.tenantID, time: time, tx: tx)
            try tx.deleteClaimCode(deviceID: id)
            changes.audit(
                caller.tenantID, caller.actor, "device.decommission", "device:\(id)",
                ["name": device.name, "purge": String(purge), "revokedCredentials": String(revoked.count)]
            )
            for credentialID in revoked { changes.notify(.credentialRevoked(deviceID: id, credentialID: credentialID)) }
            changes.notify(.deviceRevoked(deviceID: id, reason: "decommissioned"))
            if purge {
                try tx.deleteDevice(id: id)
                return nil
            }
            device.status = .decommissioned
            try tx.updateDevice(device)
            return device
        }
    }

    /// All or nothing: every row is validated first (also against each other and the existing
    /// devices); any bad row → `.invalid` with ``RegistryError/rowErrors``, nothing created.
    public func importDevices(_ rows: [DeviceImport.Row], by caller: Caller) async throws -> [Device] {
        try Self.require(caller, .operator)
        guard !rows.isEmpty else { throw RegistryError.invalid("rows", "the import has no rows") }
        guard rows.count <= Self.maxImportRows else {
            throw RegistryError.invalid("rows", "at most \(Self.maxImportRows) rows per import")
        }
        var rowErrors: [RegistryError.RowError] = []
        var firstLineByName: [String: Int] = [:]
        var firstLineByID: [String: Int] = [:]
        for row in rows {
            for problem in RegistryValidation.draft(row.draft) {
                rowErrors.append(.init(line: row.line, field: problem.field, reason: problem.reason))
            }
            if let first = firstLineByName[row.draft.name] {
                rowErrors.append(.init(line: row.line, field: "name", reason: "the name is also used by line \(first)"))
            } else {
                firstLineByName[row.draft.name] = row.line
            }
            if let id = row.draft.id {
                if let first = firstLineByID[id] {
                    rowErrors.append(.init(line: row.line, field: "id", reason: "the id is also used by line \(first)"))
                } else {
                    firstLineByID[id] = row.line
                }
            }
        }
        let structuralErrors = rowErrors
        let time = now()
        return try await write { tx, changes in
            var rowErrors = structuralErrors
            var profileIDs: [String: String?] = [:]
            var devices: [Device] = []
            devices.reserveCapacity(rows.count)
            for row in rows {
                let draft = row.draft
                var profileID: String?
                if let reference = draft.profile, !reference.isEmpty {
                    if let cached = profileIDs[reference] {
                        profileID = cached
                    } else {
                        profileID = try Self.findProfile(reference, tenantID: caller.tenantID, tx: tx)?.id
                        profileIDs[reference] = .some(profileID)
                    }
                    if profileID == nil { rowErrors.append(.init(line: row.line, field: "profile", reason: "no such profile")) }
                }
                if let id = draft.id, try tx.device(id: id) != nil {
                    rowErrors.append(.init(line: row.line, field: "id", reason: "a device with this id exists"))
                }
                if try tx.device(tenantID: caller.tenantID, name: draft.name) != nil {
                    rowErrors.append(.init(line: row.line, field: "name", reason: "a device with this name exists"))
                }
                guard rowErrors.isEmpty else { continue }
                devices.append(
                    Device(
                        id: draft.id ?? MeridianID.generate(), tenantID: caller.tenantID, name: draft.name, profileID: profileID,
                        labels: draft.labels, metadata: draft.metadata ?? .emptyObject, createdAt: time
                    )
                )
            }
            guard rowErrors.isEmpty else {
                rowErrors.sort { ($0.line, $0.field) < ($1.line, $1.field) }
                let lines = Set(rowErrors.map(\.line)).count
                throw RegistryError(.invalid, "\(lines) of \(rows.count) rows are invalid; nothing was imported", field: "rows", rowErrors: rowErrors)
            }
            for device in devices {
                try tx.insertDevice(device)
                var details = Self.details(device)
                details["import"] = "true"
                changes.audit(caller.tenantID, caller.actor, "device.create", "device:\(device.id)", details)
            }
            return devices
        }
    }

    // MARK: Credentials and certificates

    public func createCredential(deviceID: String, _ request: CredentialRequest, by caller: Caller) async throws -> IssuedCredential {
        try Self.require(caller, .operator)
        let prepared = try prepareCredential(request)
        let time = now()
        return try await write { tx, changes in
            guard let device = try tx.device(id: deviceID), device.tenantID == caller.tenantID else { throw RegistryError.notFound("device") }
            guard device.status != .decommissioned else {
                throw RegistryError.conflict(nil, "the device is decommissioned")
            }
            return try Self.issueCredential(prepared, for: device, actor: caller.actor, time: time, tx: tx, changes: &changes)
        }
    }

    public func credentials(deviceID: String, by caller: Caller) async throws -> [Credential] {
        try Self.require(caller, .viewer)
        return try await store.read { tx in
            guard let device = try tx.device(id: deviceID), device.tenantID == caller.tenantID else { throw RegistryError.notFound("device") }
            return try tx.credentials(deviceID: deviceID, tenantID: caller.tenantID)
        }
    }

    /// Revokes the credential (the row is kept, with its revocation time); revoking a revoked
    /// credential changes nothing.
    public func revokeCredential(deviceID: String, credentialID: String, by caller: Caller) async throws {
        try Self.require(caller, .operator)
        let time = now()
        try await write { tx, changes in
            guard let device = try tx.device(id: deviceID), device.tenantID == caller.tenantID,
                let credential = try tx.credential(id: credentialID), credential.deviceID == deviceID,
                credential.tenantID == caller.tenantID
            else { throw RegistryError.notFound("credential") }
            guard credential.revokedAt == nil else { return }
            try tx.revokeCredential(id: credentialID, at: time)
            changes.audit(
                caller.tenantID, caller.actor, "credential.revoke", "credential:\(credentialID)",
                ["device": deviceID, "type": credential.type.rawValue]
            )
            changes.notify(.credentialRevoked(deviceID: deviceID, credentialID: credentialID))
        }
    }

    /// The tenant's CAs; the built-in one is created on first use. Private keys are never
    /// returned (``CertificateAuthority/privateKeyPEM`` is nil).
    public func certificateAuthorities(by caller: Caller) async throws -> [CertificateAuthority] {
        try Self.require(caller, .viewer)
        let time = now()
        var authorities = try await store.read { try $0.certificateAuthorities(tenantID: caller.tenantID) }
        if !authorities.contains(where: { $0.kind == .builtIn }) {
            authorities = try await write { tx, changes in
                _ = try Self.builtInAuthority(tenantID: caller.tenantID, actor: caller.actor, time: time, tx: tx, changes: &changes)
                return try tx.certificateAuthorities(tenantID: caller.tenantID)
            }
        }
        return authorities.map { authority in
            var authority = authority
            authority.privateKeyPEM = nil
            return authority
        }
    }

    /// Registers a CA certificate (PEM) the tenant runs itself.
    public func registerCertificateAuthority(pem: String, by caller: Caller) async throws -> CertificateAuthority {
        try Self.require(caller, .admin)
        let authority = try TenantCertificates.externalAuthority(pem: pem, tenantID: caller.tenantID, now: now())
        try await write { tx, changes in
            if try tx.certificateAuthorities(tenantID: caller.tenantID).contains(where: { $0.fingerprint == authority.fingerprint }) {
                throw RegistryError.conflict("certificate", "this CA is registered already")
            }
            try tx.insertCertificateAuthority(authority)
            changes.notify(.certificateAuthorityAdded(tenantID: caller.tenantID))
            changes.audit(
                caller.tenantID, caller.actor, "ca.register", "ca:\(authority.id)",
                ["subject": authority.subject, "fingerprint": authority.fingerprint]
            )
        }
        return authority
    }

    /// Every tenant's CA certificates (PEM), for the TLS listener's client-certificate trust.
    public func allCertificateAuthorityPEMs() async throws -> [String] {
        try await store.read { try $0.allCertificateAuthorities().map(\.certificatePEM) }
    }

    // MARK: Device authentication (the broker calls these at CONNECT)

    /// The active device holding this usable token, or nil.
    public func authenticateDevice(token: String) async throws -> DeviceIdentity? {
        let hash = Secrets.sha256(token)
        let time = now()
        return try await store.read { tx in
            guard let credential = try tx.credential(tokenHash: hash), credential.type == .token,
                let storedHash = credential.tokenHash, Secrets.constantTimeEquals(storedHash, hash)
            else { return nil }
            return try Self.identity(credential, time: time, tx: tx)
        }
    }

    public func authenticateDevice(username: String, password: String) async throws -> DeviceIdentity? {
        let time = now()
        let credential = try await store.read { try $0.credential(username: username) }
        guard let credential, credential.type == .password, let hash = credential.passwordHash else {
            _ = await PasswordHash.verifyOffPool(password, against: Self.dummyPasswordHash)
            return nil
        }
        guard await PasswordHash.verifyOffPool(password, against: hash) else { return nil }
        return try await store.read { tx in try Self.identity(credential, time: time, tx: tx) }
    }

    /// By a verified client certificate: its fingerprint (registered credential), or — with
    /// `.commonName` — its CN as device id when issued by that device's tenant's CA
    /// (`issuerFingerprint`, SHA-256 of the issuing CA certificate's DER, when known).
    ///
    /// A registered certificate credential that is revoked or expired is refused in both
    /// mappings. With `.commonName`, a certificate that is not registered is accepted only when
    /// `issuerFingerprint` names one of the device's own tenant's CAs; its identity's credential
    /// id is then `ca:<CA id>`.
    public func authenticateDevice(certificateFingerprint: String, commonName: String?, issuerFingerprint: String?, mapping: CertificateMapping) async throws -> DeviceIdentity? {
        let fingerprint = certificateFingerprint.lowercased()
        let time = now()
        return try await store.read { tx in
            if let credential = try tx.credential(certificateFingerprint: fingerprint), credential.type == .certificate {
                guard let identity = try Self.identity(credential, time: time, tx: tx) else { return nil }
                if mapping == .commonName, let commonName, commonName != identity.deviceID { return nil }
                return identity
            }
            guard mapping == .commonName, let commonName, let issuerFingerprint,
                let device = try tx.device(id: commonName), device.status == .active
            else { return nil }
            let issuer = issuerFingerprint.lowercased()
            guard let authority = try tx.certificateAuthorities(tenantID: device.tenantID).first(where: { $0.fingerprint == issuer }) else {
                return nil
            }
            return DeviceIdentity(
                deviceID: device.id, tenantID: device.tenantID, credentialID: "ca:\(authority.id)", credentialType: .certificate, deviceName: device.name
            )
        }
    }

    /// Whether the device may still be connected with that credential (status active,
    /// credential usable).
    public func isStillAuthorized(_ identity: DeviceIdentity) async throws -> Bool {
        let time = now()
        return try await store.read { tx in
            guard let device = try tx.device(id: identity.deviceID), device.status == .active,
                device.tenantID == identity.tenantID
            else { return false }
            if identity.credentialID.hasPrefix("ca:") {
                let authorityID = String(identity.credentialID.dropFirst(3))
                return try tx.certificateAuthorities(tenantID: device.tenantID).contains { $0.id == authorityID }
            }
            guard let credential = try tx.credential(id: identity.credentialID) else { return false }
            return credential.deviceID == device.id && credential.tenantID == device.tenantID && credential.isUsable(at: time)
        }
    }

    /// Records a device's last-seen time (batched by the caller; cheap: one UPDATE, not audited).
    public func markSeen(deviceIDs: [String], at time: Date) async throws {
        guard !deviceIDs.isEmpty else { return }
        let time = Self.milliseconds(time)
        try await store.write { try $0.markSeen(deviceIDs: deviceIDs, at: time) }
    }

    // MARK: Provisioning and claiming

    /// A device registers itself with its profile's provisioning key and secret; returns the
    /// device and its new credential. Throws `.unauthenticated` for a bad key or secret,
    /// `.forbidden` when the profile does not allow it (e.g. not pre-registered).
    ///
    /// With `allow-create`, a new name creates the device (a generated name when none is given).
    /// A device that exists in the profile's tenant gets a new credential only while it has no
    /// usable one; otherwise `.conflict` "device already provisioned" (as ThingsBoard refuses a
    /// second provisioning): an operator revokes the old credentials to let it provision again.
    /// With `pre-registered-only` the device must exist already (`.forbidden` otherwise). An
    /// existing device must be active and use this profile (`.forbidden` otherwise).
    public func provision(_ request: ProvisionRequest) async throws -> (device: Device, credential: IssuedCredential) {
        let bad = RegistryError(.unauthenticated, "unknown provisioning key or wrong secret")
        guard let profile = try await store.read({ try $0.profile(provisioningKey: request.provisionKey) }),
            let secretHash = profile.provisioning.secretHash,
            Secrets.constantTimeEquals(secretHash, Secrets.sha256(request.provisionSecret))
        else { throw bad }
        guard profile.provisioning.mode != .disabled else {
            throw RegistryError(.forbidden, "provisioning is disabled for this profile")
        }
        if let name = request.deviceName, let problem = RegistryValidation.name(name, field: "deviceName") { throw problem.error }
        let prepared = try prepareCredential(request.credential ?? .token(nil))
        let time = now()
        return try await write { tx, changes in
            guard let profile = try tx.profile(id: profile.id), profile.provisioning.key == request.provisionKey else { throw bad }
            let existing = try request.deviceName.flatMap { try tx.device(tenantID: profile.tenantID, name: $0) }
            var device: Device
            if let existing {
                device = existing
                guard device.status == .active else { throw RegistryError(.forbidden, "the device is \(device.status.rawValue)") }
                guard device.profileID == profile.id else {
                    throw RegistryError(.forbidden, "the device does not belong to this provisioning profile")
                }
                if try tx.credentials(deviceID: device.id, tenantID: device.tenantID).contains(where: { $0.isUsable(at: time) }) {
                    throw RegistryError.conflict("deviceName", "device already provisioned")
                }
            } else {
                guard profile.provisioning.mode == .allowCreate else {
                    throw RegistryError(.forbidden, "this profile only provisions devices that are registered already")
                }
                let id = MeridianID.generate()
                device = Device(
                    id: id, tenantID: profile.tenantID, name: request.deviceName ?? "device-\(id.prefix(10))",
                    profileID: profile.id, createdAt: time
                )
                if try tx.device(tenantID: profile.tenantID, name: device.name) != nil {
                    throw RegistryError.conflict("deviceName", "a device with this name exists")
                }
                try tx.insertDevice(device)
            }
            let actor = AuditActor(kind: .device, id: device.id, remoteAddress: request.remoteAddress)
            if existing == nil {
                var details = Self.details(device)
                details["provisioned"] = "true"
                changes.audit(device.tenantID, actor, "device.create", "device:\(device.id)", details)
            }
            let issued = try Self.issueCredential(prepared, for: device, actor: actor, time: time, tx: tx, changes: &changes)
            return (device, issued)
        }
    }

    /// Sets (replaces) the device's claim code, valid for `duration`. Called by the device
    /// itself (actor kind `.device`) or by an operator of the device's current tenant.
    ///
    /// A `.device` actor may set only its own code (`.forbidden` otherwise). For other actors the
    /// caller must have checked the tenant — or use ``setClaimCode(deviceID:code:duration:by:)``.
    public func setClaimCode(deviceID: String, code: String, duration: TimeInterval, actor: AuditActor) async throws {
        if actor.kind == .device, actor.id != deviceID {
            throw RegistryError(.forbidden, "a device can set only its own claim code")
        }
        try await saveClaimCode(deviceID: deviceID, code: code, duration: duration, actor: actor, tenantID: nil)
    }

    /// Sets (replaces) the claim code of a device in the caller's tenant (operator or above).
    public func setClaimCode(deviceID: String, code: String, duration: TimeInterval, by caller: Caller) async throws {
        try Self.require(caller, .operator)
        try await saveClaimCode(deviceID: deviceID, code: code, duration: duration, actor: caller.actor, tenantID: caller.tenantID)
    }

    private func saveClaimCode(deviceID: String, code: String, duration: TimeInterval, actor: AuditActor, tenantID: String?) async throws {
        guard code.count >= 6, code.count <= 128, !RegistryValidation.hasControlCharacters(code) else {
            throw RegistryError.invalid("code", "a claim code must be 6-128 characters")
        }
        guard duration > 0, duration <= 366 * 86_400 else {
            throw RegistryError.invalid("duration", "must be more than 0 and at most a year")
        }
        let time = now()
        try await write { tx, changes in
            guard let device = try tx.device(id: deviceID), tenantID == nil || device.tenantID == tenantID else {
                throw RegistryError.notFound("device")
            }
            guard device.status != .decommissioned else { throw RegistryError.conflict(nil, "the device is decommissioned") }
            let expires = time.addingTimeInterval(duration)
            try tx.saveClaimCode(ClaimCode(deviceID: deviceID, codeHash: Secrets.sha256(code), createdAt: time, expiresAt: expires))
            changes.audit(device.tenantID, actor, "device.claim-code", "device:\(deviceID)", ["expiresAt": Self.timestamp(expires)])
        }
    }

    /// Moves the device with this id or name and a matching, unexpired claim code into the
    /// caller's tenant: its old credentials are revoked and the code is used up.
    ///
    /// `deviceID` is the device's id; a device name is accepted too when exactly one device of
    /// that name has a matching code. Unknown device, wrong or expired code all give the same
    /// `.notFound`. The device keeps its labels and metadata; its profile (the old tenant's) is
    /// cleared. Both tenants' audit logs record the move.
    public func claimDevice(deviceID: String, code: String, by caller: Caller) async throws -> Device {
        try Self.require(caller, .operator)
        let codeHash = Secrets.sha256(code)
        let time = now()
        return try await write { tx, changes in
            let failure = RegistryError(.notFound, "no device with this id and a valid claim code")
            func matches(_ claim: ClaimCode?) -> Bool {
                guard let claim else { return false }
                return Secrets.constantTimeEquals(claim.codeHash, codeHash) && claim.expiresAt > time
            }
            var target: Device?
            if let device = try tx.device(id: deviceID), matches(try tx.claimCode(deviceID: device.id)) {
                target = device
            } else {
                let candidates = try tx.claimCodes(deviceName: deviceID).filter { matches($0) }
                if candidates.count == 1 { target = try tx.device(id: candidates[0].deviceID) }
            }
            guard var device = target, device.status != .decommissioned else { throw failure }
            guard device.tenantID != caller.tenantID else {
                throw RegistryError.conflict(nil, "the device belongs to this tenant already")
            }
            if try tx.device(tenantID: caller.tenantID, name: device.name) != nil {
                throw RegistryError.conflict("name", "a device with this name exists in this tenant")
            }
            let oldTenant = device.tenantID
            let revoked = try Self.revokeAll(deviceID: device.id, tenantID: oldTenant, time: time, tx: tx)
            try tx.deleteClaimCode(deviceID: device.id)
            device.tenantID = caller.tenantID
            device.profileID = nil
            try tx.updateDevice(device)
            changes.audit(
                oldTenant, caller.actor, "device.claimed-away", "device:\(device.id)",
                ["revokedCredentials": String(revoked.count)]
            )
            changes.audit(caller.tenantID, caller.actor, "device.claim", "device:\(device.id)", ["name": device.name])
            for credentialID in revoked { changes.notify(.credentialRevoked(deviceID: device.id, credentialID: credentialID)) }
            changes.notify(.deviceRevoked(deviceID: device.id, reason: "claimed by another tenant"))
            return device
        }
    }

    // MARK: Audit

    /// The caller's tenant's entries, newest first. The page's cursor is the sequence to pass
    /// as `before` for the next page.
    public func auditEntries(by caller: Caller, limit: Int, before: Int64?) async throws -> Page<AuditEntry> {
        try Self.require(caller, .admin)
        guard limit >= 1 else { throw RegistryError.invalid("limit", "must be at least 1") }
        let capped = min(limit, Self.maxPageSize)
        let entries = try await store.read { try $0.auditEntries(tenantID: caller.tenantID, before: before, limit: capped + 1) }
        if entries.count > capped {
            let items = Array(entries.prefix(capped))
            return Page(items: items, nextCursor: items.last.map { String($0.sequence) })
        }
        return Page(items: entries, nextCursor: nil)
    }

    /// Walks the whole chain (all tenants: one sequence), in one consistent snapshot.
    public func verifyAudit() async throws -> AuditChain.Verification {
        try await store.read { tx in
            var verifier = AuditChain.Verifier()
            var after: Int64 = 0
            while true {
                let batch = try tx.auditEntries(after: after, limit: 1000)
                guard let last = batch.last else { break }
                for entry in batch where !verifier.feed(entry) { return verifier.result }
                after = last.sequence
            }
            return verifier.result
        }
    }
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
    /// any `label.<key>` columns, `metadata` (JSON). RFC 4180 quoting; blank lines are skipped;
    /// a row's line is the line its record starts on. Throws ``RegistryError`` with a row error
    /// per bad row (or for the header, line 1).
    public static func parseCSV(_ text: String) throws -> [Row] { try parseCSVRows(text) }
    /// A JSON array of ``DeviceDraft`` objects; a row's `line` is its index.
    public static func parseJSON(_ data: Data) throws -> [Row] { try parseJSONRows(data) }
}

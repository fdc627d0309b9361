import Foundation
import SwiftASN1
import X509

/// What one write collects: audit records (written in the same transaction) and notifications
/// (sent after commit).
struct RegistryChanges: Sendable {
    var records: [AuditRecord] = []
    var notifications: [RegistryChange] = []

    mutating func audit(_ tenantID: String?, _ actor: AuditActor, _ action: String, _ target: String, _ details: [String: String] = [:]) {
        records.append(AuditRecord(tenantID: tenantID, actor: actor, action: action, target: target, details: details))
    }

    mutating func notify(_ change: RegistryChange) {
        notifications.append(change)
    }
}

/// A credential request checked and hashed before the transaction (password hashing is slow).
enum PreparedCredential: Sendable {
    case token(token: String, generated: Bool, expiresAt: Date?)
    case password(username: String, hash: String, expiresAt: Date?)
    case signingRequest(CertificateSigningRequest, validityDays: Int)
    case generatedCertificate(validityDays: Int)
    case existingCertificate(Certificate)
}

extension Registry {
    /// Runs `body` in a write transaction, appends its audit records to the chain in that
    /// transaction, and notifies observers after the commit.
    func write<T: Sendable>(_ body: @escaping @Sendable (any RegistryTransaction, inout RegistryChanges) throws -> T) async throws -> T {
        let now = self.now
        let (result, notifications) = try await store.write { tx -> (T, [RegistryChange]) in
            var changes = RegistryChanges()
            let result = try body(tx, &changes)
            if !changes.records.isEmpty {
                let time = now()
                let last = try tx.lastAuditEntry()
                var sequence = last?.sequence ?? 0
                var previousHash = last?.hash ?? AuditEntry.genesisHash
                for record in changes.records {
                    sequence += 1
                    let entry = AuditEntry(sequence: sequence, timestamp: time, record: record, previousHash: previousHash)
                    try tx.appendAuditEntry(entry)
                    previousHash = entry.hash
                }
            }
            return (result, changes.notifications)
        }
        if !notifications.isEmpty {
            let observers = self.currentObservers()
            for change in notifications {
                for observer in observers { observer(change) }
            }
        }
        return result
    }

    // MARK: Roles

    static func require(_ caller: Caller, _ role: Role) throws {
        guard caller.role.allows(role) else {
            throw RegistryError(.forbidden, "this needs role \(role.rawValue) or above; the caller is \(caller.role.rawValue)")
        }
    }

    /// A caller may hand out (or take away) only roles up to its own; `owner` only by owners.
    static func checkGrant(_ role: Role, by caller: Caller) throws {
        guard caller.role.allows(role) else {
            throw RegistryError(.forbidden, "a \(caller.role.rawValue) cannot grant or manage role \(role.rawValue)")
        }
    }

    static func ownerCount(_ tx: any RegistryTransaction, _ tenantID: String) throws -> Int {
        try tx.memberships(tenantID: tenantID).filter { $0.role == .owner }.count
    }

    // MARK: Small helpers

    /// The first characters of a key, enough to recognise it, never more than a quarter of it.
    static func keyPrefix(_ secret: String) -> String {
        String(secret.prefix(min(8, secret.count / 4)))
    }

    static func timestamp(_ date: Date) -> String {
        date.formatted(.iso8601)
    }

    /// What a password is checked against when there is no such user or device, so that
    /// timing does not tell which names exist.
    static let dummyPasswordHash = PasswordHash.make(Secrets.generate())

    static func details(_ device: Device) -> [String: String] {
        var details = ["name": device.name]
        if let profileID = device.profileID { details["profile"] = profileID }
        if !device.labels.isEmpty { details["labels"] = String(device.labels.count) }
        return details
    }

    /// A profile of the tenant by id or, failing that, by name.
    static func findProfile(_ reference: String, tenantID: String, tx: any RegistryTransaction) throws -> DeviceProfile? {
        if let profile = try tx.profile(id: reference), profile.tenantID == tenantID { return profile }
        return try tx.profile(tenantID: tenantID, name: reference)
    }

    /// A checked new device for `draft` (id and name free, profile found), not yet inserted.
    static func newDevice(_ draft: DeviceDraft, tenantID: String, time: Date, tx: any RegistryTransaction) throws -> Device {
        if let id = draft.id, try tx.device(id: id) != nil {
            throw RegistryError.conflict("id", "a device with this id exists")
        }
        if try tx.device(tenantID: tenantID, name: draft.name) != nil {
            throw RegistryError.conflict("name", "a device with this name exists")
        }
        var profileID: String?
        if let reference = draft.profile, !reference.isEmpty {
            guard let profile = try findProfile(reference, tenantID: tenantID, tx: tx) else {
                throw RegistryError.invalid("profile", "no such profile")
            }
            profileID = profile.id
        }
        return Device(
            id: draft.id ?? MeridianID.generate(), tenantID: tenantID, name: draft.name, profileID: profileID,
            labels: draft.labels, metadata: draft.metadata ?? .emptyObject, createdAt: time
        )
    }

    /// Revokes the device's usable credentials in that tenant; returns their ids.
    static func revokeAll(deviceID: String, tenantID: String, time: Date, tx: any RegistryTransaction) throws -> [String] {
        var revoked: [String] = []
        for credential in try tx.credentials(deviceID: deviceID, tenantID: tenantID) where credential.revokedAt == nil {
            try tx.revokeCredential(id: credential.id, at: time)
            revoked.append(credential.id)
        }
        return revoked
    }

    /// The provisioning settings a draft asks for, and the secret when one was generated.
    static func provisioningSettings(_ draft: ProfileDraft, existing: ProvisioningSettings?) throws -> (ProvisioningSettings, String?) {
        if let problem = RegistryValidation.name(draft.name) { throw problem.error }
        if let description = draft.description, description.count > 2000 {
            throw RegistryError.invalid("description", "must be at most 2000 characters")
        }
        if let transport = draft.transport, let problem = RegistryValidation.metadata(transport) {
            throw RegistryError.invalid("transport", problem.reason)
        }
        let mode = draft.provisioningMode ?? existing?.mode ?? .disabled
        var key = draft.provisioningKey ?? existing?.key
        var secretHash = existing?.secretHash
        var generatedSecret: String?
        if let given = draft.provisioningKey {
            guard !given.isEmpty, given.count <= 128, !given.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.properties.generalCategory == .control }) else {
                throw RegistryError.invalid("provisioningKey", "must be 1-128 characters without spaces")
            }
        }
        if let given = draft.provisioningSecret {
            guard given.count >= 8, given.count <= 256 else {
                throw RegistryError.invalid("provisioningSecret", "must be 8-256 characters")
            }
            secretHash = Secrets.sha256(given)
        }
        if mode != .disabled {
            if key == nil { key = MeridianID.generate() }
            if secretHash == nil {
                let secret = Secrets.generate()
                generatedSecret = secret
                secretHash = Secrets.sha256(secret)
            }
        }
        return (ProvisioningSettings(mode: mode, key: key, secretHash: secretHash), generatedSecret)
    }

    // MARK: Credentials

    /// Checks a credential request and does the slow or storage-free parts.
    func prepareCredential(_ request: CredentialRequest) throws -> PreparedCredential {
        let time = now()
        func validity(_ days: Int?) throws -> Int {
            let days = days ?? TenantCertificates.defaultDeviceValidityDays
            guard days >= 1, days <= TenantCertificates.caValidityDays else {
                throw RegistryError.invalid("validityDays", "must be 1-\(TenantCertificates.caValidityDays)")
            }
            return days
        }
        switch request {
        case .token(let token, let expiresAt):
            if let problem = RegistryValidation.expiry(expiresAt, now: time) { throw problem.error }
            if let token {
                if let problem = RegistryValidation.token(token) { throw problem.error }
                return .token(token: token, generated: false, expiresAt: expiresAt.map(Registry.milliseconds))
            }
            return .token(token: Secrets.generate(), generated: true, expiresAt: expiresAt.map(Registry.milliseconds))
        case .password(let username, let password, let expiresAt):
            if let problem = RegistryValidation.username(username) { throw problem.error }
            if username == "provision" {
                throw RegistryError.invalid("username", "'provision' is reserved for device provisioning")
            }
            if let problem = RegistryValidation.password(password) { throw problem.error }
            if let problem = RegistryValidation.expiry(expiresAt, now: time) { throw problem.error }
            return .password(username: username, hash: PasswordHash.make(password), expiresAt: expiresAt.map(Registry.milliseconds))
        case .certificateSigningRequest(let pem, let validityDays):
            let days = try validity(validityDays)
            return .signingRequest(try TenantCertificates.verifiedSigningRequest(pem: pem), validityDays: days)
        case .generatedCertificate(let validityDays):
            return .generatedCertificate(validityDays: try validity(validityDays))
        case .existingCertificate(let pem):
            let certificate = try TenantCertificates.certificate(pem: pem, field: "certificate")
            guard certificate.notValidAfter > time else {
                throw RegistryError.invalid("certificate", "the certificate has expired")
            }
            return .existingCertificate(certificate)
        }
    }

    /// Inserts the credential (and, for certificates, the tenant's built-in CA if needed) with
    /// its audit record.
    static func issueCredential(
        _ prepared: PreparedCredential, for device: Device, actor: AuditActor, time: Date, tx: any RegistryTransaction,
        changes: inout RegistryChanges
    ) throws -> IssuedCredential {
        let id = MeridianID.generate()
        var credential = Credential(id: id, tenantID: device.tenantID, deviceID: device.id, type: .token, createdAt: time)
        var issued = IssuedCredential(credential: credential)
        var details = ["device": device.id]
        switch prepared {
        case .token(let token, let generated, let expiresAt):
            let hash = Secrets.sha256(token)
            if try tx.credential(tokenHash: hash) != nil {
                throw RegistryError.conflict("token", "this token is in use; choose another")
            }
            credential.tokenHash = hash
            credential.expiresAt = expiresAt
            issued.token = token
            details["generated"] = String(generated)
        case .password(let username, let hash, let expiresAt):
            if try tx.credential(username: username) != nil {
                throw RegistryError.conflict("username", "this user name is in use")
            }
            credential.type = .password
            credential.username = username
            credential.passwordHash = hash
            credential.expiresAt = expiresAt
            details["username"] = username
        case .signingRequest(let request, let days):
            let authority = try builtInAuthority(tenantID: device.tenantID, actor: actor, time: time, tx: tx, changes: &changes)
            let certificate = try TenantCertificates.issue(
                publicKey: request.publicKey, commonName: device.id, validityDays: days, authority: authority, now: time
            )
            try fill(&credential, &issued, certificate: certificate, authority: authority)
        case .generatedCertificate(let days):
            let authority = try builtInAuthority(tenantID: device.tenantID, actor: actor, time: time, tx: tx, changes: &changes)
            let key = P256KeyPair()
            let certificate = try TenantCertificates.issue(
                publicKey: key.publicKey, commonName: device.id, validityDays: days, authority: authority, now: time
            )
            try fill(&credential, &issued, certificate: certificate, authority: authority)
            issued.privateKeyPEM = key.privateKeyPEM
            details["generatedKey"] = "true"
        case .existingCertificate(let certificate):
            let authorities = try tx.certificateAuthorities(tenantID: device.tenantID)
            guard let authority = authorities.first(where: { TenantCertificates.isIssued(certificate, by: $0) }) else {
                throw RegistryError.invalid("certificate", "the certificate was not issued by one of this tenant's certificate authorities")
            }
            try fill(&credential, &issued, certificate: certificate, authority: authority)
        }
        if credential.type == .certificate {
            if let fingerprint = credential.certificateFingerprint, try tx.credential(certificateFingerprint: fingerprint) != nil {
                throw RegistryError.conflict("certificate", "this certificate is registered already")
            }
            details["fingerprint"] = credential.certificateFingerprint
        }
        details["type"] = credential.type.rawValue
        try tx.insertCredential(credential)
        issued.credential = credential
        changes.audit(device.tenantID, actor, "credential.create", "credential:\(id)", details)
        return issued
    }

    private static func fill(
        _ credential: inout Credential, _ issued: inout IssuedCredential, certificate: Certificate, authority: CertificateAuthority
    ) throws {
        let pem = try certificate.serializeAsPEM().pemString
        credential.type = .certificate
        credential.certificatePEM = pem
        credential.certificateFingerprint = try TenantCertificates.fingerprint(certificate)
        credential.certificateCommonName = TenantCertificates.commonName(certificate.subject)
        credential.expiresAt = Registry.milliseconds(certificate.notValidAfter)
        issued.certificatePEM = pem
        issued.caCertificatePEM = authority.certificatePEM
    }

    /// The tenant's built-in CA, created (and audited) when it does not exist yet.
    static func builtInAuthority(
        tenantID: String, actor: AuditActor, time: Date, tx: any RegistryTransaction, changes: inout RegistryChanges
    ) throws -> CertificateAuthority {
        if let existing = try tx.certificateAuthorities(tenantID: tenantID).first(where: { $0.kind == .builtIn }) {
            return existing
        }
        guard let tenant = try tx.tenant(id: tenantID) else { throw RegistryError.notFound("tenant") }
        let authority = try TenantCertificates.makeBuiltInAuthority(for: tenant, now: time)
        try tx.insertCertificateAuthority(authority)
        changes.notify(.certificateAuthorityAdded(tenantID: tenantID))
        changes.audit(
            tenantID, actor, "ca.create", "ca:\(authority.id)", ["subject": authority.subject, "fingerprint": authority.fingerprint]
        )
        return authority
    }

    /// The identity for a credential that is usable and whose device is active, or nil.
    static func identity(_ credential: Credential, time: Date, tx: any RegistryTransaction) throws -> DeviceIdentity? {
        guard credential.isUsable(at: time), let device = try tx.device(id: credential.deviceID), device.status == .active,
            device.tenantID == credential.tenantID
        else { return nil }
        return DeviceIdentity(
            deviceID: device.id, tenantID: device.tenantID, credentialID: credential.id, credentialType: credential.type, deviceName: device.name
        )
    }
}

extension User {
    /// The user without its password hash: what the registry hands out (``passwordHash`` is
    /// empty).
    var redacted: User {
        var user = self
        user.passwordHash = ""
        return user
    }
}

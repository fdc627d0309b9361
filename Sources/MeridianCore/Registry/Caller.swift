/// Who is asking the registry for something, in which tenant, with which role. The API layer
/// builds it from the API key or the JWT; the registry scopes every read and write to
/// ``tenantID`` and records ``actor`` in the audit log.
public struct Caller: Sendable, Hashable {
    public var tenantID: String
    public var role: Role
    public var actor: AuditActor

    public init(tenantID: String, role: Role, actor: AuditActor) {
        self.tenantID = tenantID
        self.role = role
        self.actor = actor
    }
}

/// A device as the broker sees it after authentication.
public struct DeviceIdentity: Sendable, Hashable {
    public var deviceID: String
    public var tenantID: String
    /// The credential it authenticated with.
    public var credentialID: String
    public var credentialType: CredentialType
    /// The device's name when it authenticated (AWS IoT firmware addresses its shadow by it).
    public var deviceName: String?

    public init(deviceID: String, tenantID: String, credentialID: String, credentialType: CredentialType, deviceName: String? = nil) {
        self.deviceID = deviceID
        self.tenantID = tenantID
        self.credentialID = credentialID
        self.credentialType = credentialType
        self.deviceName = deviceName
    }
}

/// A change that affects who may stay connected. The broker integration observes these and
/// disconnects the affected connections at once.
public enum RegistryChange: Sendable, Hashable {
    /// The device may no longer connect (disabled, decommissioned, deleted, moved to another
    /// tenant): every connection of it must go.
    case deviceRevoked(deviceID: String, reason: String)
    /// One credential was revoked: connections that authenticated with it must go.
    case credentialRevoked(deviceID: String, credentialID: String)
    /// An API key was revoked or expired: connections (and cached API decisions) using it must go.
    case apiKeyRevoked(apiKeyID: String)
    /// A certificate authority was created or registered (also the built-in one, created on
    /// first use): the MQTT TLS listener must trust it for client certificates.
    case certificateAuthorityAdded(tenantID: String)
}

/// What the first start created.
public struct BootstrapResult: Sendable, Hashable {
    public var tenant: Tenant
    /// The admin user and its one-time random password (nil when an API key was given).
    public var adminUsername: String?
    public var adminPassword: String?
    /// The admin API key, when `MERIDIAN_BOOTSTRAP_API_KEY` gave one.
    public var apiKeyID: String?

    public init(tenant: Tenant, adminUsername: String?, adminPassword: String?, apiKeyID: String?) {
        self.tenant = tenant
        self.adminUsername = adminUsername
        self.adminPassword = adminPassword
        self.apiKeyID = apiKeyID
    }
}

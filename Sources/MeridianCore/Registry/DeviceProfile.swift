import Foundation

/// Defaults shared by devices of one kind. Later features add telemetry schema, rules and
/// firmware to it.
public struct DeviceProfile: Sendable, Hashable, Codable {
    public var id: String
    public var tenantID: String
    /// Unique within the tenant.
    public var name: String
    public var description: String
    /// Transport settings (free JSON for now, e.g. `{"payload": "json"}`).
    public var transport: JSONValue
    public var provisioning: ProvisioningSettings
    public var createdAt: Date

    public init(
        id: String, tenantID: String, name: String, description: String = "", transport: JSONValue = .emptyObject,
        provisioning: ProvisioningSettings = .init(), createdAt: Date
    ) {
        self.id = id
        self.tenantID = tenantID
        self.name = name
        self.description = description
        self.transport = transport
        self.provisioning = provisioning
        self.createdAt = createdAt
    }
}

/// How devices of a profile may register themselves.
public struct ProvisioningSettings: Sendable, Hashable, Codable {
    public enum Mode: String, Sendable, Hashable, Codable, CaseIterable {
        /// No self-registration.
        case disabled
        /// A device that knows the key and secret may create itself.
        case allowCreate = "allow-create"
        /// Only devices already registered (by name) may fetch their credentials.
        case preRegisteredOnly = "pre-registered-only"
    }

    public var mode: Mode
    /// The provisioning key devices present (not secret: it names the profile). Unique.
    public var key: String?
    /// SHA-256 (hex) of the provisioning secret.
    public var secretHash: String?

    public init(mode: Mode = .disabled, key: String? = nil, secretHash: String? = nil) {
        self.mode = mode
        self.key = key
        self.secretHash = secretHash
    }
}

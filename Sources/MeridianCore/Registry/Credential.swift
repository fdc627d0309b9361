import Foundation

/// The kinds of device credentials.
public enum CredentialType: String, Sendable, Hashable, Codable, CaseIterable {
    /// An access token; the device sends it as its MQTT user name (as ThingsBoard devices do) or
    /// as a bearer token over HTTP.
    case token
    /// A user name and password (stored with a slow salted hash).
    case password
    /// An X.509 client certificate presented on the TLS listener.
    case certificate
}

/// One way a device proves who it is. A device may hold several at once, for rotation.
public struct Credential: Sendable, Hashable, Codable {
    public var id: String
    public var tenantID: String
    public var deviceID: String
    public var type: CredentialType
    public var createdAt: Date
    public var expiresAt: Date?
    public var revokedAt: Date?
    /// `token`: SHA-256 (hex) of the token.
    public var tokenHash: String?
    /// `password`: the user name (unique across the platform).
    public var username: String?
    /// `password`: ``PasswordHash`` encoding.
    public var passwordHash: String?
    /// `certificate`: SHA-256 (hex, lower case) of the DER certificate.
    public var certificateFingerprint: String?
    /// `certificate`: the certificate, PEM.
    public var certificatePEM: String?
    /// `certificate`: its subject common name.
    public var certificateCommonName: String?

    public init(
        id: String, tenantID: String, deviceID: String, type: CredentialType, createdAt: Date, expiresAt: Date? = nil,
        revokedAt: Date? = nil, tokenHash: String? = nil, username: String? = nil, passwordHash: String? = nil,
        certificateFingerprint: String? = nil, certificatePEM: String? = nil, certificateCommonName: String? = nil
    ) {
        self.id = id
        self.tenantID = tenantID
        self.deviceID = deviceID
        self.type = type
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.revokedAt = revokedAt
        self.tokenHash = tokenHash
        self.username = username
        self.passwordHash = passwordHash
        self.certificateFingerprint = certificateFingerprint
        self.certificatePEM = certificatePEM
        self.certificateCommonName = certificateCommonName
    }

    /// Whether the credential may be used at `now`.
    public func isUsable(at now: Date) -> Bool {
        revokedAt == nil && (expiresAt.map { $0 > now } ?? true)
    }
}

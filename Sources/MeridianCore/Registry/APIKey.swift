import Foundation

/// A key for scripts and automation, scoped to one tenant and one role. The secret is shown once
/// at creation; only its SHA-256 is stored.
public struct APIKey: Sendable, Hashable, Codable {
    public var id: String
    public var tenantID: String
    public var name: String
    public var role: Role
    /// Lower-case hex SHA-256 of the whole key.
    public var keyHash: String
    /// The first characters of the key, to recognise it in lists.
    public var prefix: String
    public var createdAt: Date
    public var expiresAt: Date?
    public var lastUsedAt: Date?
    public var revokedAt: Date?

    public init(
        id: String, tenantID: String, name: String, role: Role, keyHash: String, prefix: String, createdAt: Date,
        expiresAt: Date? = nil, lastUsedAt: Date? = nil, revokedAt: Date? = nil
    ) {
        self.id = id
        self.tenantID = tenantID
        self.name = name
        self.role = role
        self.keyHash = keyHash
        self.prefix = prefix
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.lastUsedAt = lastUsedAt
        self.revokedAt = revokedAt
    }

    /// Whether the key may be used at `now`.
    public func isUsable(at now: Date) -> Bool {
        revokedAt == nil && (expiresAt.map { $0 > now } ?? true)
    }
}

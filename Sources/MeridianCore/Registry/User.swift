import Foundation

/// A person who logs in (dashboard, API with a JWT). Roles are per tenant: see ``Membership``.
public struct User: Sendable, Hashable, Codable {
    public var id: String
    /// The login name (usually an e-mail address); unique.
    public var username: String
    /// ``PasswordHash`` encoding of the password. Never shown.
    public var passwordHash: String
    public var createdAt: Date
    public var disabled: Bool

    public init(id: String, username: String, passwordHash: String, createdAt: Date, disabled: Bool = false) {
        self.id = id
        self.username = username
        self.passwordHash = passwordHash
        self.createdAt = createdAt
        self.disabled = disabled
    }
}

/// A user's role in one tenant.
public struct Membership: Sendable, Hashable, Codable {
    public var userID: String
    public var tenantID: String
    public var role: Role

    public init(userID: String, tenantID: String, role: Role) {
        self.userID = userID
        self.tenantID = tenantID
        self.role = role
    }
}

/// A refresh token issued at login, stored hashed; exchanged for a new JWT until it expires or
/// is revoked.
public struct RefreshToken: Sendable, Hashable, Codable {
    public var tokenHash: String
    public var userID: String
    public var tenantID: String
    public var createdAt: Date
    public var expiresAt: Date
    public var revokedAt: Date?

    public init(tokenHash: String, userID: String, tenantID: String, createdAt: Date, expiresAt: Date, revokedAt: Date? = nil) {
        self.tokenHash = tokenHash
        self.userID = userID
        self.tenantID = tenantID
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.revokedAt = revokedAt
    }
}

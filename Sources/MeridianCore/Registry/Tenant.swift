import Foundation

/// An organisation using Meridian. Everything else (users' roles, devices, keys, audit entries)
/// belongs to one tenant, and nothing crosses from one tenant to another.
public struct Tenant: Sendable, Hashable, Codable {
    public var id: String
    public var name: String
    public var createdAt: Date

    public init(id: String, name: String, createdAt: Date) {
        self.id = id
        self.name = name
        self.createdAt = createdAt
    }
}

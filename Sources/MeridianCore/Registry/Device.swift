import Foundation

/// Whether a device may connect.
public enum DeviceStatus: String, Sendable, Hashable, Codable, CaseIterable {
    /// May connect with any of its credentials.
    case active
    /// Refused until enabled again; its credentials are kept.
    case disabled
    /// Taken out of service for good: credentials revoked, never connects again.
    case decommissioned
}

/// A connected thing: a sensor, a truck, a wearable.
public struct Device: Sendable, Hashable, Codable {
    /// Unique across all tenants; the `{deviceId}` of its topics (`devices/{deviceId}/...`).
    public var id: String
    public var tenantID: String
    /// Unique within the tenant.
    public var name: String
    public var profileID: String?
    public var labels: [String: String]
    /// Free-form JSON the operator attaches.
    public var metadata: JSONValue
    public var createdAt: Date
    public var lastSeenAt: Date?
    public var status: DeviceStatus

    public init(
        id: String, tenantID: String, name: String, profileID: String? = nil, labels: [String: String] = [:],
        metadata: JSONValue = .emptyObject, createdAt: Date, lastSeenAt: Date? = nil, status: DeviceStatus = .active
    ) {
        self.id = id
        self.tenantID = tenantID
        self.name = name
        self.profileID = profileID
        self.labels = labels
        self.metadata = metadata
        self.createdAt = createdAt
        self.lastSeenAt = lastSeenAt
        self.status = status
    }
}

/// A filter on a tenant's devices, with cursor pagination (ordered by id).
public struct DeviceQuery: Sendable, Hashable {
    public var tenantID: String
    /// Every pair must match.
    public var labels: [String: String]
    public var status: DeviceStatus?
    public var profileID: String?
    public var namePrefix: String?
    public var limit: Int
    /// The id of the last device of the previous page.
    public var after: String?

    public init(
        tenantID: String, labels: [String: String] = [:], status: DeviceStatus? = nil, profileID: String? = nil,
        namePrefix: String? = nil, limit: Int = 100, after: String? = nil
    ) {
        self.tenantID = tenantID
        self.labels = labels
        self.status = status
        self.profileID = profileID
        self.namePrefix = namePrefix
        self.limit = limit
        self.after = after
    }
}

/// One page of a list; `nextCursor` is nil on the last page.
public struct Page<Item: Sendable>: Sendable {
    public var items: [Item]
    public var nextCursor: String?

    public init(items: [Item], nextCursor: String?) {
        self.items = items
        self.nextCursor = nextCursor
    }
}

extension Page: Equatable where Item: Equatable {}

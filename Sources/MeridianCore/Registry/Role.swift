/// What a user or API key may do in a tenant. Each role can do everything the roles below it can.
///
/// - `viewer`: read everything in the tenant.
/// - `operator`: also manage devices, credentials and certificates, and subscribe to devices' topics.
/// - `admin`: also manage profiles, users, API keys and the tenant's CA; read the audit log.
/// - `owner`: also manage admins and owners.
public enum Role: String, Sendable, Hashable, Codable, CaseIterable, Comparable {
    case viewer
    case `operator`
    case admin
    case owner

    private var rank: Int {
        switch self {
        case .viewer: 0
        case .operator: 1
        case .admin: 2
        case .owner: 3
        }
    }

    public static func < (lhs: Role, rhs: Role) -> Bool { lhs.rank < rhs.rank }

    /// Whether this role includes `required`.
    public func allows(_ required: Role) -> Bool { self >= required }
}

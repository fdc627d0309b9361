/// Why the registry refused a request. The API layer turns it into problem+json (``Code`` picks
/// the status and `type`; ``field`` names the offending input), the CLI into a message.
public struct RegistryError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable {
            case invalid, notFound, conflict, unauthenticated, forbidden, limitExceeded
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// Input that does not validate (HTTP 400/422).
        public static let invalid = Code(.invalid)
        /// No such thing in the caller's tenant (HTTP 404; also for another tenant's things).
        public static let notFound = Code(.notFound)
        /// A name or id already taken, or a state that forbids the change (HTTP 409).
        public static let conflict = Code(.conflict)
        /// Bad or missing credentials (HTTP 401).
        public static let unauthenticated = Code(.unauthenticated)
        /// Authenticated, but the role does not allow it (HTTP 403).
        public static let forbidden = Code(.forbidden)
        /// Too many attempts (HTTP 429).
        public static let limitExceeded = Code(.limitExceeded)

        public var description: String { base.rawValue }
    }

    /// One bad row of a bulk import.
    public struct RowError: Sendable, Hashable, Codable {
        /// 1-based line (CSV, counting the header) or 0-based index (JSON) of the row.
        public var line: Int
        public var field: String
        public var reason: String

        public init(line: Int, field: String, reason: String) {
            self.line = line
            self.field = field
            self.reason = reason
        }
    }

    public var code: Code
    /// Human-readable; never carries secrets.
    public var message: String
    /// The offending input field (JSON name), when one is to blame.
    public var field: String?
    /// Bulk import: every bad row.
    public var rowErrors: [RowError]

    public init(_ code: Code, _ message: String, field: String? = nil, rowErrors: [RowError] = []) {
        self.code = code
        self.message = message
        self.field = field
        self.rowErrors = rowErrors
    }

    public static func invalid(_ field: String, _ message: String) -> RegistryError {
        RegistryError(.invalid, message, field: field)
    }

    public static func notFound(_ what: String) -> RegistryError {
        RegistryError(.notFound, "\(what) not found")
    }

    public static func conflict(_ field: String?, _ message: String) -> RegistryError {
        RegistryError(.conflict, message, field: field)
    }

    public var description: String {
        "RegistryError.\(code): \(message)" + (field.map { " (field \($0))" } ?? "")
    }
}

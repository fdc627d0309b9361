/// Why the twin service refused a request. The REST API turns it into problem+json (``Code``
/// picks the status; ``field`` names the offending input), the MQTT adapters into a `rejected`
/// answer with the same status as `code`.
public struct TwinError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable {
            case invalid, notFound, versionConflict, tooLarge
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// A malformed update: not an object, a bad twin name, nesting too deep (HTTP 400).
        public static let invalid = Code(.invalid)
        /// No such twin, or no history at the asked time (HTTP 404).
        public static let notFound = Code(.notFound)
        /// The update named a version that is not the current one (HTTP 409).
        public static let versionConflict = Code(.versionConflict)
        /// The document would exceed the configured size (HTTP 413).
        public static let tooLarge = Code(.tooLarge)

        /// The HTTP status (and AWS `rejected` code) of this refusal.
        public var status: Int {
            switch base {
            case .invalid: 400
            case .notFound: 404
            case .versionConflict: 409
            case .tooLarge: 413
            }
        }

        public var description: String { base.rawValue }
    }

    public var code: Code
    /// Human-readable; never carries payloads.
    public var message: String
    /// The offending field (`desired.a.b`, `version`, `name`), when one is to blame.
    public var field: String?

    public init(_ code: Code, _ message: String, field: String? = nil) {
        self.code = code
        self.message = message
        self.field = field
    }

    public static func invalid(_ field: String?, _ message: String) -> TwinError {
        TwinError(.invalid, message, field: field)
    }

    public var description: String {
        "TwinError.\(code): \(message)" + (field.map { " (field \($0))" } ?? "")
    }
}

import Foundation

/// Why a webhook request or a dead-letter operation was refused. The API layer turns it into
/// problem+json (``Code`` picks the status and `type`; ``field`` names the offending input).
/// Messages never carry the secret, the body or the URL's credentials.
public struct WebhookError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable {
            case invalid, notFound, unavailable
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// A request field that does not validate (HTTP 422).
        public static let invalid = Code(.invalid)
        /// No such dead letter in the caller's tenant (HTTP 404).
        public static let notFound = Code(.notFound)
        /// Webhooks cannot be sent now: the dispatcher is shutting down (HTTP 503).
        public static let unavailable = Code(.unavailable)

        public var description: String { base.rawValue }
    }

    public var code: Code
    public var message: String
    /// The offending field of ``WebhookRequest`` (`url`, `timeoutMs`, `maxAttempts`, `secret`,
    /// `body`); a rule's validation prefixes it with the action's path.
    public var field: String?
    public let file: String
    public let line: Int

    init(_ code: Code, _ message: String, field: String? = nil, file: String, line: Int) {
        self.code = code
        self.message = message
        self.field = field
        self.file = file
        self.line = line
    }

    /// A field of a webhook request that does not validate.
    public static func invalid(_ message: String, field: String, file: String = #fileID, line: Int = #line) -> WebhookError {
        WebhookError(.invalid, message, field: field, file: file, line: line)
    }

    /// No such dead letter in the tenant.
    public static func notFound(_ message: String, file: String = #fileID, line: Int = #line) -> WebhookError {
        WebhookError(.notFound, message, file: file, line: line)
    }

    /// Webhooks cannot be sent now.
    public static func unavailable(_ message: String, file: String = #fileID, line: Int = #line) -> WebhookError {
        WebhookError(.unavailable, message, file: file, line: line)
    }

    public var description: String { "\(code): \(message)" }
}

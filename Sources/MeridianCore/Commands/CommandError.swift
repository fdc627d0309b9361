import Foundation

/// Why the command service refused a request. The API layer turns it into problem+json
/// (``Code`` picks the status and `type`; ``field`` names the offending input).
public struct CommandError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable {
            case invalid, notFound, rateLimited, deviceOffline, unavailable
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// Input that does not validate (HTTP 422).
        public static let invalid = Code(.invalid)
        /// No such command for this device in the caller's tenant (HTTP 404).
        public static let notFound = Code(.notFound)
        /// The device's or the tenant's command rate is exhausted (HTTP 429, ``retryAfter``).
        public static let rateLimited = Code(.rateLimited)
        /// A non-persistent command to a device that is not connected (HTTP 409).
        public static let deviceOffline = Code(.deviceOffline)
        /// Commands cannot be delivered now (HTTP 503).
        public static let unavailable = Code(.unavailable)

        public var description: String { base.rawValue }
    }

    public var code: Code
    public var message: String
    /// The offending input field (`method`, `timeoutMs`).
    public var field: String?
    /// For ``Code/rateLimited``: seconds until a command would be accepted.
    public var retryAfter: TimeInterval?
    /// The command the error is about, when one was recorded (device offline: stored as failed).
    public var commandID: String?
    public let file: String
    public let line: Int

    init(_ code: Code, _ message: String, field: String? = nil, retryAfter: TimeInterval? = nil, commandID: String? = nil, file: String, line: Int) {
        self.code = code
        self.message = message
        self.field = field
        self.retryAfter = retryAfter
        self.commandID = commandID
        self.file = file
        self.line = line
    }

    public static func invalid(_ message: String, field: String, file: String = #fileID, line: Int = #line) -> CommandError {
        CommandError(.invalid, message, field: field, file: file, line: line)
    }

    public static func notFound(_ message: String, file: String = #fileID, line: Int = #line) -> CommandError {
        CommandError(.notFound, message, file: file, line: line)
    }

    public static func rateLimited(_ message: String, retryAfter: TimeInterval, file: String = #fileID, line: Int = #line) -> CommandError {
        CommandError(.rateLimited, message, retryAfter: retryAfter, file: file, line: line)
    }

    public static func deviceOffline(_ message: String, commandID: String, file: String = #fileID, line: Int = #line) -> CommandError {
        CommandError(.deviceOffline, message, commandID: commandID, file: file, line: line)
    }

    public static func unavailable(_ message: String, file: String = #fileID, line: Int = #line) -> CommandError {
        CommandError(.unavailable, message, file: file, line: line)
    }

    public var description: String { "\(code): \(message)" }
}

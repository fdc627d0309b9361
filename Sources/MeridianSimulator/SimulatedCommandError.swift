/// Why a simulated device refused a command; the runner sends ``message`` back as the command's
/// error answer.
public struct SimulatedCommandError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of refusal.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable {
            case unknownMethod, invalidParams, unavailable
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The device has no such command.
        public static let unknownMethod = Code(.unknownMethod)
        /// A parameter is missing, of the wrong type or out of range (``SimulatedCommandError/field``).
        public static let invalidParams = Code(.invalidParams)
        /// The device cannot run the command in its current state.
        public static let unavailable = Code(.unavailable)

        public var description: String { base.rawValue }
    }

    /// The kind of refusal.
    public var code: Code
    /// A human explanation, naming the method or parameter.
    public var message: String
    /// The offending parameter, for ``Code/invalidParams``.
    public var field: String?

    /// An unknown command method.
    public static func unknownMethod(_ method: String, known: [String]) -> SimulatedCommandError {
        SimulatedCommandError(
            code: .unknownMethod,
            message: "unknown command '\(method)'; this device knows: \(known.joined(separator: ", "))",
            field: "method"
        )
    }

    /// A bad parameter.
    public static func invalidParams(_ message: String, field: String) -> SimulatedCommandError {
        SimulatedCommandError(code: .invalidParams, message: message, field: field)
    }

    /// A command the device cannot run now.
    public static func unavailable(_ message: String) -> SimulatedCommandError {
        SimulatedCommandError(code: .unavailable, message: message, field: nil)
    }

    public var description: String { "\(code): \(message)" }
}

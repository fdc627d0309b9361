/// One problem with the configuration, naming the key and where its value came from.
///
/// Its `description` reads like
/// `broker.limits.maximum_connections = -5 (meridian.toml line 12): must be at least 1`;
/// the command line prefixes it with `meridian: invalid configuration: `.
public struct ConfigurationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of problem.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: Sendable, Hashable {
            case invalidValue, unknownKey, syntax, unreadableFile, conflict
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// A value of the wrong type, out of range, or otherwise not acceptable for its key.
        public static let invalidValue = Code(.invalidValue)
        /// A key that is not in the registry (config file or `--set`).
        public static let unknownKey = Code(.unknownKey)
        /// The config file is not valid TOML (or uses TOML the reader does not support).
        public static let syntax = Code(.syntax)
        /// The config file could not be read.
        public static let unreadableFile = Code(.unreadableFile)
        /// Two keys whose values do not go together, or one key given twice on the command line.
        public static let conflict = Code(.conflict)

        public var description: String {
            switch base {
            case .invalidValue: "invalid value"
            case .unknownKey: "unknown key"
            case .syntax: "syntax error"
            case .unreadableFile: "unreadable file"
            case .conflict: "conflict"
            }
        }
    }

    /// The kind of problem.
    public var code: Code
    /// The registry key concerned, when there is one.
    public var key: String?
    /// Where the offending value or line came from.
    public var source: ConfigurationSource?
    /// The complete human-readable message.
    public var message: String
    /// Where in Meridian's source the error was raised, for debugging.
    public var file: String
    public var line: Int

    public var description: String { message }

    private init(
        code: Code,
        key: String?,
        source: ConfigurationSource?,
        message: String,
        file: String,
        line: Int
    ) {
        self.code = code
        self.key = key
        self.source = source
        self.message = message
        self.file = file
        self.line = line
    }

    /// `key = value (source): reason`.
    static func invalidValue(
        key: String,
        value: String,
        source: ConfigurationSource,
        reason: String,
        file: String = #fileID,
        line: Int = #line
    ) -> Self {
        .init(
            code: .invalidValue,
            key: key,
            source: source,
            message: "\(key) = \(value) (\(source)): \(reason)",
            file: file,
            line: line
        )
    }

    /// `unknown key name (source)`, with a suggestion when one key is close.
    static func unknownKey(
        _ name: String,
        source: ConfigurationSource,
        suggestion: String?,
        file: String = #fileID,
        line: Int = #line
    ) -> Self {
        var message = "unknown key \(name) (\(source))"
        if let suggestion { message += "; did you mean \(suggestion)?" }
        return .init(code: .unknownKey, key: nil, source: source, message: message, file: file, line: line)
    }

    /// `path line N: reason`.
    static func syntax(
        path: String,
        error: TOMLError,
        file: String = #fileID,
        line: Int = #line
    ) -> Self {
        let source = ConfigurationSource.file(path: path, line: error.line)
        return .init(
            code: .syntax,
            key: nil,
            source: source,
            message: "\(source): \(error.reason)",
            file: file,
            line: line
        )
    }

    /// `cannot read config file path (given by ...): reason`.
    static func unreadableFile(
        path: String,
        givenBy origin: String,
        reason: String,
        file: String = #fileID,
        line: Int = #line
    ) -> Self {
        .init(
            code: .unreadableFile,
            key: nil,
            source: nil,
            message: "cannot read config file \(path) (given by \(origin)): \(reason)",
            file: file,
            line: line
        )
    }

    /// Two settings that cannot both hold.
    static func conflict(
        key: String,
        source: ConfigurationSource?,
        message: String,
        file: String = #fileID,
        line: Int = #line
    ) -> Self {
        .init(code: .conflict, key: key, source: source, message: message, file: file, line: line)
    }
}

/// Every problem found while reading the configuration; start-up stops when there is at least one.
public struct InvalidConfiguration: Error, Sendable, CustomStringConvertible {
    /// The problems, in the order the sources were read (environment, file, command line, then
    /// checks across keys).
    public var errors: [ConfigurationError]

    public init(errors: [ConfigurationError]) {
        self.errors = errors
    }

    /// One line per problem, each starting with "invalid configuration: ".
    public var description: String {
        errors.map { "invalid configuration: \($0)" }.joined(separator: "\n")
    }
}

/// A query that does not parse or does not type-check: where (offset in characters from 0, line
/// and column from 1) and what was wrong, e.g. `expected a value after '=' at 1:15`.
public struct FleetQueryError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of mistake.
    public enum Kind: String, Sendable, Hashable {
        /// The text does not follow the grammar (unknown character, missing operand, ...).
        case syntax
        /// The query parses but compares values of incompatible types or names an unknown field.
        case type
    }

    public var kind: Kind
    /// What was wrong and what was expected.
    public var message: String
    /// Offset of the offending token, in characters (Unicode scalars) from the start, 0-based.
    public var offset: Int
    /// 1-based line of the offending token.
    public var line: Int
    /// 1-based column of the offending token.
    public var column: Int

    public init(kind: Kind, message: String, offset: Int, line: Int, column: Int) {
        self.kind = kind
        self.message = message
        self.offset = offset
        self.line = line
        self.column = column
    }

    public var description: String { "\(message) at \(line):\(column)" }
}

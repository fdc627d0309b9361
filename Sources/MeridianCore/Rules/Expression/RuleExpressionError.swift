/// A rule expression that does not parse or does not type-check: what was wrong and where
/// (offset in Unicode scalars from 0, line and column from 1 of the offending token), e.g.
/// `expected ')' to close the '(' at 1:5, found the end of the expression at 1:14`.
public struct RuleExpressionError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of mistake.
    public enum Kind: String, Sendable, Hashable {
        /// The text does not follow the grammar (unknown character, missing operand, ...).
        case syntax
        /// The expression parses but combines values of incompatible types, or calls a function
        /// with the wrong arguments.
        case type
    }

    /// Syntax or type.
    public var kind: Kind
    /// What was wrong and what was expected (never contains values read from devices).
    public var message: String
    /// Offset of the offending token, in Unicode scalars from the start, 0-based.
    public var offset: Int
    /// 1-based line of the offending token.
    public var line: Int
    /// 1-based column of the offending token.
    public var column: Int

    /// An error at an explicit position.
    public init(kind: Kind, message: String, offset: Int, line: Int, column: Int) {
        self.kind = kind
        self.message = message
        self.offset = offset
        self.line = line
        self.column = column
    }

    /// An error at `offset` of `source`; line and column are computed from the text.
    init(_ kind: Kind, _ message: String, at offset: Int, in source: String) {
        let (line, column) = SourceText.lineAndColumn(of: offset, in: source)
        self.init(kind: kind, message: message, offset: offset, line: line, column: column)
    }

    /// The message followed by `at line:column`.
    public var description: String { "\(message) at \(line):\(column)" }
}

/// A binary operator of the rule expression language.
public enum RuleExpressionOperator: String, Sendable, Hashable, CaseIterable {
    case add = "+"
    case subtract = "-"
    case multiply = "*"
    case divide = "/"
    case remainder = "%"
    case less = "<"
    case lessOrEqual = "<="
    case greater = ">"
    case greaterOrEqual = ">="
    case equal = "=="
    case notEqual = "!="
    case and = "&&"
    case or = "||"

    /// The operator as written (`&&` also stands for `and`, `||` for `or`).
    public var symbol: String { rawValue }
}

/// One node of a parsed, type-checked rule expression, with its static type and where it is in
/// the source.
public struct RuleExpressionNode: Sendable, Hashable, CustomStringConvertible {
    /// What the node computes.
    public indirect enum Kind: Sendable, Hashable {
        case number(Double)
        case string(String)
        case bool(Bool)
        /// The latest value of a telemetry key.
        case key(String)
        /// A value in the device's twin.
        case twin(RuleTwinSection, [String])
        /// Unary minus.
        case negate(RuleExpressionNode)
        /// Boolean not (`!`, `not`).
        case not(RuleExpressionNode)
        case binary(RuleExpressionOperator, RuleExpressionNode, RuleExpressionNode)
        /// `abs(x)`.
        case abs(RuleExpressionNode)
        /// `min(a, b, ...)`.
        case min([RuleExpressionNode])
        /// `max(a, b, ...)`.
        case max([RuleExpressionNode])
        /// A window function over a telemetry key (`avg(temp, 10m)`).
        case window(RuleExpressionWindow)
    }

    /// What the node computes.
    public var kind: Kind
    /// Its type as checked when the expression was compiled.
    public var type: RuleExpressionType
    /// Offset of the node's own token (the operator of a binary node, a function's name).
    public var offset: Int
    /// Offset of the node's first token.
    public var start: Int
    /// Offset just after the node's last token.
    public var end: Int
    /// Longest path to a leaf (a leaf is 1).
    var height: Int

    /// The node as source text, every operation parenthesised: `((temp + 1) > reported.max)`.
    /// Compiling the text gives the same tree.
    public var description: String {
        switch kind {
        case .number(let value): Self.format(value)
        case .string(let value): Self.quote(value)
        case .bool(let value): value ? "true" : "false"
        case .key(let key): Self.formatKey(key)
        case .twin(let section, let path):
            ([section.rawValue] + path.map { Self.isPlainSegment($0) ? $0 : Self.backquote($0) }).joined(separator: ".")
        case .negate(let inner): "(-\(inner))"
        case .not(let inner): "(!\(inner))"
        case .binary(let op, let left, let right): "(\(left) \(op.symbol) \(right))"
        case .abs(let inner): "abs(\(inner))"
        case .min(let arguments): "min(\(arguments.map(\.description).joined(separator: ", ")))"
        case .max(let arguments): "max(\(arguments.map(\.description).joined(separator: ", ")))"
        case .window(let window):
            "\(window.function.name)(\(Self.formatKey(window.key)), \(window.durationMilliseconds)ms)"
        }
    }

    /// Words that are never telemetry keys unless backquoted.
    static let keywords: Set<String> = ["true", "false", "and", "or", "not"]

    static func format(_ value: Double) -> String {
        if value == value.rounded(), Swift.abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }

    static func quote(_ value: String) -> String {
        var result = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\t": result += "\\t"
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }

    static func backquote(_ key: String) -> String {
        var result = "`"
        for scalar in key.unicodeScalars {
            if scalar == "`" || scalar == "\\" { result += "\\" }
            result.unicodeScalars.append(scalar)
        }
        return result + "`"
    }

    static func isPlainSegment(_ segment: String) -> Bool {
        !segment.isEmpty && segment.unicodeScalars.allSatisfy(RuleExpressionLexer.isWordPart)
    }

    static func formatKey(_ key: String) -> String {
        guard let first = key.unicodeScalars.first, RuleExpressionLexer.isWordStart(first),
            key.unicodeScalars.allSatisfy(RuleExpressionLexer.isWordPart), !keywords.contains(key)
        else { return backquote(key) }
        return key
    }
}

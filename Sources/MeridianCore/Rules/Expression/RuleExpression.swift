/// A compiled rule condition over one device's latest telemetry, its twin and windows over its
/// recent samples, e.g. `temp > reported.setpoint + 5 && door == "open"` or
/// `rate(energy, 1m) > 2.5 or avg(temp, 10m) - avg(temp, 1h) > 3`.
///
/// ## Grammar
///
/// ```
/// condition      = or                                 (must be a bool, or unknown)
/// or             = and { ("||" | "or") and }
/// and            = equality { ("&&" | "and") equality }
/// equality       = comparison { ("==" | "!=") comparison }
/// comparison     = additive { ("<" | "<=" | ">" | ">=") additive }
/// additive       = multiplicative { ("+" | "-") multiplicative }
/// multiplicative = unary { ("*" | "/" | "%") unary }
/// unary          = ("-" | "!" | "not") unary | primary
/// primary        = number | string | "true" | "false" | key | twin | call | "(" or ")"
/// call           = ("abs" | "min" | "max") "(" or { "," or } ")"
///                | ("avg" | "min_over" | "max_over" | "delta" | "rate") "(" key "," duration ")"
/// key            = word | "`" { any character; \` and \\ escaped } "`"
/// word           = [A-Za-z_][A-Za-z0-9_]*             (not true, false, and, or, not)
/// twin           = ("reported" | "desired") "." segment { "." segment }
/// segment        = [A-Za-z0-9_]+ | "`" ... "`"
/// number         = digits [ "." digits ] [ ("e" | "E") ["+" | "-"] digits ]   (80, 21.5, 1e3)
/// string         = '"' { character | \" | \\ | \n | \t } '"'
/// duration       = number ("ms" | "s" | "m" | "h" | "d")   (500ms, 30s, 10m, 1h, 2d; 1ms to 30d)
/// ```
///
/// All binary operators are left-associative; the levels above go from loosest to tightest
/// (`a || b && c` is `a || (b && c)`, `1 + 2 * 3` is `1 + (2 * 3)`). `-3` is unary minus
/// applied to `3`. A duration is only allowed as the second argument of a window function.
///
/// ## Types
///
/// Values are numbers, strings and bools. A key's type comes from the
/// ``RuleExpressionSchema``; a key not in the schema and every twin path are *unknown* and
/// checked at evaluation. Arithmetic, `-`, `abs`, `min`, `max` take numbers; `<` `<=` `>` `>=`
/// compare two numbers or two strings (strings by Unicode scalar values); `==` `!=` compare two
/// values of the same type; `&&` `||` `!` take bools. Window functions take a numeric key.
/// Mistakes throw a ``RuleExpressionError`` with the position of the culprit.
///
/// ## Evaluation
///
/// Three-valued (``RuleExpressionResult``): a missing key or twin value, a value whose type at
/// run time is not the one an operator needs, a window without enough samples, a division by zero
/// or a non-finite result make the sub-expression unknown, and unknown propagates — except that
/// `false && unknown` is false and `true || unknown` is true. A rule never fires on unknown.
public struct RuleExpression: Sendable, Hashable {
    /// The expression as written.
    public let source: String
    /// The checked tree.
    public let root: RuleExpressionNode

    /// Parses and type-checks `source` against the known key types in `schema`.
    public static func compile(
        _ source: String,
        schema: RuleExpressionSchema = .empty
    ) throws(RuleExpressionError) -> RuleExpression {
        var parser = try RuleExpressionParser(source: source, schema: schema)
        return RuleExpression(source: source, root: try parser.parse())
    }

    private init(source: String, root: RuleExpressionNode) {
        self.source = source
        self.root = root
    }

    /// Whether the condition holds for the device `context` describes.
    public func evaluate(in context: some RuleExpressionContext) -> RuleExpressionResult {
        switch value(in: context) {
        case .bool(let value)?: RuleExpressionResult(value)
        default: .unknown
        }
    }

    /// The value of the whole expression (nil: unknown), e.g. to record a firing's inputs.
    public func value(in context: some RuleExpressionContext) -> RuleExpressionValue? {
        RuleExpressionEvaluator(context: context).evaluate(root)
    }

    /// Every telemetry key read, directly or through a window function.
    public var referencedKeys: Set<String> {
        var keys: Set<String> = []
        visit { node in
            switch node.kind {
            case .key(let key): keys.insert(key)
            case .window(let window): keys.insert(window.key)
            default: break
            }
        }
        return keys
    }

    /// Every window read, without duplicates, in source order: the engine keeps one
    /// ``RuleSlidingWindow`` per key spanning the longest duration asked for it.
    public var windows: [RuleExpressionWindow] {
        var seen: Set<RuleExpressionWindow> = []
        var result: [RuleExpressionWindow] = []
        visit { node in
            if case .window(let window) = node.kind, seen.insert(window).inserted { result.append(window) }
        }
        return result
    }

    /// Whether the expression reads the twin.
    public var readsTwin: Bool {
        var reads = false
        visit { node in
            if case .twin = node.kind { reads = true }
        }
        return reads
    }

    /// Calls `body` on every node, parents before children, left to right.
    private func visit(_ body: (RuleExpressionNode) -> Void) {
        var pending = [root]
        while let node = pending.popLast() {
            body(node)
            switch node.kind {
            case .negate(let inner), .not(let inner), .abs(let inner): pending.append(inner)
            case .binary(_, let left, let right): pending.append(contentsOf: [right, left])
            case .min(let arguments), .max(let arguments): pending.append(contentsOf: arguments.reversed())
            default: break
            }
        }
    }
}

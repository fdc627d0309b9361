/// Recursive-descent parser and type checker for rule expressions (grammar on
/// ``RuleExpression``). Every node is type-checked as it is built, so an error carries the
/// position of its culprit.
struct RuleExpressionParser {
    /// Deepest nesting of parentheses, unary operators and function calls.
    static let maximumNesting = 64
    /// Longest chain of operators below one node (`a + b + c + ...`).
    static let maximumHeight = 256
    /// Most arguments of `min` / `max`.
    static let maximumArguments = 64

    private let source: String
    private let scalars: [Unicode.Scalar]
    private let schema: RuleExpressionSchema
    private let tokens: [RuleExpressionLexer.Token]
    private var index = 0
    private var nesting = 0

    init(source: String, schema: RuleExpressionSchema) throws(RuleExpressionError) {
        self.source = source
        self.schema = schema
        scalars = Array(source.unicodeScalars)
        var lexer = RuleExpressionLexer(source)
        tokens = try lexer.tokens()
    }

    private var current: RuleExpressionLexer.Token { tokens[index] }

    private func syntax(_ message: String, at offset: Int? = nil) -> RuleExpressionError {
        RuleExpressionError(.syntax, message, at: offset ?? current.offset, in: source)
    }

    private func typeError(_ message: String, at offset: Int) -> RuleExpressionError {
        RuleExpressionError(.type, message, at: offset, in: source)
    }

    private func found(_ token: RuleExpressionLexer.Token) -> String {
        token.kind == .end ? token.text : "'\(token.text)'"
    }

    /// The source of a node, shortened, in backquotes.
    private func quoted(_ node: RuleExpressionNode) -> String {
        var text = ""
        let end = Swift.min(node.end, scalars.count)
        let start = Swift.min(node.start, end)
        text.unicodeScalars.append(contentsOf: scalars[start..<end])
        if text.count > 40 { text = String(text.prefix(37)) + "..." }
        return "`\(text)`"
    }

    mutating func parse() throws(RuleExpressionError) -> RuleExpressionNode {
        guard current.kind != .end else {
            throw syntax("the expression is empty (expected a condition, e.g. temp > 80)")
        }
        let root = try parseBinary(level: 0)
        guard current.kind == .end else {
            throw syntax("expected an operator or the end of the expression, found \(found(current))")
        }
        switch root.type {
        case .bool, .unknown: return root
        default:
            throw typeError("the condition must be true or false; \(quoted(root)) is \(root.type)", at: root.start)
        }
    }

    // MARK: Binary operators, by precedence (loosest first)

    private static let levels: [[RuleExpressionOperator]] = [
        [.or], [.and], [.equal, .notEqual], [.less, .lessOrEqual, .greater, .greaterOrEqual],
        [.add, .subtract], [.multiply, .divide, .remainder],
    ]

    private func binaryOperator(_ token: RuleExpressionLexer.Token) -> RuleExpressionOperator? {
        switch token.kind {
        case .or: .or
        case .and: .and
        case .identifier("or"): .or
        case .identifier("and"): .and
        case .equal: .equal
        case .notEqual: .notEqual
        case .less: .less
        case .lessOrEqual: .lessOrEqual
        case .greater: .greater
        case .greaterOrEqual: .greaterOrEqual
        case .plus: .add
        case .minus: .subtract
        case .star: .multiply
        case .slash: .divide
        case .percent: .remainder
        default: nil
        }
    }

    private mutating func parseBinary(level: Int) throws(RuleExpressionError) -> RuleExpressionNode {
        guard level < Self.levels.count else { return try parseUnary() }
        var left = try parseBinary(level: level + 1)
        while let op = binaryOperator(current), Self.levels[level].contains(op) {
            let token = current
            index += 1
            let right = try parseBinary(level: level + 1)
            left = try combine(op, left, right, at: token)
        }
        return left
    }

    private func combine(
        _ op: RuleExpressionOperator,
        _ left: RuleExpressionNode,
        _ right: RuleExpressionNode,
        at token: RuleExpressionLexer.Token
    ) throws(RuleExpressionError) -> RuleExpressionNode {
        let height = Swift.max(left.height, right.height) + 1
        guard height <= Self.maximumHeight else {
            throw syntax("the expression chains more than \(Self.maximumHeight) operators", at: token.offset)
        }
        let symbol = "`\(token.text)`"
        let type: RuleExpressionType
        switch op {
        case .add, .subtract, .multiply, .divide, .remainder:
            for side in [left, right] where side.type != .number && side.type != .unknown {
                throw typeError("\(symbol) needs numbers; \(quoted(side)) is \(side.type)", at: token.offset)
            }
            type = .number
        case .less, .lessOrEqual, .greater, .greaterOrEqual:
            for side in [left, right] where side.type == .bool {
                throw typeError(
                    "\(symbol) orders numbers or strings; \(quoted(side)) is \(side.type)",
                    at: token.offset
                )
            }
            try checkSameType(symbol, left, right, at: token.offset)
            type = .bool
        case .equal, .notEqual:
            try checkSameType(symbol, left, right, at: token.offset)
            type = .bool
        case .and, .or:
            for side in [left, right] where side.type != .bool && side.type != .unknown {
                throw typeError(
                    "\(symbol) needs a condition on both sides; \(quoted(side)) is \(side.type)",
                    at: token.offset
                )
            }
            type = .bool
        }
        return RuleExpressionNode(
            kind: .binary(op, left, right),
            type: type,
            offset: token.offset,
            start: left.start,
            end: right.end,
            height: height
        )
    }

    private func checkSameType(
        _ symbol: String,
        _ left: RuleExpressionNode,
        _ right: RuleExpressionNode,
        at offset: Int
    ) throws(RuleExpressionError) {
        guard left.type != .unknown, right.type != .unknown, left.type != right.type else { return }
        throw typeError("\(quoted(left)) is \(left.type); \(symbol) compares it with \(right.type)", at: offset)
    }

    // MARK: Unary operators and primaries

    private mutating func nest(at token: RuleExpressionLexer.Token) throws(RuleExpressionError) {
        nesting += 1
        guard nesting <= Self.maximumNesting else {
            throw syntax("the expression nests deeper than \(Self.maximumNesting) levels", at: token.offset)
        }
    }

    private mutating func parseUnary() throws(RuleExpressionError) -> RuleExpressionNode {
        let token = current
        let negate: Bool
        switch token.kind {
        case .minus: negate = true
        case .bang, .identifier("not"): negate = false
        default: return try parsePrimary()
        }
        index += 1
        try nest(at: token)
        let operand = try parseUnary()
        nesting -= 1
        let symbol = "`\(token.text)`"
        if negate, operand.type != .number, operand.type != .unknown {
            throw typeError("\(symbol) needs a number; \(quoted(operand)) is \(operand.type)", at: token.offset)
        }
        if !negate, operand.type != .bool, operand.type != .unknown {
            throw typeError("\(symbol) needs a condition; \(quoted(operand)) is \(operand.type)", at: token.offset)
        }
        return RuleExpressionNode(
            kind: negate ? .negate(operand) : .not(operand),
            type: negate ? .number : .bool,
            offset: token.offset,
            start: token.offset,
            end: operand.end,
            height: operand.height + 1
        )
    }

    private func end(of token: RuleExpressionLexer.Token) -> Int {
        token.offset + token.text.unicodeScalars.count
    }

    private func leaf(
        _ kind: RuleExpressionNode.Kind,
        _ type: RuleExpressionType,
        _ token: RuleExpressionLexer.Token
    ) -> RuleExpressionNode {
        RuleExpressionNode(
            kind: kind,
            type: type,
            offset: token.offset,
            start: token.offset,
            end: end(of: token),
            height: 1
        )
    }

    private func keyType(_ key: String) -> RuleExpressionType {
        schema.keys[key].map(RuleExpressionType.init) ?? .unknown
    }

    private mutating func parsePrimary() throws(RuleExpressionError) -> RuleExpressionNode {
        let token = current
        switch token.kind {
        case .number(let value):
            index += 1
            return leaf(.number(value), .number, token)
        case .string(let value):
            index += 1
            return leaf(.string(value), .string, token)
        case .quotedKey(let key):
            index += 1
            return leaf(.key(key), keyType(key), token)
        case .identifier(let word):
            if index + 1 < tokens.count, tokens[index + 1].kind == .leftParen { return try parseCall(word) }
            switch word {
            case "true", "false":
                index += 1
                return leaf(.bool(word == "true"), .bool, token)
            case "and", "or", "not":
                throw syntax("expected a value, found '\(word)' (backquote a key with that name: `\(word)`)")
            default:
                index += 1
                return leaf(.key(word), keyType(word), token)
            }
        case .path(let segments):
            guard let section = RuleTwinSection(rawValue: segments[0]) else {
                throw syntax(
                    "'\(token.text)' is not a twin path (only reported.<path> and desired.<path> have sub-keys; "
                        + "backquote a telemetry key that contains dots)"
                )
            }
            index += 1
            return leaf(.twin(section, Array(segments.dropFirst())), .unknown, token)
        case .leftParen:
            index += 1
            try nest(at: token)
            let inner = try parseBinary(level: 0)
            nesting -= 1
            guard current.kind == .rightParen else {
                throw syntax("expected ')' to close the '(' at offset \(token.offset), found \(found(current))")
            }
            let close = current
            index += 1
            var node = inner
            node.start = token.offset
            node.end = end(of: close)
            return node
        case .duration:
            throw syntax(
                "a duration such as '\(token.text)' is only allowed as the second argument of "
                    + "avg, min_over, max_over, delta or rate"
            )
        default:
            throw syntax("expected a value (a number, a string, a key, a function or '('), found \(found(token))")
        }
    }

    private mutating func parseCall(_ name: String) throws(RuleExpressionError) -> RuleExpressionNode {
        let nameToken = current
        if let function = RuleWindowFunction(name: name) { return try parseWindow(function) }
        guard ["abs", "min", "max"].contains(name) else {
            throw typeError(
                "unknown function `\(name)` (functions: abs, min, max, avg, min_over, max_over, delta, rate)",
                at: nameToken.offset
            )
        }
        index += 2
        try nest(at: nameToken)
        var arguments: [RuleExpressionNode] = []
        if current.kind != .rightParen {
            while true {
                if case .duration = current.kind, name != "abs" {
                    throw syntax(
                        "`\(name)` compares numbers; for the \(name)imum over time use \(name)_over(key, \(current.text))"
                    )
                }
                let argument = try parseBinary(level: 0)
                if argument.type != .number, argument.type != .unknown {
                    throw typeError(
                        "`\(name)` needs numbers; \(quoted(argument)) is \(argument.type)",
                        at: argument.start
                    )
                }
                arguments.append(argument)
                guard arguments.count <= Self.maximumArguments else {
                    throw syntax("`\(name)` takes at most \(Self.maximumArguments) arguments", at: argument.start)
                }
                guard current.kind == .comma else { break }
                index += 1
            }
        }
        nesting -= 1
        guard current.kind == .rightParen else {
            throw syntax("expected ',' or ')' to close the call of `\(name)`, found \(found(current))")
        }
        let close = current
        index += 1
        if name == "abs", arguments.count != 1 {
            throw typeError(
                "`abs` takes one number, e.g. abs(temp - 20)",
                at: arguments.count > 1 ? arguments[1].start : close.offset
            )
        }
        if name != "abs", arguments.count < 2 {
            throw typeError("`\(name)` takes two or more numbers, e.g. \(name)(temp, 80)", at: nameToken.offset)
        }
        let kind: RuleExpressionNode.Kind =
            name == "abs" ? .abs(arguments[0]) : name == "min" ? .min(arguments) : .max(arguments)
        return RuleExpressionNode(
            kind: kind,
            type: .number,
            offset: nameToken.offset,
            start: nameToken.offset,
            end: end(of: close),
            height: (arguments.map(\.height).max() ?? 0) + 1
        )
    }

    private mutating func parseWindow(_ function: RuleWindowFunction) throws(RuleExpressionError) -> RuleExpressionNode
    {
        let nameToken = current
        index += 2
        let usage = "`\(function.name)` takes a telemetry key and a duration, e.g. \(function.name)(temp, 10m)"
        let keyToken = current
        let key: String
        switch keyToken.kind {
        case .identifier(let word) where !RuleExpressionNode.keywords.contains(word): key = word
        case .quotedKey(let word): key = word
        default: throw typeError(usage, at: keyToken.offset)
        }
        if let type = schema.keys[key], type != .number {
            throw typeError(
                "`\(function.name)` needs a numeric key; `\(key)` is \(RuleExpressionType(type))",
                at: keyToken.offset
            )
        }
        index += 1
        guard current.kind == .comma else { throw typeError(usage, at: current.offset) }
        index += 1
        guard case .duration(let milliseconds) = current.kind else { throw typeError(usage, at: current.offset) }
        index += 1
        guard current.kind == .rightParen else {
            throw syntax("expected ')' to close the call of `\(function.name)`, found \(found(current))")
        }
        let close = current
        index += 1
        let window = RuleExpressionWindow(function: function, key: key, durationMilliseconds: milliseconds)
        return RuleExpressionNode(
            kind: .window(window),
            type: .number,
            offset: nameToken.offset,
            start: nameToken.offset,
            end: end(of: close),
            height: 1
        )
    }
}

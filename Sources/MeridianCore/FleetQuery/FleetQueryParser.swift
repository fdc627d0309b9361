import Foundation

/// Recursive-descent parser for the fleet query language (grammar in docs/api.md):
///
/// ```
/// query   = or
/// or      = and { "OR" and }
/// and     = not { "AND" not }
/// not     = "NOT" not | primary
/// primary = "(" or ")" | "EXISTS" field | "has" "(" field ")"
///         | field [ op value | ["NOT"] "IN" "[" value { "," value } "]" | "EXISTS" ]
/// value   = string | ["-"] number | "true" | "false" | "now" [ ("+" | "-") duration ]
/// ```
///
/// Keywords are case-insensitive; fields are not. Every comparison is type-checked
/// (``FleetQueryTypeChecker``) as it is parsed, so errors carry the position of the culprit.
struct FleetQueryParser {
    /// Deepest nesting of parentheses and NOTs accepted.
    static let maximumDepth = 64
    /// Most values in one `IN [...]` list.
    static let maximumListLength = 1000

    private let source: String
    private let tokens: [FleetQueryLexer.Token]
    private var index = 0
    private var depth = 0

    init(source: String) throws(FleetQueryError) {
        self.source = source
        var lexer = FleetQueryLexer(source)
        tokens = try lexer.tokens(source: source)
    }

    static func error(_ kind: FleetQueryError.Kind, _ message: String, at offset: Int, in source: String) -> FleetQueryError {
        let (line, column) = SourceText.lineAndColumn(of: offset, in: source)
        return FleetQueryError(kind: kind, message: message, offset: offset, line: line, column: column)
    }

    private var current: FleetQueryLexer.Token { tokens[index] }

    private func fail(_ message: String, at token: FleetQueryLexer.Token? = nil) -> FleetQueryError {
        let token = token ?? current
        return Self.error(.syntax, message, at: token.offset, in: source)
    }

    private func typeError(_ message: String, at offset: Int) -> FleetQueryError {
        Self.error(.type, message, at: offset, in: source)
    }

    private func keyword(_ token: FleetQueryLexer.Token) -> String? {
        if case .identifier(let text) = token.kind { return text.uppercased() }
        return nil
    }

    private mutating func accept(keyword word: String) -> Bool {
        guard keyword(current) == word else { return false }
        index += 1
        return true
    }

    private func found(_ token: FleetQueryLexer.Token) -> String {
        token.kind == .end ? "the end of the query" : "'\(token.text)'"
    }

    mutating func parse() throws(FleetQueryError) -> FleetExpression {
        guard current.kind != .end else { throw fail("the query is empty (expected a condition, e.g. labels.site = \"plant-3\")") }
        let expression = try parseOr()
        guard current.kind == .end else {
            throw fail("expected AND, OR or the end of the query, found \(found(current))")
        }
        return expression
    }

    private mutating func parseOr() throws(FleetQueryError) -> FleetExpression {
        var left = try parseAnd()
        while accept(keyword: "OR") { left = .or(left, try parseAnd()) }
        return left
    }

    private mutating func parseAnd() throws(FleetQueryError) -> FleetExpression {
        var left = try parseNot()
        while accept(keyword: "AND") { left = .and(left, try parseNot()) }
        return left
    }

    private mutating func nest() throws(FleetQueryError) {
        depth += 1
        guard depth <= Self.maximumDepth else { throw fail("the query nests deeper than \(Self.maximumDepth) levels") }
    }

    private mutating func parseNot() throws(FleetQueryError) -> FleetExpression {
        if accept(keyword: "NOT") {
            try nest()
            defer { depth -= 1 }
            return .not(try parseNot())
        }
        return try parsePrimary()
    }

    private mutating func parsePrimary() throws(FleetQueryError) -> FleetExpression {
        let token = current
        switch token.kind {
        case .leftParen:
            index += 1
            try nest()
            let inner = try parseOr()
            depth -= 1
            guard current.kind == .rightParen else { throw fail("expected ')' to close the '(' at offset \(token.offset), found \(found(current))") }
            index += 1
            return inner
        case .identifier(let text):
            let word = text.uppercased()
            if word == "EXISTS" {
                index += 1
                return .exists(try parseField(expecting: "a field after EXISTS"))
            }
            if word == "HAS", index + 1 < tokens.count, tokens[index + 1].kind == .leftParen {
                index += 2
                let field = try parseField(expecting: "a field inside has(...)")
                guard current.kind == .rightParen else { throw fail("expected ')' after the field of has(...), found \(found(current))") }
                index += 1
                return .exists(field)
            }
            if ["AND", "OR", "NOT", "IN", "TRUE", "FALSE", "NOW"].contains(word) {
                throw fail("expected a field (e.g. labels.site, online, reported.firmware.version), found \(found(token))")
            }
            return try parseCondition()
        default:
            throw fail("expected a condition (a field, NOT, EXISTS or '('), found \(found(token))")
        }
    }

    private mutating func parseField(expecting what: String) throws(FleetQueryError) -> FleetField {
        let token = current
        guard case .identifier(let text) = token.kind else { throw fail("expected \(what), found \(found(token))") }
        index += 1
        return try Self.field(text, at: token.offset, source: source)
    }

    static func field(_ text: String, at offset: Int, source: String) throws(FleetQueryError) -> FleetField {
        let parts = text.split(separator: ".", maxSplits: 1).map(String.init)
        let root = parts[0]
        let rest = parts.count > 1 ? parts[1] : nil
        func simple(_ field: FleetField) throws(FleetQueryError) -> FleetField {
            guard rest == nil else {
                throw error(.type, "\(root) has no sub-fields (found '\(text)')", at: offset, in: source)
            }
            return field
        }
        func path(_ make: ([String]) -> FleetField) throws(FleetQueryError) -> FleetField {
            guard let rest else {
                throw error(.type, "expected a key after '\(root).' (e.g. \(root).firmware.version)", at: offset, in: source)
            }
            return make(rest.split(separator: ".").map(String.init))
        }
        switch root {
        case "id": return try simple(.id)
        case "name": return try simple(.name)
        case "profile": return try simple(.profile)
        case "status": return try simple(.status)
        case "online": return try simple(.online)
        case "lastSeen": return try simple(.lastSeen)
        case "labels":
            guard let rest else { throw error(.type, "expected a label key after 'labels.' (e.g. labels.site)", at: offset, in: source) }
            return .label(rest)
        case "metadata": return try path { .metadata($0) }
        case "reported": return try path { .reported($0) }
        case "desired": return try path { .desired($0) }
        case "telemetry":
            guard let rest else { throw error(.type, "expected a telemetry key after 'telemetry.' (e.g. telemetry.temp)", at: offset, in: source) }
            return .telemetry(rest)
        default:
            throw error(
                .type,
                "unknown field '\(text)' (fields: id, name, profile, status, online, lastSeen, labels.<key>, "
                    + "metadata.<path>, reported.<path>, desired.<path>, telemetry.<key>)",
                at: offset, in: source
            )
        }
    }

    private mutating func parseCondition() throws(FleetQueryError) -> FleetExpression {
        let fieldToken = current
        let field = try parseField(expecting: "a field")
        let token = current
        switch token.kind {
        case .comparison(let comparison):
            index += 1
            let valueToken = current
            let literal = try parseValue(after: token.text)
            let checked = try FleetQueryTypeChecker.check(field, comparison, literal, fieldOffset: fieldToken.offset, valueOffset: valueToken.offset, source: source)
            return .compare(field, comparison, checked)
        case .identifier(let text) where text.uppercased() == "IN" || text.uppercased() == "NOT":
            let negated = text.uppercased() == "NOT"
            index += 1
            if negated, !accept(keyword: "IN") { throw fail("expected IN after NOT, found \(found(current))") }
            let list = try parseList(field: field, fieldOffset: fieldToken.offset)
            return negated ? .not(.isIn(field, list)) : .isIn(field, list)
        case .identifier(let text) where text.uppercased() == "EXISTS":
            index += 1
            return .exists(field)
        default:
            try FleetQueryTypeChecker.checkTruthy(field, fieldOffset: fieldToken.offset, source: source)
            return .truthy(field)
        }
    }

    private mutating func parseList(field: FleetField, fieldOffset: Int) throws(FleetQueryError) -> [FleetLiteral] {
        guard current.kind == .leftBracket else { throw fail("expected '[' after IN, found \(found(current))") }
        let open = current
        index += 1
        var values: [FleetLiteral] = []
        if current.kind == .rightBracket { throw fail("expected at least one value in the IN list") }
        while true {
            let valueToken = current
            let literal = try parseValue(after: values.isEmpty ? "[" : ",")
            values.append(try FleetQueryTypeChecker.check(field, .equal, literal, fieldOffset: fieldOffset, valueOffset: valueToken.offset, source: source))
            guard values.count <= Self.maximumListLength else { throw fail("an IN list has at most \(Self.maximumListLength) values", at: valueToken) }
            if current.kind == .comma {
                index += 1
                continue
            }
            guard current.kind == .rightBracket else {
                throw fail("expected ',' or ']' to close the '[' at offset \(open.offset), found \(found(current))")
            }
            index += 1
            return values
        }
    }

    private mutating func parseValue(after previous: String) throws(FleetQueryError) -> FleetLiteral {
        let token = current
        switch token.kind {
        case .string(let value):
            index += 1
            return .string(value)
        case .number(let value):
            index += 1
            return .number(value)
        case .minus:
            index += 1
            guard case .number(let value) = current.kind else { throw fail("expected a number after '-', found \(found(current))") }
            index += 1
            return .number(-value)
        case .duration:
            throw fail("a duration such as '\(token.text)' needs 'now' before it (e.g. now - \(token.text))")
        case .identifier(let text):
            switch text.uppercased() {
            case "TRUE":
                index += 1
                return .boolean(true)
            case "FALSE":
                index += 1
                return .boolean(false)
            case "NOW":
                index += 1
                let sign: Int64
                switch current.kind {
                case .minus: sign = -1
                case .plus: sign = 1
                default: return .relativeTime(offsetMilliseconds: 0)
                }
                index += 1
                guard case .duration(let milliseconds) = current.kind else {
                    throw fail("expected a duration after 'now \(sign < 0 ? "-" : "+")' (e.g. 15m, 1h, 7d), found \(found(current))")
                }
                index += 1
                return .relativeTime(offsetMilliseconds: sign * milliseconds)
            default:
                throw fail("expected a value after '\(previous)' (a \"string\", a number, true, false or now), found \(found(token)); quote strings")
            }
        default:
            throw fail("expected a value after '\(previous)' (a \"string\", a number, true, false or now), found \(found(token))")
        }
    }
}

/// The type rules: which literals and operators each field accepts. Run while parsing.
enum FleetQueryTypeChecker {
    /// Checks `field op literal`; returns the literal, normalised (an ISO 8601 time compared with
    /// `lastSeen` becomes epoch milliseconds).
    static func check(
        _ field: FleetField, _ comparison: FleetComparison, _ literal: FleetLiteral, fieldOffset: Int, valueOffset: Int, source: String
    ) throws(FleetQueryError) -> FleetLiteral {
        func error(_ message: String, at offset: Int) -> FleetQueryError {
            FleetQueryParser.error(.type, message, at: offset, in: source)
        }
        let name = field.description
        switch field.type {
        case .string:
            guard case .string(let value) = literal else {
                throw error("\(name) is a string; compare it with a string in quotes, not \(literal.type.rawValue) \(literal)", at: valueOffset)
            }
            if field == .status {
                guard DeviceStatus(rawValue: value) != nil else {
                    throw error(
                        "status is one of \(DeviceStatus.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")), not \"\(value)\"",
                        at: valueOffset
                    )
                }
            }
            if comparison.isOrdering, field == .status || field == .profile {
                throw error("\(name) can only be compared with = and != (or IN)", at: fieldOffset)
            }
            return literal
        case .boolean:
            guard !comparison.isOrdering else {
                throw error("\(name) is a boolean; only = and != apply (e.g. \(name) = true, or just \(name))", at: fieldOffset)
            }
            guard case .boolean = literal else {
                throw error("\(name) is a boolean; compare it with true or false, not \(literal.type.rawValue) \(literal)", at: valueOffset)
            }
            return literal
        case .time:
            switch literal {
            case .relativeTime, .number: return literal
            case .string(let text):
                guard let date = parseTime(text) else {
                    throw error("\(name) is a time; compare it with now - <duration>, epoch milliseconds or an ISO 8601 time, not \"\(text)\"", at: valueOffset)
                }
                return .number((date.timeIntervalSince1970 * 1000).rounded())
            case .boolean:
                throw error("\(name) is a time; compare it with now - <duration> (e.g. \(name) < now - 1h), epoch milliseconds or an ISO 8601 time", at: valueOffset)
            }
        case .number, .dynamic:
            switch literal {
            case .relativeTime:
                throw error("\(name) is not a time; 'now' only compares with lastSeen", at: valueOffset)
            case .boolean where comparison.isOrdering:
                throw error("booleans have no order; compare \(name) with = or != for true/false", at: valueOffset)
            default:
                return literal
            }
        }
    }

    /// A field used on its own as a condition must be a boolean (or a JSON/telemetry value,
    /// meaning "is true").
    static func checkTruthy(_ field: FleetField, fieldOffset: Int, source: String) throws(FleetQueryError) {
        switch field.type {
        case .boolean, .dynamic: return
        default:
            throw FleetQueryParser.error(
                .type,
                "expected an operator (=, !=, <, <=, >, >=, IN or EXISTS) after \(field), which is a \(field.type.rawValue), not a condition on its own",
                at: fieldOffset, in: source
            )
        }
    }

    static func parseTime(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withInternetDateTime]
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withFullDate]
        return formatter.date(from: text)
    }
}

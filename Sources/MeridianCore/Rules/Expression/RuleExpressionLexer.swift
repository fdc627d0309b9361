/// Splits a rule expression into tokens, each with its offset (in Unicode scalars).
struct RuleExpressionLexer {
    enum Kind: Equatable {
        /// A plain word: a telemetry key, a function name or a keyword (`true`, `and`, ...).
        case identifier(String)
        /// A backquoted telemetry key (`` `any key` ``): never a keyword or a function.
        case quotedKey(String)
        /// A dotted path (`reported.a.b`), its segments.
        case path([String])
        case string(String)
        case number(Double)
        /// A number with a unit (`10m`): milliseconds.
        case duration(Int64)
        case plus, minus, star, slash, percent
        case less, lessOrEqual, greater, greaterOrEqual, equal, notEqual
        case bang, and, or
        case leftParen, rightParen, comma
        case end
    }

    struct Token {
        var kind: Kind
        var offset: Int
        /// The token's text as written (for messages).
        var text: String
    }

    /// Longest expression accepted, in Unicode scalars.
    static let maximumLength = 4096
    /// Longest window accepted: 30 days, in milliseconds (windows are kept in memory).
    static let maximumDurationMilliseconds: Int64 = 30 * 86_400_000

    private let source: String
    private let scalars: [Unicode.Scalar]
    private var position = 0

    init(_ source: String) {
        self.source = source
        scalars = Array(source.unicodeScalars)
    }

    static func isWordStart(_ c: Unicode.Scalar) -> Bool {
        (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || c == "_"
    }

    static func isDigit(_ c: Unicode.Scalar) -> Bool { c >= "0" && c <= "9" }

    static func isWordPart(_ c: Unicode.Scalar) -> Bool { isWordStart(c) || isDigit(c) }

    private func error(_ message: String, at offset: Int) -> RuleExpressionError {
        RuleExpressionError(.syntax, message, at: offset, in: source)
    }

    /// All tokens, ending with `.end`.
    mutating func tokens() throws(RuleExpressionError) -> [Token] {
        guard scalars.count <= Self.maximumLength else {
            throw error("the expression is longer than \(Self.maximumLength) characters", at: Self.maximumLength)
        }
        var result: [Token] = []
        while true {
            let token = try next()
            result.append(token)
            if token.kind == .end { return result }
        }
    }

    private func peek(_ ahead: Int = 0) -> Unicode.Scalar? {
        position + ahead < scalars.count ? scalars[position + ahead] : nil
    }

    private func text(from start: Int) -> String {
        var text = ""
        text.unicodeScalars.append(contentsOf: scalars[start..<position])
        return text
    }

    private mutating func next() throws(RuleExpressionError) -> Token {
        while let c = peek(), c.properties.isWhitespace { position += 1 }
        let start = position
        guard let c = peek() else { return Token(kind: .end, offset: start, text: "the end of the expression") }
        func single(_ kind: Kind) -> Token {
            position += 1
            return Token(kind: kind, offset: start, text: String(c))
        }
        func pair(
            _ second: Unicode.Scalar,
            _ double: Kind,
            else one: Kind?,
            hint: String = ""
        ) throws(RuleExpressionError) -> Token {
            position += 1
            if peek() == second {
                position += 1
                return Token(kind: double, offset: start, text: text(from: start))
            }
            guard let one else { throw error("unexpected character '\(c)'\(hint)", at: start) }
            return Token(kind: one, offset: start, text: String(c))
        }
        switch c {
        case "(": return single(.leftParen)
        case ")": return single(.rightParen)
        case ",": return single(.comma)
        case "+": return single(.plus)
        case "-": return single(.minus)
        case "*": return single(.star)
        case "/": return single(.slash)
        case "%": return single(.percent)
        case "<": return try pair("=", .lessOrEqual, else: .less)
        case ">": return try pair("=", .greaterOrEqual, else: .greater)
        case "!": return try pair("=", .notEqual, else: .bang)
        case "=": return try pair("=", .equal, else: nil, hint: " (use '==' to compare)")
        case "&": return try pair("&", .and, else: nil, hint: " (use '&&' or 'and')")
        case "|": return try pair("|", .or, else: nil, hint: " (use '||' or 'or')")
        case "\"": return try string()
        case "`":
            let key = try quoted()
            return Token(kind: .quotedKey(key), offset: start, text: text(from: start))
        default:
            if Self.isDigit(c) || (c == "." && peek(1).map(Self.isDigit) == true) { return try number() }
            if Self.isWordStart(c) { return try word() }
            throw error("unexpected character '\(c.escaped(asASCII: true))'", at: start)
        }
    }

    /// A backquoted name, the position on the opening backquote; `\`` and `\\` are escapes.
    private mutating func quoted() throws(RuleExpressionError) -> String {
        let start = position
        position += 1
        var value = String.UnicodeScalarView()
        while let c = peek() {
            position += 1
            if c == "`" {
                guard !value.isEmpty else { throw error("empty key between backquotes", at: start) }
                let key = String(value)
                guard key.utf8.count <= TelemetryLimits.maximumKeyLength else {
                    throw error("the key is longer than \(TelemetryLimits.maximumKeyLength) bytes", at: start)
                }
                return key
            }
            if c == "\\", let escaped = peek(), escaped == "`" || escaped == "\\" {
                position += 1
                value.append(escaped)
                continue
            }
            value.append(c)
        }
        throw error("unterminated key (expected a closing `)", at: start)
    }

    private mutating func word() throws(RuleExpressionError) -> Token {
        let start = position
        while let c = peek(), Self.isWordPart(c) { position += 1 }
        let first = text(from: start)
        guard peek() == "." else {
            guard first.utf8.count <= TelemetryLimits.maximumKeyLength else {
                throw error("the key is longer than \(TelemetryLimits.maximumKeyLength) bytes", at: start)
            }
            return Token(kind: .identifier(first), offset: start, text: first)
        }
        var segments = [first]
        while peek() == "." {
            position += 1
            let segmentStart = position
            if peek() == "`" {
                segments.append(try quoted())
                continue
            }
            while let c = peek(), Self.isWordPart(c) { position += 1 }
            guard position > segmentStart else {
                throw error("expected a key after '.' in '\(text(from: start))'", at: segmentStart)
            }
            segments.append(text(from: segmentStart))
        }
        guard segments.count <= 32 else { throw error("the path has more than 32 segments", at: start) }
        return Token(kind: .path(segments), offset: start, text: text(from: start))
    }

    private mutating func number() throws(RuleExpressionError) -> Token {
        let start = position
        while let c = peek(), Self.isDigit(c) { position += 1 }
        if peek() == ".", peek(1).map(Self.isDigit) == true {
            position += 1
            while let c = peek(), Self.isDigit(c) { position += 1 }
        }
        if peek() == "e" || peek() == "E" {
            var ahead = 1
            if peek(ahead) == "+" || peek(ahead) == "-" { ahead += 1 }
            if peek(ahead).map(Self.isDigit) == true {
                position += ahead
                while let c = peek(), Self.isDigit(c) { position += 1 }
            }
        }
        let digits = text(from: start)
        guard let value = Double(digits), value.isFinite else {
            throw error("'\(digits)' is not a finite number", at: start)
        }
        let unitStart = position
        while let c = peek(), Self.isWordPart(c) { position += 1 }
        guard position > unitStart else { return Token(kind: .number(value), offset: start, text: digits) }
        let unit = text(from: unitStart)
        guard let factor = SourceText.milliseconds(perDurationUnit: unit) else {
            throw error("unknown duration unit '\(unit)' (expected ms, s, m, h or d, e.g. 10m)", at: unitStart)
        }
        let milliseconds = (value * Double(factor)).rounded()
        guard milliseconds >= 1 else {
            throw error("the duration '\(text(from: start))' is shorter than 1ms", at: start)
        }
        guard milliseconds <= Double(Self.maximumDurationMilliseconds) else {
            throw error("the duration '\(text(from: start))' is longer than 30d", at: start)
        }
        return Token(kind: .duration(Int64(milliseconds)), offset: start, text: text(from: start))
    }

    private mutating func string() throws(RuleExpressionError) -> Token {
        let start = position
        position += 1
        var value = String.UnicodeScalarView()
        while let c = peek() {
            if c == "\"" {
                position += 1
                return Token(kind: .string(String(value)), offset: start, text: text(from: start))
            }
            if c == "\\" {
                guard let escaped = peek(1) else { break }
                switch escaped {
                case "\"", "\\": value.append(escaped)
                case "n": value.append("\n")
                case "t": value.append("\t")
                default:
                    throw error(
                        "unknown escape '\\\(escaped.escaped(asASCII: true))' in a string (expected \\\", \\\\, \\n or \\t)",
                        at: position
                    )
                }
                position += 2
                continue
            }
            value.append(c)
            position += 1
        }
        throw error("unterminated string (expected a closing \")", at: start)
    }
}

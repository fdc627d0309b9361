/// Splits a fleet query into tokens, each with its offset (in Unicode scalars).
struct FleetQueryLexer {
    enum Kind: Equatable {
        /// A field path or keyword (`labels.site`, `AND`, `now`, `true`).
        case identifier(String)
        case string(String)
        case number(Double)
        /// A number with a unit (`1h`, `30m`): milliseconds.
        case duration(Int64)
        case comparison(FleetComparison)
        case minus, plus, leftParen, rightParen, leftBracket, rightBracket, comma
        case end
    }

    struct Token {
        var kind: Kind
        var offset: Int
        /// The token's text as written (for messages).
        var text: String
    }

    /// Longest query accepted, in Unicode scalars.
    /// At most 4,096 characters: even percent-encoded (up to 12 bytes a character) a query then
    /// fits in an HTTP request line (80 KiB).
    static let maximumLength = 4096

    private let scalars: [Unicode.Scalar]
    private var position = 0

    init(_ text: String) {
        scalars = Array(text.unicodeScalars)
    }

    static func isRootStart(_ c: Unicode.Scalar) -> Bool {
        (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || c == "_"
    }

    static func isRootPart(_ c: Unicode.Scalar) -> Bool {
        isRootStart(c) || isDigit(c)
    }

    /// Characters of a path segment after the first dot: what label keys may contain.
    static func isPathPart(_ c: Unicode.Scalar) -> Bool {
        isRootPart(c) || c == "-" || c == "/" || c == "."
    }

    static func isDigit(_ c: Unicode.Scalar) -> Bool { c >= "0" && c <= "9" }

    /// All tokens, ending with `.end`.
    mutating func tokens(source: String) throws(FleetQueryError) -> [Token] {
        guard scalars.count <= Self.maximumLength else {
            throw FleetQueryParser.error(.syntax, "the query is longer than \(Self.maximumLength) characters", at: Self.maximumLength, in: source)
        }
        var result: [Token] = []
        while true {
            let token = try next(source: source)
            result.append(token)
            if token.kind == .end { return result }
        }
    }

    private mutating func next(source: String) throws(FleetQueryError) -> Token {
        while position < scalars.count, scalars[position].properties.isWhitespace { position += 1 }
        let start = position
        guard position < scalars.count else { return Token(kind: .end, offset: start, text: "end of query") }
        let c = scalars[position]
        func single(_ kind: Kind) -> Token {
            position += 1
            return Token(kind: kind, offset: start, text: String(c))
        }
        switch c {
        case "(": return single(.leftParen)
        case ")": return single(.rightParen)
        case "[": return single(.leftBracket)
        case "]": return single(.rightBracket)
        case ",": return single(.comma)
        case "+": return single(.plus)
        case "-": return single(.minus)
        case "=":
            position += 1
            if position < scalars.count, scalars[position] == "=" { position += 1 }
            return Token(kind: .comparison(.equal), offset: start, text: text(from: start))
        case "!":
            position += 1
            guard position < scalars.count, scalars[position] == "=" else {
                throw FleetQueryParser.error(.syntax, "expected '!=' (use NOT to negate)", at: start, in: source)
            }
            position += 1
            return Token(kind: .comparison(.notEqual), offset: start, text: "!=")
        case "<":
            position += 1
            if position < scalars.count, scalars[position] == "=" {
                position += 1
                return Token(kind: .comparison(.lessOrEqual), offset: start, text: "<=")
            }
            if position < scalars.count, scalars[position] == ">" {
                position += 1
                return Token(kind: .comparison(.notEqual), offset: start, text: "<>")
            }
            return Token(kind: .comparison(.less), offset: start, text: "<")
        case ">":
            position += 1
            if position < scalars.count, scalars[position] == "=" {
                position += 1
                return Token(kind: .comparison(.greaterOrEqual), offset: start, text: ">=")
            }
            return Token(kind: .comparison(.greater), offset: start, text: ">")
        case "\"", "'":
            return try string(quote: c, source: source)
        default:
            if Self.isDigit(c) || (c == "." && position + 1 < scalars.count && Self.isDigit(scalars[position + 1])) {
                return try number(source: source)
            }
            if Self.isRootStart(c) { return try identifier(source: source) }
            throw FleetQueryParser.error(.syntax, "unexpected character '\(c)'", at: start, in: source)
        }
    }

    private func text(from start: Int) -> String {
        var text = ""
        text.unicodeScalars.append(contentsOf: scalars[start..<position])
        return text
    }

    private mutating func identifier(source: String) throws(FleetQueryError) -> Token {
        let start = position
        while position < scalars.count, Self.isRootPart(scalars[position]) { position += 1 }
        if position < scalars.count, scalars[position] == "." {
            while position < scalars.count, Self.isPathPart(scalars[position]) { position += 1 }
        }
        let text = text(from: start)
        if text.hasSuffix(".") || text.contains("..") {
            throw FleetQueryParser.error(.syntax, "expected a key after '.' in '\(text)'", at: start, in: source)
        }
        return Token(kind: .identifier(text), offset: start, text: text)
    }

    private mutating func number(source: String) throws(FleetQueryError) -> Token {
        let start = position
        while position < scalars.count, Self.isDigit(scalars[position]) { position += 1 }
        if position < scalars.count, scalars[position] == "." {
            position += 1
            while position < scalars.count, Self.isDigit(scalars[position]) { position += 1 }
        }
        if position < scalars.count, scalars[position] == "e" || scalars[position] == "E" {
            var lookahead = position + 1
            if lookahead < scalars.count, scalars[lookahead] == "+" || scalars[lookahead] == "-" { lookahead += 1 }
            if lookahead < scalars.count, Self.isDigit(scalars[lookahead]) {
                position = lookahead
                while position < scalars.count, Self.isDigit(scalars[position]) { position += 1 }
            }
        }
        let digits = text(from: start)
        guard let value = Double(digits), value.isFinite else {
            throw FleetQueryParser.error(.syntax, "'\(digits)' is not a number", at: start, in: source)
        }
        // A unit right after the digits makes it a duration.
        let unitStart = position
        while position < scalars.count, Self.isRootPart(scalars[position]) { position += 1 }
        guard position > unitStart else { return Token(kind: .number(value), offset: start, text: digits) }
        let unit = text(from: unitStart)
        guard let factor = SourceText.milliseconds(perDurationUnit: unit) ?? (unit == "w" ? 604_800_000 : nil) else {
            throw FleetQueryParser.error(
                .syntax, "unknown duration unit '\(unit)' (expected ms, s, m, h, d or w, e.g. 15m)", at: unitStart, in: source
            )
        }
        let milliseconds = value * Double(factor)
        guard milliseconds < 1e15 else {
            throw FleetQueryParser.error(.syntax, "the duration '\(text(from: start))' is too long", at: start, in: source)
        }
        return Token(kind: .duration(Int64(milliseconds.rounded())), offset: start, text: text(from: start))
    }

    private mutating func string(quote: Unicode.Scalar, source: String) throws(FleetQueryError) -> Token {
        let start = position
        position += 1
        var value = String.UnicodeScalarView()
        while position < scalars.count {
            let c = scalars[position]
            if c == quote {
                position += 1
                return Token(kind: .string(String(value)), offset: start, text: text(from: start))
            }
            if c == "\\" {
                position += 1
                guard position < scalars.count else { break }
                let escaped = scalars[position]
                switch escaped {
                case "\"", "'", "\\", "/": value.append(escaped)
                case "n": value.append("\n")
                case "t": value.append("\t")
                case "r": value.append("\r")
                case "u":
                    let digitsStart = position + 1
                    guard digitsStart + 4 <= scalars.count else {
                        throw FleetQueryParser.error(.syntax, "expected 4 hex digits after \\u", at: position - 1, in: source)
                    }
                    var hex = ""
                    hex.unicodeScalars.append(contentsOf: scalars[digitsStart..<digitsStart + 4])
                    guard let code = UInt32(hex, radix: 16), let scalar = Unicode.Scalar(code) else {
                        throw FleetQueryParser.error(.syntax, "expected 4 hex digits after \\u", at: position - 1, in: source)
                    }
                    value.append(scalar)
                    position += 4
                default:
                    throw FleetQueryParser.error(
                        .syntax, "unknown escape '\\\(escaped)' in a string (expected \\\", \\\\, \\n, \\t or \\uXXXX)",
                        at: position - 1, in: source
                    )
                }
                position += 1
                continue
            }
            value.append(c)
            position += 1
        }
        throw FleetQueryParser.error(.syntax, "unterminated string (expected a closing \(quote))", at: start, in: source)
    }
}

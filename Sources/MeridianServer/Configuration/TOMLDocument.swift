/// A TOML document read by a small, strict reader covering what configuration files need.
///
/// Supported: comments, `[table]` and `[a.b]` headers, bare and quoted keys, dotted keys, basic
/// strings (with `\b \t \n \f \r \" \\ \uXXXX \UXXXXXXXX` escapes) and literal strings, integers
/// (decimal with `_`, `0x`, `0o`, `0b`), floats (with `inf` and `nan`), booleans, and arrays of
/// scalars (which may span lines). Everything else — multi-line strings, inline tables, arrays of
/// tables, nested arrays, dates and times — is rejected with a ``TOMLError`` naming the line, as are
/// duplicate keys and tables.
public struct TOMLDocument: Sendable {
    /// One `key = value` pair, with its full key path from the document's root.
    public struct Entry: Sendable, Hashable {
        /// The key's components from the root: `[network] mqtt_port = 1` gives `["network", "mqtt_port"]`.
        public var key: [String]
        public var value: TOMLValue
        /// 1-based line the key is on.
        public var line: Int
    }

    /// Every key/value pair in document order.
    public private(set) var entries: [Entry]

    /// Reads `text` as TOML.
    public init(parsing text: String) throws(TOMLError) {
        var parser = TOMLParser(text)
        self.entries = try parser.parseDocument()
    }
}

/// A TOML document that could not be read, with the line where reading stopped.
public struct TOMLError: Error, Sendable, Hashable, CustomStringConvertible {
    /// 1-based line of the problem.
    public var line: Int
    /// What is wrong, e.g. "expected '=' after the key".
    public var reason: String

    public init(line: Int, reason: String) {
        self.line = line
        self.reason = reason
    }

    public var description: String { "line \(line): \(reason)" }
}

/// The reader behind ``TOMLDocument``: a single pass over the UTF-8 bytes.
struct TOMLParser {
    private enum TableKind {
        /// Declared with a `[header]`.
        case header
        /// Created as the parent of a `[header]`; may still be declared later.
        case implicit
        /// Created by a dotted key (`a.b = 1` creates `a`); may not be declared by a header.
        case dotted
    }

    private let bytes: [UInt8]
    private var index = 0
    private var line = 1
    private var entries: [TOMLDocument.Entry] = []
    private var valueLines: [[String]: Int] = [:]
    private var tables: [[String]: TableKind] = [:]
    private var currentTable: [String] = []

    init(_ text: String) {
        self.bytes = Array(text.utf8)
    }

    // MARK: Document structure

    mutating func parseDocument() throws(TOMLError) -> [TOMLDocument.Entry] {
        // A byte-order mark is allowed before the first line.
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { index = 3 }
        while index < bytes.count {
            skipWhitespace()
            guard let byte = peek() else { break }
            switch byte {
            case UInt8(ascii: "\n"), UInt8(ascii: "\r"), UInt8(ascii: "#"):
                break
            case UInt8(ascii: "["):
                try parseTableHeader()
            default:
                try parseKeyValue()
            }
            try expectEndOfLine()
        }
        return entries
    }

    private mutating func parseTableHeader() throws(TOMLError) {
        index += 1  // [
        if peek() == UInt8(ascii: "[") {
            throw error("arrays of tables ([[...]]) are not supported")
        }
        skipWhitespace()
        let path = try parseKey()
        skipWhitespace()
        guard peek() == UInt8(ascii: "]") else {
            throw error("expected ']' to close the table header")
        }
        index += 1
        let name = Self.display(path)
        for length in 1..<(path.count + 1) {
            let prefix = Array(path.prefix(length))
            if let valueLine = valueLines[prefix] {
                throw error("'\(Self.display(prefix))' is a value (line \(valueLine)), not a table")
            }
        }
        switch tables[path] {
        case .header:
            throw error("table [\(name)] is defined twice")
        case .dotted:
            throw error("table [\(name)] was already created by dotted keys")
        case .implicit, nil:
            break
        }
        for length in 1..<path.count where tables[Array(path.prefix(length))] == nil {
            tables[Array(path.prefix(length))] = .implicit
        }
        tables[path] = .header
        currentTable = path
    }

    private mutating func parseKeyValue() throws(TOMLError) {
        let keyLine = line
        let key = try parseKey()
        skipWhitespace()
        guard peek() == UInt8(ascii: "=") else {
            if let byte = peek(), !Self.isNewline(byte) {
                throw error("expected '=' after the key '\(Self.display(key))'")
            }
            throw error("expected '=' and a value after the key '\(Self.display(key))'")
        }
        index += 1
        skipWhitespace()
        let value = try parseValue()
        let path = currentTable + key
        for length in (currentTable.count + 1)..<path.count {
            let prefix = Array(path.prefix(length))
            if let valueLine = valueLines[prefix] {
                throw TOMLError(
                    line: keyLine,
                    reason: "'\(Self.display(prefix))' is a value (line \(valueLine)), not a table"
                )
            }
            if tables[prefix] == nil { tables[prefix] = .dotted }
        }
        if let firstLine = valueLines[path] {
            throw TOMLError(
                line: keyLine,
                reason: "duplicate key '\(Self.display(path))' (first set on line \(firstLine))"
            )
        }
        if tables[path] != nil {
            throw TOMLError(line: keyLine, reason: "'\(Self.display(path))' is already a table")
        }
        valueLines[path] = keyLine
        entries.append(.init(key: path, value: value, line: keyLine))
    }

    /// After a statement only whitespace and a comment may follow on the line.
    private mutating func expectEndOfLine() throws(TOMLError) {
        skipWhitespace()
        if peek() == UInt8(ascii: "#") { try skipComment() }
        guard let byte = peek() else { return }
        if byte == UInt8(ascii: "\n") {
            index += 1
            line += 1
        } else if byte == UInt8(ascii: "\r"), peek(offset: 1) == UInt8(ascii: "\n") {
            index += 2
            line += 1
        } else if byte == UInt8(ascii: "\r") {
            throw error("carriage return without a line feed")
        } else {
            throw error("unexpected \(describe(byte)) after the value; expected the end of the line")
        }
    }

    // MARK: Keys

    /// A key: simple keys separated by dots, with optional whitespace around the dots.
    private mutating func parseKey() throws(TOMLError) -> [String] {
        var path = [try parseSimpleKey()]
        while true {
            let save = index
            skipWhitespace()
            guard peek() == UInt8(ascii: ".") else {
                index = save
                return path
            }
            index += 1
            skipWhitespace()
            path.append(try parseSimpleKey())
        }
    }

    private mutating func parseSimpleKey() throws(TOMLError) -> String {
        guard let byte = peek() else { throw error("expected a key") }
        switch byte {
        case UInt8(ascii: "\""):
            if peek(offset: 1) == UInt8(ascii: "\""), peek(offset: 2) == UInt8(ascii: "\"") {
                throw error("multi-line strings cannot be keys")
            }
            return try parseBasicString()
        case UInt8(ascii: "'"):
            if peek(offset: 1) == UInt8(ascii: "'"), peek(offset: 2) == UInt8(ascii: "'") {
                throw error("multi-line strings cannot be keys")
            }
            return try parseLiteralString()
        default:
            let start = index
            while let byte = peek(), Self.isBareKeyByte(byte) { index += 1 }
            guard index > start else {
                if Self.isNewline(byte) { throw error("expected a key") }
                throw error("unexpected \(describe(byte)); expected a key")
            }
            return String(decoding: bytes[start..<index], as: UTF8.self)
        }
    }

    // MARK: Values

    private mutating func parseValue() throws(TOMLError) -> TOMLValue {
        guard let byte = peek(), !Self.isNewline(byte), byte != UInt8(ascii: "#") else {
            throw error("expected a value after '='")
        }
        switch byte {
        case UInt8(ascii: "\""):
            if peek(offset: 1) == UInt8(ascii: "\""), peek(offset: 2) == UInt8(ascii: "\"") {
                throw error("multi-line strings (\"\"\") are not supported")
            }
            return .string(try parseBasicString())
        case UInt8(ascii: "'"):
            if peek(offset: 1) == UInt8(ascii: "'"), peek(offset: 2) == UInt8(ascii: "'") {
                throw error("multi-line literal strings (''') are not supported")
            }
            return .string(try parseLiteralString())
        case UInt8(ascii: "["):
            return try parseArray()
        case UInt8(ascii: "{"):
            throw error("inline tables ({...}) are not supported; use a [table] header")
        default:
            return try parseBareValue()
        }
    }

    private mutating func parseArray() throws(TOMLError) -> TOMLValue {
        index += 1  // [
        let startLine = line
        let unterminated = TOMLError(line: startLine, reason: "unterminated array: expected ']'")
        var elements: [TOMLValue] = []
        while true {
            try skipArrayWhitespace()
            guard let byte = peek() else { throw unterminated }
            if byte == UInt8(ascii: "]") {
                index += 1
                return .array(elements)
            }
            if byte == UInt8(ascii: "[") {
                throw error("nested arrays are not supported")
            }
            if byte == UInt8(ascii: ",") {
                throw error("expected a value before ',' in the array")
            }
            elements.append(try parseValue())
            try skipArrayWhitespace()
            guard let next = peek() else { throw unterminated }
            if next == UInt8(ascii: ",") {
                index += 1
            } else if next != UInt8(ascii: "]") {
                throw error("unexpected \(describe(next)) in the array; expected ',' or ']'")
            }
        }
    }

    /// Whitespace, newlines and comments, all of which may appear between array elements.
    private mutating func skipArrayWhitespace() throws(TOMLError) {
        while let byte = peek() {
            switch byte {
            case UInt8(ascii: " "), UInt8(ascii: "\t"):
                index += 1
            case UInt8(ascii: "\n"):
                index += 1
                line += 1
            case UInt8(ascii: "\r"):
                guard peek(offset: 1) == UInt8(ascii: "\n") else {
                    throw error("carriage return without a line feed")
                }
                index += 2
                line += 1
            case UInt8(ascii: "#"):
                try skipComment()
            default:
                return
            }
        }
    }

    /// Booleans, numbers, and the things that look like them but are not supported (dates).
    private mutating func parseBareValue() throws(TOMLError) -> TOMLValue {
        let start = index
        while let byte = peek(), Self.isBareValueByte(byte) { index += 1 }
        let token = String(decoding: bytes[start..<index], as: UTF8.self)
        if token.isEmpty, let byte = peek() {
            throw error("unexpected \(describe(byte)); expected a value")
        }
        switch token {
        case "true": return .boolean(true)
        case "false": return .boolean(false)
        default: break
        }
        if let value = Self.number(token) { return value }
        if Self.isOutOfRangeInteger(token) {
            throw error("integer \(token) does not fit in 64 bits")
        }
        if Self.looksLikeDateOrTime(token) {
            throw error("dates and times are not supported")
        }
        if let first = token.utf8.first,
            Self.isDigit(first) || first == UInt8(ascii: "+") || first == UInt8(ascii: "-")
                || first == UInt8(ascii: ".")
        {
            throw error("invalid number '\(token)'")
        }
        throw error("invalid value '\(token)' (strings must be quoted)")
    }

    // MARK: Strings

    private mutating func parseBasicString() throws(TOMLError) -> String {
        index += 1  // "
        var scalars = String.UnicodeScalarView()
        var run = index
        func flush(_ parser: TOMLParser, upTo end: Int) {
            scalars.append(contentsOf: String(decoding: parser.bytes[run..<end], as: UTF8.self).unicodeScalars)
        }
        while true {
            guard let byte = peek(), !Self.isNewline(byte) else {
                throw error("unterminated string: expected '\"' before the end of the line")
            }
            switch byte {
            case UInt8(ascii: "\""):
                flush(self, upTo: index)
                index += 1
                return String(scalars)
            case UInt8(ascii: "\\"):
                flush(self, upTo: index)
                index += 1
                scalars.append(try parseEscape())
                run = index
            default:
                if Self.isControl(byte) { throw error("control character \(describe(byte)) in a string") }
                index += 1
            }
        }
    }

    private mutating func parseEscape() throws(TOMLError) -> Unicode.Scalar {
        guard let byte = peek() else { throw error("unterminated string") }
        index += 1
        switch byte {
        case UInt8(ascii: "b"): return "\u{08}"
        case UInt8(ascii: "t"): return "\t"
        case UInt8(ascii: "n"): return "\n"
        case UInt8(ascii: "f"): return "\u{0C}"
        case UInt8(ascii: "r"): return "\r"
        case UInt8(ascii: "\""): return "\""
        case UInt8(ascii: "\\"): return "\\"
        case UInt8(ascii: "u"), UInt8(ascii: "U"):
            let count = byte == UInt8(ascii: "u") ? 4 : 8
            let letter = Character(Unicode.Scalar(byte))
            var end = index
            while end < bytes.count, end - index < count, Self.isHexDigit(bytes[end]) { end += 1 }
            let hex = String(decoding: bytes[index..<end], as: UTF8.self)
            guard end - index == count, let value = UInt32(hex, radix: 16) else {
                throw error("invalid escape \\\(letter)\(hex): expected \(count) hex digits")
            }
            guard let scalar = Unicode.Scalar(value) else {
                throw error("escape \\\(letter)\(hex) is not a Unicode scalar value")
            }
            index += count
            return scalar
        default:
            index -= 1
            throw error("invalid escape sequence '\\\(describeBare(byte))'")
        }
    }

    private mutating func parseLiteralString() throws(TOMLError) -> String {
        index += 1  // '
        let start = index
        while true {
            guard let byte = peek(), !Self.isNewline(byte) else {
                throw error("unterminated string: expected \"'\" before the end of the line")
            }
            if byte == UInt8(ascii: "'") {
                let text = String(decoding: bytes[start..<index], as: UTF8.self)
                index += 1
                return text
            }
            if Self.isControl(byte) { throw error("control character \(describe(byte)) in a string") }
            index += 1
        }
    }

    // MARK: Comments and whitespace

    private mutating func skipWhitespace() {
        while let byte = peek(), byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") { index += 1 }
    }

    private mutating func skipComment() throws(TOMLError) {
        while let byte = peek(), !Self.isNewline(byte) {
            if Self.isControl(byte) { throw error("control character \(describe(byte)) in a comment") }
            index += 1
        }
    }

    // MARK: Helpers

    private func peek(offset: Int = 0) -> UInt8? {
        index + offset < bytes.count ? bytes[index + offset] : nil
    }

    private func error(_ reason: String) -> TOMLError {
        TOMLError(line: line, reason: reason)
    }

    private func describe(_ byte: UInt8) -> String {
        if Self.isControl(byte) || byte == UInt8(ascii: "\r") || byte >= 0x80 {
            return byte >= 0x80 ? "character" : "byte 0x" + String(byte, radix: 16, uppercase: true)
        }
        return "'\(Character(Unicode.Scalar(byte)))'"
    }

    private func describeBare(_ byte: UInt8) -> String {
        byte < 0x80 && !Self.isControl(byte) ? String(Character(Unicode.Scalar(byte))) : "…"
    }

    static func display(_ path: [String]) -> String {
        path.map { component in
            !component.isEmpty && component.utf8.allSatisfy(isBareKeyByte) ? component : TOMLValue.quoted(component)
        }.joined(separator: ".")
    }

    private static func isNewline(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r")
    }

    /// Control characters not allowed in strings and comments (tab is allowed).
    private static func isControl(_ byte: UInt8) -> Bool {
        (byte < 0x20 && byte != UInt8(ascii: "\t")) || byte == 0x7F
    }

    static func isBareKeyByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"):
            true
        default:
            false
        }
    }

    private static func isBareValueByte(_ byte: UInt8) -> Bool {
        isBareKeyByte(byte) || byte == UInt8(ascii: "+") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: ":")
    }

    private static func isDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }

    private static func isHexDigit(_ byte: UInt8) -> Bool {
        isDigit(byte) || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "f"))
            || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "F"))
    }

    private static func isDate(_ token: String) -> Bool {
        let utf8 = Array(token.utf8)
        return utf8.count == 10 && utf8[4] == UInt8(ascii: "-") && utf8[7] == UInt8(ascii: "-")
            && utf8.enumerated().allSatisfy { offset, byte in offset == 4 || offset == 7 || isDigit(byte) }
    }

    private static func looksLikeDateOrTime(_ token: String) -> Bool {
        let utf8 = Array(token.utf8)
        if token.contains(":") && utf8.first.map(isDigit) == true { return true }
        return utf8.count >= 10 && isDate(String(decoding: utf8.prefix(10), as: UTF8.self))
    }

    // MARK: Numbers

    /// `token` as a TOML integer or float, or nil when it is neither.
    static func number(_ token: String) -> TOMLValue? {
        if let integer = integer(token) { return .integer(integer) }
        if let float = float(token) { return .float(float) }
        return nil
    }

    /// A TOML integer: decimal with optional sign and `_` between digits, or `0x`/`0o`/`0b`
    /// without a sign. Nil when `token` is not one or does not fit in `Int`.
    static func integer(_ token: String) -> Int? {
        guard let (digits, radix) = integerDigits(token) else { return nil }
        return Int(digits, radix: radix)
    }

    /// The signed digits and radix of `token` when it is written as a TOML integer, whatever its size.
    private static func integerDigits(_ token: String) -> (String, Int)? {
        var rest = Substring(token)
        for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] where rest.hasPrefix(prefix) {
            return digitsWithUnderscores(rest.dropFirst(2), radix: radix).map { ($0, radix) }
        }
        var sign = ""
        if let first = rest.first, first == "+" || first == "-" {
            sign = first == "-" ? "-" : ""
            rest = rest.dropFirst()
        }
        guard let digits = digitsWithUnderscores(rest, radix: 10) else { return nil }
        // No leading zeros, except for zero itself.
        if digits.count > 1 && digits.hasPrefix("0") { return nil }
        return (sign + digits, 10)
    }

    /// Whether `token` is written as a TOML integer but is too large for `Int`.
    static func isOutOfRangeInteger(_ token: String) -> Bool {
        integerDigits(token) != nil && integer(token) == nil
    }

    /// A TOML float: an integer part, then a fraction, an exponent or both; or `inf`/`nan` with an
    /// optional sign.
    static func float(_ token: String) -> Double? {
        var rest = Substring(token)
        var sign = ""
        if let first = rest.first, first == "+" || first == "-" {
            sign = first == "-" ? "-" : ""
            rest = rest.dropFirst()
        }
        if rest == "inf" { return sign == "-" ? -.infinity : .infinity }
        if rest == "nan" { return .nan }
        let exponentIndex = rest.firstIndex(where: { $0 == "e" || $0 == "E" })
        let mantissa = rest[..<(exponentIndex ?? rest.endIndex)]
        let exponent = exponentIndex.map { rest[rest.index(after: $0)...] }
        let dot = mantissa.firstIndex(of: ".")
        let integerPart = mantissa[..<(dot ?? mantissa.endIndex)]
        let fractionPart = dot.map { mantissa[mantissa.index(after: $0)...] }
        guard fractionPart != nil || exponent != nil else { return nil }
        guard let integerDigits = digitsWithUnderscores(integerPart, radix: 10),
            !(integerDigits.count > 1 && integerDigits.hasPrefix("0"))
        else { return nil }
        var text = sign + integerDigits
        if let fractionPart {
            guard let fractionDigits = digitsWithUnderscores(fractionPart, radix: 10) else { return nil }
            text += "." + fractionDigits
        }
        if var exponent {
            var exponentSign = ""
            if let first = exponent.first, first == "+" || first == "-" {
                exponentSign = String(first)
                exponent = exponent.dropFirst()
            }
            guard let exponentDigits = digitsWithUnderscores(exponent, radix: 10) else { return nil }
            text += "e" + exponentSign + exponentDigits
        }
        return Double(text)
    }

    /// The digits of `text` with underscores removed, provided every underscore sits between two
    /// digits of `radix`; nil otherwise.
    private static func digitsWithUnderscores(_ text: Substring, radix: Int) -> String? {
        var digits = ""
        var previousWasDigit = false
        for character in text {
            if character == "_" {
                guard previousWasDigit else { return nil }
                previousWasDigit = false
                continue
            }
            guard let value = character.hexDigitValue, value < radix else { return nil }
            digits.append(character)
            previousWasDigit = true
        }
        return previousWasDigit ? digits : nil
    }
}

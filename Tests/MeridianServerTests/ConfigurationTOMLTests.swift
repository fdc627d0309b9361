import MeridianServer
import Testing

@Suite("TOML reader")
struct ConfigurationTOMLTests {
    private func entries(_ text: String) throws -> [String: TOMLValue] {
        let document = try TOMLDocument(parsing: text)
        return Dictionary(uniqueKeysWithValues: document.entries.map { ($0.key.joined(separator: "|"), $0.value) })
    }

    @Test func readsEverySupportedConstruct() throws {
        let text = """
            # a comment line
            title = "Meridian"   # trailing comment
            literal = 'C:\\path\\no escapes'
            escapes = "tab\\tquote\\"backslash\\\\ nl\\n \\u00e9 \\U0001F600 \\b\\f\\r"
            "quoted key" = 1
            'single' = 2
            bare-key_9 = true
            off = false
            dotted.inner.leaf = 3

            [numbers]
            plain = 42
            signed = -17
            plus = +5
            zero = 0
            grouped = 1_000_000
            hex = 0xDEAD_beef
            octal = 0o755
            binary = 0b1101
            float = 3.25
            negative_float = -0.5
            exponent = 6.02e+23
            small = 1E-3
            grouped_float = 1_000.5
            infinity = inf
            minus_infinity = -inf

            [ a . "b.c" ]
            key = "in a table with a quoted dotted name"

            [arrays]
            empty = []
            ints = [1, 2, 3]
            mixed = [ "x", 'y', 1, 2.5, true, ]
            multiline = [
                1,  # first
                # a comment between elements
                2,
            ]
            """
        let values = try entries(text)
        #expect(values["title"] == .string("Meridian"))
        #expect(values["literal"] == .string("C:\\path\\no escapes"))
        #expect(values["escapes"] == .string("tab\tquote\"backslash\\ nl\n é 😀 \u{08}\u{0C}\r"))
        #expect(values["quoted key"] == .integer(1))
        #expect(values["single"] == .integer(2))
        #expect(values["bare-key_9"] == .boolean(true))
        #expect(values["off"] == .boolean(false))
        #expect(values["dotted|inner|leaf"] == .integer(3))
        #expect(values["numbers|plain"] == .integer(42))
        #expect(values["numbers|signed"] == .integer(-17))
        #expect(values["numbers|plus"] == .integer(5))
        #expect(values["numbers|zero"] == .integer(0))
        #expect(values["numbers|grouped"] == .integer(1_000_000))
        #expect(values["numbers|hex"] == .integer(0xDEAD_BEEF))
        #expect(values["numbers|octal"] == .integer(0o755))
        #expect(values["numbers|binary"] == .integer(0b1101))
        #expect(values["numbers|float"] == .float(3.25))
        #expect(values["numbers|negative_float"] == .float(-0.5))
        #expect(values["numbers|exponent"] == .float(6.02e23))
        #expect(values["numbers|small"] == .float(0.001))
        #expect(values["numbers|grouped_float"] == .float(1000.5))
        #expect(values["numbers|infinity"] == .float(.infinity))
        #expect(values["numbers|minus_infinity"] == .float(-.infinity))
        #expect(values["a|b.c|key"] == .string("in a table with a quoted dotted name"))
        #expect(values["arrays|empty"] == .array([]))
        #expect(values["arrays|ints"] == .array([.integer(1), .integer(2), .integer(3)]))
        #expect(
            values["arrays|mixed"] == .array([.string("x"), .string("y"), .integer(1), .float(2.5), .boolean(true)])
        )
        #expect(values["arrays|multiline"] == .array([.integer(1), .integer(2)]))
        #expect(values.count == 28)
    }

    @Test func nanIsAFloat() throws {
        let document = try TOMLDocument(parsing: "x = nan\ny = -nan")
        for entry in document.entries {
            guard case .float(let value) = entry.value else {
                Issue.record("\(entry.key) is \(entry.value)")
                continue
            }
            #expect(value.isNaN)
        }
    }

    @Test func recordsTheLineOfEachKey() throws {
        let document = try TOMLDocument(parsing: "\n# comment\na = 1\n\n[t]\nb = [\n  1,\n  2,\n]\nc = 'x'\n")
        #expect(document.entries.map(\.line) == [3, 6, 10])
        #expect(document.entries.map(\.key) == [["a"], ["t", "b"], ["t", "c"]])
    }

    @Test func acceptsCRLFAndAByteOrderMark() throws {
        let document = try TOMLDocument(parsing: "\u{FEFF}a = 1\r\n[t]\r\nb = \"x\" # c\r\n")
        #expect(document.entries.map(\.value) == [.integer(1), .string("x")])
        #expect(document.entries.map(\.line) == [1, 3])
    }

    @Test func tablesMayBeDeclaredAfterTheirChildren() throws {
        let document = try TOMLDocument(parsing: "[a.b]\nx = 1\n[a]\ny = 2\n")
        #expect(document.entries.map(\.key) == [["a", "b", "x"], ["a", "y"]])
    }

    @Test func emptyDocumentHasNoEntries() throws {
        #expect(try TOMLDocument(parsing: "").entries.isEmpty)
        #expect(try TOMLDocument(parsing: "# only\n   \n\t# comments\n").entries.isEmpty)
    }

    struct BadDocument: CustomTestStringConvertible, Sendable {
        var text: String
        var line: Int
        var reason: String
        var testDescription: String { "\(reason) (line \(line))" }
    }

    static let badDocuments: [BadDocument] = [
        .init(text: "a = 1\nb =\n", line: 2, reason: "expected a value after '='"),
        .init(text: "a = 1\nb = # nothing\n", line: 2, reason: "expected a value after '='"),
        .init(text: "a = 1\n\na = 2\n", line: 3, reason: "duplicate key 'a' (first set on line 1)"),
        .init(text: "[t]\nx = 1\n[t]\n", line: 3, reason: "table [t] is defined twice"),
        .init(text: "a.b = 1\n[a]\n", line: 2, reason: "table [a] was already created by dotted keys"),
        .init(text: "a = 1\n[a.b]\n", line: 2, reason: "'a' is a value (line 1), not a table"),
        .init(text: "a = 1\na.b = 2\n", line: 2, reason: "'a' is a value (line 1), not a table"),
        .init(text: "[a.b]\nc = 1\n[a]\nb = 2\n", line: 4, reason: "'a.b' is already a table"),
        .init(text: "x = 1\na = \"\"\"multi\"\"\"\n", line: 2, reason: "multi-line strings (\"\"\") are not supported"),
        .init(text: "a = '''multi'''\n", line: 1, reason: "multi-line literal strings (''') are not supported"),
        .init(
            text: "\na = { x = 1 }\n",
            line: 2,
            reason: "inline tables ({...}) are not supported; use a [table] header"
        ),
        .init(text: "[[points]]\n", line: 1, reason: "arrays of tables ([[...]]) are not supported"),
        .init(text: "a = [[1], [2]]\n", line: 1, reason: "nested arrays are not supported"),
        .init(text: "a = 1979-05-27\n", line: 1, reason: "dates and times are not supported"),
        .init(text: "a = 1979-05-27T07:32:00Z\n", line: 1, reason: "dates and times are not supported"),
        .init(text: "a = 07:32:00\n", line: 1, reason: "dates and times are not supported"),
        .init(text: "a = 012\n", line: 1, reason: "invalid number '012'"),
        .init(text: "a = 1__0\n", line: 1, reason: "invalid number '1__0'"),
        .init(text: "a = 10_\n", line: 1, reason: "invalid number '10_'"),
        .init(text: "a = 0x\n", line: 1, reason: "invalid number '0x'"),
        .init(text: "a = 0xG1\n", line: 1, reason: "invalid number '0xG1'"),
        .init(text: "a = -0x10\n", line: 1, reason: "invalid number '-0x10'"),
        .init(text: "a = 1.\n", line: 1, reason: "invalid number '1.'"),
        .init(text: "a = .5\n", line: 1, reason: "invalid number '.5'"),
        .init(
            text: "a = 9223372036854775808\n",
            line: 1,
            reason: "integer 9223372036854775808 does not fit in 64 bits"
        ),
        .init(text: "a = hello\n", line: 1, reason: "invalid value 'hello' (strings must be quoted)"),
        .init(text: "a = tru\n", line: 1, reason: "invalid value 'tru' (strings must be quoted)"),
        .init(
            text: "a = \"abc\nb = 1\n",
            line: 1,
            reason: "unterminated string: expected '\"' before the end of the line"
        ),
        .init(text: "a = 'abc\n", line: 1, reason: "unterminated string: expected \"'\" before the end of the line"),
        .init(text: "a = \"\\q\"\n", line: 1, reason: "invalid escape sequence '\\q'"),
        .init(text: "a = \"\\u12\"\n", line: 1, reason: "invalid escape \\u12: expected 4 hex digits"),
        .init(text: "a = \"\\uD800\"\n", line: 1, reason: "escape \\uD800 is not a Unicode scalar value"),
        .init(text: "a = \"bell\u{07}\"\n", line: 1, reason: "control character byte 0x7 in a string"),
        .init(text: "a = 1 2\n", line: 1, reason: "unexpected '2' after the value; expected the end of the line"),
        .init(text: "a = \"x\" y\n", line: 1, reason: "unexpected 'y' after the value; expected the end of the line"),
        .init(text: "a = 1\rb = 2\n", line: 1, reason: "carriage return without a line feed"),
        .init(text: "x = 0\na = [1, 2\n\n", line: 2, reason: "unterminated array: expected ']'"),
        .init(text: "a = [1 2]\n", line: 1, reason: "unexpected '2' in the array; expected ',' or ']'"),
        .init(text: "a = [1,\n  2,\n  x]\n", line: 3, reason: "invalid value 'x' (strings must be quoted)"),
        .init(text: "a = [,]\n", line: 1, reason: "expected a value before ',' in the array"),
        .init(text: "ok = 1\nkey\n", line: 2, reason: "expected '=' and a value after the key 'key'"),
        .init(text: "key value\n", line: 1, reason: "expected '=' after the key 'key'"),
        .init(text: "= 1\n", line: 1, reason: "unexpected '='; expected a key"),
        .init(text: "a. = 1\n", line: 1, reason: "unexpected '='; expected a key"),
        .init(text: "[t\n", line: 1, reason: "expected ']' to close the table header"),
        .init(text: "[]\n", line: 1, reason: "unexpected ']'; expected a key"),
        .init(text: "[t] x = 1\n", line: 1, reason: "unexpected 'x' after the value; expected the end of the line"),
    ]

    @Test(arguments: badDocuments)
    func rejectsWithTheLine(_ bad: BadDocument) {
        #expect(throws: TOMLError(line: bad.line, reason: bad.reason)) {
            try TOMLDocument(parsing: bad.text)
        }
    }

    @Test(arguments: [
        TOMLValue.string("plain"),
        .string("quote \" backslash \\ tab \t newline \n control \u{01} delete \u{7F} é"),
        .integer(0), .integer(-42), .integer(Int.max), .integer(Int.min),
        .float(1.5), .float(-0.25), .float(1e20), .float(1e-7), .float(100), .float(.infinity), .float(-.infinity),
        .boolean(true), .boolean(false),
        .array([]), .array([.integer(1), .string("two"), .boolean(false)]),
    ])
    func renderedValuesReadBack(_ value: TOMLValue) throws {
        let document = try TOMLDocument(parsing: "v = \(value.tomlText)\n")
        #expect(document.entries.map(\.value) == [value])
    }
}

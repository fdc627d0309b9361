import MeridianCore
import Testing

@Suite("Rule expressions: parsing, type checking, error positions")
struct RuleExpressionParserTests {
    static let schema = RuleExpressionSchema(keys: ["temp": .number, "door": .string, "open": .bool, "energy": .number])

    private func error(_ source: String, schema: RuleExpressionSchema = schema) -> RuleExpressionError? {
        do {
            _ = try RuleExpression.compile(source, schema: schema)
            return nil
        } catch {
            return error
        }
    }

    @Test("the issue's example compiles; keys, twin paths and windows are reported to the engine")
    func example() throws {
        let expression = try RuleExpression.compile(
            #"temp > reported.setpoint + 5 && door == "open" || rate(energy, 1m) > 2.5 and avg(temp, 10m) - avg(`temp`, 600s) < 1"#,
            schema: Self.schema
        )
        #expect(expression.referencedKeys == ["temp", "door", "energy"])
        #expect(
            expression.windows == [
                RuleExpressionWindow(function: .rate, key: "energy", durationMilliseconds: 60_000),
                RuleExpressionWindow(function: .avg, key: "temp", durationMilliseconds: 600_000),
            ]
        )
        #expect(expression.readsTwin)
        #expect(try RuleExpression.compile("x > 1").readsTwin == false)
    }

    @Test(
        "syntax errors name what was expected and point at the offending token",
        arguments: [
            ("", "the expression is empty", 1, 1),
            ("temp >", "expected a value", 1, 7),
            ("(temp > 80", "expected ')'", 1, 11),
            ("temp > 80)", "expected an operator or the end of the expression", 1, 10),
            ("temp = 80", "use '=='", 1, 6),
            ("temp > 80 & open", "use '&&'", 1, 11),
            ("temp > 80 | open", "use '||'", 1, 11),
            ("door == \"open", "unterminated string", 1, 9),
            ("door == \"a\\qb\"", "unknown escape", 1, 11),
            ("temp > 80 #", "unexpected character '#'", 1, 11),
            ("avg(temp, 10x) > 1", "unknown duration unit 'x'", 1, 13),
            ("avg(temp, 31d) > 1", "longer than 30d", 1, 11),
            ("temp > 10m", "only allowed as the second argument", 1, 8),
            ("temp.x > 1", "is not a twin path", 1, 1),
            ("reported. > 1", "expected a key after '.'", 1, 10),
            ("`temp > 1", "unterminated key", 1, 1),
            ("`` > 1", "empty key", 1, 1),
            ("temp > 80 &&\n  door ==", "expected a value", 2, 10),
            ("temp > 80 and and open", "found 'and'", 1, 15),
            ("min(temp, 5m) > 1", "min_over(key, 5m)", 1, 11),
            ("1e999 > 1", "not a finite number", 1, 1),
            ("max(temp, 1 2", "expected ',' or ')'", 1, 13),
            ("avg(temp, 10m > 1", "expected ')'", 1, 15),
            ("temp >\n\n   * 3", "expected a value", 3, 4),
        ]
    )
    func syntaxErrors(source: String, fragment: String, line: Int, column: Int) throws {
        let error = try #require(self.error(source), "\(source) should not compile")
        #expect(error.kind == .syntax, "\(error)")
        #expect(error.message.contains(fragment), "\(error)")
        #expect(error.line == line && error.column == column, "\(source): \(error)")
        #expect(error.description.hasSuffix(" at \(line):\(column)"))
    }

    @Test(
        "type errors say which operand has which type, at the operator or argument",
        arguments: [
            (#"temp == "x""#, "`temp` is a number; `==` compares it with a string", 1, 6),
            ("door > 3", "`door` is a string; `>` compares it with a number", 1, 6),
            ("open < true", "`<` orders numbers or strings; `open` is a bool", 1, 6),
            ("door + 1 > 2", "`+` needs numbers; `door` is a string", 1, 6),
            ("temp && open", "`&&` needs a condition on both sides; `temp` is a number", 1, 6),
            ("open or door", "`or` needs a condition on both sides; `door` is a string", 1, 6),
            ("temp + 1", "the condition must be true or false; `temp + 1` is a number", 1, 1),
            (#""open""#, "the condition must be true or false", 1, 1),
            ("!temp", "`!` needs a condition; `temp` is a number", 1, 1),
            ("-door > 1", "`-` needs a number; `door` is a string", 1, 1),
            ("avgg(temp, 10m) > 1", "unknown function `avgg`", 1, 1),
            ("avg(10m) > 1", "`avg` takes a telemetry key and a duration", 1, 5),
            ("avg(temp) > 1", "`avg` takes a telemetry key and a duration", 1, 9),
            ("delta(temp, 10) > 1", "`delta` takes a telemetry key and a duration", 1, 13),
            ("rate(reported.x, 1m) > 1", "`rate` takes a telemetry key and a duration", 1, 6),
            ("avg(door, 10m) > 1", "`avg` needs a numeric key; `door` is a string", 1, 5),
            ("abs(door) > 1", "`abs` needs numbers; `door` is a string", 1, 5),
            ("abs(1, 2) > 1", "`abs` takes one number", 1, 8),
            ("max(temp) > 1", "`max` takes two or more numbers", 1, 1),
            ("x > 1 &&\n  temp == door", "`temp` is a number; `==` compares it with a string", 2, 8),
            (#"reported.a == 1 && (temp < 2) == "y""#, "`(temp < 2)` is a bool; `==` compares it with a string", 1, 31),
            ("1 < 2 < 3", "`<` orders numbers or strings; `1 < 2` is a bool", 1, 7),
        ]
    )
    func typeErrors(source: String, fragment: String, line: Int, column: Int) throws {
        let error = try #require(self.error(source), "\(source) should not compile")
        #expect(error.kind == .type, "\(error)")
        #expect(error.message.contains(fragment), "\(error)")
        #expect(error.line == line && error.column == column, "\(source): \(error)")
    }

    @Test("keys not in the schema and twin paths are unknown: any use compiles and is checked at evaluation")
    func unknownTypes() throws {
        for source in [
            "x == \"a\"", "x > 1 && x", "reported.a.b + 1 > desired.c", "!reported.on", "x", "avg(x, 1m) > x",
        ] {
            #expect(throws: Never.self, "\(source)") { try RuleExpression.compile(source, schema: Self.schema) }
        }
        // The same expressions with typed keys do not.
        #expect(error("temp", schema: Self.schema)?.kind == .type)
        #expect(error("temp > 1 && door", schema: Self.schema)?.kind == .type)
    }

    @Test(
        "precedence and associativity: * / % over + - over comparisons over == != over && over ||, all left-associative",
        arguments: [
            ("1 + 2 * 3 > 4", "((1 + (2 * 3)) > 4)"),
            ("a || b && c", "(a || (b && c))"),
            ("a && b || c && d", "((a && b) || (c && d))"),
            ("a - b - c > 0", "(((a - b) - c) > 0)"),
            ("a / b * c % d > 0", "((((a / b) * c) % d) > 0)"),
            ("a - (b - c) > 0", "((a - (b - c)) > 0)"),
            ("-a * b > 0", "(((-a) * b) > 0)"),
            ("- -a > 0", "((-(-a)) > 0)"),
            ("!a == b", "((!a) == b)"),
            ("!(a == b)", "(!(a == b))"),
            ("a < b == c >= d", "((a < b) == (c >= d))"),
            ("a or b and not c", "(a || (b && (!c)))"),
            ("x == 1 != true", "((x == 1) != true)"),
            ("1e3 + 21.5 - .5 > 0", "(((1000 + 21.5) - 0.5) > 0)"),
            ("reported.a.`b c` > avg(`my key`, 90s)", "(reported.a.`b c` > avg(`my key`, 90000ms))"),
            (#"`true` == "a\"\\\n""#, #"(`true` == "a\"\\\n")"#),
            (
                "min(a, b + 1, 2) <= max(abs(-c), delta(d, 1h))",
                "(min(a, (b + 1), 2) <= max(abs((-c)), delta(d, 3600000ms)))"
            ),
            ("avg(t,500ms)>=0", "(avg(t, 500ms) >= 0)"),
            ("min_over(t, 2d) < max_over(t, 1.5m)", "(min_over(t, 172800000ms) < max_over(t, 90000ms))"),
        ]
    )
    func precedence(source: String, tree: String) throws {
        let expression = try RuleExpression.compile(source)
        #expect(expression.root.description == tree)
        // The printed form compiles back to the same tree.
        #expect(try RuleExpression.compile(expression.root.description).root.description == tree)
    }

    @Test("very deep or very long input is refused with an error, not a crash")
    func limits() throws {
        let parens = String(repeating: "(", count: 2000) + "x" + String(repeating: ")", count: 2000)
        #expect(error(parens)?.message.contains("nests deeper") == true)
        #expect(error(parens)?.column == 65)
        #expect(error(String(repeating: "!", count: 3000) + "x")?.message.contains("nests deeper") == true)
        let chain = (0..<1000).map { _ in "1" }.joined(separator: "+") + " > 0"
        #expect(error(chain)?.message.contains("chains more than") == true)
        #expect(error(String(repeating: "x", count: 5000))?.message.contains("longer than") == true)
        let fine = (0..<100).map { "k\($0) > \($0)" }.joined(separator: " && ")
        #expect(throws: Never.self) { try RuleExpression.compile(fine) }
    }
}

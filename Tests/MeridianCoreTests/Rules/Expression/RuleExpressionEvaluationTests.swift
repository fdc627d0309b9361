import MeridianCore
import Testing

@Suite("Rule expressions: three-valued evaluation")
struct RuleExpressionEvaluationTests {
    private func result(_ source: String, _ context: RuleExpressionTestContext) throws -> RuleExpressionResult {
        try RuleExpression.compile(source).evaluate(in: context)
    }

    @Test("the issue's example fires on the device's latest values and twin")
    func example() throws {
        let expression = try RuleExpression.compile(
            #"temp > reported.setpoint + 5 && door == "open""#,
            schema: RuleExpressionSchema(keys: ["temp": .number, "door": .string])
        )
        var device = RuleExpressionTestContext(
            values: ["temp": .number(26), "door": .string("open")],
            reported: .object(["setpoint": .number(20)])
        )
        #expect(expression.evaluate(in: device) == .true)
        device.values["temp"] = .number(25)
        #expect(expression.evaluate(in: device) == .false)
        device.reported = .emptyObject
        #expect(expression.evaluate(in: device) == .unknown)
        device.reported = .object(["setpoint": .string("twenty")])
        #expect(expression.evaluate(in: device) == .unknown)
    }

    @Test("false && unknown is false, true || unknown is true; otherwise unknown propagates")
    func threeValued() throws {
        let context = RuleExpressionTestContext(values: ["t": .bool(true), "f": .bool(false)])
        let table: [(String, RuleExpressionResult)] = [
            ("f && missing", .false), ("missing && f", .false), ("t && missing", .unknown), ("missing && t", .unknown),
            ("t || missing", .true), ("missing || t", .true), ("f || missing", .unknown), ("missing || f", .unknown),
            ("!missing", .unknown), ("missing == missing", .unknown), ("missing != 1", .unknown),
            ("!(f && missing)", .true), ("t && !f", .true), ("t and f or t", .true), ("not t", .false),
            ("missing", .unknown), ("t", .true), ("reported.a", .unknown),
        ]
        for (source, expected) in table {
            #expect(try result(source, context) == expected, "\(source)")
        }
    }

    @Test("missing data, run-time type mismatches, division by zero and overflow are unknown, never a firing")
    func unknowns() throws {
        let context = RuleExpressionTestContext(
            values: ["n": .number(4), "s": .string("open"), "b": .bool(true), "nan": .number(.nan)],
            reported: .object(["list": .array([.number(1)]), "null": .null, "x": .number(2)]),
            windows: [RuleExpressionWindow(function: .avg, key: "n", durationMilliseconds: 60_000): 3]
        )
        let table: [(String, RuleExpressionResult)] = [
            ("n / 0 > 1", .unknown), ("n % 0 == 0", .unknown), ("n / 0 > 1 || n > 3", .true),
            ("n * 1e308 * 10 > 0", .unknown), ("s > 1", .unknown), ("s == 1", .unknown), ("b + 1 > 0", .unknown),
            ("nan > 0", .unknown), ("nan != nan", .unknown), ("reported.list == 1", .unknown),
            ("reported.null == 1", .unknown),
            ("reported.x * n == 8", .true), ("desired.x == 2", .unknown), ("avg(n, 1m) == 3", .true),
            ("avg(n, 2m) == 3", .unknown),
            ("rate(n, 1m) > 0 || avg(n, 1m) < 4", .true), ("min(n, missing) < 100", .unknown), ("abs(s) > 0", .unknown),
            (#"s == "open" && s >= "ope" && s < "opf""#, .true), ("b == true && b != false", .true),
            ("n % 3 == 1 && -n == -4 && abs(0 - n) == 4 && min(n, 2, 9) == 2 && max(n, 2, 9) == 9", .true),
            ("7 % -3 == 1 && -7 % 3 == -1 && 10 / 4 == 2.5", .true),
        ]
        for (source, expected) in table {
            #expect(try result(source, context) == expected, "\(source)")
        }
        #expect(try RuleExpression.compile("n > 1").value(in: context) == .bool(true))
    }
}

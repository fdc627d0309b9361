import Foundation
import MeridianCore
import Testing

@Suite("Fleet query language: parsing and type checking")
struct FleetQueryParserTests {
    private func error(_ text: String) -> FleetQueryError? {
        if case .failure(let error) = FleetQuery.parse(text) { return error }
        return nil
    }

    @Test("the issue's example parses into the expected tree; AND binds tighter than OR")
    func example() throws {
        let query = try FleetQuery(#"labels.site = "plant-3" AND reported.firmware.version < "2.0" AND online"#)
        #expect(
            query.expression
                == .and(
                    .and(.compare(.label("site"), .equal, .string("plant-3")), .compare(.reported(["firmware", "version"]), .less, .string("2.0"))),
                    .truthy(.online)
                )
        )
        let mixed = try FleetQuery(#"status = "active" OR labels.a = "1" and not online"#)
        #expect(
            mixed.expression
                == .or(.compare(.status, .equal, .string("active")), .and(.compare(.label("a"), .equal, .string("1")), .not(.truthy(.online))))
        )
    }

    @Test("every operator, IN / NOT IN, EXISTS / has(), now arithmetic, negative numbers, escapes")
    func forms() throws {
        #expect(try FleetQuery(#"labels.app.kubernetes.io/name-x != "a\"b""#).expression == .compare(.label("app.kubernetes.io/name-x"), .notEqual, .string("a\"b")))
        #expect(try FleetQuery("telemetry.temp >= -1.5e1").expression == .compare(.telemetry("temp"), .greaterOrEqual, .number(-15)))
        #expect(try FleetQuery("metadata.rack <= 3").expression == .compare(.metadata(["rack"]), .lessOrEqual, .number(3)))
        #expect(try FleetQuery("desired.mode <> 'eco'").expression == .compare(.desired(["mode"]), .notEqual, .string("eco")))
        #expect(try FleetQuery("lastSeen < now - 1h").expression == .compare(.lastSeen, .less, .relativeTime(offsetMilliseconds: -3_600_000)))
        #expect(try FleetQuery("lastSeen > now-30m").expression == .compare(.lastSeen, .greater, .relativeTime(offsetMilliseconds: -1_800_000)))
        #expect(try FleetQuery(#"lastSeen >= "2026-01-01T00:00:00Z""#).expression == .compare(.lastSeen, .greaterOrEqual, .number(1_767_225_600_000)))
        #expect(try FleetQuery(#"profile IN ["a", "b"]"#).expression == .isIn(.profile, [.string("a"), .string("b")]))
        #expect(try FleetQuery(#"labels.site NOT IN ["x"]"#).expression == .not(.isIn(.label("site"), [.string("x")])))
        #expect(try FleetQuery("EXISTS reported.firmware").expression == .exists(.reported(["firmware"])))
        #expect(try FleetQuery("has(labels.site) and labels.tier exists").expression == .and(.exists(.label("site")), .exists(.label("tier"))))
        #expect(try FleetQuery("online = false").expression == .compare(.online, .equal, .boolean(false)))
        #expect(try FleetQuery("((online))").expression == .truthy(.online))
        #expect(try FleetQuery("reported.enabled").expression == .truthy(.reported(["enabled"])))
    }

    @Test("syntax errors say what was expected and point at the offending token (offset, line, column)")
    func syntaxErrors() {
        let cases: [(String, Int, Int, Int, String)] = [
            ("", 0, 1, 1, "the query is empty"),
            ("labels.site = ", 14, 1, 15, "expected a value after '='"),
            ("labels.site = plant", 14, 1, 15, "quote strings"),
            ("labels.site = \"plant", 14, 1, 15, "unterminated string"),
            ("online AND", 10, 1, 11, "expected a condition"),
            ("(online", 7, 1, 8, "expected ')'"),
            ("online )", 7, 1, 8, "expected AND, OR or the end of the query"),
            ("online &&  x", 7, 1, 8, "unexpected character '&'"),
            ("labels.site = \"a\"\nAND lastSeen < now - 5x ", 40, 2, 23, "unknown duration unit"),
            ("labels.site = \"a\"\n  OR lastSeen < now -", 39, 2, 22, "expected a duration"),
            ("labels.site IN \"a\"", 15, 1, 16, "expected '[' after IN"),
            ("labels.site IN [\"a\" \"b\"]", 20, 1, 21, "expected ',' or ']'"),
            ("labels. = \"a\"", 0, 1, 1, "expected a key after '.'"),
            ("lastSeen < 1h", 11, 1, 12, "needs 'now' before it"),
            ("online ! true", 7, 1, 8, "expected '!='"),
        ]
        for (text, offset, line, column, message) in cases {
            let found = error(text)
            #expect(found?.kind == .syntax, "\(text)")
            #expect(found?.offset == offset, "\(text): \(String(describing: found))")
            #expect(found?.line == line, "\(text): \(String(describing: found))")
            #expect(found?.column == column, "\(text): \(String(describing: found))")
            #expect(found?.message.contains(message) == true, "\(text): \(String(describing: found))")
        }
    }

    @Test("type errors are caught before evaluation, at the field or value to blame")
    func typeErrors() {
        let cases: [(String, Int, String)] = [
            ("online > 3", 0, "online is a boolean; only = and != apply"),
            ("online = 3", 9, "compare it with true or false"),
            ("labels.site < 5", 14, "labels.site is a string"),
            ("labels.site = true", 14, "labels.site is a string"),
            ("status = \"sleeping\"", 9, "status is one of"),
            ("status > \"active\"", 0, "can only be compared with = and !="),
            ("lastSeen > true", 11, "lastSeen is a time"),
            ("lastSeen > \"yesterday\"", 11, "lastSeen is a time"),
            ("reported.x > now", 13, "'now' only compares with lastSeen"),
            ("reported.x < false", 13, "booleans have no order"),
            ("labels.site", 0, "expected an operator"),
            ("colour = \"red\"", 0, "unknown field 'colour'"),
            ("online.x", 0, "online has no sub-fields"),
            ("labels.site IN [\"a\", 3]", 21, "labels.site is a string"),
            ("online AND telemetry = 3", 11, "expected a telemetry key"),
        ]
        for (text, offset, message) in cases {
            let found = error(text)
            #expect(found?.kind == .type, "\(text): \(String(describing: found))")
            #expect(found?.offset == offset, "\(text): \(String(describing: found))")
            #expect(found?.message.contains(message) == true, "\(text): \(String(describing: found))")
        }
    }

    @Test("hostile input gets an error, never a crash: deep nesting, long input, odd characters")
    func hostile() {
        #expect(error(String(repeating: "(", count: 10_000) + "online" + String(repeating: ")", count: 10_000))?.message.contains("longer than") == true)
        #expect(error(String(repeating: "(", count: 100) + "online" + String(repeating: ")", count: 100))?.message.contains("nests deeper") == true)
        #expect(error(String(repeating: "NOT ", count: 100) + "online")?.message.contains("nests deeper") == true)
        #expect(error("labels.site = \"\\q\"")?.message.contains("unknown escape") == true)
        #expect(error("labels.site = \"\\u12\"")?.message.contains("hex digits") == true)
        #expect(error("name = \"é\" AND 😀")?.offset == 15)
        #expect(error("telemetry.t > 1e999")?.message.contains("not a number") == true)
        #expect(error("; DROP TABLE devices; --")?.offset == 0)
    }

    @Test("the registry prefilter takes only equalities every match must satisfy")
    func prefilter() throws {
        let query = try FleetQuery(#"labels.site = "a" AND (status = "active" AND profile = "p") AND labels.tier = "x" AND online"#)
        #expect(query.prefilter.labels == ["site": "a", "tier": "x"])
        #expect(query.prefilter.status == .active)
        #expect(query.prefilter.profile == "p")
        #expect(try FleetQuery(#"name = "pump 1" AND online"#).prefilter.namePrefix == "pump 1")
        let either = try FleetQuery(#"labels.site = "a" OR labels.tier = "x""#)
        #expect(either.prefilter.labels.isEmpty)
        let negated = try FleetQuery(#"NOT labels.site = "a" AND status != "active""#)
        #expect(negated.prefilter.labels.isEmpty && negated.prefilter.status == nil)
        let needs = try FleetQuery("telemetry.t > 1 and reported.a = 1 and online and profile = \"x\"").needs
        #expect(needs.presence && needs.twins && needs.profiles && needs.telemetryKeys == ["t"])
        let none = try FleetQuery("labels.a = \"1\"").needs
        #expect(!none.presence && !none.twins && !none.profiles && none.telemetryKeys.isEmpty)
    }
}

import MeridianCore
import Testing

/// Random expression trees, printed to source, compiled and evaluated, compared with a plain
/// recursive evaluator written here; and random text that must never crash the compiler.
@Suite("Rule expressions: evaluation against a reference on random inputs, fuzzing")
struct RuleExpressionReferenceTests {
    indirect enum Node {
        case number(Double, String)
        case string(String, String)
        case bool(Bool)
        case key(String)
        case twin(RuleTwinSection, [String])
        case negate(Node)
        case not(Node)
        case binary(String, Node, Node)
        case abs(Node)
        case min([Node])
        case max([Node])
        case window(RuleWindowFunction, String, Int64, String)
    }

    enum Want { case number, string, bool }

    static let numbers: [(Double, String)] = [
        (0, "0"), (1, "1"), (2, "2"), (3, "3"), (0.5, "0.5"), (21.5, "21.5"), (80, "80"), (1000, "1e3"), (7, "7.0"),
    ]
    static let strings: [(String, String)] = [
        ("", #""""#), ("a", #""a""#), ("open", #""open""#), ("b\"q", #""b\"q""#), ("x\\y", #""x\\y""#),
        ("a\n", #""a\n""#),
    ]
    static let durations: [(Int64, String)] = [(60_000, "1m"), (500, "500ms"), (30_000, "30s")]
    static let schema = RuleExpressionSchema(keys: [
        "n0": .number, "n1": .number, "s0": .string, "b0": .bool, "b1": .bool,
    ])

    // MARK: Generation

    static func generate(_ want: Want, depth: Int, _ random: inout RuleExpressionRandom) -> Node {
        func pick<T>(_ items: [T]) -> T { items[Int.random(in: 0..<items.count, using: &random)] }
        let leaf = depth <= 0 || Int.random(in: 0..<10, using: &random) < 3
        if want == .string || leaf {
            let twin: Node = pick([.twin(.reported, ["x"]), .twin(.desired, ["a", "b"])])
            let unknownKey: Node = pick([.key("u0"), .key("u1"), twin])
            switch want {
            case .number:
                let (value, text) = pick(numbers)
                let (ms, duration) = pick(durations)
                return pick([
                    .number(value, text), .number(value, text), .key(pick(["n0", "n1"])), unknownKey,
                    .window(pick(RuleWindowFunction.allCases), pick(["n0", "u0"]), ms, duration),
                ])
            case .string:
                let (value, text) = pick(strings)
                return pick([.string(value, text), .key("s0"), unknownKey])
            case .bool:
                return pick([.bool(true), .bool(false), .key(pick(["b0", "b1"])), unknownKey])
            }
        }
        let next = depth - 1
        switch want {
        case .number:
            switch Int.random(in: 0..<6, using: &random) {
            case 0: return .negate(generate(.number, depth: next, &random))
            case 1: return .abs(generate(.number, depth: next, &random))
            case 2, 3:
                let arguments = (0..<Int.random(in: 2...3, using: &random)).map { _ in
                    generate(.number, depth: next, &random)
                }
                return Bool.random(using: &random) ? .min(arguments) : .max(arguments)
            default:
                return .binary(
                    pick(["+", "-", "*", "/", "%"]),
                    generate(.number, depth: next, &random),
                    generate(.number, depth: next, &random)
                )
            }
        case .bool:
            switch Int.random(in: 0..<7, using: &random) {
            case 0: return .not(generate(.bool, depth: next, &random))
            case 1, 2:
                return .binary(
                    pick(["&&", "||"]),
                    generate(.bool, depth: next, &random),
                    generate(.bool, depth: next, &random)
                )
            case 3, 4:
                let operands: Want = pick([.number, .number, .string])
                return .binary(
                    pick(["<", "<=", ">", ">="]),
                    generate(operands, depth: next, &random),
                    generate(operands, depth: next, &random)
                )
            default:
                let operands: Want = pick([.number, .string, .bool])
                return .binary(
                    pick(["==", "!="]),
                    generate(operands, depth: next, &random),
                    generate(operands, depth: next, &random)
                )
            }
        case .string:
            fatalError("strings are leaves")
        }
    }

    // MARK: Printing

    static func precedence(_ op: String) -> Int {
        switch op {
        case "||": 1
        case "&&": 2
        case "==", "!=": 3
        case "<", "<=", ">", ">=": 4
        case "+", "-": 5
        default: 6
        }
    }

    /// Source text; `minimal` leaves out every parenthesis precedence and left-associativity
    /// make unnecessary, `words` spells `and`/`or`/`not`.
    static func print(_ node: Node, minimal: Bool, words: Bool, above: Int = 0) -> String {
        func p(_ child: Node, _ level: Int) -> String { print(child, minimal: minimal, words: words, above: level) }
        switch node {
        case .number(_, let text), .string(_, let text): return text
        case .bool(let value): return value ? "true" : "false"
        case .key(let key): return key
        case .twin(let section, let path): return ([section.rawValue] + path).joined(separator: ".")
        case .negate(let inner): return "-" + p(inner, 7)
        case .not(let inner): return (words ? "not " : "!") + p(inner, 7)
        case .binary(let op, let left, let right):
            let level = precedence(op)
            let symbol = words && op == "&&" ? "and" : words && op == "||" ? "or" : op
            let text = "\(p(left, level)) \(symbol) \(p(right, level + 1))"
            return !minimal || level < above ? "(\(text))" : text
        case .abs(let inner): return "abs(\(p(inner, 0)))"
        case .min(let arguments): return "min(\(arguments.map { p($0, 0) }.joined(separator: ", ")))"
        case .max(let arguments): return "max(\(arguments.map { p($0, 0) }.joined(separator: ",")))"
        case .window(let function, let key, _, let duration): return "\(function.name)(\(key), \(duration))"
        }
    }

    // MARK: Reference evaluation

    static func reference(_ node: Node, _ context: RuleExpressionTestContext) -> RuleExpressionValue? {
        func finite(_ value: Double?) -> RuleExpressionValue? {
            guard let value, value.isFinite else { return nil }
            return .number(value)
        }
        func number(_ node: Node) -> Double? {
            if case .number(let value)? = reference(node, context) { return value }
            return nil
        }
        func bool(_ node: Node) -> Bool? {
            if case .bool(let value)? = reference(node, context) { return value }
            return nil
        }
        switch node {
        case .number(let value, _): return .number(value)
        case .string(let value, _): return .string(value)
        case .bool(let value): return .bool(value)
        case .key(let key):
            switch context.values[key] {
            case .number(let value)?: return finite(value)
            case .string(let value)?: return .string(value)
            case .bool(let value)?: return .bool(value)
            case nil: return nil
            }
        case .twin(let section, let path):
            switch context.twin(section, path: path) {
            case .number(let value)?: return finite(value)
            case .string(let value)?: return .string(value)
            case .bool(let value)?: return .bool(value)
            default: return nil
            }
        case .negate(let inner): return number(inner).map { .number(-$0) }
        case .not(let inner): return bool(inner).map { .bool(!$0) }
        case .abs(let inner): return number(inner).map { .number(Swift.abs($0)) }
        case .min(let arguments):
            let values = arguments.map(number)
            return values.contains(where: { $0 == nil }) ? nil : finite(values.compactMap { $0 }.min())
        case .max(let arguments):
            let values = arguments.map(number)
            return values.contains(where: { $0 == nil }) ? nil : finite(values.compactMap { $0 }.max())
        case .window(let function, let key, let ms, _):
            return finite(context.windows[RuleExpressionWindow(function: function, key: key, durationMilliseconds: ms)])
        case .binary(let op, let left, let right):
            switch op {
            case "&&":
                let (a, b) = (bool(left), bool(right))
                if a == false || b == false { return .bool(false) }
                return a == true && b == true ? .bool(true) : nil
            case "||":
                let (a, b) = (bool(left), bool(right))
                if a == true || b == true { return .bool(true) }
                return a == false && b == false ? .bool(false) : nil
            case "+", "-", "*", "/", "%":
                guard let a = number(left), let b = number(right) else { return nil }
                switch op {
                case "+": return finite(a + b)
                case "-": return finite(a - b)
                case "*": return finite(a * b)
                case "/": return b == 0 ? nil : finite(a / b)
                default: return b == 0 ? nil : finite(a.truncatingRemainder(dividingBy: b))
                }
            default:
                let (a, b) = (reference(left, context), reference(right, context))
                let ordering: Int?  // -1, 0, 1
                switch (a, b) {
                case (.number(let x)?, .number(let y)?): ordering = x < y ? -1 : x == y ? 0 : 1
                case (.string(let x)?, .string(let y)?): ordering = x < y ? -1 : x == y ? 0 : 1
                case (.bool(let x)?, .bool(let y)?) where op == "==" || op == "!=": ordering = x == y ? 0 : 1
                default: ordering = nil
                }
                guard let ordering else { return nil }
                switch op {
                case "==": return .bool(ordering == 0)
                case "!=": return .bool(ordering != 0)
                case "<": return .bool(ordering < 0)
                case "<=": return .bool(ordering <= 0)
                case ">": return .bool(ordering > 0)
                default: return .bool(ordering >= 0)
                }
            }
        }
    }

    static func randomContext(_ random: inout RuleExpressionRandom) -> RuleExpressionTestContext {
        func pick<T>(_ items: [T]) -> T { items[Int.random(in: 0..<items.count, using: &random)] }
        func chance(_ percent: Int) -> Bool { Int.random(in: 0..<100, using: &random) < percent }
        func number() -> Double {
            pick([-2, -1, 0, 0.5, 1, 2, 3, 7, 80, 1000, Double.random(in: -100...100, using: &random)])
        }
        func any() -> TelemetryValue {
            switch Int.random(in: 0..<3, using: &random) {
            case 0: .number(number())
            case 1: .string(pick(strings).0)
            default: .bool(Bool.random(using: &random))
            }
        }
        func json() -> JSONValue? {
            switch Int.random(in: 0..<6, using: &random) {
            case 0: nil
            case 1: .null
            case 2: .string(pick(strings).0)
            case 3: .bool(Bool.random(using: &random))
            default: .number(number())
            }
        }
        var context = RuleExpressionTestContext()
        for key in ["n0", "n1"] where chance(85) { context.values[key] = .number(number()) }
        if chance(85) { context.values["s0"] = .string(pick(strings).0) }
        for key in ["b0", "b1"] where chance(85) { context.values[key] = .bool(Bool.random(using: &random)) }
        for key in ["u0", "u1"] where chance(85) { context.values[key] = any() }
        if let x = json() { context.reported = .object(["x": x]) }
        if let b = json() { context.desired = .object(["a": .object(["b": b])]) }
        for function in RuleWindowFunction.allCases {
            for key in ["n0", "u0"] {
                for (ms, _) in durations where chance(80) {
                    context.windows[RuleExpressionWindow(function: function, key: key, durationMilliseconds: ms)] =
                        number()
                }
            }
        }
        return context
    }

    // MARK: Tests

    @Test("random expressions evaluate as the reference evaluator says, however they are parenthesised and spelled")
    func againstReference() throws {
        var random = RuleExpressionRandom(seed: 0x5EED_0008)
        var outcomes: [RuleExpressionResult: Int] = [:]
        for _ in 0..<3000 {
            let tree = Self.generate(.bool, depth: Int.random(in: 1...5, using: &random), &random)
            let words = Bool.random(using: &random)
            let full = Self.print(tree, minimal: false, words: words)
            let minimal = Self.print(tree, minimal: true, words: !words)
            let expression = try RuleExpression.compile(minimal, schema: Self.schema)
            let parenthesised = try RuleExpression.compile(full, schema: Self.schema)
            #expect(expression.root.description == parenthesised.root.description, "\(minimal) vs \(full)")
            for _ in 0..<4 {
                let context = Self.randomContext(&random)
                let expected = Self.reference(tree, context)
                #expect(expression.value(in: context) == expected, "\(minimal) in \(context)")
                let result = expression.evaluate(in: context)
                outcomes[result, default: 0] += 1
                switch expected {
                case .bool(let value)?: #expect(result == RuleExpressionResult(value), "\(minimal)")
                default: #expect(result == .unknown, "\(minimal)")
                }
            }
        }
        // The generator exercises all three outcomes.
        #expect(
            outcomes[.true, default: 0] > 500 && outcomes[.false, default: 0] > 500
                && outcomes[.unknown, default: 0] > 500,
            "\(outcomes)"
        )
    }

    static func checkPosition(_ error: RuleExpressionError, in source: String) {
        let scalars = Array(source.unicodeScalars)
        #expect(error.offset >= 0 && error.offset <= scalars.count, "\(source): \(error)")
        let before = scalars.prefix(error.offset)
        let line = before.filter { $0 == "\n" }.count + 1
        let column = before.count - (before.lastIndex(of: "\n").map { $0 + 1 } ?? 0) + 1
        #expect(error.line == line && error.column == column, "\(source): \(error)")
        #expect(!error.message.isEmpty)
    }

    @Test(
        "random text and mutated expressions never crash: an error with a valid position, or an expression that prints and recompiles to itself"
    )
    func fuzz() throws {
        var random = RuleExpressionRandom(seed: 0xF022)
        let fragments = [
            "temp", "door", "n0", " ", " ", "\n", "(", ")", "!", "-", "+", "*", "/", "%", "<", "<=", ">", ">=", "==",
            "!=", "=", "&&",
            "&", "||", "|", "and", "or", "not", "true", "false", "1", "21.5", "1e3", "1e", ".5", "10m", "5x", "\"",
            "\"a\"", "\\", "`",
            "`k y`", "reported.", "reported.a.b", "desired.x", ".", ",", "abs(", "min(", "max(", "avg(", "rate(",
            "delta(", "min_over(",
            "avgg(", "é", "🙂", "\u{0}", "#", "[", "}",
        ]
        func pick<T>(_ items: [T]) -> T { items[Int.random(in: 0..<items.count, using: &random)] }
        var compiled = 0
        for round in 0..<6000 {
            var source: String
            if round % 3 == 0 {
                // A valid expression with a few random edits.
                let tree = Self.generate(.bool, depth: 3, &random)
                var scalars = Array(Self.print(tree, minimal: true, words: false).unicodeScalars)
                for _ in 0..<Int.random(in: 1...3, using: &random) {
                    let at = Int.random(in: 0...scalars.count, using: &random)
                    if Bool.random(using: &random), at < scalars.count {
                        scalars.remove(at: at)
                    } else {
                        scalars.insert(contentsOf: pick(fragments).unicodeScalars, at: at)
                    }
                }
                source = ""
                source.unicodeScalars.append(contentsOf: scalars)
            } else {
                source = (0..<Int.random(in: 0...12, using: &random)).map { _ in pick(fragments) }.joined()
            }
            do {
                let expression = try RuleExpression.compile(source, schema: Self.schema)
                compiled += 1
                let printed = expression.root.description
                let again = try RuleExpression.compile(printed, schema: Self.schema)
                #expect(again.root.description == printed, "\(source)")
                let context = Self.randomContext(&random)
                #expect(again.evaluate(in: context) == expression.evaluate(in: context), "\(source)")
                _ = expression.referencedKeys
                _ = expression.windows
            } catch {
                Self.checkPosition(error, in: source)
            }
        }
        #expect(compiled > 100, "the fuzzer should also produce valid expressions")
    }
}

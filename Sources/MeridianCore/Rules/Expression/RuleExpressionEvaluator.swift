/// Evaluates a checked expression tree against one device. Unknown (missing data, a value of
/// an unexpected type at run time, arithmetic without a finite result) is `nil` and propagates,
/// except through `&&` / `||`, which follow three-valued logic.
struct RuleExpressionEvaluator<Context: RuleExpressionContext> {
    let context: Context

    func evaluate(_ node: RuleExpressionNode) -> RuleExpressionValue? {
        switch node.kind {
        case .number(let value): return .number(value)
        case .string(let value): return .string(value)
        case .bool(let value): return .bool(value)
        case .key(let key):
            switch context.value(ofKey: key) {
            case .number(let value)?: return value.isFinite ? .number(value) : nil
            case .bool(let value)?: return .bool(value)
            case .string(let value)?: return .string(value)
            case nil: return nil
            }
        case .twin(let section, let path):
            switch context.twin(section, path: path) {
            case .number(let value)?: return value.isFinite ? .number(value) : nil
            case .bool(let value)?: return .bool(value)
            case .string(let value)?: return .string(value)
            default: return nil
            }
        case .negate(let inner):
            guard let value = number(inner) else { return nil }
            return .number(-value)
        case .not(let inner):
            guard let value = bool(inner) else { return nil }
            return .bool(!value)
        case .binary(let op, let left, let right):
            return binary(op, left, right)
        case .abs(let inner):
            guard let value = number(inner) else { return nil }
            return .number(Swift.abs(value))
        case .min(let arguments), .max(let arguments):
            var result: Double?
            let isMin: Bool
            if case .min = node.kind { isMin = true } else { isMin = false }
            for argument in arguments {
                guard let value = number(argument) else { return nil }
                result = result.map { isMin ? Swift.min($0, value) : Swift.max($0, value) } ?? value
            }
            return result.map { .number($0) }
        case .window(let window):
            guard
                let value = context.window(
                    window.function,
                    key: window.key,
                    durationMilliseconds: window.durationMilliseconds
                ),
                value.isFinite
            else { return nil }
            return .number(value)
        }
    }

    private func number(_ node: RuleExpressionNode) -> Double? {
        if case .number(let value)? = evaluate(node) { return value }
        return nil
    }

    private func bool(_ node: RuleExpressionNode) -> Bool? {
        if case .bool(let value)? = evaluate(node) { return value }
        return nil
    }

    private func binary(
        _ op: RuleExpressionOperator,
        _ left: RuleExpressionNode,
        _ right: RuleExpressionNode
    ) -> RuleExpressionValue? {
        switch op {
        case .and:
            let first = bool(left)
            if first == false { return .bool(false) }
            let second = bool(right)
            if second == false { return .bool(false) }
            guard let first, let second else { return nil }
            return .bool(first && second)
        case .or:
            let first = bool(left)
            if first == true { return .bool(true) }
            let second = bool(right)
            if second == true { return .bool(true) }
            guard let first, let second else { return nil }
            return .bool(first || second)
        case .add, .subtract, .multiply, .divide, .remainder:
            guard let a = number(left), let b = number(right) else { return nil }
            let result: Double
            switch op {
            case .add: result = a + b
            case .subtract: result = a - b
            case .multiply: result = a * b
            case .divide:
                guard b != 0 else { return nil }
                result = a / b
            default:
                guard b != 0 else { return nil }
                result = a.truncatingRemainder(dividingBy: b)
            }
            return result.isFinite ? .number(result) : nil
        case .equal, .notEqual:
            guard let a = evaluate(left), let b = evaluate(right) else { return nil }
            let same: Bool
            switch (a, b) {
            case (.number(let x), .number(let y)): same = x == y
            case (.string(let x), .string(let y)): same = x == y
            case (.bool(let x), .bool(let y)): same = x == y
            default: return nil
            }
            return .bool(op == .equal ? same : !same)
        case .less, .lessOrEqual, .greater, .greaterOrEqual:
            guard let a = evaluate(left), let b = evaluate(right) else { return nil }
            switch (a, b) {
            case (.number(let x), .number(let y)): return .bool(Self.order(op, x, y))
            case (.string(let x), .string(let y)):
                // By Unicode scalar values, so the order does not depend on the platform's collation.
                let less = x.unicodeScalars.lexicographicallyPrecedes(y.unicodeScalars)
                let greater = y.unicodeScalars.lexicographicallyPrecedes(x.unicodeScalars)
                switch op {
                case .less: return .bool(less)
                case .lessOrEqual: return .bool(!greater)
                case .greater: return .bool(greater)
                default: return .bool(!less)
                }
            default: return nil
            }
        }
    }

    private static func order(_ op: RuleExpressionOperator, _ a: Double, _ b: Double) -> Bool {
        switch op {
        case .less: a < b
        case .lessOrEqual: a <= b
        case .greater: a > b
        default: a >= b
        }
    }
}

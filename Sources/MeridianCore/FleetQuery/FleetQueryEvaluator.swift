import Foundation

/// Evaluates a type-checked expression against one device.
///
/// Rules (documented in docs/api.md): a comparison with a missing field is false (`!=`
/// included: `a != b` means "a has a value and it is not b"); values of different kinds are
/// never equal and have no order; strings compare byte-wise (UTF-8), numbers numerically.
struct FleetQueryEvaluator {
    enum Value {
        case string(String)
        case number(Double)
        case boolean(Bool)
        /// A JSON array or object: exists, but equals and orders with nothing.
        case composite
    }

    let device: FleetDeviceContext
    let now: Int64

    func evaluate(_ expression: FleetExpression) -> Bool {
        switch expression {
        case .and(let left, let right): evaluate(left) && evaluate(right)
        case .or(let left, let right): evaluate(left) || evaluate(right)
        case .not(let inner): !evaluate(inner)
        case .compare(let field, let comparison, let literal): compare(field, comparison, literal)
        case .isIn(let field, let literals): literals.contains { compare(field, .equal, $0) }
        case .exists(let field): value(of: field) != nil
        case .truthy(let field):
            if case .boolean(true) = value(of: field) { true } else { false }
        }
    }

    private func compare(_ field: FleetField, _ comparison: FleetComparison, _ literal: FleetLiteral) -> Bool {
        if field == .profile {
            guard let id = device.device.profileID, case .string(let wanted) = literal else { return false }
            let equal = id == wanted || device.profileName.map { Self.bytesEqual($0, wanted) } == true
            return comparison == .equal ? equal : (comparison == .notEqual ? !equal : false)
        }
        guard let value = value(of: field) else { return false }
        let target: Value
        switch literal {
        case .string(let text): target = .string(text)
        case .number(let number): target = .number(number)
        case .boolean(let flag): target = .boolean(flag)
        case .relativeTime(let offset): target = .number(Double(now &+ offset))
        }
        switch comparison {
        case .equal: return Self.equal(value, target)
        case .notEqual: return !Self.equal(value, target)
        case .less: return Self.order(value, target).map { $0 < 0 } ?? false
        case .lessOrEqual: return Self.order(value, target).map { $0 <= 0 } ?? false
        case .greater: return Self.order(value, target).map { $0 > 0 } ?? false
        case .greaterOrEqual: return Self.order(value, target).map { $0 >= 0 } ?? false
        }
    }

    static func bytesEqual(_ a: String, _ b: String) -> Bool { a.utf8.elementsEqual(b.utf8) }

    static func equal(_ a: Value, _ b: Value) -> Bool {
        switch (a, b) {
        case (.string(let x), .string(let y)): bytesEqual(x, y)
        case (.number(let x), .number(let y)): x == y
        case (.boolean(let x), .boolean(let y)): x == y
        default: false
        }
    }

    /// -1, 0, 1; nil when the two have no order.
    static func order(_ a: Value, _ b: Value) -> Int? {
        switch (a, b) {
        case (.string(let x), .string(let y)):
            if x.utf8.elementsEqual(y.utf8) { return 0 }
            return x.utf8.lexicographicallyPrecedes(y.utf8) ? -1 : 1
        case (.number(let x), .number(let y)):
            if x.isNaN || y.isNaN { return nil }
            return x < y ? -1 : (x == y ? 0 : 1)
        default:
            return nil
        }
    }

    func value(of field: FleetField) -> Value? {
        let d = device.device
        switch field {
        case .id: return .string(d.id)
        case .name: return .string(d.name)
        case .profile: return (device.profileName ?? d.profileID).map { .string($0) }
        case .status: return .string(d.status.rawValue)
        case .online: return .boolean(device.online)
        case .lastSeen:
            return d.lastSeenAt.map { .number(($0.timeIntervalSince1970 * 1000).rounded()) }
        case .label(let key): return d.labels[key].map { .string($0) }
        case .metadata(let path): return Self.json(d.metadata, path)
        case .reported(let path): return device.reported.flatMap { Self.json($0, path) }
        case .desired(let path): return device.desired.flatMap { Self.json($0, path) }
        case .telemetry(let key):
            switch device.telemetry[key] {
            case .number(let number): return .number(number)
            case .bool(let flag): return .boolean(flag)
            case .string(let text): return .string(text)
            case nil: return nil
            }
        }
    }

    static func json(_ root: JSONValue, _ path: [String]) -> Value? {
        var node = root
        for key in path {
            guard case .object(let object) = node, let child = object[key] else { return nil }
            node = child
        }
        switch node {
        case .null: return nil
        case .bool(let flag): return .boolean(flag)
        case .number(let number): return .number(number)
        case .string(let text): return .string(text)
        case .array, .object: return .composite
        }
    }
}

/// A condition spec that cannot be used: which field (a dotted path such as `clear.op` or `for`)
/// and what is wrong with it. Never contains more of the input than the offending field's name.
public struct ConditionSpecError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The offending field, dotted from the spec's root (`clear.op`); empty for the whole spec.
    public var field: String
    /// What is wrong and what is expected.
    public var message: String

    /// An error about `field`.
    public init(field: String, message: String) {
        self.field = field
        self.message = message
    }

    public var description: String { field.isEmpty ? message : "\(field): \(message)" }
}

/// Reads the fields of one JSON object of a condition spec, naming fields by their dotted path in
/// errors, and refusing fields it does not know (a typo must not be silently ignored).
struct ConditionSpecReader {
    let object: [String: JSONValue]
    let path: String

    init(_ value: JSONValue, path: String = "") throws(ConditionSpecError) {
        guard case .object(let object) = value else {
            throw ConditionSpecError(field: path, message: "must be a JSON object")
        }
        self.object = object
        self.path = path
    }

    func field(_ name: String) -> String { path.isEmpty ? name : "\(path).\(name)" }

    func refuseUnknown(allowed: Set<String>) throws(ConditionSpecError) {
        if let unknown = object.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw ConditionSpecError(
                field: field(unknown),
                message: "unknown field (expected one of \(allowed.sorted().joined(separator: ", ")))"
            )
        }
    }

    func has(_ name: String) -> Bool {
        if let value = object[name], value != .null { return true }
        return false
    }

    func string(_ name: String) throws(ConditionSpecError) -> String? {
        guard let value = object[name], value != .null else { return nil }
        guard case .string(let text) = value else { throw ConditionSpecError(field: field(name), message: "must be a string") }
        return text
    }

    func requiredString(_ name: String) throws(ConditionSpecError) -> String {
        guard let text = try string(name) else { throw ConditionSpecError(field: field(name), message: "is required") }
        return text
    }

    func number(_ name: String) throws(ConditionSpecError) -> Double? {
        guard let value = object[name], value != .null else { return nil }
        guard case .number(let number) = value, number.isFinite else {
            throw ConditionSpecError(field: field(name), message: "must be a finite number")
        }
        return number
    }

    func requiredNumber(_ name: String) throws(ConditionSpecError) -> Double {
        guard let number = try number(name) else { throw ConditionSpecError(field: field(name), message: "is required") }
        return number
    }

    /// A whole number within `range`.
    func integer(_ name: String, in range: ClosedRange<Int>) throws(ConditionSpecError) -> Int? {
        guard let number = try number(name) else { return nil }
        guard number == number.rounded(), number >= Double(range.lowerBound), number <= Double(range.upperBound) else {
            throw ConditionSpecError(
                field: field(name),
                message: "must be a whole number from \(range.lowerBound) to \(range.upperBound)"
            )
        }
        return Int(number)
    }

    func duration(_ name: String) throws(ConditionSpecError) -> ConditionDuration? {
        guard let text = try string(name) else { return nil }
        guard let duration = ConditionDuration(parsing: text) else {
            throw ConditionSpecError(
                field: field(name),
                message: "must be a duration such as 500ms, 30s, 5m, 1h or 2d"
            )
        }
        return duration
    }

    func key(_ name: String = "key") throws(ConditionSpecError) -> String {
        let key = try requiredString(name)
        guard !key.isEmpty, key.utf8.count <= TelemetryLimits.maximumKeyLength else {
            throw ConditionSpecError(
                field: field(name),
                message: "must be a telemetry key of 1 to \(TelemetryLimits.maximumKeyLength) bytes"
            )
        }
        return key
    }
}

extension Double {
    /// The number as a spec or a reason shows it: `80`, not `80.0`.
    var conditionText: String {
        if self == rounded(), abs(self) < 1e15 { return String(Int64(self)) }
        return String(self)
    }
}

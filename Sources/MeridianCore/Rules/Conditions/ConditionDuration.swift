/// A duration in a condition spec, written as a whole number and a unit: `500ms`, `30s`, `5m`,
/// `1h`, `2d` (`0s` for "at once"). Stored in milliseconds, the unit of sample timestamps.
public struct ConditionDuration: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The length in milliseconds (never negative).
    public var milliseconds: Int64

    /// A duration of `milliseconds` (negative values are taken as 0).
    public init(milliseconds: Int64) {
        self.milliseconds = max(0, milliseconds)
    }

    /// Zero: at once.
    public static let zero = ConditionDuration(milliseconds: 0)
    /// `count` seconds.
    public static func seconds(_ count: Int64) -> ConditionDuration { .init(milliseconds: count * 1000) }
    /// `count` minutes.
    public static func minutes(_ count: Int64) -> ConditionDuration { .init(milliseconds: count * 60_000) }
    /// `count` hours.
    public static func hours(_ count: Int64) -> ConditionDuration { .init(milliseconds: count * 3_600_000) }

    /// Parses `500ms`, `30s`, `5m`, `1h`, `2d`; nil for anything else (no sign, no fraction, no
    /// spaces, at most 10 years).
    public init?(parsing text: String) {
        let digits = text.prefix { $0.isASCII && $0.isNumber }
        let suffix = text.dropFirst(digits.count)
        guard !digits.isEmpty, digits.count <= 12, let count = Int64(digits),
            let unitMilliseconds = SourceText.milliseconds(perDurationUnit: String(suffix))
        else { return nil }
        let (product, overflow) = count.multipliedReportingOverflow(by: unitMilliseconds)
        guard !overflow, product <= 10 * 366 * 86_400_000 else { return nil }
        milliseconds = product
    }

    /// The shortest form in the largest unit that divides it: `5m`, `90s`, `500ms`, `0s`.
    public var description: String {
        if milliseconds == 0 { return "0s" }
        for unit in SourceText.durationUnits.reversed() where milliseconds % unit.milliseconds == 0 {
            return "\(milliseconds / unit.milliseconds)\(unit.suffix)"
        }
        return "\(milliseconds)ms"
    }

    public static func < (lhs: ConditionDuration, rhs: ConditionDuration) -> Bool {
        lhs.milliseconds < rhs.milliseconds
    }
}

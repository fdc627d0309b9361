import Foundation

extension FaultSpec {
    /// Parses one fault spec (`spikes:2%`, `clock-skew:5%:30s@thermostat`); throws a
    /// ``FaultSpecError`` naming the part that is wrong.
    public init(parsing text: String) throws(FaultSpecError) {
        let spec = text.trimmingCharacters(in: .whitespaces)
        guard !spec.isEmpty else {
            throw FaultSpecError(spec: text, part: "", "empty fault spec; expected e.g. spikes:2%")
        }

        var body = Substring(spec)
        var profile: SimulatedProfile?
        if let at = spec.firstIndex(of: "@") {
            let name = String(spec[spec.index(after: at)...])
            body = spec[..<at]
            guard let parsed = SimulatedProfile(name: name) else {
                let known = SimulatedProfile.allCases.map(\.rawValue).joined(separator: ", ")
                throw FaultSpecError(spec: spec, part: name, "unknown profile '\(name)'; expected one of \(known)")
            }
            profile = parsed
        }

        let parts = body.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        let kindName = parts[0]
        guard let kind = Kind(rawValue: kindName.lowercased()) else {
            let known = Kind.allCases.map(\.rawValue).joined(separator: ", ")
            throw FaultSpecError(spec: spec, part: kindName, "unknown fault '\(kindName)'; expected one of \(known)")
        }
        guard parts.count >= 2 else {
            throw FaultSpecError(
                spec: spec,
                part: kindName,
                "'\(kindName)' needs a percentage, e.g. \(Self.example(kind))"
            )
        }
        let percentText = parts[1]
        guard percentText.hasSuffix("%"), let percent = Double(percentText.dropLast()), percent.isFinite else {
            throw FaultSpecError(
                spec: spec,
                part: percentText,
                "percentage '\(percentText)' is not a number followed by %, e.g. \(Self.example(kind))"
            )
        }
        guard (0...100).contains(percent) else {
            throw FaultSpecError(
                spec: spec,
                part: percentText,
                "percentage '\(percentText)' is not between 0% and 100%"
            )
        }

        var duration: Int64?
        if kind.takesDuration {
            guard parts.count >= 3 else {
                throw FaultSpecError(
                    spec: spec,
                    part: kindName,
                    "'\(kindName)' needs a duration, e.g. \(Self.example(kind))"
                )
            }
            guard let milliseconds = Self.parseDuration(parts[2]) else {
                throw FaultSpecError(
                    spec: spec,
                    part: parts[2],
                    "duration '\(parts[2])' is not a positive number with a unit (ms, s, m, h), e.g. 200ms or 30s"
                )
            }
            duration = milliseconds
        } else if parts.count >= 3 {
            throw FaultSpecError(
                spec: spec,
                part: parts[2],
                "'\(kindName)' takes no duration, but '\(parts[2])' was given"
            )
        }
        let expectedParts = kind.takesDuration ? 3 : 2
        if parts.count > expectedParts {
            let extra = parts[expectedParts...].joined(separator: ":")
            throw FaultSpecError(
                spec: spec,
                part: extra,
                "unexpected '\(extra)' at the end; expected e.g. \(Self.example(kind))"
            )
        }
        self.init(kind: kind, percent: percent, durationMilliseconds: duration, profile: profile)
    }

    /// Parses a comma-separated list of fault specs (`stuck:5%,spikes:2%@wearable`); an empty
    /// string is no faults.
    public static func parseList(_ text: String) throws(FaultSpecError) -> [FaultSpec] {
        var faults: [FaultSpec] = []
        for item in text.split(separator: ",") where !item.trimmingCharacters(in: .whitespaces).isEmpty {
            faults.append(try FaultSpec(parsing: String(item)))
        }
        return faults
    }

    /// `200ms`, `30s`, `1.5s`, `2m`, `1h` in milliseconds; nil unless positive and at most a day.
    static func parseDuration(_ text: String) -> Int64? {
        let units: [(suffix: String, milliseconds: Double)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)]
        for unit in units where text.hasSuffix(unit.suffix) {
            guard let number = Double(text.dropLast(unit.suffix.count)), number.isFinite else { return nil }
            let milliseconds = number * unit.milliseconds
            guard milliseconds >= 1, milliseconds <= 86_400_000 else { return nil }
            return Int64(milliseconds.rounded())
        }
        return nil
    }

    static func example(_ kind: Kind) -> String {
        switch kind {
        case .clockSkew: "clock-skew:5%:30s"
        case .networkDelay: "network-delay:20%:200ms"
        default: "\(kind.rawValue):2%"
        }
    }
}

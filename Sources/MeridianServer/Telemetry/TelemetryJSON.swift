import MeridianCore

/// Telemetry answers written straight to JSON text (no `JSONEncoder`: it is slow for large
/// ranges and refuses NaN and infinities). Numbers are written in their shortest form that
/// reads back to the same `Double`; NaN, `Infinity` and `-Infinity`, which JSON cannot
/// express, are written as those strings.
struct TelemetryJSON {
    var text = ""

    init(capacity: Int = 256) {
        text.reserveCapacity(capacity)
    }

    mutating func string(_ value: String) {
        text.append("\"")
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": text.append("\\\"")
            case "\\": text.append("\\\\")
            case "\n": text.append("\\n")
            case "\r": text.append("\\r")
            case "\t": text.append("\\t")
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                text.append("\\u" + String(repeating: "0", count: 4 - hex.count) + hex)
            default: text.unicodeScalars.append(scalar)
            }
        }
        text.append("\"")
    }

    mutating func number(_ value: Double) {
        if value.isNaN {
            text.append("\"NaN\"")
        } else if value.isInfinite {
            text.append(value < 0 ? "\"-Infinity\"" : "\"Infinity\"")
        } else if value == value.rounded(), abs(value) < 1e15 {
            // Whole numbers without ".0" (and -0 as "-0").
            text.append(value == 0 && value.sign == .minus ? "-0" : String(Int64(value)))
        } else {
            text.append(value.description)
        }
    }

    mutating func value(_ value: TelemetryValue) {
        switch value {
        case .number(let number): self.number(number)
        case .bool(let bool): text.append(bool ? "true" : "false")
        case .string(let string): self.string(string)
        }
    }

    mutating func point(_ point: TelemetryPoint) {
        text.append("{\"ts\":")
        text.append(String(point.timestamp))
        text.append(",\"value\":")
        value(point.value)
        text.append("}")
    }

    /// `{"key": [{"ts":..,"value":..}, ...], ...}`
    mutating func series(_ series: [String: [TelemetryPoint]]) {
        text.append("{")
        for (index, key) in series.keys.sorted().enumerated() {
            if index > 0 { text.append(",") }
            string(key)
            text.append(":[")
            for (position, point) in series[key]!.enumerated() {
                if position > 0 { text.append(",") }
                self.point(point)
            }
            text.append("]")
        }
        text.append("}")
    }

    /// `{"key": {"ts":..,"value":..}, ...}`
    mutating func latest(_ latest: [String: TelemetryPoint]) {
        text.append("{")
        for (index, key) in latest.keys.sorted().enumerated() {
            if index > 0 { text.append(",") }
            string(key)
            text.append(":")
            point(latest[key]!)
        }
        text.append("}")
    }

    /// A CSV field: quoted when it holds a comma, quote or line break.
    static func csvField(_ text: String) -> String {
        guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}

extension String {
    fileprivate func replacingOccurrences(of target: String, with replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}

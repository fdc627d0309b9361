import MeridianCore

/// A device as a rule expression sees it, from plain dictionaries.
struct RuleExpressionTestContext: RuleExpressionContext {
    var values: [String: TelemetryValue] = [:]
    var reported: JSONValue = .emptyObject
    var desired: JSONValue = .emptyObject
    var windows: [RuleExpressionWindow: Double] = [:]

    func value(ofKey key: String) -> TelemetryValue? { values[key] }

    func twin(_ section: RuleTwinSection, path: [String]) -> JSONValue? {
        var node: JSONValue? = section == .reported ? reported : desired
        for segment in path { node = node?[segment] }
        return node
    }

    func window(_ function: RuleWindowFunction, key: String, durationMilliseconds: Int64) -> Double? {
        windows[RuleExpressionWindow(function: function, key: key, durationMilliseconds: durationMilliseconds)]
    }
}

/// A small, seeded, reproducible random generator (SplitMix64).
struct RuleExpressionRandom: RandomNumberGenerator {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// What the engine knows of one device for its rules: the latest value of each key, sliding
/// windows for the keys that window functions read, and the twin's documents. It is the
/// ``RuleExpressionContext`` expressions are evaluated in.
public struct RuleDeviceValues: RuleExpressionContext, Sendable {
    public var latest: [String: TelemetryValue] = [:]
    public var windows: [String: RuleSlidingWindow] = [:]
    public var reported: JSONValue?
    public var desired: JSONValue?

    public init() {}

    /// Applies a sample: the latest value, and the window of its key if one is kept.
    public mutating func apply(_ sample: TelemetrySample) {
        latest[sample.key] = sample.value
        if case .number(let number) = sample.value, windows[sample.key] != nil {
            windows[sample.key]?.append(timestamp: sample.timestamp, value: number)
        }
    }

    /// Keeps a window for `key` spanning at least `milliseconds`.
    public mutating func keepWindow(key: String, spanning milliseconds: Int64) {
        if let existing = windows[key], existing.spanMilliseconds >= milliseconds { return }
        windows[key] = RuleSlidingWindow(spanMilliseconds: milliseconds)
    }

    public func value(ofKey key: String) -> TelemetryValue? { latest[key] }

    public func twin(_ section: RuleTwinSection, path: [String]) -> JSONValue? {
        var node: JSONValue? = section == .reported ? reported : desired
        for component in path {
            guard case .object(let object)? = node else { return nil }
            node = object[component]
        }
        return node
    }

    public func window(_ function: RuleWindowFunction, key: String, durationMilliseconds: Int64) -> Double? {
        windows[key]?.value(function, durationMilliseconds: durationMilliseconds)
    }
}

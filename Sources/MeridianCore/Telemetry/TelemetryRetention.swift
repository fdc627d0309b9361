/// How long each tier of a device's telemetry is kept, in milliseconds; nil keeps it forever.
public struct TelemetryRetention: Sendable, Hashable, Codable {
    /// Raw samples.
    public var raw: Int64?
    /// 1-minute rollups.
    public var minute: Int64?
    /// 1-hour rollups.
    public var hour: Int64?

    public init(raw: Int64?, minute: Int64?, hour: Int64?) {
        self.raw = raw
        self.minute = minute
        self.hour = hour
    }

    /// Raw 30 days, 1-minute rollups 1 year, 1-hour rollups forever.
    public static let standard = TelemetryRetention(raw: 30 * day, minute: 365 * day, hour: nil)

    /// One day in milliseconds.
    public static let day: Int64 = 86_400_000

    /// A problem with the values (negative, or a finer tier kept longer than a coarser one is
    /// fine; zero is not), naming the field; nil when valid.
    public var problem: (field: String, reason: String)? {
        for (field, value) in [("raw", raw), ("minute", minute), ("hour", hour)] {
            if let value, value < 60_000 { return (field, "must be at least one minute (in milliseconds), or null for forever") }
        }
        return nil
    }
}

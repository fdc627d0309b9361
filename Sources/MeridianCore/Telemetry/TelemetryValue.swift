/// One telemetry value. Every series is typed by the first kind of value it receives: numbers
/// (JSON numbers, stored as `Double`, so integers up to 2^53 are exact), booleans or strings.
public enum TelemetryValue: Sendable, Hashable {
    case number(Double)
    case bool(Bool)
    case string(String)

    /// The series type this value belongs to.
    public var type: TelemetryValueType {
        switch self {
        case .number: .number
        case .bool: .bool
        case .string: .string
        }
    }

    /// Bit-exact equality (NaN equals NaN with the same bits, -0 differs from +0): what
    /// "lossless" means for the store.
    public func isIdentical(to other: TelemetryValue) -> Bool {
        switch (self, other) {
        case (.number(let a), .number(let b)): a.bitPattern == b.bitPattern
        case (.bool(let a), .bool(let b)): a == b
        case (.string(let a), .string(let b)): a == b
        default: false
        }
    }
}

/// The type of a series.
public enum TelemetryValueType: UInt8, Sendable, Hashable, Codable, CaseIterable {
    case number = 1
    case bool = 2
    case string = 3

    /// The name used in the API (`number`, `bool`, `string`).
    public var name: String {
        switch self {
        case .number: "number"
        case .bool: "bool"
        case .string: "string"
        }
    }
}

/// One sample of one key: what a device reported at a time.
public struct TelemetrySample: Sendable, Hashable {
    /// The key (`temp`), at most ``TelemetryLimits/maximumKeyLength`` UTF-8 bytes.
    public var key: String
    /// Milliseconds since 1970-01-01 UTC: the device's `ts`, or when the platform received it.
    public var timestamp: Int64
    public var value: TelemetryValue

    public init(key: String, timestamp: Int64, value: TelemetryValue) {
        self.key = key
        self.timestamp = timestamp
        self.value = value
    }
}

/// Limits on what one telemetry message may carry; larger input is refused with a clear reason.
public enum TelemetryLimits {
    /// Longest key, in UTF-8 bytes.
    public static let maximumKeyLength = 128
    /// Longest string value, in UTF-8 bytes.
    public static let maximumStringLength = 4096
    /// Most samples in one message (all keys of all entries of an array counted).
    public static let maximumSamplesPerMessage = 10_000
}

import MeridianCore

/// How a chunk's values are encoded; the raw value is the encoding id byte of the chunk format.
public enum TimeSeriesValueEncoding: UInt8, Sendable, Hashable, CaseIterable {
    /// Numbers as decimal-scaled integers, bit-packed in blocks, with raw exceptions (ALP-style).
    case decimal = 1
    /// Numbers as Gorilla's XOR of consecutive values.
    case xor = 2
    /// Booleans as alternating runs.
    case boolRuns = 3
    /// Booleans as one bit each.
    case boolBitmap = 4
    /// Strings as a dictionary and runs of indexes.
    case stringDictionaryRuns = 5
    /// Strings as a dictionary and bit-packed indexes.
    case stringDictionaryPacked = 6

    /// The value type this encoding is for.
    public var valueType: TelemetryValueType {
        switch self {
        case .decimal, .xor: .number
        case .boolRuns, .boolBitmap: .bool
        case .stringDictionaryRuns, .stringDictionaryPacked: .string
        }
    }
}

import MeridianCore

/// The values of one chunk of one series, all of one type, in timestamp order.
///
/// Equality is bit-exact, which is what "lossless" means for the store: numbers compare by their bit
/// pattern (NaN equals NaN with the same payload, -0 differs from +0) and strings by their UTF-8 bytes
/// (a precomposed "é" differs from "e" followed by a combining accent, although Swift's `==` on `String`
/// calls them equal).
public enum TimeSeriesColumn: Sendable, Equatable {
    /// Number samples.
    case numbers([Double])
    /// Boolean samples.
    case bools([Bool])
    /// String samples.
    case strings([String])

    /// How many values the column holds.
    public var count: Int {
        switch self {
        case .numbers(let values): values.count
        case .bools(let values): values.count
        case .strings(let values): values.count
        }
    }

    /// The series type of the values.
    public var valueType: TelemetryValueType {
        switch self {
        case .numbers: .number
        case .bools: .bool
        case .strings: .string
        }
    }

    /// The value at `index` as a ``TelemetryValue``.
    public subscript(index: Int) -> TelemetryValue {
        switch self {
        case .numbers(let values): .number(values[index])
        case .bools(let values): .bool(values[index])
        case .strings(let values): .string(values[index])
        }
    }

    /// Bit-exact equality: same case, same count, and every value identical bit for bit.
    public static func == (lhs: TimeSeriesColumn, rhs: TimeSeriesColumn) -> Bool {
        switch (lhs, rhs) {
        case (.numbers(let a), .numbers(let b)):
            guard a.count == b.count else { return false }
            return a.withUnsafeBufferPointer { a in
                b.withUnsafeBufferPointer { b in
                    for index in 0..<a.count where a[index].bitPattern != b[index].bitPattern { return false }
                    return true
                }
            }
        case (.bools(let a), .bools(let b)):
            return a == b
        case (.strings(let a), .strings(let b)):
            guard a.count == b.count else { return false }
            for index in 0..<a.count where !utf8BytesEqual(a[index], b[index]) { return false }
            return true
        default:
            return false
        }
    }
}

/// Whether two strings have the same UTF-8 bytes (Swift's `==` also equates canonically equivalent strings).
func utf8BytesEqual(_ a: String, _ b: String) -> Bool {
    let a = a.utf8
    let b = b.utf8
    guard a.count == b.count else { return false }
    let result = a.withContiguousStorageIfAvailable { a in
        b.withContiguousStorageIfAvailable { b in
            guard let pa = a.baseAddress, let pb = b.baseAddress else { return true }
            let count = a.count
            let rawA = UnsafeRawPointer(pa)
            let rawB = UnsafeRawPointer(pb)
            var offset = 0
            while offset &+ 8 <= count {
                if rawA.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
                    != rawB.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
                {
                    return false
                }
                offset &+= 8
            }
            while offset < count {
                if pa[offset] != pb[offset] { return false }
                offset &+= 1
            }
            return true
        }
    }
    // Bridged (non-contiguous) strings: compare byte by byte.
    return (result ?? nil) ?? a.elementsEqual(b)
}

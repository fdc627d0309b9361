// PLACEHOLDER (integration): replaced by the codec branch. Uncompressed, same API.

/// The values of one chunk of one series.
public enum TimeSeriesColumn: Sendable, Equatable {
    case numbers([Double])
    case bools([Bool])
    case strings([String])

    public static func == (lhs: TimeSeriesColumn, rhs: TimeSeriesColumn) -> Bool {
        switch (lhs, rhs) {
        case (.numbers(let a), .numbers(let b)): a.map(\.bitPattern) == b.map(\.bitPattern)
        case (.bools(let a), .bools(let b)): a == b
        case (.strings(let a), .strings(let b)): a == b
        default: false
        }
    }
}

public struct TimeSeriesCodecError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

public struct TimeSeriesChunkHeader: Sendable {
    public var count: Int
    public var firstTimestamp: Int64
    public var lastTimestamp: Int64
}

public enum TimeSeriesChunkCodec {
    public static func encode(timestamps: [Int64], values: TimeSeriesColumn) -> [UInt8] {
        var out: [UInt8] = []
        func put(_ v: UInt64) { for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
        switch values {
        case .numbers: out.append(1)
        case .bools: out.append(2)
        case .strings: out.append(3)
        }
        put(UInt64(timestamps.count))
        for t in timestamps { put(UInt64(bitPattern: t)) }
        switch values {
        case .numbers(let v): for x in v { put(x.bitPattern) }
        case .bools(let v): for x in v { out.append(x ? 1 : 0) }
        case .strings(let v):
            for s in v {
                let u = Array(s.utf8)
                put(UInt64(u.count))
                out.append(contentsOf: u)
            }
        }
        return out
    }

    public static func decode(_ bytes: [UInt8]) throws -> (timestamps: [Int64], values: TimeSeriesColumn) {
        var i = 0
        func get() throws -> UInt64 {
            guard i + 8 <= bytes.count else { throw TimeSeriesCodecError(message: "truncated") }
            var v: UInt64 = 0
            for k in 0..<8 { v |= UInt64(bytes[i + k]) << (8 * UInt64(k)) }
            i += 8
            return v
        }
        guard !bytes.isEmpty else { throw TimeSeriesCodecError(message: "empty") }
        let type = bytes[0]
        i = 1
        let count = Int(try get())
        var ts: [Int64] = []
        for _ in 0..<count { ts.append(Int64(bitPattern: try get())) }
        switch type {
        case 1:
            var v: [Double] = []
            for _ in 0..<count { v.append(Double(bitPattern: try get())) }
            return (ts, .numbers(v))
        case 2:
            var v: [Bool] = []
            for _ in 0..<count {
                guard i < bytes.count else { throw TimeSeriesCodecError(message: "truncated") }
                v.append(bytes[i] != 0)
                i += 1
            }
            return (ts, .bools(v))
        default:
            var v: [String] = []
            for _ in 0..<count {
                let n = Int(try get())
                guard i + n <= bytes.count else { throw TimeSeriesCodecError(message: "truncated") }
                v.append(String(decoding: bytes[i..<i + n], as: UTF8.self))
                i += n
            }
            return (ts, .strings(v))
        }
    }

    public static func header(_ bytes: [UInt8]) throws -> TimeSeriesChunkHeader {
        let (ts, _) = try decode(bytes)
        return TimeSeriesChunkHeader(count: ts.count, firstTimestamp: ts.first ?? 0, lastTimestamp: ts.last ?? 0)
    }
}

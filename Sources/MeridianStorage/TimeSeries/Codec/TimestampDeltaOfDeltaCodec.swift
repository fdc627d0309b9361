/// Timestamps as delta-of-delta with variable-length buckets, after Facebook's Gorilla paper (Pelkonen et
/// al., VLDB 2015), with a 64-bit bucket so that any `Int64` sequence round-trips.
///
/// The first timestamp is in the chunk header and is not repeated here. For each following timestamp, with
/// `delta = t[i] - t[i-1]` and the previous delta starting at 0 (all in wrapping 64-bit arithmetic, so even
/// a gap from `Int64.min` to `Int64.max` is exact), `zigzag(delta - previousDelta)` is written as:
///
/// | prefix  | payload | covers zigzag values |
/// |---------|---------|----------------------|
/// | `0`     | –       | 0 (same interval: regular data costs 1 bit per sample) |
/// | `10`    | 7 bits  | < 2^7 (±64 ms of jitter) |
/// | `110`   | 9 bits  | < 2^9 |
/// | `1110`  | 12 bits | < 2^12 |
/// | `11110` | 32 bits | < 2^32 |
/// | `11111` | 64 bits | anything |
///
/// Bits are written most significant first; the section is zero-padded to a whole byte.
enum TimestampDeltaOfDeltaCodec {
    /// The encoding id in the chunk header.
    static let id: UInt8 = 1

    /// Appends the encoding of `timestamps[1...]` to `writer`.
    static func encode(_ timestamps: UnsafeBufferPointer<Int64>, into writer: inout ChunkBitWriter) {
        guard timestamps.count > 1 else { return }
        var previous = UInt64(bitPattern: timestamps[0])
        var previousDelta: UInt64 = 0
        for index in 1..<timestamps.count {
            let current = UInt64(bitPattern: timestamps[index])
            let delta = current &- previous
            let zigzag = ZigZag.encode(Int64(bitPattern: delta &- previousDelta))
            previous = current
            previousDelta = delta
            if zigzag == 0 {
                writer.write(0, bits: 1)
            } else if zigzag < 1 << 7 {
                writer.write(0b10 << 7 | zigzag, bits: 9)
            } else if zigzag < 1 << 9 {
                writer.write(0b110 << 9 | zigzag, bits: 12)
            } else if zigzag < 1 << 12 {
                writer.write(0b1110 << 12 | zigzag, bits: 16)
            } else if zigzag < 1 << 32 {
                writer.write(0b11110 << 32 | zigzag, bits: 37)
            } else {
                writer.write(0b11111, bits: 5)
                writer.write(zigzag, bits: 64)
            }
        }
    }

    /// Decodes `count` timestamps starting with `first` from `section` into `output` (room for `count`).
    static func decode(
        _ section: UnsafeRawBufferPointer,
        first: Int64,
        count: Int,
        into output: UnsafeMutableBufferPointer<Int64>
    ) throws(TimeSeriesCodecError) {
        guard count > 0, let out = output.baseAddress else { return }
        var reader = ChunkBitReader(section)
        var current = UInt64(bitPattern: first)
        var delta: UInt64 = 0
        out[0] = first
        var index = 1
        while index < count {
            let word = reader.peek()
            if word & (1 << 63) == 0 {
                // A run of zero delta-of-deltas: as many samples as leading zero bits (those bits are valid).
                var run = min(word.leadingZeroBitCount, 57, count &- index, reader.remainingBits)
                if run == 0 { throw ChunkBitReader.pastEnd }
                try reader.skip(run)
                while run > 0 {
                    current &+= delta
                    out[index] = Int64(bitPattern: current)
                    index &+= 1
                    run &-= 1
                }
                continue
            }
            let ones = min((~word).leadingZeroBitCount, 5)
            let zigzag: UInt64
            switch ones {
            case 1:
                try reader.skip(9)
                zigzag = (word &>> (64 - 9)) & 0x7F
            case 2:
                try reader.skip(12)
                zigzag = (word &>> (64 - 12)) & 0x1FF
            case 3:
                try reader.skip(16)
                zigzag = (word &>> (64 - 16)) & 0xFFF
            case 4:
                try reader.skip(37)
                zigzag = (word &>> (64 - 37)) & 0xFFFF_FFFF
            default:
                try reader.skip(5)
                zigzag = try reader.read(64)
            }
            delta &+= UInt64(bitPattern: ZigZag.decode(zigzag))
            current &+= delta
            out[index] = Int64(bitPattern: current)
            index &+= 1
        }
    }
}

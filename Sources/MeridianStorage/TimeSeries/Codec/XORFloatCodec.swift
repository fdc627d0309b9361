/// Floats as the XOR of each value with the previous one, as in Facebook's Gorilla paper (Pelkonen et al.,
/// VLDB 2015): the fallback for values without a short decimal form. Any bit pattern round-trips.
///
/// The first value is written as its 64 raw bits. Each following value's XOR with the previous one is:
/// - `0`: zero (the value repeats);
/// - `10` + the meaningful bits inside the previous window (when the XOR's leading and trailing zero counts are
///   at least the previous window's);
/// - `11` + 5 bits leading zero count (capped at 31) + 6 bits (meaningful bit count - 1) + the meaningful bits:
///   a new window.
///
/// Bits are written most significant first; the section is zero-padded to a whole byte.
enum XORFloatCodec {
    /// The encoding id in the chunk header.
    static let id: UInt8 = 2

    /// Appends the section for `values` (at least one) to `writer`; stops early and returns `false` once the
    /// section would exceed `budget` bytes (the writer then holds a partial section to discard).
    @discardableResult
    static func encode(
        _ values: UnsafeBufferPointer<Double>,
        into writer: inout ChunkBitWriter,
        budget: Int = .max
    ) -> Bool {
        guard let first = values.first else { return true }
        let budgetBits = budget >= Int.max / 16 ? Int.max : writer.bitCount &+ budget &* 8
        var previous = first.bitPattern
        writer.write(previous, bits: 64)
        var windowLeading = 0
        var windowTrailing = 0
        var hasWindow = false
        for index in values.indices.dropFirst() {
            if index & 63 == 0 && writer.bitCount > budgetBits { return false }
            let bits = values[index].bitPattern
            let xor = bits ^ previous
            previous = bits
            if xor == 0 {
                writer.write(0, bits: 1)
                continue
            }
            let leading = min(xor.leadingZeroBitCount, 31)
            let trailing = xor.trailingZeroBitCount
            if hasWindow && leading >= windowLeading && trailing >= windowTrailing {
                let meaningful = 64 &- windowLeading &- windowTrailing
                writer.write(0b10, bits: 2)
                writer.write(xor &>> UInt64(windowTrailing), bits: meaningful)
            } else {
                let meaningful = 64 &- leading &- trailing
                writer.write(0b11 << 11 | UInt64(leading) << 6 | UInt64(meaningful &- 1), bits: 13)
                writer.write(xor &>> UInt64(trailing), bits: meaningful)
                windowLeading = leading
                windowTrailing = trailing
                hasWindow = true
            }
        }
        writer.alignToByte()
        return writer.bitCount <= budgetBits
    }

    /// Decodes `output.count` values from `section`.
    static func decode(
        _ section: UnsafeRawBufferPointer,
        into output: UnsafeMutableBufferPointer<Double>
    ) throws(TimeSeriesCodecError) {
        let count = output.count
        guard count > 0, let out = output.baseAddress else { return }
        var reader = ChunkBitReader(section)
        var previous = try reader.read(64)
        out[0] = Double(bitPattern: previous)
        var windowTrailing = 0
        var windowWidth = 0
        var index = 1
        while index < count {
            let word = reader.peek()
            if word & (1 << 63) == 0 {
                // A run of repeated values: as many as leading zero bits (those bits are valid).
                var run = min(word.leadingZeroBitCount, 57, count &- index, reader.remainingBits)
                if run == 0 { throw ChunkBitReader.pastEnd }
                try reader.skip(run)
                let value = Double(bitPattern: previous)
                while run > 0 {
                    out[index] = value
                    index &+= 1
                    run &-= 1
                }
                continue
            }
            if word & (1 << 62) == 0 {
                guard windowWidth > 0 else {
                    throw TimeSeriesCodecError(.malformed, "XOR value reuses a window before any was set")
                }
                try reader.skip(2)
            } else {
                try reader.skip(13)
                let leading = Int((word &>> 57) & 0x1F)
                let width = Int((word &>> 51) & 0x3F) &+ 1
                guard leading &+ width <= 64 else {
                    throw TimeSeriesCodecError(.malformed, "XOR window of \(leading) + \(width) bits exceeds 64")
                }
                windowWidth = width
                windowTrailing = 64 &- leading &- width
            }
            let meaningful = try reader.read(windowWidth)
            previous ^= meaningful &<< UInt64(windowTrailing)
            out[index] = Double(bitPattern: previous)
            index &+= 1
        }
    }
}

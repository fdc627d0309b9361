/// Timestamps as their distance from a regular grid, bit-packed in blocks: the alternative to delta-of-delta
/// for timestamps with jitter (arrival times stamped by the platform), where it needs about half the bits,
/// and for perfectly regular ones, where it needs a few bytes per 128 samples instead of 1 bit per sample.
///
/// The grid starts at the header's first timestamp with the chunk's mean interval
/// `step = (last - first) / (count - 1)`. Section layout:
/// ```
/// varint   step (unsigned)
/// the residuals t[i] - first - i × step (IntegerBlockPacker: blocks of 128, frame-of-reference or delta
///          frame-of-reference, whichever is narrower)
/// ```
/// Wrapping 64-bit arithmetic throughout, so any `Int64` sequence round-trips.
enum TimestampGridCodec {
    /// The encoding id in the chunk header.
    static let id: UInt8 = 2

    /// Appends the encoding of `timestamps` (at least one) to `writer`.
    static func encode(_ timestamps: UnsafeBufferPointer<Int64>, into writer: inout ChunkBitWriter) {
        let count = timestamps.count
        guard count > 1 else { return }
        let first = timestamps[0]
        let step = UInt64(bitPattern: timestamps[count &- 1] &- first) / UInt64(count &- 1)
        writer.writeVarint(step)
        let residuals = [Int64](unsafeUninitializedCapacity: count) { residuals, initialized in
            var grid = UInt64(bitPattern: first)
            for index in 0..<count {
                residuals[index] = Int64(bitPattern: UInt64(bitPattern: timestamps[index]) &- grid)
                grid &+= step
            }
            initialized = count
        }
        residuals.withUnsafeBufferPointer { IntegerBlockPacker.encode($0, into: &writer) }
    }

    /// Decodes `count` timestamps starting with `first` from `section` into `output` (room for `count`).
    static func decode(
        _ section: UnsafeRawBufferPointer,
        first: Int64,
        count: Int,
        into output: UnsafeMutableBufferPointer<Int64>
    ) throws(TimeSeriesCodecError) {
        guard count > 0, let out = output.baseAddress else { return }
        guard count > 1 else {
            out[0] = first
            return
        }
        var reader = ChunkBitReader(section)
        let step = try reader.readVarint()
        try IntegerBlockPacker.decode(&reader, into: UnsafeMutableBufferPointer(start: out, count: count))
        guard out[0] == 0 else {
            throw TimeSeriesCodecError(.malformed, "the first grid residual is \(out[0]), not 0")
        }
        var grid = UInt64(bitPattern: first)
        for index in 0..<count {
            out[index] = Int64(bitPattern: UInt64(bitPattern: out[index]) &+ grid)
            grid &+= step
        }
    }
}

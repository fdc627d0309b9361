/// Bit-packs a sequence of `Int64` in blocks of 128, each block as frame-of-reference over the integers
/// themselves (suits noise around a level) or over their differences (suits trends and ramps), whichever
/// needs fewer bits (differences on a tie: their reference is usually the shorter varint). Exact for any
/// `Int64` sequence (wrapping arithmetic throughout).
///
/// Layout (bits most significant first, varints LEB128 on byte boundaries):
/// ```
/// zigzag varint  anchor: the integer before the first (the first integer itself, so its difference is 0)
/// per block of 128 integers (the last may be shorter):
///   uint8        mode << 7 | width    mode 0: items are the integers; mode 1: their differences; width 0...64
///   zigzag varint reference           the smallest item
///   width bits per item               item - reference, then padding to a byte
/// ```
/// A block of equal items (a constant, or a constant slope) costs 2–3 bytes.
enum IntegerBlockPacker {
    /// Integers per block.
    static let blockSize = 128

    /// Appends `integers` (at least one) to `writer`.
    static func encode(_ integers: UnsafeBufferPointer<Int64>, into writer: inout ChunkBitWriter) {
        let count = integers.count
        guard count > 0 else { return }
        var previous = integers[0]
        writer.writeSignedVarint(previous)
        var start = 0
        while start < count {
            let end = min(start &+ blockSize, count)
            var rawMin = Int64.max
            var rawMax = Int64.min
            var deltaMin = Int64.max
            var deltaMax = Int64.min
            var last = previous
            for index in start..<end {
                let integer = integers[index]
                let delta = integer &- last
                last = integer
                rawMin = min(rawMin, integer)
                rawMax = max(rawMax, integer)
                deltaMin = min(deltaMin, delta)
                deltaMax = max(deltaMax, delta)
            }
            let rawWidth = 64 &- UInt64(bitPattern: rawMax &- rawMin).leadingZeroBitCount
            let deltaWidth = 64 &- UInt64(bitPattern: deltaMax &- deltaMin).leadingZeroBitCount
            if deltaWidth <= rawWidth {
                writer.write(UInt64(0x80 | deltaWidth), bits: 8)
                writer.writeSignedVarint(deltaMin)
                if deltaWidth > 0 {
                    for index in start..<end {
                        let delta = integers[index] &- previous
                        previous = integers[index]
                        writer.write(UInt64(bitPattern: delta &- deltaMin), bits: deltaWidth)
                    }
                }
            } else {
                writer.write(UInt64(rawWidth), bits: 8)
                writer.writeSignedVarint(rawMin)
                if rawWidth > 0 {
                    for index in start..<end {
                        writer.write(UInt64(bitPattern: integers[index] &- rawMin), bits: rawWidth)
                    }
                }
            }
            previous = last
            start = end
        }
        writer.alignToByte()
    }

    /// Reads `output.count` integers from `reader` into `output`.
    static func decode(
        _ reader: inout ChunkBitReader,
        into output: UnsafeMutableBufferPointer<Int64>
    ) throws(TimeSeriesCodecError) {
        let count = output.count
        guard count > 0, let out = output.baseAddress else { return }
        var previous = try reader.readSignedVarint()
        var start = 0
        while start < count {
            let end = min(start &+ blockSize, count)
            let header = try reader.read(8)
            let width = Int(header & 0x7F)
            guard width <= 64 else { throw TimeSeriesCodecError(.malformed, "block width \(width) exceeds 64") }
            let reference = try reader.readSignedVarint()
            guard (end &- start) &* width <= reader.remainingBits else { throw ChunkBitReader.pastEnd }
            if header & 0x80 == 0 {
                if width == 0 {
                    (out + start).initialize(repeating: reference, count: end &- start)
                } else {
                    for index in start..<end {
                        out[index] = reference &+ Int64(bitPattern: reader.readUnchecked(width))
                    }
                }
                previous = out[end &- 1]
            } else {
                for index in start..<end {
                    previous = previous &+ reference &+ Int64(bitPattern: reader.readUnchecked(width))
                    out[index] = previous
                }
            }
            start = end
        }
        reader.alignToByte()
    }
}

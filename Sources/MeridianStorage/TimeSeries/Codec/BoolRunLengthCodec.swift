/// Booleans as runs (a state that rarely changes costs a few bytes per chunk), or as a bitmap when they change
/// so often that runs would be larger.
///
/// Runs section (encoding id 3): `uint8` the first value (0 or 1), then for each run a varint
/// `length - 1`; runs alternate between false and true and add up to the count.
/// Bitmap section (encoding id 4): one bit per value (1 = true), most significant first, zero-padded.
enum BoolRunLengthCodec {
    /// The encoding id of runs.
    static let runsID: UInt8 = 3
    /// The encoding id of a bitmap.
    static let bitmapID: UInt8 = 4

    /// Appends the smaller section for `values` (at least one) to `writer`; returns its encoding id.
    static func encode(_ values: UnsafeBufferPointer<Bool>, into writer: inout ChunkBitWriter) -> UInt8 {
        guard let first = values.first else { return runsID }
        // Size of the runs in bytes, without building them.
        var runsBytes = 1
        var runStart = 0
        for index in 1..<values.count where values[index] != values[index &- 1] {
            runsBytes &+= varintSize(UInt64(index &- runStart &- 1))
            runStart = index
        }
        runsBytes &+= varintSize(UInt64(values.count &- runStart &- 1))
        if runsBytes > (values.count &+ 7) / 8 {
            for value in values { writer.write(bit: value) }
            writer.alignToByte()
            return bitmapID
        }
        writer.write(first ? 1 : 0, bits: 8)
        runStart = 0
        for index in 1..<values.count where values[index] != values[index &- 1] {
            writer.writeVarint(UInt64(index &- runStart &- 1))
            runStart = index
        }
        writer.writeVarint(UInt64(values.count &- runStart &- 1))
        return runsID
    }

    /// Decodes `output.count` values from a section of encoding `id`.
    static func decode(
        _ section: UnsafeRawBufferPointer,
        id: UInt8,
        into output: UnsafeMutableBufferPointer<Bool>
    ) throws(TimeSeriesCodecError) {
        let count = output.count
        guard let base = output.baseAddress else { return }
        var reader = ChunkBitReader(section)
        if id == bitmapID {
            guard count <= reader.remainingBits else { throw ChunkBitReader.pastEnd }
            for index in 0..<count { output[index] = reader.readUnchecked(1) != 0 }
            return
        }
        let firstByte = try reader.read(8)
        guard firstByte <= 1 else { throw TimeSeriesCodecError(.malformed, "first boolean is \(firstByte)") }
        var value = firstByte == 1
        var index = 0
        while index < count {
            let length = try reader.readCount(atMost: count &- index &- 1, "boolean run length") &+ 1
            (base + index).initialize(repeating: value, count: length)
            index &+= length
            value.toggle()
        }
    }

    /// Bytes in the LEB128 varint of `value`.
    static func varintSize(_ value: UInt64) -> Int {
        (64 &- (value | 1).leadingZeroBitCount &+ 6) / 7
    }
}

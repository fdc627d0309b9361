/// Reads bits, most significant first, from a byte buffer that it does not own. Every read is bounds-checked
/// and throws ``TimeSeriesCodecError/malformed`` past the end (a section is shorter than its contents
/// claim); nothing reads outside the buffer.
struct ChunkBitReader {
    private let base: UnsafeRawPointer?
    private let byteCount: Int
    /// The buffer's size in bits.
    let bitCount: Int
    /// The next bit to read.
    private(set) var bitPosition = 0

    /// A reader over `buffer`, which must stay valid while the reader is used.
    init(_ buffer: UnsafeRawBufferPointer) {
        base = buffer.baseAddress
        byteCount = buffer.count
        bitCount = buffer.count &* 8
    }

    /// Bits left to read.
    var remainingBits: Int { bitCount &- bitPosition }

    /// The next 64 bits, left-aligned, zero past the end of the buffer; only the first 57 are guaranteed to be
    /// the next bits (the rest may be zero). Does not move.
    @inline(__always)
    func peek() -> UInt64 {
        let byteIndex = bitPosition &>> 3
        let word: UInt64
        if let base, byteIndex &+ 8 <= byteCount {
            word = UInt64(bigEndian: base.loadUnaligned(fromByteOffset: byteIndex, as: UInt64.self))
        } else {
            word = slowLoad(byteIndex)
        }
        return word &<< UInt64(bitPosition & 7)
    }

    private func slowLoad(_ byteIndex: Int) -> UInt64 {
        guard let base else { return 0 }
        var word: UInt64 = 0
        for offset in 0..<8 {
            word &<<= 8
            let index = byteIndex &+ offset
            if index < byteCount { word |= UInt64(base.load(fromByteOffset: index, as: UInt8.self)) }
        }
        return word
    }

    /// Moves past `count` bits already examined with ``peek()``.
    @inline(__always)
    mutating func skip(_ count: Int) throws(TimeSeriesCodecError) {
        guard count <= bitCount &- bitPosition else { throw Self.pastEnd }
        bitPosition &+= count
    }

    /// Reads `count` bits (0...64) as an unsigned integer.
    @inline(__always)
    mutating func read(_ count: Int) throws(TimeSeriesCodecError) -> UInt64 {
        guard count <= bitCount &- bitPosition else { throw Self.pastEnd }
        return readUnchecked(count)
    }

    /// Reads `count` bits (0...64) that the caller has checked are there (`count <= remainingBits`).
    @inline(__always)
    mutating func readUnchecked(_ count: Int) -> UInt64 {
        if count == 0 { return 0 }
        if count <= 56 {
            let value = peek() &>> UInt64(64 &- count)
            bitPosition &+= count
            return value
        }
        let high = peek() &>> 32
        bitPosition &+= 32
        let lowCount = count &- 32
        let low = peek() &>> UInt64(64 &- lowCount)
        bitPosition &+= lowCount
        return (high &<< UInt64(lowCount)) | low
    }

    /// Reads one bit.
    @inline(__always)
    mutating func readBit() throws(TimeSeriesCodecError) -> Bool {
        try read(1) != 0
    }

    /// Skips to the next byte boundary.
    mutating func alignToByte() {
        bitPosition = min(bitCount, (bitPosition &+ 7) & ~7)
    }

    /// The byte offset of the next read (after ``alignToByte()``).
    var byteOffset: Int { bitPosition &>> 3 }

    /// Reads an unsigned LEB128 varint (aligned to a byte first); at most 10 bytes, no overflow.
    mutating func readVarint() throws(TimeSeriesCodecError) -> UInt64 {
        alignToByte()
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let byte = try read(8)
            if shift == 63 && byte > 1 { throw TimeSeriesCodecError(.malformed, "varint overflows 64 bits") }
            result |= (byte & 0x7F) &<< shift
            if byte < 0x80 { return result }
            shift += 7
        }
    }

    /// Reads a varint that must be at most `limit` (a count or a length), as an `Int`.
    mutating func readCount(atMost limit: Int, _ what: StaticString) throws(TimeSeriesCodecError) -> Int {
        let value = try readVarint()
        guard value <= UInt64(limit) else {
            throw TimeSeriesCodecError(.malformed, "\(what) \(value) exceeds \(limit)")
        }
        return Int(value)
    }

    /// Reads a zigzag varint.
    mutating func readSignedVarint() throws(TimeSeriesCodecError) -> Int64 {
        ZigZag.decode(try readVarint())
    }

    /// Reads 8 little-endian bytes (aligned to a byte first).
    mutating func readLittleEndian() throws(TimeSeriesCodecError) -> UInt64 {
        alignToByte()
        return try read(64).byteSwapped
    }

    /// The next `count` bytes (aligned to a byte first), without copying.
    mutating func readBytes(_ count: Int) throws(TimeSeriesCodecError) -> UnsafeRawBufferPointer {
        alignToByte()
        guard count >= 0, count <= (bitCount &- bitPosition) / 8 else { throw Self.pastEnd }
        let start = bitPosition &>> 3
        bitPosition &+= count &* 8
        guard let base else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: base + start, count: count)
    }

    static let pastEnd = TimeSeriesCodecError(.malformed, "a section ends before its data does")
}

/// Appends bits, most significant first, to a byte array through a 64-bit accumulator: one array append per
/// 8 bytes written, whatever the field widths.
struct ChunkBitWriter {
    /// The finished bytes (call ``finish()`` first to flush the accumulator).
    private(set) var bytes: [UInt8]
    /// Pending bits, right-aligned: the low `pendingBits` bits.
    private var accumulator: UInt64 = 0
    private var pendingBits = 0

    init(reservingBytes capacity: Int = 0) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// A writer that appends to `bytes` (whole bytes already written), with room for `capacity` bytes in all.
    init(appendingTo bytes: [UInt8], reservingBytes capacity: Int) {
        self.bytes = bytes
        self.bytes.reserveCapacity(capacity)
    }

    /// Whole bytes written so far (call ``alignToByte()`` first to count every bit).
    var byteCount: Int { bytes.count &+ pendingBits / 8 }

    /// Drops everything written after the first `count` bytes; the writer must be aligned to a byte.
    mutating func truncate(toByteCount count: Int) {
        alignToByte()
        flushWholeBytes()
        bytes.removeSubrange(count...)
    }

    /// Appends the output of another, finished, writer (aligned to a byte first).
    mutating func append(_ other: [UInt8]) {
        write(bytes: other)
    }

    /// Bits written so far, flushed or pending.
    var bitCount: Int { bytes.count &* 8 &+ pendingBits }

    /// Writes the low `count` bits of `value` (`count` in 0...64; higher bits of `value` must be zero).
    @inline(__always)
    mutating func write(_ value: UInt64, bits count: Int) {
        let free = 64 &- pendingBits
        if count < free {
            accumulator = (accumulator &<< UInt64(count)) | value
            pendingBits &+= count
        } else {
            // Fill the accumulator to 64 bits, flush it, keep the rest.
            let rest = count &- free
            let word = free == 64 ? value >> UInt64(rest) : (accumulator &<< UInt64(free)) | (value >> UInt64(rest))
            flush(word)
            accumulator = rest == 0 ? 0 : value & ((1 &<< UInt64(rest)) &- 1)
            pendingBits = rest
        }
    }

    /// Writes one bit.
    @inline(__always)
    mutating func write(bit: Bool) {
        write(bit ? 1 : 0, bits: 1)
    }

    /// Pads with zero bits to the next byte boundary.
    mutating func alignToByte() {
        let padding = (8 &- pendingBits & 7) & 7
        if padding > 0 { write(0, bits: padding) }
    }

    /// Writes an unsigned LEB128 varint (aligned to a byte first).
    mutating func writeVarint(_ value: UInt64) {
        alignToByte()
        var value = value
        while value >= 0x80 {
            write(value & 0x7F | 0x80, bits: 8)
            value >>= 7
        }
        write(value, bits: 8)
    }

    /// Writes a signed value as a zigzag varint.
    mutating func writeSignedVarint(_ value: Int64) {
        writeVarint(ZigZag.encode(value))
    }

    /// Writes `value` as 8 little-endian bytes (aligned to a byte first).
    mutating func writeLittleEndian(_ value: UInt64) {
        alignToByte()
        write(value.byteSwapped, bits: 64)
    }

    /// Writes raw bytes (aligned to a byte first).
    mutating func write<Bytes: Collection<UInt8>>(bytes source: Bytes) {
        alignToByte()
        flushWholeBytes()
        bytes.append(contentsOf: source)
    }

    /// Flushes pending bits (zero-padded to a whole byte) and returns the bytes.
    mutating func finish() -> [UInt8] {
        alignToByte()
        flushWholeBytes()
        return bytes
    }

    /// Moves pending whole bytes into `bytes`.
    private mutating func flushWholeBytes() {
        var remaining = pendingBits
        while remaining >= 8 {
            remaining &-= 8
            bytes.append(UInt8(truncatingIfNeeded: accumulator >> UInt64(remaining)))
        }
        accumulator &= remaining == 0 ? 0 : (1 &<< UInt64(remaining)) &- 1
        pendingBits = remaining
    }

    @inline(__always)
    private mutating func flush(_ word: UInt64) {
        withUnsafeBytes(of: word.bigEndian) { bytes.append(contentsOf: $0) }
    }
}

/// Zigzag mapping of signed to unsigned integers: 0, -1, 1, -2, ... → 0, 1, 2, 3, ...
enum ZigZag {
    @inline(__always)
    static func encode(_ value: Int64) -> UInt64 {
        UInt64(bitPattern: (value &<< 1) ^ (value >> 63))
    }

    @inline(__always)
    static func decode(_ value: UInt64) -> Int64 {
        Int64(bitPattern: (value >> 1) ^ (0 &- (value & 1)))
    }
}

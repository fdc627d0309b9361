import MeridianCore

/// Encodes and decodes the compressed chunks of the time-series engine: up to 65,536 samples of one series,
/// timestamps and values, in one self-checking byte array. Pure code, no I/O.
///
/// Lossless: every timestamp and every value reads back identical, numbers bit for bit (NaN payloads, -0.0,
/// infinities, subnormals) and strings byte for byte.
///
/// ## Format version 1
///
/// All integers in the header are little-endian.
/// ```
/// offset  size  field
///      0     1  format version (1)
///      1     1  value type: 1 number, 2 bool, 3 string (TelemetryValueType's raw value)
///      2     1  timestamp encoding: 1 delta-of-delta, 2 grid
///      3     1  value encoding (TimeSeriesValueEncoding): 1 decimal, 2 XOR (numbers); 3 runs, 4 bitmap
///               (bools); 5 dictionary + runs, 6 dictionary + bit-packed indexes (strings)
///      4     4  count (1...65,536)
///      8     8  first timestamp (ms since 1970, Int64)
///     16     8  last timestamp
///     24     4  T: timestamp section length in bytes
///     28     4  V: value section length in bytes
///     32     4  CRC-32C of bytes 0..<32
///     36     T  timestamp section
///   36+T     V  value section
/// 36+T+V     4  CRC-32C of bytes 36..<36+T+V
/// ```
/// Sections are bit streams written most significant bit first, with LEB128 varints (zigzag for signed
/// values) on byte boundaries, each padded to a whole byte. The encoder picks, per chunk, the smaller of:
///
/// - Timestamps (the first is in the header): delta-of-delta with Gorilla's variable-length buckets (1 bit
///   per sample at a regular interval, 64-bit buckets for any gap), or the residuals from a regular grid
///   bit-packed in blocks of 128 (a few bytes per block when regular, about half of delta-of-delta's bits
///   under arrival-time jitter). Both are exact for any `Int64` sequence (wrapping arithmetic).
/// - Numbers: an ALP-style decimal encoding (values scaled by one power of ten to integers, bit-packed per
///   128-value block as frame-of-reference or delta frame-of-reference, values that do not round-trip bit for
///   bit kept raw as exceptions), or Gorilla's XOR encoding.
/// - Bools: runs or a bitmap. Strings: a dictionary of the distinct UTF-8 strings plus runs or bit-packed
///   indexes.
///
/// The section layouts are documented on the internal types `TimestampDeltaOfDeltaCodec`,
/// `TimestampGridCodec`, `IntegerBlockPacker`, `DecimalFloatCodec`, `XORFloatCodec`, `BoolRunLengthCodec` and
/// `StringDictionaryCodec`, and in `docs/timeseries.md` ("Chunk format"). A change to any of them is a new
/// format version; readers keep reading the old ones.
///
/// Decoding checks both checksums and every count and length: truncated or altered bytes throw
/// ``TimeSeriesCodecError``, never crash and never return different samples. A reader meeting a format
/// version it does not know throws ``TimeSeriesCodecError/Code-swift.struct/unsupportedVersion``.
///
/// Recommended chunk size for 1 Hz series: 2 hours (7,200 samples). Bigger chunks barely compress better
/// (1–2 %) but make a query decode more than it needs; much smaller ones pay the 40 bytes of header and
/// checksums and the per-block costs more often.
public enum TimeSeriesChunkCodec {
    /// The format version this build writes (and the only one it reads).
    public static let formatVersion: UInt8 = 1
    /// The most samples one chunk holds.
    public static let maximumCount = 65_536
    /// Bytes before the timestamp section.
    static let headerSize = 36
    /// Bytes of the trailing checksum.
    static let trailerSize = 4

    /// Encodes one chunk.
    ///
    /// - Parameters:
    ///   - timestamps: milliseconds since 1970; the engine passes them strictly increasing (any `Int64` sequence
    ///     round-trips, but the header's first and last are simply the first and the last element).
    ///   - values: one value per timestamp.
    /// - Precondition: `timestamps.count == values.count`, between 1 and ``maximumCount``.
    public static func encode(timestamps: [Int64], values: TimeSeriesColumn) -> [UInt8] {
        let count = timestamps.count
        precondition(count == values.count, "a chunk needs one value per timestamp")
        precondition(count >= 1 && count <= maximumCount, "a chunk holds 1...\(maximumCount) samples, not \(count)")
        var writer = ChunkBitWriter(
            appendingTo: [UInt8](repeating: 0, count: headerSize),
            reservingBytes: headerSize &+ count &* 2 &+ 64
        )
        let timestampEncoding = timestamps.withUnsafeBufferPointer { encodeTimestamps($0, into: &writer) }
        let timestampBytes = writer.byteCount &- headerSize
        let encoding: UInt8
        switch values {
        case .numbers(let numbers):
            encoding = numbers.withUnsafeBufferPointer { encodeNumbers($0, into: &writer) }
        case .bools(let bools):
            encoding = bools.withUnsafeBufferPointer { BoolRunLengthCodec.encode($0, into: &writer) }
        case .strings(let strings):
            encoding = StringDictionaryCodec.encode(strings, into: &writer)
        }
        writer.alignToByte()
        let valueBytes = writer.byteCount &- headerSize &- timestampBytes
        precondition(valueBytes <= Int(UInt32.max), "a chunk's values exceed 4 GiB")
        var bytes = writer.finish()
        bytes.withUnsafeMutableBytes { raw in
            raw[0] = formatVersion
            raw[1] = values.valueType.rawValue
            raw[2] = timestampEncoding
            raw[3] = encoding
            raw.storeBytes(of: UInt32(count).littleEndian, toByteOffset: 4, as: UInt32.self)
            raw.storeBytes(of: timestamps[0].littleEndian, toByteOffset: 8, as: Int64.self)
            raw.storeBytes(of: timestamps[count &- 1].littleEndian, toByteOffset: 16, as: Int64.self)
            raw.storeBytes(of: UInt32(timestampBytes).littleEndian, toByteOffset: 24, as: UInt32.self)
            raw.storeBytes(of: UInt32(valueBytes).littleEndian, toByteOffset: 28, as: UInt32.self)
            let headerCRC = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[0..<32]))
            raw.storeBytes(of: headerCRC.littleEndian, toByteOffset: 32, as: UInt32.self)
        }
        let bodyCRC = bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[headerSize...])) }
        withUnsafeBytes(of: bodyCRC.littleEndian) { bytes.append(contentsOf: $0) }
        return bytes
    }

    /// Decodes a chunk.
    ///
    /// - Throws: ``TimeSeriesCodecError`` when the bytes are truncated, altered, of an unknown format version or
    ///   inconsistent.
    public static func decode(
        _ bytes: [UInt8]
    ) throws(TimeSeriesCodecError) -> (timestamps: [Int64], values: TimeSeriesColumn) {
        let result: Result<(timestamps: [Int64], values: TimeSeriesColumn), TimeSeriesCodecError> =
            bytes.withUnsafeBytes { raw in Result { () throws(TimeSeriesCodecError) in try decode(raw) } }
        return try result.get()
    }

    /// Decodes a chunk from memory the caller owns (a SQLite blob, a memory-mapped file) without copying it first.
    ///
    /// - Throws: ``TimeSeriesCodecError`` when the bytes are truncated, altered, of an unknown format version or
    ///   inconsistent.
    public static func decode(
        _ bytes: UnsafeRawBufferPointer
    ) throws(TimeSeriesCodecError) -> (timestamps: [Int64], values: TimeSeriesColumn) {
        let layout = try readHeader(bytes)
        let header = layout.header
        let count = header.count
        let bodyEnd = headerSize &+ layout.timestampBytes &+ layout.valueBytes
        let storedCRC = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: bodyEnd, as: UInt32.self))
        guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[headerSize..<bodyEnd])) == storedCRC else {
            throw TimeSeriesCodecError(.checksumMismatch, "chunk body checksum does not match")
        }
        let timestampSection = UnsafeRawBufferPointer(
            rebasing: bytes[headerSize..<(headerSize &+ layout.timestampBytes)]
        )
        let valueSection = UnsafeRawBufferPointer(rebasing: bytes[(headerSize &+ layout.timestampBytes)..<bodyEnd])

        let timestamps = try makeArray(of: Int64.self, count: count) { (buffer) throws(TimeSeriesCodecError) in
            if layout.timestampEncoding == TimestampGridCodec.id {
                try TimestampGridCodec.decode(
                    timestampSection,
                    first: header.firstTimestamp,
                    count: count,
                    into: buffer
                )
            } else {
                try TimestampDeltaOfDeltaCodec.decode(
                    timestampSection,
                    first: header.firstTimestamp,
                    count: count,
                    into: buffer
                )
            }
        }
        guard timestamps[count &- 1] == header.lastTimestamp else {
            throw TimeSeriesCodecError(.malformed, "decoded timestamps do not end at the header's last timestamp")
        }
        let values: TimeSeriesColumn
        switch header.valueEncoding {
        case .decimal:
            values = .numbers(
                try makeArray(of: Double.self, count: count) { (buffer) throws(TimeSeriesCodecError) in
                    try DecimalFloatCodec.decode(valueSection, into: buffer)
                }
            )
        case .xor:
            values = .numbers(
                try makeArray(of: Double.self, count: count) { (buffer) throws(TimeSeriesCodecError) in
                    try XORFloatCodec.decode(valueSection, into: buffer)
                }
            )
        case .boolRuns, .boolBitmap:
            values = .bools(
                try makeArray(of: Bool.self, count: count) { (buffer) throws(TimeSeriesCodecError) in
                    try BoolRunLengthCodec.decode(valueSection, id: header.valueEncoding.rawValue, into: buffer)
                }
            )
        case .stringDictionaryRuns, .stringDictionaryPacked:
            values = .strings(
                try StringDictionaryCodec.decode(valueSection, id: header.valueEncoding.rawValue, count: count)
            )
        }
        return (timestamps, values)
    }

    /// Reads just the header (count, first and last timestamp, value type and encoding), checking its own
    /// checksum and that the chunk is as long as the header says, without decoding (or checksumming) the body.
    ///
    /// - Throws: ``TimeSeriesCodecError`` when the header is truncated, altered or of an unknown format version.
    public static func header(_ bytes: [UInt8]) throws(TimeSeriesCodecError) -> TimeSeriesChunkHeader {
        let result: Result<TimeSeriesChunkHeader, TimeSeriesCodecError> = bytes.withUnsafeBytes { raw in
            Result { () throws(TimeSeriesCodecError) in try readHeader(raw).header }
        }
        return try result.get()
    }

    /// Reads just the header from memory the caller owns; see ``header(_:)-([UInt8])``.
    public static func header(_ bytes: UnsafeRawBufferPointer) throws(TimeSeriesCodecError) -> TimeSeriesChunkHeader {
        try readHeader(bytes).header
    }

    // MARK: - Internals

    private struct Layout {
        var header: TimeSeriesChunkHeader
        var timestampEncoding: UInt8
        var timestampBytes: Int
        var valueBytes: Int
    }

    private static func readHeader(_ bytes: UnsafeRawBufferPointer) throws(TimeSeriesCodecError) -> Layout {
        guard bytes.count > 0 else { throw TimeSeriesCodecError(.truncated, "chunk is empty") }
        guard bytes[0] == formatVersion else {
            throw TimeSeriesCodecError(
                .unsupportedVersion,
                "chunk format version \(bytes[0]) is not supported (this build reads \(formatVersion))"
            )
        }
        guard bytes.count >= headerSize else {
            throw TimeSeriesCodecError(.truncated, "chunk has \(bytes.count) bytes, its header alone \(headerSize)")
        }
        func load<T: FixedWidthInteger>(_ offset: Int, as type: T.Type) -> T {
            T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
        }
        guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[0..<32])) == load(32, as: UInt32.self) else {
            throw TimeSeriesCodecError(.checksumMismatch, "chunk header checksum does not match")
        }
        guard let valueType = TelemetryValueType(rawValue: bytes[1]) else {
            throw TimeSeriesCodecError(.malformed, "unknown value type \(bytes[1])")
        }
        guard bytes[2] == TimestampDeltaOfDeltaCodec.id || bytes[2] == TimestampGridCodec.id else {
            throw TimeSeriesCodecError(.malformed, "unknown timestamp encoding \(bytes[2])")
        }
        guard let encoding = TimeSeriesValueEncoding(rawValue: bytes[3]), encoding.valueType == valueType else {
            throw TimeSeriesCodecError(.malformed, "value encoding \(bytes[3]) does not fit value type \(bytes[1])")
        }
        let count = Int(load(4, as: UInt32.self))
        guard count >= 1 && count <= maximumCount else {
            throw TimeSeriesCodecError(.malformed, "count \(count) is outside 1...\(maximumCount)")
        }
        let first = load(8, as: Int64.self)
        let last = load(16, as: Int64.self)
        guard count > 1 || first == last else {
            throw TimeSeriesCodecError(.malformed, "a one-sample chunk has different first and last timestamps")
        }
        let timestampBytes = Int(load(24, as: UInt32.self))
        let valueBytes = Int(load(28, as: UInt32.self))
        let byteCount = headerSize &+ timestampBytes &+ valueBytes &+ trailerSize
        guard bytes.count >= byteCount else {
            throw TimeSeriesCodecError(.truncated, "chunk has \(bytes.count) bytes, its header says \(byteCount)")
        }
        guard bytes.count == byteCount else {
            throw TimeSeriesCodecError(.malformed, "chunk has \(bytes.count) bytes, its header says \(byteCount)")
        }
        let header = TimeSeriesChunkHeader(
            formatVersion: formatVersion,
            valueType: valueType,
            valueEncoding: encoding,
            count: count,
            firstTimestamp: first,
            lastTimestamp: last,
            byteCount: byteCount
        )
        return Layout(
            header: header,
            timestampEncoding: bytes[2],
            timestampBytes: timestampBytes,
            valueBytes: valueBytes
        )
    }

    /// The encoding id of the smaller of the delta-of-delta and the grid encodings of `timestamps`, whose section
    /// it appends.
    private static func encodeTimestamps(
        _ timestamps: UnsafeBufferPointer<Int64>,
        into writer: inout ChunkBitWriter
    ) -> UInt8 {
        let start = writer.byteCount
        TimestampDeltaOfDeltaCodec.encode(timestamps, into: &writer)
        writer.alignToByte()
        let deltaOfDeltaBytes = writer.byteCount &- start
        // The grid needs at least a step, an anchor and a block header; below that delta-of-delta wins.
        guard deltaOfDeltaBytes > 4 else { return TimestampDeltaOfDeltaCodec.id }
        var grid = ChunkBitWriter(reservingBytes: deltaOfDeltaBytes)
        TimestampGridCodec.encode(timestamps, into: &grid)
        guard grid.byteCount < deltaOfDeltaBytes else { return TimestampDeltaOfDeltaCodec.id }
        writer.truncate(toByteCount: start)
        writer.append(grid.finish())
        return TimestampGridCodec.id
    }

    /// The encoding id of the smaller of the decimal and the XOR encodings of `values`, whose section it appends.
    private static func encodeNumbers(_ values: UnsafeBufferPointer<Double>, into writer: inout ChunkBitWriter) -> UInt8
    {
        let start = writer.byteCount
        if let exponent = DecimalFloatCodec.chooseExponent(values),
            DecimalFloatCodec.encode(values, exponent: exponent, into: &writer)
        {
            let decimalBytes = writer.byteCount &- start
            // XOR costs 64 bits for the first value and at least 1 per other value.
            if decimalBytes &* 8 <= 64 &+ values.count &- 1 { return DecimalFloatCodec.id }
            var xor = ChunkBitWriter(reservingBytes: decimalBytes)
            guard XORFloatCodec.encode(values, into: &xor, budget: decimalBytes &- 1) else {
                return DecimalFloatCodec.id
            }
            writer.truncate(toByteCount: start)
            writer.append(xor.finish())
            return XORFloatCodec.id
        }
        XORFloatCodec.encode(values, into: &writer)
        return XORFloatCodec.id
    }

    /// An array of `count` elements that `initialize` fills completely (trivial types only: a failure leaves the
    /// buffer uninitialized).
    private static func makeArray<Element>(
        of type: Element.Type,
        count: Int,
        _ initialize: (UnsafeMutableBufferPointer<Element>) throws(TimeSeriesCodecError) -> Void
    ) throws(TimeSeriesCodecError) -> [Element] {
        var failure: TimeSeriesCodecError?
        let array = [Element](unsafeUninitializedCapacity: count) { buffer, initialized in
            do throws(TimeSeriesCodecError) {
                try initialize(buffer)
                initialized = count
            } catch {
                failure = error
                initialized = 0
            }
        }
        if let failure { throw failure }
        return array
    }
}

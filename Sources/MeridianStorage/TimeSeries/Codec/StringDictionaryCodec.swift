/// Strings as a dictionary of the distinct strings (each stored once) and one index per value, the indexes as
/// runs (a mode that rarely changes) or bit-packed (many changes), whichever is smaller.
///
/// Section layout (varints LEB128 on byte boundaries):
/// ```
/// varint  distinct string count (1...count)
/// per distinct string, in order of first appearance: varint UTF-8 length, the UTF-8 bytes
/// runs (encoding id 5):       per run: varint index, varint length - 1 (the runs add up to the count)
/// bit-packed (encoding id 6): per value: the index in ⌈log2(distinct count)⌉ bits, most significant first
/// ```
/// Strings are told apart by their UTF-8 bytes, not by Swift's `==` (which equates canonically equivalent
/// strings), so every string reads back byte for byte.
enum StringDictionaryCodec {
    /// The encoding id of runs of indexes.
    static let runsID: UInt8 = 5
    /// The encoding id of bit-packed indexes.
    static let packedID: UInt8 = 6
    /// Up to this many distinct strings, the encoder finds a value's index by comparing, not hashing.
    static let linearSearchLimit = 16

    /// A dictionary key comparing strings by their UTF-8 bytes.
    private struct Key: Hashable {
        let string: String

        static func == (lhs: Key, rhs: Key) -> Bool { utf8BytesEqual(lhs.string, rhs.string) }

        func hash(into hasher: inout Hasher) {
            var string = string
            string.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
        }
    }

    /// Appends the smaller section for `values` (at least one) to `writer`; returns its encoding id.
    static func encode(_ values: [String], into writer: inout ChunkBitWriter) -> UInt8 {
        var indexOf: [Key: Int] = [:]
        var distinct: [String] = []
        var indexes: [Int] = []
        indexes.reserveCapacity(values.count)
        var runsBytes = 0
        var previous = -1
        for value in values {
            var index = -1
            if previous >= 0 && utf8BytesEqual(value, distinct[previous]) {
                index = previous
            } else if distinct.count <= linearSearchLimit {
                // Few distinct strings (modes, states): comparing beats hashing.
                for candidate in distinct.indices where utf8BytesEqual(value, distinct[candidate]) {
                    index = candidate
                    break
                }
            } else {
                index = indexOf[Key(string: value)] ?? -1
            }
            if index < 0 {
                index = distinct.count
                distinct.append(value)
                if distinct.count == linearSearchLimit &+ 1 {
                    for (known, string) in distinct.enumerated() { indexOf[Key(string: string)] = known }
                } else if distinct.count > linearSearchLimit &+ 1 {
                    indexOf[Key(string: value)] = index
                }
            }
            if index != previous {
                runsBytes &+= 2 &+ BoolRunLengthCodec.varintSize(UInt64(index))  // a length of 2...128 costs 1 byte
                previous = index
            }
            indexes.append(index)
        }
        let width = distinct.count > 1 ? 64 &- UInt64(distinct.count &- 1).leadingZeroBitCount : 0
        let packedBytes = (values.count &* width &+ 7) / 8

        writer.writeVarint(UInt64(distinct.count))
        for var string in distinct {
            string.withUTF8 { utf8 in
                writer.writeVarint(UInt64(utf8.count))
                writer.write(bytes: utf8)
            }
        }
        if packedBytes < runsBytes {
            for index in indexes { writer.write(UInt64(index), bits: width) }
            writer.alignToByte()
            return packedID
        }
        var start = 0
        while start < indexes.count {
            var end = start &+ 1
            while end < indexes.count && indexes[end] == indexes[start] { end &+= 1 }
            writer.writeVarint(UInt64(indexes[start]))
            writer.writeVarint(UInt64(end &- start &- 1))
            start = end
        }
        return runsID
    }

    /// Decodes `count` strings from a section of encoding `id`.
    static func decode(
        _ section: UnsafeRawBufferPointer,
        id: UInt8,
        count: Int
    ) throws(TimeSeriesCodecError) -> [String] {
        var reader = ChunkBitReader(section)
        let distinctCount = try reader.readCount(atMost: count, "distinct string count")
        guard distinctCount > 0 || count == 0 else {
            throw TimeSeriesCodecError(.malformed, "a string chunk has no distinct strings")
        }
        var distinct: [String] = []
        distinct.reserveCapacity(distinctCount)
        for _ in 0..<distinctCount {
            let length = try reader.readCount(atMost: reader.remainingBits / 8, "string length")
            let bytes = try reader.readBytes(length)
            guard let string = String(validating: bytes, as: UTF8.self) else {
                throw TimeSeriesCodecError(.malformed, "a dictionary string is not valid UTF-8")
            }
            distinct.append(string)
        }
        var values: [String] = []
        values.reserveCapacity(count)
        if id == packedID {
            let width = distinctCount > 1 ? 64 &- UInt64(distinctCount &- 1).leadingZeroBitCount : 0
            guard count &* width <= reader.remainingBits else { throw ChunkBitReader.pastEnd }
            for _ in 0..<count {
                let index = Int(reader.readUnchecked(width))
                guard index < distinctCount else {
                    throw TimeSeriesCodecError(.malformed, "string index \(index) is beyond \(distinctCount)")
                }
                values.append(distinct[index])
            }
            return values
        }
        while values.count < count {
            let index = try reader.readCount(atMost: distinctCount &- 1, "string index")
            let length = try reader.readCount(atMost: count &- values.count &- 1, "string run length") &+ 1
            for _ in 0..<length { values.append(distinct[index]) }
        }
        return values
    }
}

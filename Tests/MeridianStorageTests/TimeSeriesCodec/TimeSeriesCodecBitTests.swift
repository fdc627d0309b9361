import Testing

@testable import MeridianStorage

/// The building blocks under the chunk format: bit streams, varints, zigzag, CRC-32C, integer packing.
struct TimeSeriesCodecBitTests {
    @Test("CRC-32C matches the standard check value")
    func crc32c() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([]) == 0)
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
    }

    @Test("Fields of every width from 0 to 64 bits read back, between varints and raw bytes")
    func bitFields() throws {
        var random = SplitMix64(seed: 31)
        var fields: [(value: UInt64, width: Int)] = []
        var writer = ChunkBitWriter()
        for _ in 0..<20_000 {
            let width = Int(random.next() % 65)
            let value = width == 0 ? 0 : random.next() >> UInt64(64 - width)
            fields.append((value, width))
            writer.write(value, bits: width)
        }
        writer.writeVarint(UInt64.max)
        writer.writeSignedVarint(Int64.min)
        writer.writeLittleEndian(0x0102_0304_0506_0708)
        writer.write(bytes: [9, 8, 7])
        writer.write(1, bits: 3)
        let bytes = writer.finish()
        try bytes.withUnsafeBytes { buffer in
            var reader = ChunkBitReader(buffer)
            for (index, field) in fields.enumerated() {
                let value = try reader.read(field.width)
                #expect(value == field.value, "field \(index)")
            }
            #expect(try reader.readVarint() == UInt64.max)
            #expect(try reader.readSignedVarint() == Int64.min)
            #expect(try reader.readLittleEndian() == 0x0102_0304_0506_0708)
            #expect(Array(try reader.readBytes(3)) == [9, 8, 7])
            #expect(try reader.read(3) == 1)
            #expect(reader.remainingBits == 5)
            #expect(throws: TimeSeriesCodecError.self) { try reader.read(6) }
        }
    }

    @Test("A varint longer than 64 bits is refused")
    func overlongVarint() {
        let bytes: [UInt8] = Array(repeating: 0xFF, count: 10) + [0x01]
        bytes.withUnsafeBytes { buffer in
            var reader = ChunkBitReader(buffer)
            #expect(throws: TimeSeriesCodecError.self) { try reader.readVarint() }
        }
    }

    @Test("Zigzag maps signed to unsigned and back at the extremes")
    func zigzag() {
        for value: Int64 in [0, -1, 1, -2, 2, Int64.max, Int64.min, Int64.min + 1] {
            #expect(ZigZag.decode(ZigZag.encode(value)) == value)
        }
        #expect(ZigZag.encode(-1) == 1)
        #expect(ZigZag.encode(Int64.min) == UInt64.max)
    }

    @Test("Integer blocks read back any Int64 sequence exactly", arguments: [1, 127, 128, 129, 1000])
    func integerBlocks(count: Int) throws {
        var random = SplitMix64(seed: UInt64(count))
        let sequences: [[Int64]] = [
            (0..<count).map { _ in Int64(bitPattern: random.next()) },
            (0..<count).map { $0 % 2 == 0 ? Int64.min : Int64.max },
            (0..<count).map { Int64($0) * 7 - 1000 },
            Array(repeating: -5, count: count),
        ]
        for integers in sequences {
            var writer = ChunkBitWriter()
            integers.withUnsafeBufferPointer { IntegerBlockPacker.encode($0, into: &writer) }
            let bytes = writer.finish()
            let decoded = try bytes.withUnsafeBytes { buffer in
                var reader = ChunkBitReader(buffer)
                var output = [Int64](repeating: 0, count: count)
                try output.withUnsafeMutableBufferPointer { try IntegerBlockPacker.decode(&reader, into: $0) }
                return output
            }
            #expect(decoded == integers)
        }
    }
}

/// Floats with limited decimal precision as scaled integers, after ALP (Afroozeh, Kuffó, Boncz: "ALP: Adaptive
/// Lossless floating-Point Compression", SIGMOD 2024): sensor readings such as 21.37 are stored as the integer
/// 2137 with the exponent 2, and the integers are bit-packed in small blocks.
///
/// One decimal exponent `k` (-8...18) serves the whole chunk. A value `v` is *encodable* when
/// `n = round(v × 10^k)` (or `round(v / 10^-k)` for negative `k`) has `|n| < 2^51` and
/// `Double(n) / 10^k` (or `Double(n) × 10^-k`) gives back `v` bit for bit; IEEE division and multiplication are
/// correctly rounded, so every value with at most `k` decimals within ±2^51 / 10^k is encodable. The others
/// (NaN, ±infinity, -0.0, values with more digits) are *exceptions*, stored raw after the blocks.
///
/// Section layout (varints LEB128 on byte boundaries):
/// ```
/// int8     k
/// varint   exception count
/// the integers, one per value (IntegerBlockPacker: blocks of 128, frame-of-reference or delta
///          frame-of-reference, whichever is narrower; noisy signals take the first, smooth ones the second)
/// exceptions, by position:
///   varint position gap         position - previous position - 1 (the first: its position)
///   uint64 little-endian        the raw IEEE 754 bits
/// ```
/// An exception's slot among the integers holds the previous integer (so it costs nothing in delta mode).
enum DecimalFloatCodec {
    /// The encoding id in the chunk header.
    static let id: UInt8 = 1
    /// The decimal exponents tried.
    static let exponents = -8...18
    /// Values sampled to choose the exponent.
    static let sampleSize = 256

    /// 10^0 ... 10^18, all exact in a `Double`.
    private static let powersOfTen: [Double] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18,
    ]

    /// Integers of magnitude below this round-trip through `Double` and the rounding trick.
    private static let integerLimit: Double = 2_251_799_813_685_248  // 2^51
    /// Adding and subtracting 2^52 + 2^51 rounds a `Double` of magnitude below 2^51 to an integer (ties to even).
    private static let roundingMagic: Double = 6_755_399_441_055_744

    /// How to go from integers back to values for one exponent.
    struct Scale {
        let factor: Double
        let divides: Bool

        init(exponent: Int) {
            factor = DecimalFloatCodec.powersOfTen[exponent.magnitude > 18 ? 0 : Int(exponent.magnitude)]
            divides = exponent >= 0
        }

        @inline(__always)
        func value(_ integer: Int64) -> Double {
            divides ? Double(integer) / factor : Double(integer) * factor
        }

        /// The integer for `value`, or `nil` if `value` is not encodable with this exponent.
        @inline(__always)
        func integer(_ value: Double) -> Int64? {
            let scaled = divides ? value * factor : value / factor
            guard scaled.magnitude < DecimalFloatCodec.integerLimit else { return nil }  // also NaN
            let rounded = (scaled + DecimalFloatCodec.roundingMagic) - DecimalFloatCodec.roundingMagic
            let integer = Int64(rounded)
            guard self.value(integer).bitPattern == value.bitPattern else { return nil }
            return integer
        }
    }

    /// The exponent with the smallest estimated size on an evenly spaced sample of up to 256 of `values`: each
    /// exception costs about 80 bits, each step of the exponent about log2(10) bits per value (so a few values
    /// with one more digit become exceptions rather than widening every integer). `nil` if the best exponent
    /// leaves more than half of the sample as exceptions.
    static func chooseExponent(_ values: UnsafeBufferPointer<Double>) -> Int? {
        let step = max(1, values.count / sampleSize)
        let sampleCount = (values.count &+ step &- 1) / step
        var best: (exponent: Int, hits: Int, cost: Double) = (0, 0, .infinity)
        for exponent in exponents {
            let scale = Scale(exponent: exponent)
            var hits = 0
            var index = 0
            while index < values.count {
                if scale.integer(values[index]) != nil { hits &+= 1 }
                index &+= step
            }
            let cost = Double(sampleCount &- hits) * 80 + Double(sampleCount) * 3.32 * Double(exponent)
            if cost < best.cost { best = (exponent, hits, cost) }
            // Every larger exponent costs more and cannot remove more exceptions.
            if hits == sampleCount { break }
        }
        return best.hits * 2 >= sampleCount ? best.exponent : nil
    }

    /// Appends the section for `values` with `exponent` to `writer`; writes nothing and returns `false` when more
    /// than half of the values would be exceptions.
    static func encode(
        _ values: UnsafeBufferPointer<Double>,
        exponent: Int,
        into writer: inout ChunkBitWriter
    ) -> Bool {
        let count = values.count
        guard count > 0 else { return false }
        let scale = Scale(exponent: exponent)
        var exceptions: [Int] = []
        let integers = [Int64](unsafeUninitializedCapacity: count) { integers, initialized in
            var previous: Int64? = nil
            for index in 0..<count {
                if let integer = scale.integer(values[index]) {
                    if previous == nil {
                        // Leading exceptions take the first integer.
                        for leading in 0..<index { integers[leading] = integer }
                    }
                    integers[index] = integer
                    previous = integer
                } else {
                    exceptions.append(index)
                    integers[index] = previous ?? 0
                }
            }
            initialized = count
        }
        guard exceptions.count * 2 <= count else { return false }

        writer.write(UInt64(UInt8(bitPattern: Int8(exponent))), bits: 8)
        writer.writeVarint(UInt64(exceptions.count))
        integers.withUnsafeBufferPointer { IntegerBlockPacker.encode($0, into: &writer) }
        var previousPosition = -1
        for position in exceptions {
            writer.writeVarint(UInt64(position &- previousPosition &- 1))
            writer.writeLittleEndian(values[position].bitPattern)
            previousPosition = position
        }
        writer.alignToByte()
        return true
    }

    /// Decodes `output.count` values from `section`.
    static func decode(
        _ section: UnsafeRawBufferPointer,
        into output: UnsafeMutableBufferPointer<Double>
    ) throws(TimeSeriesCodecError) {
        let count = output.count
        guard count > 0, let out = output.baseAddress else { return }
        var reader = ChunkBitReader(section)
        let exponent = Int(Int8(bitPattern: UInt8(truncatingIfNeeded: try reader.read(8))))
        guard exponents.contains(exponent) else {
            throw TimeSeriesCodecError(.malformed, "decimal exponent \(exponent) is out of range")
        }
        let scale = Scale(exponent: exponent)
        let exceptionCount = try reader.readCount(atMost: count, "exception count")
        // Unpack the integers into the output's memory, then turn each into its value in place.
        try output.withMemoryRebound(to: Int64.self) { (integers) throws(TimeSeriesCodecError) in
            try IntegerBlockPacker.decode(&reader, into: integers)
        }
        let raw = UnsafeMutableRawPointer(out)
        for offset in stride(from: 0, to: count &* 8, by: 8) {
            let integer = raw.load(fromByteOffset: offset, as: Int64.self)
            raw.storeBytes(of: scale.value(integer), toByteOffset: offset, as: Double.self)
        }
        var position = -1
        for _ in 0..<exceptionCount {
            let gap = try reader.readCount(atMost: count, "exception position gap")
            position = position &+ 1 &+ gap
            guard position < count else {
                throw TimeSeriesCodecError(.malformed, "exception position \(position) is beyond \(count) values")
            }
            out[position] = Double(bitPattern: try reader.readLittleEndian())
        }
    }
}

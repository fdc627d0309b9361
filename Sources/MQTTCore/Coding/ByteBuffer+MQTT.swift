import NIOCore

/// Primitive MQTT data types on `ByteBuffer` (MQTT 5 §1.5): variable byte integers, UTF-8
/// strings and binary data, each with a two-byte length prefix.
extension ByteBuffer {
    /// Reads a variable byte integer; `nil` if the buffer ends before it does.
    /// - Throws: ``MQTTError`` (malformed) when it is longer than four bytes.
    @inlinable
    public mutating func readMQTTVariableByteInteger() throws(MQTTError) -> Int? {
        var value = 0
        var multiplier = 1
        var index = self.readerIndex
        for count in 0..<4 {
            guard let byte = self.getInteger(at: index, as: UInt8.self) else { return nil }
            index += 1
            value += Int(byte & 0x7F) * multiplier
            if byte & 0x80 == 0 {
                // A non-minimal encoding (e.g. 0x80 0x00) is tolerated, as in most brokers.
                _ = count
                self.moveReaderIndex(to: index)
                return value
            }
            multiplier &*= 128
        }
        throw MQTTError.malformed("variable byte integer longer than 4 bytes")
    }

    /// Writes `value` as a variable byte integer; returns the number of bytes written.
    @inlinable
    @discardableResult
    public mutating func writeMQTTVariableByteInteger(_ value: Int) -> Int {
        precondition(value >= 0 && value <= 268_435_455, "variable byte integer out of range")
        var value = value
        var written = 0
        repeat {
            var byte = UInt8(value & 0x7F)
            value >>= 7
            if value > 0 { byte |= 0x80 }
            self.writeInteger(byte)
            written += 1
        } while value > 0
        return written
    }

    /// The encoded size of a variable byte integer.
    @inlinable
    public static func mqttVariableByteIntegerSize(_ value: Int) -> Int {
        switch value {
        case ..<128: return 1
        case ..<16_384: return 2
        case ..<2_097_152: return 3
        default: return 4
        }
    }

    /// Reads a length-prefixed UTF-8 string and validates it (well-formed UTF-8, no U+0000).
    @inlinable
    public mutating func readMQTTString() throws(MQTTError) -> String {
        guard let length = self.readInteger(as: UInt16.self) else {
            throw MQTTError.malformed("string length missing")
        }
        guard let string = self.readMQTTStringBody(length: Int(length)) else {
            throw MQTTError.malformed("string is cut short or is not valid UTF-8")
        }
        return string
    }

    /// Reads `length` bytes as a validated MQTT UTF-8 string; `nil` if they are missing or invalid.
    @inlinable
    public mutating func readMQTTStringBody(length: Int) -> String? {
        guard self.readableBytes >= length else { return nil }
        let result: String? = self.withUnsafeReadableBytes { raw in
            let bytes = UnsafeRawBufferPointer(rebasing: raw[0..<length])
            var ascii = true
            for byte in bytes {
                if byte == 0 { return nil }
                if byte >= 0x80 { ascii = false }
            }
            if ascii {
                return String(decoding: bytes, as: UTF8.self)
            }
            // Swift's validation rejects overlong forms, surrogates (U+D800..U+DFFF) and truncation.
            return String(validating: bytes, as: UTF8.self)
        }
        if result != nil { self.moveReaderIndex(forwardBy: length) }
        return result
    }

    /// Writes a length-prefixed UTF-8 string.
    @inlinable
    public mutating func writeMQTTString(_ string: String) {
        let lengthIndex = self.writerIndex
        self.writeInteger(UInt16(0))
        let written = self.writeString(string)
        self.setInteger(UInt16(truncatingIfNeeded: written), at: lengthIndex)
    }

    /// Reads length-prefixed binary data.
    @inlinable
    public mutating func readMQTTBinary() throws(MQTTError) -> ByteBuffer {
        guard let length = self.readInteger(as: UInt16.self) else {
            throw MQTTError.malformed("binary data length missing")
        }
        guard let slice = self.readSlice(length: Int(length)) else {
            throw MQTTError.malformed("binary data cut short")
        }
        return slice
    }

    /// Writes length-prefixed binary data.
    @inlinable
    public mutating func writeMQTTBinary(_ data: ByteBuffer) {
        self.writeInteger(UInt16(truncatingIfNeeded: data.readableBytes))
        self.writeImmutableBuffer(data)
    }

    @inlinable
    mutating func readMQTTInteger<T: FixedWidthInteger>(as: T.Type = T.self, _ what: StaticString) throws(MQTTError) -> T {
        guard let value = self.readInteger(as: T.self) else {
            throw MQTTError.malformed("\(what) missing")
        }
        return value
    }
}

/// Checks whether `buffer`'s readable bytes are well-formed UTF-8 (for payload format indicator 1).
public func mqttIsValidUTF8(_ buffer: ByteBuffer) -> Bool {
    buffer.withUnsafeReadableBytes { raw in
        var ascii = true
        for byte in raw where byte >= 0x80 {
            ascii = false
            break
        }
        if ascii { return true }
        return String(validating: raw, as: UTF8.self) != nil
    }
}

/// Reads the JSON telemetry devices send (ThingsBoard-compatible) into samples, without Foundation
/// and in one pass over the bytes.
///
/// Accepted payloads:
/// - `{"temp": 21.5, "on": true, "mode": "eco"}`: samples stamped with the time the platform
///   received the message;
/// - `{"ts": 1700000000000, "values": {"temp": 21.5}}`: samples at `ts` (milliseconds since
///   1970-01-01 UTC, an integer from 0 to the end of the year 9999), in either key order;
/// - a JSON array of either form, mixed.
///
/// Values: JSON numbers become ``TelemetryValue/number(_:)`` (exactly the `Double` that
/// `Double(String)` reads, correctly rounded), `true`/`false` ``TelemetryValue/bool(_:)``,
/// strings ``TelemetryValue/string(_:)`` (every JSON escape, surrogate pairs included).
/// An object as a value is flattened with dots (`{"gps": {"lat": 1.5}}` gives the key `gps.lat`),
/// at most ``maximumDepth`` objects deep. `null` means "no reading": the key is skipped.
///
/// Refused, with a ``TelemetryPayloadError`` whose reason names the key and the byte:
/// - anything that is not one JSON value (trailing data included), not an object or an array of
///   objects, or yields no sample at all (`{}`, `[]`, only `null`s); an empty object anywhere;
/// - arrays as values (telemetry values are numbers, booleans or strings);
/// - numbers that are not JSON (`01`, `1.`, `.5`, `+1`, `NaN`, `Infinity`) or too large for a
///   `Double` (`1e400`); numbers written with more than ``maximumNumberLength`` characters;
/// - keys that are empty, longer than ``TelemetryLimits/maximumKeyLength`` UTF-8 bytes once
///   flattened, or contain control characters (U+0000–U+001F); the same key twice in one entry
///   (also `"a.b"` beside `{"a": {"b": ...}}`): the device has a bug, and picking one silently
///   would hide it;
/// - strings longer than ``TelemetryLimits/maximumStringLength`` UTF-8 bytes, invalid UTF-8,
///   unpaired surrogate escapes (`"\uD800"`);
/// - more than ``TelemetryLimits/maximumSamplesPerMessage`` samples;
/// - a `ts` that is not an integer (`1.7e12`, `"1700000000000"`), negative or past 9999;
///   `ts` without `values` or the other way round; other keys beside `ts` and `values`
///   (`{"ts": 1, "values": {...}, "x": 1}`): at the top of an entry, `ts` and `values` are
///   reserved.
public enum TelemetryPayloadParser {
    /// How many objects deep a value may sit, counting the entry's (or `values`') own object:
    /// a flattened key has at most this many dotted parts.
    public static let maximumDepth = 8
    /// Longest number accepted, in characters; a longer one (no sensor reports 1,025 digits) is
    /// refused instead of being handed to the slow conversion.
    public static let maximumNumberLength = 1024

    /// Parses one telemetry payload into samples. `receivedAt` (ms since 1970) stamps samples
    /// without `ts`.
    public static func parse(
        _ bytes: UnsafeRawBufferPointer,
        receivedAt: Int64
    ) throws(TelemetryPayloadError) -> [TelemetrySample] {
        let result = bytes.withMemoryRebound(to: UInt8.self) { buffer in
            Result { () throws(TelemetryPayloadError) -> [TelemetrySample] in
                var reader = Reader(buffer, receivedAt: receivedAt)
                return try reader.message()
            }
        }
        return try result.get()
    }

    /// Parses one telemetry payload into samples. `receivedAt` (ms since 1970) stamps samples
    /// without `ts`.
    public static func parse(_ bytes: [UInt8], receivedAt: Int64) throws(TelemetryPayloadError) -> [TelemetrySample] {
        let result = bytes.withUnsafeBytes { buffer in
            Result { () throws(TelemetryPayloadError) -> [TelemetrySample] in try parse(buffer, receivedAt: receivedAt)
            }
        }
        return try result.get()
    }
}

// MARK: numbers

extension TelemetryPayloadParser {
    /// 10^0 ... 10^22: every one exactly representable as a `Double`.
    private static let powersOfTen: [Double] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
        1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ]

    /// The value of a decimal `mantissa × 10^exponent` when it can be computed exactly with one
    /// rounding (Clinger's fast path): the mantissa fits in 53 bits and the power of ten is exact,
    /// so one IEEE multiplication or division gives the correctly rounded result. `nil` otherwise.
    static func fastPathValue(mantissa: UInt64, exponent: Int, negative: Bool) -> Double? {
        let limit: UInt64 = 1 << 53
        guard mantissa <= limit else { return nil }
        var value: Double
        if mantissa == 0 {
            value = 0
        } else if exponent >= 0 && exponent <= 22 {
            value = Double(mantissa) * powersOfTen[exponent]
        } else if exponent < 0 && exponent >= -22 {
            value = Double(mantissa) / powersOfTen[-exponent]
        } else if exponent > 22 && exponent <= 22 + 15 {
            // 123e25 = 1230000e22: still exact while the mantissa stays within 53 bits.
            let (scaled, overflow) = mantissa.multipliedReportingOverflow(by: UInt64(powersOfTen[exponent - 22]))
            guard !overflow, scaled <= limit else { return nil }
            value = Double(scaled) * powersOfTen[22]
        } else {
            return nil
        }
        if negative { value = -value }
        return value
    }

    /// Reads the JSON number starting at `start`. Returns its value (infinite when it
    /// overflows), where it ends, and whether the fast path computed it; `nil` when the bytes
    /// there are not a JSON number (the index of the offending byte in `end`).
    static func scanNumber(
        _ p: UnsafeBufferPointer<UInt8>,
        from start: Int
    ) -> (value: Double, end: Int, fast: Bool, valid: Bool) {
        let count = p.count
        var i = start
        var negative = false
        if i < count && p[i] == UInt8(ascii: "-") {
            negative = true
            i += 1
        }
        guard i < count, p[i] &- 0x30 < 10 else { return (0, i, false, false) }
        var mantissa: UInt64 = 0
        var digits = 0
        var exponent = 0
        var truncated = false
        if p[i] == UInt8(ascii: "0") {
            i += 1
            if i < count && p[i] &- 0x30 < 10 { return (0, i, false, false) }  // leading zero
        } else {
            while i < count {
                let digit = p[i] &- 0x30
                guard digit < 10 else { break }
                if digits < 19 {
                    mantissa = mantissa &* 10 &+ UInt64(digit)
                    digits += 1
                } else {
                    truncated = true
                }
                i += 1
            }
        }
        if i < count && p[i] == UInt8(ascii: ".") {
            i += 1
            guard i < count, p[i] &- 0x30 < 10 else { return (0, i, false, false) }
            while i < count {
                let digit = p[i] &- 0x30
                guard digit < 10 else { break }
                if mantissa == 0 && digit == 0 {
                    exponent -= 1  // a leading zero of the fraction is not significant
                } else if digits < 19 {
                    mantissa = mantissa &* 10 &+ UInt64(digit)
                    digits += 1
                    exponent -= 1
                } else {
                    truncated = true
                }
                i += 1
            }
        }
        if i < count && (p[i] | 0x20) == UInt8(ascii: "e") {
            i += 1
            var negativeExponent = false
            if i < count && (p[i] == UInt8(ascii: "+") || p[i] == UInt8(ascii: "-")) {
                negativeExponent = p[i] == UInt8(ascii: "-")
                i += 1
            }
            guard i < count, p[i] &- 0x30 < 10 else { return (0, i, false, false) }
            var explicit = 0
            while i < count {
                let digit = p[i] &- 0x30
                guard digit < 10 else { break }
                if explicit < 1_000_000 { explicit = explicit * 10 + Int(digit) }
                i += 1
            }
            exponent += negativeExponent ? -explicit : explicit
        }
        if !truncated, let value = fastPathValue(mantissa: mantissa, exponent: exponent, negative: negative) {
            return (value, i, true, true)
        }
        // The rest: the standard library's correctly rounded conversion.
        let text = String(decoding: UnsafeBufferPointer(rebasing: p[start..<i]), as: UTF8.self)
        return (Double(text) ?? .infinity, i, false, true)
    }

    /// The value of a JSON number written as `text` and whether the fast path computed it;
    /// `nil` when `text` is not exactly one JSON number (for tests).
    static func number(fromJSON text: String) -> (value: Double, fast: Bool)? {
        var text = text
        return text.withUTF8 { p in
            let scanned = scanNumber(p, from: 0)
            guard scanned.valid, scanned.end == p.count else { return nil }
            return (scanned.value, scanned.fast)
        }
    }
}

// MARK: the reader

extension TelemetryPayloadParser {
    private typealias Failure = TelemetryPayloadError

    /// A string just read: its bytes are `input[start ..< start + count]`, or the first `count`
    /// bytes of `scratch` when it had escapes.
    private struct StringToken {
        var start: Int
        var count: Int
        var escaped: Bool
    }

    private struct Reader {
        private let input: UnsafeBufferPointer<UInt8>
        private let end: Int
        private var index = 0
        private let receivedAt: Int64
        private var samples: [TelemetrySample] = []
        /// Unescaped bytes of the last string with escapes.
        private var scratch: [UInt8] = []
        /// Flattened key prefix of the nested objects being read (`gps.`).
        private var path: [UInt8] = []
        /// Where the current entry's samples start (duplicate keys are looked for from there).
        private var entryStart = 0
        /// The current entry's keys, once it has too many to compare one by one.
        private var entryKeys: Set<String>?

        /// 9999-12-31T23:59:59.999Z.
        static let latestTimestamp: Int64 = 253_402_300_799_999
        static let quote = UInt8(ascii: "\"")
        static let backslash = UInt8(ascii: "\\")

        init(_ input: UnsafeBufferPointer<UInt8>, receivedAt: Int64) {
            self.input = input
            self.end = input.count
            self.receivedAt = receivedAt
        }

        // MARK: structure

        mutating func message() throws(Failure) -> [TelemetrySample] {
            skipWhitespace()
            guard index < end else { throw .at(nil, "payload is empty") }
            samples.reserveCapacity(8)
            switch input[index] {
            case UInt8(ascii: "{"):
                try entry()
            case UInt8(ascii: "["):
                index += 1
                skipWhitespace()
                if index < end && input[index] == UInt8(ascii: "]") {
                    index += 1
                } else {
                    while true {
                        skipWhitespace()
                        guard index < end, input[index] == UInt8(ascii: "{") else {
                            if index >= end { throw .notJSON(index, "unexpected end of the payload") }
                            throw .at(index, "array entries must be objects")
                        }
                        try entry()
                        skipWhitespace()
                        guard index < end else { throw .notJSON(index, "unexpected end of the payload") }
                        if input[index] == UInt8(ascii: ",") {
                            index += 1
                        } else if input[index] == UInt8(ascii: "]") {
                            index += 1
                            break
                        } else {
                            throw .notJSON(index, "expected \",\" or \"]\"")
                        }
                    }
                }
            default:
                throw .at(index, "payload must be a JSON object or an array of objects")
            }
            skipWhitespace()
            guard index == end else { throw .notJSON(index, "unexpected data after the end of the payload") }
            guard !samples.isEmpty else { throw .at(nil, "payload has no telemetry values (null means no reading)") }
            return samples
        }

        /// One entry, `{"k": v, ...}` or `{"ts": ..., "values": {...}}`, at `index`.
        private mutating func entry() throws(Failure) {
            let objectOffset = index
            index += 1
            entryStart = samples.count
            entryKeys = nil
            var timestamp: Int64?
            var tsOffset: Int?
            var valuesOffset: Int?
            var valuesStart = 0
            var sawOtherKey = false
            skipWhitespace()
            if index < end && input[index] == UInt8(ascii: "}") { throw .at(objectOffset, "empty object") }
            while true {
                let keyOffset = index
                let segment = try key(prefixLength: 0)
                try colon()
                if isLiteral(segment, "ts") {
                    if tsOffset != nil { throw .at(keyOffset, "duplicate key \"ts\"", key: "ts") }
                    if sawOtherKey { throw Self.reservedBesideOthers("ts", keyOffset) }
                    tsOffset = keyOffset
                    timestamp = try timestampValue()
                } else if isLiteral(segment, "values") {
                    if valuesOffset != nil { throw .at(keyOffset, "duplicate key \"values\"", key: "values") }
                    if sawOtherKey { throw Self.reservedBesideOthers("values", keyOffset) }
                    guard index < end, input[index] == UInt8(ascii: "{") else {
                        throw .at(index, "\"values\" must be an object", key: "values")
                    }
                    valuesOffset = keyOffset
                    valuesStart = samples.count
                    let valuesObject = index
                    index += 1
                    skipWhitespace()
                    if index < end && input[index] == UInt8(ascii: "}") {
                        throw .at(valuesObject, "\"values\" is an empty object", key: "values")
                    }
                    try members(depth: 1, prefixLength: 0, timestamp: timestamp ?? receivedAt)
                } else {
                    if tsOffset != nil || valuesOffset != nil {
                        let name = TelemetryPayloadError.display(segmentBytes(segment))
                        throw .at(
                            keyOffset,
                            "key \"\(name)\" is not allowed beside \"ts\" and \"values\" (put it inside \"values\")",
                            key: name
                        )
                    }
                    sawOtherKey = true
                    try value(of: segment, keyOffset: keyOffset, depth: 1, prefixLength: 0, timestamp: receivedAt)
                }
                if try nextMember() { break }
            }
            if let tsOffset, valuesOffset == nil {
                throw .at(tsOffset, "\"ts\" needs a \"values\" object beside it", key: "ts")
            }
            if let valuesOffset, tsOffset == nil {
                throw .at(valuesOffset, "\"values\" needs a \"ts\" beside it", key: "values")
            }
            if let timestamp, let tsOffset, let valuesOffset, valuesOffset < tsOffset {
                // "values" came first: its samples were stamped before "ts" was known.
                for position in valuesStart..<samples.count { samples[position].timestamp = timestamp }
            }
        }

        private static func reservedBesideOthers(_ name: String, _ offset: Int) -> Failure {
            .at(
                offset,
                "\"\(name)\" is not allowed beside other keys (use {\"ts\": ..., \"values\": {...}})",
                key: name
            )
        }

        /// The members of an object whose `{` has been read (and that is not empty), flattening
        /// keys under the first `prefixLength` bytes of `path`.
        private mutating func members(depth: Int, prefixLength: Int, timestamp: Int64) throws(Failure) {
            while true {
                let keyOffset = index
                let segment = try key(prefixLength: prefixLength)
                try colon()
                try value(
                    of: segment,
                    keyOffset: keyOffset,
                    depth: depth,
                    prefixLength: prefixLength,
                    timestamp: timestamp
                )
                if try nextMember() { return }
            }
        }

        /// After a member: `,` (returns false) or `}` (returns true).
        private mutating func nextMember() throws(Failure) -> Bool {
            skipWhitespace()
            guard index < end else { throw .notJSON(index, "unexpected end of the payload") }
            switch input[index] {
            case UInt8(ascii: ","):
                index += 1
                skipWhitespace()
                return false
            case UInt8(ascii: "}"):
                index += 1
                return true
            default:
                throw .notJSON(index, "expected \",\" or \"}\"")
            }
        }

        private mutating func colon() throws(Failure) {
            skipWhitespace()
            guard index < end, input[index] == UInt8(ascii: ":") else {
                throw .notJSON(index, "expected \":\" after a key")
            }
            index += 1
            skipWhitespace()
        }

        /// The value of the member whose key is `segment` (under the key prefix), at `index`.
        private mutating func value(
            of segment: StringToken,
            keyOffset: Int,
            depth: Int,
            prefixLength: Int,
            timestamp: Int64
        ) throws(Failure) {
            guard index < end else { throw .notJSON(index, "unexpected end of the payload") }
            let valueOffset = index
            let first = input[index]
            if first == UInt8(ascii: "{") {
                setPath(prefixLength: prefixLength, segment: segment)
                guard depth < TelemetryPayloadParser.maximumDepth else {
                    throw .value(
                        TelemetryPayloadError.display(path),
                        valueOffset,
                        "is nested deeper than \(TelemetryPayloadParser.maximumDepth) objects"
                    )
                }
                index += 1
                skipWhitespace()
                if index < end && input[index] == UInt8(ascii: "}") {
                    throw .value(TelemetryPayloadError.display(path), valueOffset, "is an empty object")
                }
                path.append(UInt8(ascii: "."))
                try members(depth: depth + 1, prefixLength: path.count, timestamp: timestamp)
                return
            }
            // The key must be made before the value is read: a string value may reuse `scratch`.
            let key = keyString(prefixLength: prefixLength, segment: segment)
            let value: TelemetryValue
            switch first {
            case Self.quote:
                let token = try string(limit: TelemetryLimits.maximumStringLength, isKey: false, owner: key)
                guard let token else {
                    throw .value(
                        TelemetryPayloadError.display(key.utf8),
                        valueOffset,
                        "is longer than \(TelemetryLimits.maximumStringLength) bytes"
                    )
                }
                value = .string(makeString(token))
            case UInt8(ascii: "t"):
                try literal("true", key: key)
                value = .bool(true)
            case UInt8(ascii: "f"):
                try literal("false", key: key)
                value = .bool(false)
            case UInt8(ascii: "n"):
                try literal("null", key: key)
                return
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                let scanned = TelemetryPayloadParser.scanNumber(input, from: index)
                guard scanned.valid else {
                    throw .value(TelemetryPayloadError.display(key.utf8), valueOffset, "is not a valid JSON number")
                }
                if scanned.end - index > TelemetryPayloadParser.maximumNumberLength {
                    throw .value(
                        TelemetryPayloadError.display(key.utf8),
                        valueOffset,
                        "is a number of more than \(TelemetryPayloadParser.maximumNumberLength) characters"
                    )
                }
                guard scanned.value.isFinite else {
                    throw .value(
                        TelemetryPayloadError.display(key.utf8),
                        valueOffset,
                        "is too large for a 64-bit floating-point number"
                    )
                }
                index = scanned.end
                value = .number(scanned.value)
            case UInt8(ascii: "["):
                throw .value(
                    TelemetryPayloadError.display(key.utf8),
                    valueOffset,
                    "is an array: telemetry values must be numbers, booleans or strings"
                )
            default:
                throw .value(
                    TelemetryPayloadError.display(key.utf8),
                    valueOffset,
                    "must be a number, boolean or string"
                )
            }
            try append(key, value, timestamp: timestamp, keyOffset: keyOffset)
        }

        private mutating func literal(_ word: StaticString, key: String) throws(Failure) {
            let length = word.utf8CodeUnitCount
            let matches =
                index + length <= end
                && word.withUTF8Buffer { expected in
                    for offset in 0..<length where input[index + offset] != expected[offset] { return false }
                    return true
                }
            guard matches else {
                throw .value(TelemetryPayloadError.display(key.utf8), index, "must be a number, boolean or string")
            }
            index += length
        }

        private mutating func append(
            _ key: String,
            _ value: TelemetryValue,
            timestamp: Int64,
            keyOffset: Int
        ) throws(Failure) {
            let inEntry = samples.count - entryStart
            if let inserted = entryKeys?.insert(key).inserted {
                if !inserted { throw Self.duplicate(key, keyOffset) }
            } else if inEntry < 16 {
                for position in entryStart..<samples.count where samples[position].key == key {
                    throw Self.duplicate(key, keyOffset)
                }
            } else {
                var keys = Set<String>(minimumCapacity: inEntry * 2)
                for position in entryStart..<samples.count { keys.insert(samples[position].key) }
                if !keys.insert(key).inserted { throw Self.duplicate(key, keyOffset) }
                entryKeys = keys
            }
            guard samples.count < TelemetryLimits.maximumSamplesPerMessage else {
                throw .at(keyOffset, "more than \(TelemetryLimits.maximumSamplesPerMessage) samples in one message")
            }
            samples.append(TelemetrySample(key: key, timestamp: timestamp, value: value))
        }

        private static func duplicate(_ key: String, _ offset: Int) -> Failure {
            let name = TelemetryPayloadError.display(key.utf8)
            return .at(offset, "duplicate key \"\(name)\"", key: name)
        }

        /// `ts`: an integer number of milliseconds from 0 to the end of 9999.
        private mutating func timestampValue() throws(Failure) -> Int64 {
            let start = index
            guard index < end else { throw .notJSON(index, "unexpected end of the payload") }
            let first = input[index]
            if first == UInt8(ascii: "-") { throw .at(start, "\"ts\" must not be negative", key: "ts") }
            guard first &- 0x30 < 10 else {
                let problem =
                    first == Self.quote ? "a number, not a string" : "an integer number of milliseconds since 1970"
                throw .at(start, "\"ts\" must be \(problem)", key: "ts")
            }
            var value: Int64 = 0
            if first == UInt8(ascii: "0") {
                index += 1
                if index < end && input[index] &- 0x30 < 10 {
                    throw .at(start, "\"ts\" is not a valid JSON number", key: "ts")
                }
            } else {
                while index < end {
                    let digit = input[index] &- 0x30
                    guard digit < 10 else { break }
                    if value <= Self.latestTimestamp { value = value * 10 + Int64(digit) }
                    index += 1
                }
            }
            if index < end, input[index] == UInt8(ascii: ".") || input[index] | 0x20 == UInt8(ascii: "e") {
                throw .at(
                    start,
                    "\"ts\" must be an integer number of milliseconds (no fraction or exponent)",
                    key: "ts"
                )
            }
            guard value <= Self.latestTimestamp else { throw .at(start, "\"ts\" is after the year 9999", key: "ts") }
            return value
        }

        // MARK: keys

        /// A key at `index` (must be a string): not empty, no control characters, and short
        /// enough once put after the first `prefixLength` bytes of `path`.
        private mutating func key(prefixLength: Int) throws(Failure) -> StringToken {
            let offset = index
            guard index < end, input[index] == Self.quote else {
                if index >= end { throw .notJSON(index, "unexpected end of the payload") }
                throw .notJSON(index, "expected a key in double quotes")
            }
            let limit = TelemetryLimits.maximumKeyLength - prefixLength
            guard let token = try string(limit: limit, isKey: true, owner: nil) else {
                var shown = Array(path.prefix(prefixLength))
                shown.append(
                    contentsOf: input[(offset + 1)..<min(end, offset + 5 + TelemetryPayloadError.displayedKeyLength)]
                )
                let name = TelemetryPayloadError.display(shown)
                throw .at(offset, "key \"\(name)\" is longer than \(TelemetryLimits.maximumKeyLength) bytes", key: name)
            }
            if token.count == 0 {
                if prefixLength == 0 { throw .at(offset, "empty key") }
                let owner = TelemetryPayloadError.display(path.prefix(prefixLength - 1))
                throw .at(offset, "empty key inside \"\(owner)\"", key: owner)
            }
            return token
        }

        private func segmentBytes(_ token: StringToken) -> [UInt8] {
            token.escaped ? Array(scratch.prefix(token.count)) : Array(input[token.start..<(token.start + token.count)])
        }

        private func isLiteral(_ token: StringToken, _ word: StaticString) -> Bool {
            guard token.count == word.utf8CodeUnitCount else { return false }
            return word.withUTF8Buffer { expected in
                for offset in 0..<token.count {
                    let byte = token.escaped ? scratch[offset] : input[token.start + offset]
                    if byte != expected[offset] { return false }
                }
                return true
            }
        }

        /// Makes `path` the first `prefixLength` bytes of itself followed by the segment: the
        /// flattened key's bytes.
        private mutating func setPath(prefixLength: Int, segment: StringToken) {
            path.removeSubrange(prefixLength...)
            if segment.escaped {
                path.append(contentsOf: scratch[0..<segment.count])
            } else {
                path.append(contentsOf: input[segment.start..<(segment.start + segment.count)])
            }
        }

        private mutating func keyString(prefixLength: Int, segment: StringToken) -> String {
            if prefixLength == 0 { return makeString(segment) }
            setPath(prefixLength: prefixLength, segment: segment)
            return String(decoding: path, as: UTF8.self)
        }

        // MARK: strings

        private func makeString(_ token: StringToken) -> String {
            if token.escaped {
                return scratch.withUnsafeBufferPointer {
                    String(decoding: UnsafeBufferPointer(rebasing: $0[0..<token.count]), as: UTF8.self)
                }
            }
            return String(
                decoding: UnsafeBufferPointer(rebasing: input[token.start..<(token.start + token.count)]),
                as: UTF8.self
            )
        }

        /// The string whose opening quote is at `index`, validated (UTF-8, escapes). `nil` when it
        /// has more than `limit` bytes. `owner`: the key whose value this is (for messages).
        private mutating func string(limit: Int, isKey: Bool, owner: String?) throws(Failure) -> StringToken? {
            let opening = index
            index += 1
            let start = index
            while index < end {
                let byte = input[index]
                if byte == Self.quote {
                    let count = index - start
                    index += 1
                    return count > limit ? nil : StringToken(start: start, count: count, escaped: false)
                }
                if byte == Self.backslash {
                    return try escapedString(from: start, limit: limit, isKey: isKey, owner: owner)
                }
                if byte < 0x20 { throw .notJSON(index, "control character in a string (escape it)") }
                if byte < 0x80 {
                    index += 1
                } else {
                    try utf8Sequence(owner: owner)
                }
                if index - start > limit { return nil }
            }
            throw .notJSON(opening, "unterminated string")
        }

        /// The rest of a string from its first backslash, unescaped into `scratch`.
        private mutating func escapedString(
            from start: Int,
            limit: Int,
            isKey: Bool,
            owner: String?
        ) throws(Failure) -> StringToken? {
            scratch.removeAll(keepingCapacity: true)
            scratch.append(contentsOf: input[start..<index])
            while index < end {
                let byte = input[index]
                if byte == Self.quote {
                    index += 1
                    return scratch.count > limit ? nil : StringToken(start: start, count: scratch.count, escaped: true)
                }
                if byte == Self.backslash {
                    let escapeOffset = index
                    guard index + 1 < end else { break }
                    let kind = input[index + 1]
                    index += 2
                    switch kind {
                    case Self.quote, Self.backslash, UInt8(ascii: "/"): scratch.append(kind)
                    case UInt8(ascii: "b"): scratch.append(0x08)
                    case UInt8(ascii: "f"): scratch.append(0x0C)
                    case UInt8(ascii: "n"): scratch.append(0x0A)
                    case UInt8(ascii: "r"): scratch.append(0x0D)
                    case UInt8(ascii: "t"): scratch.append(0x09)
                    case UInt8(ascii: "u"):
                        var scalar = try hex4(at: escapeOffset)
                        if scalar >= 0xD800 && scalar <= 0xDBFF {
                            guard index + 1 < end, input[index] == Self.backslash, input[index + 1] == UInt8(ascii: "u")
                            else {
                                throw Self.stringProblem(owner, escapeOffset, "has an unpaired surrogate escape")
                            }
                            let low = try hex4(at: index)
                            guard low >= 0xDC00 && low <= 0xDFFF else {
                                throw Self.stringProblem(owner, escapeOffset, "has an unpaired surrogate escape")
                            }
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        } else if scalar >= 0xDC00 && scalar <= 0xDFFF {
                            throw Self.stringProblem(owner, escapeOffset, "has an unpaired surrogate escape")
                        }
                        if isKey && scalar < 0x20 { throw .at(escapeOffset, "key contains a control character") }
                        appendUTF8(scalar)
                    default:
                        throw .notJSON(escapeOffset, "invalid escape in a string")
                    }
                } else if byte < 0x20 {
                    throw .notJSON(index, "control character in a string (escape it)")
                } else if byte < 0x80 {
                    scratch.append(byte)
                    index += 1
                } else {
                    let sequenceStart = index
                    try utf8Sequence(owner: owner)
                    scratch.append(contentsOf: input[sequenceStart..<index])
                }
                if scratch.count > limit { return nil }
            }
            throw .notJSON(start - 1, "unterminated string")
        }

        private static func stringProblem(_ owner: String?, _ offset: Int, _ problem: String) -> Failure {
            if let owner { return .value(TelemetryPayloadError.display(owner.utf8), offset, problem) }
            return .at(offset, "key \(problem)")
        }

        /// The four hex digits of the `\u` escape at `escapeOffset`; moves past them.
        private mutating func hex4(at escapeOffset: Int) throws(Failure) -> UInt32 {
            let digitsStart = escapeOffset + 2
            guard digitsStart + 4 <= end else { throw .notJSON(escapeOffset, "invalid \\u escape") }
            var value: UInt32 = 0
            for offset in 0..<4 {
                let byte = input[digitsStart + offset]
                let digit: UInt8
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - 0x30
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - 0x57
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - 0x37
                default: throw .notJSON(escapeOffset, "invalid \\u escape")
                }
                value = value << 4 | UInt32(digit)
            }
            index = digitsStart + 4
            return value
        }

        private mutating func appendUTF8(_ scalar: UInt32) {
            switch scalar {
            case ..<0x80:
                scratch.append(UInt8(scalar))
            case ..<0x800:
                scratch.append(UInt8(0xC0 | scalar >> 6))
                scratch.append(UInt8(0x80 | scalar & 0x3F))
            case ..<0x10000:
                scratch.append(UInt8(0xE0 | scalar >> 12))
                scratch.append(UInt8(0x80 | scalar >> 6 & 0x3F))
                scratch.append(UInt8(0x80 | scalar & 0x3F))
            default:
                scratch.append(UInt8(0xF0 | scalar >> 18))
                scratch.append(UInt8(0x80 | scalar >> 12 & 0x3F))
                scratch.append(UInt8(0x80 | scalar >> 6 & 0x3F))
                scratch.append(UInt8(0x80 | scalar & 0x3F))
            }
        }

        /// Validates the multi-byte UTF-8 sequence at `index` (Unicode table 3-7: no overlong
        /// forms, no surrogates, nothing past U+10FFFF) and moves past it.
        private mutating func utf8Sequence(owner: String?) throws(Failure) {
            let lead = input[index]
            let length: Int
            var low: UInt8 = 0x80
            var high: UInt8 = 0xBF
            switch lead {
            case 0xC2...0xDF: length = 2
            case 0xE0: length = 3; low = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: length = 3
            case 0xED: length = 3; high = 0x9F
            case 0xF0: length = 4; low = 0x90
            case 0xF1...0xF3: length = 4
            case 0xF4: length = 4; high = 0x8F
            default: throw Self.stringProblem(owner, index, "is not valid UTF-8")
            }
            guard index + length <= end else { throw Self.stringProblem(owner, index, "is not valid UTF-8") }
            let second = input[index + 1]
            guard second >= low && second <= high else { throw Self.stringProblem(owner, index, "is not valid UTF-8") }
            for offset in 2..<max(2, length) where input[index + offset] & 0xC0 != 0x80 {
                throw Self.stringProblem(owner, index, "is not valid UTF-8")
            }
            index += length
        }

        @inline(__always)
        private mutating func skipWhitespace() {
            while index < end {
                let byte = input[index]
                guard byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 else { return }
                index += 1
            }
        }
    }
}

import Testing

@testable import MeridianCore

private func parse(_ text: String, receivedAt: Int64 = 1_000) throws(TelemetryPayloadError) -> [TelemetrySample] {
    try TelemetryPayloadParser.parse(Array(text.utf8), receivedAt: receivedAt)
}

private func sample(_ key: String, _ timestamp: Int64, _ value: TelemetryValue) -> TelemetrySample {
    TelemetrySample(key: key, timestamp: timestamp, value: value)
}

/// The error `text` is refused with (fails the test when it is accepted).
private func refusal(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> TelemetryPayloadError? {
    do throws(TelemetryPayloadError) {
        let samples = try parse(text)
        Issue.record("accepted: \(samples)", sourceLocation: sourceLocation)
        return nil
    } catch {
        return error
    }
}

@Suite("Telemetry payload parser")
struct TelemetryPayloadParserTests {
    // MARK: formats

    @Test("flat object: numbers, booleans and strings stamped with the receive time")
    func flatObject() throws {
        let samples = try parse(
            #"{"temp": 21.5, "on": true, "off": false, "mode": "eco", "n": -3, "big": 1e3}"#,
            receivedAt: 42
        )
        #expect(
            samples == [
                sample("temp", 42, .number(21.5)), sample("on", 42, .bool(true)), sample("off", 42, .bool(false)),
                sample("mode", 42, .string("eco")), sample("n", 42, .number(-3)), sample("big", 42, .number(1000)),
            ]
        )
    }

    @Test("ts/values object: samples at the device's ts, in either key order")
    func timestamped() throws {
        #expect(
            try parse(#"{"ts": 1700000000000, "values": {"temp": 21.5, "on": true}}"#) == [
                sample("temp", 1_700_000_000_000, .number(21.5)), sample("on", 1_700_000_000_000, .bool(true)),
            ]
        )
        #expect(
            try parse(#"{"values": {"temp": 21.5, "gps": {"lat": 1}}, "ts": 5}"#) == [
                sample("temp", 5, .number(21.5)), sample("gps.lat", 5, .number(1)),
            ]
        )
        #expect(try parse(#"{"ts": 0, "values": {"a": 1}}"#) == [sample("a", 0, .number(1))])
        #expect(
            try parse(#"{"ts": 253402300799999, "values": {"a": 1}}"#) == [sample("a", 253_402_300_799_999, .number(1))]
        )
    }

    @Test("array of entries, both forms mixed; the same key may repeat across entries")
    func arrayOfEntries() throws {
        let text =
            #"[{"ts": 1, "values": {"t": 1}}, {"t": 2}, {"values": {"t": 3}, "ts": 3}, {"ts": 4, "values": {"t": "x"}}]"#
        #expect(
            try parse(text, receivedAt: 99) == [
                sample("t", 1, .number(1)), sample("t", 99, .number(2)), sample("t", 3, .number(3)),
                sample("t", 4, .string("x")),
            ]
        )
    }

    @Test("nested objects flatten with dots, up to 8 objects deep")
    func nesting() throws {
        #expect(
            try parse(#"{"gps": {"lat": 1.5, "lon": -2.25, "fix": {"ok": true}}, "x": 0}"#) == [
                sample("gps.lat", 1_000, .number(1.5)), sample("gps.lon", 1_000, .number(-2.25)),
                sample("gps.fix.ok", 1_000, .bool(true)), sample("x", 1_000, .number(0)),
            ]
        )
        let eight = String(repeating: #"{"k":"#, count: 7) + #"{"leaf":1"# + String(repeating: "}", count: 8)
        #expect(try parse(eight).map(\.key) == [String(repeating: "k.", count: 7) + "leaf"])
        let nine = String(repeating: #"{"k":"#, count: 8) + #"{"leaf":1"# + String(repeating: "}", count: 9)
        let error = refusal(nine)
        #expect(error?.reason.contains("nested deeper than 8") == true)
        #expect(error?.key == "k.k.k.k.k.k.k.k")
    }

    @Test("null means no reading: the key is skipped")
    func nullSkipped() throws {
        #expect(try parse(#"{"a": null, "b": 2, "c": {"d": null}}"#) == [sample("b", 1_000, .number(2))])
        #expect(refusal(#"{"a": null}"#)?.reason == "payload has no telemetry values (null means no reading)")
    }

    @Test("strings: every JSON escape, surrogate pairs, raw UTF-8, unicode keys")
    func strings() throws {
        let samples = try parse(
            #"{"s": "a\"b\\c\/d\b\f\n\r\t\u0041\u00e9\u20AC\ud83d\ude00 é€😀", "température": 1, "\u6e29\u5ea6": 2, "😀": "ok"}"#
        )
        #expect(
            samples.map(\.value) == [
                .string("a\"b\\c/d\u{08}\u{0C}\n\r\tAé€😀 é€😀"), .number(1), .number(2), .string("ok"),
            ]
        )
        #expect(samples.map(\.key) == ["s", "température", "温度", "😀"])
        #expect(try parse(#"{"e": ""}"#) == [sample("e", 1_000, .string(""))])
        #expect(try parse(#"{"z": "\u0000"}"#) == [sample("z", 1_000, .string("\u{0}"))])
    }

    @Test("whitespace anywhere between tokens")
    func whitespace() throws {
        #expect(
            try parse(" \n\t\r[ { \"ts\" :\n1 ,\"values\" : { \"a\" : 1 } } ,{\"b\":true} ]\r\n ") == [
                sample("a", 1, .number(1)), sample("b", 1_000, .bool(true)),
            ]
        )
    }

    @Test("limits are inclusive: longest key, longest string, most samples")
    func limitsInclusive() throws {
        let key = String(repeating: "k", count: TelemetryLimits.maximumKeyLength)
        #expect(try parse("{\"\(key)\": 1}").first?.key == key)
        let nestedKey = String(repeating: "n", count: TelemetryLimits.maximumKeyLength - 2)
        #expect(try parse("{\"g\": {\"\(nestedKey)\": 1}}").first?.key == "g." + nestedKey)
        let value = String(repeating: "é", count: TelemetryLimits.maximumStringLength / 2)
        #expect(try parse("{\"s\": \"\(value)\"}").first?.value == .string(value))
        let many = (0..<TelemetryLimits.maximumSamplesPerMessage).map { "\"k\($0)\":\($0)" }.joined(separator: ",")
        let samples = try parse("{\(many)}")
        #expect(samples.count == TelemetryLimits.maximumSamplesPerMessage)
        #expect(samples.last == sample("k9999", 1_000, .number(9_999)))
    }

    // MARK: refusals

    /// A refused payload, a fragment its reason must contain (naming the field or key), and the
    /// byte offset it must give (`nil`: no offset).
    struct Refusal: CustomTestStringConvertible, Sendable {
        var payload: String
        var mentions: [String]
        var offset: Int?
        var testDescription: String { payload.count > 60 ? String(payload.prefix(60)) + "…" : payload }
    }

    static let refusals: [Refusal] = [
        // not JSON
        Refusal(payload: "", mentions: ["empty"], offset: nil),
        Refusal(payload: "   ", mentions: ["empty"], offset: nil),
        Refusal(payload: "temp=1", mentions: ["JSON object or an array"], offset: 0),
        Refusal(payload: #"{"a": 1} x"#, mentions: ["not valid JSON", "after the end"], offset: 9),
        Refusal(payload: #"{"a": 1}{"b": 2}"#, mentions: ["after the end"], offset: 8),
        Refusal(payload: #"{"a": 1"#, mentions: ["not valid JSON", "end of the payload"], offset: 7),
        Refusal(payload: #"{"a" 1}"#, mentions: ["\":\""], offset: 5),
        Refusal(payload: #"{"a": 1,}"#, mentions: ["key in double quotes"], offset: 8),
        Refusal(payload: #"{a: 1}"#, mentions: ["key in double quotes"], offset: 1),
        Refusal(payload: #"{"a": 1 "b": 2}"#, mentions: ["\",\" or \"}\""], offset: 8),
        Refusal(payload: #"{"a": "x}"#, mentions: ["unterminated string"], offset: 6),
        Refusal(payload: "{\"a\": \"x\ny\"}", mentions: ["control character"], offset: 8),
        Refusal(payload: #"{"a": "\x"}"#, mentions: ["invalid escape"], offset: 7),
        Refusal(payload: #"{"a": "\u12G4"}"#, mentions: ["\\u escape"], offset: 7),
        Refusal(payload: #"{"a": tru}"#, mentions: ["\"a\"", "number, boolean or string"], offset: 6),
        Refusal(payload: #"{"a": nul}"#, mentions: ["\"a\"", "number, boolean or string"], offset: 6),
        Refusal(payload: #"{"a": 'x'}"#, mentions: ["\"a\"", "number, boolean or string"], offset: 6),
        // top level and entries
        Refusal(payload: "{}", mentions: ["empty object"], offset: 0),
        Refusal(payload: "[]", mentions: ["no telemetry values"], offset: nil),
        Refusal(payload: #"[{"a": 1}, {}]"#, mentions: ["empty object"], offset: 11),
        Refusal(payload: #"[{"a": 1}, 2]"#, mentions: ["array entries must be objects"], offset: 11),
        Refusal(payload: #"[[{"a": 1}]]"#, mentions: ["array entries must be objects"], offset: 1),
        Refusal(payload: #"[{"a": 1}"#, mentions: ["end of the payload"], offset: 9),
        Refusal(payload: "42", mentions: ["JSON object or an array"], offset: 0),
        Refusal(payload: #""temp""#, mentions: ["JSON object or an array"], offset: 0),
        // values
        Refusal(
            payload: #"{"temp": [1, 2]}"#,
            mentions: ["\"temp\"", "array", "numbers, booleans or strings"],
            offset: 9
        ),
        Refusal(payload: #"{"gps": {}}"#, mentions: ["\"gps\"", "empty object"], offset: 8),
        Refusal(payload: #"{"gps": {"lat": [1]}}"#, mentions: ["\"gps.lat\"", "array"], offset: 16),
        Refusal(payload: #"{"temp": NaN}"#, mentions: ["\"temp\"", "number, boolean or string"], offset: 9),
        Refusal(payload: #"{"temp": Infinity}"#, mentions: ["\"temp\"", "number, boolean or string"], offset: 9),
        Refusal(payload: #"{"temp": -Infinity}"#, mentions: ["\"temp\"", "not a valid JSON number"], offset: 9),
        Refusal(payload: #"{"temp": 01}"#, mentions: ["\"temp\"", "not a valid JSON number"], offset: 9),
        Refusal(payload: #"{"temp": -01.5}"#, mentions: ["\"temp\"", "not a valid JSON number"], offset: 9),
        Refusal(payload: #"{"temp": 1.}"#, mentions: ["\"temp\"", "not a valid JSON number"], offset: 9),
        Refusal(payload: #"{"temp": 1.e5}"#, mentions: ["\"temp\"", "not a valid JSON number"], offset: 9),
        Refusal(payload: #"{"temp": .5}"#, mentions: ["\"temp\"", "number, boolean or string"], offset: 9),
        Refusal(payload: #"{"temp": +1}"#, mentions: ["\"temp\"", "number, boolean or string"], offset: 9),
        Refusal(payload: #"{"temp": 1e}"#, mentions: ["\"temp\"", "not a valid JSON number"], offset: 9),
        Refusal(payload: #"{"temp": 1e+}"#, mentions: ["\"temp\"", "not a valid JSON number"], offset: 9),
        Refusal(payload: #"{"temp": -}"#, mentions: ["\"temp\"", "not a valid JSON number"], offset: 9),
        Refusal(payload: #"{"temp": 0x10}"#, mentions: ["\",\" or \"}\""], offset: 10),
        Refusal(payload: #"{"temp": 1.5.3}"#, mentions: ["\",\" or \"}\""], offset: 12),
        Refusal(payload: #"{"temp": 1e400}"#, mentions: ["\"temp\"", "too large"], offset: 9),
        Refusal(payload: #"{"temp": -1.8e308}"#, mentions: ["\"temp\"", "too large"], offset: 9),
        Refusal(
            payload: "{\"s\": \"" + String(repeating: "x", count: 4097) + "\"}",
            mentions: ["\"s\"", "longer than 4096 bytes"],
            offset: 6
        ),
        Refusal(
            payload: "{\"s\": \"" + String(repeating: "\\n", count: 4097) + "\"}",
            mentions: ["\"s\"", "longer than 4096 bytes"],
            offset: 6
        ),
        Refusal(payload: #"{"s": "\ud800"}"#, mentions: ["\"s\"", "unpaired surrogate"], offset: 7),
        Refusal(payload: #"{"s": "\ud800x"}"#, mentions: ["\"s\"", "unpaired surrogate"], offset: 7),
        Refusal(payload: #"{"s": "\udc00\ud800"}"#, mentions: ["\"s\"", "unpaired surrogate"], offset: 7),
        Refusal(payload: #"{"s": "\ud800\u0041"}"#, mentions: ["\"s\"", "unpaired surrogate"], offset: 7),
        // keys
        Refusal(payload: #"{"": 1}"#, mentions: ["empty key"], offset: 1),
        Refusal(payload: #"{"gps": {"": 1}}"#, mentions: ["empty key inside \"gps\""], offset: 9),
        Refusal(
            payload: "{\"" + String(repeating: "k", count: 129) + "\": 1}",
            mentions: ["longer than 128 bytes", "\"kkkk"],
            offset: 1
        ),
        Refusal(
            payload: "{\"g\": {\"" + String(repeating: "k", count: 127) + "\": 1}}",
            mentions: ["longer than 128 bytes", "\"g.kkk"],
            offset: 7
        ),
        Refusal(payload: #"{"a\u0001b": 1}"#, mentions: ["key contains a control character"], offset: 3),
        Refusal(payload: #"{"\udfff": 1}"#, mentions: ["key has an unpaired surrogate"], offset: 2),
        Refusal(payload: #"{"temp": 1, "temp": 2}"#, mentions: ["duplicate key \"temp\""], offset: 12),
        Refusal(
            payload: #"{"temp": 1, "te\u006dp": null, "te\u006dp": 2}"#,
            mentions: ["duplicate key \"temp\""],
            offset: 31
        ),
        Refusal(payload: #"{"gps.lat": 1, "gps": {"lat": 2}}"#, mentions: ["duplicate key \"gps.lat\""], offset: 23),
        Refusal(payload: #"{"ts": 1, "values": {"a": 1, "a": 2}}"#, mentions: ["duplicate key \"a\""], offset: 29),
        // ts / values
        Refusal(payload: #"{"ts": 1.5, "values": {"a": 1}}"#, mentions: ["\"ts\"", "integer"], offset: 7),
        Refusal(payload: #"{"ts": 1700000000000.0, "values": {"a": 1}}"#, mentions: ["\"ts\"", "integer"], offset: 7),
        Refusal(payload: #"{"ts": 1.7e12, "values": {"a": 1}}"#, mentions: ["\"ts\"", "integer"], offset: 7),
        Refusal(payload: #"{"ts": 17e11, "values": {"a": 1}}"#, mentions: ["\"ts\"", "integer"], offset: 7),
        Refusal(
            payload: #"{"ts": "1700000000000", "values": {"a": 1}}"#,
            mentions: ["\"ts\"", "not a string"],
            offset: 7
        ),
        Refusal(payload: #"{"ts": -1, "values": {"a": 1}}"#, mentions: ["\"ts\"", "negative"], offset: 7),
        Refusal(payload: #"{"ts": null, "values": {"a": 1}}"#, mentions: ["\"ts\"", "integer"], offset: 7),
        Refusal(payload: #"{"ts": 253402300800000, "values": {"a": 1}}"#, mentions: ["\"ts\"", "9999"], offset: 7),
        Refusal(
            payload: #"{"ts": 99999999999999999999999, "values": {"a": 1}}"#,
            mentions: ["\"ts\"", "9999"],
            offset: 7
        ),
        Refusal(
            payload: #"{"ts": 01, "values": {"a": 1}}"#,
            mentions: ["\"ts\"", "not a valid JSON number"],
            offset: 7
        ),
        Refusal(payload: #"{"ts": 1}"#, mentions: ["\"ts\" needs a \"values\""], offset: 1),
        Refusal(payload: #"{"values": {"a": 1}}"#, mentions: ["\"values\" needs a \"ts\""], offset: 1),
        Refusal(payload: #"{"ts": 1, "values": 5}"#, mentions: ["\"values\" must be an object"], offset: 20),
        Refusal(payload: #"{"ts": 1, "values": {}}"#, mentions: ["\"values\" is an empty object"], offset: 20),
        Refusal(
            payload: #"{"ts": 1, "values": {"a": 1}, "x": 1}"#,
            mentions: ["key \"x\"", "beside \"ts\" and \"values\""],
            offset: 30
        ),
        Refusal(
            payload: #"{"ts": 1, "x": 1, "values": {"a": 1}}"#,
            mentions: ["key \"x\"", "beside \"ts\" and \"values\""],
            offset: 10
        ),
        Refusal(
            payload: #"{"x": 1, "ts": 1, "values": {"a": 1}}"#,
            mentions: ["\"ts\" is not allowed beside other keys"],
            offset: 9
        ),
        Refusal(
            payload: #"{"x": 1, "values": {"a": 1}}"#,
            mentions: ["\"values\" is not allowed beside other keys"],
            offset: 9
        ),
        Refusal(payload: #"{"ts": 1, "ts": 2, "values": {"a": 1}}"#, mentions: ["duplicate key \"ts\""], offset: 10),
        Refusal(
            payload: #"{"ts": 1, "values": {"a": 1}, "values": {"b": 1}}"#,
            mentions: ["duplicate key \"values\""],
            offset: 30
        ),
    ]

    @Test("refusals name the field or key and the byte", arguments: refusals)
    func refused(_ row: Refusal) {
        guard let error = refusal(row.payload) else { return }
        for fragment in row.mentions {
            #expect(error.reason.contains(fragment), "\(error.reason)")
        }
        #expect(error.offset == row.offset, "\(error.reason)")
        if let offset = row.offset {
            #expect(error.reason.hasSuffix("(byte \(offset))"))
        }
        #expect(error.description == error.reason)
    }

    @Test("invalid UTF-8 in keys and strings is refused (overlong, surrogates, beyond U+10FFFF, truncated)")
    func invalidUTF8() {
        let bad: [[UInt8]] = [
            [0xC0, 0xAF], [0xE0, 0x80, 0xAF], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xF5, 0x80, 0x80, 0x80],
            [0x80], [0xE2, 0x82], [0xFF],
        ]
        for sequence in bad {
            let value = Array(#"{"s": "a"#.utf8) + sequence + Array(#""}"#.utf8)
            do throws(TelemetryPayloadError) {
                _ = try TelemetryPayloadParser.parse(value, receivedAt: 0)
                Issue.record("accepted a string with \(sequence)")
            } catch {
                #expect(error.reason == "value of \"s\" is not valid UTF-8 (byte 8)")
            }
            let key = Array(#"{"k"#.utf8) + sequence + Array(#"": 1}"#.utf8)
            do throws(TelemetryPayloadError) {
                _ = try TelemetryPayloadParser.parse(key, receivedAt: 0)
                Issue.record("accepted a key with \(sequence)")
            } catch {
                #expect(error.reason == "key is not valid UTF-8 (byte 3)")
            }
        }
    }

    @Test("reasons carry no payload beyond a key name, and key names are cut to 64 bytes")
    func reasonsAreBounded() {
        let secretValue = refusal(#"{"token": "s3cr3t-value\q"}"#)
        #expect(secretValue?.reason.contains("s3cr3t") == false)
        let longKey = String(repeating: "é", count: 100)
        let error = refusal("{\"\(longKey)\": 1}")
        #expect(error?.key == String(repeating: "é", count: 32) + "…")
        #expect(error?.reason.utf8.count ?? 1_000 < 120)
        let control = refusal(#"{"a\tb": [1]}"#)
        #expect(control?.key == "a?b")
    }

    // MARK: numbers

    @Test("numbers read exactly as Double(String) reads them")
    func numberEdgeCases() throws {
        let texts = [
            "0", "-0", "0.0", "-0.0", "0e0", "0E-999", "0e999", "1", "-1", "9007199254740992", "9007199254740993",
            "18446744073709551615", "18446744073709551616", "123456789012345678901234567890", "1e22", "1e23", "9e37",
            "1e-22",
            "1e-23", "0.1", "0.2", "0.30000000000000004", "1.7976931348623157e308", "2.2250738585072014e-308",
            "4.9e-324",
            "2.4703282292062327e-324", "2.4703282292062328e-324", "1e-400", "0.000000000000000000000000000001",
            "123.456e-7",
            "1.00000000000000011102230246251565404236316680908203125", "9007199254740993e-5", "3.0e+3", "7E2",
        ]
        for text in texts {
            let parsed = try #require(TelemetryPayloadParser.number(fromJSON: text), "\(text)")
            let expected = try #require(Double(text))
            #expect(parsed.value.bitPattern == expected.bitPattern, "\(text): \(parsed.value) vs \(expected)")
            let samples = try parse("{\"n\": \(text)}")
            #expect(samples.first?.value.isIdentical(to: .number(expected)) == true, "\(text)")
        }
        #expect(TelemetryPayloadParser.number(fromJSON: "1e23")?.fast == true)
        #expect(TelemetryPayloadParser.number(fromJSON: "0.1")?.fast == true)
        #expect(TelemetryPayloadParser.number(fromJSON: "9007199254740993")?.fast == false)
    }

    @Test("the fast path agrees bit for bit with Double(String) on random decimals")
    func fastPathAgrees() throws {
        var random = SplitMix64(seed: 0x5EED_CAFE)
        var fastCount = 0
        let rounds = 200_000
        for _ in 0..<rounds {
            let digitCount = Int(random.next() % 17) + 1
            var digits = ""
            for position in 0..<digitCount {
                let digit = position == 0 ? random.next() % 9 + 1 : random.next() % 10
                digits.append(Character(Unicode.Scalar(UInt8(48 + digit))))
            }
            // Place the decimal point anywhere (or not at all), then maybe add an exponent.
            let point = Int(random.next() % UInt64(digitCount + 3))
            var text: String
            if point == 0 || point > digitCount {
                text = digits
            } else if point == digitCount {
                text = "0." + String(repeating: "0", count: Int(random.next() % 4)) + digits
            } else {
                text = String(digits.prefix(point)) + "." + String(digits.dropFirst(point))
            }
            if random.next() % 2 == 0 {
                let exponent = Int(random.next() % 81) - 40
                text += (random.next() % 2 == 0 ? "e" : "E") + String(exponent)
            }
            if random.next() % 2 == 0 { text = "-" + text }
            let parsed = try #require(TelemetryPayloadParser.number(fromJSON: text), "\(text)")
            let expected = try #require(Double(text), "\(text)")
            #expect(parsed.value.bitPattern == expected.bitPattern, "\(text): \(parsed.value) vs \(expected)")
            if parsed.fast { fastCount += 1 }
        }
        // Most of these have at most 17 digits and small exponents: the fast path must take them.
        #expect(fastCount > rounds / 2)
    }

    @Test("fast path: exact for every mantissa below 2^53 with a power of ten up to 22")
    func fastPathBounds() {
        var random = SplitMix64(seed: 7)
        for _ in 0..<50_000 {
            let mantissa = random.next() % (1 << 53)
            let exponent = Int(random.next() % 45) - 22
            guard
                let fast = TelemetryPayloadParser.fastPathValue(mantissa: mantissa, exponent: exponent, negative: false)
            else {
                Issue.record("fast path refused \(mantissa)e\(exponent)")
                continue
            }
            #expect(fast.bitPattern == Double("\(mantissa)e\(exponent)")?.bitPattern, "\(mantissa)e\(exponent)")
        }
        #expect(TelemetryPayloadParser.fastPathValue(mantissa: (1 << 53) + 1, exponent: 0, negative: false) == nil)
        #expect(TelemetryPayloadParser.fastPathValue(mantissa: 1, exponent: -23, negative: false) == nil)
        #expect(TelemetryPayloadParser.fastPathValue(mantissa: 1 << 52, exponent: 23, negative: false) == nil)
    }

    // MARK: round trips and hostile input

    @Test("random samples serialised by a simple writer parse back identical")
    func randomRoundTrip() throws {
        var random = SplitMix64(seed: 2024)
        for round in 0..<300 {
            var entries: [(ts: Int64?, samples: [TelemetrySample])] = []
            for _ in 0..<(Int(random.next() % 4) + 1) {
                let ts: Int64? = random.next() % 2 == 0 ? Int64(random.next() % 253_402_300_800_000) : nil
                var keys = Set<String>()
                var samples: [TelemetrySample] = []
                for _ in 0..<(Int(random.next() % 6) + 1) {
                    var key = random.string(maxLength: 20, allowEmpty: false, controls: false)
                    if ts == nil && (key == "ts" || key == "values") { key += "_" }
                    guard keys.insert(key).inserted else { continue }
                    samples.append(TelemetrySample(key: key, timestamp: ts ?? 77, value: random.value()))
                }
                entries.append((ts, samples))
            }
            let json = JSONTestWriter.write(entries, asArray: entries.count > 1 || round % 2 == 0)
            let parsed = try TelemetryPayloadParser.parse(Array(json.utf8), receivedAt: 77)
            let expected = entries.flatMap(\.samples)
            #expect(parsed.count == expected.count, "\(json)")
            for (got, want) in zip(parsed, expected) {
                #expect(
                    got.key == want.key && got.timestamp == want.timestamp && got.value.isIdentical(to: want.value),
                    "\(json)"
                )
            }
        }
    }

    @Test("giant and hostile inputs are refused without crashing")
    func hostileInputs() {
        let deepObjects = String(repeating: #"{"a":"#, count: 100_000) + "1" + String(repeating: "}", count: 100_000)
        #expect(refusal(deepObjects)?.reason.contains("nested deeper than 8 objects") == true)
        let deepArrays = String(repeating: "[", count: 1_000_000)
        #expect(refusal(deepArrays)?.reason.contains("array entries must be objects") == true)
        let hugeString = "{\"s\": \"" + String(repeating: "x", count: 5_000_000) + "\"}"
        #expect(refusal(hugeString)?.reason.contains("longer than 4096 bytes") == true)
        let hugeKey = "{\"" + String(repeating: "k", count: 5_000_000) + "\": 1}"
        #expect(refusal(hugeKey)?.reason.contains("longer than 128 bytes") == true)
        let hugeNumber = "{\"n\": 1" + String(repeating: "0", count: 2_000_000) + "}"
        #expect(refusal(hugeNumber)?.reason.contains("more than 1024 characters") == true)
        let tooMany =
            "[" + (0...TelemetryLimits.maximumSamplesPerMessage).map { "{\"k\":\($0)}" }.joined(separator: ",") + "]"
        #expect(refusal(tooMany)?.reason.contains("more than 10000 samples") == true)
        let manyKeys = "{" + (0..<5_000).map { "\"k\($0 % 4_999)\":1" }.joined(separator: ",") + "}"
        #expect(refusal(manyKeys)?.reason.contains("duplicate key \"k0\"") == true)
        #expect(refusal(String(repeating: " ", count: 1_000_000))?.reason == "payload is empty")
    }

    @Test("random bytes and mutated payloads never crash, and offsets stay inside the payload")
    func fuzz() {
        var random = SplitMix64(seed: 99)
        let seeds = [
            #"{"temp": 21.5, "on": true, "mode": "eco"}"#,
            #"[{"ts": 1700000000000, "values": {"a": -1.5e-3, "g": {"x": "\u00e9"}}}]"#,
        ].map { Array($0.utf8) }
        for round in 0..<20_000 {
            var bytes: [UInt8]
            if round % 4 == 0 {
                bytes = (0..<Int(random.next() % 64)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            } else {
                bytes = seeds[round % seeds.count]
                for _ in 0..<(Int(random.next() % 4) + 1) {
                    let position = Int(random.next() % UInt64(bytes.count))
                    switch random.next() % 3 {
                    case 0: bytes[position] = UInt8(truncatingIfNeeded: random.next())
                    case 1: bytes.remove(at: position)
                    default:
                        let tokens = Array(#"{}[]",:"\0e-.u"#.utf8)
                        bytes.insert(tokens[Int(random.next() % UInt64(tokens.count))], at: position)
                    }
                }
            }
            do throws(TelemetryPayloadError) {
                let samples = try TelemetryPayloadParser.parse(bytes, receivedAt: 0)
                #expect(!samples.isEmpty)
            } catch {
                if let offset = error.offset { #expect(offset >= 0 && offset <= bytes.count) }
                #expect(!error.reason.isEmpty)
            }
        }
    }
}

// MARK: test helpers

/// A small deterministic generator (SplitMix64) so failures reproduce.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A string of random scalars: ASCII (quotes, backslashes and control characters included),
    /// Latin, CJK and astral.
    mutating func string(maxLength: Int, allowEmpty: Bool, controls: Bool = true) -> String {
        let length = Int(next() % UInt64(maxLength)) + (allowEmpty ? 0 : 1)
        var scalars = String.UnicodeScalarView()
        for _ in 0..<length {
            let value: UInt32
            switch next() % 6 {
            case 0: value = UInt32(next() % 0x60) + 0x20
            case 1: value = UInt32(next() % 26) + 0x61
            case 2: value = [0x22, 0x5C, 0x2F, 0x7F, 0x08, 0x0A, 0x00][Int(next() % (controls ? 7 : 4))]
            case 3: value = UInt32(next() % 0x700) + 0xA0
            case 4: value = UInt32(next() % 0x5000) + 0x4E00
            default: value = UInt32(next() % 0x1000) + 0x1F300
            }
            if let scalar = Unicode.Scalar(value) { scalars.append(scalar) }
        }
        let text = String(scalars)
        return text.isEmpty && !allowEmpty ? "k" : text
    }

    mutating func value() -> TelemetryValue {
        switch next() % 4 {
        case 0: return .bool(next() % 2 == 0)
        case 1: return .string(string(maxLength: 40, allowEmpty: true))
        case 2:
            // Any finite double, subnormals and -0 included.
            var double: Double
            repeat { double = Double(bitPattern: next()) } while !double.isFinite
            return .number(double)
        default:
            return .number(Double(Int64(bitPattern: next()) % 100_000) / 100)
        }
    }
}

/// Writes telemetry JSON the simple way a device library would.
enum JSONTestWriter {
    static func write(_ entries: [(ts: Int64?, samples: [TelemetrySample])], asArray: Bool) -> String {
        let objects = entries.map { entry -> String in
            let members =
                "{" + entry.samples.map { "\(quoted($0.key)): \(json($0.value))" }.joined(separator: ", ") + "}"
            guard let ts = entry.ts else { return members }
            return "{\"ts\": \(ts), \"values\": \(members)}"
        }
        return asArray ? "[" + objects.joined(separator: ",\n") + "]" : objects[0]
    }

    static func json(_ value: TelemetryValue) -> String {
        switch value {
        case .bool(let bool): "\(bool)"
        case .number(let number): "\(number)"
        case .string(let string): quoted(string)
        }
    }

    static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\u{08}": out += "\\b"
            default:
                if scalar.value < 0x20 {
                    out +=
                        "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count)
                        + String(scalar.value, radix: 16)
                } else if scalar.value >= 0x10000 && scalar.value % 3 == 0 {
                    // Some astral characters as surrogate-pair escapes.
                    let v = scalar.value - 0x10000
                    out +=
                        "\\u" + String(0xD800 + (v >> 10), radix: 16) + "\\u"
                        + String(0xDC00 + (v & 0x3FF), radix: 16, uppercase: true)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}

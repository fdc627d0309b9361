import Foundation
import MeridianCore
import Testing

@Suite("Threshold condition")
struct ThresholdConditionTests {
    static let hysteresisSpec = #"{"key":"temp","op":">","value":80,"for":"5m","clear":{"op":"<","value":75,"for":"1m"}}"#

    static func decode(_ text: String) throws -> ThresholdCondition {
        try JSONDecoder().decode(ThresholdCondition.self, from: Data(text.utf8))
    }

    @Test("temp > 80 for 5m raises at the sample that completes 5 minutes and clears after temp < 75 for 1m")
    func firesAndClears() throws {
        var evaluator = ThresholdEvaluator(try Self.decode(Self.hysteresisSpec))
        var transitions: [(Int64, RuleTransition)] = []
        // One sample every 30 s: 70 until 60 s, 85 from 90 s to 600 s, 72 from 630 s.
        for second in stride(from: Int64(0), through: 900, by: 30) {
            let value: Double = second < 90 ? 70 : (second <= 600 ? 85 : 72)
            if let transition = evaluator.observe(at: at(second), value: .number(value)) {
                transitions.append((second, transition))
            }
        }
        #expect(transitions.map(\.0) == [390, 690])  // 90 + 300; 630 + 60
        let raise = try #require(transitions.first?.1)
        #expect(raise.isRaise)
        #expect(raise.reason.message == "temp > 80 for 5m (temp = 85)")
        #expect(raise.reason.values == ["temp": .number(85)])
        #expect(raise.reason.timestamp == at(390))
        let clear = try #require(transitions.last?.1)
        #expect(!clear.isRaise)
        #expect(clear.reason.message == "temp < 75 for 1m (temp = 72)")
    }

    @Test("values oscillating between 75 and 80 neither raise nor clear (hysteresis, no flapping)")
    func hysteresis() throws {
        var evaluator = ThresholdEvaluator(try Self.decode(Self.hysteresisSpec))
        var count = 0
        // Raise first: 90 for 5 minutes.
        for second in stride(from: Int64(0), through: 300, by: 10) {
            if evaluator.observe(at: at(second), number: 90) != nil { count += 1 }
        }
        #expect(count == 1)
        #expect(evaluator.isRaised)
        // An hour of oscillation between 75 and 80 (inclusive): no transition at all.
        for index in Int64(0)..<360 {
            let value = index.isMultiple(of: 2) ? 75.0 : 80.0
            #expect(evaluator.observe(at: at(310 + index * 10), number: value) == nil)
        }
        #expect(evaluator.isRaised)

        // Without a clear spec, a value at the threshold clears at once, and raising again
        // needs the full 5 minutes again.
        var plain = ThresholdEvaluator(try Self.decode(#"{"key":"temp","op":">","value":80,"for":"5m"}"#))
        _ = plain.observe(at: at(0), number: 81)
        #expect(plain.observe(at: at(300), number: 81)?.isRaise == true)
        #expect(plain.observe(at: at(310), number: 80)?.isRaise == false)
        #expect(plain.observe(at: at(320), number: 81) == nil)
    }

    @Test("a device silent longer than maxGap does not hold the condition across the silence")
    func acrossGaps() throws {
        var evaluator = ThresholdEvaluator(
            try Self.decode(#"{"key":"temp","op":">","value":80,"for":"5m","maxGap":"2m"}"#)
        )
        #expect(evaluator.observe(at: at(0), number: 90) == nil)
        #expect(evaluator.observe(at: at(3600), number: 90) == nil)
        for second in stride(from: Int64(3660), through: 3840, by: 60) {
            #expect(evaluator.observe(at: at(second), number: 90) == nil)
        }
        #expect(evaluator.observe(at: at(3900), number: 90)?.isRaise == true)
    }

    @Test("samples of other keys and non-numeric values do not count as holding")
    func otherKeys() throws {
        var evaluator = ThresholdEvaluator(try Self.decode(#"{"key":"temp","op":">=","value":80,"for":"1m"}"#))
        #expect(evaluator.observe(TelemetrySample(key: "temp", timestamp: at(0), value: .number(80))) == nil)
        #expect(evaluator.observe(TelemetrySample(key: "humidity", timestamp: at(30), value: .number(10))) == nil)
        #expect(evaluator.observe(TelemetrySample(key: "temp", timestamp: at(60), value: .number(81)))?.isRaise == true)
        var other = ThresholdEvaluator(try Self.decode(#"{"key":"temp","op":">=","value":80,"for":"1m"}"#))
        _ = other.observe(at: at(0), value: .number(80))
        _ = other.observe(at: at(30), value: .string("n/a"))  // unknown: restarts
        #expect(other.observe(at: at(60), value: .number(80)) == nil)
        #expect(other.observe(at: at(90), value: .number(80)) == nil)
        #expect(other.observe(at: at(120), value: .number(80))?.isRaise == true)
    }

    @Test("the JSON spec round-trips, with defaults filled in")
    func roundTrip() throws {
        let spec = try Self.decode(Self.hysteresisSpec)
        #expect(spec.raise == .init(op: .greater, value: 80, duration: .minutes(5)))
        #expect(spec.clear == .init(op: .less, value: 75, duration: .minutes(1)))
        let encoded = try JSONEncoder().encode(spec)
        #expect(try JSONDecoder().decode(ThresholdCondition.self, from: encoded) == spec)

        let defaults = try Self.decode(#"{"key":"temp","op":">","value":80,"maxGap":"90s"}"#)
        #expect(defaults.raise.duration == .zero)
        #expect(defaults.clear == .init(op: .lessOrEqual, value: 80, duration: .zero))
        #expect(defaults.maximumGap == .seconds(90))
        #expect(try JSONDecoder().decode(ThresholdCondition.self, from: try JSONEncoder().encode(defaults)) == defaults)

        let partialClear = try Self.decode(#"{"key":"t","op":"<","value":0,"clear":{"for":"1h"}}"#)
        #expect(partialClear.clear == .init(op: .greaterOrEqual, value: 0, duration: .hours(1)))
    }

    @Test("durations parse in ms, s, m, h and d and print back")
    func durations() {
        let cases: [(String, Int64)] = [("500ms", 500), ("30s", 30_000), ("5m", 300_000), ("1h", 3_600_000), ("2d", 172_800_000), ("0s", 0)]
        for (text, milliseconds) in cases {
            #expect(ConditionDuration(parsing: text)?.milliseconds == milliseconds, "\(text)")
            #expect(ConditionDuration(parsing: text)?.description == text)
        }
        #expect(ConditionDuration(milliseconds: 90_000).description == "90s")
        for bad in ["", "5", "m", "-5m", "5 m", "1.5h", "5w", "99999999999999d", "５m"] {
            #expect(ConditionDuration(parsing: bad) == nil, "\(bad)")
        }
    }

    @Test(
        "a bad spec is refused with an error naming the field",
        arguments: [
            (#"{"op":">","value":80}"#, "key"),
            (#"{"key":"","op":">","value":80}"#, "key"),
            (#"{"key":"temp","value":80}"#, "op"),
            (#"{"key":"temp","op":"=>","value":80}"#, "op"),
            (#"{"key":"temp","op":">"}"#, "value"),
            (#"{"key":"temp","op":">","value":"80"}"#, "value"),
            (#"{"key":"temp","op":">","value":80,"for":"5 minutes"}"#, "for"),
            (#"{"key":"temp","op":">","value":80,"for":300}"#, "for"),
            (#"{"key":"temp","op":">","value":80,"clear":{"op":"<<","value":75}}"#, "clear.op"),
            (#"{"key":"temp","op":">","value":80,"clear":{"op":"<","value":75,"for":"1x"}}"#, "clear.for"),
            (#"{"key":"temp","op":">","value":80,"clear":{"op":"<","valeu":75}}"#, "clear.valeu"),
            (#"{"key":"temp","op":">","value":80,"clear":5}"#, "clear"),
            (#"{"key":"temp","op":">","value":80,"maxGap":"soon"}"#, "maxGap"),
            (#"{"key":"temp","op":">","value":80,"fro":"5m"}"#, "fro"),
            (#"[1,2]"#, ""),
        ]
    )
    func badSpecs(text: String, field: String) {
        do {
            let spec = try Self.decode(text)
            Issue.record("\(text) decoded as \(spec)")
        } catch let error as ConditionSpecError {
            #expect(error.field == field, "\(error)")
        } catch {
            Issue.record("\(text): unexpected error \(error)")
        }
    }
}

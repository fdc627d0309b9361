import MeridianCore
import Testing

@Suite("Rule sliding windows: incremental aggregates")
struct RuleSlidingWindowTests {
    /// The aggregate recomputed from every in-order sample ever appended.
    static func bruteForce(_ function: RuleWindowFunction, _ samples: [(Int64, Double)], duration: Int64) -> Double? {
        guard let latest = samples.last?.0 else { return nil }
        let inside = samples.filter { $0.0 >= latest - duration }
        guard !inside.isEmpty else { return nil }
        let values = inside.map(\.1)
        switch function {
        case .avg: return values.reduce(0, +) / Double(values.count)
        case .min: return values.min()
        case .max: return values.max()
        case .delta: return values.count >= 2 ? values[values.count - 1] - values[0] : nil
        case .rate:
            let elapsed = inside[inside.count - 1].0 - inside[0].0
            guard values.count >= 2, elapsed > 0 else { return nil }
            return (values[values.count - 1] - values[0]) / (Double(elapsed) / 1000)
        }
    }

    @Test(
        "avg, min, max, delta and rate over random sample streams match a brute-force recomputation after every sample"
    )
    func againstBruteForce() {
        var random = RuleExpressionRandom(seed: 0x3111D0)
        for _ in 0..<25 {
            let span = Int64.random(in: 1_000...120_000, using: &random)
            var window = RuleSlidingWindow(spanMilliseconds: span)
            var accepted: [(Int64, Double)] = []
            var now = Int64.random(in: 0...1_000_000_000, using: &random)
            for _ in 0..<Int.random(in: 1...400, using: &random) {
                // Mostly increasing timestamps with gaps, repeats and some late samples.
                let step = Int64.random(in: -3_000...8_000, using: &random)
                let timestamp = step < 0 && Bool.random(using: &random) ? now + step : now + Swift.max(0, step)
                let value = Double(Int.random(in: -1000...1000, using: &random)) / 8
                let isInOrder = timestamp >= (accepted.last?.0 ?? .min)
                let wasAccepted = window.append(timestamp: timestamp, value: value)
                #expect(wasAccepted == isInOrder)
                if isInOrder {
                    accepted.append((timestamp, value))
                    now = timestamp
                }
                #expect(window.latestTimestamp == accepted.last?.0)
                for duration in [1, span / 3, span / 2, span, Int64.random(in: 1...span, using: &random)]
                where duration >= 1 {
                    for function in RuleWindowFunction.allCases {
                        let expected = Self.bruteForce(function, accepted, duration: duration)
                        let actual = window.value(function, durationMilliseconds: duration)
                        if let expected, let actual {
                            #expect(
                                Swift.abs(expected - actual) <= 1e-9 * Swift.max(1, Swift.abs(expected)),
                                "\(function) \(duration)"
                            )
                        } else {
                            #expect(
                                expected == nil && actual == nil,
                                "\(function) \(duration): \(String(describing: expected)) vs \(String(describing: actual))"
                            )
                        }
                    }
                }
            }
            // Only samples inside the span are kept.
            let latest = accepted.last?.0 ?? 0
            #expect(window.count == accepted.filter { $0.0 >= latest - span }.count)
        }
    }

    @Test("late samples, NaN and durations beyond the span are refused; the window ends at the newest sample")
    func edges() {
        var window = RuleSlidingWindow(spanMilliseconds: 60_000)
        #expect(window.value(.avg, durationMilliseconds: 1_000) == nil)
        var accepted = window.append(timestamp: 10_000, value: 1)
        #expect(accepted)
        #expect(window.value(.avg, durationMilliseconds: 1_000) == 1)
        #expect(window.value(.delta, durationMilliseconds: 1_000) == nil)
        accepted = window.append(timestamp: 10_000, value: 3)
        #expect(accepted)
        #expect(window.value(.delta, durationMilliseconds: 1_000) == 2)
        #expect(window.value(.rate, durationMilliseconds: 1_000) == nil)  // no time elapsed
        accepted = window.append(timestamp: 9_999, value: 100)
        #expect(accepted == false)
        accepted = window.append(timestamp: 11_000, value: .nan)
        #expect(accepted == false)
        accepted = window.append(timestamp: 12_000, value: 7)
        #expect(accepted)
        #expect(window.value(.rate, durationMilliseconds: 60_000) == 3)  // (7 - 1) over 2 s
        #expect(window.value(.max, durationMilliseconds: 60_000) == 7)
        #expect(window.value(.min, durationMilliseconds: 1_999) == 7)  // from 10.001 s: only the newest
        #expect(window.value(.min, durationMilliseconds: 2_000) == 1)  // the start is inclusive
        #expect(window.value(.avg, durationMilliseconds: 60_001) == nil)
        accepted = window.append(timestamp: 200_000, value: 5)
        #expect(accepted)
        #expect(window.count == 1)
        #expect(window.value(.avg, durationMilliseconds: 60_000) == 5)
    }
}

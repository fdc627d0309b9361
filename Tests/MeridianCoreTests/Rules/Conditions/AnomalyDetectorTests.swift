import Foundation
import MeridianCore
import Testing

@Suite("Anomaly detectors")
struct AnomalyDetectorTests {
    /// A reproducible noise: a sine wave of period 7 samples, amplitude 1.
    static func noise(_ index: Int) -> Double { sin(Double(index) * 2 * Double.pi / 7) }

    @Test("EWMA: nothing fires during warm-up; a spike raises at its sample and clears after clearAfter normal samples")
    func ewmaSpike() throws {
        let condition = try JSONDecoder().decode(
            AnomalyCondition.self,
            from: Data(#"{"kind":"ewma","key":"vibration","k":4,"halfLife":30,"warmup":50,"clearAfter":3}"#.utf8)
        )
        var detector = EWMAAnomalyDetector(condition)
        // A spike during warm-up is only learned.
        for index in 0..<50 {
            #expect(detector.observe(at: at(Int64(index)), value: index == 10 ? 20 : 10 + Self.noise(index)) == nil)
        }
        #expect(detector.isWarm)
        var transitions: [(Int, RuleTransition)] = []
        for index in 50..<200 {
            let value = index == 120 ? 100 : 10 + Self.noise(index)
            if let transition = detector.observe(at: at(Int64(index)), value: value) { transitions.append((index, transition)) }
        }
        #expect(transitions.map(\.0) == [120, 123])
        let raise = try #require(transitions.first?.1)
        #expect(raise.isRaise)
        #expect(raise.reason.values["vibration"] == .number(100))
        #expect((raise.reason.values["z"].flatMap { if case .number(let z) = $0 { z } else { nil } } ?? 0) > 4)
        #expect(transitions.last?.1.isRaise == false)
    }

    @Test("EWMA: a spike does not pollute the baseline (the next spike is still detected, the mean barely moves)")
    func spikeDoesNotPollute() {
        var detector = EWMAAnomalyDetector(AnomalyCondition(kind: .ewma, key: "x", k: 4, halfLife: 30, warmup: 30, clearAfter: 1))
        for index in 0..<100 { _ = detector.observe(at: at(Int64(index)), value: 10 + Self.noise(index)) }
        let meanBefore = detector.baseline.mean
        let deviationBefore = detector.baseline.deviation(floor: 0)
        #expect(detector.observe(at: at(100), value: 1_000_000)?.isRaise == true)
        #expect(abs(detector.baseline.mean - meanBefore) < deviationBefore)
        #expect(detector.baseline.deviation(floor: 0) < 1.5 * deviationBefore)
        #expect(detector.observe(at: at(101), value: 10)?.isRaise == false)
        #expect(detector.observe(at: at(102), value: 1_000_000)?.isRaise == true)
    }

    @Test("EWMA: a lasting level shift raises, is learned, and clears")
    func levelShift() {
        var detector = EWMAAnomalyDetector(AnomalyCondition(kind: .ewma, key: "x", k: 4, halfLife: 10, warmup: 20))
        for index in 0..<50 { _ = detector.observe(at: at(Int64(index)), value: 10 + Self.noise(index)) }
        var raised = false
        var clearedAt: Int?
        for index in 50..<400 {
            let transition = detector.observe(at: at(Int64(index)), value: 30 + Self.noise(index))
            if transition?.isRaise == true { raised = true }
            if transition?.isRaise == false { clearedAt = index }
        }
        #expect(raised)
        #expect(clearedAt != nil)
        #expect(!detector.isRaised)
    }

    @Test("EWMA: raiseAfter needs consecutive anomalous samples")
    func raiseAfter() {
        var detector = EWMAAnomalyDetector(
            AnomalyCondition(kind: .ewma, key: "x", k: 4, halfLife: 30, warmup: 30, raiseAfter: 2, clearAfter: 1)
        )
        for index in 0..<60 { _ = detector.observe(at: at(Int64(index)), value: 10 + Self.noise(index)) }
        #expect(detector.observe(at: at(60), value: 100) == nil)
        #expect(detector.observe(at: at(61), value: 10) == nil)
        #expect(detector.observe(at: at(62), value: 100) == nil)
        #expect(detector.observe(at: at(63), value: 100)?.isRaise == true)
    }

    @Test("seasonal: each hour of day has its own baseline and warm-up")
    func seasonal() {
        let condition = AnomalyCondition(kind: .seasonal, key: "temp", k: 4, halfLife: 20, warmup: 30)
        var detector = SeasonalAnomalyDetector(condition)
        // A daily cycle: 10 at night (hours 0-11), 30 by day (12-23), a sample every 5 minutes.
        func value(_ minute: Int64) -> Double {
            (SeasonalAnomalyDetector.hourOfDay(at(minute * 60)) < 12 ? 10 : 30) + Self.noise(Int(minute))
        }
        var transitions = 0
        var minute: Int64 = 0
        // Three days: every bucket gets 36 samples (warm after 30), and the cycle never fires.
        while minute < 3 * 24 * 60 {
            if detector.observe(at: at(minute * 60), value: value(minute)) != nil { transitions += 1 }
            minute += 5
        }
        #expect(transitions == 0)
        #expect(detector.baselines.allSatisfy { $0.count == 36 })
        // A day-time value at night is anomalous for the night bucket.
        let night = at(3 * 86_400 + 2 * 3600)
        #expect(SeasonalAnomalyDetector.hourOfDay(night) == 2)
        #expect(detector.observe(at: night, value: 30)?.isRaise == true)
        #expect(detector.lastScore?.isAnomalous == true)
    }

    @Test("a plain EWMA detector fires on the day/night change that the seasonal one learns")
    func plainEWMAFiresOnCycle() {
        var detector = EWMAAnomalyDetector(AnomalyCondition(kind: .ewma, key: "temp", k: 4, halfLife: 20, warmup: 30))
        var raises = 0
        var minute: Int64 = 0
        while minute < 3 * 24 * 60 {
            let value = (SeasonalAnomalyDetector.hourOfDay(at(minute * 60)) < 12 ? 10 : 30) + Self.noise(Int(minute))
            if detector.observe(at: at(minute * 60), value: value)?.isRaise == true { raises += 1 }
            minute += 5
        }
        #expect(raises >= 4)
    }

    @Test("anomaly specs round-trip and bad specs name the field")
    func specs() throws {
        for text in [
            #"{"kind":"ewma","key":"vibration","k":4,"halfLife":30,"warmup":50}"#,
            #"{"kind":"seasonal","key":"temperature","k":5,"alpha":0.01,"warmup":3,"clearAfter":2,"minDeviation":0.1}"#,
        ] {
            let spec = try JSONDecoder().decode(AnomalyCondition.self, from: Data(text.utf8))
            #expect(try JSONDecoder().decode(AnomalyCondition.self, from: try JSONEncoder().encode(spec)) == spec)
        }
        let spec = try JSONDecoder().decode(AnomalyCondition.self, from: Data(#"{"kind":"ewma","key":"v","k":4,"halfLife":1}"#.utf8))
        #expect(spec.alpha == 0.5)
        #expect(spec.warmup == 30 && spec.raiseAfter == 1 && spec.clearAfter == 5)
        let bad: [(String, String)] = [
            (#"{"key":"v","k":4}"#, "kind"),
            (#"{"kind":"fft","key":"v","k":4}"#, "kind"),
            (#"{"kind":"ewma","k":4}"#, "key"),
            (#"{"kind":"ewma","key":"v"}"#, "k"),
            (#"{"kind":"ewma","key":"v","k":0}"#, "k"),
            (#"{"kind":"ewma","key":"v","k":4,"halfLife":0.5}"#, "halfLife"),
            (#"{"kind":"ewma","key":"v","k":4,"alpha":1.5}"#, "alpha"),
            (#"{"kind":"ewma","key":"v","k":4,"alpha":0.1,"halfLife":3}"#, "alpha"),
            (#"{"kind":"ewma","key":"v","k":4,"warmup":2.5}"#, "warmup"),
            (#"{"kind":"ewma","key":"v","k":4,"clearAfter":0}"#, "clearAfter"),
            (#"{"kind":"ewma","key":"v","k":4,"minDeviation":-1}"#, "minDeviation"),
            (#"{"kind":"ewma","key":"v","k":4,"window":"5m"}"#, "window"),
        ]
        for (text, field) in bad {
            do {
                let spec = try JSONDecoder().decode(AnomalyCondition.self, from: Data(text.utf8))
                Issue.record("\(text) decoded as \(spec)")
            } catch let error as ConditionSpecError {
                #expect(error.field == field, "\(text): \(error)")
            }
        }
    }
}

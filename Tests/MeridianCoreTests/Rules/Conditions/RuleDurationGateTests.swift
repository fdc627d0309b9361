import Foundation
import MeridianCore
import Testing

/// Virtual time: samples at `t0 + seconds`.
let t0: Int64 = 1_735_689_600_000
func at(_ seconds: Int64) -> Int64 { t0 + seconds * 1000 }

@Suite("Rule duration gate")
struct RuleDurationGateTests {
    @Test("raises only once the condition has held for the duration, and only once")
    func raisesAfterDuration() {
        var gate = RuleDurationGate(raiseAfter: .minutes(5), clearAfter: .zero)
        #expect(gate.observe(at: at(0), holds: true) == nil)
        #expect(gate.observe(at: at(120), holds: true) == nil)
        #expect(gate.observe(at: at(299), holds: true) == nil)
        #expect(gate.observe(at: at(300), holds: true) == .raised)
        #expect(gate.observe(at: at(360), holds: true) == nil)  // no re-raise
        #expect(gate.isRaised)
        #expect(gate.observe(at: at(420), holds: false) == .cleared)
        #expect(gate.observe(at: at(480), holds: false) == nil)
    }

    @Test("a duration of zero raises at the first satisfying sample")
    func zeroDuration() {
        var gate = RuleDurationGate(raiseAfter: .zero, clearAfter: .zero)
        #expect(gate.observe(at: at(0), holds: false) == nil)
        #expect(gate.observe(at: at(1), holds: true) == .raised)
    }

    @Test("a sample that does not hold, or an unknown one, restarts the span")
    func interruptedSpan() {
        var gate = RuleDurationGate(raiseAfter: .minutes(5), clearAfter: .zero)
        _ = gate.observe(at: at(0), holds: true)
        _ = gate.observe(at: at(200), holds: false)
        #expect(gate.observe(at: at(300), holds: true) == nil)  // span starts again at 300
        #expect(gate.observe(at: at(590), holds: true) == nil)
        #expect(gate.observe(at: at(600), holds: nil) == nil)  // unknown: restarts, no change
        #expect(gate.observe(at: at(660), holds: true) == nil)
        #expect(gate.observe(at: at(959), holds: true) == nil)
        #expect(gate.observe(at: at(960), holds: true) == .raised)
    }

    @Test("a gap longer than the maximum restarts the span; without a maximum it does not")
    func gaps() {
        var limited = RuleDurationGate(raiseAfter: .minutes(5), clearAfter: .zero, maximumGap: .minutes(2))
        _ = limited.observe(at: at(0), holds: true)
        // An hour of silence, then one satisfying sample: not 5 minutes of holding.
        #expect(limited.observe(at: at(3600), holds: true) == nil)
        #expect(limited.observe(at: at(3720), holds: true) == nil)  // a gap of exactly 2m is continuous
        #expect(limited.observe(at: at(3840), holds: true) == nil)
        #expect(limited.observe(at: at(3900), holds: true) == .raised)

        var unlimited = RuleDurationGate(raiseAfter: .minutes(5), clearAfter: .zero)
        _ = unlimited.observe(at: at(0), holds: true)
        #expect(unlimited.observe(at: at(3600), holds: true) == .raised)
    }

    @Test("clearing waits for the clear condition's duration, and gaps restart it too")
    func clearDuration() {
        var gate = RuleDurationGate(raiseAfter: .zero, clearAfter: .minutes(1), maximumGap: .seconds(30))
        #expect(gate.observe(at: at(0), raiseHolds: true, clearHolds: false) == .raised)
        #expect(gate.observe(at: at(10), raiseHolds: false, clearHolds: true) == nil)
        #expect(gate.observe(at: at(40), raiseHolds: false, clearHolds: true) == nil)
        #expect(gate.observe(at: at(100), raiseHolds: false, clearHolds: true) == nil)  // gap of 60s > 30s
        #expect(gate.observe(at: at(130), raiseHolds: false, clearHolds: true) == nil)
        #expect(gate.observe(at: at(160), raiseHolds: false, clearHolds: true) == .cleared)
    }

    @Test("samples older than the newest one are ignored")
    func outOfOrder() {
        var gate = RuleDurationGate(raiseAfter: .minutes(1), clearAfter: .zero)
        _ = gate.observe(at: at(100), holds: true)
        #expect(gate.observe(at: at(0), holds: false) == nil)  // ignored: does not restart
        #expect(gate.observe(at: at(160), holds: true) == .raised)
    }
}

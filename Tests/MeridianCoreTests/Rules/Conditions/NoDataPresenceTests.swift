import Foundation
import MeridianCore
import Testing

@Suite("No-data and presence conditions")
struct NoDataPresenceTests {
    @Test("no data raises at the first tick where the silence reaches N, once, and clears on the next sample")
    func noData() throws {
        let condition = try JSONDecoder().decode(NoDataCondition.self, from: Data(#"{"key":"temp","for":"10m"}"#.utf8))
        var evaluator = NoDataEvaluator(condition, startedAt: at(0))
        #expect(evaluator.observe(at: at(30), key: "temp") == nil)
        var raisedAt: [Int64] = []
        for second in stride(from: Int64(60), through: 1200, by: 60) {
            // Other keys do not count as data for a keyed condition.
            _ = evaluator.observe(at: at(second), key: "humidity")
            if let transition = evaluator.tick(now: at(second)) {
                #expect(transition.isRaise)
                #expect(transition.reason.values["lastSeen"] == .number(Double(at(30))))
                raisedAt.append(second)
            }
        }
        #expect(raisedAt == [660])  // 30 + 600, reached exactly at the 660 s tick; not re-raised
        let cleared = evaluator.observe(at: at(1210), key: "temp")
        let clear = try #require(cleared)
        #expect(!clear.isRaise)
        #expect(clear.reason.timestamp == at(1210))
        #expect(evaluator.tick(now: at(1800)) == nil)  // 590 s after the sample
        #expect(evaluator.tick(now: at(1810))?.isRaise == true)
    }

    @Test("a device that never reports raises N after the rule started; any key counts without a key")
    func neverReports() {
        var evaluator = NoDataEvaluator(NoDataCondition(silence: .minutes(5)), startedAt: at(0))
        #expect(evaluator.tick(now: at(299)) == nil)
        #expect(evaluator.tick(now: at(300))?.isRaise == true)
        #expect(evaluator.observe(at: at(301), key: "anything")?.isRaise == false)
        // A late sample (skewed clock) clears but does not move the last-seen time back.
        _ = evaluator.tick(now: at(601))
        #expect(evaluator.observe(at: at(100), key: "x")?.isRaise == false)
        #expect(evaluator.lastSeen == at(301))
    }

    @Test("presence raises when offline for N, at the right tick, and clears when back online")
    func presence() throws {
        let condition = try JSONDecoder().decode(PresenceCondition.self, from: Data(#"{"for":"5m"}"#.utf8))
        var evaluator = PresenceEvaluator(condition)
        #expect(evaluator.tick(now: at(1000)) == nil)  // online
        #expect(evaluator.observe(online: false, at: at(100)) == nil)
        #expect(evaluator.tick(now: at(399)) == nil)
        #expect(evaluator.observe(online: false, at: at(350)) == nil)  // still offline: count not restarted
        #expect(evaluator.tick(now: at(400))?.isRaise == true)
        #expect(evaluator.tick(now: at(460)) == nil)
        #expect(evaluator.observe(online: true, at: at(500))?.isRaise == false)
        // Offline again: a short outage does not raise.
        _ = evaluator.observe(online: false, at: at(600))
        #expect(evaluator.tick(now: at(800)) == nil)
        _ = evaluator.observe(online: true, at: at(850))
        #expect(evaluator.tick(now: at(2000)) == nil)
    }

    @Test("presence reads stored presence events")
    func presenceEvents() {
        var evaluator = PresenceEvaluator(PresenceCondition(offlineFor: .minutes(1)))
        let time = Date(timeIntervalSince1970: Double(at(0)) / 1000)
        let event = PresenceEvent(
            tenantID: "t", deviceID: "d", kind: .disconnected, time: time, address: nil, protocolName: "mqtt-5.0",
            transport: "tcp", connectionID: 1, reason: .keepaliveTimeout, online: false
        )
        #expect(evaluator.observe(event) == nil)
        #expect(evaluator.offlineSince == at(0))
        #expect(evaluator.tick(now: at(60))?.isRaise == true)
    }

    @Test("no-data and presence specs round-trip and bad ones name the field")
    func specs() throws {
        let noData = NoDataCondition(key: "temp", silence: .minutes(10))
        #expect(try JSONDecoder().decode(NoDataCondition.self, from: try JSONEncoder().encode(noData)) == noData)
        let presence = PresenceCondition(offlineFor: .seconds(90))
        #expect(try JSONDecoder().decode(PresenceCondition.self, from: try JSONEncoder().encode(presence)) == presence)
        let noDataSpec = { (data: Data) throws in _ = try JSONDecoder().decode(NoDataCondition.self, from: data) }
        let presenceSpec = { (data: Data) throws in _ = try JSONDecoder().decode(PresenceCondition.self, from: data) }
        let bad: [(String, String, (Data) throws -> Void)] = [
            (#"{"key":"temp"}"#, "for", noDataSpec),
            (#"{"for":"0s"}"#, "for", noDataSpec),
            (#"{"key":3,"for":"1m"}"#, "key", noDataSpec),
            (#"{"for":"forever"}"#, "for", presenceSpec),
            (#"{"for":"1m","after":"1m"}"#, "after", presenceSpec),
        ]
        for (text, field, decode) in bad {
            do {
                try decode(Data(text.utf8))
                Issue.record("\(text) decoded")
            } catch let error as ConditionSpecError {
                #expect(error.field == field, "\(text): \(error)")
            }
        }
    }
}

import Foundation
import MeridianCore
import Testing

@Suite("Presence tracker")
struct PresenceTrackerTests {
    private func connection(_ id: UInt64, device: String = "d1", address: String = "192.0.2.1:1") -> PresenceConnection {
        PresenceConnection(connectionID: id, tenantID: "t1", deviceID: device, address: address, protocolName: "mqtt-3.1.1", transport: "tcp", keepAlive: 10)
    }

    @Test("a device with several connections is online while any is open; each event says whether it still is")
    func severalConnections() {
        let tracker = PresenceTracker()
        let t0 = Date(timeIntervalSince1970: 1000)
        let first = tracker.connected(connection(1), at: t0)
        #expect(first.kind == .connected && first.online && first.time == t0)
        _ = tracker.connected(connection(2, address: "192.0.2.1:2"), at: t0.addingTimeInterval(5))
        #expect(tracker.isOnline("d1"))
        #expect(tracker.snapshot("d1").onlineSince == t0)
        #expect(tracker.snapshot("d1").newest?.connectionID == 2)
        let takeover = tracker.disconnected(deviceID: "d1", connectionID: 1, reason: .takeover, reasonCode: 0x8E, at: t0.addingTimeInterval(6))
        #expect(takeover?.online == true)
        #expect(takeover?.reason == .takeover)
        #expect(tracker.disconnected(deviceID: "d1", connectionID: 1, reason: .error, reasonCode: nil, at: t0) == nil)
        let last = tracker.disconnected(deviceID: "d1", connectionID: 2, reason: .clean, reasonCode: 0, at: t0.addingTimeInterval(7))
        #expect(last?.online == false)
        #expect(last?.address == "192.0.2.1:2")
        #expect(!tracker.isOnline("d1"))
        #expect(tracker.snapshot("d1").lastDisconnect == last)
        #expect(tracker.onlineDevices(among: ["d1", "d2"]).isEmpty)
        _ = tracker.connected(connection(3, device: "d2"), at: t0)
        #expect(tracker.onlineDevices(among: ["d1", "d2", "d3"]) == ["d2"])
        tracker.forget("d2")
        #expect(!tracker.isOnline("d2"))
    }
}

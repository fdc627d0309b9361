import Foundation
import MeridianCore
import Testing

@testable import MeridianServer

@Suite("Live stream: presence subscriptions")
struct PresenceStreamUnitTests {
    static let caller = Caller(tenantID: "t1", role: .viewer, actor: AuditActor(kind: .apiKey, id: "k1"))
    static let principal = StreamSession.Principal(caller: caller, expiresAt: nil)

    @Test("presence subscriptions have their own interest; telemetry's is unchanged by them; keys are refused")
    func interest() {
        var session = StreamSession(principal: Self.principal)
        _ = session.opening()
        #expect(
            session.received(#"{"type": "subscribe", "id": "p", "topic": "presence", "devices": "*"}"#) == [
                .setPresenceInterest(.all), .send(.subscribed(id: "p", topic: .presence)),
            ]
        )
        #expect(session.interest == .none)
        #expect(
            session.received(#"{"type": "subscribe", "id": "t", "topic": "telemetry", "devices": "*"}"#) == [
                .setInterest(.all), .send(.subscribed(id: "t", topic: .telemetry)),
            ]
        )
        // Re-subscribing an id under another topic moves it.
        #expect(
            session.received(#"{"type": "subscribe", "id": "p", "topic": "telemetry", "devices": "*"}"#) == [
                .setPresenceInterest(.none), .setInterest(.all), .send(.subscribed(id: "p", topic: .telemetry)),
            ]
        )
        _ = session.received(#"{"type": "subscribe", "id": "q", "topic": "presence", "devices": "*"}"#)
        #expect(session.presenceInterest == .all)
        #expect(session.received(#"{"type": "unsubscribe", "id": "q"}"#) == [.setPresenceInterest(.none), .send(.unsubscribed(id: "q"))])
        let refused = session.received(#"{"type": "subscribe", "id": "x", "topic": "presence", "devices": "*", "keys": ["a"]}"#)
        guard case .send(.error(let error)) = refused.first else {
            Issue.record("not refused: \(refused)")
            return
        }
        #expect(error.field == "keys")
    }

    @Test("a presence event is one JSON object naming subscription, device, event, time, reason")
    func message() throws {
        let event = PresenceEvent(
            tenantID: "t1", deviceID: "d\"1", kind: .disconnected, time: Date(timeIntervalSince1970: 1_700_000_000.5), address: "192.0.2.1:5",
            protocolName: "mqtt-3.1.1", transport: "ws", connectionID: 4, reason: .keepaliveTimeout, reasonCode: 0x8D, online: false
        )
        let text = StreamServerMessage.presence(subscription: "s1", event: event)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        #expect(object["type"] as? String == "presence")
        #expect(object["subscription"] as? String == "s1")
        #expect(object["device"] as? String == "d\"1")
        #expect(object["event"] as? String == "disconnected")
        #expect(object["time"] as? Int == 1_700_000_000_500)
        #expect(object["online"] as? Bool == false)
        #expect(object["address"] as? String == "192.0.2.1:5")
        #expect(object["protocol"] as? String == "mqtt-3.1.1")
        #expect(object["transport"] as? String == "ws")
        #expect(object["reason"] as? String == "keepalive-timeout")
        #expect(object["reasonCode"] as? Int == 0x8D)
        var connected = event
        connected.kind = .connected
        connected.reason = nil
        connected.reasonCode = nil
        connected.address = nil
        let plain = try #require(try JSONSerialization.jsonObject(with: Data(StreamServerMessage.presence(subscription: "s", event: connected).utf8)) as? [String: Any])
        #expect(plain["reason"] == nil && plain["reasonCode"] == nil && plain["address"] == nil)
    }
}

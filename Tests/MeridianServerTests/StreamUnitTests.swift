import Foundation
import MeridianCore
import Synchronization
import Testing

@testable import MeridianServer

/// The live stream's parts without sockets: message parsing and encoding, the session's
/// protocol logic, the bounded outbox.
@Suite("Live stream: protocol and queues")
struct StreamUnitTests {
    static let caller = Caller(tenantID: "t1", role: .viewer, actor: AuditActor(kind: .apiKey, id: "key-1"))
    static let principal = StreamSession.Principal(caller: caller, expiresAt: nil)

    static func message(_ device: String, _ samples: [(String, Double)], tenant: String = "t1") -> DeviceMessage {
        DeviceMessage(
            tenantID: tenant,
            deviceID: device,
            receivedAt: 0,
            kind: .telemetry(
                samples.enumerated().map { TelemetrySample(key: $1.0, timestamp: Int64($0), value: .number($1.1)) }
            )
        )
    }

    @Test(
        "malformed client messages are refused naming the field",
        arguments: [
            ("", "invalid-json", nil),
            ("\"auth\"", "invalid-message", nil),
            (#"{"id": "a"}"#, "invalid-message", "type"),
            (#"{"type": 7}"#, "invalid-message", "type"),
            (#"{"type": "auth"}"#, "invalid-message", "token"),
            (#"{"type": "auth", "token": ""}"#, "invalid-message", "token"),
            (#"{"type": "subscribe", "id": "", "topic": "telemetry", "devices": "*"}"#, "invalid-message", "id"),
            (#"{"type": "subscribe", "id": 5, "topic": "telemetry", "devices": "*"}"#, "invalid-message", "id"),
            (#"{"type": "subscribe", "id": "a", "devices": "*"}"#, "invalid-message", "topic"),
            (
                #"{"type": "subscribe", "id": "a", "topic": "telemetry", "devices": "all"}"#, "invalid-message",
                "devices"
            ),
            (#"{"type": "subscribe", "id": "a", "topic": "telemetry", "devices": []}"#, "invalid-message", "devices"),
            (#"{"type": "subscribe", "id": "a", "topic": "telemetry", "devices": [""]}"#, "invalid-message", "devices"),
            (
                #"{"type": "subscribe", "id": "a", "topic": "telemetry", "devices": "*", "keys": []}"#,
                "invalid-message", "keys"
            ),
            (
                #"{"type": "subscribe", "id": "a", "topic": "telemetry", "devices": "*", "keys": "temp"}"#,
                "invalid-message", "keys"
            ),
            (#"{"type": "unsubscribe"}"#, "invalid-message", "id"),
            (#"{"type": "publish", "id": "a"}"#, "unknown-type", "type"),
        ] as [(String, String, String?)]
    )
    func malformedMessages(text: String, code: String, field: String?) {
        guard case .failure(let error) = StreamClientMessage.parse(text) else {
            Issue.record("accepted: \(text)")
            return
        }
        #expect(error.code == code)
        #expect(error.field == field)
        #expect(!error.message.isEmpty)
    }

    @Test("subscribe messages parse with their devices and keys; unknown fields are ignored")
    func subscribeParses() {
        let parsed = StreamClientMessage.parse(
            #"{"type": "subscribe", "id": "s1", "topic": "telemetry", "devices": ["a", "b", "a"], "keys": ["temp"], "future": 1}"#
        )
        #expect(
            parsed
                == .success(
                    .subscribe(
                        StreamSubscription(id: "s1", topic: .telemetry, devices: .some(["a", "b"]), keys: ["temp"])
                    )
                )
        )
        #expect(
            StreamClientMessage.parse(#"{"type": "subscribe", "id": "s2", "topic": "telemetry", "devices": "*"}"#)
                == .success(.subscribe(StreamSubscription(id: "s2", topic: .telemetry, devices: .all, keys: nil)))
        )
    }

    @Test("server messages are JSON objects with a type; telemetry groups samples by key in order, filtered by keys")
    func serverMessages() throws {
        let message = Self.message("d\"1", [("temp", 1.5), ("hum", 40), ("temp", -0.25)])
        let text = try #require(StreamServerMessage.telemetry(subscription: "s", message: message, keys: ["temp"]))
        #expect(
            text
                == #"{"type":"telemetry","subscription":"s","device":"d\"1","samples":{"temp":[{"ts":0,"value":1.5},{"ts":2,"value":-0.25}]}}"#
        )
        #expect(StreamServerMessage.telemetry(subscription: "s", message: message, keys: ["other"]) == nil)
        let error = StreamServerMessage.error(
            StreamClientMessageError(
                code: "unknown-devices",
                id: "s",
                "not devices of your tenant: x",
                field: "devices",
                devices: ["x"]
            )
        ).text
        let object = try #require(try JSONSerialization.jsonObject(with: Data(error.utf8)) as? [String: Any])
        #expect(object["type"] as? String == "error")
        #expect(object["devices"] as? [String] == ["x"])
        #expect(StreamServerMessage.dropped(count: 3).text == #"{"type":"dropped","count":3}"#)
        #expect(StreamServerMessage.pong(id: nil).text == #"{"type":"pong"}"#)
    }

    @Test("without a token on the upgrade, anything but an auth message first closes with 4401")
    func authenticateFirst() {
        var session = StreamSession(principal: nil)
        #expect(
            session.received(#"{"type": "ping"}"#) == [
                .close(code: 4401, reason: #"authenticate first: {"type":"auth","token":...}"#)
            ]
        )
        var other = StreamSession(principal: nil)
        #expect(other.received(#"{"type": "auth", "token": "tok"}"#) == [.authenticate(token: "tok")])
        #expect(other.isBusy)
        #expect(other.authenticationFailed("bad token") == [.close(code: 4401, reason: "bad token")])
        var late = StreamSession(principal: nil)
        #expect(
            late.authenticationDeadlinePassed().first == .close(code: 4401, reason: "no authentication within 10 s")
        )
    }

    @Test("subscriptions: devices are checked first; the interest is the union; unsubscribe narrows it")
    func subscriptions() {
        var session = StreamSession(principal: Self.principal)
        #expect(session.opening().first == .open(Self.principal))
        let subscribe = #"{"type": "subscribe", "id": "a", "topic": "telemetry", "devices": ["d1", "d2"]}"#
        let expected = StreamSubscription(id: "a", topic: .telemetry, devices: .some(["d1", "d2"]), keys: nil)
        #expect(session.received(subscribe) == [.checkDevices(expected, Self.caller)])
        let refused = session.devicesChecked(expected, unknown: ["d2"])
        guard case .send(.error(let error)) = refused.first else {
            Issue.record("not refused: \(refused)")
            return
        }
        #expect(error.devices == ["d2"])
        #expect(session.interest == .none)
        _ = session.received(subscribe)
        #expect(
            session.devicesChecked(expected, unknown: []) == [
                .setInterest(.devices(["d1", "d2"])), .send(.subscribed(id: "a", topic: .telemetry)),
            ]
        )
        _ = session.received(#"{"type": "subscribe", "id": "b", "topic": "telemetry", "devices": "*"}"#)
        #expect(session.interest == .all)
        #expect(
            session.received(#"{"type": "unsubscribe", "id": "b"}"#) == [
                .setInterest(.devices(["d1", "d2"])), .send(.unsubscribed(id: "b")),
            ]
        )
    }

    @Test("a renewed token must be of the same tenant; the credential's expiry closes the session")
    func renewal() {
        var session = StreamSession(principal: Self.principal)
        _ = session.received(#"{"type": "auth", "token": "new"}"#)
        let foreign = StreamSession.Principal(
            caller: Caller(tenantID: "t2", role: .owner, actor: AuditActor(kind: .user, id: "u")),
            expiresAt: nil
        )
        guard case .send(.error(let error)) = session.authenticated(foreign).first else {
            Issue.record("renewal into another tenant accepted")
            return
        }
        #expect(error.code == "tenant-mismatch")
        #expect(session.principal == Self.principal)
        _ = session.received(#"{"type": "auth", "token": "newer"}"#)
        let later = StreamSession.Principal(caller: Self.caller, expiresAt: Date(timeIntervalSince1970: 2_000_000_000))
        #expect(session.authenticated(later).first == .renew(later))
        #expect(
            session.credentialExpired().first == .close(code: 4401, reason: "the token expired: authenticate again")
        )
    }

    @Test("the outbox keeps the newest messages within its limits, counts what it drops, asks for one drain at a time")
    func outbox() {
        let drains = Mutex(0)
        let outbox = StreamOutbox(limits: StreamOutbox.Limits(messages: 3, samples: 100)) {
            drains.withLock { $0 += 1 }
        }
        #expect(outbox.offer((0..<5).map { Self.message("d\($0)", [("k", 1)]) }) == 2)
        #expect(outbox.offer([Self.message("d5", [("k", 1)])]) == 1)
        #expect(drains.withLock { $0 } == 1)
        let (messages, dropped) = outbox.take(maximum: 10)
        #expect(messages.map(\.deviceID) == ["d3", "d4", "d5"])
        #expect(dropped == 3)
        // Still draining until a take finds nothing.
        outbox.offer([Self.message("d6", [("k", 1)])])
        #expect(drains.withLock { $0 } == 1)
        #expect(outbox.take(maximum: 10).messages.map(\.deviceID) == ["d6"])
        #expect(outbox.take(maximum: 10).messages.isEmpty)
        outbox.offer([Self.message("d7", [("k", 1)])])
        #expect(drains.withLock { $0 } == 2)

        // The sample limit, and a paused (unwritable) connection.
        outbox.pause()
        #expect(outbox.offer([Self.message("big", Array(repeating: ("k", 1), count: 90))]) == 0)
        #expect(outbox.offer([Self.message("big2", Array(repeating: ("k", 1), count: 20))]) == 2)
        #expect(drains.withLock { $0 } == 2)
        #expect(outbox.resume())
        let after = outbox.take(maximum: 10)
        #expect(after.messages.map(\.deviceID) == ["big2"])
        #expect(after.dropped == 2)
        outbox.close()
        #expect(outbox.offer([Self.message("late", [("k", 1)])]) == 0)
        #expect(outbox.waiting == 0)
    }
}

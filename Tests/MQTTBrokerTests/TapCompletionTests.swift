import MQTTClient
import MQTTCore
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import MQTTBroker

/// Holds the acknowledgement of every message under `prefix` on a promise the test completes
/// (``MQTTTapDecision/acceptAfter(_:)``, or ``MQTTTapDecision/consumeAfter(_:)`` under
/// `consume/`). The promises belong to NIO's singleton group, not to the broker's loops, so
/// completions arrive from another event loop. Topics under `instant/` get an already
/// succeeded future.
final class DeferringTap: MQTTMessageTap {
    struct Held {
        var topic: String
        var payload: String
        var promise: EventLoopPromise<Void>
        var done = false
    }

    private let held = Mutex<[Held]>([])
    private let promiseLoop: any EventLoop = MultiThreadedEventLoopGroup.singleton.next()

    func inspect(_ message: MQTTTapMessage, from principal: MQTTPrincipal) -> MQTTTapDecision {
        if message.topic.contains("/instant/") { return .acceptAfter(promiseLoop.makeSucceededVoidFuture()) }
        let promise = promiseLoop.makePromise(of: Void.self)
        held.withLock {
            $0.append(Held(topic: message.topic, payload: String(buffer: message.payload), promise: promise))
        }
        return message.topic.contains("/consume/")
            ? .consumeAfter(promise.futureResult) : .acceptAfter(promise.futureResult)
    }

    /// How many messages the tap has seen (with a pending or completed completion).
    var count: Int { held.withLock { $0.count } }
    var payloads: [String] { held.withLock { $0.map(\.payload) } }

    func succeed(_ index: Int) { take(index)?.succeed() }
    func fail(_ index: Int, _ error: any Error) { take(index)?.fail(error) }

    /// Succeeds every completion still pending; returns how many.
    @discardableResult
    func succeedAll() -> Int {
        let pending = held.withLock { held -> [EventLoopPromise<Void>] in
            var promises: [EventLoopPromise<Void>] = []
            for index in held.indices where !held[index].done {
                held[index].done = true
                promises.append(held[index].promise)
            }
            return promises
        }
        for promise in pending { promise.succeed() }
        return pending.count
    }

    private func take(_ index: Int) -> EventLoopPromise<Void>? {
        held.withLock { held in
            guard index < held.count, !held[index].done else { return nil }
            held[index].done = true
            return held[index].promise
        }
    }
}

private struct PlatformDown: Error {}

@Suite("Tap completions: acknowledged once the platform's work is done")
struct TapCompletionTests {
    @Test("acceptAfter: routed to subscribers at once, PUBACK only after the completion succeeds")
    func acknowledgementWaitsForCompletion() async throws {
        let tap = DeferringTap()
        try await SocketBroker.with(messageTap: tap) { broker in
            let root = socketTopicRoot("after")
            let subscriber = broker.client(socketClientID("sub"))
            let inbox = SocketInbox(subscriber)
            try await subscriber.connect()
            try await subscriber.subscribe("\(root)/#", qos: .atLeastOnce)
            let publisher = broker.client(socketClientID("pub"))
            try await publisher.connect()
            let acknowledged = SocketFlag()
            let publish = Task {
                let ack = try await publisher.publish("\(root)/t", payload: "21.5", qos: .atLeastOnce)
                acknowledged.set()
                return ack
            }
            try await eventually("the tap seeing the message") { tap.count == 1 }
            // Routed while the completion is pending.
            let routed = try await inbox.wait(forCount: 1, "subscriber")
            #expect(routed.first?.payload.string == "21.5")
            try await Task.sleep(for: .milliseconds(300))
            #expect(!acknowledged.isSet, "PUBACK arrived before the completion")
            tap.succeed(0)
            let ack = try await within(.seconds(15), "PUBACK after the completion") { try await publish.value }
            #expect(ack?.reasonCode == .success)
            try await publisher.disconnect()
            try await subscriber.disconnect()
        }
    }

    @Test("acknowledgements keep the order of the PUBLISHes when a later completion finishes first (QoS 1 and 2)")
    func acknowledgementsStayInOrder() async throws {
        let tap = DeferringTap()
        try await SocketBroker.with(messageTap: tap) { broker in
            let root = socketTopicRoot("order")
            let client = try await SocketRawClient.open(port: broker.port)
            try await client.connect(ConnectPacket(clientIdentifier: socketClientID("raw")))
            try await client.send(
                .publish(
                    PublishPacket(
                        topic: "\(root)/a",
                        payload: ByteBuffer(string: "1"),
                        qos: .atLeastOnce,
                        packetIdentifier: 1
                    )
                )
            )
            try await client.send(
                .publish(
                    PublishPacket(
                        topic: "\(root)/b",
                        payload: ByteBuffer(string: "2"),
                        qos: .exactlyOnce,
                        packetIdentifier: 2
                    )
                )
            )
            try await client.send(
                .publish(
                    PublishPacket(
                        topic: "\(root)/c",
                        payload: ByteBuffer(string: "3"),
                        qos: .atLeastOnce,
                        packetIdentifier: 3
                    )
                )
            )
            try await eventually("the tap seeing three messages") { tap.count == 3 }
            tap.succeed(2)
            tap.succeed(1)
            try await Task.sleep(for: .milliseconds(300))
            #expect(acknowledgements(client) == [], "acknowledgements overtook the first, still pending one")
            tap.succeed(0)
            try await eventually("three acknowledgements") { acknowledgements(client).count == 3 }
            #expect(acknowledgements(client) == ["PUBACK 1 0x00", "PUBREC 2 0x00", "PUBACK 3 0x00"])
            await client.close()
        }
    }

    @Test(
        "a failed completion: an MQTT 5 publisher gets the MQTTTapFailure's reason code and string; other errors 0x80"
    )
    func failureReachesMQTT5Publisher() async throws {
        let tap = DeferringTap()
        try await SocketBroker.with(messageTap: tap) { broker in
            let root = socketTopicRoot("fail")
            let publisher = broker.client(socketClientID("pub"))
            try await publisher.connect()
            let first = Task { try await publisher.publish("\(root)/t", payload: "1", qos: .atLeastOnce) }
            try await eventually("the tap seeing the message") { tap.count == 1 }
            tap.fail(0, MQTTTapFailure(reasonCode: .quotaExceeded, reason: "busy"))
            let refused = try await within(.seconds(15), "PUBACK") { try await first.value }
            #expect(refused?.reasonCode == .quotaExceeded)
            #expect(refused?.properties.reasonString == "busy")

            let second = Task { try await publisher.publish("\(root)/t", payload: "2", qos: .atLeastOnce) }
            try await eventually("the tap seeing the second message") { tap.count == 2 }
            tap.fail(1, PlatformDown())
            let unspecified = try await within(.seconds(15), "PUBACK") { try await second.value }
            #expect(unspecified?.reasonCode == .unspecifiedError)
            #expect(unspecified?.properties.reasonString == nil)
            #expect(publisher.isConnected)
            try await publisher.disconnect()
        }
    }

    @Test("a failed QoS 2 completion ends the exchange with PUBREC: the packet identifier is free for a new message")
    func failedQoS2FreesTheIdentifier() async throws {
        let tap = DeferringTap()
        try await SocketBroker.with(messageTap: tap) { broker in
            let root = socketTopicRoot("fail2")
            let client = try await SocketRawClient.open(port: broker.port)
            try await client.connect(ConnectPacket(clientIdentifier: socketClientID("raw")))
            try await client.send(
                .publish(
                    PublishPacket(
                        topic: "\(root)/t",
                        payload: ByteBuffer(string: "1"),
                        qos: .exactlyOnce,
                        packetIdentifier: 7
                    )
                )
            )
            try await eventually("the tap seeing the message") { tap.count == 1 }
            tap.fail(0, MQTTTapFailure(reasonCode: .payloadFormatInvalid, reason: "bad payload"))
            guard case .pubrec(let pubrec) = try await client.next(.pubrec) else { return }
            #expect(pubrec.reasonCode == .payloadFormatInvalid && pubrec.properties.reasonString == "bad payload")
            // The same identifier again is a new message, seen by the tap, not a duplicate.
            try await client.send(
                .publish(
                    PublishPacket(
                        topic: "\(root)/t",
                        payload: ByteBuffer(string: "2"),
                        qos: .exactlyOnce,
                        packetIdentifier: 7
                    )
                )
            )
            try await eventually("the tap seeing the new message") { tap.count == 2 }
            tap.succeed(1)
            try await eventually("a second PUBREC") { acknowledgements(client).count == 2 }
            #expect(acknowledgements(client) == ["PUBREC 7 0x99", "PUBREC 7 0x00"])
            #expect(tap.payloads == ["1", "2"])
            await client.close()
        }
    }

    @Test("a failed completion disconnects an MQTT 3.1.1 publisher (it has no negative acknowledgement)")
    func failureDisconnectsMQTT311Publisher() async throws {
        let tap = DeferringTap()
        try await SocketBroker.with(messageTap: tap) { broker in
            let root = socketTopicRoot("fail311")
            let client = try await SocketRawClient.open(port: broker.port, version: .v3_1_1)
            try await client.connect(
                ConnectPacket(protocolVersion: .v3_1_1, clientIdentifier: socketClientID("raw311"))
            )
            try await client.send(
                .publish(
                    PublishPacket(
                        topic: "\(root)/t",
                        payload: ByteBuffer(string: "1"),
                        qos: .atLeastOnce,
                        packetIdentifier: 1
                    )
                )
            )
            try await eventually("the tap seeing the message") { tap.count == 1 }
            tap.fail(0, MQTTTapFailure(reasonCode: .quotaExceeded, reason: "busy"))
            try await eventually("the broker closing the connection") { client.isClosed }
            #expect(acknowledgements(client) == [])
        }
    }

    @Test(
        "consumeAfter: not routed, acknowledged once the completion succeeds; a completed future acknowledges at once"
    )
    func consumeAfterAndInstantCompletion() async throws {
        let tap = DeferringTap()
        try await SocketBroker.with(messageTap: tap) { broker in
            let root = socketTopicRoot("consume")
            let subscriber = broker.client(socketClientID("sub"))
            let inbox = SocketInbox(subscriber)
            try await subscriber.connect()
            try await subscriber.subscribe("\(root)/#", qos: .atLeastOnce)
            let publisher = broker.client(socketClientID("pub"))
            try await publisher.connect()
            let instant = try await within(.seconds(15), "PUBACK for an instant completion") {
                try await publisher.publish("\(root)/instant/t", payload: "now", qos: .atLeastOnce)
            }
            #expect(instant?.reasonCode == .success)
            let answered = SocketFlag()
            let consumed = Task {
                let ack = try await publisher.publish("\(root)/consume/t", payload: "mine", qos: .exactlyOnce)
                answered.set()
                return ack
            }
            try await eventually("the tap seeing the message") { tap.count == 1 }
            try await Task.sleep(for: .milliseconds(300))
            #expect(!answered.isSet, "acknowledged before the completion")
            tap.succeed(0)
            let pubcomp = try await within(.seconds(15), "PUBCOMP") { try await consumed.value }
            #expect(pubcomp?.reasonCode == .success)
            try await publisher.publish("\(root)/plain", payload: "last", qos: .atMostOnce)
            try await eventually("the routed messages") { inbox.count >= 2 }
            #expect(try await inbox.settled().map(\.payload.string) == ["now", "last"])
            tap.succeedAll()
            try await publisher.disconnect()
            try await subscriber.disconnect()
        }
    }

    @Test(
        "QoS 0 back-pressure: past the pending-completion limit the broker stops reading, and reads again once they are done"
    )
    func qos0BackPressure() async throws {
        let tap = DeferringTap()
        let limit = 8
        let total = 40
        try await SocketBroker.with(messageTap: tap, configure: { $0.limits.maximumPendingCompletions = limit }) {
            broker in
            let root = socketTopicRoot("qos0")
            let subscriber = broker.client(socketClientID("sub"))
            let inbox = SocketInbox(subscriber)
            try await subscriber.connect()
            try await subscriber.subscribe("\(root)/#", qos: .atMostOnce)
            let publisher = broker.client(socketClientID("pub"))
            try await publisher.connect()
            for index in 0..<total {
                try await publisher.publish("\(root)/t", payload: "\(index)", qos: .atMostOnce)
            }
            try await eventually("the tap seeing the first messages") { tap.count > limit }
            try await inbox.wait(forCount: limit + 1, "subscriber (routed at once)")
            try await Task.sleep(for: .milliseconds(500))
            // The broker read one past the limit and stopped; the rest waits in the socket.
            #expect(tap.count == limit + 1)
            #expect(inbox.count == limit + 1)
            #expect(publisher.isConnected)
            try await eventually("every message read once the completions are done", within: .seconds(20)) {
                tap.succeedAll()
                return tap.count == total
            }
            tap.succeedAll()
            let received = try await inbox.wait(forCount: total, within: .seconds(20), "subscriber")
            #expect(received.map(\.payload.string) == (0..<total).map { "\($0)" })
            try await publisher.disconnect()
            try await subscriber.disconnect()
        }
    }

    @Test("QoS 1 messages count against the limit too: reading pauses until enough completions are done")
    func qos1CountsAgainstTheLimit() async throws {
        let tap = DeferringTap()
        let limit = 4
        try await SocketBroker.with(messageTap: tap, configure: { $0.limits.maximumPendingCompletions = limit }) {
            broker in
            let root = socketTopicRoot("qos1limit")
            let client = try await SocketRawClient.open(port: broker.port)
            try await client.connect(ConnectPacket(clientIdentifier: socketClientID("raw")))
            for identifier in UInt16(1)...10 {
                try await client.send(
                    .publish(
                        PublishPacket(
                            topic: "\(root)/t",
                            payload: ByteBuffer(string: "\(identifier)"),
                            qos: .atLeastOnce,
                            packetIdentifier: identifier
                        )
                    )
                )
            }
            try await eventually("the tap seeing the first messages") { tap.count > limit }
            try await Task.sleep(for: .milliseconds(300))
            #expect(tap.count == limit + 1)
            try await eventually("all ten read and acknowledged", within: .seconds(20)) {
                tap.succeedAll()
                return acknowledgements(client).count == 10
            }
            #expect(acknowledgements(client) == (1...10).map { "PUBACK \($0) 0x00" })
            await client.close()
        }
    }

    @Test("completions that finish after the connection closed are ignored: no crash, the broker serves on")
    func completionsAfterClose() async throws {
        let tap = DeferringTap()
        try await SocketBroker.with(messageTap: tap, configure: { $0.limits.maximumPendingCompletions = 2 }) { broker in
            let root = socketTopicRoot("closed")
            let client = try await SocketRawClient.open(port: broker.port)
            try await client.connect(ConnectPacket(clientIdentifier: socketClientID("raw")))
            for identifier in UInt16(1)...3 {
                try await client.send(
                    .publish(
                        PublishPacket(
                            topic: "\(root)/t",
                            payload: ByteBuffer(string: "x"),
                            qos: .atLeastOnce,
                            packetIdentifier: identifier
                        )
                    )
                )
            }
            try await client.send(
                .publish(PublishPacket(topic: "\(root)/t", payload: ByteBuffer(string: "q0"), qos: .atMostOnce))
            )
            try await eventually("the tap seeing three messages") { tap.count == 3 }
            await client.close()
            try await eventually("the broker noticing the close") { broker.statistics.connections == 0 }
            tap.succeed(0)
            tap.fail(1, MQTTTapFailure(reasonCode: .quotaExceeded, reason: "late"))
            tap.succeed(2)
            let after = broker.client(socketClientID("after"))
            try await after.connect()
            let ack = try await within(.seconds(15), "PUBACK on a new connection") {
                try await after.publish("\(root)/instant/t", payload: "ok", qos: .atLeastOnce)
            }
            #expect(ack?.reasonCode == .success)
            try await after.disconnect()
            tap.succeedAll()
        }
    }
}

/// The PUBACK/PUBREC packets `client` received, as `"PUBACK <id> 0x<code>"`.
private func acknowledgements(_ client: SocketRawClient) -> [String] {
    client.packets.compactMap { packet in
        switch packet {
        case .puback(let ack): "PUBACK \(ack.packetIdentifier) \(hex(ack.reasonCode))"
        case .pubrec(let ack): "PUBREC \(ack.packetIdentifier) \(hex(ack.reasonCode))"
        default: nil
        }
    }
}

private func hex(_ code: ReasonCode) -> String {
    let digits = String(code.rawValue, radix: 16, uppercase: true)
    return "0x" + (digits.count < 2 ? "0" + digits : digits)
}

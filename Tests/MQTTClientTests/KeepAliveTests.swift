import MQTTClient
import MQTTCore
import NIOCore
import Testing

@Suite("Keep-alive and reconnect")
struct KeepAliveTests {
    @Test(
        "the client's PINGREQs keep an idle connection open past the keep-alive",
        arguments: TestBrokerKind.allCases,
        TestTransport.allCases
    )
    func pingsKeepConnectionOpen(kind: TestBrokerKind, transport: TestTransport) async throws {
        try await withBroker(kind) { broker in
            // 2 s, not 1: both brokers drop a client silent for 1.5 keep-alives, and with every
            // test running at once on two cores a PINGREQ can be late by more than half a second.
            let client = makeClient(broker, transport: transport) { $0.keepAlive = .seconds(2) }
            let packets = StreamRecorder(client.packets)
            try await client.connect()
            try await Task.sleep(for: .milliseconds(5500))
            #expect(client.isConnected)
            let pingResponses = packets.all.filter { if case .pingresp = $0 { true } else { false } }
            #expect(pingResponses.count >= 2)
            let topic = uniqueTopic()
            let ack = try await client.publish(topic, payload: "still here", qos: .atLeastOnce)
            #expect(ack != nil)
            try await client.disconnect()
        }
    }

    @Test(
        "after the broker restarts, the client reconnects with backoff and works again",
        arguments: TestBrokerKind.allCases
    )
    func reconnectsAfterBrokerRestart(kind: TestBrokerKind) async throws {
        try await withBroker(kind) { broker in
            let client = makeClient(broker) {
                $0.reconnect = .exponentialBackoff(initialDelay: .milliseconds(100), maximumDelay: .milliseconds(400))
                $0.keepAlive = .seconds(2)
            }
            let events = StreamRecorder(client.events)
            try await client.connect()
            await broker.kill()
            try await events.first { if case .disconnected(_, willReconnect: true) = $0 { true } else { false } }
            // Let a few attempts fail against the stopped broker. (An attempt may also meet
            // another test's listener that got the freed port, and wait for its CONNACK until
            // the connect timeout: the wait is generous.)
            try await events.first(within: .seconds(30)) {
                if case .reconnectFailed(attempt: 2, _) = $0 { true } else { false }
            }
            // A QoS 1 publish made while reconnecting waits for the connection.
            let pending = StreamRecorder(
                AsyncStream<Result<PublishAckPacket?, any Error>> { continuation in
                    Task {
                        do {
                            continuation.yield(
                                .success(try await client.publish("pending/topic", payload: "p", qos: .atLeastOnce))
                            )
                        } catch {
                            continuation.yield(.failure(error))
                        }
                    }
                }
            )
            try await Task.sleep(for: .milliseconds(100))
            #expect(pending.all.isEmpty)
            try await broker.restart()
            let connected = try await events.first(within: .seconds(10), from: 1) {
                if case .connected = $0 { true } else { false }
            }
            guard case .connected(let connAck) = connected else { return }
            #expect(connAck.reasonCode == .success)
            #expect(client.isConnected)
            let pendingResult = try await pending.first()
            #expect(try pendingResult.get() != nil)

            // The delays grew between attempts and stayed under the maximum (plus jitter).
            let delays: [TimeAmount] = events.all.compactMap {
                if case .reconnecting(_, let delay) = $0 { delay } else { nil }
            }
            #expect(delays.count >= 2)
            #expect(delays.allSatisfy { $0 <= .milliseconds(400) })

            // The broker lost everything (persistence off); subscribing again works.
            let messages = StreamRecorder(client.messages)
            let topic = uniqueTopic()
            try await client.subscribe(topic, qos: .atLeastOnce)
            try await client.publish(topic, payload: "back", qos: .atLeastOnce)
            #expect(try await messages.first().payload.string == "back")
            try await client.disconnect()
            #expect(!client.isConnected)
        }
    }

    @Test(
        "disconnect() while reconnecting stops the attempts and fails waiting publishes",
        arguments: TestBrokerKind.allCases
    )
    func disconnectWhileReconnecting(kind: TestBrokerKind) async throws {
        try await withBroker(kind) { broker in
            let client = makeClient(broker) {
                $0.reconnect = .exponentialBackoff(initialDelay: .milliseconds(100), maximumDelay: .milliseconds(200))
            }
            let events = StreamRecorder(client.events)
            try await client.connect()
            await broker.kill()
            try await events.first { if case .reconnecting = $0 { true } else { false } }
            let pending = StreamRecorder(
                AsyncStream<(any Error)?> { continuation in
                    Task {
                        do {
                            _ = try await client.publish("t", payload: "p", qos: .atLeastOnce)
                            continuation.yield(nil)
                        } catch {
                            continuation.yield(error)
                        }
                    }
                }
            )
            try await Task.sleep(for: .milliseconds(50))
            try await client.disconnect()
            let failure = try await pending.first()
            #expect(failure != nil)
            try await events.first { if case .disconnected(_, willReconnect: false) = $0 { true } else { false } }
            let attemptsAtDisconnect = events.all.count
            try await broker.restart()
            try await Task.sleep(for: .milliseconds(600))
            #expect(!client.isConnected)
            #expect(events.all.count == attemptsAtDisconnect)
        }
    }

    @Test(
        "without a reconnect policy, a lost connection ends and waitUntilClosed says why",
        arguments: TestBrokerKind.allCases
    )
    func noReconnectByDefault(kind: TestBrokerKind) async throws {
        try await withBroker(kind) { broker in
            let client = makeClient(broker)
            try await client.connect()
            await broker.kill()
            let reason = await client.waitUntilClosed()
            #expect(!reason.initiatedByClient)
            #expect(reason.error?.code == .connectionClosed)
            #expect(!client.isConnected)
            await #expect(throws: MQTTClientError.notConnected()) {
                try await client.publish("a", payload: "b", qos: .atLeastOnce)
            }
        }
    }
}

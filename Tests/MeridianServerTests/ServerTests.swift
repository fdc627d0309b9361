import Foundation
import MQTTBroker
import MQTTClient
import MQTTCore
import MeridianServer
import NIOCore
import Testing

/// `MeridianApplication` in-process on ephemeral ports: the HTTP endpoints, MQTT over TCP and
/// WebSocket on the shared event loops, metrics, shutdown, and two servers side by side.
///
/// Metrics are process-wide (swift-metrics is bootstrapped once) and every broker in the test
/// process records into them, so metric assertions are on deltas, and lower bounds.
@Suite("Meridian server in-process", .timeLimit(.minutes(1)))
struct ServerTests {
    @Test("/healthz and /readyz answer 200; a plain GET on the MQTT path says how to upgrade")
    func healthAndReadiness() async throws {
        try await ServerFixture.with { server in
            let health = try await server.get("/healthz")
            #expect(health.status == 200)
            #expect(health.body == "ok\n")
            let ready = try await server.get("/readyz")
            #expect(ready.status == 200)
            #expect(ready.body == "ready\n")
            let mqtt = try await server.get("/mqtt")
            #expect(mqtt.status == 400)
            #expect(mqtt.body.contains("Sec-WebSocket-Protocol: mqtt"))
            let missing = try await server.get("/no-such-page")
            #expect(missing.status == 404)
        }
    }

    @Test("/metrics has the MQTT series, and its counters move with MQTT traffic")
    func metricsMoveWithTraffic() async throws {
        try await ServerFixture.with { server in
            let response = try await server.get("/metrics")
            #expect(response.status == 200)
            #expect(response.header("Content-Type")?.hasPrefix("text/plain") == true)
            #expect(response.body.contains("mqtt_connections"))
            let before = ServerHTTPClient.prometheusSamples(response.body)

            let topic = serverTopicRoot("metrics")
            let subscriber = server.client()
            let publisher = server.client(webSocket: true)
            let inbox = ServerInbox(subscriber)
            try await subscriber.connect()
            try await publisher.connect()
            try await subscriber.subscribe(topic, qos: .atLeastOnce)
            let count = 5
            for index in 0..<count {
                try await publisher.publish(topic, payload: "\(index)", qos: .atLeastOnce)
            }
            try await inbox.wait(forCount: count)

            // Counters are folded in as each loop flushes, so poll until they show the traffic.
            var after: [String: Double] = [:]
            func delta(_ series: String) -> Double { (after[series] ?? 0) - (before[series] ?? 0) }
            try await serverEventually("the counters to move") {
                after = try await server.metrics()
                return delta("mqtt_messages_received_total") >= Double(count)
                    && delta("mqtt_messages_sent_total") >= Double(count)
            }
            #expect(delta("mqtt_connections_total") >= 2)
            #expect(delta(#"mqtt_packets_received_total{type="publish"}"#) >= Double(count))
            #expect(delta(#"mqtt_packets_received_total{type="subscribe"}"#) >= 1)
            #expect(delta(#"mqtt_packets_sent_total{type="puback"}"#) >= Double(count))
            #expect(delta("mqtt_bytes_received_total") > 0)
            #expect(delta("mqtt_bytes_sent_total") > 0)
            #expect(after["mqtt_connections"] != nil)
            #expect(after["mqtt_subscriptions"] != nil)

            try await publisher.disconnect()
            try await subscriber.disconnect()
        }
    }

    @Test(
        "MQTT over TCP and over WebSocket on the HTTP port reach each other both ways",
        arguments: [MQTTProtocolVersion.v3_1_1, .v5]
    )
    func tcpAndWebSocketClientsTalk(version: MQTTProtocolVersion) async throws {
        try await ServerFixture.with { server in
            let root = serverTopicRoot("bridge")
            let tcp = server.client(serverClientID("tcp"), version: version)
            let webSocket = server.client(serverClientID("ws"), version: version, webSocket: true)
            let tcpInbox = ServerInbox(tcp)
            let webSocketInbox = ServerInbox(webSocket)
            #expect(try await tcp.connect().reasonCode == .success)
            #expect(try await webSocket.connect().reasonCode == .success)
            try await tcp.subscribe("\(root)/to-tcp/#", qos: .exactlyOnce)
            try await webSocket.subscribe("\(root)/to-ws/#", qos: .exactlyOnce)

            for qos in [QoS.atMostOnce, .atLeastOnce, .exactlyOnce] {
                try await tcp.publish("\(root)/to-ws/\(qos.rawValue)", payload: "from tcp \(qos.rawValue)", qos: qos)
                try await webSocket.publish(
                    "\(root)/to-tcp/\(qos.rawValue)",
                    payload: "from ws \(qos.rawValue)",
                    qos: qos
                )
            }
            let atWebSocket = try await webSocketInbox.wait(forCount: 3)
            let atTCP = try await tcpInbox.wait(forCount: 3)
            #expect(atWebSocket.map(\.payload.string) == ["from tcp 0", "from tcp 1", "from tcp 2"])
            #expect(atWebSocket.map(\.qos) == [.atMostOnce, .atLeastOnce, .exactlyOnce])
            #expect(atTCP.map(\.payload.string) == ["from ws 0", "from ws 1", "from ws 2"])

            // A message bigger than one small frame crosses intact.
            let large = String(repeating: "0123456789", count: 20_000)
            try await tcp.publish("\(root)/to-ws/large", payload: large, qos: .atLeastOnce)
            let big = try await webSocketInbox.wait(forCount: 4)[3]
            #expect(big.payload.readableBytes == large.utf8.count)
            #expect(big.payload.string == large)

            // A retained message set over WebSocket reaches a later TCP subscriber.
            try await webSocket.publish("\(root)/state", payload: "on", qos: .atLeastOnce, retain: true)
            let late = server.client(serverClientID("late"), version: version)
            let lateInbox = ServerInbox(late)
            try await late.connect()
            try await late.subscribe("\(root)/state", qos: .atLeastOnce)
            let retained = try await lateInbox.wait(forCount: 1)[0]
            #expect(retained.retain && retained.payload.string == "on")

            try await tcp.disconnect()
            try await webSocket.disconnect()
            try await late.disconnect()
        }
    }

    @Test(
        "a session moves between TCP and WebSocket: the old connection gets 0x8E, the new one resumes it",
        arguments: [false, true]
    )
    func sessionMovesBetweenTransports(startOnWebSocket: Bool) async throws {
        try await ServerFixture.with { server in
            let root = serverTopicRoot("roaming")
            let clientID = serverClientID("roamer")
            let persistent: (inout MQTTClient.Configuration) -> Void = {
                $0.cleanStart = false
                $0.connectProperties.sessionExpiryInterval = 300
            }
            let before = server.client(clientID, webSocket: startOnWebSocket, configure: persistent)
            try await before.connect()
            try await before.subscribe("\(root)/#", qos: .atLeastOnce)
            try await before.disconnect()
            let publisher = server.client()
            try await publisher.connect()
            try await publisher.publish("\(root)/queued", payload: "while away", qos: .atLeastOnce)

            let again = server.client(clientID, webSocket: startOnWebSocket, configure: persistent)
            let againInbox = ServerInbox(again)
            #expect(try await again.connect().sessionPresent)
            #expect(try await againInbox.wait(forCount: 1).map(\.payload.string) == ["while away"])
            let after = server.client(clientID, webSocket: !startOnWebSocket, configure: persistent)
            let inbox = ServerInbox(after)
            let connAck = try await after.connect()
            #expect(connAck.sessionPresent)
            try await serverEventually("the earlier connection to close") { !again.isConnected }
            #expect(again.lastCloseReason?.serverReasonCode == .sessionTakenOver)

            try await publisher.publish("\(root)/live", payload: "live", qos: .atLeastOnce)
            try await inbox.wait(forCount: 1)
            try await Task.sleep(for: .milliseconds(200))
            #expect(inbox.all.map(\.payload.string) == ["live"])
            #expect(againInbox.all.count == 1)
            try await after.disconnect(properties: [.sessionExpiryInterval(0)])
            try await publisher.disconnect()
        }
    }

    @Test("a stream over WebSocket keeps its order both ways")
    func webSocketStreamsKeepTheirOrder() async throws {
        try await ServerFixture.with { server in
            let root = serverTopicRoot("ws-stream")
            let webSocket = server.client(webSocket: true)
            let tcp = server.client()
            let webSocketInbox = ServerInbox(webSocket)
            let tcpInbox = ServerInbox(tcp)
            try await webSocket.connect()
            try await tcp.connect()
            try await webSocket.subscribe("\(root)/to-ws", qos: .atLeastOnce)
            try await tcp.subscribe("\(root)/to-tcp", qos: .atLeastOnce)
            let count = 300
            async let fromTCP: Void = {
                for index in 0..<count {
                    try await tcp.publish(
                        "\(root)/to-ws",
                        payload: "\(index)",
                        qos: index.isMultiple(of: 3) ? .atMostOnce : .atLeastOnce
                    )
                }
            }()
            async let fromWebSocket: Void = {
                for index in 0..<count {
                    try await webSocket.publish("\(root)/to-tcp", payload: "\(index)", qos: .atLeastOnce)
                }
            }()
            _ = try await (fromTCP, fromWebSocket)
            let atWebSocket = try await webSocketInbox.wait(forCount: count, within: .seconds(10))
            let atTCP = try await tcpInbox.wait(forCount: count, within: .seconds(10))
            #expect(atTCP.map(\.payload.string) == (0..<count).map { "\($0)" })
            // QoS 0 and QoS 1 messages are ordered separately (MQTT 5 §4.6); each kind keeps its order.
            let sequences = atWebSocket.compactMap { Int($0.payload.string) }
            #expect(sequences.filter { $0.isMultiple(of: 3) } == (0..<count).filter { $0.isMultiple(of: 3) })
            #expect(sequences.filter { !$0.isMultiple(of: 3) } == (0..<count).filter { !$0.isMultiple(of: 3) })
            try await webSocket.disconnect()
            try await tcp.disconnect()
        }
    }

    @Test("a WebSocket upgrade is accepted only on the MQTT path with the mqtt subprotocol")
    func webSocketUpgradeNeedsTheMQTTSubprotocol() async throws {
        try await ServerFixture.with { server in
            let port = server.httpPort
            // Refused: no 101 (whether the refusal comes with an HTTP answer is the next test's).
            for (path, offered) in [("/mqtt", []), ("/mqtt", ["chat"]), ("/other", ["mqtt"])] {
                let refused = try await ServerHTTPClient.upgrade(port: port, path: path, subprotocols: offered)
                #expect(refused?.status != 101, "upgrade of \(path) offering \(offered) accepted")
            }

            let accepted = try #require(
                try await ServerHTTPClient.upgrade(port: port, path: "/mqtt", subprotocols: ["chat", "mqtt"])
            )
            #expect(accepted.status == 101)
            #expect(accepted.header("Sec-WebSocket-Protocol") == "mqtt")
            #expect(accepted.header("Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
            let legacy = try #require(
                try await ServerHTTPClient.upgrade(port: port, path: "/mqtt", subprotocols: ["mqttv3.1"])
            )
            #expect(legacy.status == 101)
            #expect(legacy.header("Sec-WebSocket-Protocol") == "mqttv3.1")

            // The refusals left the server healthy.
            #expect(try await server.get("/healthz").status == 200)
        }
    }

    @Test("a refused WebSocket upgrade gets an HTTP 4xx answer, not a dropped connection")
    func refusedUpgradeIsAnswered() async throws {
        try await ServerFixture.with { server in
            // path, subprotocols offered, Sec-WebSocket-Version, then the expected answer.
            typealias Refusal = (
                path: String, offered: [String], version: String, status: Int, type: String, detail: String
            )
            let refusals: [Refusal] = [
                ("/mqtt", [], "13", 400, "websocket-subprotocol", "upgrade on /mqtt needs the subprotocol mqtt"),
                ("/mqtt", ["chat"], "13", 400, "websocket-subprotocol", "needs the subprotocol mqtt (or mqttv3.1)"),
                ("/other", ["mqtt"], "13", 400, "websocket-path", "accepted on /mqtt (MQTT over WebSocket) and /api/v1/stream"),
                ("/mqtt?x=1", ["mqtt"], "8", 426, "websocket-version", "Sec-WebSocket-Version: 13"),
            ]
            for refusal in refusals {
                let context = "upgrade of \(refusal.path) offering \(refusal.offered), version \(refusal.version)"
                let response = try await ServerHTTPClient.upgrade(
                    port: server.httpPort,
                    path: refusal.path,
                    subprotocols: refusal.offered,
                    version: refusal.version
                )
                #expect(response != nil, "\(context): connection closed without a response")
                guard let response else { continue }
                #expect(response.status == refusal.status, "\(context)")
                #expect(response.header("Content-Type") == "application/problem+json", "\(context)")
                #expect(response.header("Connection")?.contains("close") == true, "\(context)")
                #expect(response.header("Date")?.hasSuffix(" GMT") == true, "\(context)")
                let problem = try JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any]
                #expect(problem?["type"] as? String == "urn:meridian:problem:\(refusal.type)", "\(context)")
                #expect(problem?["status"] as? Int == refusal.status, "\(context)")
                #expect(
                    (problem?["detail"] as? String)?.contains(refusal.detail) == true,
                    "\(context): \(response.body)"
                )
                if refusal.status == 426 {
                    #expect(response.header("Sec-WebSocket-Version") == "13")
                }
            }

            // No Sec-WebSocket-Key: NIO's upgrader turns it down before asking Meridian.
            let keyless = try await ServerHTTPClient.send(
                port: server.httpPort,
                "GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    + "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
            )
            #expect(keyless.hasPrefix("HTTP/1.1 400 "), "\(keyless)")
            #expect(keyless.contains("urn:meridian:problem:websocket-handshake"), "\(keyless)")

            // A plain GET of the MQTT path keeps its own answer; the server stays healthy.
            let plain = try await server.get("/mqtt")
            #expect(plain.status == 400)
            #expect(plain.body.contains("Sec-WebSocket-Protocol: mqtt"))
            #expect(try await server.get("/healthz").status == 200)
        }
    }

    @Test(
        "an upgrade to a protocol Meridian does not speak is ignored: the request is answered, then the connection closes"
    )
    func otherUpgradeIsServedAsHTTP() async throws {
        try await ServerFixture.with { server in
            // What `curl --http2` sends over plain HTTP, and a second request behind it, which
            // NIO's HTTP decoder does not parse after an upgrade request: the first is answered
            // and the connection closed (not left hanging until the client gives up after 5 s).
            let upgrade =
                "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"
            let started = ContinuousClock.now
            let raw = try await ServerHTTPClient.send(
                port: server.httpPort,
                "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\(upgrade)\r\n\r\n"
                    + "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            )
            #expect(ContinuousClock.now - started < .seconds(4), "the connection was not closed")
            #expect(raw.hasPrefix("HTTP/1.1 200 "), "\(raw)")
            #expect(raw.hasSuffix("\r\n\r\nok\n"), "\(raw)")
            #expect(try await server.get("/healthz").status == 200)
        }
    }

    @Test("two servers in one process keep their clients, messages and retained state apart")
    func twoServersDoNotInterfere() async throws {
        try await ServerFixture.with { first in
            let topic = serverTopicRoot("apart")
            // The same client identifier on both servers: no takeover across servers.
            let sharedID = serverClientID("same-id")
            let onFirst = first.client(sharedID)
            let firstInbox = ServerInbox(onFirst)
            let firstPublisher = first.client()
            try await onFirst.connect()
            try await onFirst.subscribe(topic, qos: .atLeastOnce)
            try await firstPublisher.connect()

            try await ServerFixture.with { second in
                #expect(first.mqttPort != second.mqttPort)
                #expect(first.httpPort != second.httpPort)
                let onSecond = second.client(sharedID, webSocket: true)
                let secondInbox = ServerInbox(onSecond)
                try await onSecond.connect()
                try await onSecond.subscribe(topic, qos: .atLeastOnce)

                let before = try await first.metrics()
                let secondPublisher = second.client()
                try await secondPublisher.connect()
                try await firstPublisher.publish(topic, payload: "first", qos: .atLeastOnce, retain: true)
                try await secondPublisher.publish(topic, payload: "second", qos: .atLeastOnce)
                try await firstInbox.wait(forCount: 1)
                try await secondInbox.wait(forCount: 1)
                try await Task.sleep(for: .milliseconds(300))
                #expect(firstInbox.all.map(\.payload.string) == ["first"])
                #expect(secondInbox.all.map(\.payload.string) == ["second"])
                #expect(onFirst.isConnected && onSecond.isConnected)

                // The retained message stays on the first server.
                let probe = second.client()
                let probeInbox = ServerInbox(probe)
                try await probe.connect()
                try await probe.subscribe(topic, qos: .atLeastOnce)
                try await Task.sleep(for: .milliseconds(300))
                #expect(probeInbox.all.isEmpty)

                // Both /metrics show the one process-wide registry, counting both servers' traffic.
                try await serverEventually("both servers' messages in the counters") {
                    let now = try await second.metrics()
                    let received =
                        (now["mqtt_messages_received_total"] ?? 0) - (before["mqtt_messages_received_total"] ?? 0)
                    return received >= 2
                }
                try await probe.disconnect()
                try await secondPublisher.disconnect()
                try await onSecond.disconnect()
            }

            // The first server is unaffected by the second one's shutdown.
            #expect(try await first.get("/readyz").status == 200)
            #expect(onFirst.isConnected)
            try await firstPublisher.publish(topic, payload: "after", qos: .atLeastOnce)
            let after = try await firstInbox.wait(forCount: 2)
            #expect(after.map(\.payload.string) == ["first", "after"])
            try await firstPublisher.disconnect()
            try await onFirst.disconnect()
        }
    }

    @Test("graceful shutdown disconnects TCP and WebSocket clients (MQTT 5 with 0x8B) and run returns")
    func gracefulShutdown() async throws {
        try await ServerFixture.with { server in
            let clients = [
                server.client(version: .v5),
                server.client(version: .v5, webSocket: true),
                server.client(version: .v3_1_1),
                server.client(version: .v3_1_1, webSocket: true),
            ]
            for client in clients { try await client.connect() }
            try await server.stop()
            #expect(server.isFinished)
            for client in clients {
                try await serverEventually("the client to see the close") { !client.isConnected }
                let reason = try #require(client.lastCloseReason)
                #expect(!reason.initiatedByClient)
                if client.configuration.protocolVersion == .v5 {
                    #expect(reason.serverReasonCode == .serverShuttingDown, "\(client.configuration.transport)")
                } else {
                    #expect(reason.serverDisconnect == nil)
                }
            }
            for port in [server.mqttPort, server.httpPort] {
                let late = MQTTClient(
                    configuration: .init(host: "127.0.0.1", port: port, clientIdentifier: serverClientID())
                )
                let error = await #expect(throws: MQTTClientError.self) { try await late.connect() }
                #expect(error?.code == .connectionFailed, "port \(port) still accepts connections")
            }
        }
    }

    @Test("cancelling the task that runs the server stops it too")
    func cancellationStopsTheServer() async throws {
        try await ServerFixture.with { server in
            let client = server.client(webSocket: true)
            try await client.connect()
            try await server.cancel()
            try await serverEventually("the client to see the close") { !client.isConnected }
            let late = server.client()
            let error = await #expect(throws: MQTTClientError.self) { try await late.connect() }
            #expect(error?.code == .connectionFailed)
        }
    }

    @Test("with strict durability, a persistent session and its queued messages survive a restart")
    func durableSessionSurvivesRestart() async throws {
        var configuration = ServerFixture.testConfiguration()
        configuration.broker.durability = .strict
        defer { try? FileManager.default.removeItem(atPath: configuration.dataDirectory) }
        let clientID = serverClientID("durable")
        let topic = serverTopicRoot("durable")
        let persistent: (inout MQTTClient.Configuration) -> Void = {
            $0.cleanStart = false
            $0.connectProperties.sessionExpiryInterval = 600
        }
        try await ServerFixture.with(configuration, keepData: true) { server in
            let subscriber = server.client(clientID, webSocket: true, configure: persistent)
            try await subscriber.connect()
            try await subscriber.subscribe(topic, qos: .atLeastOnce)
            try await subscriber.disconnect()
            let publisher = server.client()
            try await publisher.connect()
            for index in 0..<3 {
                let ack = try await publisher.publish(topic, payload: "queued-\(index)", qos: .atLeastOnce)
                #expect(ack?.reasonCode == .success)
            }
            try await publisher.disconnect()
        }
        try await ServerFixture.with(configuration, keepData: true) { server in
            let subscriber = server.client(clientID, configure: persistent)
            let inbox = ServerInbox(subscriber)
            let connAck = try await subscriber.connect()
            #expect(connAck.sessionPresent)
            let received = try await inbox.wait(forCount: 3)
            #expect(received.map(\.payload.string) == ["queued-0", "queued-1", "queued-2"])
            try await subscriber.disconnect(properties: [.sessionExpiryInterval(0)])
        }
    }
}

extension ByteBuffer {
    fileprivate var string: String { String(buffer: self) }
}

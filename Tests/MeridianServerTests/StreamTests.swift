import Foundation
import MQTTClient
import MQTTCore
import NIOCore
import NIOWebSocket
import Testing

@testable import MeridianServer

/// The live stream end to end: a real server on ephemeral ports, WebSocket clients on NIO.
/// One test at a time: each runs a server, and the slow-consumer test pushes megabytes.
@Suite("Live stream: WebSocket /api/v1/stream", .serialized)
struct StreamTests {
    static let t0: Int64 = 1_700_000_000_000

    static func isTelemetry(_ subscription: String) -> ([String: Any]) -> Bool {
        { $0["type"] as? String == "telemetry" && $0["subscription"] as? String == subscription }
    }

    static func samples(_ message: [String: Any], _ key: String) -> [[String: Any]] {
        (message["samples"] as? [String: Any])?[key] as? [[String: Any]] ?? []
    }

    static func bearer(_ token: String) -> [(String, String)] { [("Authorization", "Bearer \(token)")] }

    /// The raw upgrade request for the stream with `headers`, and the server's answer.
    static func upgradeAnswer(
        port: Int,
        path: String = StreamEndpoint.path,
        headers: [(String, String)]
    ) async throws -> ServerHTTPResponse {
        var lines = [
            "GET \(path) HTTP/1.1", "Host: 127.0.0.1:\(port)", "Upgrade: websocket", "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13",
        ]
        lines += headers.map { "\($0.0): \($0.1)" }
        let raw = try await ServerHTTPClient.send(port: port, lines.joined(separator: "\r\n") + "\r\n\r\n")
        return try ServerHTTPClient.parse(raw)
    }

    @Test("a subscriber receives the samples its devices send over HTTP and MQTT; a key filter keeps only those keys")
    func receivesTelemetry() async throws {
        try await ServerFixture.withStream { server, api in
            let device = try await api.device()
            let client = try await StreamTestClient.connect(
                port: server.httpPort,
                headers: Self.bearer(StreamTestAPI.adminKey),
                subprotocols: ["meridian.v1"]
            )
            #expect(client.subprotocol == "meridian.v1")
            let hello = try await client.next { $0["type"] as? String == "authenticated" }
            #expect(hello["role"] as? String == "owner")
            #expect(try await client.subscribe("everything", devices: [device.id])["type"] as? String == "subscribed")
            #expect(
                try await client.subscribe("temp", devices: [device.id], keys: ["temp"])["type"] as? String
                    == "subscribed"
            )

            try await api.post(
                device,
                #"[{"ts": \#(Self.t0), "values": {"temp": 21.5, "mode": "eco"}}, {"ts": \#(Self.t0 + 1000), "values": {"temp": 21.75}}]"#
            )
            let all = try await client.next(Self.isTelemetry("everything"))
            #expect(all["device"] as? String == device.id)
            #expect(Self.samples(all, "temp").map { $0["ts"] as? Int64 } == [Self.t0, Self.t0 + 1000])
            #expect(Self.samples(all, "temp").map { $0["value"] as? Double } == [21.5, 21.75])
            #expect(Self.samples(all, "mode").map { $0["value"] as? String } == ["eco"])
            let filtered = try await client.next(Self.isTelemetry("temp"))
            #expect((filtered["samples"] as? [String: Any]).map { Array($0.keys) } == ["temp"])
            #expect(Self.samples(filtered, "temp").count == 2)

            // The same device over MQTT (its token as the user name).
            let mqtt = server.client { $0.username = device.token }
            _ = try await mqtt.connect()
            _ = try await mqtt.publish(
                "devices/\(device.id)/telemetry",
                payload: #"{"temp": 22.25, "on": true}"#,
                qos: .atLeastOnce
            )
            let viaMQTT = try await client.next(Self.isTelemetry("everything"))
            #expect(Self.samples(viaMQTT, "temp").first?["value"] as? Double == 22.25)
            #expect(Self.samples(viaMQTT, "on").first?["value"] as? Bool == true)
            let viaMQTTFiltered = try await client.next(Self.isTelemetry("temp"))
            #expect((viaMQTTFiltered["samples"] as? [String: Any])?.keys.sorted() == ["temp"])
            try? await mqtt.disconnect()

            // The REST API has what the stream showed.
            let latest = try await api.expect(200, "GET", "/api/v1/devices/\(device.id)/telemetry/latest")
            #expect((latest["temp"] as? [String: Any])?["value"] as? Double == 22.25)
            await client.close()
        }
    }

    @Test("\"*\" follows every device of the caller's tenant, also new ones, and never another tenant's")
    func wildcardStaysInTenant() async throws {
        try await ServerFixture.withStream { server, api in
            let viewer = try await api.apiKey("viewer")
            let client = try await StreamTestClient.connect(port: server.httpPort, headers: Self.bearer(viewer.key))
            #expect(try await client.subscribe("fleet", devices: "*")["type"] as? String == "subscribed")

            let otherOwner = try await api.secondTenant()
            let foreign = try await api.device(key: otherOwner)
            let foreignWatcher = try await StreamTestClient.connect(
                port: server.httpPort,
                headers: Self.bearer(otherOwner)
            )
            #expect(try await foreignWatcher.subscribe("mine", devices: "*")["type"] as? String == "subscribed")

            // Another tenant's device, by id: refused, named; so is an unknown one.
            let refused = try await client.subscribe("theirs", devices: [foreign.id, "no-such-device"])
            #expect(refused["type"] as? String == "error")
            #expect(refused["code"] as? String == "unknown-devices")
            #expect(refused["field"] as? String == "devices")
            #expect(Set(refused["devices"] as? [String] ?? []) == [foreign.id, "no-such-device"])

            // A device created after the subscription, and the other tenant's device, send.
            try await api.post(foreign, #"{"secret": 1}"#)
            let later = try await api.device()
            try await api.post(later, #"{"temp": 5}"#)
            let received = try await client.next(Self.isTelemetry("fleet"))
            #expect(received["device"] as? String == later.id)
            // The foreign sample was durable (and delivered) before the later one.
            let seenByOwner = try await foreignWatcher.next(Self.isTelemetry("mine"))
            #expect(seenByOwner["device"] as? String == foreign.id)
            #expect(!client.messages.contains { $0["device"] as? String == foreign.id })
            await client.close()
            await foreignWatcher.close()
        }
    }

    @Test("a bad token on the upgrade is refused with 401 problem+json; a bad first-message token closes with 4401")
    func authentication() async throws {
        try await ServerFixture.withStream { server, api in
            let device = try await api.device()
            for headers in [
                Self.bearer("mk_not_a_key_0123456789"), Self.bearer(device.token), [("Authorization", "Basic abc")],
            ] {
                let answer = try await Self.upgradeAnswer(port: server.httpPort, headers: headers)
                #expect(answer.status == 401, "\(headers): \(answer.body)")
                #expect(answer.header("Content-Type") == "application/problem+json")
                #expect(answer.header("WWW-Authenticate")?.hasPrefix("Bearer") == true)
                #expect(answer.body.contains("urn:meridian:problem:unauthenticated"))
            }
            let badQuery = try await Self.upgradeAnswer(
                port: server.httpPort,
                path: StreamEndpoint.path + "?token=nope",
                headers: []
            )
            #expect(badQuery.status == 401)

            // A good token in the query (as browsers send it).
            let viaQuery = try await StreamTestClient.connect(
                port: server.httpPort,
                path: StreamEndpoint.path + "?token=\(StreamTestAPI.adminKey)"
            )
            #expect(try await viaQuery.next()["type"] as? String == "authenticated")
            await viaQuery.close()

            // First-message authentication: good, bad, missing.
            let good = try await StreamTestClient.connect(port: server.httpPort)
            try await good.send(json: ["type": "auth", "token": StreamTestAPI.adminKey])
            #expect(try await good.next()["type"] as? String == "authenticated")
            #expect(try await good.subscribe("s", devices: [device.id])["type"] as? String == "subscribed")
            await good.close()

            let bad = try await StreamTestClient.connect(port: server.httpPort)
            try await bad.send(json: ["type": "auth", "token": "mk_wrong_0123456789"])
            let badClose = try await bad.closeFrame()
            #expect(badClose.code == 4401)
            #expect(badClose.reason.contains("unknown"))
            #expect(bad.messages.isEmpty)

            let unauthenticated = try await StreamTestClient.connect(port: server.httpPort)
            try await unauthenticated.send(json: ["type": "subscribe", "id": "s", "topic": "telemetry", "devices": "*"])
            #expect(try await unauthenticated.closeFrame().code == 4401)
            try await serverEventually("the server to close the connection") { unauthenticated.isClosed }

            // A plain GET is told to upgrade.
            let plain = try await server.get(StreamEndpoint.path)
            #expect(plain.status == 426)
            #expect(plain.body.contains("websocket-required"))
        }
    }

    @Test("bad messages get an error naming the field; the connection stays usable; pings are answered")
    func protocolErrors() async throws {
        try await ServerFixture.withStream { server, api in
            let device = try await api.device()
            let client = try await StreamTestClient.connect(
                port: server.httpPort,
                headers: Self.bearer(StreamTestAPI.adminKey)
            )
            let cases: [(message: String, code: String, field: String?)] = [
                ("{not json", "invalid-json", nil),
                ("[1, 2]", "invalid-message", nil),
                (#"{"type": "dance", "id": "x"}"#, "unknown-type", "type"),
                (#"{"type": "subscribe", "id": "x", "topic": "telemetry"}"#, "invalid-message", "devices"),
                (#"{"type": "subscribe", "id": "x", "topic": "weather", "devices": "*"}"#, "invalid-message", "topic"),
                (
                    #"{"type": "subscribe", "id": "x", "topic": "telemetry", "devices": "*", "keys": [1]}"#,
                    "invalid-message", "keys"
                ),
                (#"{"type": "subscribe", "topic": "telemetry", "devices": "*"}"#, "invalid-message", "id"),
                (#"{"type": "unsubscribe", "id": "never"}"#, "unknown-subscription", "id"),
            ]
            for (message, code, field) in cases {
                try await client.send(message)
                let answer = try await client.next { $0["type"] as? String == "error" }
                #expect(answer["code"] as? String == code, "\(message)")
                #expect(answer["field"] as? String == field, "\(message)")
                #expect((answer["error"] as? String)?.isEmpty == false)
            }
            try await client.send(json: ["type": "ping", "id": "p1"])
            #expect(try await client.next()["id"] as? String == "p1")

            // A message in fragments, and a WebSocket ping.
            try await client.send(
                #"{"type": "subscribe", "id": "frag", "topic": "telemetry", "devices": ["\#(device.id)"]}"#,
                fragment: 7
            )
            #expect(try await client.next()["type"] as? String == "subscribed")
            try await client.send(opcode: .ping, Array("hi".utf8))
            try await api.post(device, #"{"temp": 1}"#)
            #expect(try await client.next(Self.isTelemetry("frag"))["device"] as? String == device.id)

            // Too large a message closes with 1009; binary with 1003.
            try await client.send(
                String(repeating: " ", count: StreamChannelHandler.maximumMessageSize + 10),
                fragment: 16_000
            )
            #expect(try await client.closeFrame().code == 1009)
            let binary = try await StreamTestClient.connect(
                port: server.httpPort,
                headers: Self.bearer(StreamTestAPI.adminKey)
            )
            try await binary.send(opcode: .binary, [1, 2, 3])
            #expect(try await binary.closeFrame().code == 1003)
        }
    }

    @Test("after unsubscribe no more messages of that subscription arrive")
    func unsubscribe() async throws {
        try await ServerFixture.withStream { server, api in
            let first = try await api.device()
            let second = try await api.device()
            let client = try await StreamTestClient.connect(
                port: server.httpPort,
                headers: Self.bearer(StreamTestAPI.adminKey)
            )
            try await client.subscribe("one", devices: [first.id])
            try await api.post(first, #"{"n": 1}"#)
            #expect(Self.samples(try await client.next(Self.isTelemetry("one")), "n").first?["value"] as? Double == 1)

            try await client.send(json: ["type": "unsubscribe", "id": "one"])
            let answer = try await client.next()
            #expect(answer["type"] as? String == "unsubscribed")
            #expect(answer["id"] as? String == "one")
            try await client.subscribe("two", devices: [second.id])
            try await api.post(first, #"{"n": 2}"#)
            try await api.post(second, #"{"n": 3}"#)
            #expect(Self.samples(try await client.next(Self.isTelemetry("two")), "n").first?["value"] as? Double == 3)
            #expect(client.messages.filter(Self.isTelemetry("one")).count == 1)
            await client.close()
        }
    }

    @Test("a client that stops reading loses messages (told how many), never slows ingestion or the other subscribers")
    func slowConsumer() async throws {
        try await ServerFixture.withStream { server, api in
            let device = try await api.device()
            let stalled = try await StreamTestClient.connect(
                port: server.httpPort,
                headers: Self.bearer(StreamTestAPI.adminKey),
                smallReceiveBuffer: true
            )
            try await stalled.subscribe("all", devices: "*")
            try await stalled.stopReading()
            let reader = try await StreamTestClient.connect(
                port: server.httpPort,
                headers: Self.bearer(StreamTestAPI.adminKey)
            )
            try await reader.subscribe("all", devices: [device.id], keys: ["n"])

            // 30 messages of 10,000 samples: each of the stalled client's stream messages is
            // about 450 kB, 13 MB in all, more than its socket's buffers and its queue (50,000
            // samples) hold. The reader follows one key, and gets all 30.
            let count = 30
            let keys = (0..<9_999).map { #""k\#($0)": \#($0)"# }.joined(separator: ", ")
            for n in 0..<count {
                try await api.post(device, #"{"ts": \#(Self.t0 + Int64(n)), "values": {"n": \#(n), \#(keys)}}"#)
            }
            for n in 0..<count {
                let message = try await reader.next(Self.isTelemetry("all"))
                #expect(Self.samples(message, "n").first?["value"] as? Double == Double(n))
            }
            let range = try await api.expect(
                200,
                "GET",
                "/api/v1/devices/\(device.id)/telemetry?keys=n&from=\(Self.t0)&to=\(Self.t0 + 1000)"
            )
            #expect((range["n"] as? [Any])?.count == count)

            // The stalled client, reading again, is told what it missed, then gets the newest.
            try await stalled.startReading()
            _ = try await stalled.next(within: .seconds(30)) { $0["type"] as? String == "dropped" }
            let last = try await stalled.next(within: .seconds(30)) {
                Self.isTelemetry("all")($0) && Self.samples($0, "n").first?["value"] as? Double == Double(count - 1)
            }
            #expect(last["device"] as? String == device.id)
            // Every message was either sent or counted as dropped, in order.
            let received = stalled.messages.filter(Self.isTelemetry("all")).compactMap {
                Self.samples($0, "n").first?["value"] as? Double
            }
            let droppedCount = stalled.messages.filter { $0["type"] as? String == "dropped" }.reduce(0) {
                $0 + ($1["count"] as? Int ?? 0)
            }
            #expect(droppedCount > 0)
            #expect(received.count + droppedCount == count)
            #expect(received == received.sorted())
            await stalled.close()
            await reader.close()
        }
    }

    @Test("a revoked API key closes its stream connections with 4401")
    func revokedKey() async throws {
        try await ServerFixture.withStream { server, api in
            let key = try await api.apiKey("viewer")
            let client = try await StreamTestClient.connect(port: server.httpPort, headers: Self.bearer(key.key))
            #expect(try await client.next()["type"] as? String == "authenticated")
            try await api.expect(204, "DELETE", "/api/v1/api-keys/\(key.id)")
            let close = try await client.closeFrame()
            #expect(close.code == 4401)
            #expect(close.reason.contains("revoked"))
            try await serverEventually("the server to close the connection") { client.isClosed }
            // And it cannot come back.
            #expect(try await Self.upgradeAnswer(port: server.httpPort, headers: Self.bearer(key.key)).status == 401)
        }
    }

    @Test("a connection on an access token closes with 4401 when the token expires, unless renewed")
    func tokenExpiry() async throws {
        try await ServerFixture.withStream({ $0.api.accessTokenLifetime = 6 }) { server, api in
            let now = { Int64(Date().timeIntervalSince1970 * 1000) }
            let (username, token) = try await api.user()
            let client = try await StreamTestClient.connect(port: server.httpPort)
            try await client.send(json: ["type": "auth", "token": token])
            let hello = try await client.next()
            #expect(hello["type"] as? String == "authenticated")
            let expiresAt = try #require(hello["expiresAt"] as? Int64)
            #expect(expiresAt > now())

            // A fresh token sent before the expiry keeps the connection open past it.
            try await Task.sleep(for: .milliseconds(1100))
            let fresh = try await api.login(username)
            try await client.send(json: ["type": "auth", "token": fresh])
            let renewed = try await client.next()
            #expect(renewed["type"] as? String == "authenticated")
            let renewedExpiry = try #require(renewed["expiresAt"] as? Int64)
            #expect(renewedExpiry > expiresAt)

            let close = try await client.closeFrame(within: .seconds(15))
            #expect(close.code == 4401)
            #expect(close.reason.contains("expired"))
            #expect(now() >= renewedExpiry - 50)
        }
    }

    @Test("the stream is on the HTTPS port too")
    func overHTTPS() async throws {
        try await ServerFixture.withStream { server, _ in
            let port = try #require(server.endpoints.httpsPort)
            let trust = try pinning(TLSMaterial.GeneratedFiles(dataDirectory: server.dataDirectory).certificate)
            let accepted = try await ServerHTTPClient.upgrade(
                port: port,
                path: StreamEndpoint.path + "?token=\(StreamTestAPI.adminKey)",
                subprotocols: ["meridian.v1"],
                tls: trust
            )
            #expect(accepted?.status == 101)
            #expect(accepted?.header("Sec-WebSocket-Protocol") == "meridian.v1")
            let refused = try await ServerHTTPClient.upgrade(
                port: port,
                path: StreamEndpoint.path + "?token=mk_wrong_0123456789",
                subprotocols: [],
                tls: trust
            )
            #expect(refused?.status == 401)
        }
    }

    @Test("shutting the server down closes stream connections with 1001")
    func shutdownCloses() async throws {
        let client = try await ServerFixture.withStream { server, _ in
            let client = try await StreamTestClient.connect(
                port: server.httpPort,
                headers: Self.bearer(StreamTestAPI.adminKey)
            )
            try await client.subscribe("all", devices: "*")
            return client
        }
        #expect(try await client.closeFrame().code == 1001)
    }
}

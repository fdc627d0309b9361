import Foundation
import MQTTClient
import MQTTCore
import MeridianCore
import MeridianDevice
import NIOConcurrencyHelpers
import NIOCore
import Testing

@testable import MeridianServer

/// The device SDK against a running server: credentials, telemetry with its offline buffer, the
/// twin, commands and provisioning, checked through the REST API as an operator sees them.
@Suite("Device SDK against a running server")
struct DeviceSDKTests {
    /// A device on `server` with `credentials`, fast reconnects, native topics when `id` is given.
    static func device(
        _ server: ServerFixture,
        credentials: MeridianDevice.Credentials,
        id: String?,
        version: MQTTProtocolVersion = .v5,
        configure: (inout MeridianDevice.Configuration) -> Void = { _ in }
    ) throws -> MeridianDevice {
        var configuration = MeridianDevice.Configuration(host: "127.0.0.1", port: server.mqttPort, credentials: credentials)
        configuration.deviceID = id
        configuration.protocolVersion = version
        configuration.reconnect = .exponentialBackoff(initialDelay: .milliseconds(100), maximumDelay: .milliseconds(500), jitter: 0.5)
        configure(&configuration)
        return try MeridianDevice(configuration: configuration)
    }

    /// The device's stored points of `key`, oldest first: (ms, value).
    static func points(_ api: StreamTestAPI, device: String, key: String) async throws -> [(Int64, Double)] {
        let answer = try await api.expect(200, "GET", "/api/v1/devices/\(device)/telemetry?keys=\(key)&from=0&to=9999999999999&limit=10000")
        let points = answer[key] as? [[String: Any]] ?? []
        return points.compactMap { point in
            guard let ts = point["ts"] as? NSNumber, let value = point["value"] as? NSNumber else { return nil }
            return (ts.int64Value, value.doubleValue)
        }
    }

    @Test("a device on an access token, with or without its id, MQTT 5 and 3.1.1: its telemetry is stored in order", arguments: [MQTTProtocolVersion.v5, .v3_1_1])
    func tokenTelemetry(version: MQTTProtocolVersion) async throws {
        try await ServerFixture.withStream { server, api in
            for useID in [true, false] {
                let created = try await api.device()
                let device = try Self.device(server, credentials: .accessToken(created.token), id: useID ? created.id : nil, version: version)
                try await device.connect()
                let start = Date(timeIntervalSince1970: 1_700_000_000)
                for i in 0..<250 {
                    try await device.send(["n": .number(Double(i)), "ok": true], at: start.addingTimeInterval(Double(i)))
                }
                #expect(await device.flush(timeout: .seconds(30)))
                let stats = await device.stats
                #expect(stats.acknowledged == 250 && stats.buffered == 0 && stats.dropped == 0)
                let points = try await Self.points(api, device: created.id, key: "n")
                #expect(points.map(\.1) == (0..<250).map(Double.init), "with id: \(useID)")
                #expect(points.map(\.0) == (0..<250).map { 1_700_000_000_000 + Int64($0) * 1000 })
                await device.disconnect()
            }
        }
    }

    @Test("a device on a user name and password credential connects and its telemetry is stored")
    func passwordCredential() async throws {
        try await ServerFixture.withStream { server, api in
            let created = try await api.device()
            let username = "sdk-\(UUID().uuidString.prefix(8))"
            try await api.expect(
                201, "POST", "/api/v1/devices/\(created.id)/credentials",
                body: #"{"type": "password", "username": "\#(username)", "password": "correct horse battery"}"#
            )
            let device = try Self.device(server, credentials: .password(username: username, password: "correct horse battery"), id: created.id)
            try await device.connect()
            try await device.send(["p": 1], at: Date(timeIntervalSince1970: 1_700_000_000))
            #expect(await device.flush(timeout: .seconds(30)))
            #expect(try await Self.points(api, device: created.id, key: "p").map(\.1) == [1])
            await device.disconnect()
            let wrong = try Self.device(server, credentials: .password(username: username, password: "wrong horse battery"), id: created.id) {
                $0.clientIdentifier = "wrong-\(UUID().uuidString.prefix(6))"
            }
            await #expect(throws: MeridianDeviceError.self) { try await wrong.connect() }
        }
    }

    @Test("bad telemetry is refused at send with the key named; the buffer's bound holds (oldest dropped, or the new one refused)")
    func sendValidationAndBounds() async throws {
        try await ServerFixture.withStream { server, api in
            let created = try await api.device()
            let device = try Self.device(server, credentials: .accessToken(created.token), id: created.id) {
                $0.telemetry.bufferCapacity = 5
            }
            await #expect(throws: MeridianDeviceError.self) { try await device.send([:]) }
            await #expect { try await device.send(["temp": .number(.nan)]) } throws: { "\($0)".contains("temp") }
            await #expect { try await device.send(["nested": ["a": 1]]) } throws: { "\($0)".contains("nested") }
            // Not connected: everything waits in the buffer, which keeps the newest five.
            for i in 0..<8 { try await device.send(["n": .number(Double(i))], at: Date(timeIntervalSince1970: 1_700_000_000 + Double(i))) }
            let offline = await device.stats
            #expect(offline.buffered == 5 && offline.dropped == 3)
            try await device.connect()
            #expect(await device.flush(timeout: .seconds(30)))
            #expect(try await Self.points(api, device: created.id, key: "n").map(\.1) == [3, 4, 5, 6, 7])
            await device.disconnect()

            let strict = try Self.device(server, credentials: .accessToken(created.token), id: created.id) {
                $0.telemetry.bufferCapacity = 2
                $0.telemetry.overflow = .rejectNew
                $0.clientIdentifier = "strict-\(UUID().uuidString.prefix(6))"
            }
            try await strict.send(["n": 1])
            try await strict.send(["n": 2])
            await #expect(throws: MeridianDeviceError.self) { try await strict.send(["n": 3]) }
        }
    }

    @Test("no sample is lost across a server restart: the device buffers while the server is down, reconnects, and sends in order")
    func offlineBufferAcrossRestart() async throws {
        var configuration = ServerFixture.testConfiguration()
        configuration.api.bootstrapAPIKey = StreamTestAPI.adminKey
        let device = NIOLockedValueBox<MeridianDevice?>(nil)
        let deviceID = NIOLockedValueBox("")
        var ports = (mqtt: 0, http: 0)
        let start = Date(timeIntervalSince1970: 1_700_000_000)
        try await ServerFixture.with(configuration, keepData: true, startTimeout: .seconds(90)) { server in
            let api = StreamTestAPI(port: server.httpPort)
            let created = try await api.device()
            deviceID.withLockedValue { $0 = created.id }
            let sdk = try Self.device(server, credentials: .accessToken(created.token), id: created.id)
            device.withLockedValue { $0 = sdk }
            try await sdk.connect()
            for i in 0..<100 { try await sdk.send(["n": .number(Double(i))], at: start.addingTimeInterval(Double(i))) }
            #expect(await sdk.flush(timeout: .seconds(30)))
            ports = (server.mqttPort, server.httpPort)
        }
        let sdk = try #require(device.withLockedValue { $0 })
        // The server is down: these wait in the buffer.
        for i in 100..<300 { try await sdk.send(["n": .number(Double(i))], at: start.addingTimeInterval(Double(i))) }
        #expect(await sdk.stats.buffered > 0)

        configuration.network.mqttPort = ports.mqtt
        configuration.network.httpPort = ports.http
        defer { try? FileManager.default.removeItem(atPath: configuration.dataDirectory) }
        try await ServerFixture.with(configuration, startTimeout: .seconds(90)) { server in
            #expect(await sdk.flush(timeout: .seconds(60)))
            let stats = await sdk.stats
            #expect(stats.connections >= 2 && stats.dropped == 0 && stats.refused == 0)
            let points = try await Self.points(StreamTestAPI(port: server.httpPort), device: deviceID.withLockedValue { $0 }, key: "n")
            #expect(points.map(\.1) == (0..<300).map(Double.init))
            await sdk.disconnect()
        }
    }

    @Test("the buffer on disk: samples not acknowledged when the program stops are sent by the next run")
    func bufferOnDisk() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-sdk-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await ServerFixture.withStream { server, api in
            let created = try await api.device()
            let start = Date(timeIntervalSince1970: 1_700_000_000)
            do {
                // A first run that never connects: its samples go to disk only.
                let first = try Self.device(server, credentials: .accessToken(created.token), id: created.id) {
                    $0.telemetry.bufferDirectory = directory
                }
                for i in 0..<40 { try await first.send(["n": .number(Double(i))], at: start.addingTimeInterval(Double(i))) }
            }
            let second = try Self.device(server, credentials: .accessToken(created.token), id: created.id) {
                $0.telemetry.bufferDirectory = directory
            }
            #expect(await second.stats.buffered == 40)
            try await second.send(["n": 40], at: start.addingTimeInterval(40))
            try await second.connect()
            #expect(await second.flush(timeout: .seconds(30)))
            #expect(try await Self.points(api, device: created.id, key: "n").map(\.1) == (0...40).map(Double.init))
            await second.disconnect()
            // Acknowledged samples are gone from disk: a third run has nothing to send.
            let third = try Self.device(server, credentials: .accessToken(created.token), id: created.id) {
                $0.telemetry.bufferDirectory = directory
            }
            #expect(await third.stats.buffered == 0)
        }
    }

    @Test("twin: report → the operator sees it; the operator's desired change → the delta handler, also for changes made while offline")
    func twin() async throws {
        try await ServerFixture.withStream { server, api in
            let created = try await api.device()
            let sdk = try Self.device(server, credentials: .accessToken(created.token), id: created.id)
            let deltas = NIOLockedValueBox<[([String: JSONValue], Int)]>([])
            await sdk.onDesiredChange { delta, version in
                deltas.withLockedValue { $0.append((delta, version)) }
                if let setpoint = delta["setpoint"] { _ = try? await sdk.report(["setpoint": setpoint]) }
            }
            try await sdk.connect()
            let version = try await sdk.report(["firmware": "1.0", "setpoint": 20])
            #expect(version == 1)
            let twin = try await api.expect(200, "GET", "/api/v1/devices/\(created.id)/twin")
            #expect((twin["reported"] as? [String: Any])?["firmware"] as? String == "1.0")

            try await api.expect(200, "PATCH", "/api/v1/devices/\(created.id)/twin", body: #"{"desired": {"setpoint": 23}}"#)
            try await serverEventually("the delta handler", within: .seconds(20)) { deltas.withLockedValue { !$0.isEmpty } }
            #expect(deltas.withLockedValue { $0.first?.0 } == ["setpoint": 23])
            // The handler reported the setpoint: no delta remains.
            try await serverEventually("the reported setpoint", within: .seconds(20)) {
                let twin = try await api.expect(200, "GET", "/api/v1/devices/\(created.id)/twin")
                return (twin["delta"] as? [String: Any])?.isEmpty == true
            }
            let state = try await sdk.twin()
            #expect(state.desired["setpoint"] == 23 && state.reported["setpoint"] == 23 && state.delta.isEmpty)
            await #expect { try await sdk.report(["x": 1], version: 1) } throws: {
                if case .rejected(let code, _) = $0 as? MeridianDeviceError { return code == 409 }
                return false
            }

            // Offline: a change made meanwhile reaches the handler after the reconnect.
            await sdk.dropConnection()
            try await api.expect(200, "PATCH", "/api/v1/devices/\(created.id)/twin", body: #"{"desired": {"mode": "eco"}}"#)
            try await sdk.connect()
            try await serverEventually("the delta after reconnecting", within: .seconds(20)) {
                deltas.withLockedValue { $0.contains { $0.0["mode"] == "eco" } }
            }
            await sdk.disconnect()
        }
    }

    @Test("commands: handlers answer per method over MQTT 5 and 3.1.1; a thrown error and an unknown method fail the command", arguments: [MQTTProtocolVersion.v5, .v3_1_1])
    func commands(version: MQTTProtocolVersion) async throws {
        try await ServerFixture.withStream { server, api in
            let created = try await api.device()
            let sdk = try Self.device(server, credentials: .accessToken(created.token), id: created.id, version: version)
            await sdk.onCommand("setLevel") { params in
                guard let level = params["level"]?.numberValue else { throw CommandFailure("params.level is required") }
                return ["level": .number(level)]
            }
            try await sdk.connect()
            let path = "/api/v1/devices/\(created.id)/commands"
            let ok = try await api.expect(200, "POST", path, body: #"{"method": "setLevel", "params": {"level": 3}, "timeoutMs": 15000}"#)
            #expect(ok["status"] as? String == "succeeded")
            #expect((ok["response"] as? [String: Any])?["level"] as? Double == 3)
            let failed = try await api.expect(200, "POST", path, body: #"{"method": "setLevel", "params": {}, "timeoutMs": 15000}"#)
            #expect(failed["status"] as? String == "failed" && (failed["error"] as? String)?.contains("params.level") == true)
            let unknown = try await api.expect(200, "POST", path, body: #"{"method": "dance", "timeoutMs": 15000}"#)
            #expect(unknown["status"] as? String == "failed" && (unknown["error"] as? String)?.contains("dance") == true)
            #expect(await sdk.stats.commands == 3)
            await sdk.disconnect()
        }
    }

    @Test("a device with a client certificate issued by the tenant CA connects over TLS; a wrong key is refused before connecting")
    func certificate() async throws {
        try await ServerFixture.withStream { server, api in
            let created = try await api.device()
            let credential = try await api.expect(201, "POST", "/api/v1/devices/\(created.id)/credentials", body: #"{"type": "certificate"}"#)
            let certificate = try #require(credential["certificate"] as? String)
            let key = try #require(credential["privateKey"] as? String)
            let serverCertificate = try String(
                contentsOfFile: TLSMaterial.GeneratedFiles(dataDirectory: server.dataDirectory).certificate,
                encoding: .utf8
            )
            let sdk = try Self.device(server, credentials: .certificate(certificatePEM: certificate, privateKeyPEM: key), id: created.id) {
                $0.port = server.endpoints.mqttsPort
                $0.tls = .init(trustedCertificatesPEM: serverCertificate, serverName: "localhost")
            }
            try await sdk.connect()
            try await sdk.send(["t": 1], at: Date(timeIntervalSince1970: 1_700_000_000))
            #expect(await sdk.flush(timeout: .seconds(30)))
            let stats = await sdk.stats
            #expect(stats.acknowledged == 1 && stats.refused == 0, "\(stats)")
            let points = try await Self.points(api, device: created.id, key: "t")
            #expect(points.map(\.1) == [1], "points: \(points)")
            await sdk.disconnect()

            #expect(throws: MeridianDeviceError.self) {
                try MeridianDevice(configuration: .init(host: "127.0.0.1", credentials: .certificate(certificatePEM: certificate, privateKeyPEM: "nope")))
            }
        }
    }

    @Test("provisioning with a profile's key and secret returns a token the device connects with; a wrong secret fails with the server's reason")
    func provisioning() async throws {
        try await ServerFixture.withStream { server, api in
            let key = "sdk-key-\(UUID().uuidString.prefix(6))"
            let profile = try await api.expect(
                201, "POST", "/api/v1/profiles",
                body: #"{"name": "sdk-\#(UUID().uuidString.prefix(6))", "provisioningMode": "allow-create", "provisioningKey": "\#(key)"}"#
            )
            let secret = try #require(profile["provisioningSecret"] as? String)
            let request = MeridianDevice.ProvisioningRequest(
                host: "127.0.0.1", port: server.mqttPort, profileKey: key, profileSecret: secret, deviceName: "sdk-made"
            )
            let token = try await MeridianDevice.provision(request)
            let sdk = try Self.device(server, credentials: .accessToken(token), id: nil)
            try await sdk.connect()
            try await sdk.send(["v": 7])
            #expect(await sdk.flush(timeout: .seconds(30)))
            await sdk.disconnect()
            let devices = try await api.expect(200, "GET", "/api/v1/devices?limit=100")
            let made = (devices["items"] as? [[String: Any]] ?? []).first { $0["name"] as? String == "sdk-made" }
            let id = try #require(made?["id"] as? String)
            #expect(try await Self.points(api, device: id, key: "v").map(\.1) == [7])

            var wrong = request
            wrong.profileSecret = "not-the-secret"
            wrong.deviceName = "sdk-other"
            await #expect(throws: MeridianDeviceError.self) { try await MeridianDevice.provision(wrong) }
        }
    }

    @Test("a client id reused by another device starts an empty session: it never gets the first device's subscriptions or messages")
    func clientIdentifierReusedByAnotherDevice() async throws {
        try await ServerFixture.withStream { server, api in
            let first = try await api.device()
            let second = try await api.device()
            let clientID = "shared-\(UUID().uuidString.prefix(8))"
            func client(_ token: String) -> MQTTClient {
                server.client(clientID) {
                    $0.username = token
                    $0.cleanStart = false
                    $0.connectProperties.sessionExpiryInterval = 600
                }
            }
            let a = client(first.token)
            #expect(try await a.connect().sessionPresent == false)
            try await a.subscribe("devices/\(first.id)/commands/request/+", qos: .atLeastOnce)
            try await a.disconnect()
            // The same device comes back: its session is there.
            let again = client(first.token)
            #expect(try await again.connect().sessionPresent == true)
            try await again.disconnect()
            // Another device with the same client id: a new, empty session.
            let b = client(second.token)
            #expect(try await b.connect().sessionPresent == false)
            let command = try await api.call(
                "POST", "/api/v1/devices/\(first.id)/commands", body: #"{"method": "m", "persistent": true, "oneWay": true}"#
            )
            // Queued: the first device's subscription did not travel with its client id.
            #expect(command.status == 202 && command.json["status"] as? String == "queued", "\(command.text)")
            try await b.disconnect()
            // And the first device's session is gone too (replaced by the second's).
            let last = client(first.token)
            #expect(try await last.connect().sessionPresent == false)
            try await last.disconnect()
        }
    }

    @Test("a token the server does not know is refused at connect, without retrying for ever")
    func refusedCredentials() async throws {
        try await ServerFixture.withStream { server, _ in
            let sdk = try Self.device(server, credentials: .accessToken("no-such-token-0123456789"), id: nil)
            await #expect { try await sdk.connect() } throws: {
                if case .refused = $0 as? MeridianDeviceError { return true }
                return false
            }
        }
    }
}

/// An error a command handler throws.
struct CommandFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

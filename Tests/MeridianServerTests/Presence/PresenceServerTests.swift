import Foundation
import MQTTClient
import MQTTCore
import Testing

@testable import MeridianServer

/// Presence end to end: a real server, an MQTT device, the REST API and the live stream.
@Suite("Presence: a real server", .serialized)
struct PresenceServerTests {
    @Test("an MQTT device's connect and clean disconnect are streamed as presence events and answered by the REST API")
    func connectAndDisconnect() async throws {
        try await ServerFixture.withStream { server, api in
            let device = try await api.device()
            let watcher = try await StreamTestClient.connect(port: server.httpPort, headers: [("Authorization", "Bearer \(StreamTestAPI.adminKey)")])
            #expect(try await watcher.subscribe("p", devices: [device.id], topic: "presence")["type"] as? String == "subscribed")

            let mqtt = server.client { $0.username = device.token }
            _ = try await mqtt.connect()
            let connected = try await watcher.next { $0["type"] as? String == "presence" }
            #expect(connected["subscription"] as? String == "p")
            #expect(connected["device"] as? String == device.id)
            #expect(connected["event"] as? String == "connected")
            #expect(connected["online"] as? Bool == true)
            #expect((connected["address"] as? String)?.hasPrefix("127.0.0.1:") == true)
            let online = try await api.expect(200, "GET", "/api/v1/devices/\(device.id)/presence")
            #expect(online["online"] as? Bool == true)
            #expect(online["transport"] as? String == "tcp")

            try await mqtt.disconnect()
            let disconnected = try await watcher.next { $0["type"] as? String == "presence" && $0["event"] as? String == "disconnected" }
            #expect(disconnected["reason"] as? String == "clean")
            #expect(disconnected["online"] as? Bool == false)
            let offline = try await api.expect(200, "GET", "/api/v1/devices/\(device.id)/presence")
            #expect(offline["online"] as? Bool == false)
            #expect(offline["lastDisconnectReason"] as? String == "clean")
            await watcher.close()
        }
    }
}

import Foundation
import MQTTClient
import MQTTCore
import MeridianCore
import NIOCore
import Synchronization
import Testing

@testable import MeridianServer

/// Twins through a running server: an MQTT device on the native topics, an operator over REST,
/// and a live-stream subscriber, all on the same twin.
@Suite("Twins on a running server")
struct TwinServerTests {
    @Test("native MQTT update → accepted; REST desired → delta pushed to the device; both on the stream as twin events")
    func endToEnd() async throws {
        try await ServerFixture.withStream { server, api in
            let device = try await api.device()
            let stream = try await StreamTestClient.connect(
                port: server.httpPort,
                headers: [("Authorization", "Bearer \(StreamTestAPI.adminKey)")]
            )
            _ = try await stream.next { $0["type"] as? String == "authenticated" }
            #expect(
                try await stream.subscribe("tw", devices: [device.id], topic: "twin")["type"] as? String == "subscribed"
            )
            #expect(try await stream.subscribe("tel", devices: [device.id])["type"] as? String == "subscribed")
            let refused = try await stream.subscribe("tw2", devices: [device.id], keys: ["a"], topic: "twin")
            #expect(refused["type"] as? String == "error" && refused["field"] as? String == "keys")

            let mqtt = server.client { $0.username = device.token }
            _ = try await mqtt.connect()
            _ = try await mqtt.subscribe("devices/\(device.id)/twin/#", qos: .atLeastOnce)
            let inbox = MessageCollector(mqtt)
            _ = try await mqtt.publish(
                "devices/\(device.id)/twin/update",
                payload: #"{"state": {"reported": {"fw": "1.0"}}, "clientToken": "c1"}"#,
                qos: .atLeastOnce
            )
            let accepted = try await inbox.next(on: "devices/\(device.id)/twin/update/accepted")
            #expect(accepted["version"] as? Int == 1 && accepted["clientToken"] as? String == "c1")
            let reported = try await stream.next { $0["type"] as? String == "twin" }
            #expect(reported["subscription"] as? String == "tw" && reported["device"] as? String == device.id)
            #expect(
                reported["version"] as? Int == 1
                    && (reported["actor"] as? [String: Any])?["kind"] as? String == "device"
            )
            #expect((reported["reported"] as? [String: Any])?["fw"] as? String == "1.0")

            let patched = try await api.call(
                "PATCH",
                "/api/v1/devices/\(device.id)/twin",
                body: #"{"desired": {"fw": "2.0"}}"#
            )
            #expect(patched.status == 200, "\(patched.text)")
            let delta = try await inbox.next(on: "devices/\(device.id)/twin/delta")
            #expect((delta["state"] as? [String: Any])?["fw"] as? String == "2.0" && delta["version"] as? Int == 2)
            let desired = try await stream.next { $0["type"] as? String == "twin" }
            #expect(desired["version"] as? Int == 2 && (desired["delta"] as? [String: Any])?["fw"] as? String == "2.0")
            #expect(((desired["patch"] as? [String: Any])?["desired"] as? [String: Any])?["fw"] as? String == "2.0")
            // Telemetry goes to the telemetry subscription only, twin changes to the twin one only.
            _ = try await mqtt.publish("devices/\(device.id)/telemetry", payload: #"{"temp": 20}"#, qos: .atLeastOnce)
            _ = try await stream.next { $0["type"] as? String == "telemetry" && $0["subscription"] as? String == "tel" }
            let events = stream.messages.filter { $0["type"] as? String == "twin" || $0["type"] as? String == "telemetry" }
            #expect(events.filter { $0["type"] as? String == "twin" }.allSatisfy { $0["subscription"] as? String == "tw" })
            #expect(events.filter { $0["type"] as? String == "telemetry" }.allSatisfy { $0["subscription"] as? String == "tel" })
            #expect(events.count == 3)
            try? await mqtt.disconnect()
            inbox.stop()
            await stream.close()
        }
    }
}

/// Collects an MQTT client's messages in the background; ``next(on:)`` waits (with a timeout)
/// for the next one on a topic.
final class MessageCollector: Sendable {
    private final class Storage: Sendable {
        let received = Mutex<[(topic: String, payload: Data)]>([])
        let consumed = Mutex(0)
    }

    private let storage = Storage()
    private let task: Task<Void, Never>

    init(_ client: MQTTClient) {
        let storage = self.storage
        task = Task {
            for await message in client.messages {
                storage.received.withLock { $0.append((message.topic, Data(message.payload.readableBytesView))) }
            }
        }
    }

    func next(on topic: String, within timeout: Duration = .seconds(20)) async throws -> [String: Any] {
        var found: Data?
        let storage = self.storage
        try await serverEventually("a message on \(topic)", within: timeout) {
            found = storage.consumed.withLock { consumed -> Data? in
                let messages = storage.received.withLock { $0 }
                while consumed < messages.count {
                    consumed += 1
                    if messages[consumed - 1].topic == topic { return messages[consumed - 1].payload }
                }
                return nil
            }
            return found != nil
        }
        return (try? JSONSerialization.jsonObject(with: found ?? Data())) as? [String: Any] ?? [:]
    }

    func stop() {
        task.cancel()
    }
}

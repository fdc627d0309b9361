import Foundation
import Logging
import MeridianCore
import MeridianStorage
import Synchronization
import Testing

@testable import MeridianServer

@Suite("Presence service")
struct PresenceServiceTests {
    @Test("events older than the retention are deleted by the sweep; newer ones stay; listeners see every event")
    func retentionAndListeners() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-presence-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let registry = try APIHarness.makeRegistry(directory: directory)
        _ = try await registry.bootstrapIfEmpty(apiKey: APIHarness.adminKey)
        let store = try SQLitePresenceStore(path: (directory as NSString).appendingPathComponent("meridian.sqlite"))
        let clock = Mutex(Date(timeIntervalSince1970: 1_700_000_000))
        var logger = Logger(label: "presence-tests")
        logger.logLevel = .critical
        let seen = Mutex<[String]>([])
        let presence = PresenceService(
            store: store, registry: registry, retention: .seconds(86_400), logger: logger, now: { clock.withLock { $0 } },
            noteSeen: { id in seen.withLock { $0.append(id) } }
        )
        let heard = Mutex<[PresenceEvent.Kind]>([])
        let token = presence.addListener { event in heard.withLock { $0.append(event.kind) } }
        let connection = PresenceConnection(connectionID: 1, tenantID: "t", deviceID: "d", address: nil, protocolName: "mqtt-5.0", transport: "tcp", keepAlive: 0)
        presence.connected(connection)
        presence.disconnected(deviceID: "d", connectionID: 1, reason: .clean, reasonCode: 0)
        await presence.flush()
        clock.withLock { $0 = $0.addingTimeInterval(2 * 86_400) }
        presence.removeListener(token)
        presence.connected(connection)
        await presence.flush()
        await presence.sweep()
        let left = try await store.events(tenantID: "t", deviceID: "d", before: nil, limit: 10)
        #expect(left.map(\.kind) == [.connected])
        #expect(left.first?.time == clock.withLock { $0 })
        #expect(heard.withLock { $0 } == [.connected, .disconnected])
        #expect(seen.withLock { $0 } == ["d", "d", "d"])
    }
}

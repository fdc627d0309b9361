import Foundation
import GRDB
import MQTTBroker
import MQTTCore
@testable import MeridianStorage
import NIOCore
import Testing

@Suite("SQLite session store")
struct SQLiteSessionStoreTests {
    static func temporaryPath() -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-store-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory.appendingPathComponent("broker.sqlite").path
    }

    static func message(_ id: Int64, _ payload: String, retain: Bool = false) -> PersistedMessage {
        var properties = ByteBuffer()
        MQTTProperties([.contentType("text/plain"), .userProperty("k", "v")]).write(to: &properties)
        return PersistedMessage(
            id: id, topic: "t/\(id)", payload: ByteBuffer(string: payload), qos: .exactlyOnce, retain: retain,
            properties: properties, origin: "pub", expiresAt: 1_900_000_000_000
        )
    }

    @Test(arguments: [Durability.strict, .batch])
    func everythingWrittenIsRecovered(durability: Durability) throws {
        let path = Self.temporaryPath()
        let store = try SQLiteSessionStore(path: path, durability: durability)
        let session = PersistedSession(
            id: 3, clientIdentifier: "device-1", username: "u", attributes: ["tenant": "a"], expiryInterval: 600,
            disconnectedAt: 1_800_000_000_000, will: Self.message(9, "gone"), willDelay: 5
        )
        try store.write([
            .saveSession(session),
            .addSubscription(PersistedSubscription(sessionID: 3, filter: "a/#", options: 0x21, identifier: 4)),
            .saveMessage(Self.message(10, "one")),
            .addDelivery(PersistedDelivery(sessionID: 3, sequence: 100, messageID: 10, qos: .atLeastOnce, retain: false, identifiers: [4, 5], packetIdentifier: nil, phase: .queued)),
            .addDelivery(PersistedDelivery(sessionID: 3, sequence: 101, messageID: 10, qos: .exactlyOnce, retain: true, identifiers: [], packetIdentifier: nil, phase: .queued)),
            .updateDelivery(sessionID: 3, sequence: 101, packetIdentifier: 77, phase: .awaitingCompletion),
            .addInbound(sessionID: 3, packetIdentifier: 12),
            .saveMessage(Self.message(11, "kept", retain: true)),
            .setRetained(topic: "t/11", messageID: 11),
        ])
        if durability == .batch { try store.sync() }
        try store.close()

        let reopened = try SQLiteSessionStore(path: path, durability: durability)
        let state = try reopened.recover()
        #expect(state.sessions == [session])
        #expect(state.subscriptions == [PersistedSubscription(sessionID: 3, filter: "a/#", options: 0x21, identifier: 4)])
        #expect(state.deliveries.map(\.sequence) == [100, 101])
        #expect(state.deliveries[0].identifiers == [4, 5])
        #expect(state.deliveries[1].packetIdentifier == 77 && state.deliveries[1].phase == .awaitingCompletion && state.deliveries[1].retain)
        #expect(state.inbound.map(\.packetIdentifier) == [12])
        #expect(state.messages[10] == Self.message(10, "one"))
        #expect(state.retained.map(\.topic) == ["t/11"])
        #expect(state.highestMessageID == 11 && state.highestSequence == 101 && state.highestSessionID == 3)
    }

    /// strict promises an fsync per commit: SQLite's synchronous=FULL in WAL mode. (GRDB sets
    /// NORMAL when it enables WAL, so a setting made too early is silently lost.)
    @Test(arguments: [(Durability.strict, 2), (.batch, 1)])
    func synchronousLevelFollowsTheDurability(durability: Durability, level: Int) throws {
        let store = try SQLiteSessionStore(path: Self.temporaryPath(), durability: durability)
        defer { try? store.close() }
        #expect(try store.synchronousLevel == level)
    }

    @Test func removalsAndPurge() throws {
        let store = try SQLiteSessionStore(path: Self.temporaryPath(), durability: .strict)
        try store.write([
            .saveSession(PersistedSession(id: 1, clientIdentifier: "c", username: nil, attributes: [:], expiryInterval: 10, disconnectedAt: nil, will: nil, willDelay: 0)),
            .saveMessage(Self.message(1, "a")),
            .saveMessage(Self.message(2, "b")),
            .addDelivery(PersistedDelivery(sessionID: 1, sequence: 1, messageID: 1, qos: .atLeastOnce, retain: false, identifiers: [], packetIdentifier: nil, phase: .queued)),
            .addDelivery(PersistedDelivery(sessionID: 1, sequence: 2, messageID: 2, qos: .atLeastOnce, retain: false, identifiers: [], packetIdentifier: nil, phase: .queued)),
            .addSubscription(PersistedSubscription(sessionID: 1, filter: "x", options: 1, identifier: nil)),
        ])
        try store.write([.removeDelivery(sessionID: 1, sequence: 1)])
        #expect(try store.purge(limit: 100) == 1, "message 1 is no longer referenced")
        #expect(try store.recover().messages.keys.sorted() == [2])
        try store.write([.removeSession(id: 1)])
        let state = try store.recover()
        #expect(state.sessions.isEmpty && state.subscriptions.isEmpty && state.deliveries.isEmpty)
        #expect(try store.purge(limit: 100) == 1)
    }

    @Test func refusesAFileThatIsNotADatabaseAndLeavesItAlone() throws {
        let path = Self.temporaryPath()
        let garbage = Data((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        try garbage.write(to: URL(fileURLWithPath: path))
        #expect {
            _ = try SQLiteSessionStore(path: path, durability: .strict)
        } throws: { error in
            "\(error)".contains("cannot be opened") || "\(error)".contains("integrity")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == garbage)
    }

    @Test func refusesADatabaseFromANewerVersion() throws {
        let path = Self.temporaryPath()
        try SQLiteSessionStore(path: path, durability: .strict).close()
        // Simulate a newer Meridian having migrated the file further.
        let database = try DatabaseQueue(path: path)
        try database.write { db in
            try db.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('broker-v99-from-the-future')")
        }
        try database.close()
        #expect {
            _ = try SQLiteSessionStore(path: path, durability: .strict)
        } throws: { error in
            "\(error)".contains("newer version") && "\(error)".contains("broker-v99-from-the-future")
        }
    }
}

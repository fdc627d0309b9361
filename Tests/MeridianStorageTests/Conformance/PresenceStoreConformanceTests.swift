import Foundation
import MeridianCore
import MeridianStorage
import Testing

/// The same presence-store cases on SQLite (in the registry's file) and PostgreSQL.
@Suite("PresenceStore conformance")
struct PresenceStoreConformanceTests {
    static let cases: [PresenceCase] = [
        PresenceCase("events come back newest first, paged by sequence, every field intact", roundTrip),
        PresenceCase("events are scoped to tenant and device; deleting a device's events leaves others", scoping),
        PresenceCase("retention deletes only events older than the cut-off", retention),
    ]

    @Test("SQLite", arguments: cases)
    func sqlite(_ presenceCase: PresenceCase) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-presence-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("meridian.sqlite").path
        _ = try SQLiteRegistryStore(path: path)
        try await presenceCase.body(try SQLitePresenceStore(path: path))
    }

    @Test(
        "PostgreSQL", .enabled(if: PostgresTestServer.isConfigured, "needs MERIDIAN_TEST_POSTGRES_URL (bash scripts/test sets it)"),
        arguments: cases
    )
    func postgres(_ presenceCase: PresenceCase) async throws {
        try await PostgresTestServer.withFreshDatabase { configuration in
            let database = PostgresDatabase(configuration: configuration, logger: PostgresTestServer.logger())
            try await database.withRunning { database in
                _ = try await PostgresRegistryStore(database: database)
                try await presenceCase.body(try await PostgresPresenceStore(database: database))
            }
        }
    }

    @Test("SQLite: presence shares meridian.sqlite with the registry; both reopen; a newer presence schema is refused")
    func sharedFile() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-presence-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("meridian.sqlite").path
        let registry = try SQLiteRegistryStore(path: path)
        let store = try SQLitePresenceStore(path: path)
        try await store.append([Self.event(device: "d1", kind: .connected, at: 1000)])
        _ = try SQLiteRegistryStore(path: path)
        let again = try SQLitePresenceStore(path: path)
        #expect(try await again.events(tenantID: "t1", deviceID: "d1", before: nil, limit: 10).count == 1)
        try await registry.unsafeExecute(sql: "INSERT INTO meridian_migrations (component, identifier, applied_at) VALUES ('presence', 'presence-v99', 0)")
        #expect(throws: SQLitePresenceStore.OpenError.self) { try SQLitePresenceStore(path: path) }
        // The registry is not concerned by the presence's steps.
        _ = try SQLiteRegistryStore(path: path)
    }

    static func event(
        tenant: String = "t1", device: String, kind: PresenceEvent.Kind, at milliseconds: Int64, connection: UInt64 = 7,
        reason: PresenceReason? = nil, code: UInt8? = nil, address: String? = "198.51.100.4:1883", online: Bool = true
    ) -> PresenceEvent {
        PresenceEvent(
            tenantID: tenant, deviceID: device, kind: kind, time: Date(timeIntervalSince1970: Double(milliseconds) / 1000), address: address,
            protocolName: "mqtt-5.0", transport: "tls", connectionID: connection, reason: reason, reasonCode: code, online: online
        )
    }

    static func roundTrip(_ store: any PresenceStore) async throws {
        let events = [
            event(device: "d1", kind: .connected, at: 1_700_000_000_001, connection: UInt64.max, address: nil),
            event(device: "d1", kind: .disconnected, at: 1_700_000_000_002, connection: UInt64.max, reason: .keepaliveTimeout, code: 0x8D, online: false),
            event(device: "d1", kind: .connected, at: 1_700_000_000_003, connection: 3),
        ]
        try await store.append(events)
        try await store.append([event(device: "d1", kind: .disconnected, at: 1_700_000_000_004, connection: 3, reason: .revoked, code: 0x87, online: false)])
        let all = try await store.events(tenantID: "t1", deviceID: "d1", before: nil, limit: 10)
        #expect(all.map(\.kind) == [.disconnected, .connected, .disconnected, .connected])
        #expect(all.map(\.sequence) == all.map(\.sequence).sorted(by: >))
        #expect(Set(all.map(\.sequence)).count == 4)
        let oldest = try #require(all.last)
        #expect(oldest.connectionID == UInt64.max)
        #expect(oldest.address == nil)
        #expect(oldest.time == Date(timeIntervalSince1970: 1_700_000_000.001))
        #expect(oldest.protocolName == "mqtt-5.0" && oldest.transport == "tls" && oldest.online && oldest.reason == nil && oldest.reasonCode == nil)
        #expect(all[0].reason == .revoked && all[0].reasonCode == 0x87 && !all[0].online)
        #expect(all[2].reason == .keepaliveTimeout && all[2].reasonCode == 0x8D)
        let page = try await store.events(tenantID: "t1", deviceID: "d1", before: all[1].sequence, limit: 1)
        #expect(page.map(\.sequence) == [all[2].sequence])
        #expect(try await store.events(tenantID: "t1", deviceID: "d1", before: nil, limit: 0).isEmpty)
    }

    static func scoping(_ store: any PresenceStore) async throws {
        try await store.append([
            event(device: "d1", kind: .connected, at: 1000),
            event(device: "d2", kind: .connected, at: 1001),
            event(tenant: "t2", device: "d3", kind: .connected, at: 1002),
        ])
        #expect(try await store.events(tenantID: "t2", deviceID: "d1", before: nil, limit: 10).isEmpty)
        #expect(try await store.events(tenantID: "t1", deviceID: "d2", before: nil, limit: 10).map(\.deviceID) == ["d2"])
        try await store.deleteEvents(deviceID: "d1")
        #expect(try await store.events(tenantID: "t1", deviceID: "d1", before: nil, limit: 10).isEmpty)
        #expect(try await store.events(tenantID: "t1", deviceID: "d2", before: nil, limit: 10).count == 1)
        #expect(try await store.events(tenantID: "t2", deviceID: "d3", before: nil, limit: 10).count == 1)
    }

    static func retention(_ store: any PresenceStore) async throws {
        try await store.append([
            event(device: "d1", kind: .connected, at: 1000),
            event(device: "d1", kind: .disconnected, at: 2000, reason: .clean, online: false),
            event(device: "d1", kind: .connected, at: 3000),
        ])
        let deleted = try await store.deleteEvents(before: Date(timeIntervalSince1970: 2.5))
        #expect(deleted == 2)
        #expect(try await store.events(tenantID: "t1", deviceID: "d1", before: nil, limit: 10).map(\.time) == [Date(timeIntervalSince1970: 3)])
    }
}

/// One presence conformance case.
struct PresenceCase: Sendable, CustomTestStringConvertible {
    let name: String
    let body: @Sendable (any PresenceStore) async throws -> Void

    init(_ name: String, _ body: @escaping @Sendable (any PresenceStore) async throws -> Void) {
        self.name = name
        self.body = body
    }

    var testDescription: String { name }
}

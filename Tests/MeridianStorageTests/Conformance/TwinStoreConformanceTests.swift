import Foundation
import MeridianCore
import MeridianStorage
import Testing

/// The same cases against every `TwinStore` backend: current state, atomic version-checked
/// saves, history at a time, paging, retention, per-device reads and deletion, reopening.
@Suite("TwinStore conformance")
struct TwinStoreConformanceTests {
    @Test("SQLite", arguments: TwinStoreConformance.cases)
    func sqlite(_ conformanceCase: TwinStoreCase) async throws {
        try await TwinStoreContext.with(.sqlite, conformanceCase.body)
    }

    // PostgreSQL needs a server: `bash scripts/test` starts one and sets MERIDIAN_TEST_POSTGRES_URL.
    @Test(
        "PostgreSQL",
        .enabled(if: PostgresTestServer.isConfigured, "needs MERIDIAN_TEST_POSTGRES_URL (bash scripts/test sets it)"),
        arguments: TwinStoreConformance.cases
    )
    func postgres(_ conformanceCase: TwinStoreCase) async throws {
        try await TwinStoreContext.with(.postgres, conformanceCase.body)
    }

    @Test("the SQLite twin tables live beside the registry in meridian.sqlite, which still opens")
    func besideRegistry() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "meridian-twins-\(UUID().uuidString)"
        )
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("meridian.sqlite").path
        _ = try SQLiteRegistryStore(path: path)
        let twins = try SQLiteTwinStore(path: path)
        let key = TwinKey(tenantID: "t1", deviceID: "d1")
        #expect(
            try await twins.save(
                TwinStoreConformance.entry(key, version: 1, at: 10, desired: ["a": .number(1)]),
                previousVersion: 0,
                previousExists: false
            )
        )
        // Both open again, in either order.
        _ = try SQLiteRegistryStore(path: path)
        let again = try SQLiteTwinStore(path: path)
        #expect(try await again.twin(key)?.desired == ["a": .number(1)])
    }
}

/// One conformance case.
struct TwinStoreCase: Sendable, CustomTestStringConvertible {
    let name: String
    let body: @Sendable (TwinStoreContext) async throws -> Void

    init(_ name: String, _ body: @escaping @Sendable (TwinStoreContext) async throws -> Void) {
        self.name = name
        self.body = body
    }

    var testDescription: String { name }
}

/// A fresh store of one backend, and a way to open the same database again.
final class TwinStoreContext: Sendable {
    let store: any TwinStore
    private let reopenStore: @Sendable (@Sendable (any TwinStore) async throws -> Void) async throws -> Void

    init(
        store: any TwinStore,
        reopen: @escaping @Sendable (@Sendable (any TwinStore) async throws -> Void) async throws -> Void
    ) {
        self.store = store
        self.reopenStore = reopen
    }

    func reopen(_ body: @escaping @Sendable (any TwinStore) async throws -> Void) async throws {
        try await reopenStore(body)
    }

    static func with(
        _ backend: RegistryBackend,
        _ body: @escaping @Sendable (TwinStoreContext) async throws -> Void
    ) async throws {
        switch backend {
        case .sqlite:
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
                "meridian-twins-\(UUID().uuidString)"
            )
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let path = directory.appendingPathComponent("meridian.sqlite").path
            let store = try SQLiteTwinStore(path: path)
            try await body(TwinStoreContext(store: store) { body in try await body(try SQLiteTwinStore(path: path)) })
        case .postgres:
            try await PostgresTestServer.withFreshDatabase { configuration in
                let database = PostgresDatabase(configuration: configuration, logger: PostgresTestServer.logger())
                try await database.withRunning { database in
                    let store = try await PostgresTwinStore(database: database)
                    let context = TwinStoreContext(store: store) { body in
                        let again = PostgresDatabase(configuration: configuration, logger: PostgresTestServer.logger())
                        try await again.withRunning { again in
                            try await body(try await PostgresTwinStore(database: again))
                        }
                    }
                    try await body(context)
                }
            }
        }
    }
}

enum TwinStoreConformance {
    static let key = TwinKey(tenantID: "t1", deviceID: "d1")

    static func entry(
        _ key: TwinKey,
        version: Int64,
        at timestamp: Int64,
        desired: [String: JSONValue] = [:],
        reported: [String: JSONValue] = [:],
        operation: TwinOperation = .update,
        actor: AuditActor = AuditActor(kind: .user, id: "u1"),
        exists: Bool = true
    ) -> TwinHistoryEntry {
        var desiredMetadata: [String: JSONValue] = [:]
        for member in desired.keys { desiredMetadata[member] = JSONMergePatch.leafMetadata(timestamp) }
        let document = TwinDocument(
            desired: desired,
            reported: reported,
            desiredMetadata: desiredMetadata,
            version: version,
            timestamp: timestamp,
            exists: exists
        )
        let patch: JSONValue? = operation == .delete ? nil : .object(["desired": .object(desired)])
        return TwinHistoryEntry(
            key: key,
            version: version,
            timestamp: timestamp,
            actor: actor,
            operation: operation,
            patch: patch,
            document: document
        )
    }

    static let cases: [TwinStoreCase] = [
        TwinStoreCase("a saved twin reads back exactly: state, metadata, version, time, existence") {
            (context: TwinStoreContext) async throws in
            let store = context.store
            #expect(try await store.twin(key) == nil)
            let value = JSONValue.object([
                "n": .number(21.5), "i": .number(3), "s": .string("é \"q\" \u{0}"), "b": .bool(true), "z": .null,
                "arr": .array([.number(1), .object(["x": .string("y")])]),
                "o": .object(["deep": .object(["er": .number(-1)])]),
            ])
            let saved = entry(
                key,
                version: 1,
                at: 1_700_000_000_123,
                desired: ["v": value],
                reported: ["r": .string("x")]
            )
            #expect(try await store.save(saved, previousVersion: 0, previousExists: false))
            #expect(try await store.twin(key) == saved.document)
            try await context.reopen { (again: any TwinStore) async throws in
                #expect(try await again.twin(key) == saved.document)
            }
        },
        TwinStoreCase("a save whose previous version or existence is not stored saves nothing") {
            (context: TwinStoreContext) async throws in
            let store = context.store
            #expect(try await store.save(entry(key, version: 1, at: 10), previousVersion: 0, previousExists: false))
            #expect(
                try await !store.save(
                    entry(key, version: 1, at: 11, desired: ["x": .number(1)]),
                    previousVersion: 0,
                    previousExists: false
                )
            )
            #expect(try await !store.save(entry(key, version: 3, at: 12), previousVersion: 2, previousExists: true))
            // A delete keeps the version: saving it again with the old existence fails.
            #expect(
                try await store.save(
                    entry(key, version: 1, at: 13, operation: .delete, exists: false),
                    previousVersion: 1,
                    previousExists: true
                )
            )
            #expect(
                try await !store.save(
                    entry(key, version: 1, at: 14, operation: .delete, exists: false),
                    previousVersion: 1,
                    previousExists: true
                )
            )
            #expect(try await store.twin(key)?.exists == false)
            #expect(try await store.twin(key)?.version == 1)
            #expect(try await store.history(key, before: nil, limit: 10).count == 2)
        },
        TwinStoreCase("concurrent saves on one version: exactly one wins") { (context: TwinStoreContext) async throws in
            let store = context.store
            let wins = try await withThrowingTaskGroup(of: Bool.self) { group in
                for index in 0..<8 {
                    group.addTask {
                        try await store.save(
                            entry(key, version: 1, at: 10, desired: ["w": .number(Double(index))]),
                            previousVersion: 0,
                            previousExists: false
                        )
                    }
                }
                var wins = 0
                for try await won in group where won { wins += 1 }
                return wins
            }
            #expect(wins == 1)
            #expect(try await store.history(key, before: nil, limit: 10).count == 1)
        },
        TwinStoreCase("the twin at a time is the newest entry at or before it") {
            (context: TwinStoreContext) async throws in
            let store = context.store
            #expect(
                try await store.save(
                    entry(key, version: 1, at: 100, desired: ["a": .number(1)]),
                    previousVersion: 0,
                    previousExists: false
                )
            )
            #expect(
                try await store.save(
                    entry(key, version: 2, at: 200, desired: ["a": .number(2)]),
                    previousVersion: 1,
                    previousExists: true
                )
            )
            #expect(
                try await store.save(
                    entry(key, version: 3, at: 300, desired: ["a": .number(3)]),
                    previousVersion: 2,
                    previousExists: true
                )
            )
            #expect(try await store.twin(key, at: 99) == nil)
            #expect(try await store.twin(key, at: 100)?.version == 1)
            #expect(try await store.twin(key, at: 250)?.document.desired == ["a": .number(2)])
            #expect(try await store.twin(key, at: 10_000)?.version == 3)
            #expect(try await store.twin(TwinKey(tenantID: "t1", deviceID: "d1", name: "other"), at: 10_000) == nil)
        },
        TwinStoreCase("history pages newest first with who, what and when") {
            (context: TwinStoreContext) async throws in
            let store = context.store
            let device = AuditActor(kind: .device, id: "d1")
            for version in Int64(1)...5 {
                let actor = version % 2 == 0 ? device : AuditActor(kind: .apiKey, id: "k1")
                #expect(
                    try await store.save(
                        entry(
                            key,
                            version: version,
                            at: version * 10,
                            desired: ["v": .number(Double(version))],
                            actor: actor
                        ),
                        previousVersion: version - 1,
                        previousExists: version > 1
                    )
                )
            }
            let first = try await store.history(key, before: nil, limit: 2)
            #expect(first.map(\.version) == [5, 4])
            #expect(first.map(\.actor) == [AuditActor(kind: .apiKey, id: "k1"), device])
            #expect(first[0].patch == .object(["desired": .object(["v": .number(5)])]))
            #expect(first[0].timestamp == 50 && first[0].operation == .update)
            let second = try await store.history(key, before: first.last?.sequence, limit: 10)
            #expect(second.map(\.version) == [3, 2, 1])
        },
        TwinStoreCase("retention removes entries older than the cut-off except each twin's newest") {
            (context: TwinStoreContext) async throws in
            let store = context.store
            let other = TwinKey(tenantID: "t1", deviceID: "d2")
            #expect(try await store.save(entry(key, version: 1, at: 10), previousVersion: 0, previousExists: false))
            #expect(try await store.save(entry(key, version: 2, at: 20), previousVersion: 1, previousExists: true))
            #expect(try await store.save(entry(key, version: 3, at: 500), previousVersion: 2, previousExists: true))
            #expect(try await store.save(entry(other, version: 1, at: 10), previousVersion: 0, previousExists: false))
            #expect(try await store.deleteHistory(before: 100) == 2)
            #expect(try await store.history(key, before: nil, limit: 10).map(\.version) == [3])
            #expect(try await store.history(other, before: nil, limit: 10).map(\.version) == [1])
        },
        TwinStoreCase("names, several devices' default twins, and a deleted device's twins") {
            (context: TwinStoreContext) async throws in
            let store = context.store
            let named = TwinKey(tenantID: "t1", deviceID: "d1", name: "config")
            let d2 = TwinKey(tenantID: "t1", deviceID: "d2")
            let otherTenant = TwinKey(tenantID: "t2", deviceID: "d3")
            for twin in [key, named, d2, otherTenant] {
                #expect(
                    try await store.save(
                        entry(twin, version: 1, at: 10, desired: ["id": .string(twin.description)]),
                        previousVersion: 0,
                        previousExists: false
                    )
                )
            }
            #expect(try await store.twinNames(tenantID: "t1", deviceID: "d1") == ["", "config"])
            let defaults = try await store.twins(tenantID: "t1", deviceIDs: ["d1", "d2", "d3", "nope"])
            #expect(Set(defaults.keys) == ["d1", "d2"])
            #expect(defaults["d1"]?.desired == ["id": .string("d1")])
            try await store.deleteTwins(deviceID: "d1")
            #expect(try await store.twin(key) == nil)
            #expect(try await store.twin(named) == nil)
            #expect(try await store.history(key, before: nil, limit: 10).isEmpty)
            #expect(try await store.twin(d2) != nil)
        },
    ]
}

import Foundation
import MeridianCore
import MeridianStorage
import Testing

/// Where the rule, alarm and firing conformance suites run each case: the in-memory reference
/// stores, SQLite in memory and in a file (reopened to show data survives), and PostgreSQL
/// (only when `MERIDIAN_TEST_POSTGRES_URL` is set).
enum RuleStoreBackend: String, Sendable, CaseIterable, CustomTestStringConvertible {
    case reference
    case sqliteInMemory
    case sqliteFile
    case postgres

    /// The backends that need no server.
    static let local: [RuleStoreBackend] = [.reference, .sqliteInMemory, .sqliteFile]

    var testDescription: String {
        switch self {
        case .reference: "in memory (reference)"
        case .sqliteInMemory: "SQLite in memory"
        case .sqliteFile: "SQLite file"
        case .postgres: "PostgreSQL"
        }
    }
}

/// One backend's store for one case, and a way to open the same data again (a restart). For
/// the stores that live in memory, reopening hands back the same store.
struct RuleStoreContext<Store: Sendable>: Sendable {
    let backend: RuleStoreBackend
    let store: Store
    let reopen: @Sendable (@Sendable (Store) async throws -> Void) async throws -> Void

    /// How to open one kind of store on each backend.
    struct Openers: Sendable {
        var reference: @Sendable () -> Store
        var sqliteInMemory: @Sendable () throws -> Store
        var sqlitePath: @Sendable (String) throws -> Store
        var postgres: @Sendable (PostgresDatabase) async throws -> Store
    }

    /// Runs `body` with a fresh, empty store of `backend`, removed afterwards.
    static func with(
        _ backend: RuleStoreBackend,
        _ open: Openers,
        _ body: @escaping @Sendable (RuleStoreContext<Store>) async throws -> Void
    ) async throws {
        switch backend {
        case .reference:
            let store = open.reference()
            try await body(RuleStoreContext(backend: backend, store: store) { again in try await again(store) })
        case .sqliteInMemory:
            let store = try open.sqliteInMemory()
            try await body(RuleStoreContext(backend: backend, store: store) { again in try await again(store) })
        case .sqliteFile:
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
                "meridian-rules-\(UUID().uuidString)"
            )
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let path = directory.appendingPathComponent("meridian.sqlite").path
            // The registry opens the file first, as the server does; the rule stores share it.
            _ = try SQLiteRegistryStore(path: path)
            let store = try open.sqlitePath(path)
            try await body(
                RuleStoreContext(backend: backend, store: store) { again in try await again(try open.sqlitePath(path)) }
            )
        case .postgres:
            try await PostgresTestServer.withFreshDatabase { configuration in
                let database = PostgresDatabase(configuration: configuration, logger: PostgresTestServer.logger())
                try await database.withRunning { database in
                    _ = try await PostgresRegistryStore(database: database)
                    let store = try await open.postgres(database)
                    try await body(
                        RuleStoreContext(backend: backend, store: store) { again in
                            let pool = PostgresDatabase(
                                configuration: configuration,
                                logger: PostgresTestServer.logger()
                            )
                            try await pool.withRunning { pool in try await again(try await open.postgres(pool)) }
                        }
                    )
                }
            }
        }
    }
}

/// One named case of a conformance suite.
struct RuleConformanceCase<Store: Sendable>: Sendable, CustomTestStringConvertible {
    let name: String
    let body: @Sendable (RuleStoreContext<Store>) async throws -> Void

    init(_ name: String, _ body: @escaping @Sendable (RuleStoreContext<Store>) async throws -> Void) {
        self.name = name
        self.body = body
    }

    var testDescription: String { name }
}

/// Test data shared by the rule suites.
enum RuleFixtures {
    /// Whole milliseconds, as the stores keep them.
    static let base = Date(timeIntervalSince1970: 1_800_000_000)

    static func definition(_ name: String, threshold: Double = 80, secret: String = "s3cret") throws -> RuleDefinition {
        try RuleDefinition(json: [
            "name": .string(name),
            "description": "engine room",
            "condition": [
                "threshold": [
                    "key": "temp", "op": ">", "value": .number(threshold), "for": "5m",
                    "clear": ["op": "<", "value": 75, "for": "1m"],
                ]
            ],
            "alarm": ["severity": "major", "message": "too hot"],
            "actions": [["type": "webhook", "url": "https://example.com/hook", "secret": .string(secret)]],
        ])
    }

    static func rule(
        _ id: String,
        name: String,
        tenant: String = "t1",
        version: Int = 1,
        threshold: Double = 80,
        secret: String = "s3cret"
    ) throws -> Rule {
        Rule(
            id: id,
            tenantID: tenant,
            version: version,
            definition: try definition(name, threshold: threshold, secret: secret),
            createdAt: base,
            updatedAt: base.addingTimeInterval(Double(version)),
            updatedBy: "user:u1"
        )
    }
}

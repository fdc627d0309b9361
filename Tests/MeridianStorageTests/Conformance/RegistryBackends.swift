import Foundation
import Logging
import MeridianCore
import MeridianStorage
import Testing

/// The storage backends the registry runs on; the conformance suite runs every case on each.
enum RegistryBackend: String, Sendable, CaseIterable {
    case sqlite
    case postgres
}

/// The throwaway PostgreSQL server `scripts/test` starts (scripts/postgres-test-server) and
/// names in `MERIDIAN_TEST_POSTGRES_URL`.
enum PostgresTestServer {
    static let url: String? = ProcessInfo.processInfo.environment["MERIDIAN_TEST_POSTGRES_URL"].flatMap {
        $0.isEmpty ? nil : $0
    }

    static var isConfigured: Bool { url != nil }

    static func logger() -> Logger {
        var logger = Logger(label: "postgres-tests")
        logger.logLevel = .critical
        return logger
    }

    /// The server's own database, used to create and drop the tests' databases: one pool for
    /// the whole test process.
    private static let admin: PostgresDatabase? = {
        guard let url, var configuration = try? PostgresConfiguration(url: url) else { return nil }
        configuration.maximumConnections = 2
        let database = PostgresDatabase(configuration: configuration, logger: logger())
        Task.detached { try? await database.run() }
        return database
    }()

    /// Runs `body` with the configuration of a new, empty database of its own (so that tests
    /// running in parallel never meet), dropped afterwards.
    static func withFreshDatabase<T: Sendable>(
        encoding: String = "UTF8",
        _ body: (PostgresConfiguration) async throws -> T
    ) async throws -> T {
        guard let url, let admin else { throw FixtureError(description: "MERIDIAN_TEST_POSTGRES_URL is not set") }
        var configuration = try PostgresConfiguration(url: url)
        configuration.maximumConnections = 4
        // Letters and digits only: the name is part of the statement (CREATE DATABASE takes no
        // parameters).
        let name = "meridian_t_" + UUID().uuidString.lowercased().filter { $0.isLetter || $0.isNumber }
        precondition(encoding.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" })
        try await admin.unsafeExecute(sql: "CREATE DATABASE \(name) ENCODING '\(encoding)' TEMPLATE template0")
        let result: Result<T, any Error>
        do {
            result = .success(try await body(configuration.with(database: name)))
        } catch {
            result = .failure(error)
        }
        try? await admin.unsafeExecute(sql: "DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
        return try result.get()
    }
}

extension PostgresTestServer {
    /// Ends every server process connected to `database` (as a restart or a network failure
    /// would), except the admin connection doing it.
    static func terminateConnections(to database: String) async throws {
        guard let admin else { throw FixtureError(description: "MERIDIAN_TEST_POSTGRES_URL is not set") }
        precondition(database.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" })
        try await admin.unsafeExecute(
            sql:
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '\(database)' AND pid <> pg_backend_pid()"
        )
    }
}

/// One backend's store for one conformance case, with what the cases need beyond the
/// `RegistryStore` protocol (raw SQL for tampering, reopening the same database).
final class ConformanceContext: Sendable {
    let backend: RegistryBackend
    let store: any RegistryStore
    let clock = TestClock()
    /// A registry over ``store`` with the test clock.
    let registry: Registry
    private let executeSQL: @Sendable (String) async throws -> Void
    private let reopenStore: @Sendable (@Sendable (any RegistryStore) async throws -> Void) async throws -> Void

    init(
        backend: RegistryBackend,
        store: any RegistryStore,
        executeSQL: @escaping @Sendable (String) async throws -> Void,
        reopenStore: @escaping @Sendable (@Sendable (any RegistryStore) async throws -> Void) async throws -> Void
    ) {
        self.backend = backend
        self.store = store
        self.executeSQL = executeSQL
        self.reopenStore = reopenStore
        let clock = self.clock
        registry = Registry(store: store, now: { clock.now })
    }

    var now: Date { clock.now }

    /// Raw SQL on the backend (bypasses the store: tampering, simulating a newer schema).
    func unsafeExecute(_ sql: String) async throws {
        try await executeSQL(sql)
    }

    /// Opens the same database again, in a new store, for `body`; throws what opening throws.
    func reopen(_ body: @escaping @Sendable (any RegistryStore) async throws -> Void) async throws {
        try await reopenStore(body)
    }

    /// Records, in the backend's own migration table, a registry schema step this version does
    /// not know — what a newer Meridian would leave behind.
    func markNewerSchema() async throws {
        switch backend {
        case .sqlite:
            try await unsafeExecute("INSERT INTO grdb_migrations (identifier) VALUES ('registry-v99')")
        case .postgres:
            try await unsafeExecute(
                "INSERT INTO meridian_migrations (component, identifier, applied_at) VALUES ('registry', 'registry-v99', 0)"
            )
        }
    }

    /// Runs `body` with a fresh, empty store of `backend`, removed afterwards.
    static func with(
        _ backend: RegistryBackend,
        _ body: @escaping @Sendable (ConformanceContext) async throws -> Void
    ) async throws {
        switch backend {
        case .sqlite:
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
                "meridian-conformance-\(UUID().uuidString)"
            )
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let path = directory.appendingPathComponent("meridian.sqlite").path
            let store = try SQLiteRegistryStore(path: path)
            let context = ConformanceContext(
                backend: .sqlite,
                store: store,
                executeSQL: { sql in try await store.unsafeExecute(sql: sql) },
                reopenStore: { body in try await body(try SQLiteRegistryStore(path: path)) }
            )
            try await body(context)
        case .postgres:
            try await PostgresTestServer.withFreshDatabase { configuration in
                let database = PostgresDatabase(configuration: configuration, logger: PostgresTestServer.logger())
                try await database.withRunning { database in
                    let store = try await PostgresRegistryStore(database: database)
                    let context = ConformanceContext(
                        backend: .postgres,
                        store: store,
                        executeSQL: { sql in try await store.unsafeExecute(sql: sql) },
                        reopenStore: { body in
                            // A new pool, as a restarted server would have.
                            let again = PostgresDatabase(
                                configuration: configuration,
                                logger: PostgresTestServer.logger()
                            )
                            try await again.withRunning { again in
                                try await body(try await PostgresRegistryStore(database: again))
                            }
                        }
                    )
                    try await body(context)
                }
            }
        }
    }
}

/// One conformance case: a name and what it checks, given a fresh store.
struct ConformanceCase: Sendable, CustomTestStringConvertible {
    let name: String
    let body: @Sendable (ConformanceContext) async throws -> Void

    init(_ name: String, _ body: @escaping @Sendable (ConformanceContext) async throws -> Void) {
        self.name = name
        self.body = body
    }

    var testDescription: String { name }
}

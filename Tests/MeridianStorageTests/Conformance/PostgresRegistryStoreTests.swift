import Foundation
import MeridianCore
@testable import MeridianStorage
import NIOPosix
import PostgresNIO
import Testing

/// What only the PostgreSQL store has to get right: several processes on one database, a
/// database it must refuse, connections that go away.
///
/// PostgreSQL needs a server: `bash scripts/test` (and so CI) always starts a throwaway one
/// (scripts/postgres-test-server) and sets MERIDIAN_TEST_POSTGRES_URL; a bare `swift test`
/// without a server has nothing to run these against.
@Suite(
    "PostgreSQL registry store",
    .enabled(if: PostgresTestServer.isConfigured, "needs MERIDIAN_TEST_POSTGRES_URL (bash scripts/test sets it)")
)
struct PostgresRegistryStoreTests {
    @Test(
        "two servers on one database (two pools) write one intact audit chain: writers are serialized in the database"
    )
    func twoPools() async throws {
        try await PostgresTestServer.withFreshDatabase { configuration in
            let first = PostgresDatabase(configuration: configuration, logger: PostgresTestServer.logger())
            let second = PostgresDatabase(configuration: configuration, logger: PostgresTestServer.logger())
            try await first.withRunning { first in
                try await second.withRunning { second in
                    let registryA = Registry(store: try await PostgresRegistryStore(database: first))
                    let registryB = Registry(store: try await PostgresRegistryStore(database: second))
                    let bootstrap = try #require(
                        try await registryA.bootstrapIfEmpty(apiKey: "two-pools-key-0123456789")
                    )
                    #expect(try await registryB.bootstrapIfEmpty(apiKey: nil) == nil)
                    let owner = Caller(
                        tenantID: bootstrap.tenant.id,
                        role: .owner,
                        actor: AuditActor(kind: .apiKey, id: bootstrap.apiKeyID ?? "")
                    )
                    let before = try await registryA.verifyAudit().entries
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        for index in 0..<30 {
                            let registry = index % 2 == 0 ? registryA : registryB
                            group.addTask {
                                _ = try await registry.createDevice(DeviceDraft(name: "pool-\(index)"), by: owner)
                            }
                        }
                        try await group.waitForAll()
                    }
                    let verification = try await registryB.verifyAudit()
                    #expect(verification.isIntact)
                    #expect(verification.entries == before + 30)
                    #expect(
                        try await registryA.devices(DeviceQuery(tenantID: "", limit: 100), by: owner).items.count == 30
                    )
                }
            }
        }
    }

    @Test("a database that is not UTF8 is refused with the reason, and left without tables")
    func notUTF8() async throws {
        try await PostgresTestServer.withFreshDatabase(encoding: "SQL_ASCII") { configuration in
            let database = PostgresDatabase(configuration: configuration, logger: PostgresTestServer.logger())
            try await database.withRunning { database in
                let error = await #expect(throws: PostgresRegistryStore.OpenError.self) {
                    try await PostgresRegistryStore(database: database)
                }
                #expect(error?.description.contains("UTF8") == true, "\(String(describing: error))")
                let applied = try await database.appliedMigrations(component: "registry")
                #expect(applied.isEmpty)
            }
        }
    }

    @Test("a wrong password or a missing database stops opening with the server's reason, never the password")
    func refusedConnection() async throws {
        try await PostgresTestServer.withFreshDatabase { configuration in
            var missing = configuration.with(database: "meridian_no_such_database")
            missing.password = "pw-that-must-not-show"
            let database = PostgresDatabase(configuration: missing, logger: PostgresTestServer.logger())
            try await database.withRunning { database in
                let error = await #expect(throws: PostgresRegistryStore.OpenError.self) {
                    try await PostgresRegistryStore(database: database)
                }
                let text = error?.description ?? ""
                #expect(text.contains("meridian_no_such_database"), "\(text)")
                #expect(text.contains("does not exist"), "\(text)")
                #expect(!text.contains("pw-that-must-not-show"), "\(text)")
            }
        }
    }

    @Test("connections the server drops are replaced: the store keeps working after its backends are terminated")
    func terminatedConnections() async throws {
        try await PostgresTestServer.withFreshDatabase { configuration in
            let database = PostgresDatabase(configuration: configuration, logger: PostgresTestServer.logger())
            try await database.withRunning { database in
                let store = try await PostgresRegistryStore(database: database)
                let registry = Registry(store: store)
                _ = try await registry.bootstrapIfEmpty(apiKey: "terminate-key-0123456789")
                try await PostgresTestServer.terminateConnections(to: configuration.database)
                // The first use may meet a connection that is already gone; after that the pool
                // must have replaced it.
                _ = try? await registry.authenticateAPIKey("terminate-key-0123456789")
                var answered = false
                for _ in 0..<5 where !answered {
                    answered = (try? await registry.authenticateAPIKey("terminate-key-0123456789")) != nil
                }
                #expect(answered)
                #expect(try await registry.verifyAudit().isIntact)
            }
        }
    }

    /// The telemetry engine's store is synchronous: its callers block. They are meant to be
    /// threads of their own, but a caller on the cooperative pool must not wedge the process:
    /// here more callers than the pool has threads all block at once, and each must still get a
    /// connection (the pool's tasks run on an executor of their own, not on the cooperative pool).
    @Test("blocking store calls from every cooperative thread at once still get connections: nothing waits for a free cooperative thread")
    func blockingCallersOnTheCooperativePool() async throws {
        try await PostgresTestServer.withFreshDatabase { configuration in
            let database = PostgresDatabase(configuration: configuration, logger: PostgresTestServer.logger())
            try await database.withRunning { database in
                let store = try await PostgresChunkStore(database: database)
                let callers = ProcessInfo.processInfo.activeProcessorCount * 2 + 2
                let answered = try await withThrowingTaskGroup(of: Int.self) { group in
                    for _ in 0..<callers {
                        group.addTask {
                            var calls = 0
                            for _ in 0..<5 {
                                _ = try store.allSeries()  // blocks this cooperative thread on purpose
                                calls += 1
                            }
                            return calls
                        }
                    }
                    return try await group.reduce(0, +)
                }
                #expect(answered == callers * 5)
            }
        }
    }

    /// A blocking caller that cannot get a connection fails with the reason after the lease
    /// timeout, rather than waiting for ever; the connection it would have had goes back to the
    /// pool, which keeps working.
    @Test("a blocking caller gets an error naming the wait when no connection frees up in time; the pool keeps working")
    func blockingCallerTimesOut() async throws {
        try await PostgresTestServer.withFreshDatabase { configuration in
            var single = configuration
            single.maximumConnections = 1
            let database = PostgresDatabase(
                configuration: single,
                eventLoopGroup: MultiThreadedEventLoopGroup.singleton,
                logger: PostgresTestServer.logger(),
                leaseTimeout: .seconds(1)
            )
            try await database.withRunning { database in
                let store = try await PostgresChunkStore(database: database)
                // One thread holds the only connection for 4 s; another asks for one meanwhile.
                async let holding = Self.onThread {
                    try database.blockingConnection { session in
                        try session.execute("SELECT pg_sleep(4)")
                    }
                }
                try await Task.sleep(for: .milliseconds(500))
                let waiting = await Self.onThread { try store.allSeries() }
                switch waiting {
                case .success: Issue.record("the second caller got a connection the pool did not have")
                case .failure(let error):
                    #expect("\(error)".contains("no connection within 1"), "\(error)")
                    #expect("\(error)".contains("connections busy"), "\(error)")
                }
                _ = try await holding.get()
                // The pool is intact: the next caller gets the connection.
                #expect(try await Self.onThread { try store.allSeries() }.get().isEmpty)
            }
        }
    }

    /// PostgresNIO drops a statement written to a connection that has just closed, and its answer
    /// never comes; a caller must get an error instead of waiting for ever (this hung the test
    /// run before).
    @Test("a statement on a connection the server has closed fails at once; the pool then hands out a live one")
    func statementOnClosedConnection() async throws {
        try await PostgresTestServer.withFreshDatabase { configuration in
            var single = configuration
            single.maximumConnections = 1
            let database = PostgresDatabase(configuration: single, logger: PostgresTestServer.logger())
            try await database.withRunning { database in
                let store = try await PostgresChunkStore(database: database)
                let outcome = await Self.onThread { () -> String in
                    try database.blockingConnection { session -> String in
                        // The backend ends itself; its connection closes.
                        _ = try? session.execute("SELECT pg_terminate_backend(pg_backend_pid())")
                        try? session.connection.closeFuture.wait()
                        do {
                            try session.execute("SELECT 1")
                            return "answered"
                        } catch {
                            return "\(error)"
                        }
                    }
                }
                #expect(try outcome.get().contains("closed"), "\(outcome)")
                // The pool replaces the closed connection.
                var answered = false
                for _ in 0..<5 where !answered {
                    answered = (try? await Self.onThread { try store.allSeries() }.get()) != nil
                }
                #expect(answered)
            }
        }
    }

    /// Runs `body` on a thread of its own (never the cooperative pool) and returns its result.
    static func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async -> Result<T, any Error> {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread { continuation.resume(returning: Result { try body() }) }
        }
    }
}

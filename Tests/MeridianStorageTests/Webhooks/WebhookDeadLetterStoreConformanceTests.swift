import Foundation
import MeridianCore
import MeridianStorage
import Testing

/// The same cases against every `WebhookDeadLetterStore`: what the dispatcher and the API rely
/// on — every field round-trips (the secret too, to sign a replay), tenants never see each
/// other's dead letters, newest-first paging with a rule filter, updates and deletes scoped to
/// the tenant, durability across a reopen — must behave identically in memory, on SQLite and on
/// PostgreSQL.
@Suite("WebhookDeadLetterStore conformance")
struct WebhookDeadLetterStoreConformanceTests {
    @Test("in memory", arguments: WebhookDeadLetterConformance.cases)
    func inMemory(_ conformanceCase: WebhookDeadLetterConformanceCase) async throws {
        let store = InMemoryWebhookDeadLetterStore()
        // Memory does not survive a restart: the reopen case sees the same store.
        try await conformanceCase.body(WebhookDeadLetterStoreContext(store: store) { again in try await again(store) })
    }

    @Test("SQLite", arguments: WebhookDeadLetterConformance.cases)
    func sqlite(_ conformanceCase: WebhookDeadLetterConformanceCase) async throws {
        try await WebhookDeadLetterStoreContext.with(.sqlite, conformanceCase.body)
    }

    @Test(
        "PostgreSQL",
        .enabled(if: PostgresTestServer.isConfigured, "needs MERIDIAN_TEST_POSTGRES_URL (bash scripts/test sets it)"),
        arguments: WebhookDeadLetterConformance.cases
    )
    func postgres(_ conformanceCase: WebhookDeadLetterConformanceCase) async throws {
        try await WebhookDeadLetterStoreContext.with(.postgres, conformanceCase.body)
    }

    @Test("the SQLite store shares meridian.sqlite with the registry and the commands, under its own component")
    func sharesTheRegistryFile() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-webhooks-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("meridian.sqlite").path
        _ = try SQLiteRegistryStore(path: path)
        _ = try SQLiteCommandStore(path: path)
        let store = try SQLiteWebhookDeadLetterStore(path: path)
        try await store.insert(WebhookDeadLetterConformance.deadLetter("wdl_1"))
        // Every store opens again over the same file.
        _ = try SQLiteRegistryStore(path: path)
        _ = try SQLiteCommandStore(path: path)
        #expect(try await SQLiteWebhookDeadLetterStore(path: path).get(id: "wdl_1", tenantID: "t1") != nil)
    }
}

/// One backend's store for one case, and a way to open the same database again.
struct WebhookDeadLetterStoreContext: Sendable {
    let store: any WebhookDeadLetterStore
    let reopen: @Sendable (@Sendable (any WebhookDeadLetterStore) async throws -> Void) async throws -> Void

    static func with(
        _ backend: RegistryBackend, _ body: @escaping @Sendable (WebhookDeadLetterStoreContext) async throws -> Void
    ) async throws {
        switch backend {
        case .sqlite:
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-webhooks-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let path = directory.appendingPathComponent("meridian.sqlite").path
            // The registry opens the file first, as the server does; dead letters share it.
            _ = try SQLiteRegistryStore(path: path)
            let store = try SQLiteWebhookDeadLetterStore(path: path)
            try await body(
                WebhookDeadLetterStoreContext(store: store) { again in try await again(try SQLiteWebhookDeadLetterStore(path: path)) }
            )
        case .postgres:
            try await PostgresTestServer.withFreshDatabase { configuration in
                let database = PostgresDatabase(configuration: configuration, logger: PostgresTestServer.logger())
                try await database.withRunning { database in
                    _ = try await PostgresRegistryStore(database: database)
                    let store = try await PostgresWebhookDeadLetterStore(database: database)
                    try await body(
                        WebhookDeadLetterStoreContext(store: store) { again in
                            let pool = PostgresDatabase(configuration: configuration, logger: PostgresTestServer.logger())
                            try await pool.withRunning { pool in try await again(try await PostgresWebhookDeadLetterStore(database: pool)) }
                        }
                    )
                }
            }
        }
    }
}

struct WebhookDeadLetterConformanceCase: Sendable, CustomTestStringConvertible {
    let name: String
    let body: @Sendable (WebhookDeadLetterStoreContext) async throws -> Void

    init(_ name: String, _ body: @escaping @Sendable (WebhookDeadLetterStoreContext) async throws -> Void) {
        self.name = name
        self.body = body
    }

    var testDescription: String { name }
}

enum WebhookDeadLetterConformance {
    /// Whole milliseconds, as the stores keep them.
    static let base = Date(timeIntervalSince1970: 1_800_000_000)

    static func deadLetter(
        _ id: String, tenant: String = "t1", rule: String? = "r1", at offset: Double = 0, secret: String? = "s3cret-ü"
    ) -> WebhookDeadLetter {
        WebhookDeadLetter(
            id: id,
            request: WebhookRequest(
                url: "https://hooks.example.com/in?x=1", body: #"{"device":"d1","temp":81.5,"note":"ü \"quoted\""}"#, secret: secret,
                timeoutMs: 2500, maxAttempts: 4, tenantID: tenant, ruleID: rule, deviceID: "d1", firingID: "f1",
                deliveryID: "whd_\(id)"
            ),
            attempts: 4, lastError: "HTTP 500", lastStatus: 500, firstAttemptAt: base.addingTimeInterval(offset - 10),
            lastAttemptAt: base.addingTimeInterval(offset - 1), createdAt: base.addingTimeInterval(offset)
        )
    }

    static let cases: [WebhookDeadLetterConformanceCase] = [
        WebhookDeadLetterConformanceCase("every field survives a round trip, the secret included") { context in
            let full = deadLetter("wdl_full")
            try await context.store.insert(full)
            #expect(try await context.store.get(id: "wdl_full", tenantID: "t1") == full)
            let bare = WebhookDeadLetter(
                id: "wdl_bare", request: WebhookRequest(url: "http://127.0.0.1:9/x", body: "null", tenantID: "t1", deliveryID: "whd_b"),
                attempts: 0, lastError: "not sent: the server stopped first", firstAttemptAt: base, lastAttemptAt: base
            )
            try await context.store.insert(bare)
            #expect(try await context.store.get(id: "wdl_bare", tenantID: "t1") == bare)
            #expect(bare.request.secret == nil && bare.lastStatus == nil && bare.request.ruleID == nil)
            #expect(try await context.store.get(id: "missing", tenantID: "t1") == nil)
        },
        WebhookDeadLetterConformanceCase("another tenant's dead letter cannot be read, changed or deleted") { context in
            try await context.store.insert(deadLetter("wdl_1", tenant: "t1"))
            #expect(try await context.store.get(id: "wdl_1", tenantID: "t2") == nil)
            #expect(try await context.store.list(tenantID: "t2", ruleID: nil, limit: 10, cursor: nil).items.isEmpty)
            #expect(try await context.store.delete(id: "wdl_1", tenantID: "t2") == false)
            var stolen = deadLetter("wdl_1", tenant: "t2")
            stolen.lastError = "changed"
            #expect(try await context.store.update(stolen) == false)
            #expect(try await context.store.get(id: "wdl_1", tenantID: "t1")?.lastError == "HTTP 500")
        },
        WebhookDeadLetterConformanceCase("a dead letter id is unique") { context in
            try await context.store.insert(deadLetter("wdl_1"))
            await #expect(throws: (any Error).self) { try await context.store.insert(deadLetter("wdl_1", rule: "r2")) }
        },
        WebhookDeadLetterConformanceCase("dead letters page newest first, filtered by rule, other tenants' never") { context in
            for index in 0..<5 { try await context.store.insert(deadLetter("wdl_\(index)", at: Double(index))) }
            // Same time: ordered by id.
            try await context.store.insert(deadLetter("wdl_4b", at: 4))
            try await context.store.insert(deadLetter("wdl_r2", rule: "r2", at: 10))
            try await context.store.insert(deadLetter("wdl_norule", rule: nil, at: 11))
            try await context.store.insert(deadLetter("wdl_x", tenant: "t2", at: 20))
            let all = try await context.store.list(tenantID: "t1", ruleID: nil, limit: 100, cursor: nil)
            #expect(all.items.map(\.id) == ["wdl_norule", "wdl_r2", "wdl_4b", "wdl_4", "wdl_3", "wdl_2", "wdl_1", "wdl_0"])
            #expect(all.nextCursor == nil)
            let first = try await context.store.list(tenantID: "t1", ruleID: "r1", limit: 4, cursor: nil)
            #expect(first.items.map(\.id) == ["wdl_4b", "wdl_4", "wdl_3", "wdl_2"])
            let cursor = try #require(first.nextCursor)
            let second = try await context.store.list(tenantID: "t1", ruleID: "r1", limit: 4, cursor: cursor)
            #expect(second.items.map(\.id) == ["wdl_1", "wdl_0"])
            #expect(second.nextCursor == nil)
            #expect(try await context.store.list(tenantID: "t1", ruleID: "r2", limit: 10, cursor: nil).items.map(\.id) == ["wdl_r2"])
            // An exact page has no next cursor.
            #expect(try await context.store.list(tenantID: "t1", ruleID: "r1", limit: 6, cursor: nil).nextCursor == nil)
        },
        WebhookDeadLetterConformanceCase("an update replaces the attempts, error and replays; a delete removes it once") { context in
            var stored = deadLetter("wdl_1")
            try await context.store.insert(stored)
            stored.attempts = 5
            stored.lastError = "timed out after 2.5 s"
            stored.lastStatus = nil
            stored.lastAttemptAt = base.addingTimeInterval(60)
            stored.replays = 1
            #expect(try await context.store.update(stored))
            #expect(try await context.store.get(id: "wdl_1", tenantID: "t1") == stored)
            #expect(try await context.store.update(deadLetter("wdl_missing")) == false)
            #expect(try await context.store.delete(id: "wdl_1", tenantID: "t1"))
            #expect(try await context.store.delete(id: "wdl_1", tenantID: "t1") == false)
            #expect(try await context.store.get(id: "wdl_1", tenantID: "t1") == nil)
        },
        WebhookDeadLetterConformanceCase("text with a NUL byte is refused on insert and matches nothing on read") { context in
            var bad = deadLetter("wdl_nul")
            bad.request.body = "\"a" + String(UnicodeScalar(0)) + "b\""
            await #expect(throws: WebhookError.self) { try await context.store.insert(bad) }
            let nul = "wdl" + String(UnicodeScalar(0))
            let found = try await context.store.get(id: nul, tenantID: "t1")
            #expect(found == nil)
            let deleted = try await context.store.delete(id: nul, tenantID: "t1")
            #expect(deleted == false)
        },
        WebhookDeadLetterConformanceCase("dead letters survive reopening the database (a restart)") { context in
            try await context.store.insert(deadLetter("wdl_1"))
            try await context.reopen { again in
                let found = try await again.get(id: "wdl_1", tenantID: "t1")
                #expect(found == deadLetter("wdl_1"))
            }
        },
    ]
}

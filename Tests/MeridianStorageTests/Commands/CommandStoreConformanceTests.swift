import Foundation
import MeridianCore
import MeridianStorage
import Testing

/// The same cases against every `CommandStore` backend: what the command service relies on —
/// round trips of every field, compare-and-set transitions, newest-first paging, the queue's
/// order, the sweep's view, durability across a reopen — must behave identically on SQLite and
/// on PostgreSQL.
@Suite("CommandStore conformance")
struct CommandStoreConformanceTests {
    @Test("SQLite", arguments: CommandConformance.cases)
    func sqlite(_ conformanceCase: CommandConformanceCase) async throws {
        try await CommandStoreContext.with(.sqlite, conformanceCase.body)
    }

    @Test(
        "PostgreSQL",
        .enabled(if: PostgresTestServer.isConfigured, "needs MERIDIAN_TEST_POSTGRES_URL (bash scripts/test sets it)"),
        arguments: CommandConformance.cases
    )
    func postgres(_ conformanceCase: CommandConformanceCase) async throws {
        try await CommandStoreContext.with(.postgres, conformanceCase.body)
    }
}

/// One backend's command store for one case, and a way to open the same database again.
struct CommandStoreContext: Sendable {
    let store: any CommandStore
    let reopen: @Sendable (@Sendable (any CommandStore) async throws -> Void) async throws -> Void

    static func with(_ backend: RegistryBackend, _ body: @escaping @Sendable (CommandStoreContext) async throws -> Void) async throws {
        switch backend {
        case .sqlite:
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-commands-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let path = directory.appendingPathComponent("meridian.sqlite").path
            // The registry opens the file first, as the server does; commands share it.
            _ = try SQLiteRegistryStore(path: path)
            let store = try SQLiteCommandStore(path: path)
            try await body(CommandStoreContext(store: store) { again in try await again(try SQLiteCommandStore(path: path)) })
        case .postgres:
            try await PostgresTestServer.withFreshDatabase { configuration in
                let database = PostgresDatabase(configuration: configuration, logger: PostgresTestServer.logger())
                try await database.withRunning { database in
                    _ = try await PostgresRegistryStore(database: database)
                    let store = try await PostgresCommandStore(database: database)
                    try await body(
                        CommandStoreContext(store: store) { again in
                            let pool = PostgresDatabase(configuration: configuration, logger: PostgresTestServer.logger())
                            try await pool.withRunning { pool in try await again(try await PostgresCommandStore(database: pool)) }
                        }
                    )
                }
            }
        }
    }
}

struct CommandConformanceCase: Sendable, CustomTestStringConvertible {
    let name: String
    let body: @Sendable (CommandStoreContext) async throws -> Void

    init(_ name: String, _ body: @escaping @Sendable (CommandStoreContext) async throws -> Void) {
        self.name = name
        self.body = body
    }

    var testDescription: String { name }
}

enum CommandConformance {
    /// Whole milliseconds, as the stores keep them.
    static let base = Date(timeIntervalSince1970: 1_800_000_000)

    static func command(
        _ id: String, device: String = "d1", tenant: String = "t1", at offset: Int = 0, state: CommandState = .queued
    ) -> Command {
        Command(
            id: id, tenantID: tenant, deviceID: device, method: "reboot", params: .object(["delay": .number(5)]),
            oneWay: false, persistent: true, timeoutMs: 5000, expiresAt: base.addingTimeInterval(3600), actor: "api-key:k1",
            state: state, createdAt: base.addingTimeInterval(Double(offset))
        )
    }

    static let cases: [CommandConformanceCase] = [
        CommandConformanceCase("every field survives a round trip, finished commands too") { context in
            var command = command("c1")
            try await context.store.insert(command)
            #expect(try await context.store.command(id: "c1") == command)
            command.state = .succeeded
            command.sentAt = base.addingTimeInterval(1)
            command.deliveredAt = base.addingTimeInterval(2)
            command.completedAt = base.addingTimeInterval(3)
            command.convention = .thingsBoard
            command.response = .object(["ok": .bool(true), "list": .array([.number(1.5), .string("ü"), .null])])
            command.error = nil
            #expect(try await context.store.transition(command, from: [.queued]))
            #expect(try await context.store.command(id: "c1") == command)
            #expect(try await context.store.command(id: "missing") == nil)
        },
        CommandConformanceCase("a transition applies only from the expected states") { context in
            try await context.store.insert(command("c1"))
            var sent = command("c1")
            sent.state = .sent
            sent.sentAt = base
            #expect(try await context.store.transition(sent, from: [.queued]))
            var timedOut = sent
            timedOut.state = .timedOut
            // A second writer that still thinks it is queued loses.
            #expect(try await context.store.transition(timedOut, from: [.queued]) == false)
            #expect(try await context.store.command(id: "c1")?.state == .sent)
            #expect(try await context.store.transition(timedOut, from: [.sent, .delivered]))
            #expect(try await context.store.command(id: "c1")?.state == .timedOut)
        },
        CommandConformanceCase("a command id is unique") { context in
            try await context.store.insert(command("c1"))
            await #expect(throws: (any Error).self) { try await context.store.insert(command("c1", device: "d2")) }
        },
        CommandConformanceCase("a device's commands page newest first, other devices' never") { context in
            for index in 0..<5 { try await context.store.insert(command("c\(index)", at: index)) }
            // Same time, ordered by id.
            try await context.store.insert(command("c4b", at: 4))
            try await context.store.insert(command("x1", device: "d2", at: 10))
            try await context.store.insert(command("x2", tenant: "t2", at: 10))
            let first = try await context.store.commands(tenantID: "t1", deviceID: "d1", limit: 4, before: nil)
            #expect(first.items.map(\.id) == ["c4b", "c4", "c3", "c2"])
            let cursor = try #require(first.nextCursor)
            let second = try await context.store.commands(tenantID: "t1", deviceID: "d1", limit: 4, before: cursor)
            #expect(second.items.map(\.id) == ["c1", "c0"])
            #expect(second.nextCursor == nil)
        },
        CommandConformanceCase("the queue is a device's queued commands, oldest first") { context in
            try await context.store.insert(command("late", at: 5))
            try await context.store.insert(command("early", at: 1))
            try await context.store.insert(command("sent", at: 0, state: .sent))
            try await context.store.insert(command("other", device: "d2", at: 0))
            #expect(try await context.store.queued(tenantID: "t1", deviceID: "d1").map(\.id) == ["early", "late"])
        },
        CommandConformanceCase("the sweep finds queued commands past their expiry and sent ones past their deadline") { context in
            // Queued: due at expiry (base + 3600 s); sent two-way: due at sentAt + timeoutMs.
            try await context.store.insert(command("queued", at: 0))
            var sent = command("sent", at: 0, state: .sent)
            sent.sentAt = base.addingTimeInterval(10)
            try await context.store.insert(sent)
            var oneWay = command("oneway", at: 0, state: .sent)
            oneWay.oneWay = true
            oneWay.sentAt = base
            try await context.store.insert(oneWay)
            try await context.store.insert(command("done", at: 0, state: .succeeded))
            #expect(try await context.store.due(at: base.addingTimeInterval(14.999), limit: 10).isEmpty)
            #expect(try await context.store.due(at: base.addingTimeInterval(15), limit: 10).map(\.id) == ["sent"])
            #expect(try await context.store.due(at: base.addingTimeInterval(7200), limit: 10).map(\.id) == ["sent", "queued"])
            #expect(try await context.store.due(at: base.addingTimeInterval(7200), limit: 1).map(\.id) == ["sent"])
            // Once finished, nothing is due any more.
            var answered = sent
            answered.state = .succeeded
            answered.completedAt = base.addingTimeInterval(11)
            #expect(try await context.store.transition(answered, from: [.sent]))
            #expect(try await context.store.due(at: base.addingTimeInterval(7200), limit: 10).map(\.id) == ["queued"])
        },
        CommandConformanceCase("queued commands survive reopening the database (a restart)") { context in
            try await context.store.insert(command("c1"))
            try await context.reopen { again in
                let ids = try await again.queued(tenantID: "t1", deviceID: "d1").map(\.id)
                #expect(ids == ["c1"])
            }
        },
    ]
}

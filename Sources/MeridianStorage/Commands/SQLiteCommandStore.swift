import Foundation
import GRDB
import MeridianCore

/// Commands in the embedded SQLite database, `meridian.sqlite` (the registry's file; migrations
/// under component `commands` in `meridian_migrations`, apart from the registry's own).
public final class SQLiteCommandStore: CommandStore, Sendable {
    private let database: DatabaseQueue

    /// Why the store could not be opened.
    public struct OpenError: Error, CustomStringConvertible {
        public var description: String
    }

    static let migrations = SQLiteComponentMigrations(
        component: "commands",
        steps: [.init(identifier: "commands-v1", sql: CommandSchema.sqliteV1)]
    )

    /// Opens the commands in the database at `path` — normally the registry's, which the
    /// registry opened first (WAL) — creating their table if needed.
    ///
    /// - Throws: ``OpenError`` when the file is refused (corrupt, or commands from a newer
    ///   Meridian).
    public init(path: String) throws {
        do {
            // Queued commands are acknowledged to the operator: they must survive a crash.
            database = try Self.migrations.open(path: path, label: "meridian.commands", synchronous: "FULL")
        } catch let refusal as SQLiteFile.Refusal {
            throw OpenError(description: refusal.description)
        }
    }

    private init(database: DatabaseQueue) {
        self.database = database
    }

    /// A store in memory (tests): gone when released.
    public static func inMemory() throws -> SQLiteCommandStore {
        let database = try DatabaseQueue()
        try migrations.migrate(database, path: ":memory:")
        return SQLiteCommandStore(database: database)
    }

    private static let columns = """
        id, tenant_id, device_id, method, params, one_way, persistent, timeout_ms, expires_at, actor, state, created_at, \
        sent_at, delivered_at, completed_at, convention, response, error, due_at
        """

    private static func arguments(_ command: Command) throws -> StatementArguments {
        let params = try CommandColumns.json(command.params)
        let response = try CommandColumns.json(command.response)
        return [
            command.id, command.tenantID, command.deviceID, command.method, params,
            command.oneWay, command.persistent, command.timeoutMs, CommandColumns.milliseconds(command.expiresAt),
            command.actor, command.state.rawValue, CommandColumns.milliseconds(command.createdAt),
            CommandColumns.milliseconds(command.sentAt), CommandColumns.milliseconds(command.deliveredAt),
            CommandColumns.milliseconds(command.completedAt), command.convention?.rawValue,
            response, command.error, CommandColumns.milliseconds(command.dueAt),
        ]
    }

    private static func command(_ row: Row) throws -> Command {
        guard let state = CommandState(rawValue: row["state"]) else {
            throw CommandError.invalid("stored command has an unknown state", field: "state")
        }
        return Command(
            id: row["id"], tenantID: row["tenant_id"], deviceID: row["device_id"], method: row["method"],
            params: CommandColumns.value(row["params"]) ?? .null, oneWay: row["one_way"], persistent: row["persistent"],
            timeoutMs: row["timeout_ms"], expiresAt: CommandColumns.date(row["expires_at"]), actor: row["actor"], state: state,
            createdAt: CommandColumns.date(row["created_at"]) ?? Date(timeIntervalSince1970: 0),
            sentAt: CommandColumns.date(row["sent_at"]), deliveredAt: CommandColumns.date(row["delivered_at"]),
            completedAt: CommandColumns.date(row["completed_at"]),
            convention: (row["convention"] as String?).flatMap(CommandConvention.init(rawValue:)),
            response: CommandColumns.value(row["response"]), error: row["error"]
        )
    }

    public func insert(_ command: Command) async throws {
        let arguments = try Self.arguments(command)
        try await database.write { db in
            try db.execute(sql: "INSERT INTO commands (\(Self.columns)) VALUES (\(Array(repeating: "?", count: 19).joined(separator: ", ")))", arguments: arguments)
        }
    }

    public func transition(_ command: Command, from states: Set<CommandState>) async throws -> Bool {
        let stateList = states.map(\.rawValue).sorted()
        let arguments = try Self.arguments(command) + StatementArguments([command.id] + stateList)
        let placeholders = Array(repeating: "?", count: stateList.count).joined(separator: ", ")
        return try await database.write { db in
            try db.execute(
                sql: """
                    UPDATE commands SET id = ?, tenant_id = ?, device_id = ?, method = ?, params = ?, one_way = ?, persistent = ?,
                    timeout_ms = ?, expires_at = ?, actor = ?, state = ?, created_at = ?, sent_at = ?, delivered_at = ?,
                    completed_at = ?, convention = ?, response = ?, error = ?, due_at = ? WHERE id = ? AND state IN (\(placeholders))
                    """,
                arguments: arguments
            )
            return db.changesCount > 0
        }
    }

    public func command(id: String) async throws -> Command? {
        try await database.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM commands WHERE id = ?", arguments: [id]).map(Self.command)
        }
    }

    public func commands(tenantID: String, deviceID: String, limit: Int, before: String?) async throws -> CommandPage {
        let bound = before.flatMap(CommandCursor.parse)
        // Rows are not Sendable: decoded inside, so that this is GRDB's asynchronous read.
        let commands = try await database.read { db -> [Command] in
            if let bound {
                return try Row.fetchAll(
                    db,
                    sql: """
                        SELECT * FROM commands WHERE tenant_id = ? AND device_id = ? AND (created_at, id) < (?, ?)
                        ORDER BY created_at DESC, id DESC LIMIT ?
                        """,
                    arguments: [tenantID, deviceID, bound.milliseconds, bound.id, limit + 1]
                ).map(Self.command)
            }
            return try Row.fetchAll(
                db, sql: "SELECT * FROM commands WHERE tenant_id = ? AND device_id = ? ORDER BY created_at DESC, id DESC LIMIT ?",
                arguments: [tenantID, deviceID, limit + 1]
            ).map(Self.command)
        }
        let page = Array(commands.prefix(limit))
        return CommandPage(items: page, nextCursor: commands.count > limit ? page.last.map(CommandCursor.cursor) : nil)
    }

    public func queued(tenantID: String, deviceID: String) async throws -> [Command] {
        try await database.read { db in
            try Row.fetchAll(
                db, sql: "SELECT * FROM commands WHERE tenant_id = ? AND device_id = ? AND state = 'queued' ORDER BY created_at, id",
                arguments: [tenantID, deviceID]
            ).map(Self.command)
        }
    }

    public func due(at time: Date, limit: Int) async throws -> [Command] {
        try await database.read { db in
            try Row.fetchAll(
                db, sql: "SELECT * FROM commands WHERE due_at IS NOT NULL AND due_at <= ? ORDER BY due_at, id LIMIT ?",
                arguments: [CommandColumns.milliseconds(time), limit]
            ).map(Self.command)
        }
    }
}

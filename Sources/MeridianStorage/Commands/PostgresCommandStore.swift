import Foundation
import MeridianCore
import PostgresNIO

/// Commands in PostgreSQL (the registry's database; migration component `commands`): the same
/// behaviour as ``SQLiteCommandStore``. State changes are single conditional `UPDATE`s, so
/// several nodes sharing the database never both finish one command.
public final class PostgresCommandStore: CommandStore, Sendable {
    /// Why the store could not be opened.
    public struct OpenError: Error, CustomStringConvertible {
        public var description: String
    }

    public let database: PostgresDatabase
    /// The advisory lock command writers hold ("COMMANDS" in ASCII).
    static let writeLock: Int64 = 0x434F_4D4D_414E_4453

    /// Opens the commands in `database` (whose pool must be running) and migrates them.
    public init(database: PostgresDatabase) async throws {
        self.database = database
        do {
            try await database.checkConnection()
            try await database.migrate(CommandSchema.postgres)
        } catch let error as PostgresDatabase.DatabaseError {
            throw OpenError(description: error.description)
        }
    }

    private static func command(_ row: PostgresRandomAccessRow) throws -> Command {
        let stateText: String = try row.value("state")
        guard let state = CommandState(rawValue: stateText) else {
            throw PostgresDatabase.DatabaseError("PostgreSQL: stored command has an unknown state")
        }
        let convention: String? = try row.optional("convention")
        return Command(
            id: try row.value("id"), tenantID: try row.value("tenant_id"), deviceID: try row.value("device_id"),
            method: try row.value("method"), params: CommandColumns.value(try row.value("params", as: String.self)) ?? .null,
            oneWay: try row.value("one_way"), persistent: try row.value("persistent"),
            timeoutMs: Int(try row.value("timeout_ms", as: Int64.self)),
            expiresAt: CommandColumns.date(try row.optional("expires_at")), actor: try row.value("actor"), state: state,
            createdAt: CommandColumns.date(try row.value("created_at", as: Int64.self)) ?? Date(timeIntervalSince1970: 0),
            sentAt: CommandColumns.date(try row.optional("sent_at")), deliveredAt: CommandColumns.date(try row.optional("delivered_at")),
            completedAt: CommandColumns.date(try row.optional("completed_at")),
            convention: convention.flatMap(CommandConvention.init(rawValue:)),
            response: CommandColumns.value(try row.optional("response")), error: try row.optional("error")
        )
    }

    private struct Columns: Sendable {
        var params: String
        var response: String?

        init(_ command: Command) throws {
            guard [command.id, command.tenantID, command.deviceID, command.method, command.actor, command.error ?? ""].allSatisfy(CommandColumns.storable) else {
                throw CommandError.invalid("text may not contain NUL characters", field: "method")
            }
            params = try CommandColumns.json(command.params) ?? "null"
            response = try CommandColumns.json(command.response)
        }
    }

    public func insert(_ command: Command) async throws {
        let columns = try Columns(command)
        _ = try await database.transaction(.write(lock: Self.writeLock)) { session in
            try session.execute(
                """
                INSERT INTO commands (id, tenant_id, device_id, method, params, one_way, persistent, timeout_ms, expires_at, actor,
                state, created_at, sent_at, delivered_at, completed_at, convention, response, error, due_at) VALUES (
                \(command.id), \(command.tenantID), \(command.deviceID), \(command.method), \(columns.params), \(command.oneWay),
                \(command.persistent), \(Int64(command.timeoutMs)), \(CommandColumns.milliseconds(command.expiresAt)),
                \(command.actor), \(command.state.rawValue), \(CommandColumns.milliseconds(command.createdAt)),
                \(CommandColumns.milliseconds(command.sentAt)), \(CommandColumns.milliseconds(command.deliveredAt)),
                \(CommandColumns.milliseconds(command.completedAt)), \(command.convention?.rawValue), \(columns.response),
                \(command.error), \(CommandColumns.milliseconds(command.dueAt)))
                """
            )
        }
    }

    public func transition(_ command: Command, from states: Set<CommandState>) async throws -> Bool {
        let columns = try Columns(command)
        let stateList = states.map(\.rawValue).sorted()
        return try await database.transaction(.write(lock: Self.writeLock)) { session in
            try session.execute(
                """
                UPDATE commands SET params = \(columns.params), one_way = \(command.oneWay), persistent = \(command.persistent),
                timeout_ms = \(Int64(command.timeoutMs)), expires_at = \(CommandColumns.milliseconds(command.expiresAt)),
                state = \(command.state.rawValue), sent_at = \(CommandColumns.milliseconds(command.sentAt)),
                delivered_at = \(CommandColumns.milliseconds(command.deliveredAt)),
                completed_at = \(CommandColumns.milliseconds(command.completedAt)), convention = \(command.convention?.rawValue),
                response = \(columns.response), error = \(command.error), due_at = \(CommandColumns.milliseconds(command.dueAt))
                WHERE id = \(command.id) AND state = ANY(\(stateList))
                """
            ) > 0
        }
    }

    public func command(id: String) async throws -> Command? {
        guard CommandColumns.storable(id) else { return nil }
        return try await database.transaction(.read) { session in
            try session.row("SELECT * FROM commands WHERE id = \(id)").map(Self.command)
        }
    }

    public func commands(tenantID: String, deviceID: String, limit: Int, before: String?) async throws -> CommandPage {
        guard CommandColumns.storable(tenantID), CommandColumns.storable(deviceID) else { return CommandPage(items: [], nextCursor: nil) }
        let bound = before.flatMap(CommandCursor.parse)
        let fetch = Int64(limit + 1)
        let commands = try await database.transaction(.read) { session in
            if let bound {
                return try session.rows(
                    """
                    SELECT * FROM commands WHERE tenant_id = \(tenantID) AND device_id = \(deviceID)
                    AND (created_at, id) < (\(bound.milliseconds), \(bound.id))
                    ORDER BY created_at DESC, id DESC LIMIT \(fetch)
                    """
                ).map(Self.command)
            }
            return try session.rows(
                """
                SELECT * FROM commands WHERE tenant_id = \(tenantID) AND device_id = \(deviceID)
                ORDER BY created_at DESC, id DESC LIMIT \(fetch)
                """
            ).map(Self.command)
        }
        let page = Array(commands.prefix(limit))
        return CommandPage(items: page, nextCursor: commands.count > limit ? page.last.map(CommandCursor.cursor) : nil)
    }

    public func queued(tenantID: String, deviceID: String) async throws -> [Command] {
        guard CommandColumns.storable(tenantID), CommandColumns.storable(deviceID) else { return [] }
        return try await database.transaction(.read) { session in
            try session.rows(
                """
                SELECT * FROM commands WHERE tenant_id = \(tenantID) AND device_id = \(deviceID) AND state = 'queued'
                ORDER BY created_at, id
                """
            ).map(Self.command)
        }
    }

    public func due(at time: Date, limit: Int) async throws -> [Command] {
        let bound = CommandColumns.milliseconds(time)
        let fetch = Int64(limit)
        return try await database.transaction(.read) { session in
            try session.rows("SELECT * FROM commands WHERE due_at IS NOT NULL AND due_at <= \(bound) ORDER BY due_at, id LIMIT \(fetch)")
                .map(Self.command)
        }
    }
}

import Foundation

/// Where commands are kept (SQLite or PostgreSQL in MeridianStorage; one conformance suite runs
/// against both). Every state change is a compare-and-set (``transition(_:from:)``), so a late
/// answer and a timeout racing for the same command never both win, on one node or several.
public protocol CommandStore: Sendable {
    /// Stores a new command. A command with the same id is an error.
    func insert(_ command: Command) async throws
    /// Replaces the stored command with `command` (same id) only if its stored state is one of
    /// `states`; returns whether it did.
    func transition(_ command: Command, from states: Set<CommandState>) async throws -> Bool
    /// The command with this id, whatever its tenant (callers check tenant and device).
    func command(id: String) async throws -> Command?
    /// A device's commands, newest first (`createdAt`, then id), older than the cursor `before`.
    func commands(tenantID: String, deviceID: String, limit: Int, before: String?) async throws -> CommandPage
    /// A device's queued commands, oldest first.
    func queued(tenantID: String, deviceID: String) async throws -> [Command]
    /// The commands whose ``Command/dueAt`` is at or before `time` (expired queued commands,
    /// timed-out sent ones), earliest due first, at most `limit`.
    func due(at time: Date, limit: Int) async throws -> [Command]
}

/// The paging cursor of ``CommandStore/commands(tenantID:deviceID:limit:before:)``: the creation
/// time (ms) and id of the last command of a page, `1700000000000_abc`.
public enum CommandCursor {
    /// The cursor after `command`.
    public static func cursor(of command: Command) -> String {
        "\(Int64((command.createdAt.timeIntervalSince1970 * 1000).rounded()))_\(command.id)"
    }

    /// The creation time (ms) and id a cursor names; nil when it is not one.
    public static func parse(_ cursor: String) -> (milliseconds: Int64, id: String)? {
        guard let separator = cursor.firstIndex(of: "_"), let milliseconds = Int64(cursor[..<separator]) else { return nil }
        let id = String(cursor[cursor.index(after: separator)...])
        guard !id.isEmpty, !id.utf8.contains(0) else { return nil }
        return (milliseconds, id)
    }
}

/// Commands in memory (tests and the store-less server).
public actor InMemoryCommandStore: CommandStore {
    private var commands: [String: Command] = [:]

    public init() {}

    public func insert(_ command: Command) throws {
        guard commands[command.id] == nil else { throw CommandError.invalid("command \(command.id) exists", field: "id") }
        commands[command.id] = command
    }

    public func transition(_ command: Command, from states: Set<CommandState>) -> Bool {
        guard let stored = commands[command.id], states.contains(stored.state) else { return false }
        commands[command.id] = command
        return true
    }

    public func command(id: String) -> Command? { commands[id] }

    public func commands(tenantID: String, deviceID: String, limit: Int, before: String?) -> CommandPage {
        let bound = before.flatMap(CommandCursor.parse)
        let sorted = commands.values
            .filter { $0.tenantID == tenantID && $0.deviceID == deviceID }
            .map { (key: (Int64(($0.createdAt.timeIntervalSince1970 * 1000).rounded()), $0.id), command: $0) }
            .filter { entry in bound.map { entry.key < ($0.milliseconds, $0.id) } ?? true }
            .sorted { $0.key > $1.key }
        let page = Array(sorted.prefix(limit).map(\.command))
        return CommandPage(items: page, nextCursor: sorted.count > limit ? page.last.map(CommandCursor.cursor) : nil)
    }

    public func queued(tenantID: String, deviceID: String) -> [Command] {
        commands.values.filter { $0.tenantID == tenantID && $0.deviceID == deviceID && $0.state == .queued }
            .sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
    }

    public func due(at time: Date, limit: Int) -> [Command] {
        let due = commands.values.compactMap { command in command.dueAt.map { (at: $0, command: command) } }.filter { $0.at <= time }
        return Array(due.sorted { ($0.at, $0.command.id) < ($1.at, $1.command.id) }.prefix(limit).map(\.command))
    }
}

import Foundation
import GRDB
import MeridianCore

/// Webhook dead letters in the embedded SQLite database, `meridian.sqlite` (the registry's file;
/// migrations under component `webhooks` in `meridian_migrations`, apart from the registry's own).
public final class SQLiteWebhookDeadLetterStore: WebhookDeadLetterStore, Sendable {
    private let database: DatabaseQueue

    /// Why the store could not be opened.
    public struct OpenError: Error, CustomStringConvertible {
        public var description: String
    }

    static let migrations = SQLiteComponentMigrations(
        component: "webhooks",
        steps: [.init(identifier: "webhook-dead-letters-v1", sql: WebhookDeadLetterSchema.sqliteV1)]
    )

    /// Opens the dead letters in the database at `path` — normally the registry's, which the
    /// registry opened first (WAL) — creating their table if needed.
    ///
    /// - Throws: ``OpenError`` when the file is refused (corrupt, or dead letters from a newer
    ///   Meridian).
    public init(path: String) throws {
        do {
            // A dead letter is all that is left of a failed webhook: it must survive a crash.
            database = try Self.migrations.open(path: path, label: "meridian.webhooks", synchronous: "FULL")
        } catch let refusal as SQLiteFile.Refusal {
            throw OpenError(description: refusal.description)
        }
    }

    private init(database: DatabaseQueue) {
        self.database = database
    }

    /// A store in memory (tests): gone when released.
    public static func inMemory() throws -> SQLiteWebhookDeadLetterStore {
        let database = try DatabaseQueue()
        try migrations.migrate(database, path: ":memory:")
        return SQLiteWebhookDeadLetterStore(database: database)
    }

    private static let columns = """
        id, tenant_id, rule_id, device_id, firing_id, delivery_id, url, body, secret, timeout_ms, max_attempts, attempts, \
        last_error, last_status, first_attempt_at, last_attempt_at, created_at, replays
        """

    private static func arguments(_ deadLetter: WebhookDeadLetter) -> StatementArguments {
        let request = deadLetter.request
        return [
            deadLetter.id, request.tenantID, request.ruleID, request.deviceID, request.firingID, request.deliveryID, request.url,
            request.body, request.secret, request.timeoutMs, request.maxAttempts, deadLetter.attempts, deadLetter.lastError,
            deadLetter.lastStatus, WebhookDeadLetterColumns.milliseconds(deadLetter.firstAttemptAt),
            WebhookDeadLetterColumns.milliseconds(deadLetter.lastAttemptAt), WebhookDeadLetterColumns.milliseconds(deadLetter.createdAt),
            deadLetter.replays,
        ]
    }

    private static func deadLetter(_ row: Row) -> WebhookDeadLetter {
        WebhookDeadLetter(
            id: row["id"],
            request: WebhookRequest(
                url: row["url"], body: row["body"], secret: row["secret"], timeoutMs: row["timeout_ms"], maxAttempts: row["max_attempts"],
                tenantID: row["tenant_id"], ruleID: row["rule_id"], deviceID: row["device_id"], firingID: row["firing_id"],
                deliveryID: row["delivery_id"]
            ),
            attempts: row["attempts"], lastError: row["last_error"], lastStatus: row["last_status"],
            firstAttemptAt: WebhookDeadLetterColumns.date(row["first_attempt_at"]),
            lastAttemptAt: WebhookDeadLetterColumns.date(row["last_attempt_at"]),
            createdAt: WebhookDeadLetterColumns.date(row["created_at"]), replays: row["replays"]
        )
    }

    public func insert(_ deadLetter: WebhookDeadLetter) async throws {
        try deadLetter.checkStorable()
        let arguments = Self.arguments(deadLetter)
        try await database.write { db in
            try db.execute(
                sql: "INSERT INTO webhook_dead_letters (\(Self.columns)) VALUES (\(Array(repeating: "?", count: 18).joined(separator: ", ")))",
                arguments: arguments
            )
        }
    }

    public func update(_ deadLetter: WebhookDeadLetter) async throws -> Bool {
        try deadLetter.checkStorable()
        let request = deadLetter.request
        let arguments: StatementArguments = [
            request.ruleID, request.deviceID, request.firingID, request.deliveryID, request.url, request.body, request.secret,
            request.timeoutMs, request.maxAttempts, deadLetter.attempts, deadLetter.lastError, deadLetter.lastStatus,
            WebhookDeadLetterColumns.milliseconds(deadLetter.firstAttemptAt), WebhookDeadLetterColumns.milliseconds(deadLetter.lastAttemptAt),
            WebhookDeadLetterColumns.milliseconds(deadLetter.createdAt), deadLetter.replays, deadLetter.id, request.tenantID,
        ]
        return try await database.write { db in
            try db.execute(
                sql: """
                    UPDATE webhook_dead_letters SET rule_id = ?, device_id = ?, firing_id = ?, delivery_id = ?, url = ?, body = ?,
                    secret = ?, timeout_ms = ?, max_attempts = ?, attempts = ?, last_error = ?, last_status = ?, first_attempt_at = ?,
                    last_attempt_at = ?, created_at = ?, replays = ? WHERE id = ? AND tenant_id = ?
                    """,
                arguments: arguments
            )
            return db.changesCount > 0
        }
    }

    public func get(id: String, tenantID: String) async throws -> WebhookDeadLetter? {
        try await database.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM webhook_dead_letters WHERE id = ? AND tenant_id = ?", arguments: [id, tenantID])
                .map(Self.deadLetter)
        }
    }

    public func list(tenantID: String, ruleID: String?, limit: Int, cursor: String?) async throws -> WebhookDeadLetterPage {
        let bound = cursor.flatMap(WebhookDeadLetterCursor.parse)
        let limit = max(0, limit)
        var conditions = ["tenant_id = ?"]
        var arguments: StatementArguments = [tenantID]
        if let ruleID {
            conditions.append("rule_id = ?")
            arguments += [ruleID]
        }
        if let bound {
            conditions.append("(created_at, id) < (?, ?)")
            arguments += [bound.milliseconds, bound.id]
        }
        arguments += [limit + 1]
        let sql = """
            SELECT * FROM webhook_dead_letters WHERE \(conditions.joined(separator: " AND "))
            ORDER BY created_at DESC, id DESC LIMIT ?
            """
        // Rows are not Sendable: decoded inside, so that this is GRDB's asynchronous read.
        let deadLetters = try await database.read { [arguments] db in
            try Row.fetchAll(db, sql: sql, arguments: arguments).map(Self.deadLetter)
        }
        let page = Array(deadLetters.prefix(limit))
        return WebhookDeadLetterPage(items: page, nextCursor: deadLetters.count > limit ? page.last.map(WebhookDeadLetterCursor.cursor) : nil)
    }

    public func delete(id: String, tenantID: String) async throws -> Bool {
        try await database.write { db in
            try db.execute(sql: "DELETE FROM webhook_dead_letters WHERE id = ? AND tenant_id = ?", arguments: [id, tenantID])
            return db.changesCount > 0
        }
    }
}

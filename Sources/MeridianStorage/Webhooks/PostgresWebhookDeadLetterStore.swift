import Foundation
import MeridianCore
import PostgresNIO

/// Webhook dead letters in PostgreSQL (the registry's database; migration component `webhooks`):
/// the same behaviour as ``SQLiteWebhookDeadLetterStore``.
public final class PostgresWebhookDeadLetterStore: WebhookDeadLetterStore, Sendable {
    /// Why the store could not be opened.
    public struct OpenError: Error, CustomStringConvertible {
        public var description: String
    }

    public let database: PostgresDatabase
    /// The advisory lock dead-letter writers hold ("WEBHOOKS" in ASCII).
    static let writeLock: Int64 = 0x5745_4248_4F4F_4B53

    /// Opens the dead letters in `database` (whose pool must be running) and migrates them.
    public init(database: PostgresDatabase) async throws {
        self.database = database
        do {
            try await database.checkConnection()
            try await database.migrate(WebhookDeadLetterSchema.postgres)
        } catch let error as PostgresDatabase.DatabaseError {
            throw OpenError(description: error.description)
        }
    }

    private static func deadLetter(_ row: PostgresRandomAccessRow) throws -> WebhookDeadLetter {
        let lastStatus: Int32? = try row.optional("last_status")
        return WebhookDeadLetter(
            id: try row.value("id"),
            request: WebhookRequest(
                url: try row.value("url"), body: try row.value("body"), secret: try row.optional("secret"),
                timeoutMs: try row.value("timeout_ms", as: Int64.self), maxAttempts: Int(try row.value("max_attempts", as: Int32.self)),
                tenantID: try row.value("tenant_id"), ruleID: try row.optional("rule_id"), deviceID: try row.optional("device_id"),
                firingID: try row.optional("firing_id"), deliveryID: try row.value("delivery_id")
            ),
            attempts: Int(try row.value("attempts", as: Int32.self)), lastError: try row.value("last_error"),
            lastStatus: lastStatus.map(Int.init),
            firstAttemptAt: WebhookDeadLetterColumns.date(try row.value("first_attempt_at", as: Int64.self)),
            lastAttemptAt: WebhookDeadLetterColumns.date(try row.value("last_attempt_at", as: Int64.self)),
            createdAt: WebhookDeadLetterColumns.date(try row.value("created_at", as: Int64.self)),
            replays: Int(try row.value("replays", as: Int32.self))
        )
    }

    public func insert(_ deadLetter: WebhookDeadLetter) async throws {
        try deadLetter.checkStorable()
        let request = deadLetter.request
        let numbers = try Numbers(deadLetter)
        _ = try await database.transaction(.write(lock: Self.writeLock)) { session in
            try session.execute(
                """
                INSERT INTO webhook_dead_letters (id, tenant_id, rule_id, device_id, firing_id, delivery_id, url, body, secret,
                timeout_ms, max_attempts, attempts, last_error, last_status, first_attempt_at, last_attempt_at, created_at, replays)
                VALUES (\(deadLetter.id), \(request.tenantID), \(request.ruleID), \(request.deviceID), \(request.firingID),
                \(request.deliveryID), \(request.url), \(request.body), \(request.secret), \(request.timeoutMs), \(numbers.maxAttempts),
                \(numbers.attempts), \(deadLetter.lastError), \(numbers.lastStatus), \(numbers.firstAttemptAt), \(numbers.lastAttemptAt),
                \(numbers.createdAt), \(numbers.replays))
                """
            )
        }
    }

    public func update(_ deadLetter: WebhookDeadLetter) async throws -> Bool {
        try deadLetter.checkStorable()
        let request = deadLetter.request
        let numbers = try Numbers(deadLetter)
        return try await database.transaction(.write(lock: Self.writeLock)) { session in
            try session.execute(
                """
                UPDATE webhook_dead_letters SET rule_id = \(request.ruleID), device_id = \(request.deviceID),
                firing_id = \(request.firingID), delivery_id = \(request.deliveryID), url = \(request.url), body = \(request.body),
                secret = \(request.secret), timeout_ms = \(request.timeoutMs), max_attempts = \(numbers.maxAttempts),
                attempts = \(numbers.attempts), last_error = \(deadLetter.lastError), last_status = \(numbers.lastStatus),
                first_attempt_at = \(numbers.firstAttemptAt), last_attempt_at = \(numbers.lastAttemptAt),
                created_at = \(numbers.createdAt), replays = \(numbers.replays)
                WHERE id = \(deadLetter.id) AND tenant_id = \(request.tenantID)
                """
            ) > 0
        }
    }

    public func get(id: String, tenantID: String) async throws -> WebhookDeadLetter? {
        guard WebhookDeadLetterColumns.storable(id), WebhookDeadLetterColumns.storable(tenantID) else { return nil }
        return try await database.transaction(.read) { session in
            try session.row("SELECT * FROM webhook_dead_letters WHERE id = \(id) AND tenant_id = \(tenantID)").map(Self.deadLetter)
        }
    }

    public func list(tenantID: String, ruleID: String?, limit: Int, cursor: String?) async throws -> WebhookDeadLetterPage {
        guard WebhookDeadLetterColumns.storable(tenantID), WebhookDeadLetterColumns.storable(ruleID) else {
            return WebhookDeadLetterPage(items: [], nextCursor: nil)
        }
        let limit = max(0, limit)
        let bound = cursor.flatMap(WebhookDeadLetterCursor.parse)
        let fetch = Int64(limit + 1)
        // The bound of the first page is past every row: one statement for both cases.
        let before = bound?.milliseconds ?? Int64.max
        let beforeID = bound?.id ?? ""
        let deadLetters = try await database.transaction(.read) { session in
            if let ruleID {
                return try session.rows(
                    """
                    SELECT * FROM webhook_dead_letters WHERE tenant_id = \(tenantID) AND rule_id = \(ruleID)
                    AND (created_at < \(before) OR (created_at = \(before) AND id < \(beforeID)))
                    ORDER BY created_at DESC, id DESC LIMIT \(fetch)
                    """
                ).map(Self.deadLetter)
            }
            return try session.rows(
                """
                SELECT * FROM webhook_dead_letters WHERE tenant_id = \(tenantID)
                AND (created_at < \(before) OR (created_at = \(before) AND id < \(beforeID)))
                ORDER BY created_at DESC, id DESC LIMIT \(fetch)
                """
            ).map(Self.deadLetter)
        }
        let page = Array(deadLetters.prefix(limit))
        return WebhookDeadLetterPage(items: page, nextCursor: deadLetters.count > limit ? page.last.map(WebhookDeadLetterCursor.cursor) : nil)
    }

    public func delete(id: String, tenantID: String) async throws -> Bool {
        guard WebhookDeadLetterColumns.storable(id), WebhookDeadLetterColumns.storable(tenantID) else { return false }
        return try await database.transaction(.write(lock: Self.writeLock)) { session in
            try session.execute("DELETE FROM webhook_dead_letters WHERE id = \(id) AND tenant_id = \(tenantID)") > 0
        }
    }

    /// The integer columns in PostgreSQL's types (INTEGER is 32 bits).
    private struct Numbers: Sendable {
        var maxAttempts: Int32
        var attempts: Int32
        var lastStatus: Int32?
        var replays: Int32
        var firstAttemptAt: Int64
        var lastAttemptAt: Int64
        var createdAt: Int64

        init(_ deadLetter: WebhookDeadLetter) throws {
            guard let maxAttempts = Int32(exactly: deadLetter.request.maxAttempts) else {
                throw WebhookError.invalid("maxAttempts is out of range", field: "maxAttempts")
            }
            guard let attempts = Int32(exactly: deadLetter.attempts), let replays = Int32(exactly: deadLetter.replays) else {
                throw WebhookError.invalid("attempts or replays out of range", field: "attempts")
            }
            self.maxAttempts = maxAttempts
            self.attempts = attempts
            self.replays = replays
            lastStatus = deadLetter.lastStatus.flatMap { Int32(exactly: $0) }
            firstAttemptAt = WebhookDeadLetterColumns.milliseconds(deadLetter.firstAttemptAt)
            lastAttemptAt = WebhookDeadLetterColumns.milliseconds(deadLetter.lastAttemptAt)
            createdAt = WebhookDeadLetterColumns.milliseconds(deadLetter.createdAt)
        }
    }
}

import Foundation

/// A webhook that could not be delivered: its request (secret included, to sign a replay), how
/// many attempts were made, and how the last one failed. It stays in the tenant's dead-letter
/// list until it is replayed successfully or deleted.
public struct WebhookDeadLetter: Sendable, Hashable, Codable, Identifiable, CustomStringConvertible {
    /// `wdl_...`.
    public var id: String
    public var request: WebhookRequest
    /// Attempts made in all, replays included (0: never sent, the server stopped first).
    public var attempts: Int
    /// Why the last attempt failed: `HTTP 500`, `timed out after 5 s`, `connection refused`.
    public var lastError: String
    /// The HTTP status of the last attempt, when the endpoint answered.
    public var lastStatus: Int?
    /// When the first attempt was made (for one never sent: when it was given up).
    public var firstAttemptAt: Date
    /// When the last attempt was made (for one never sent: when it was given up).
    public var lastAttemptAt: Date
    /// When it was dead-lettered: the list's order (newest first).
    public var createdAt: Date
    /// How many times it was replayed without success.
    public var replays: Int

    /// A dead letter; `id` defaults to a new `wdl_...` id.
    public init(
        id: String = "wdl_" + MeridianID.generate(), request: WebhookRequest, attempts: Int, lastError: String, lastStatus: Int? = nil,
        firstAttemptAt: Date, lastAttemptAt: Date, createdAt: Date? = nil, replays: Int = 0
    ) {
        self.id = id
        self.request = request
        self.attempts = attempts
        self.lastError = lastError
        self.lastStatus = lastStatus
        self.firstAttemptAt = firstAttemptAt
        self.lastAttemptAt = lastAttemptAt
        self.createdAt = createdAt ?? lastAttemptAt
        self.replays = replays
    }

    public var description: String {
        "dead letter \(id) of \(request) after \(attempts) attempts: \(lastError)"
    }

    /// Refuses text no store can keep alike (PostgreSQL refuses NUL characters), so that every
    /// store takes the same dead letters.
    ///
    /// - Throws: ``WebhookError`` (invalid) naming the field.
    public func checkStorable() throws {
        let texts: [(String?, String)] = [
            (id, "id"), (request.tenantID, "tenantID"), (request.ruleID, "ruleID"), (request.deviceID, "deviceID"),
            (request.firingID, "firingID"), (request.deliveryID, "deliveryID"), (request.url, "url"), (request.body, "body"),
            (request.secret, "secret"), (lastError, "lastError"),
        ]
        for (text, field) in texts where text?.utf8.contains(0) == true {
            throw WebhookError.invalid("text may not contain NUL characters", field: field)
        }
    }
}

/// What became of a webhook: delivered (the endpoint answered 2xx), dead-lettered, or dropped
/// without being sent (the queue was full, or the server was stopping).
public enum WebhookOutcome: Sendable, Hashable {
    /// The endpoint answered `status` (2xx) at attempt `attempts`.
    case delivered(status: Int, attempts: Int)
    /// Every attempt failed (or the endpoint refused it); the dead letter is stored.
    case deadLettered(WebhookDeadLetter)
    /// Not sent and not kept: the reason (`queue full`).
    case dropped(reason: String)
}

/// One page of a tenant's dead letters, newest first.
public struct WebhookDeadLetterPage: Sendable, Hashable {
    public var items: [WebhookDeadLetter]
    /// The cursor of the next page; nil on the last.
    public var nextCursor: String?

    public init(items: [WebhookDeadLetter], nextCursor: String?) {
        self.items = items
        self.nextCursor = nextCursor
    }
}

/// The paging cursor of ``WebhookDeadLetterStore/list(tenantID:ruleID:limit:cursor:)``: the
/// creation time (ms) and id of the last dead letter of a page, `1700000000000_wdl_abc`.
public enum WebhookDeadLetterCursor {
    /// The cursor after `deadLetter`.
    public static func cursor(of deadLetter: WebhookDeadLetter) -> String {
        "\(milliseconds(deadLetter.createdAt))_\(deadLetter.id)"
    }

    /// The creation time (ms) and id a cursor names; nil when it is not one.
    public static func parse(_ cursor: String) -> (milliseconds: Int64, id: String)? {
        guard let separator = cursor.firstIndex(of: "_"), let milliseconds = Int64(cursor[..<separator]) else { return nil }
        let id = String(cursor[cursor.index(after: separator)...])
        guard !id.isEmpty, !id.utf8.contains(0) else { return nil }
        return (milliseconds, id)
    }

    /// Whole milliseconds since 1970, as the stores keep times.
    public static func milliseconds(_ date: Date) -> Int64 {
        Int64((date.timeIntervalSince1970 * 1000).rounded())
    }
}

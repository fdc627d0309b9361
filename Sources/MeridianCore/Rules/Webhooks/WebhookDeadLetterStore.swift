import Foundation

/// Where dead letters are kept (SQLite or PostgreSQL in MeridianStorage; one conformance suite
/// runs against them and ``InMemoryWebhookDeadLetterStore``). Every read and write is scoped to
/// a tenant: another tenant's dead letter is as good as missing.
public protocol WebhookDeadLetterStore: Sendable {
    /// Stores a new dead letter. One with the same id is an error.
    func insert(_ deadLetter: WebhookDeadLetter) async throws
    /// Replaces the stored dead letter with the same id and tenant (a failed replay); returns
    /// whether there was one.
    func update(_ deadLetter: WebhookDeadLetter) async throws -> Bool
    /// The tenant's dead letter with this id.
    func get(id: String, tenantID: String) async throws -> WebhookDeadLetter?
    /// The tenant's dead letters (only rule `ruleID`'s when given), newest first (``WebhookDeadLetter/createdAt``,
    /// then id), after the cursor of the previous page.
    func list(tenantID: String, ruleID: String?, limit: Int, cursor: String?) async throws -> WebhookDeadLetterPage
    /// Deletes the tenant's dead letter with this id; returns whether there was one.
    func delete(id: String, tenantID: String) async throws -> Bool
}

/// Dead letters in memory (tests, and a server without a registry).
public actor InMemoryWebhookDeadLetterStore: WebhookDeadLetterStore {
    private var deadLetters: [String: WebhookDeadLetter] = [:]

    public init() {}

    public func insert(_ deadLetter: WebhookDeadLetter) throws {
        try deadLetter.checkStorable()
        guard deadLetters[deadLetter.id] == nil else {
            throw WebhookError.invalid("dead letter \(deadLetter.id) exists", field: "id")
        }
        deadLetters[deadLetter.id] = deadLetter
    }

    public func update(_ deadLetter: WebhookDeadLetter) throws -> Bool {
        try deadLetter.checkStorable()
        guard let stored = deadLetters[deadLetter.id], stored.request.tenantID == deadLetter.request.tenantID else { return false }
        deadLetters[deadLetter.id] = deadLetter
        return true
    }

    public func get(id: String, tenantID: String) -> WebhookDeadLetter? {
        deadLetters[id].flatMap { $0.request.tenantID == tenantID ? $0 : nil }
    }

    public func list(tenantID: String, ruleID: String?, limit: Int, cursor: String?) -> WebhookDeadLetterPage {
        let bound = cursor.flatMap(WebhookDeadLetterCursor.parse)
        let sorted = deadLetters.values
            .filter { $0.request.tenantID == tenantID && (ruleID == nil || $0.request.ruleID == ruleID) }
            .map { (key: (WebhookDeadLetterCursor.milliseconds($0.createdAt), $0.id), deadLetter: $0) }
            .filter { entry in bound.map { entry.key < ($0.milliseconds, $0.id) } ?? true }
            .sorted { $0.key > $1.key }
        let page = Array(sorted.prefix(max(0, limit)).map(\.deadLetter))
        return WebhookDeadLetterPage(items: page, nextCursor: sorted.count > limit ? page.last.map(WebhookDeadLetterCursor.cursor) : nil)
    }

    public func delete(id: String, tenantID: String) -> Bool {
        guard get(id: id, tenantID: tenantID) != nil else { return false }
        deadLetters[id] = nil
        return true
    }
}

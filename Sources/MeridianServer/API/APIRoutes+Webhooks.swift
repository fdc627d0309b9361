import Foundation
import Hummingbird
import MeridianCore

// Webhook dead letters: list, read, replay, delete.
extension APIRoutes {
    static let webhookEndpoints: [APIEndpoint] = [
        APIEndpoint(.get, "/webhooks/dead-letters", .role(.viewer), listDeadLetters),
        APIEndpoint(.get, "/webhooks/dead-letters/{id}", .role(.viewer), getDeadLetter),
        APIEndpoint(.post, "/webhooks/dead-letters/{id}/replay", .role(.operator), replayDeadLetter),
        APIEndpoint(.delete, "/webhooks/dead-letters/{id}", .role(.operator), deleteDeadLetter),
    ]

    private static func webhookDispatcher(_ api: APIRequest) throws -> WebhookDispatcher {
        guard let webhooks = api.services.webhooks else {
            throw APIProblem(
                .serviceUnavailable, type: "webhooks-unavailable", title: "Webhooks unavailable",
                detail: "this server runs without a webhook dispatcher"
            )
        }
        return webhooks
    }

    /// `GET /webhooks/dead-letters?rule=&limit=&cursor=`: the tenant's dead letters, newest first.
    @Sendable static func listDeadLetters(_ api: APIRequest) async throws -> Response {
        let webhooks = try webhookDispatcher(api)
        let caller = try api.caller
        let limit = try api.integerQuery("limit", in: 1...1000, default: 100) ?? 100
        let cursor = api.query("cursor").flatMap { $0.isEmpty ? nil : $0 }
        if let cursor, WebhookDeadLetterCursor.parse(cursor) == nil {
            throw APIProblem.badRequest("cursor is not a cursor of this list (use nextCursor of the previous page)", field: "cursor")
        }
        let rule = api.query("rule").flatMap { $0.isEmpty ? nil : $0 }
        let page = try await webhooks.store.list(tenantID: caller.tenantID, ruleID: rule, limit: limit, cursor: cursor)
        return APIJSON.response(ListBody(page.items.map(DeadLetterBody.init), nextCursor: page.nextCursor))
    }

    @Sendable static func getDeadLetter(_ api: APIRequest) async throws -> Response {
        let webhooks = try webhookDispatcher(api)
        let caller = try api.caller
        let id = try api.parameter("id")
        guard let deadLetter = try await webhooks.store.get(id: id, tenantID: caller.tenantID) else {
            throw APIProblem(WebhookError.notFound("no dead letter \(id)"))
        }
        return APIJSON.response(DeadLetterBody(deadLetter))
    }

    /// `POST /webhooks/dead-letters/{id}/replay`: one new attempt; 200 with the outcome, whether
    /// it was delivered (the dead letter is gone) or failed again (it stays, updated).
    @Sendable static func replayDeadLetter(_ api: APIRequest) async throws -> Response {
        let webhooks = try webhookDispatcher(api)
        let caller = try api.caller
        let id = try api.parameter("id")
        do {
            return APIJSON.response(WebhookOutcomeBody(try await webhooks.replay(id: id, tenantID: caller.tenantID)))
        } catch let error as WebhookError {
            throw APIProblem(error)
        }
    }

    @Sendable static func deleteDeadLetter(_ api: APIRequest) async throws -> Response {
        let webhooks = try webhookDispatcher(api)
        let caller = try api.caller
        let id = try api.parameter("id")
        guard try await webhooks.store.delete(id: id, tenantID: caller.tenantID) else {
            throw APIProblem(WebhookError.notFound("no dead letter \(id)"))
        }
        return APIJSON.noContent()
    }
}

/// A dead letter as the API shows it: never its secret (`secretSet` says whether it has one);
/// the URL without a password. `body` is the JSON that was sent.
struct DeadLetterBody: Encodable {
    var id: String
    var ruleId: String?
    var deviceId: String?
    var firingId: String?
    var deliveryId: String
    var url: String
    var body: JSONValue
    var secretSet: Bool
    var timeoutMs: Int64
    var maxAttempts: Int
    var attempts: Int
    var lastError: String
    var lastStatus: Int?
    var firstAttemptAt: Date
    var lastAttemptAt: Date
    var createdAt: Date
    var replays: Int

    init(_ deadLetter: WebhookDeadLetter) {
        let request = deadLetter.request
        id = deadLetter.id
        ruleId = request.ruleID
        deviceId = request.deviceID
        firingId = request.firingID
        deliveryId = request.deliveryID
        url = Self.withoutPassword(request.url)
        body = (try? JSONDecoder().decode(JSONValue.self, from: Data(request.body.utf8))) ?? .string(request.body)
        secretSet = request.secret != nil
        timeoutMs = request.timeoutMs
        maxAttempts = request.maxAttempts
        attempts = deadLetter.attempts
        lastError = deadLetter.lastError
        lastStatus = deadLetter.lastStatus
        firstAttemptAt = deadLetter.firstAttemptAt
        lastAttemptAt = deadLetter.lastAttemptAt
        createdAt = deadLetter.createdAt
        replays = deadLetter.replays
    }

    /// `https://user:***@host/path` for a URL with a password.
    static func withoutPassword(_ url: String) -> String {
        guard var components = URLComponents(string: url), components.password != nil else { return url }
        components.password = "***"
        return components.string ?? url
    }
}

/// The answer of a replay: `{"status": "delivered", "attempts": 1, "httpStatus": 200}` or
/// `{"status": "deadLettered", "attempts": <all so far>, "httpStatus": 500, "error": "HTTP 500", "deadLetter": {...}}`.
struct WebhookOutcomeBody: Encodable {
    var status: String
    var attempts: Int?
    var httpStatus: Int?
    var error: String?
    var reason: String?
    var deadLetter: DeadLetterBody?

    init(_ outcome: WebhookOutcome) {
        switch outcome {
        case .delivered(let status, let attempts):
            self.status = "delivered"
            self.attempts = attempts
            httpStatus = status
        case .deadLettered(let deadLetter):
            status = "deadLettered"
            attempts = deadLetter.attempts
            httpStatus = deadLetter.lastStatus
            error = deadLetter.lastError
            self.deadLetter = DeadLetterBody(deadLetter)
        case .dropped(let reason):
            status = "dropped"
            self.reason = reason
        }
    }
}

extension APIProblem {
    /// The answer to a ``WebhookError``: invalid → 422 naming the field, notFound → 404,
    /// unavailable → 503.
    init(_ error: WebhookError) {
        switch error.code {
        case .invalid:
            self.init(.unprocessableContent, type: "invalid-value", title: "Invalid value", detail: error.message, field: error.field)
        case .notFound:
            self.init(.notFound, type: "not-found", title: "Not found", detail: error.message)
        default:
            self.init(.serviceUnavailable, type: "webhooks-unavailable", title: "Webhooks unavailable", detail: error.message)
        }
    }
}

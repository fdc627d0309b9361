import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import MeridianCore
import MeridianStorage
import NIOCore
import NIOHTTP1
import Testing

@testable import MeridianServer

/// The dead-letter endpoints: list, read, replay, delete; viewers read, operators write; a
/// tenant sees only its own; the secret is never shown.
@Suite("Webhook dead-letter API", .timeLimit(.minutes(2)))
struct WebhookAPITests {
    /// The API on a registry in a fresh SQLite file with a running dispatcher over `store`.
    private static func withAPI(
        store: InMemoryWebhookDeadLetterStore, _ body: @Sendable (APIHarness, String) async throws -> Void
    ) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-webhooks-api-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let registry = try APIHarness.makeRegistry(directory: directory)
        let bootstrap = try #require(try await registry.bootstrapIfEmpty(apiKey: APIHarness.adminKey))
        try await WebhookTesting.withDispatcher(store: store) { dispatcher in
            let services = APIServices(
                registry: registry, signer: await APITokenSigner(key: (0..<32).map { _ in UInt8.random(in: 0...255) }),
                webhooks: dispatcher, logger: WebhookTesting.logger
            )
            let router = Router(context: MeridianRequestContext.self)
            APIRoutes.add(to: router, services: services)
            let app = Application(router: router, logger: WebhookTesting.logger)
            try await app.test(.router) { client in
                try await body(APIHarness(client: client, registry: registry), bootstrap.tenant.id)
            }
        }
    }

    private static func deadLetter(_ url: String, tenant: String, rule: String = "r1", at offset: Double = 0) -> WebhookDeadLetter {
        let at = Date(timeIntervalSince1970: 1_800_000_000 + offset)
        return WebhookDeadLetter(
            request: WebhookRequest(
                url: url, body: #"{"device":"d1","temp":81.5}"#, secret: "whsec_never_shown", timeoutMs: 2000, maxAttempts: 3,
                tenantID: tenant, ruleID: rule, deviceID: "d1", firingID: "f1"
            ),
            attempts: 3, lastError: "HTTP 500", lastStatus: 500, firstAttemptAt: at, lastAttemptAt: at, createdAt: at
        )
    }

    @Test("list, get, filter and page dead letters; the secret never appears, secretSet does")
    func listAndGet() async throws {
        let store = InMemoryWebhookDeadLetterStore()
        try await Self.withAPI(store: store) { api, tenant in
            let first = Self.deadLetter("http://127.0.0.1:9/hook", tenant: tenant, at: 1)
            let second = Self.deadLetter("http://user:pw@127.0.0.1:9/hook", tenant: tenant, rule: "r2", at: 2)
            let third = Self.deadLetter("http://127.0.0.1:9/hook", tenant: tenant, at: 3)
            for deadLetter in [first, second, third] { try await store.insert(deadLetter) }
            try await store.insert(Self.deadLetter("http://127.0.0.1:9/hook", tenant: "someone-else"))

            let list = try await api.call(.get, "/webhooks/dead-letters")
            #expect(list.status == 200)
            #expect(list.items.compactMap { $0["id"] as? String } == [third.id, second.id, first.id])
            #expect(!list.text.contains("whsec_never_shown"))
            #expect(!list.text.contains(":pw@"))
            let item = try #require(list.items.first)
            #expect(item["secretSet"] as? Bool == true)
            #expect(item["lastError"] as? String == "HTTP 500")
            #expect(item["lastStatus"] as? Int == 500)
            #expect(item["attempts"] as? Int == 3)
            #expect(item["ruleId"] as? String == "r1")
            #expect(item["deliveryId"] as? String == third.request.deliveryID)
            #expect((item["body"] as? [String: Any])?["temp"] as? Double == 81.5)

            let filtered = try await api.call(.get, "/webhooks/dead-letters?rule=r1")
            #expect(filtered.items.compactMap { $0["id"] as? String } == [third.id, first.id])
            let page = try await api.expect(200, .get, "/webhooks/dead-letters?limit=2")
            let cursor = try #require(page["nextCursor"] as? String)
            let next = try await api.call(.get, "/webhooks/dead-letters?limit=2&cursor=\(cursor)")
            #expect(next.items.compactMap { $0["id"] as? String } == [first.id])

            let one = try await api.expect(200, .get, "/webhooks/dead-letters/\(second.id)")
            #expect(one["id"] as? String == second.id)
            #expect(one["url"] as? String == "http://user:***@127.0.0.1:9/hook")

            let bad = try await api.call(.get, "/webhooks/dead-letters?cursor=nonsense")
            #expect(bad.status == 400)
            #expect(bad.object["field"] as? String == "cursor")
            #expect(bad.contentType == "application/problem+json")
            #expect(try await api.call(.get, "/webhooks/dead-letters?limit=0").object["field"] as? String == "limit")
            let missing = try await api.call(.get, "/webhooks/dead-letters/wdl_missing")
            #expect(missing.status == 404)
            #expect(missing.contentType == "application/problem+json")
        }
    }

    @Test("viewers read but may not replay or delete; operators delete; another tenant sees nothing")
    func access() async throws {
        let store = InMemoryWebhookDeadLetterStore()
        try await Self.withAPI(store: store) { api, tenant in
            let deadLetter = Self.deadLetter("http://127.0.0.1:9/hook", tenant: tenant)
            try await store.insert(deadLetter)
            let viewer = try await api.apiKey(.viewer)
            let operatorKey = try await api.apiKey(.operator)
            #expect(try await api.call(.get, "/webhooks/dead-letters/\(deadLetter.id)", key: viewer.key).status == 200)
            #expect(try await api.call(.post, "/webhooks/dead-letters/\(deadLetter.id)/replay", key: viewer.key).status == 403)
            #expect(try await api.call(.delete, "/webhooks/dead-letters/\(deadLetter.id)", key: viewer.key).status == 403)

            let other = try await api.secondTenant()
            #expect(try await api.call(.get, "/webhooks/dead-letters/\(deadLetter.id)", key: other.ownerToken).status == 404)
            #expect(try await api.call(.get, "/webhooks/dead-letters", key: other.ownerToken).items.isEmpty)
            #expect(try await api.call(.post, "/webhooks/dead-letters/\(deadLetter.id)/replay", key: other.ownerToken).status == 404)
            #expect(try await api.call(.delete, "/webhooks/dead-letters/\(deadLetter.id)", key: other.ownerToken).status == 404)

            #expect(try await api.call(.delete, "/webhooks/dead-letters/\(deadLetter.id)", key: operatorKey.key).status == 204)
            #expect(try await api.call(.delete, "/webhooks/dead-letters/\(deadLetter.id)", key: operatorKey.key).status == 404)
            #expect(await store.get(id: deadLetter.id, tenantID: tenant) == nil)
        }
    }

    @Test("without a dispatcher the endpoints answer 503")
    func unavailable() async throws {
        try await APIHarness.with { api in
            let response = try await api.call(.get, "/webhooks/dead-letters")
            #expect(response.status == 503)
            #expect(response.contentType == "application/problem+json")
        }
    }

    @Test("through the real server: a dead letter in meridian.sqlite is listed, a failed replay updates it, a replay after the fix delivers it and removes it, delete removes another")
    func realServer() async throws {
        var configuration = ServerFixture.testConfiguration()
        let key = "mk_webhook_test_\(UUID().uuidString.prefix(8))"
        configuration.api.bootstrapAPIKey = key
        let serverConfiguration = configuration
        try await WebhookTestReceiver.with(answering: [500]) { receiver in
            try await ServerFixture.with(serverConfiguration) { server in
                let base = "http://127.0.0.1:\(server.httpPort)/api/v1"
                let me = try await Self.call(.GET, base + "/me", key: key)
                let tenant = try #require(me.json["tenant"] as? String)
                // Written to the server's own file, as its dispatcher would.
                let store = try SQLiteWebhookDeadLetterStore(path: server.dataDirectory + "/meridian.sqlite")
                let broken = Self.deadLetter(receiver.url, tenant: tenant, at: 1)
                let other = Self.deadLetter(receiver.url, tenant: tenant, at: 2)
                try await store.insert(broken)
                try await store.insert(other)

                let list = try await Self.call(.GET, base + "/webhooks/dead-letters", key: key)
                #expect(list.status == 200)
                #expect((list.json["items"] as? [[String: Any]])?.compactMap { $0["id"] as? String } == [other.id, broken.id])
                #expect(!list.text.contains("whsec_never_shown"))

                let failed = try await Self.call(.POST, base + "/webhooks/dead-letters/\(broken.id)/replay", key: key)
                #expect(failed.status == 200, "\(failed.text)")
                #expect(failed.json["status"] as? String == "deadLettered")
                #expect(failed.json["httpStatus"] as? Int == 500)
                #expect(failed.json["attempts"] as? Int == 4)
                #expect(try await store.get(id: broken.id, tenantID: tenant)?.replays == 1)

                receiver.answer(200)
                let replayed = try await Self.call(.POST, base + "/webhooks/dead-letters/\(broken.id)/replay", key: key)
                #expect(replayed.status == 200, "\(replayed.text)")
                #expect(replayed.json["status"] as? String == "delivered")
                #expect(replayed.json["attempts"] as? Int == 1)
                #expect(replayed.json["httpStatus"] as? Int == 200)
                let last = try #require(receiver.received.last)
                #expect(WebhookSignature.verify(header: last.header("X-Meridian-Signature") ?? "", body: last.body, secret: "whsec_never_shown"))
                #expect(try await Self.call(.GET, base + "/webhooks/dead-letters/\(broken.id)", key: key).status == 404)

                #expect(try await Self.call(.DELETE, base + "/webhooks/dead-letters/\(other.id)", key: key).status == 204)
                #expect(try await store.get(id: other.id, tenantID: tenant) == nil)
            }
        }
    }

    private struct Answer {
        var status: Int
        var text: String
        var json: [String: Any] { ((try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]) ?? [:] }
    }

    private static func call(_ method: NIOHTTP1.HTTPMethod, _ url: String, key: String) async throws -> Answer {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(key)")
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(20))
        let body = try await response.body.collect(upTo: 1 << 20)
        return Answer(status: Int(response.status.code), text: String(buffer: body))
    }
}

import Crypto
import Foundation
import MeridianCore
import NIOCore
import NIOPosix
import Testing

@testable import MeridianServer

/// Webhook delivery against real local HTTP endpoints: signatures, retries, dead letters,
/// replay, and a queue that never makes its caller wait.
@Suite("Webhook dispatcher", .timeLimit(.minutes(2)))
struct WebhookDispatcherTests {
    @Test("a signed webhook carries a signature an independent HMAC-SHA256 verifies, and the delivery headers")
    func signatureVerifies() async throws {
        try await WebhookTestReceiver.with { receiver in
            let outcomes = WebhookOutcomes()
            try await WebhookTesting.withDispatcher(outcomes: outcomes) { dispatcher in
                let request = WebhookTesting.request(receiver.url, secret: "whsec_independent")
                #expect(dispatcher.enqueue(request))
                let outcome = try await outcomes.outcome(of: request.deliveryID)
                #expect(outcome == .delivered(status: 200, attempts: 1))
                let received = try #require(receiver.received.first)
                #expect(received.body == request.body)
                #expect(received.header("Content-Type") == "application/json")
                #expect(received.header("User-Agent") == "Meridian")
                #expect(received.header("X-Meridian-Delivery") == request.deliveryID)
                let header = try #require(received.header("X-Meridian-Signature"))
                // t=<seconds>,v1=<hex>, computed here without Meridian's code.
                let parts = Dictionary(uniqueKeysWithValues: header.split(separator: ",").map { part in
                    let pair = part.split(separator: "=", maxSplits: 1)
                    return (String(pair[0]), String(pair.count > 1 ? pair[1] : ""))
                })
                let timestamp = try #require(parts["t"].flatMap { Int64($0) })
                #expect(abs(Double(timestamp) - Date().timeIntervalSince1970) < 60)
                let mac = HMAC<SHA256>.authenticationCode(
                    for: Data("\(timestamp).\(received.body)".utf8), using: SymmetricKey(data: Data("whsec_independent".utf8))
                )
                let hex = mac.map { String(format: "%02x", $0) }.joined()
                #expect(parts["v1"] == hex)
                // Meridian's verifier (the one receivers may copy) agrees, and refuses tampering.
                #expect(WebhookSignature.verify(header: header, body: received.body, secret: "whsec_independent"))
                #expect(!WebhookSignature.verify(header: header, body: received.body + " ", secret: "whsec_independent"))
                #expect(!WebhookSignature.verify(header: header, body: received.body, secret: "whsec_other"))
                // A captured request replayed an hour later is refused.
                #expect(!WebhookSignature.verify(header: header, body: received.body, secret: "whsec_independent", now: Date().addingTimeInterval(3600)))
            }
        }
    }

    @Test("an unsigned webhook has no signature header")
    func unsigned() async throws {
        try await WebhookTestReceiver.with { receiver in
            let outcomes = WebhookOutcomes()
            try await WebhookTesting.withDispatcher(outcomes: outcomes) { dispatcher in
                let request = WebhookTesting.request(receiver.url, secret: nil)
                #expect(dispatcher.enqueue(request))
                let outcome = try await outcomes.outcome(of: request.deliveryID)
                #expect(outcome.isDelivered)
                #expect(receiver.received.first?.header("X-Meridian-Signature") == nil)
            }
        }
    }

    @Test("an endpoint that answers 500 then 200 gets the webhook on the second attempt, same delivery id")
    func retriedThenDelivered() async throws {
        try await WebhookTestReceiver.with(answering: [500, 200]) { receiver in
            let outcomes = WebhookOutcomes()
            let store = InMemoryWebhookDeadLetterStore()
            try await WebhookTesting.withDispatcher(store: store, outcomes: outcomes) { dispatcher in
                let request = WebhookTesting.request(receiver.url, maxAttempts: 3)
                #expect(dispatcher.enqueue(request))
                let outcome = try await outcomes.outcome(of: request.deliveryID)
                #expect(outcome == .delivered(status: 200, attempts: 2))
                #expect(receiver.count == 2)
                #expect(Set(receiver.received.map { $0.header("X-Meridian-Delivery") }) == [request.deliveryID])
                #expect(await store.list(tenantID: "t1", ruleID: nil, limit: 10, cursor: nil).items.isEmpty)
            }
        }
    }

    @Test("408, 429 and 503 are retried too")
    func retryableStatuses() async throws {
        try await WebhookTestReceiver.with(answering: [408, 429, 503, 204]) { receiver in
            let outcomes = WebhookOutcomes()
            try await WebhookTesting.withDispatcher(outcomes: outcomes) { dispatcher in
                let request = WebhookTesting.request(receiver.url, maxAttempts: 4)
                #expect(dispatcher.enqueue(request))
                let outcome = try await outcomes.outcome(of: request.deliveryID)
                #expect(outcome == .delivered(status: 204, attempts: 4))
            }
        }
    }

    @Test("an endpoint that always answers 500 gets maxAttempts attempts, then the webhook is dead-lettered; a replay after the fix delivers it and removes the dead letter")
    func deadLetterThenReplay() async throws {
        try await WebhookTestReceiver.with(answering: [500]) { receiver in
            let outcomes = WebhookOutcomes()
            let store = InMemoryWebhookDeadLetterStore()
            try await WebhookTesting.withDispatcher(store: store, outcomes: outcomes) { dispatcher in
                let request = WebhookTesting.request(receiver.url, maxAttempts: 3)
                #expect(dispatcher.enqueue(request))
                guard case .deadLettered(let deadLetter) = try await outcomes.outcome(of: request.deliveryID) else {
                    Issue.record("not dead-lettered")
                    return
                }
                #expect(receiver.count == 3)
                #expect(deadLetter.attempts == 3)
                #expect(deadLetter.lastError == "HTTP 500")
                #expect(deadLetter.lastStatus == 500)
                #expect(deadLetter.replays == 0)
                #expect(deadLetter.id.hasPrefix("wdl_"))
                #expect(deadLetter.request == request)
                #expect(await store.get(id: deadLetter.id, tenantID: "t1") == deadLetter)
                #expect(dispatcher.pending == 0)

                // Still broken: the dead letter stays, one more attempt and one more replay.
                guard case .deadLettered(let again) = try await dispatcher.replay(id: deadLetter.id, tenantID: "t1") else {
                    Issue.record("a failed replay must stay dead-lettered")
                    return
                }
                #expect(again.attempts == 4 && again.replays == 1 && again.lastError == "HTTP 500")
                #expect(await store.get(id: deadLetter.id, tenantID: "t1") == again)

                // Fixed: delivered, re-signed, same delivery id; the dead letter is gone.
                receiver.answer(200)
                let replayed = try await dispatcher.replay(id: deadLetter.id, tenantID: "t1")
                #expect(replayed == .delivered(status: 200, attempts: 1))
                #expect(await store.get(id: deadLetter.id, tenantID: "t1") == nil)
                let last = try #require(receiver.received.last)
                #expect(last.header("X-Meridian-Delivery") == request.deliveryID)
                #expect(WebhookSignature.verify(header: last.header("X-Meridian-Signature") ?? "", body: last.body, secret: "whsec_test"))
                // Once delivered there is nothing left to replay.
                await #expect(throws: WebhookError.self) { _ = try await dispatcher.replay(id: deadLetter.id, tenantID: "t1") }
            }
        }
    }

    @Test("another tenant cannot replay a dead letter")
    func replayIsTenantScoped() async throws {
        let store = InMemoryWebhookDeadLetterStore()
        let deadLetter = WebhookDeadLetter(
            request: WebhookTesting.request("http://127.0.0.1:9/hook"), attempts: 1, lastError: "HTTP 500", firstAttemptAt: Date(),
            lastAttemptAt: Date()
        )
        try await store.insert(deadLetter)
        try await WebhookTesting.withDispatcher(store: store) { dispatcher in
            await #expect(throws: WebhookError.self) { _ = try await dispatcher.replay(id: deadLetter.id, tenantID: "t2") }
            #expect(await store.get(id: deadLetter.id, tenantID: "t1") == deadLetter)
        }
    }

    @Test("a 400 is not retried: the endpoint refused it, it is dead-lettered after one attempt")
    func clientErrorNotRetried() async throws {
        try await WebhookTestReceiver.with(answering: [400, 200]) { receiver in
            let outcomes = WebhookOutcomes()
            try await WebhookTesting.withDispatcher(outcomes: outcomes) { dispatcher in
                let request = WebhookTesting.request(receiver.url, maxAttempts: 5)
                #expect(dispatcher.enqueue(request))
                guard case .deadLettered(let deadLetter) = try await outcomes.outcome(of: request.deliveryID) else {
                    Issue.record("not dead-lettered")
                    return
                }
                #expect(deadLetter.attempts == 1 && deadLetter.lastError == "HTTP 400" && deadLetter.lastStatus == 400)
                #expect(receiver.count == 1)
            }
        }
    }

    @Test("a redirect is not followed: dead-lettered with its status")
    func redirectNotFollowed() async throws {
        try await WebhookTestReceiver.with(answering: [302]) { receiver in
            let outcomes = WebhookOutcomes()
            try await WebhookTesting.withDispatcher(outcomes: outcomes) { dispatcher in
                let request = WebhookTesting.request(receiver.url, maxAttempts: 3)
                #expect(dispatcher.enqueue(request))
                guard case .deadLettered(let deadLetter) = try await outcomes.outcome(of: request.deliveryID) else {
                    Issue.record("not dead-lettered")
                    return
                }
                #expect(deadLetter.lastStatus == 302 && deadLetter.attempts == 1)
                #expect(deadLetter.lastError.hasPrefix("HTTP 302"))
                #expect(receiver.count == 1)
            }
        }
    }

    @Test("a closed port is retried and dead-lettered as connection refused")
    func connectionRefused() async throws {
        // A port that was just free: bind, note, close.
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(channel.localAddress?.port)
        try await channel.close()
        let outcomes = WebhookOutcomes()
        try await WebhookTesting.withDispatcher(outcomes: outcomes) { dispatcher in
            let request = WebhookTesting.request("http://127.0.0.1:\(port)/hook", maxAttempts: 2)
            #expect(dispatcher.enqueue(request))
            guard case .deadLettered(let deadLetter) = try await outcomes.outcome(of: request.deliveryID) else {
                Issue.record("not dead-lettered")
                return
            }
            #expect(deadLetter.attempts == 2)
            #expect(deadLetter.lastError == "connection refused")
            #expect(deadLetter.lastStatus == nil)
        }
    }

    @Test("a hung endpoint does not slow enqueue: 1,000 requests are taken at once, time out, and none is lost at shutdown")
    func hungEndpoint() async throws {
        try await HungEndpoint.with { endpoint in
            let outcomes = WebhookOutcomes()
            let store = InMemoryWebhookDeadLetterStore()
            try await WebhookTesting.withDispatcher(store: store, workers: 8, outcomes: outcomes) { dispatcher in
                let requests = (0..<1000).map { _ in WebhookTesting.request(endpoint.url, maxAttempts: 2, timeoutMs: 200) }
                let started = ContinuousClock.now
                let accepted = requests.map { dispatcher.enqueue($0) }
                let elapsed = ContinuousClock.now - started
                #expect(accepted.allSatisfy { $0 })
                // Sending them one after another would take 1000 × 2 × 200 ms / 8 workers = 50 s.
                #expect(elapsed < .seconds(5), "enqueue took \(elapsed)")
                // The first ones time out, are retried, and end dead-lettered.
                try await WebhookTesting.eventually("a timed-out request to be dead-lettered") {
                    outcomes.all.contains { if case .deadLettered = $0.outcome { true } else { false } }
                }
                guard case .deadLettered(let first) = try #require(outcomes.all.first).outcome else { return }
                #expect(first.attempts == 2)
                #expect(first.lastError == "timed out after 0.2 s")
                #expect(first.lastStatus == nil)
            }
            // Shutdown dead-lettered everything not sent: every request has an outcome and a dead letter.
            #expect(outcomes.all.count == 1000)
            #expect(Set(outcomes.all.map(\.request.deliveryID)).count == 1000)
            let stored = await store.list(tenantID: "t1", ruleID: nil, limit: 2000, cursor: nil).items
            #expect(stored.count == 1000)
            #expect(stored.contains { $0.attempts == 0 && $0.lastError == "not sent: the server stopped first" })
        }
    }

    @Test("a full queue refuses at once; a stopped dispatcher refuses too")
    func fullQueue() async throws {
        try await HungEndpoint.with { endpoint in
            let store = InMemoryWebhookDeadLetterStore()
            let dispatcher = try await WebhookTesting.withDispatcher(store: store, workers: 1, capacity: 3) { dispatcher in
                for _ in 0..<3 { #expect(dispatcher.enqueue(WebhookTesting.request(endpoint.url, timeoutMs: 20_000))) }
                #expect(dispatcher.enqueue(WebhookTesting.request(endpoint.url)) == false)
                #expect(dispatcher.pending == 3)
                return dispatcher
            }
            #expect(dispatcher.enqueue(WebhookTesting.request(endpoint.url)) == false)
            // The three accepted ones are dead letters, not lost: one cancelled mid-attempt, two never sent.
            let stored = await store.list(tenantID: "t1", ruleID: nil, limit: 10, cursor: nil).items
            #expect(stored.count == 3)
            #expect(stored.filter { $0.attempts == 0 }.count >= 2)
        }
    }
}

/// The pure parts: URL checks, the retry policy, the signature format.
@Suite("Webhook model")
struct WebhookModelTests {
    @Test("only http and https URLs with a host are valid, and the error names the field url", arguments: [
        "ftp://example.com/x", "http://", "https:///path", "not a url", "", "example.com/hook", "http://exa mple.com",
        "javascript:alert(1)", "http://example.com/#frag", "http://example.com:99999/",
    ])
    func invalidURLs(_ url: String) throws {
        let error = try #require(throws: WebhookError.self) { try WebhookRequest.validateURL(url) }
        #expect(error.field == "url")
        #expect(error.code == .invalid)
    }

    @Test("good URLs validate", arguments: ["http://127.0.0.1:8080/hook", "https://hooks.example.com/in?x=1", "HTTPS://Example.com"])
    func validURLs(_ url: String) throws {
        try WebhookRequest.validateURL(url)
    }

    @Test("a request's other fields are checked, each error naming its field")
    func requestValidation() throws {
        var request = WebhookRequest(url: "https://example.com/hook", body: #"{"a":1}"#, secret: "s", tenantID: "t")
        try request.validate()
        request.timeoutMs = 0
        #expect(field(of: request) == "timeoutMs")
        request.timeoutMs = 1000
        request.maxAttempts = 0
        #expect((try? request.validate()) == nil)
        #expect(field(of: request) == "maxAttempts")
        request.maxAttempts = 2
        request.secret = ""
        #expect(field(of: request) == "secret")
        request.secret = nil
        request.body = "{not json"
        #expect(field(of: request) == "body")
    }

    private func field(of request: WebhookRequest) -> String? {
        do {
            try request.validate()
            return nil
        } catch let error as WebhookError {
            return error.field
        } catch {
            return nil
        }
    }

    @Test("a request's description never shows its secret, body or URL path")
    func redaction() {
        let request = WebhookRequest(
            url: "https://user:pw@hooks.example.com/T000/secret-path?token=abc", body: #"{"temp":1}"#, secret: "whsec_hidden",
            tenantID: "t1", ruleID: "r1"
        )
        let text = "\(request)"
        for secret in ["whsec_hidden", "secret-path", "token", "pw", "temp"] { #expect(!text.contains(secret), "\(text)") }
        #expect(text.contains("hooks.example.com"))
    }

    @Test("backoff grows 1, 2, 4 ... seconds up to 60, and each delay is drawn from zero to that bound")
    func retryPolicy() {
        let policy = WebhookRetryPolicy.standard
        let bounds = (1...9).map { policy.maximumDelay(afterAttempt: $0) }
        #expect(bounds == [.seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(16), .seconds(32), .seconds(60), .seconds(60), .seconds(60)])
        #expect(policy.maximumDelay(afterAttempt: 10_000) == .seconds(60))
        var generator = SystemRandomNumberGenerator()
        let delays = (0..<200).map { _ in policy.delay(afterAttempt: 3, using: &generator) }
        #expect(delays.allSatisfy { $0 >= .zero && $0 <= .seconds(4) })
        // Full jitter: spread over the range, not clustered at the bound.
        #expect(delays.contains { $0 < .seconds(2) } && delays.contains { $0 > .seconds(2) })
        #expect([408, 429, 500, 502, 503, 504].allSatisfy(WebhookRetryPolicy.isRetryable))
        #expect(![400, 401, 403, 404, 410, 422, 301, 302].contains(where: WebhookRetryPolicy.isRetryable))
    }

    @Test("the signature header is t=<seconds>,v1=<hex HMAC>, accepts a rotated second v1, refuses malformed headers")
    func signatureFormat() {
        let body = #"{"a":1}"#
        let header = WebhookSignature.sign(body: body, secret: "k", timestamp: 1_700_000_000)
        #expect(header.hasPrefix("t=1700000000,v1="))
        #expect(header.count == "t=1700000000,v1=".count + 64)
        let now = Date(timeIntervalSince1970: 1_700_000_100)
        #expect(WebhookSignature.verify(header: header, body: body, secret: "k", now: now))
        #expect(WebhookSignature.verify(header: header + ",v1=" + String(repeating: "0", count: 64), body: body, secret: "k", now: now))
        #expect(!WebhookSignature.verify(header: header, body: body, secret: "k", now: now, tolerance: 10))
        for bad in ["", "t=1700000000", "v1=abc", "t=x,v1=00", "garbage"] {
            #expect(!WebhookSignature.verify(header: bad, body: body, secret: "k", now: now))
        }
    }
}

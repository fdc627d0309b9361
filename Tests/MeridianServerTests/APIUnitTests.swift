import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import MeridianCore
import NIOCore
import Testing

@testable import MeridianServer

/// The REST API's parts that stand without the registry: problem+json answers, the JWT signer
/// and its key file, the login rate limiter, the router's answer to unknown routes, and the
/// OpenAPI document against the route table.
@Suite("REST API parts", .timeLimit(.minutes(1)))
struct APIUnitTests {
    // MARK: problem+json

    @Test(
        "registry errors map to the HTTP status a client relies on",
        arguments: [
            (RegistryError(.invalid, "bad name", field: "name"), 422),
            (RegistryError.notFound("device"), 404),
            (RegistryError.conflict("name", "taken"), 409),
            (RegistryError(.unauthenticated, "who?"), 401),
            (RegistryError(.forbidden, "no"), 403),
            (RegistryError(.limitExceeded, "slow down"), 429),
        ]
    )
    func registryErrorStatus(_ error: RegistryError, _ status: Int) throws {
        let problem = APIProblem(error)
        #expect(problem.status.code == status)
        #expect(problem.type.hasPrefix("urn:meridian:problem:"))
        #expect(problem.detail == error.message)
        #expect(problem.field == error.field)
        if status == 401 { #expect(problem.headers["WWW-Authenticate"]?.hasPrefix("Bearer") == true) }
        if status == 429 { #expect(Int(problem.headers["Retry-After"] ?? "") ?? 0 >= 1) }
    }

    @Test("an import's row errors are listed in errors with line, field and reason")
    func rowErrors() throws {
        let error = RegistryError(
            .invalid, "2 bad rows",
            rowErrors: [.init(line: 2, field: "name", reason: "empty"), .init(line: 5, field: "id", reason: "taken")]
        )
        let json = try problemJSON(APIProblem(error))
        #expect(json["status"] as? Int == 422)
        let errors = try #require(json["errors"] as? [[String: Any]])
        #expect(errors.count == 2)
        #expect(errors[0]["line"] as? Int == 2)
        #expect(errors[0]["field"] as? String == "name")
        #expect(errors[1]["reason"] as? String == "taken")
    }

    @Test(
        "a body that does not decode is a 400 naming the field",
        arguments: [
            (#"{"labels": {}}"#, "name"),
            (#"{"name": 5}"#, "name"),
            (#"{"name": "a", "labels": {"site": 1}}"#, "labels.site"),
            (#"{"name": "a", "labels": []}"#, "labels"),
            (#"{"name": null}"#, "name"),
        ]
    )
    func decodeErrorNamesField(_ body: String, _ field: String) throws {
        let error = try #require(throws: APIProblem.self) {
            try APIJSON.decode(CreateDeviceBody.self, from: Data(body.utf8))
        }
        #expect(error.status == .badRequest)
        #expect(error.field == field)
        #expect(error.detail.contains(field))
    }

    @Test("malformed JSON and an empty body are 400 problems")
    func malformedJSON() throws {
        for body in ["{", "", "[1,", "nope"] {
            let error = try #require(throws: APIProblem.self) {
                try APIJSON.decode(CreateDeviceBody.self, from: Data(body.utf8))
            }
            #expect(error.status == .badRequest)
        }
    }

    @Test("a credential request of an unknown type names the type field; a bad date names its field")
    func credentialRequestErrors() throws {
        let unknown = try #require(throws: APIProblem.self) {
            try APIJSON.decode(CreateCredentialBody.self, from: Data(#"{"type": "magic"}"#.utf8))
        }
        #expect(unknown.field == "type")
        let date = try #require(throws: APIProblem.self) {
            try APIJSON.decode(CreateAPIKeyBody.self, from: Data(#"{"name": "k", "role": "viewer", "expiresAt": "soon"}"#.utf8))
        }
        #expect(date.field == "expiresAt")
        let role = try #require(throws: APIProblem.self) {
            try APIJSON.decode(CreateAPIKeyBody.self, from: Data(#"{"name": "k", "role": "emperor"}"#.utf8))
        }
        #expect(role.field == "role")
        let password = try #require(throws: APIProblem.self) {
            try APIJSON.decode(CreateCredentialBody.self, from: Data(#"{"type": "password", "username": "u"}"#.utf8)).request()
        }
        #expect(password.field == "password")
        let both = try #require(throws: APIProblem.self) {
            try CertificateRequestBody(csr: "a", certificate: "b", validityDays: nil).request()
        }
        #expect(both.field == "certificate")
    }

    @Test("ISO-8601 dates with and without fractional seconds decode")
    func dates() throws {
        let plain = try APIJSON.decode(
            CreateAPIKeyBody.self, from: Data(#"{"name": "k", "role": "viewer", "expiresAt": "2030-01-31T12:00:00Z"}"#.utf8)
        )
        #expect(plain.expiresAt == Date(timeIntervalSince1970: 1_896_091_200))
        let fractional = try APIJSON.decode(
            CreateAPIKeyBody.self,
            from: Data(#"{"name": "k", "role": "viewer", "expiresAt": "2030-01-31T12:00:00.500+00:00"}"#.utf8)
        )
        #expect(fractional.expiresAt == Date(timeIntervalSince1970: 1_896_091_200.5))
    }

    @Test("listings never carry secrets: no token, password hash or private key")
    func credentialListingHasNoSecrets() throws {
        let credential = Credential(
            id: "c1", tenantID: "t", deviceID: "d", type: .password, createdAt: Date(timeIntervalSince1970: 0),
            tokenHash: "tokenhash", username: "user", passwordHash: "pbkdf2-secret"
        )
        let text = String(decoding: try APIJSON.makeEncoder().encode(CredentialBody(credential)), as: UTF8.self)
        #expect(!text.contains("tokenhash"))
        #expect(!text.contains("pbkdf2-secret"))
        #expect(text.contains(#""username":"user""#))
        #expect(text.contains(#""expiresAt":null"#))
        #expect(text.contains(#""createdAt":"1970-01-01T00:00:00Z""#))
    }

    // MARK: JWT

    @Test("an access token round-trips its user, tenant and role")
    func tokenRoundTrip() async throws {
        let signer = await APITokenSigner(key: Array(repeating: 7, count: 32))
        let token = try await signer.sign(userID: "u1", username: "ada", tenantID: "t1", role: .operator)
        #expect(APITokenSigner.looksLikeJWT(token))
        let claims = try #require(await signer.verify(token))
        #expect(claims.userID == "u1")
        #expect(claims.tenant == "t1")
        #expect(claims.role == .operator)
        #expect(claims.username == "ada")
        #expect(abs(claims.expiresAt.timeIntervalSinceNow - 15 * 60) < 60)
    }

    @Test("expired, tampered and foreign tokens are refused")
    func tokenRefusals() async throws {
        let signer = await APITokenSigner(key: Array(repeating: 7, count: 32))
        let other = await APITokenSigner(key: Array(repeating: 8, count: 32))
        let expired = try await signer.sign(userID: "u", username: "u", tenantID: "t", role: .owner, now: Date(timeIntervalSinceNow: -3600))
        #expect(await signer.verify(expired) == nil)
        let foreign = try await other.sign(userID: "u", username: "u", tenantID: "t", role: .owner)
        #expect(await signer.verify(foreign) == nil)
        let good = try await signer.sign(userID: "u", username: "u", tenantID: "t", role: .viewer)
        var parts = good.split(separator: ".").map(String.init)
        // Claim a higher role with the old signature.
        let forged = try APIJSON.makeEncoder().encode(
            ["sub": "u", "tenant": "t", "role": "owner", "username": "u"]
        ).base64EncodedString().replacingOccurrences(of: "=", with: "").replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
        parts[1] = forged
        #expect(await signer.verify(parts.joined(separator: ".")) == nil)
        #expect(await signer.verify("not.a.jwt") == nil)
        #expect(!APITokenSigner.looksLikeJWT("mk_0123456789abcdef"))
    }

    @Test("the signing key is made once, mode 0600, and read back on the next start")
    func signingKeyFile() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("api-key-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = (directory as NSString).appendingPathComponent("api-signing.key")
        let first = try APITokenSigner.loadOrCreateKey(at: path)
        #expect(first.count == 32)
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        #expect(try APITokenSigner.loadOrCreateKey(at: path) == first)
        let signer = try await APITokenSigner.load(dataDirectory: directory)
        let again = try await APITokenSigner.load(dataDirectory: directory)
        let token = try await signer.sign(userID: "u", username: "u", tenantID: "t", role: .admin)
        #expect(await again.verify(token) != nil)
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path))
        #expect(throws: MeridianStartupError.self) { try APITokenSigner.loadOrCreateKey(at: path) }
    }

    // MARK: Login rate limit

    @Test("10 failures in the window block the user name and the address; a success clears the user")
    func rateLimit() {
        let limiter = LoginRateLimiter(maximumFailures: 10, window: 300)
        let start = Date(timeIntervalSince1970: 1_000_000)
        for second in 0..<9 {
            limiter.recordFailure(username: "ada", address: "10.0.0.1", now: start + Double(second))
        }
        #expect(limiter.retryAfter(username: "ada", address: "10.0.0.1", now: start + 10) == nil)
        limiter.recordFailure(username: "ADA", address: "10.0.0.1", now: start + 10)
        let wait = limiter.retryAfter(username: "ada", address: "10.0.0.2", now: start + 11)
        #expect(wait == 289)  // the first failure leaves the window at start + 300
        #expect(limiter.retryAfter(username: "bob", address: "10.0.0.1", now: start + 11) != nil)
        #expect(limiter.retryAfter(username: "bob", address: "10.0.0.2", now: start + 11) == nil)
        limiter.recordSuccess(username: "ada")
        #expect(limiter.retryAfter(username: "ada", address: "10.0.0.2", now: start + 12) == nil)
        #expect(limiter.retryAfter(username: "ada", address: "10.0.0.1", now: start + 12) != nil)
        #expect(limiter.retryAfter(username: "bob", address: "10.0.0.1", now: start + 301) == nil)
    }

    @Test("the limiter tracks a bounded number of names and addresses")
    func rateLimitMemory() {
        let limiter = LoginRateLimiter(maximumFailures: 3, window: 300, capacity: 1000)
        let start = Date(timeIntervalSince1970: 1_000_000)
        for index in 0..<20_000 {
            limiter.recordFailure(username: "user\(index)", address: "10.\(index / 65536).\(index / 256 % 256).\(index % 256)", now: start + Double(index) / 1000)
        }
        #expect(limiter.trackedCount <= 1000)
        // The most recent ones are still limited after their third failure.
        for _ in 0..<3 { limiter.recordFailure(username: "last", address: nil, now: start + 30) }
        #expect(limiter.retryAfter(username: "last", address: nil, now: start + 31) != nil)
    }

    // MARK: Routing

    @Test("unknown routes and methods under /api are 404 problem+json; other paths keep their plain 404")
    func unknownRoutes() async throws {
        let router = Router(context: MeridianRequestContext.self)
        router.get("/healthz") { _, _ in "ok" }
        router.add(middleware: APIProblemMiddleware(logger: .init(label: "test")))
        router.get("/api/v1/known") { _, _ in "known" }
        let app = Application(router: router)
        try await app.test(.router) { client in
            for (method, path) in [(HTTPRequest.Method.get, "/api/v1/nothing"), (.delete, "/api/v1/known"), (.get, "/api")] {
                try await client.execute(uri: path, method: method) { response in
                    #expect(response.status == .notFound)
                    #expect(response.headers[.contentType] == "application/problem+json")
                    let json = try #require(try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any])
                    #expect(json["type"] as? String == "urn:meridian:problem:unknown-route")
                    #expect(json["status"] as? Int == 404)
                }
            }
            try await client.execute(uri: "/nothing", method: .get) { response in
                #expect(response.status == .notFound)
                #expect(response.headers[.contentType] != "application/problem+json")
            }
        }
    }

    @Test("the OpenAPI document describes exactly the routes the router serves")
    func openAPIMatchesRouteTable() throws {
        let routes = Set(APIRoutes.endpoints.map { "\($0.method.rawValue) \($0.path)" })
        #expect(routes.count == APIRoutes.endpoints.count, "a route is registered twice")
        let documented = OpenAPIDocument.operations
        #expect(documented.subtracting(routes).isEmpty, "documented but not served: \(documented.subtracting(routes).sorted())")
        #expect(routes.subtracting(documented).isEmpty, "served but not documented: \(routes.subtracting(documented).sorted())")
        // Every operation names its role, or that it needs no authentication.
        let json = try #require(try JSONSerialization.jsonObject(with: Data(OpenAPIDocument.json)) as? [String: Any])
        #expect(json["openapi"] as? String == "3.1.0")
        let paths = try #require(json["paths"] as? [String: [String: [String: Any]]])
        for endpoint in APIRoutes.endpoints {
            let operation = try #require(paths[endpoint.path]?[endpoint.method.rawValue.lowercased()])
            if let role = endpoint.access.minimumRole {
                #expect(operation["x-minimum-role"] as? String == role.rawValue, "\(endpoint.path)")
            } else {
                #expect((operation["security"] as? [Any])?.isEmpty == true, "\(endpoint.path)")
            }
            let parameters = (operation["parameters"] as? [[String: Any]]) ?? []
            let pathNames = parameters.filter { $0["in"] as? String == "path" }.compactMap { $0["name"] as? String }
            let expected = endpoint.path.split(separator: "/").filter { $0.hasPrefix("{") }.map { String($0.dropFirst().dropLast()) }
            #expect(pathNames == expected, "\(endpoint.path)")
        }
        // Every reference resolves.
        let text = String(decoding: OpenAPIDocument.json, as: UTF8.self)
        let schemas = try #require((json["components"] as? [String: Any])?["schemas"] as? [String: Any])
        for match in text.matches(of: /#\/components\/schemas\/([A-Za-z]+)/) {
            #expect(schemas[String(match.1)] != nil, "unresolved \(match.1)")
        }
    }

    @Test("the first-start notice names the user, the password and the dashboard URL")
    func firstStartNotice() throws {
        let result = BootstrapResult(
            tenant: Tenant(id: "t", name: "default", createdAt: Date()), adminUsername: "admin",
            adminPassword: "s3cret-pass", apiKeyID: nil
        )
        let notice = try #require(MeridianApplication.firstStartNotice(result, bind: "0.0.0.0", httpPort: 8080))
        #expect(notice.contains("admin"))
        #expect(notice.contains("s3cret-pass"))
        #expect(notice.contains("http://localhost:8080/"))
        let keyOnly = BootstrapResult(tenant: result.tenant, adminUsername: nil, adminPassword: nil, apiKeyID: "k")
        #expect(MeridianApplication.firstStartNotice(keyOnly, bind: "0.0.0.0", httpPort: 8080) == nil)
    }

    private func problemJSON(_ problem: APIProblem) throws -> [String: Any] {
        let data = try APIJSON.makeEncoder().encode(problem)
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }
}

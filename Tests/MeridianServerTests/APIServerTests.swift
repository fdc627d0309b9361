import Foundation
import MeridianServer
import Testing

/// The API as `meridian serve` wires it: the registry in the data directory, the bootstrap
/// key, the signing key file.
@Suite("REST API in the server", .timeLimit(.minutes(1)))
struct APIServerTests {
    @Test("with a bootstrap API key the server answers /api/v1 with it, refuses a wrong key, and keeps its state in the data dir")
    func bootstrapKey() async throws {
        var configuration = ServerFixture.testConfiguration()
        let key = "mk_server_test_key_\(UUID().uuidString.prefix(8))"
        configuration.api.bootstrapAPIKey = key
        try await ServerFixture.with(configuration) { server in
            let me = try await ServerHTTPClient.get(port: server.httpPort, path: "/api/v1/me", headers: [("Authorization", "Bearer \(key)")])
            #expect(me.status == 200, "\(me.body)")
            #expect(me.body.contains(#""kind":"api-key""#))
            let wrong = try await ServerHTTPClient.get(port: server.httpPort, path: "/api/v1/me", headers: [("Authorization", "Bearer mk_wrong")])
            #expect(wrong.status == 401)
            #expect(wrong.header("WWW-Authenticate")?.hasPrefix("Bearer") == true)
            let docs = try await server.get("/api/docs")
            #expect(docs.status == 200)
            let unknown = try await server.get("/api/v1/nothing-here")
            #expect(unknown.status == 404)
            #expect(unknown.header("Content-Type") == "application/problem+json")
            #expect(FileManager.default.fileExists(atPath: server.dataDirectory + "/meridian.sqlite"))
            let attributes = try FileManager.default.attributesOfItem(atPath: server.dataDirectory + "/api-signing.key")
            #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
            // The health endpoints keep their plain answers.
            #expect(try await server.get("/healthz").body == "ok\n")
        }
    }
}

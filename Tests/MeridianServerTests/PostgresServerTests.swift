import Foundation
import Logging
import MQTTClient
import MQTTCore
import MeridianServer
import MeridianStorage
import Testing

/// The platform with its registry in PostgreSQL (`database.url`), end to end.
///
/// PostgreSQL needs a server: `bash scripts/test` (and so CI) always starts a throwaway one
/// (scripts/postgres-test-server) and sets MERIDIAN_TEST_POSTGRES_URL; a bare `swift test`
/// without a server has nothing to run these against.
@Suite(
    "Server on PostgreSQL",
    .enabled(if: ServerPostgres.url != nil, "needs MERIDIAN_TEST_POSTGRES_URL (bash scripts/test sets it)")
)
struct PostgresServerTests {
    @Test("a device and its token created over the API survive a restart; the registry is not in the data directory")
    func restartKeepsRegistry() async throws {
        try await ServerPostgres.withFreshDatabase { url in
            let apiKey = "mk_pg_e2e_bootstrap_0123456789"
            let token = "pg-e2e-device-token-0123456789"
            var configuration = ServerFixture.testConfiguration()
            configuration.database.url = url
            configuration.api.bootstrapAPIKey = apiKey
            configuration.auth.allowAnonymous = false
            let auth = [("Authorization", "Bearer \(apiKey)")]

            try await ServerFixture.with(configuration) { server in
                let created = try await ServerPostgres.post(
                    port: server.httpPort,
                    path: "/api/v1/devices",
                    key: apiKey,
                    json: #"{"id": "pg-e2e-1", "name": "pump on postgres"}"#
                )
                #expect(created.hasPrefix("HTTP/1.1 201"), "\(created)")
                let credential = try await ServerPostgres.post(
                    port: server.httpPort,
                    path: "/api/v1/devices/pg-e2e-1/credentials",
                    key: apiKey,
                    json: #"{"type": "token", "token": "\#(token)"}"#
                )
                #expect(credential.hasPrefix("HTTP/1.1 201"), "\(credential)")
                #expect(
                    !FileManager.default.fileExists(
                        atPath: (server.dataDirectory as NSString).appendingPathComponent("meridian.sqlite")
                    )
                )
            }

            // A new data directory: whatever comes back must come from PostgreSQL.
            var restarted = ServerFixture.testConfiguration()
            restarted.database.url = url
            restarted.auth.allowAnonymous = false
            try await ServerFixture.with(restarted) { server in
                let device = try await ServerHTTPClient.get(
                    port: server.httpPort,
                    path: "/api/v1/devices/pg-e2e-1",
                    headers: auth
                )
                #expect(device.status == 200)
                #expect(device.body.contains("pump on postgres"))
                let listed = try await ServerHTTPClient.get(
                    port: server.httpPort,
                    path: "/api/v1/devices",
                    headers: auth
                )
                #expect(listed.body.contains("pg-e2e-1"))

                let deviceClient = server.client(configure: { $0.username = token })
                #expect(try await deviceClient.connect().reasonCode == .success)
                try await deviceClient.disconnect()
                let stranger = server.client(configure: { $0.username = "not-a-token-0123456789" })
                await #expect(throws: MQTTClientError.self) { try await stranger.connect() }
            }
        }
    }

    @Test("telemetry posted over HTTP is read back after a restart on an empty data directory: chunks, heads and latest values live in PostgreSQL")
    func restartKeepsTelemetry() async throws {
        try await ServerPostgres.withFreshDatabase { url in
            let apiKey = "mk_pg_ts_bootstrap_0123456789"
            let token = "pg-ts-device-token-0123456789"
            var configuration = ServerFixture.testConfiguration()
            configuration.database.url = url
            configuration.api.bootstrapAPIKey = apiKey
            configuration.auth.allowAnonymous = false
            configuration.telemetry.checkpointInterval = 1
            configuration.telemetry.chunkSamples = 64
            let auth = [("Authorization", "Bearer \(apiKey)")]
            let base: Int64 = 1_700_000_000_000
            let entries = (0..<150).map { i in
                #"{"ts": \#(base + Int64(i) * 1000), "values": {"temp": \#(Double(i) / 4 - 10), "on": \#(i % 2 == 0), "mode": "m\#(i % 3)"}}"#
            }

            try await ServerFixture.with(configuration) { server in
                _ = try await ServerPostgres.post(
                    port: server.httpPort, path: "/api/v1/devices", key: apiKey, json: #"{"id": "pg-ts-1", "name": "meter"}"#
                )
                let credential = try await ServerPostgres.post(
                    port: server.httpPort,
                    path: "/api/v1/devices/pg-ts-1/credentials",
                    key: apiKey,
                    json: #"{"type": "token", "token": "\#(token)"}"#
                )
                #expect(credential.hasPrefix("HTTP/1.1 201"), "\(credential)")
                // With the device's own token, as devices post: 100 samples per key (sealed into
                // a chunk), then 50 more (left in the head).
                for batch in [entries[0..<100], entries[100..<150]] {
                    let posted = try await ServerPostgres.post(
                        port: server.httpPort,
                        path: "/api/v1/devices/pg-ts-1/telemetry",
                        key: token,
                        json: "[" + batch.joined(separator: ",") + "]"
                    )
                    #expect(posted.hasPrefix("HTTP/1.1 200"), "\(posted)")
                    #expect(posted.contains(#""accepted":\#(batch.count * 3)"#), "\(posted)")
                }
                let telemetry = (server.dataDirectory as NSString).appendingPathComponent("telemetry")
                #expect(FileManager.default.fileExists(atPath: (telemetry as NSString).appendingPathComponent("telemetry-wal")))
                #expect(!FileManager.default.fileExists(atPath: (telemetry as NSString).appendingPathComponent("telemetry.sqlite")))
            }

            // A new, empty data directory (no WAL): what comes back must come from PostgreSQL,
            // where the checkpoints (and the last one, at the graceful stop) put it.
            var restarted = ServerFixture.testConfiguration()
            restarted.database.url = url
            restarted.auth.allowAnonymous = false
            try await ServerFixture.with(restarted) { server in
                let latest = try await ServerHTTPClient.get(port: server.httpPort, path: "/api/v1/devices/pg-ts-1/telemetry/latest", headers: auth)
                #expect(latest.status == 200, "\(latest.body)")
                let values = try #require(try JSONSerialization.jsonObject(with: Data(latest.body.utf8)) as? [String: [String: Any]])
                #expect(values["temp"]?["ts"] as? Int64 == base + 149_000)
                #expect(values["temp"]?["value"] as? Double == 149.0 / 4 - 10)
                #expect(values["on"]?["value"] as? Bool == false)
                #expect(values["mode"]?["value"] as? String == "m2")

                let range = try await ServerHTTPClient.get(
                    port: server.httpPort,
                    path: "/api/v1/devices/pg-ts-1/telemetry?keys=temp,mode&from=\(base)&to=\(base + 200_000)&limit=1000",
                    headers: auth
                )
                #expect(range.status == 200, "\(range.body)")
                let points = try #require(try JSONSerialization.jsonObject(with: Data(range.body.utf8)) as? [String: Any])
                let temps = try #require(points["temp"] as? [[String: Any]])
                #expect(temps.compactMap { $0["ts"] as? Int64 } == (0..<150).map { base + Int64($0) * 1000 })
                #expect(temps.compactMap { $0["value"] as? Double } == (0..<150).map { Double($0) / 4 - 10 })
                let modes = try #require(points["mode"] as? [[String: Any]])
                #expect(modes.compactMap { $0["value"] as? String } == (0..<150).map { "m\($0 % 3)" })

                let daily = try await ServerHTTPClient.get(
                    port: server.httpPort,
                    path: "/api/v1/devices/pg-ts-1/telemetry?keys=temp&from=\(base)&to=\(base + 200_000)&interval=1d&agg=count",
                    headers: auth
                )
                #expect(daily.status == 200, "\(daily.body)")
                let counts = try #require(try JSONSerialization.jsonObject(with: Data(daily.body.utf8)) as? [String: [[String: Any]]])
                #expect(counts["temp"]?.compactMap { $0["value"] as? Double }.reduce(0, +) == 150)
            }
        }
    }
}

/// Start-up against a PostgreSQL that is not there: needs no server, so it always runs.
@Suite("Server on PostgreSQL: start-up failures")
struct PostgresStartupTests {
    @Test("an unreachable database stops start-up with a message naming database.url, without the password")
    func unreachableDatabase() async throws {
        var configuration = ServerFixture.testConfiguration()
        // Port 1 on loopback: nothing listens there.
        configuration.database.url = "postgres://meridian:s3cret-pw@127.0.0.1:1/meridian?sslmode=disable"
        defer { try? FileManager.default.removeItem(atPath: configuration.dataDirectory) }
        var logger = Logger(label: "postgres-server-tests")
        logger.logLevel = .critical
        let application = MeridianApplication(configuration: configuration, logger: logger)
        let error = await #expect(throws: MeridianStartupError.self) {
            try await application.run(gracefulShutdownSignals: []) { _ in }
        }
        let message = error?.description ?? ""
        #expect(message.contains("database.url"), "\(message)")
        #expect(message.contains("127.0.0.1:1"), "\(message)")
        #expect(!message.contains("s3cret-pw"), "\(message)")
    }
}

/// The test PostgreSQL server, and a fresh database per test.
enum ServerPostgres {
    static let url: String? = ProcessInfo.processInfo.environment["MERIDIAN_TEST_POSTGRES_URL"].flatMap {
        $0.isEmpty ? nil : $0
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Runs `body` with the URL of a new, empty database, dropped afterwards.
    static func withFreshDatabase(_ body: (String) async throws -> Void) async throws {
        guard let url else { throw Failure(description: "MERIDIAN_TEST_POSTGRES_URL is not set") }
        var logger = Logger(label: "postgres-server-tests")
        logger.logLevel = .critical
        var configuration = try PostgresConfiguration(url: url)
        configuration.maximumConnections = 1
        let admin = PostgresDatabase(configuration: configuration, logger: logger)
        let name = "meridian_e2e_" + UUID().uuidString.lowercased().filter { $0.isLetter || $0.isNumber }
        try await admin.withRunning { admin in
            try await admin.unsafeExecute(sql: "CREATE DATABASE \(name) ENCODING 'UTF8' TEMPLATE template0")
            let result: Result<Void, any Error>
            do {
                var components = try #require(URLComponents(string: url))
                components.path = "/" + name
                result = .success(try await body(try #require(components.string)))
            } catch {
                result = .failure(error)
            }
            try? await admin.unsafeExecute(sql: "DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
            try result.get()
        }
    }

    /// `POST path` with a JSON body and an API key; the raw response (status line first).
    static func post(port: Int, path: String, key: String, json: String) async throws -> String {
        let request = [
            "POST \(path) HTTP/1.1", "Host: 127.0.0.1:\(port)", "Authorization: Bearer \(key)",
            "Content-Type: application/json",
            "Content-Length: \(json.utf8.count)", "Connection: close", "", json,
        ].joined(separator: "\r\n")
        return try await ServerHTTPClient.send(port: port, request)
    }
}

import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import MeridianCore
import MeridianStorage
import NIOCore
import Synchronization
import Testing

@testable import MeridianServer

/// The API harness with a twin service on the same SQLite file and a clock the test moves.
struct TwinAPIHarness: Sendable {
    let api: APIHarness
    let twins: TwinService
    let clockBox: Clock

    static func with(
        limits: TwinService.Limits = .init(),
        _ body: @Sendable (TwinAPIHarness) async throws -> Void
    ) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "meridian-twin-api-\(UUID().uuidString)"
        ).path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let registry = try APIHarness.makeRegistry(directory: directory)
        _ = try await registry.bootstrapIfEmpty(apiKey: APIHarness.adminKey)
        var logger = Logger(label: "twin-api-tests")
        logger.logLevel = .critical
        let clock = Clock()
        let twins = TwinService(
            store: try SQLiteTwinStore(path: (directory as NSString).appendingPathComponent("meridian.sqlite")),
            limits: limits,
            now: { clock.now }
        )
        let services = APIServices(
            registry: registry,
            signer: await APITokenSigner(key: (0..<32).map { _ in UInt8.random(in: 0...255) }),
            twins: twins,
            logger: logger
        )
        let router = Router(context: MeridianRequestContext.self)
        APIRoutes.add(to: router, services: services)
        let app = Application(router: router, logger: logger)
        try await app.test(.router) { client in
            try await body(
                TwinAPIHarness(api: APIHarness(client: client, registry: registry), twins: twins, clockBox: clock)
            )
        }
    }

    final class Clock: Sendable {
        private let value = Mutex<Int64>(1_800_000_000_000)
        var now: Int64 { value.withLock { $0 } }
        func advance(_ milliseconds: Int64) { value.withLock { $0 += milliseconds } }
    }

    /// Calls the API with extra headers.
    func call(
        _ method: HTTPRequest.Method,
        _ path: String,
        key: String = APIHarness.adminKey,
        json: String? = nil,
        ifMatch: String? = nil
    ) async throws -> APIResponse {
        var headers: HTTPFields = [.authorization: "Bearer \(key)"]
        if json != nil { headers[.contentType] = "application/json" }
        if let ifMatch { headers[.ifMatch] = ifMatch }
        let response = try await api.client.executeRequest(
            uri: APIRoutes.prefix + path,
            method: method,
            headers: headers,
            body: json.map { ByteBuffer(string: $0) }
        )
        return APIResponse(
            status: Int(response.status.code),
            headers: response.headers,
            data: Data(response.body.readableBytesView)
        )
    }
}

@Suite("Twin REST API")
struct TwinAPITests {
    @Test("GET → desired, reported, delta, version, metadata with an ETag; PATCH merges desired")
    func contract() async throws {
        try await TwinAPIHarness.with { harness in
            let id = try await harness.api.device()
            var response = try await harness.call(.get, "/devices/\(id)/twin")
            #expect(response.status == 200 && response.headers[.eTag] == "\"0\"")
            #expect(response.object["version"] as? Int == 0)
            for member in ["desired", "reported", "delta", "metadata"] {
                #expect(response.object[member] is [String: Any], "\(member)")
            }

            response = try await harness.call(
                .patch,
                "/devices/\(id)/twin",
                json: #"{"desired": {"fan": {"speed": 3}, "led": "on"}}"#
            )
            #expect(response.status == 200, "\(response.text)")
            #expect(response.headers[.eTag] == "\"1\"")
            #expect(response.object["version"] as? Int == 1)
            #expect((response.object["delta"] as? [String: Any])?["led"] as? String == "on")
            let metadata = response.object["metadata"] as? [String: Any]
            let led = (metadata?["desired"] as? [String: Any])?["led"] as? [String: Any]
            #expect(led?["timestamp"] as? Int == 1_800_000_000_000)

            // The device reports; the delta shrinks.
            let key = TwinKey(tenantID: try #require(try await harness.tenantID()), deviceID: id)
            try await harness.twins.update(
                key,
                reported: .object(["led": .string("on")]),
                actor: AuditActor(kind: .device, id: id)
            )
            response = try await harness.call(.get, "/devices/\(id)/twin")
            #expect(response.object["version"] as? Int == 2)
            #expect((response.object["delta"] as? [String: Any])?.keys.sorted() == ["fan"])
            #expect((response.object["reported"] as? [String: Any])?["led"] as? String == "on")

            // null deletes; arrays are replaced whole.
            response = try await harness.call(
                .patch,
                "/devices/\(id)/twin",
                json: #"{"desired": {"fan": null, "list": [1, 2]}}"#
            )
            response = try await harness.call(.patch, "/devices/\(id)/twin", json: #"{"desired": {"list": [3]}}"#)
            #expect((response.object["desired"] as? [String: Any])?["fan"] == nil)
            #expect((response.object["desired"] as? [String: Any])?["list"] as? [Int] == [3])
        }
    }

    @Test("If-Match with a stale version is 409 naming If-Match; with the current one it is applied")
    func ifMatch() async throws {
        try await TwinAPIHarness.with { harness in
            let id = try await harness.api.device()
            var response = try await harness.call(
                .patch,
                "/devices/\(id)/twin",
                json: #"{"desired": {"a": 1}}"#,
                ifMatch: "\"0\""
            )
            #expect(response.status == 200)
            response = try await harness.call(
                .patch,
                "/devices/\(id)/twin",
                json: #"{"desired": {"a": 2}}"#,
                ifMatch: "\"0\""
            )
            #expect(response.status == 409)
            #expect(response.contentType == "application/problem+json")
            #expect(response.object["type"] as? String == "urn:meridian:problem:version-conflict")
            #expect(response.object["field"] as? String == "If-Match")
            response = try await harness.call(
                .patch,
                "/devices/\(id)/twin",
                json: #"{"desired": {"a": 2}}"#,
                ifMatch: "1"
            )
            #expect(response.status == 200 && response.object["version"] as? Int == 2)
            response = try await harness.call(
                .patch,
                "/devices/\(id)/twin",
                json: #"{"desired": {"a": 3}}"#,
                ifMatch: "soon"
            )
            #expect(response.status == 400 && response.object["field"] as? String == "If-Match")
            response = try await harness.call(.delete, "/devices/\(id)/twin", ifMatch: "\"1\"")
            #expect(response.status == 409)
        }
    }

    @Test("bad bodies are 400/413 problems naming the field")
    func problems() async throws {
        try await TwinAPIHarness.with(limits: .init(maximumDepth: 3, maximumDocumentBytes: 1024)) { harness in
            let id = try await harness.api.device()
            let cases: [(String, Int, String?)] = [
                (#"{"reported": {"a": 1}}"#, 400, "reported"),
                (#"{"desired": [1]}"#, 400, "desired"),
                (#"{"desired": {"a": 1}, "extra": 1}"#, 400, "extra"),
                (#"{}"#, 400, "desired"),
                (#"{"desired": {"a": {"b": {"c": {"d": 1}}}}}"#, 400, "desired.a.b.c"),
                (#"{"desired": {"big": "\#(String(repeating: "x", count: 2000))"}}"#, 413, "desired"),
                (#"not json"#, 400, nil),
            ]
            for (body, status, field) in cases {
                let response = try await harness.call(.patch, "/devices/\(id)/twin", json: body)
                #expect(response.status == status, "\(body.prefix(60)): \(response.text)")
                #expect(response.contentType == "application/problem+json")
                #expect(response.object["field"] as? String == field, "\(body.prefix(60))")
            }
            #expect(try await harness.call(.get, "/devices/\(id)/twin").object["version"] as? Int == 0)
            let missing = try await harness.call(.get, "/devices/no-such-device/twin")
            #expect(missing.status == 404)
            let badTime = try await harness.call(.get, "/devices/\(id)/twin?at=yesterday")
            #expect(badTime.status == 400 && badTime.object["field"] as? String == "at")
        }
    }

    @Test("?at= returns the twin as it was between versions; history lists who changed what, paged")
    func historyAndAt() async throws {
        try await TwinAPIHarness.with { harness in
            let id = try await harness.api.device()
            let start = harness.clockBox.now
            try await harness.call(.patch, "/devices/\(id)/twin", json: #"{"desired": {"v": 1}}"#)
            harness.clockBox.advance(1000)
            try await harness.call(.patch, "/devices/\(id)/twin", json: #"{"desired": {"v": 2}}"#)
            harness.clockBox.advance(1000)
            try await harness.call(.patch, "/devices/\(id)/twin", json: #"{"desired": {"v": 3}}"#)

            var response = try await harness.call(.get, "/devices/\(id)/twin?at=\(start + 1500)")
            #expect(response.status == 200 && response.object["version"] as? Int == 2)
            #expect((response.object["desired"] as? [String: Any])?["v"] as? Int == 2)
            let rfc3339 = Date(timeIntervalSince1970: Double(start + 500) / 1000).formatted(.iso8601)
            response = try await harness.call(.get, "/devices/\(id)/twin?at=\(rfc3339)")
            #expect(response.object["version"] as? Int == 1, "\(rfc3339): \(response.text)")
            response = try await harness.call(.get, "/devices/\(id)/twin?at=\(start - 1)")
            #expect(response.status == 404 && response.object["field"] as? String == "at")

            response = try await harness.call(.get, "/devices/\(id)/twin/history?limit=2")
            #expect(response.items.map { $0["version"] as? Int } == [3, 2])
            #expect((response.items.first?["actor"] as? [String: Any])?["kind"] as? String == "api-key")
            #expect(
                ((response.items.first?["patch"] as? [String: Any])?["desired"] as? [String: Any])?["v"] as? Int == 3
            )
            let cursor = try #require(response.object["nextCursor"] as? String)
            response = try await harness.call(.get, "/devices/\(id)/twin/history?limit=2&cursor=\(cursor)")
            #expect(response.items.map { $0["version"] as? Int } == [1])
            #expect(response.object["nextCursor"] is NSNull)
        }
    }

    @Test("DELETE empties the twin and keeps its version; named twins are 404 until written")
    func deleteAndNamed() async throws {
        try await TwinAPIHarness.with { harness in
            let id = try await harness.api.device()
            try await harness.call(.patch, "/devices/\(id)/twin", json: #"{"desired": {"a": 1}}"#)
            try await harness.call(.patch, "/devices/\(id)/twin", json: #"{"desired": {"a": 2}}"#)
            var response = try await harness.call(.delete, "/devices/\(id)/twin")
            #expect(response.status == 204 && response.headers[.eTag] == "\"2\"")
            response = try await harness.call(.get, "/devices/\(id)/twin")
            #expect(
                response.object["version"] as? Int == 2
                    && (response.object["desired"] as? [String: Any])?.isEmpty == true
            )
            response = try await harness.call(.delete, "/devices/\(id)/twin")
            #expect(response.status == 404)
            response = try await harness.call(.patch, "/devices/\(id)/twin", json: #"{"desired": {"b": 1}}"#)
            #expect(response.object["version"] as? Int == 3)

            response = try await harness.call(.get, "/devices/\(id)/twins/config")
            #expect(response.status == 404)
            response = try await harness.call(.patch, "/devices/\(id)/twins/config", json: #"{"desired": {"rate": 5}}"#)
            #expect(response.status == 200 && response.object["version"] as? Int == 1)
            response = try await harness.call(.get, "/devices/\(id)/twins")
            #expect(response.object["items"] as? [String] == ["", "config"])
            response = try await harness.call(.get, "/devices/\(id)/twins/bad%2Fname")
            #expect(response.status == 400 && response.object["field"] as? String == "name")
            response = try await harness.call(.get, "/devices/\(id)/twins/config/history")
            #expect(response.items.count == 1)
        }
    }

    @Test("viewers read twins, only operators and above change them; other tenants' devices are 404")
    func roles() async throws {
        try await TwinAPIHarness.with { harness in
            let id = try await harness.api.device()
            let viewer = try await harness.api.apiKey(.viewer).key
            let operatorKey = try await harness.api.apiKey(.operator).key
            #expect(try await harness.call(.get, "/devices/\(id)/twin", key: viewer).status == 200)
            #expect(try await harness.call(.get, "/devices/\(id)/twin/history", key: viewer).status == 200)
            #expect(
                try await harness.call(.patch, "/devices/\(id)/twin", key: viewer, json: #"{"desired": {"a": 1}}"#)
                    .status == 403
            )
            #expect(try await harness.call(.delete, "/devices/\(id)/twin", key: viewer).status == 403)
            #expect(
                try await harness.call(.patch, "/devices/\(id)/twin", key: operatorKey, json: #"{"desired": {"a": 1}}"#)
                    .status == 200
            )
            let (ownerToken, _, _) = try await harness.api.secondTenant()
            #expect(try await harness.call(.get, "/devices/\(id)/twin", key: ownerToken).status == 404)
            #expect(
                try await harness.call(.patch, "/devices/\(id)/twin", key: ownerToken, json: #"{"desired": {"a": 2}}"#)
                    .status == 404
            )
        }
    }
}

extension TwinAPIHarness {
    /// The bootstrap tenant's id.
    func tenantID() async throws -> String? {
        try await call(.get, "/me").object["tenant"] as? String
    }
}

import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import MeridianCore
import MeridianStorage
import NIOCore
import Testing

@testable import MeridianServer

/// A registry on a fresh SQLite file, bootstrapped with ``APIHarness/adminKey``, behind the
/// API's router (Hummingbird's router test framework: no sockets).
struct APIHarness: Sendable {
    static let adminKey = "mk_test_bootstrap_admin_0123456789"

    let client: any TestClientProtocol
    let registry: Registry

    /// The registry store, in one place so that it follows MeridianStorage.
    static func makeRegistry(directory: String) throws -> Registry {
        let path = (directory as NSString).appendingPathComponent("meridian.sqlite")
        return Registry(store: try SQLiteRegistryStore(path: path))
    }

    static func with<T: Sendable>(
        loginLimiter: LoginRateLimiter = LoginRateLimiter(),
        _ body: @Sendable (APIHarness) async throws -> T
    ) async throws -> T {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-api-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let registry = try makeRegistry(directory: directory)
        _ = try await registry.bootstrapIfEmpty(apiKey: adminKey)
        var logger = Logger(label: "api-tests")
        logger.logLevel = .critical
        let services = APIServices(
            registry: registry,
            signer: await APITokenSigner(key: (0..<32).map { _ in UInt8.random(in: 0...255) }),
            loginLimiter: loginLimiter,
            logger: logger
        )
        let router = Router(context: MeridianRequestContext.self)
        APIRoutes.add(to: router, services: services)
        let app = Application(router: router, logger: logger)
        return try await app.test(.router) { client in
            try await body(APIHarness(client: client, registry: registry))
        }
    }

    /// Calls the API; `json` is sent as application/json.
    @discardableResult
    func call(
        _ method: HTTPRequest.Method, _ path: String, key: String? = adminKey, json: String? = nil,
        body: String? = nil, contentType: String? = nil
    ) async throws -> APIResponse {
        var headers: HTTPFields = [:]
        if let key { headers[.authorization] = "Bearer \(key)" }
        var buffer: ByteBuffer?
        if let json {
            headers[.contentType] = "application/json"
            buffer = ByteBuffer(string: json)
        } else if let body {
            headers[.contentType] = contentType ?? "application/octet-stream"
            buffer = ByteBuffer(string: body)
        }
        let uri = path.hasPrefix("/api/") ? path : APIRoutes.prefix + path
        let response = try await client.executeRequest(uri: uri, method: method, headers: headers, body: buffer)
        return APIResponse(status: Int(response.status.code), headers: response.headers, data: Data(response.body.readableBytesView))
    }

    /// Calls the API and requires `status`; returns the JSON object.
    @discardableResult
    func expect(
        _ status: Int, _ method: HTTPRequest.Method, _ path: String, key: String? = adminKey, json: String? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> [String: Any] {
        let response = try await call(method, path, key: key, json: json)
        #expect(response.status == status, "\(method) \(path): \(response.text)", sourceLocation: sourceLocation)
        return response.object
    }

    /// A new device in the key's tenant.
    func device(key: String = adminKey, name: String = "dev-\(UUID().uuidString.prefix(8))", labels: [String: String] = [:]) async throws -> String {
        let labelJSON = try String(decoding: JSONSerialization.data(withJSONObject: labels), as: UTF8.self)
        let created = try await expect(201, .post, "/devices", key: key, json: #"{"name": "\#(name)", "labels": \#(labelJSON)}"#)
        return try #require(created["id"] as? String)
    }

    /// A new API key of `role` in the tenant of `key`.
    func apiKey(_ role: Role, key: String = adminKey) async throws -> (id: String, key: String) {
        let created = try await expect(201, .post, "/api-keys", key: key, json: #"{"name": "\#(role.rawValue)-\#(UUID().uuidString.prefix(6))", "role": "\#(role.rawValue)"}"#)
        return (try #require(created["id"] as? String), try #require(created["key"] as? String))
    }

    /// A second tenant, owned by a new user; returns an owner access token for it and the
    /// tenant's id.
    func secondTenant() async throws -> (ownerToken: String, tenantID: String, userID: String) {
        let username = "owner-\(UUID().uuidString.prefix(8))"
        let user = try await expect(201, .post, "/users", json: #"{"username": "\#(username)", "password": "correct horse battery", "role": "viewer"}"#)
        let login = try await expect(200, .post, "/auth/login", key: nil, json: #"{"username": "\#(username)", "password": "correct horse battery"}"#)
        let token = try #require(login["accessToken"] as? String)
        let tenant = try await expect(201, .post, "/tenants", key: token, json: #"{"name": "tenant-\#(UUID().uuidString.prefix(8))"}"#)
        let tenantID = try #require(tenant["id"] as? String)
        let owner = try await expect(
            200, .post, "/auth/login", key: nil,
            json: #"{"username": "\#(username)", "password": "correct horse battery", "tenant": "\#(tenantID)"}"#
        )
        #expect(owner["role"] as? String == "owner")
        return (try #require(owner["accessToken"] as? String), tenantID, try #require(user["id"] as? String))
    }
}

/// An answer of the API.
struct APIResponse: Sendable {
    var status: Int
    var headers: HTTPFields
    var data: Data

    var text: String { String(decoding: data, as: UTF8.self) }

    /// The body as a JSON object (empty when it is not one).
    var object: [String: Any] {
        ((try? JSONSerialization.jsonObject(with: data)) as? [String: Any]) ?? [:]
    }

    var items: [[String: Any]] { (try? JSONSerialization.jsonObject(with: data) as? [String: Any])?["items"] as? [[String: Any]] ?? [] }

    var contentType: String? { headers[.contentType] }
}

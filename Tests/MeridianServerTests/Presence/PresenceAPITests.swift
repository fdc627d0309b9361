import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import MeridianCore
import MeridianStorage
import Testing

@testable import MeridianServer

/// The API with presence (SQLite, next to the registry) and fleet queries, on Hummingbird's
/// router test client.
struct PresenceHarness: Sendable {
    let api: APIHarness
    let presence: PresenceService

    static func with(_ body: @Sendable (PresenceHarness) async throws -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-presence-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let registry = try APIHarness.makeRegistry(directory: directory)
        _ = try await registry.bootstrapIfEmpty(apiKey: APIHarness.adminKey)
        var logger = Logger(label: "presence-tests")
        logger.logLevel = .critical
        let store = try SQLitePresenceStore(path: (directory as NSString).appendingPathComponent("meridian.sqlite"))
        let presence = PresenceService(store: store, registry: registry, flushInterval: .milliseconds(10), logger: logger)
        let services = APIServices(
            registry: registry, signer: await APITokenSigner(key: (0..<32).map { _ in UInt8.random(in: 0...255) }), presence: presence,
            logger: logger
        )
        let router = Router(context: MeridianRequestContext.self)
        APIRoutes.add(to: router, services: services)
        let app = Application(router: router, logger: logger)
        try await app.test(.router) { client in
            try await body(PresenceHarness(api: APIHarness(client: client, registry: registry), presence: presence))
        }
    }

    /// The admin key's tenant (where ``APIHarness/device(key:name:labels:)`` creates devices).
    func tenantID(of deviceID: String) async throws -> String {
        let tenants = try await api.call(.get, "/tenants")
        return try #require(tenants.items.first?["id"] as? String)
    }
}

/// `q` percent-encoded the strict way (a `+` of the query stays a plus).
func encodedQuery(_ text: String) -> String {
    var allowed = CharacterSet.alphanumerics
    allowed.insert(charactersIn: "-._~")
    return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
}

@Suite("Presence and fleet queries over the REST API")
struct PresenceAPITests {
    @Test("connect → online with address, protocol, transport; disconnect → offline with reason; history newest first, paged")
    func presenceLifecycle() async throws {
        try await PresenceHarness.with { harness in
            let api = harness.api
            let id = try await api.device(name: "pump")
            let tenant = try await harness.tenantID(of: id)
            let never = try await api.expect(200, .get, "/devices/\(id)/presence")
            #expect(never["online"] as? Bool == false)
            #expect(never["lastSeen"] is NSNull)

            let first = PresenceConnection(
                connectionID: 1, tenantID: tenant, deviceID: id, address: "192.0.2.7:50001", protocolName: "mqtt-5.0", transport: "tcp", keepAlive: 30
            )
            harness.presence.connected(first)
            let online = try await api.expect(200, .get, "/devices/\(id)/presence")
            #expect(online["online"] as? Bool == true)
            #expect(online["address"] as? String == "192.0.2.7:50001")
            #expect(online["protocol"] as? String == "mqtt-5.0")
            #expect(online["transport"] as? String == "tcp")
            #expect(online["connections"] as? Int == 1)
            let now = Date().timeIntervalSince1970 * 1000
            #expect(abs((online["lastSeen"] as? Double ?? 0) - now) < 5000)
            #expect((online["since"] as? Double ?? 0) <= (online["lastSeen"] as? Double ?? 0))

            // A second connection (takeover in progress): online while any is open.
            var second = first
            second.connectionID = 2
            second.address = "192.0.2.7:50002"
            second.protocolName = "mqtt-3.1.1"
            harness.presence.connected(second)
            harness.presence.disconnected(deviceID: id, connectionID: 1, reason: .takeover, reasonCode: 0x8E)
            let still = try await api.expect(200, .get, "/devices/\(id)/presence")
            #expect(still["online"] as? Bool == true)
            #expect(still["address"] as? String == "192.0.2.7:50002")
            #expect(still["protocol"] as? String == "mqtt-3.1.1")
            // A repeated or unknown disconnect changes nothing.
            harness.presence.disconnected(deviceID: id, connectionID: 1, reason: .error, reasonCode: nil)
            harness.presence.disconnected(deviceID: id, connectionID: 2, reason: .keepaliveTimeout, reasonCode: 0x8D)
            let offline = try await api.expect(200, .get, "/devices/\(id)/presence")
            #expect(offline["online"] as? Bool == false)
            #expect(offline["lastDisconnectReason"] as? String == "keepalive-timeout")
            #expect(offline["address"] as? String == "192.0.2.7:50002")
            #expect(offline["connections"] as? Int == 0)
            #expect((offline["since"] as? Double) == (offline["lastSeen"] as? Double))

            let page1 = try await api.call(.get, "/devices/\(id)/presence/events?limit=3")
            #expect(page1.status == 200)
            #expect(page1.items.map { $0["event"] as? String } == ["disconnected", "disconnected", "connected"])
            #expect(page1.items.map { $0["reason"] as? String } == ["keepalive-timeout", "takeover", nil])
            #expect(page1.items.map { $0["online"] as? Bool } == [false, true, true])
            #expect(page1.items.first?["reasonCode"] as? Int == 0x8D)
            let cursor = try #require(page1.object["nextCursor"] as? String)
            let page2 = try await api.call(.get, "/devices/\(id)/presence/events?limit=3&cursor=\(cursor)")
            #expect(page2.items.map { $0["event"] as? String } == ["connected"])
            #expect(page2.items.first?["connection"] as? Int == 1)
            #expect(page2.object["nextCursor"] is NSNull)
            try await api.expect(400, .get, "/devices/\(id)/presence/events?cursor=abc")
        }
    }

    @Test("another tenant's device, or an unknown one, is 404 for presence and its events")
    func presenceIsTenantScoped() async throws {
        try await PresenceHarness.with { harness in
            let api = harness.api
            let id = try await api.device()
            let other = try await api.secondTenant()
            try await api.expect(404, .get, "/devices/\(id)/presence", key: other.ownerToken)
            try await api.expect(404, .get, "/devices/\(id)/presence/events", key: other.ownerToken)
            try await api.expect(404, .get, "/devices/nope/presence")
        }
    }

    @Test("GET /devices?q= filters by labels, status, profile and presence; pages; 400 with the position on errors")
    func fleetQuery() async throws {
        try await PresenceHarness.with { harness in
            let api = harness.api
            var plant3: [String] = []
            for index in 0..<9 {
                let id = try await api.device(name: "d\(index)", labels: ["site": index % 3 == 0 ? "plant-3" : "plant-1", "n": "\(index)"])
                if index % 3 == 0 { plant3.append(id) }
            }
            let tenant = try await harness.tenantID(of: plant3[0])
            harness.presence.connected(
                PresenceConnection(connectionID: 9, tenantID: tenant, deviceID: plant3[1], address: nil, protocolName: "mqtt-5.0", transport: "ws", keepAlive: 0)
            )
            let all = try await api.call(.get, "/devices?q=" + encodedQuery(#"labels.site = "plant-3""#))
            #expect(all.status == 200)
            #expect(all.items.compactMap { $0["id"] as? String } == plant3.sorted())
            let online = try await api.call(.get, "/devices?q=" + encodedQuery(#"labels.site = "plant-3" AND online"#))
            #expect(online.items.compactMap { $0["id"] as? String } == [plant3[1]])
            // Form encoding (+ for spaces) works too.
            let form = try await api.call(.get, "/devices?q=labels.site+%3D+%22plant-3%22+AND+NOT+online&limit=1")
            #expect(form.items.count == 1)
            let next = try #require(form.object["nextCursor"] as? String)
            let rest = try await api.call(.get, "/devices?q=labels.site+%3D+%22plant-3%22+AND+NOT+online&limit=1&cursor=\(next)")
            #expect(rest.items.count == 1)
            #expect(rest.object["nextCursor"] is NSNull)
            #expect(Set((form.items + rest.items).compactMap { $0["id"] as? String }) == Set([plant3[0], plant3[2]]))

            let typeError = try await api.call(.get, "/devices?q=" + encodedQuery("labels.n = \"1\" OR online > 3"))
            #expect(typeError.status == 400)
            #expect(typeError.contentType == "application/problem+json")
            #expect(typeError.object["type"] as? String == "urn:meridian:problem:query-type-error")
            #expect(typeError.object["field"] as? String == "q")
            let position = try #require(typeError.object["position"] as? [String: Any])
            #expect(position["offset"] as? Int == 18)
            #expect(position["line"] as? Int == 1)
            #expect(position["column"] as? Int == 19)
            #expect((typeError.object["detail"] as? String)?.contains("online is a boolean") == true)

            let syntax = try await api.call(.get, "/devices?q=" + encodedQuery("labels.site = "))
            #expect(syntax.status == 400)
            #expect(syntax.object["type"] as? String == "urn:meridian:problem:invalid-query")
            #expect((syntax.object["position"] as? [String: Any])?["offset"] as? Int == 14)
            let injection = try await api.call(.get, "/devices?q=" + encodedQuery(#"labels.site = "x' OR '1'='1""#))
            #expect(injection.status == 200)
            #expect(injection.items.isEmpty)
            try await api.expect(400, .get, "/devices?q=online&status=active")
            try await api.expect(400, .get, "/devices?q=")
        }
    }
}

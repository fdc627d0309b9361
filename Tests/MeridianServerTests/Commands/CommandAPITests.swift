import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import MQTTBroker
import MQTTCore
import MeridianCore
import MeridianStorage
import NIOCore
import Synchronization
import Testing

@testable import MeridianServer

/// A publisher standing in for the broker: records what the gateway publishes and, when told,
/// answers like a device would (through the command service, as the MQTT adapter does).
final class FakeCommandPublisher: CommandPublisher {
    struct Published: Sendable {
        var topic: String
        var payload: String
        var properties: MQTTProperties
        var tag: UInt64
    }

    private let state = Mutex((published: [Published](), routes: 1, routeOnly: String?.none))
    /// Called for each publish (a simulated device).
    let onPublish = Mutex<(@Sendable (Published) -> Void)?>(nil)

    var published: [Published] { state.withLock { $0.published } }
    func setRoutes(_ routes: Int) { state.withLock { $0.routes = routes } }
    /// Only topics containing `fragment` reach a session (the device subscribed to those only).
    func setRouteOnly(_ fragment: String?) { state.withLock { $0.routeOnly = fragment } }

    func publish(topic: String, payload: ByteBuffer, properties: MQTTProperties, deliveryTag: UInt64) async throws -> Int {
        let message = Published(topic: topic, payload: String(buffer: payload), properties: properties, tag: deliveryTag)
        let routes = state.withLock { state -> Int in
            let routes = state.routeOnly.map { topic.contains($0) ? 1 : 0 } ?? state.routes
            if routes > 0 { state.published.append(message) }
            return routes
        }
        if routes > 0 { onPublish.withLock { $0 }?(message) }
        return routes
    }
}

/// The command API on a registry in a fresh SQLite file, with a gateway over a fake broker.
struct CommandAPIHarness: Sendable {
    static let adminKey = "mk_test_bootstrap_admin_0123456789"
    let client: any TestClientProtocol
    let service: CommandService
    let gateway: DeviceGateway
    let publisher: FakeCommandPublisher
    let tenantID: String

    static func with(perDevice: Int = 0, _ body: @Sendable (CommandAPIHarness) async throws -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-commands-api-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = (directory as NSString).appendingPathComponent("meridian.sqlite")
        let registry = Registry(store: try SQLiteRegistryStore(path: path))
        let bootstrap = try #require(try await registry.bootstrapIfEmpty(apiKey: adminKey))
        var logger = Logger(label: "command-api-tests")
        logger.logLevel = .critical
        let service = CommandService(
            store: try SQLiteCommandStore(path: path), limiter: CommandRateLimiter(perDevice: perDevice, perTenant: 0)
        )
        let publisher = FakeCommandPublisher()
        let gateway = DeviceGateway(publisher: publisher, service: service, logger: logger)
        service.attach(gateway)
        let services = APIServices(
            registry: registry, signer: await APITokenSigner(key: (0..<32).map { _ in UInt8.random(in: 0...255) }),
            commands: service, logger: logger
        )
        let router = Router(context: MeridianRequestContext.self)
        APIRoutes.add(to: router, services: services)
        let app = Application(router: router, logger: logger)
        try await app.test(.router) { client in
            try await body(CommandAPIHarness(client: client, service: service, gateway: gateway, publisher: publisher, tenantID: bootstrap.tenant.id))
        }
    }

    func call(_ method: HTTPRequest.Method, _ path: String, key: String = adminKey, json: String? = nil) async throws -> APIResponse {
        var headers: HTTPFields = [.authorization: "Bearer \(key)"]
        var buffer: ByteBuffer?
        if let json {
            headers[.contentType] = "application/json"
            buffer = ByteBuffer(string: json)
        }
        let response = try await client.executeRequest(uri: APIRoutes.prefix + path, method: method, headers: headers, body: buffer)
        return APIResponse(status: Int(response.status.code), headers: response.headers, data: Data(response.body.readableBytesView))
    }

    func device() async throws -> String {
        let created = try await call(.post, "/devices", json: #"{"name": "dev-\#(UUID().uuidString.prefix(8))"}"#)
        return try #require(created.object["id"] as? String)
    }

    func apiKey(_ role: Role) async throws -> String {
        let created = try await call(.post, "/api-keys", json: #"{"name": "\#(role.rawValue)-\#(UUID().uuidString.prefix(6))", "role": "\#(role.rawValue)"}"#)
        return try #require(created.object["key"] as? String)
    }

    /// Makes `deviceID` connected (connection 1) and subscribed with `filter` (its external form under `devices/{id}`).
    func connect(_ deviceID: String, filter: String = "commands/#", version: MQTTProtocolVersion = .v5, connectionID: UInt64 = 1) {
        let connection = DeviceGateway.Connection(connectionID: connectionID, tenantID: tenantID, deviceID: deviceID, protocolVersion: version)
        gateway.connected(connection)
        gateway.subscribed(connection, filters: [AccessPrincipal.deviceTopics(tenantID: tenantID, deviceID: deviceID) + "/" + filter])
    }
}

@Suite("Commands REST API")
struct CommandAPITests {
    @Test("a two-way command returns 200 with the device's answer")
    func twoWay() async throws {
        try await CommandAPIHarness.with { api in
            let device = try await api.device()
            api.connect(device)
            let service = api.service
            let tenantID = api.tenantID
            api.publisher.onPublish.withLock {
                $0 = { message in
                    let id = String(message.properties.responseTopic?.split(separator: "/").last ?? "")
                    Task { _ = await service.answer(commandID: id, tenantID: tenantID, deviceID: device, outcome: .success(.object(["level": .number(3)]))) }
                }
            }
            let response = try await api.call(.post, "/devices/\(device)/commands", json: #"{"method": "setLevel", "params": {"level": 3}, "timeoutMs": 15000}"#)
            #expect(response.status == 200, "\(response.text)")
            #expect(response.object["status"] as? String == "succeeded")
            #expect((response.object["response"] as? [String: Any])?["level"] as? Double == 3)
            let published = try #require(api.publisher.published.first)
            #expect(published.topic == AccessPrincipal.deviceTopics(tenantID: api.tenantID, deviceID: device) + "/commands/setLevel")
            #expect(published.payload == #"{"level":3}"#)
            let id = try #require(response.object["id"] as? String)
            #expect(published.properties.responseTopic == "devices/\(device)/commands/response/\(id)")
            #expect(published.properties.correlationData.map { String(buffer: $0) } == id)
            let stored = try await api.call(.get, "/devices/\(device)/commands/\(id)")
            #expect(stored.status == 200)
            #expect(Set((stored.object["timestamps"] as? [String: Any] ?? [:]).keys) == ["queued", "sent", "delivered", "succeeded"])
        }
    }

    @Test("a two-way command without an answer is 504 with status timed_out")
    func timeout() async throws {
        try await CommandAPIHarness.with { api in
            let device = try await api.device()
            api.connect(device, filter: "commands/request/+", version: .v3_1_1)
            let response = try await api.call(.post, "/devices/\(device)/commands", json: #"{"method": "slow", "timeoutMs": 300}"#)
            #expect(response.status == 504)
            #expect(response.object["status"] as? String == "timed_out")
            #expect(api.publisher.published.first?.topic.contains("/commands/request/") == true)
        }
    }

    @Test("persistent to an offline device is 202 queued, sent when it subscribes; delivery acknowledges")
    func queued() async throws {
        try await CommandAPIHarness.with { api in
            let device = try await api.device()
            let response = try await api.call(.post, "/devices/\(device)/commands", json: #"{"method": "update", "persistent": true, "oneWay": true}"#)
            #expect(response.status == 202)
            #expect(response.object["status"] as? String == "queued")
            let id = try #require(response.object["id"] as? String)
            #expect(response.headers[.location] == "/api/v1/devices/\(device)/commands/\(id)")
            #expect(api.publisher.published.isEmpty)
            api.connect(device, filter: "rpc/request/+", version: .v3_1_1)
            let tag = try await commandEventually { api.publisher.published.first?.tag }
            #expect(api.publisher.published.first?.topic.hasSuffix("/rpc/request/\(Command.thingsBoardRequestID(id))") == true)
            #expect(api.publisher.published.first?.payload == #"{"method":"update","params":{}}"#)
            api.gateway.delivered(tag: tag)
            let status = try await commandEventually { () -> String? in
                let stored = try await api.call(.get, "/devices/\(device)/commands/\(id)")
                let status = stored.object["status"] as? String
                return status == "succeeded" ? status : nil
            }
            #expect(status == "succeeded")
        }
    }

    @Test("non-persistent to an offline device is 409; bad fields 422/400 naming the field; unknown device 404")
    func refusals() async throws {
        try await CommandAPIHarness.with { api in
            let device = try await api.device()
            let offline = try await api.call(.post, "/devices/\(device)/commands", json: #"{"method": "reboot"}"#)
            #expect(offline.status == 409)
            #expect(offline.object["type"] as? String == "urn:meridian:problem:device-offline")
            for (json, field, status) in [
                (#"{"method": "a/b"}"#, "method", 422), (#"{"method": "a", "timeoutMs": 0}"#, "timeoutMs", 422),
                (#"{"params": {}}"#, "method", 400), (#"{"method": "a", "persistent": "yes"}"#, "persistent", 400),
            ] {
                let response = try await api.call(.post, "/devices/\(device)/commands", json: json)
                #expect(response.status == status, "\(json): \(response.text)")
                #expect(response.object["field"] as? String == field, "\(json)")
            }
            #expect(try await api.call(.post, "/devices/nope/commands", json: #"{"method": "a"}"#).status == 404)
            #expect(try await api.call(.get, "/devices/\(device)/commands/nope").status == 404)
        }
    }

    @Test("operators send, viewers read but may not send")
    func roles() async throws {
        try await CommandAPIHarness.with { api in
            let device = try await api.device()
            let viewer = try await api.apiKey(.viewer)
            let operatorKey = try await api.apiKey(.operator)
            #expect(try await api.call(.post, "/devices/\(device)/commands", key: viewer, json: #"{"method": "a", "persistent": true}"#).status == 403)
            let sent = try await api.call(.post, "/devices/\(device)/commands", key: operatorKey, json: #"{"method": "a", "persistent": true}"#)
            #expect(sent.status == 202)
            let list = try await api.call(.get, "/devices/\(device)/commands", key: viewer)
            #expect(list.status == 200)
            #expect(list.items.map { $0["id"] as? String } == [sent.object["id"] as? String])
        }
    }

    @Test("the list pages newest first with a cursor")
    func paging() async throws {
        try await CommandAPIHarness.with { api in
            let device = try await api.device()
            var ids: [String] = []
            for index in 0..<3 {
                let sent = try await api.call(.post, "/devices/\(device)/commands", json: #"{"method": "m\#(index)", "persistent": true}"#)
                ids.append(try #require(sent.object["id"] as? String))
                try await Task.sleep(for: .milliseconds(3))
            }
            let first = try await api.call(.get, "/devices/\(device)/commands?limit=2")
            #expect(first.items.map { $0["id"] as? String } == [ids[2], ids[1]])
            let cursor = try #require(first.object["nextCursor"] as? String)
            let second = try await api.call(.get, "/devices/\(device)/commands?limit=2&cursor=\(cursor)")
            #expect(second.items.map { $0["id"] as? String } == [ids[0]])
            #expect(try await api.call(.get, "/devices/\(device)/commands?cursor=garbage").status == 422)
        }
    }

    @Test("past the device's rate: 429 with Retry-After")
    func rateLimit() async throws {
        try await CommandAPIHarness.with(perDevice: 1) { api in
            let device = try await api.device()
            #expect(try await api.call(.post, "/devices/\(device)/commands", json: #"{"method": "a", "persistent": true}"#).status == 202)
            let refused = try await api.call(.post, "/devices/\(device)/commands", json: #"{"method": "a", "persistent": true}"#)
            #expect(refused.status == 429)
            #expect(Int(refused.headers[.retryAfter] ?? "") ?? 0 >= 1)
            #expect(refused.object["type"] as? String == "urn:meridian:problem:rate-limited")
        }
    }
}

/// Polls `body` until it returns a value (15 s at most).
func commandEventually<T: Sendable>(_ body: @Sendable () async throws -> T?) async throws -> T {
    let deadline = ContinuousClock.now + .seconds(15)
    while ContinuousClock.now < deadline {
        if let value = try await body() { return value }
        try await Task.sleep(for: .milliseconds(20))
    }
    throw CancellationError()
}

@Suite("Device gateway")
struct DeviceGatewayTests {
    struct ConventionCase: Sendable, CustomTestStringConvertible {
        var filter: String
        var version: MQTTProtocolVersion
        var expected: Set<CommandConvention>
        var testDescription: String { "\(filter) v\(version.rawValue)" }
    }

    static let conventionCases: [ConventionCase] = [
        ConventionCase(filter: "commands/#", version: .v5, expected: [.mqtt5, .mqtt311]),
        ConventionCase(filter: "commands/+", version: .v5, expected: [.mqtt5]),
        ConventionCase(filter: "commands/#", version: .v3_1_1, expected: [.mqtt311]),
        ConventionCase(filter: "commands/request/+", version: .v5, expected: [.mqtt311]),
        ConventionCase(filter: "rpc/request/+", version: .v3_1_1, expected: [.thingsBoard]),
        ConventionCase(filter: "#", version: .v3_1_1, expected: [.thingsBoard, .mqtt311]),
        ConventionCase(filter: "telemetry", version: .v5, expected: []),
        ConventionCase(filter: "commands/response/+", version: .v5, expected: []),
    ]

    @Test("the convention comes from the subscription and the protocol version", arguments: conventionCases)
    func conventions(_ testCase: ConventionCase) {
        let subtree = AccessPrincipal.deviceTopics(tenantID: "t", deviceID: "d")
        let found = DeviceGateway.conventions(filter: subtree + "/" + testCase.filter, tenantID: "t", deviceID: "d", protocolVersion: testCase.version)
        #expect(found == testCase.expected)
    }

    @Test("a device is reachable while a connection listens; MQTT 5 is preferred; disconnecting forgets it")
    func routes() throws {
        let service = CommandService(store: InMemoryCommandStore(), limiter: CommandRateLimiter(perDevice: 0, perTenant: 0))
        var logger = Logger(label: "gateway-tests")
        logger.logLevel = .critical
        let gateway = DeviceGateway(publisher: FakeCommandPublisher(), service: service, logger: logger)
        let subtree = AccessPrincipal.deviceTopics(tenantID: "t", deviceID: "d")
        let connection = DeviceGateway.Connection(connectionID: 7, tenantID: "t", deviceID: "d", protocolVersion: .v5)
        #expect(gateway.route(tenantID: "t", deviceID: "d") == nil)
        // Connected, no command subscription seen: sending will probe, MQTT 5 first.
        gateway.connected(connection)
        #expect(gateway.route(tenantID: "t", deviceID: "d") == .mqtt5)
        gateway.subscribed(connection, filters: [subtree + "/telemetry"])
        #expect(gateway.route(tenantID: "t", deviceID: "d") == .mqtt5)
        gateway.subscribed(connection, filters: [subtree + "/rpc/request/+"])
        #expect(gateway.route(tenantID: "t", deviceID: "d") == .thingsBoard)
        gateway.subscribed(connection, filters: [subtree + "/commands/#"])
        #expect(gateway.route(tenantID: "t", deviceID: "d") == .mqtt5)
        #expect(gateway.route(tenantID: "t", deviceID: "other") == nil)
        gateway.disconnected(connection)
        #expect(gateway.route(tenantID: "t", deviceID: "d") == nil)
        // Reconnecting (a persistent session keeps its subscriptions): assumed as last subscribed.
        gateway.connected(DeviceGateway.Connection(connectionID: 8, tenantID: "t", deviceID: "d", protocolVersion: .v3_1_1))
        #expect(gateway.route(tenantID: "t", deviceID: "d") == .thingsBoard)
    }

    @Test("a resumed session (subscriptions not seen) gets its queued commands by the convention that reaches it")
    func probing() async throws {
        let store = InMemoryCommandStore()
        let service = CommandService(store: store, limiter: CommandRateLimiter(perDevice: 0, perTenant: 0))
        var logger = Logger(label: "gateway-tests")
        logger.logLevel = .critical
        let publisher = FakeCommandPublisher()
        let gateway = DeviceGateway(publisher: publisher, service: service, logger: logger)
        service.attach(gateway)
        let queued = try await service.send(CommandRequest(method: "update", persistent: true), tenantID: "t", deviceID: "d", actor: "test")
        #expect(queued.state == .queued)
        // The session subscribed to the 3.1.1 request topics before (e.g. before a restart).
        publisher.setRouteOnly("/commands/request/")
        gateway.connected(DeviceGateway.Connection(connectionID: 1, tenantID: "t", deviceID: "d", protocolVersion: .v3_1_1))
        let sent = try await commandEventually { () -> Command? in
            let command = try await service.command(id: queued.id, tenantID: "t", deviceID: "d")
            return command.state == .sent ? command : nil
        }
        #expect(sent.convention == .mqtt311)
        #expect(publisher.published.map(\.topic) == ["$tenants/t/devices/d/commands/request/\(queued.id)"])
        #expect(gateway.route(tenantID: "t", deviceID: "d") == .mqtt311)
    }

    @Test("ThingsBoard request ids are positive 31-bit numbers, stable per command id, different for different ids")
    func thingsBoardRequestIDs() {
        var seen = Set<Int>()
        for n in 0..<10_000 {
            let id = Command.thingsBoardRequestID("cmd\(n)abcdefghijklmnop")
            #expect(id > 0 && id <= Int(Int32.max))
            seen.insert(id)
        }
        #expect(seen.count == 10_000)
        #expect(Command.thingsBoardRequestID("abc") == Command.thingsBoardRequestID("abc"))
    }

    @Test("answers are recognised on the response topics only")
    func answerTopics() {
        let subtree = "$tenants/t/devices/d"
        #expect(MQTTCommandAdapter.answeredCommand(topic: subtree + "/commands/response/abc", subtree: subtree) == .id("abc"))
        #expect(MQTTCommandAdapter.answeredCommand(topic: subtree + "/rpc/response/17", subtree: subtree) == .thingsBoard(17))
        #expect(MQTTCommandAdapter.answeredCommand(topic: subtree + "/rpc/response/abc", subtree: subtree) == .id("abc"))
        #expect(MQTTCommandAdapter.answeredCommand(topic: subtree + "/commands/response/", subtree: subtree) == nil)
        #expect(MQTTCommandAdapter.answeredCommand(topic: subtree + "/commands/response/a/b", subtree: subtree) == nil)
        #expect(MQTTCommandAdapter.answeredCommand(topic: subtree + "/commands/request/abc", subtree: subtree) == nil)
        #expect(MQTTCommandAdapter.answeredCommand(topic: subtree + "/telemetry", subtree: subtree) == nil)
        #expect(MQTTCommandAdapter.answeredCommand(topic: "$tenants/t/devices/e/commands/response/abc", subtree: subtree) == nil)
    }
}

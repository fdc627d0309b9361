import Foundation
import Hummingbird
import MeridianCore

// Presence (`/devices/{id}/presence`, `/devices/{id}/presence/events`) and fleet queries
// (`GET /devices?q=...`).
extension APIRoutes {
    @Sendable static func getPresence(_ api: APIRequest) async throws -> Response {
        let presence = try presenceService(api)
        return APIJSON.response(PresenceBody(try await presence.presence(of: try api.parameter("id"), by: try api.caller)))
    }

    @Sendable static func listPresenceEvents(_ api: APIRequest) async throws -> Response {
        let presence = try presenceService(api)
        let limit = try api.integerQuery("limit", in: 1...1000, default: 100) ?? 100
        var before: Int64?
        if let cursor = api.query("cursor"), !cursor.isEmpty {
            guard let value = Int64(cursor), value > 0 else {
                throw APIProblem.badRequest("cursor must be the nextCursor of the previous page", field: "cursor")
            }
            before = value
        }
        let page = try await presence.events(of: try api.parameter("id"), before: before, limit: limit, by: try api.caller)
        return APIJSON.response(ListBody(page.items.map(PresenceEventBody.init), nextCursor: page.nextCursor))
    }

    private static func presenceService(_ api: APIRequest) throws -> PresenceService {
        guard let presence = api.services.presence else {
            throw APIProblem(.serviceUnavailable, type: "unavailable", title: "Unavailable", detail: "presence is not enabled on this server")
        }
        return presence
    }

    /// `GET /devices?q=<query>`: the devices matching a fleet query, paged like the plain list.
    static func listDevices(matching text: String, _ api: APIRequest) async throws -> Response {
        let caller = try api.caller
        let limit = try api.integerQuery("limit", in: 1...1000, default: 100) ?? 100
        let cursor = api.query("cursor").flatMap { $0.isEmpty ? nil : $0 }
        let query: FleetQuery
        switch FleetQuery.parse(text) {
        case .success(let parsed):
            query = parsed
        case .failure(let error):
            throw APIProblem(
                .badRequest, type: error.kind == .syntax ? "invalid-query" : "query-type-error",
                title: error.kind == .syntax ? "Invalid query" : "Query type error", detail: error.description, field: "q",
                position: .init(offset: error.offset, line: error.line, column: error.column)
            )
        }
        let page = try await api.services.fleet.devices(matching: query, limit: limit, after: cursor, by: caller)
        return APIJSON.response(ListBody(page.items.map(DeviceBody.init), nextCursor: page.nextCursor))
    }

    /// The raw `q` parameter, form-decoded (`+` is a space, `%2B` a plus), or nil.
    static func fleetQueryText(_ api: APIRequest) -> String? {
        guard let raw = api.request.uri.query else { return nil }
        var found: String?
        for part in raw.split(separator: "&", omittingEmptySubsequences: true) {
            let pair = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard pair[0] == "q" else { continue }
            let value = pair.count > 1 ? String(pair[1]) : ""
            found = value.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? value
        }
        return found
    }
}

/// `GET /devices/{id}/presence`: times in milliseconds since 1970.
struct PresenceBody: Encodable {
    var online: Bool
    var lastSeen: Int64?
    var since: Int64?
    var address: String?
    var `protocol`: String?
    var transport: String?
    var connections: Int
    var lastDisconnectReason: String?

    init(_ presence: DevicePresence) {
        online = presence.online
        lastSeen = presence.lastSeen.map(PresenceEventBody.milliseconds)
        since = presence.since.map(PresenceEventBody.milliseconds)
        address = presence.address
        self.protocol = presence.protocolName
        transport = presence.transport
        connections = presence.connections
        lastDisconnectReason = presence.lastDisconnectReason?.rawValue
    }

    enum CodingKeys: String, CodingKey { case online, lastSeen, since, address, `protocol`, transport, connections, lastDisconnectReason }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(online, forKey: .online)
        try container.encodePresenceValue(lastSeen, forKey: .lastSeen)
        try container.encodePresenceValue(since, forKey: .since)
        try container.encodePresenceValue(address, forKey: .address)
        try container.encodePresenceValue(self.protocol, forKey: .protocol)
        try container.encodePresenceValue(transport, forKey: .transport)
        try container.encode(connections, forKey: .connections)
        try container.encodePresenceValue(lastDisconnectReason, forKey: .lastDisconnectReason)
    }
}

/// One connect or disconnect (`/presence/events`, and the live stream's `presence` events).
struct PresenceEventBody: Encodable {
    var sequence: Int64
    var device: String
    var event: String
    var time: Int64
    var address: String?
    var `protocol`: String
    var transport: String
    var connection: UInt64
    var reason: String?
    var reasonCode: UInt8?
    var online: Bool

    init(_ event: PresenceEvent) {
        sequence = event.sequence
        device = event.deviceID
        self.event = event.kind.rawValue
        time = Self.milliseconds(event.time)
        address = event.address
        self.protocol = event.protocolName
        transport = event.transport
        connection = event.connectionID
        reason = event.reason?.rawValue
        reasonCode = event.reasonCode
        online = event.online
    }

    static func milliseconds(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded()) }
}

extension KeyedEncodingContainer {
    /// The value, or an explicit `null` (the presence bodies always carry every key).
    fileprivate mutating func encodePresenceValue<T: Encodable>(_ value: T?, forKey key: Key) throws {
        if let value { try encode(value, forKey: key) } else { try encodeNil(forKey: key) }
    }
}

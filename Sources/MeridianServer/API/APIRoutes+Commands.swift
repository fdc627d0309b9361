import Foundation
import Hummingbird
import MeridianCore

// Commands (RPC) to devices: send, read one, list.
extension APIRoutes {
    static let commandEndpoints: [APIEndpoint] = [
        APIEndpoint(.post, "/devices/{id}/commands", .role(.operator), sendCommand),
        APIEndpoint(.get, "/devices/{id}/commands", .role(.viewer), listCommands),
        APIEndpoint(.get, "/devices/{id}/commands/{commandId}", .role(.viewer), getCommand),
    ]

    private static func commandService(_ api: APIRequest) throws -> CommandService {
        guard let commands = api.services.commands else {
            throw APIProblem(
                .serviceUnavailable, type: "commands-unavailable", title: "Commands unavailable",
                detail: "this server runs without a command store"
            )
        }
        return commands
    }

    /// `POST /devices/{id}/commands`: 200 with the finished command (two-way: `succeeded` or
    /// `failed`), 202 for a one-way command (sent) or a persistent one queued for an offline
    /// device, 504 with the command (`timed_out`) when a two-way command got no answer in time,
    /// 409 for a non-persistent command to a device that is not connected, 429 past a rate limit.
    @Sendable static func sendCommand(_ api: APIRequest) async throws -> Response {
        let commands = try commandService(api)
        let caller = try api.caller
        let deviceID = try api.parameter("id")
        let body = try await api.decode(SendCommandBody.self)
        // 404 unless the device is the caller's tenant's.
        _ = try await api.registry.device(deviceID, by: caller)
        let request = CommandRequest(
            method: body.method, params: body.params ?? .emptyObject, oneWay: body.oneWay ?? false,
            persistent: body.persistent ?? false, timeoutMs: body.timeoutMs, expiresInMs: body.expiresInMs
        )
        do {
            let sent = try await commands.send(request, tenantID: caller.tenantID, deviceID: deviceID, actor: caller.actor.description)
            let location = "\(prefix)/devices/\(deviceID)/commands/\(sent.id)"
            if sent.oneWay || sent.state == .queued {
                var response = APIJSON.response(CommandBody(sent), status: .accepted)
                response.headers[.location] = location
                return response
            }
            let finished = try await commands.awaitAnswer(sent)
            var response = APIJSON.response(CommandBody(finished), status: finished.state == .timedOut ? .gatewayTimeout : .ok)
            response.headers[.location] = location
            return response
        } catch let error as CommandError {
            throw APIProblem(error)
        }
    }

    @Sendable static func getCommand(_ api: APIRequest) async throws -> Response {
        let commands = try commandService(api)
        let caller = try api.caller
        let deviceID = try api.parameter("id")
        let commandID = try api.parameter("commandId")
        _ = try await api.registry.device(deviceID, by: caller)
        do {
            return APIJSON.response(CommandBody(try await commands.command(id: commandID, tenantID: caller.tenantID, deviceID: deviceID)))
        } catch let error as CommandError {
            throw APIProblem(error)
        }
    }

    @Sendable static func listCommands(_ api: APIRequest) async throws -> Response {
        let commands = try commandService(api)
        let caller = try api.caller
        let deviceID = try api.parameter("id")
        let limit = try api.integerQuery("limit", in: 1...1000, default: 100) ?? 100
        let cursor = api.query("cursor").flatMap { $0.isEmpty ? nil : $0 }
        _ = try await api.registry.device(deviceID, by: caller)
        do {
            let page = try await commands.commands(tenantID: caller.tenantID, deviceID: deviceID, limit: limit, before: cursor)
            return APIJSON.response(ListBody(page.items.map(CommandBody.init), nextCursor: page.nextCursor))
        } catch let error as CommandError {
            throw APIProblem(error)
        }
    }
}

/// The body of `POST /devices/{id}/commands`.
struct SendCommandBody: Decodable {
    var method: String
    var params: JSONValue?
    var timeoutMs: Int?
    var persistent: Bool?
    var oneWay: Bool?
    var expiresInMs: Int?
}

/// A command as the API shows it. `status` is its state; `timestamps` has the time of each state
/// it went through.
struct CommandBody: Encodable {
    var id: String
    var deviceId: String
    var method: String
    var params: JSONValue
    var oneWay: Bool
    var persistent: Bool
    var timeoutMs: Int
    var expiresAt: Date?
    var status: String
    var timestamps: [String: Date]
    var createdAt: Date
    var convention: String?
    var response: JSONValue?
    var error: String?
    var actor: String

    init(_ command: Command) {
        id = command.id
        deviceId = command.deviceID
        method = command.method
        params = command.params
        oneWay = command.oneWay
        persistent = command.persistent
        timeoutMs = command.timeoutMs
        expiresAt = command.expiresAt
        status = command.state.rawValue
        timestamps = Dictionary(uniqueKeysWithValues: command.timestamps.map { ($0.key.rawValue, $0.value) })
        createdAt = command.createdAt
        convention = command.convention?.rawValue
        response = command.response
        error = command.error
        actor = command.actor
    }

    enum CodingKeys: String, CodingKey {
        case id, deviceId, method, params, oneWay, persistent, timeoutMs, expiresAt, status, timestamps, createdAt, convention, response,
            error, actor
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(deviceId, forKey: .deviceId)
        try container.encode(method, forKey: .method)
        try container.encode(params, forKey: .params)
        try container.encode(oneWay, forKey: .oneWay)
        try container.encode(persistent, forKey: .persistent)
        try container.encode(timeoutMs, forKey: .timeoutMs)
        try container.encodeIfPresent(expiresAt, forKey: .expiresAt)
        try container.encode(status, forKey: .status)
        try container.encode(timestamps, forKey: .timestamps)
        try container.encode(createdAt, forKey: .createdAt)
        try container.encodeIfPresent(convention, forKey: .convention)
        // A succeeded command always has a response (null when the device sent nothing).
        if let response { try container.encode(response, forKey: .response) }
        try container.encodeIfPresent(error, forKey: .error)
        try container.encode(actor, forKey: .actor)
    }
}

extension APIProblem {
    /// The answer to a ``CommandError``: invalid → 422 naming the field, notFound → 404,
    /// rateLimited → 429 with Retry-After, deviceOffline → 409, unavailable → 503.
    init(_ error: CommandError) {
        switch error.code {
        case .invalid:
            self.init(.unprocessableContent, type: "invalid-value", title: "Invalid value", detail: error.message, field: error.field)
        case .notFound:
            self.init(.notFound, type: "not-found", title: "Not found", detail: error.message)
        case .rateLimited:
            let seconds = max(1, Int((error.retryAfter ?? 1).rounded(.up)))
            self.init(
                .tooManyRequests, type: "rate-limited", title: "Too many commands", detail: error.message,
                headers: ["Retry-After": "\(seconds)"]
            )
        case .deviceOffline:
            self.init(
                .conflict, type: "device-offline", title: "Device not connected",
                detail: error.message + (error.commandID.map { " (command \($0) recorded as failed)" } ?? "")
            )
        default:
            self.init(.serviceUnavailable, type: "commands-unavailable", title: "Commands unavailable", detail: error.message)
        }
    }
}

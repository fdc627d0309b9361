import Foundation
import HTTPTypes
import Hummingbird
import MeridianCore
import NIOCore

// Device twins: the operator's side (desired state, history); devices use MQTT.
extension APIRoutes {
    /// Most history entries in one page, and the default.
    static let maximumTwinHistoryLimit = 1000
    static let defaultTwinHistoryLimit = 100

    static func twinService(_ api: APIRequest) throws -> TwinService {
        guard let twins = api.services.twins else {
            throw APIProblem(
                .serviceUnavailable,
                type: "twins-unavailable",
                title: "Twins unavailable",
                detail: "this server runs without a twin store"
            )
        }
        return twins
    }

    /// The twin a request names (`/devices/{id}/twin` or `/devices/{id}/twins/{name}`), after
    /// checking that the device is in the caller's tenant (404 otherwise).
    private static func twinKey(_ api: APIRequest, named: Bool) async throws -> TwinKey {
        let caller = try api.caller
        let id = try api.parameter("id")
        var name = ""
        if named {
            name = try api.parameter("name")
            do {
                try TwinKey.validate(name: name)
            } catch {
                throw problem(error)
            }
        }
        _ = try await api.registry.device(id, by: caller)
        return TwinKey(tenantID: caller.tenantID, deviceID: id, name: name)
    }

    /// The problem+json for a twin refusal: 400, 404, 409 (`version-conflict`), 413.
    static func problem(_ error: TwinError) -> APIProblem {
        switch error.code {
        case .notFound:
            APIProblem(.notFound, type: "not-found", title: "Not found", detail: error.message, field: error.field)
        case .versionConflict:
            APIProblem(
                .conflict,
                type: "version-conflict",
                title: "Version conflict",
                detail: error.message,
                field: error.field
            )
        case .tooLarge:
            APIProblem(
                .contentTooLarge,
                type: "twin-too-large",
                title: "Twin too large",
                detail: error.message,
                field: error.field
            )
        default:
            APIProblem(
                .badRequest,
                type: "invalid-twin",
                title: "Invalid twin update",
                detail: error.message,
                field: error.field
            )
        }
    }

    private static func twinCall<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as TwinError {
            throw problem(error)
        }
    }

    /// A JSON response of `value`, with `ETag: "<version>"` when a version is given.
    static func twinResponse(_ value: JSONValue, version: Int64?, status: HTTPResponse.Status = .ok) -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let version { headers[.eTag] = "\"\(version)\"" }
        return Response(
            status: status,
            headers: headers,
            body: .init(byteBuffer: ByteBuffer(string: value.jsonText + "\n"))
        )
    }

    /// The version in `If-Match` (`3`, `"3"` or `W/"3"`), nil without one; 400 for anything else.
    static func ifMatchVersion(_ api: APIRequest) throws -> Int64? {
        let values = api.request.headers[values: .ifMatch]
        guard let raw = values.first else { return nil }
        var text = raw.trimmingCharacters(in: .whitespaces)
        if text.hasPrefix("W/") { text.removeFirst(2) }
        if text.count >= 2, text.hasPrefix("\""), text.hasSuffix("\"") { text = String(text.dropFirst().dropLast()) }
        guard values.count == 1, let version = Int64(text), version >= 0 else {
            throw APIProblem.badRequest("If-Match must be one twin version, e.g. If-Match: \"3\"", field: "If-Match")
        }
        return version
    }

    /// `at=` as RFC 3339 (`2030-01-31T12:00:00Z`) or milliseconds since 1970.
    static func timeParameter(_ api: APIRequest, _ name: String) throws -> Int64? {
        guard let text = api.query(name) else { return nil }
        if let milliseconds = Int64(text) { return milliseconds }
        if let date = APIJSON.parseDate(text) { return Int64((date.timeIntervalSince1970 * 1000).rounded(.down)) }
        throw APIProblem.badRequest(
            "\(name) must be an RFC 3339 time (2030-01-31T12:00:00Z) or milliseconds since 1970",
            field: name
        )
    }

    // MARK: handlers

    @Sendable static func getTwin(_ api: APIRequest) async throws -> Response { try await getTwin(api, named: false) }
    @Sendable static func getNamedTwin(_ api: APIRequest) async throws -> Response {
        try await getTwin(api, named: true)
    }
    @Sendable static func patchTwin(_ api: APIRequest) async throws -> Response {
        try await patchTwin(api, named: false)
    }
    @Sendable static func patchNamedTwin(_ api: APIRequest) async throws -> Response {
        try await patchTwin(api, named: true)
    }
    @Sendable static func deleteTwin(_ api: APIRequest) async throws -> Response {
        try await deleteTwin(api, named: false)
    }
    @Sendable static func deleteNamedTwin(_ api: APIRequest) async throws -> Response {
        try await deleteTwin(api, named: true)
    }
    @Sendable static func getTwinHistory(_ api: APIRequest) async throws -> Response {
        try await getTwinHistory(api, named: false)
    }
    @Sendable static func getNamedTwinHistory(_ api: APIRequest) async throws -> Response {
        try await getTwinHistory(api, named: true)
    }

    /// `GET /devices/{id}/twins`: the names of the device's twins that exist ("" is the default).
    @Sendable static func listTwins(_ api: APIRequest) async throws -> Response {
        let twins = try twinService(api)
        let key = try await twinKey(api, named: false)
        let names = try await twins.twinNames(tenantID: key.tenantID, deviceID: key.deviceID)
        return twinResponse(.object(["items": .array(names.map(JSONValue.string))]), version: nil)
    }

    /// `GET .../twin`: `{"desired", "reported", "delta", "version", "metadata", "timestamp"}`
    /// with `ETag: "<version>"`; with `at=` the twin as it was then.
    private static func getTwin(_ api: APIRequest, named: Bool) async throws -> Response {
        let twins = try twinService(api)
        let key = try await twinKey(api, named: named)
        let at = try timeParameter(api, "at")
        let document: TwinDocument = try await twinCall {
            if let at { return try await twins.twin(key, at: at) }
            return try await twins.twin(key)
        }
        if named, !document.exists {
            throw APIProblem(
                .notFound,
                type: "not-found",
                title: "Not found",
                detail: "the device has no twin named \(key.name)" + (at == nil ? "" : " at that time")
            )
        }
        return twinResponse(document.apiValue, version: document.version)
    }

    /// `PATCH .../twin` `{"desired": {...}}` (a JSON merge patch; `null` members delete) with
    /// optional `If-Match: "<version>"` (409 when it is not current).
    private static func patchTwin(_ api: APIRequest, named: Bool) async throws -> Response {
        let twins = try twinService(api)
        let key = try await twinKey(api, named: named)
        let expected = try ifMatchVersion(api)
        let body = try await APIJSON.body(of: api.request, limit: APIJSON.maximumBodySize)
        guard let value = JSONValue.parse(Data(body.readableBytesView)) else {
            throw APIProblem.badRequest("the body is not valid JSON; send {\"desired\": {...}}")
        }
        guard case .object(let members) = value else {
            throw APIProblem.badRequest("the body must be a JSON object: {\"desired\": {...}}")
        }
        for member in members.keys.sorted() where member != "desired" {
            let why =
                member == "reported"
                ? "reported is written by the device (over MQTT)"
                : "unknown member \(member); send {\"desired\": {...}}"
            throw APIProblem.badRequest(why, field: member)
        }
        guard let desired = members["desired"] else {
            throw APIProblem.badRequest("desired is required: {\"desired\": {...}}", field: "desired")
        }
        let caller = try api.caller
        let result: TwinUpdate = try await twinCall {
            do {
                return try await twins.update(key, desired: desired, expectedVersion: expected, actor: caller.actor)
            } catch let error as TwinError where error.code == .versionConflict && expected != nil {
                throw TwinError(.versionConflict, error.message, field: "If-Match")
            }
        }
        return twinResponse(result.current.apiValue, version: result.current.version)
    }

    /// `DELETE .../twin`: empties the twin, keeping its version counter; 204.
    private static func deleteTwin(_ api: APIRequest, named: Bool) async throws -> Response {
        let twins = try twinService(api)
        let key = try await twinKey(api, named: named)
        let expected = try ifMatchVersion(api)
        let caller = try api.caller
        let result: TwinUpdate = try await twinCall {
            do {
                return try await twins.delete(key, expectedVersion: expected, actor: caller.actor)
            } catch let error as TwinError where error.code == .versionConflict {
                throw TwinError(.versionConflict, error.message, field: "If-Match")
            }
        }
        var response = Response(status: .noContent)
        response.headers[.eTag] = "\"\(result.current.version)\""
        return response
    }

    /// `GET .../twin/history?limit=&cursor=`: the changes, newest first:
    /// `{"items": [{"version", "timestamp", "operation", "actor": {"kind", "id"}, "patch",
    /// "desired", "reported"}], "nextCursor"}`.
    private static func getTwinHistory(_ api: APIRequest, named: Bool) async throws -> Response {
        let twins = try twinService(api)
        let key = try await twinKey(api, named: named)
        let limit =
            try api.integerQuery("limit", in: 1...maximumTwinHistoryLimit, default: defaultTwinHistoryLimit)
            ?? defaultTwinHistoryLimit
        var before: Int64?
        if let cursor = api.query("cursor"), !cursor.isEmpty {
            guard let value = Int64(cursor), value > 0 else {
                throw APIProblem.badRequest("cursor must be a nextCursor from an earlier page", field: "cursor")
            }
            before = value
        }
        let entries = try await twins.history(key, before: before, limit: limit + 1)
        let page = entries.prefix(limit)
        let items: [JSONValue] = page.map { entry in
            .object([
                "version": .number(Double(entry.version)),
                "timestamp": .number(Double(entry.timestamp)),
                "operation": .string(entry.operation.rawValue),
                "actor": .object(["kind": .string(entry.actor.kind.rawValue), "id": .string(entry.actor.id)]),
                "patch": entry.patch ?? .null,
                "desired": .object(entry.document.desired),
                "reported": .object(entry.document.reported),
            ])
        }
        let next: JSONValue = entries.count > limit ? .string(String(page.last?.sequence ?? 0)) : .null
        return twinResponse(.object(["items": .array(items), "nextCursor": next]), version: nil)
    }
}

import Foundation
import Hummingbird
import MeridianCore
import MeridianStorage

// Profiles, devices, bulk import and decommissioning.
extension APIRoutes {
    @Sendable static func listProfiles(_ api: APIRequest) async throws -> Response {
        APIJSON.response(ListBody(try await api.registry.profiles(by: try api.caller).map { ProfileBody($0) }))
    }

    @Sendable static func createProfile(_ api: APIRequest) async throws -> Response {
        let draft = try await api.decode(ProfileDraft.self)
        let (profile, secret) = try await api.registry.createProfile(draft, by: try api.caller)
        return APIJSON.response(ProfileBody(profile, provisioningSecret: secret), status: .created)
    }

    @Sendable static func getProfile(_ api: APIRequest) async throws -> Response {
        APIJSON.response(ProfileBody(try await api.registry.profile(try api.parameter("id"), by: try api.caller)))
    }

    @Sendable static func updateProfile(_ api: APIRequest) async throws -> Response {
        let id = try api.parameter("id")
        let draft = try await api.decode(ProfileDraft.self)
        let (profile, secret) = try await api.registry.updateProfile(id, draft, by: try api.caller)
        return APIJSON.response(ProfileBody(profile, provisioningSecret: secret))
    }

    @Sendable static func deleteProfile(_ api: APIRequest) async throws -> Response {
        try await api.registry.deleteProfile(try api.parameter("id"), by: try api.caller)
        return APIJSON.noContent()
    }

    @Sendable static func listDevices(_ api: APIRequest) async throws -> Response {
        if let text = fleetQueryText(api) {
            for filter in ["label", "status", "profile", "namePrefix"] where api.query(filter) != nil {
                throw APIProblem.badRequest("q cannot be combined with \(filter); write it in the query (e.g. status = \"active\")", field: filter)
            }
            return try await listDevices(matching: text, api)
        }
        let caller = try api.caller
        var query = DeviceQuery(tenantID: caller.tenantID)
        query.limit = try api.integerQuery("limit", in: 1...1000, default: 100) ?? 100
        if let cursor = api.query("cursor"), !cursor.isEmpty { query.after = cursor }
        for label in api.queryAll("label") {
            let pair = label.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard pair.count == 2, !pair[0].isEmpty else {
                throw APIProblem.badRequest("label must be key=value, e.g. label=site%3Dberlin", field: "label")
            }
            query.labels[String(pair[0])] = String(pair[1])
        }
        if let status = api.query("status") {
            guard let value = DeviceStatus(rawValue: status) else {
                throw APIProblem.badRequest(
                    "status must be one of \(DeviceStatus.allCases.map(\.rawValue).joined(separator: ", "))",
                    field: "status"
                )
            }
            query.status = value
        }
        if let profile = api.query("profile"), !profile.isEmpty { query.profileID = profile }
        if let prefix = api.query("namePrefix"), !prefix.isEmpty { query.namePrefix = prefix }
        let page = try await api.registry.devices(query, by: caller)
        return APIJSON.response(ListBody(page.items.map(DeviceBody.init), nextCursor: page.nextCursor))
    }

    @Sendable static func createDevice(_ api: APIRequest) async throws -> Response {
        let body = try await api.decode(CreateDeviceBody.self)
        let device = try await api.registry.createDevice(body.draft, by: try api.caller)
        var response = APIJSON.response(DeviceBody(device), status: .created)
        response.headers[.location] = "\(prefix)/devices/\(device.id)"
        return response
    }

    @Sendable static func getDevice(_ api: APIRequest) async throws -> Response {
        APIJSON.response(DeviceBody(try await api.registry.device(try api.parameter("id"), by: try api.caller)))
    }

    @Sendable static func updateDevice(_ api: APIRequest) async throws -> Response {
        let id = try api.parameter("id")
        let patch = try await api.decode(DevicePatch.self)
        return APIJSON.response(DeviceBody(try await api.registry.updateDevice(id, patch, by: try api.caller)))
    }

    @Sendable static func deleteDevice(_ api: APIRequest) async throws -> Response {
        let id = try api.parameter("id")
        try await api.registry.deleteDevice(id, by: try api.caller)
        // Its telemetry goes with it.
        try await api.services.telemetry?.deleteDevice(id)
        try await api.services.presence?.deleteDevice(id)
        return APIJSON.noContent()
    }

    @Sendable static func decommissionDevice(_ api: APIRequest) async throws -> Response {
        let id = try api.parameter("id")
        let buffer = try await APIJSON.body(of: api.request)
        let body = buffer.readableBytes == 0 ? DecommissionBody(purge: nil) : try APIJSON.decode(DecommissionBody.self, from: Data(buffer.readableBytesView))
        guard let device = try await api.registry.decommissionDevice(id, purge: body.purge ?? false, by: try api.caller) else {
            // Purged: its telemetry goes with it.
            try await api.services.telemetry?.deleteDevice(id)
            try await api.services.presence?.deleteDevice(id)
            return APIJSON.noContent()
        }
        return APIJSON.response(DeviceBody(device))
    }

    /// `text/csv` (a header row: name, id, profile, labels, label.<key>) or a JSON array of
    /// devices; all or nothing, with an error per bad row.
    @Sendable static func importDevices(_ api: APIRequest) async throws -> Response {
        let caller = try api.caller
        let contentType = api.request.headers[.contentType]?.lowercased() ?? ""
        let buffer = try await APIJSON.body(of: api.request, limit: APIJSON.maximumImportSize)
        let rows: [DeviceImport.Row]
        if contentType.hasPrefix("text/csv") {
            rows = try DeviceImport.parseCSV(String(decoding: Data(buffer.readableBytesView), as: UTF8.self))
        } else if contentType.hasPrefix("application/json") || contentType.isEmpty {
            let data = Data(buffer.readableBytesView)
            // The shape first (an array of objects with the right types), for a 400 naming the
            // row and field; then the registry's own parsing and validation.
            _ = try APIJSON.decode([ImportRowShape].self, from: data)
            rows = try DeviceImport.parseJSON(data)
        } else {
            throw APIProblem(
                .unsupportedMediaType, type: "unsupported-media-type", title: "Unsupported media type",
                detail: "send text/csv or application/json", field: "Content-Type"
            )
        }
        guard !rows.isEmpty else {
            throw APIProblem.badRequest("the import has no devices")
        }
        let devices = try await api.registry.importDevices(rows, by: caller)
        return APIJSON.response(ImportResultBody(created: devices.count, devices: devices.map(DeviceBody.init)), status: .created)
    }

    /// The type-checked shape of one JSON import row.
    private struct ImportRowShape: Decodable {
        var id: String?
        var name: String
        var profile: String?
        var labels: [String: String]?
        var metadata: JSONValue?
    }

    private struct ImportResultBody: Encodable {
        var created: Int
        var devices: [DeviceBody]
    }
}

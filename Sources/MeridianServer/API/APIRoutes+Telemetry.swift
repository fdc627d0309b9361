import Foundation
import HTTPTypes
import Hummingbird
import MeridianCore
import MeridianStorage
import NIOCore

// Telemetry: device ingest over HTTP, latest values, raw ranges, aggregates, CSV, retention.
extension APIRoutes {
    /// Most raw points per key in one page, and the default.
    static let maximumRangeLimit = 100_000
    static let defaultRangeLimit = 1000
    /// Most buckets per key an aggregate may return.
    static let maximumBuckets = 100_000
    /// Most devices in one fleet call.
    static let maximumDevicesPerCall = 1000

    static func telemetry(_ api: APIRequest) throws -> TelemetryService {
        guard let telemetry = api.services.telemetry else {
            throw APIProblem(.serviceUnavailable, type: "telemetry-unavailable", title: "Telemetry unavailable", detail: "this server runs without a telemetry store")
        }
        return telemetry
    }

    // MARK: ingest

    /// `POST /devices/{id}/telemetry` with `Authorization: Bearer <device access token>`: the
    /// body in any telemetry format; 200 `{"accepted": n}` once durable.
    @Sendable static func postTelemetry(_ api: APIRequest) async throws -> Response {
        let telemetry = try telemetry(api)
        let deviceID = try api.parameter("id")
        let identity = try await api.services.authenticateDevice(api.request)
        guard identity.deviceID == deviceID else {
            throw APIProblem(.forbidden, type: "forbidden", title: "Forbidden", detail: "the access token belongs to another device")
        }
        let body = try await APIJSON.body(of: api.request, limit: APIJSON.maximumBodySize)
        let now = TelemetryService.now()
        let result = body.withUnsafeReadableBytes { bytes in
            TelemetryService.message(bytes, tenantID: identity.tenantID, deviceID: identity.deviceID, receivedAt: now)
        }
        switch result {
        case .failure(let error):
            throw APIProblem(.badRequest, type: "invalid-telemetry", title: "Invalid telemetry", detail: error.reason, field: error.key)
        case .success(let message):
            do {
                try await telemetry.pipeline.submit(message)
            } catch {
                throw APIProblem(.serviceUnavailable, type: "telemetry-unavailable", title: "Telemetry not stored", detail: "\(error)")
            }
            var json = TelemetryJSON()
            json.text = "{\"accepted\":\(message.samples.count)}"
            return jsonResponse(json)
        }
    }

    // MARK: queries

    /// Checks that the device exists in the caller's tenant (404 otherwise).
    private static func requireDevice(_ api: APIRequest) async throws -> String {
        let id = try api.parameter("id")
        _ = try await api.registry.device(id, by: try api.caller)
        return id
    }

    @Sendable static func getLatest(_ api: APIRequest) async throws -> Response {
        let telemetry = try telemetry(api)
        let id = try await requireDevice(api)
        let keys = try keysParameter(api)
        var latest = telemetry.engine.latest(deviceIDs: [id])[id] ?? [:]
        if let keys { latest = latest.filter { keys.contains($0.key) } }
        var json = TelemetryJSON()
        json.latest(latest)
        return jsonResponse(json)
    }

    @Sendable static func getKeys(_ api: APIRequest) async throws -> Response {
        let telemetry = try telemetry(api)
        let id = try await requireDevice(api)
        var json = TelemetryJSON()
        json.text.append("{\"keys\":[")
        for (index, key) in telemetry.engine.keys(deviceID: id).enumerated() {
            if index > 0 { json.text.append(",") }
            json.string(key)
        }
        json.text.append("]}")
        return jsonResponse(json)
    }

    /// `GET /devices/{id}/telemetry?keys=a,b&from=&to=` raw points (paged with `limit` and
    /// `cursor`; the next page's cursor is in the `Next-Cursor` header and a `Link` header);
    /// with `interval` (and `agg`) one point per bucket; `format=csv` for CSV of every point.
    @Sendable static func getTelemetry(_ api: APIRequest) async throws -> Response {
        let telemetry = try telemetry(api)
        let id = try await requireDevice(api)
        let window = try timeWindow(api)
        let keys = try keysParameter(api)
        let format = api.query("format") ?? "json"
        guard format == "json" || format == "csv" else {
            throw APIProblem.badRequest("format must be json or csv", field: "format")
        }
        if let aggregate = try aggregateParameters(api, window: window) {
            let query = TelemetryAggregateQuery(deviceID: id, keys: keys, from: window.from, to: window.to, interval: aggregate.interval, aggregation: aggregate.aggregation)
            let result = try await telemetry.blocking { try telemetry.engine.aggregate(query) }
            if format == "csv" { return csvResponse(rows: result, deviceID: id) }
            var json = TelemetryJSON()
            json.series(result)
            return jsonResponse(json)
        }
        if format == "csv" {
            return try csvExport(telemetry, deviceID: id, keys: keys, window: window)
        }
        let limit = try api.integerQuery("limit", in: 1...maximumRangeLimit, default: defaultRangeLimit) ?? defaultRangeLimit
        let after = try cursorParameter(api)
        let query = TelemetryRangeQuery(deviceID: id, keys: keys, from: window.from, to: window.to, limit: limit, after: after)
        let result = try await telemetry.blocking { try telemetry.engine.range(query) }
        var json = TelemetryJSON(capacity: 64 + result.points.values.reduce(0) { $0 + $1.count } * 32)
        json.series(result.points)
        var response = jsonResponse(json)
        if !result.next.isEmpty {
            let cursor = encodeCursor(result.next)
            response.headers[HTTPField.Name("Next-Cursor")!] = cursor
            var components = URLComponents()
            components.queryItems = api.request.uri.queryParameters.filter { $0.key != "cursor" }.map { URLQueryItem(name: String($0.key), value: String($0.value)) }
                + [URLQueryItem(name: "cursor", value: cursor)]
            response.headers[HTTPField.Name("Link")!] = "<\(api.request.uri.path)?\(components.percentEncodedQuery ?? "")>; rel=\"next\""
        }
        return response
    }

    /// `GET /telemetry/latest?devices=a,b`: `{"<device>": {"<key>": {"ts", "value"}}}` for the
    /// caller's tenant (devices of other tenants, or without telemetry, are absent).
    @Sendable static func getFleetLatest(_ api: APIRequest) async throws -> Response {
        let telemetry = try telemetry(api)
        let caller = try api.caller
        let devices = try devicesParameter(api)
        let keys = try keysParameter(api)
        let owned = Set(telemetry.engine.devices(in: caller.tenantID, among: devices))
        let latest = telemetry.engine.latest(deviceIDs: devices.filter { owned.contains($0) })
        var json = TelemetryJSON(capacity: latest.count * 96)
        json.text.append("{")
        for (index, device) in latest.keys.sorted().enumerated() {
            if index > 0 { json.text.append(",") }
            json.string(device)
            json.text.append(":")
            json.latest(keys.map { wanted in latest[device]!.filter { wanted.contains($0.key) } } ?? latest[device]!)
        }
        json.text.append("}")
        return jsonResponse(json)
    }

    /// `GET /telemetry?devices=a,b&keys=..&from=&to=[&interval=&agg=]`: per device what the
    /// device endpoint returns (one page of `limit` raw points per key).
    @Sendable static func getFleetTelemetry(_ api: APIRequest) async throws -> Response {
        let telemetry = try telemetry(api)
        let caller = try api.caller
        let devices = try devicesParameter(api)
        let keys = try keysParameter(api)
        let window = try timeWindow(api)
        let aggregate = try aggregateParameters(api, window: window)
        let limit = try api.integerQuery("limit", in: 1...maximumRangeLimit, default: defaultRangeLimit) ?? defaultRangeLimit
        let owned = telemetry.engine.devices(in: caller.tenantID, among: devices)
        let results = try await telemetry.blocking { () -> [(String, [String: [TelemetryPoint]])] in
            try owned.map { device in
                if let aggregate {
                    return (device, try telemetry.engine.aggregate(TelemetryAggregateQuery(deviceID: device, keys: keys, from: window.from, to: window.to, interval: aggregate.interval, aggregation: aggregate.aggregation)))
                }
                return (device, try telemetry.engine.range(TelemetryRangeQuery(deviceID: device, keys: keys, from: window.from, to: window.to, limit: limit)).points)
            }
        }
        var json = TelemetryJSON()
        json.text.append("{")
        for (index, (device, series)) in results.sorted(by: { $0.0 < $1.0 }).enumerated() {
            if index > 0 { json.text.append(",") }
            json.string(device)
            json.text.append(":")
            json.series(series)
        }
        json.text.append("}")
        return jsonResponse(json)
    }

    // MARK: retention

    @Sendable static func getTenantRetention(_ api: APIRequest) async throws -> Response {
        let telemetry = try telemetry(api)
        let caller = try api.caller
        let override = try await telemetry.blocking { try telemetry.engine.retentionOverride(.tenant, id: caller.tenantID) }
        return APIJSON.response(RetentionBody(override ?? telemetry.defaultRetention, source: override == nil ? "default" : "tenant"))
    }

    @Sendable static func putTenantRetention(_ api: APIRequest) async throws -> Response {
        let telemetry = try telemetry(api)
        let caller = try api.caller
        let retention = try await decodeRetention(api)
        try await telemetry.blocking { try telemetry.engine.setRetentionOverride(.tenant, id: caller.tenantID, retention) }
        return APIJSON.response(RetentionBody(retention ?? telemetry.defaultRetention, source: retention == nil ? "default" : "tenant"))
    }

    @Sendable static func getProfileRetention(_ api: APIRequest) async throws -> Response {
        let telemetry = try telemetry(api)
        let profile = try await api.registry.profile(try api.parameter("id"), by: try api.caller)
        let override = try await telemetry.blocking { try telemetry.engine.retentionOverride(.profile, id: profile.id) }
        if let override { return APIJSON.response(RetentionBody(override, source: "profile")) }
        let tenant = try await telemetry.blocking { try telemetry.engine.retentionOverride(.tenant, id: profile.tenantID) }
        return APIJSON.response(RetentionBody(tenant ?? telemetry.defaultRetention, source: tenant == nil ? "default" : "tenant"))
    }

    @Sendable static func putProfileRetention(_ api: APIRequest) async throws -> Response {
        let telemetry = try telemetry(api)
        let profile = try await api.registry.profile(try api.parameter("id"), by: try api.caller)
        let retention = try await decodeRetention(api)
        try await telemetry.blocking { try telemetry.engine.setRetentionOverride(.profile, id: profile.id, retention) }
        return try await getProfileRetention(api)
    }

    /// The body of a retention PUT: `{"raw": ms|null, "minute": ms|null, "hour": ms|null}`, or
    /// `{"inherit": true}` to remove the override.
    private static func decodeRetention(_ api: APIRequest) async throws -> TelemetryRetention? {
        let body = try await api.decode(RetentionDraft.self)
        if body.inherit == true { return nil }
        let retention = TelemetryRetention(raw: body.raw, minute: body.minute, hour: body.hour)
        if let problem = retention.problem { throw APIProblem.badRequest("\(problem.field) \(problem.reason)", field: problem.field) }
        return retention
    }

    // MARK: parameters

    static func keysParameter(_ api: APIRequest) throws -> [String]? {
        guard let text = api.query("keys"), !text.isEmpty else { return nil }
        let keys = text.split(separator: ",").map(String.init).filter { !$0.isEmpty }
        guard keys.count <= 1000 else { throw APIProblem.badRequest("at most 1000 keys per call", field: "keys") }
        return keys
    }

    static func devicesParameter(_ api: APIRequest) throws -> [String] {
        let devices = api.queryAll("devices").flatMap { $0.split(separator: ",").map(String.init) }.filter { !$0.isEmpty }
        guard !devices.isEmpty else { throw APIProblem.badRequest("devices is required: a comma-separated list of device ids", field: "devices") }
        guard devices.count <= maximumDevicesPerCall else {
            throw APIProblem.badRequest("at most \(maximumDevicesPerCall) devices per call", field: "devices")
        }
        return devices
    }

    /// `from` and `to` in milliseconds since 1970, both included; `to` defaults to now and
    /// `from` to a day before `to`.
    static func timeWindow(_ api: APIRequest) throws -> (from: Int64, to: Int64) {
        let to = try api.integerQuery("to", in: Int64.min / 4...Int64.max / 4, default: TelemetryService.now())!
        let from = try api.integerQuery("from", in: Int64.min / 4...Int64.max / 4, default: to - 86_400_000)!
        guard from <= to else { throw APIProblem.badRequest("from must not be after to", field: "from") }
        return (from, to)
    }

    static func aggregateParameters(_ api: APIRequest, window: (from: Int64, to: Int64)) throws -> (interval: Int64, aggregation: TelemetryAggregation)? {
        guard let text = api.query("interval") else {
            if api.query("agg") != nil { throw APIProblem.badRequest("agg needs an interval, e.g. interval=1m", field: "interval") }
            return nil
        }
        guard let interval = parseInterval(text), interval > 0 else {
            throw APIProblem.badRequest("interval must be a duration such as 30s, 1m, 15m, 1h, 1d or milliseconds", field: "interval")
        }
        let name = api.query("agg") ?? "avg"
        guard let aggregation = TelemetryAggregation(rawValue: name) else {
            throw APIProblem.badRequest("agg must be one of \(TelemetryAggregation.allCases.map(\.rawValue).joined(separator: ", "))", field: "agg")
        }
        let (buckets, overflow) = (window.to - window.from).dividedReportingOverflow(by: interval)
        guard !overflow, buckets < Int64(maximumBuckets) else {
            throw APIProblem.badRequest("the range holds more than \(maximumBuckets) buckets of \(text); use a larger interval or a shorter range", field: "interval")
        }
        return (interval, aggregation)
    }

    /// `500ms`, `30s`, `1m`, `15m`, `1h`, `1d`, `1w`, or plain milliseconds.
    static func parseInterval(_ text: String) -> Int64? {
        let units: [(String, Int64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000), ("w", 604_800_000)]
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            guard let number = Int64(text.dropLast(suffix.count)), number > 0 else { continue }
            let (value, overflow) = number.multipliedReportingOverflow(by: factor)
            return overflow ? nil : value
        }
        return Int64(text)
    }

    static func encodeCursor(_ next: [String: Int64]) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: next, options: [.sortedKeys])) ?? Data()
        return data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    static func cursorParameter(_ api: APIRequest) throws -> [String: Int64] {
        guard let text = api.query("cursor"), !text.isEmpty else { return [:] }
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        guard let data = Data(base64Encoded: base64), let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw APIProblem.badRequest("cursor is not one this server gave out", field: "cursor")
        }
        var result: [String: Int64] = [:]
        for (key, value) in object {
            guard let number = value as? NSNumber else { throw APIProblem.badRequest("cursor is not one this server gave out", field: "cursor") }
            result[key] = number.int64Value
        }
        return result
    }

    // MARK: responses

    static func jsonResponse(_ json: TelemetryJSON) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: json.text)))
    }

    static func csvResponse(rows: [String: [TelemetryPoint]], deviceID: String) -> Response {
        var text = "ts,key,value\n"
        for key in rows.keys.sorted() {
            for point in rows[key]! { text += csvLine(point, key: key) }
        }
        return Response(
            status: .ok,
            headers: [.contentType: "text/csv; charset=utf-8", .contentDisposition: "attachment; filename=\"\(deviceID)-telemetry.csv\""],
            body: .init(byteBuffer: ByteBuffer(string: text))
        )
    }

    static func csvLine(_ point: TelemetryPoint, key: String) -> String {
        var json = TelemetryJSON()
        switch point.value {
        case .string(let value): json.text = TelemetryJSON.csvField(value)
        default: json.value(point.value)
        }
        return "\(point.timestamp),\(TelemetryJSON.csvField(key)),\(json.text.replacingOccurrences(of: "\"", with: ""))\n"
    }

    /// Every point of the range as CSV (`ts,key,value`, key by key, oldest first), streamed
    /// page by page.
    static func csvExport(_ telemetry: TelemetryService, deviceID: String, keys: [String]?, window: (from: Int64, to: Int64)) throws -> Response {
        let body = ResponseBody { writer in
            try await writer.write(ByteBuffer(string: "ts,key,value\n"))
            var after: [String: Int64] = [:]
            var remaining = keys
            while true {
                let query = TelemetryRangeQuery(deviceID: deviceID, keys: remaining, from: window.from, to: window.to, limit: 10_000, after: after)
                let page = try await telemetry.blocking { try telemetry.engine.range(query) }
                var text = ""
                for key in page.points.keys.sorted() {
                    for point in page.points[key]! { text += csvLine(point, key: key) }
                }
                if !text.isEmpty { try await writer.write(ByteBuffer(string: text)) }
                // Only the keys with more points go on to the next page.
                guard !page.next.isEmpty else { break }
                after = page.next
                remaining = page.next.keys.sorted()
            }
            try await writer.finish(nil)
        }
        return Response(
            status: .ok,
            headers: [.contentType: "text/csv; charset=utf-8", .contentDisposition: "attachment; filename=\"\(deviceID)-telemetry.csv\""],
            body: body
        )
    }
}

/// A retention setting as the API shows it.
struct RetentionBody: Encodable {
    var raw: Int64?
    var minute: Int64?
    var hour: Int64?
    /// Where it comes from: `default`, `tenant` or `profile`.
    var source: String

    init(_ retention: TelemetryRetention, source: String) {
        raw = retention.raw
        minute = retention.minute
        hour = retention.hour
        self.source = source
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        // null means forever: always present.
        try container.encode(raw, forKey: .raw)
        try container.encode(minute, forKey: .minute)
        try container.encode(hour, forKey: .hour)
        try container.encode(source, forKey: .source)
    }

    enum CodingKeys: String, CodingKey { case raw, minute, hour, source }
}

struct RetentionDraft: Decodable {
    var raw: Int64?
    var minute: Int64?
    var hour: Int64?
    var inherit: Bool?
}

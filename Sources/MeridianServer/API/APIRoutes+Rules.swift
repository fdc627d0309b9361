import Foundation
import Hummingbird
import MeridianCore
import NIOCore

// Rules, their dry runs and firings; alarms.
extension APIRoutes {
    static let ruleEndpoints: [APIEndpoint] = [
        APIEndpoint(.get, "/rules", .role(.viewer), listRules),
        APIEndpoint(.post, "/rules", .role(.operator), createRule),
        APIEndpoint(.post, "/rules/apply", .role(.operator), applyRules),
        APIEndpoint(.post, "/rules/dry-run", .role(.viewer), dryRunRule),
        APIEndpoint(.get, "/rules/{id}", .role(.viewer), getRule),
        APIEndpoint(.put, "/rules/{id}", .role(.operator), putRule),
        APIEndpoint(.patch, "/rules/{id}", .role(.operator), patchRule),
        APIEndpoint(.delete, "/rules/{id}", .role(.operator), deleteRule),
        APIEndpoint(.get, "/rules/{id}/versions", .role(.viewer), listRuleVersions),
        APIEndpoint(.get, "/rules/{id}/firings", .role(.viewer), listRuleFirings),
        APIEndpoint(.get, "/firings", .role(.viewer), listFirings),
        APIEndpoint(.get, "/firings/{id}", .role(.viewer), getFiring),
        APIEndpoint(.get, "/alarms", .role(.viewer), listAlarms),
        APIEndpoint(.get, "/alarms/{id}", .role(.viewer), getAlarm),
        APIEndpoint(.get, "/alarms/{id}/history", .role(.viewer), getAlarmHistory),
        APIEndpoint(.post, "/alarms/{id}/acknowledge", .role(.operator), acknowledgeAlarm),
        APIEndpoint(.post, "/alarms/{id}/clear", .role(.operator), clearAlarm),
        APIEndpoint(.post, "/alarms/{id}/comments", .role(.operator), commentAlarm),
    ]

    private static func ruleServices(_ api: APIRequest) throws -> RuleServices {
        guard let rules = api.services.rules else {
            throw APIProblem(.serviceUnavailable, type: "rules-unavailable", title: "Rules unavailable", detail: "this server runs without rules")
        }
        return rules
    }

    private static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        var buffer = ByteBuffer(string: value.jsonText)
        buffer.writeString("\n")
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: buffer))
    }

    private static func body(_ api: APIRequest) async throws -> JSONValue {
        let buffer = try await APIJSON.body(of: api.request)
        guard buffer.readableBytes > 0 else { throw APIProblem.badRequest("a JSON body is required") }
        guard let value = JSONValue.parse(Data(buffer.readableBytesView)) else {
            throw APIProblem.badRequest("the body is not valid JSON")
        }
        return value
    }

    private static func ruleJSON(_ rule: Rule) -> JSONValue { rule.json(includeSecrets: false) }

    @Sendable static func listRules(_ api: APIRequest) async throws -> Response {
        let services = try ruleServices(api)
        let rules = try await services.rules.rules(by: try api.caller)
        return json(.object(["items": .array(rules.map(ruleJSON))]))
    }

    @Sendable static func createRule(_ api: APIRequest) async throws -> Response {
        let services = try ruleServices(api)
        let definition = try RuleService.definition(try await body(api))
        let rule = try await services.rules.create(definition, by: try api.caller)
        var response = json(ruleJSON(rule), status: .created)
        response.headers[.location] = "\(prefix)/rules/\(rule.id)"
        return response
    }

    @Sendable static func getRule(_ api: APIRequest) async throws -> Response {
        let services = try ruleServices(api)
        return json(ruleJSON(try await services.rules.rule(try api.parameter("id"), by: try api.caller)))
    }

    /// `PUT /rules/{id}`: a new version; `If-Match: <version>` refuses a stale write (409).
    @Sendable static func putRule(_ api: APIRequest) async throws -> Response {
        let services = try ruleServices(api)
        let definition = try RuleService.definition(try await body(api))
        var expected: Int?
        if let header = api.request.headers[.ifMatch] {
            guard let version = Int(header.trimmingCharacters(in: CharacterSet(charactersIn: "\" W/"))) else {
                throw APIProblem.badRequest("must be the rule's version number", field: "If-Match")
            }
            expected = version
        }
        let rule = try await services.rules.update(try api.parameter("id"), with: definition, expectedVersion: expected, by: try api.caller)
        return json(ruleJSON(rule))
    }

    /// `PATCH /rules/{id}` with `{"enabled": true|false}`.
    @Sendable static func patchRule(_ api: APIRequest) async throws -> Response {
        let services = try ruleServices(api)
        guard case .object(let object) = try await body(api) else { throw APIProblem.badRequest("send {\"enabled\": true or false}", field: "enabled") }
        if let unknown = object.keys.sorted().first(where: { $0 != "enabled" }) {
            throw APIProblem.badRequest("only enabled can be patched; PUT the whole rule to change the rest", field: unknown)
        }
        guard case .bool(let enabled)? = object["enabled"] else { throw APIProblem.badRequest("must be true or false", field: "enabled") }
        let rule = try await services.rules.setEnabled(try api.parameter("id"), enabled, by: try api.caller)
        return json(ruleJSON(rule))
    }

    @Sendable static func deleteRule(_ api: APIRequest) async throws -> Response {
        let services = try ruleServices(api)
        try await services.rules.delete(try api.parameter("id"), by: try api.caller)
        return Response(status: .noContent)
    }

    @Sendable static func listRuleVersions(_ api: APIRequest) async throws -> Response {
        let services = try ruleServices(api)
        let versions = try await services.rules.versions(try api.parameter("id"), by: try api.caller)
        return json(.object(["items": .array(versions.map(ruleJSON))]))
    }

    /// `POST /rules/apply` with `{"rules": [...], "prune": false}`.
    @Sendable static func applyRules(_ api: APIRequest) async throws -> Response {
        let services = try ruleServices(api)
        guard case .object(let object) = try await body(api) else { throw APIProblem.badRequest("send {\"rules\": [...]}", field: "rules") }
        if let unknown = object.keys.sorted().first(where: { $0 != "rules" && $0 != "prune" }) {
            throw APIProblem.badRequest("unknown field (expected rules, prune)", field: unknown)
        }
        guard case .array(let definitions)? = object["rules"] else { throw APIProblem.badRequest("must be a list of rules", field: "rules") }
        var prune = false
        if let value = object["prune"], value != .null {
            guard case .bool(let flag) = value else { throw APIProblem.badRequest("must be true or false", field: "prune") }
            prune = flag
        }
        let result = try await services.rules.apply(definitions, prune: prune, by: try api.caller)
        return json(
            .object([
                "created": .array(result.created.map(JSONValue.string)), "updated": .array(result.updated.map(JSONValue.string)),
                "unchanged": .array(result.unchanged.map(JSONValue.string)), "deleted": .array(result.deleted.map(JSONValue.string)),
            ])
        )
    }

    /// `POST /rules/dry-run` with `{"rule": {...}}` or `{"ruleId": "..."}`, optional `devices`,
    /// and `from`, `to` (ISO 8601 or milliseconds; default the last 24 hours).
    @Sendable static func dryRunRule(_ api: APIRequest) async throws -> Response {
        let services = try ruleServices(api)
        let caller = try api.caller
        guard case .object(let object) = try await body(api) else { throw APIProblem.badRequest("send {\"rule\": {...}, \"from\": ..., \"to\": ...}", field: "rule") }
        if let unknown = object.keys.sorted().first(where: { !["rule", "ruleId", "devices", "from", "to"].contains($0) }) {
            throw APIProblem.badRequest("unknown field (expected rule, ruleId, devices, from, to)", field: unknown)
        }
        let definition: RuleDefinition
        if let rule = object["rule"], rule != .null {
            definition = try RuleService.definition(rule, path: "rule")
        } else if case .string(let reference)? = object["ruleId"] {
            definition = try await services.rules.rule(reference, by: caller).definition
        } else {
            throw APIProblem.badRequest("send a rule, or the ruleId of a saved one", field: "rule")
        }
        var devices: [String]?
        if let list = object["devices"], list != .null {
            guard case .array(let items) = list else { throw APIProblem.badRequest("must be a list of device ids", field: "devices") }
            devices = try items.enumerated().map { index, item in
                guard case .string(let id) = item else { throw APIProblem.badRequest("must be a device id", field: "devices[\(index)]") }
                return id
            }
        }
        let now = RuleTime.milliseconds(Date())
        let to = try time(object["to"], field: "to") ?? now
        let from = try time(object["from"], field: "from") ?? (to - 86_400_000)
        let result = try await services.dryRun.run(definition, deviceIDs: devices, from: from, to: to, by: caller)
        return json(
            .object([
                "from": .string(RuleTime.iso(milliseconds: from)), "to": .string(RuleTime.iso(milliseconds: to)),
                "devices": .number(Double(result.devices)), "samples": .number(Double(result.samples)), "truncated": .bool(result.truncated),
                "firings": .array(
                    result.firings.map {
                        .object([
                            "device": .string($0.deviceID), "event": .string($0.event.rawValue), "at": .number(Double($0.at)),
                            "time": .string(RuleTime.iso(milliseconds: $0.at)), "message": .string($0.message), "values": .object($0.values),
                        ])
                    }
                ),
            ])
        )
    }

    private static func time(_ value: JSONValue?, field: String) throws -> Int64? {
        switch value {
        case nil, .null?: return nil
        case .number(let number)? where number.isFinite && number == number.rounded() && abs(number) < 1e15: return Int64(number)
        case .string(let text)?:
            if let date = APIJSON.parseDate(text) { return RuleTime.milliseconds(date) }
            if let number = Int64(text) { return number }
            throw APIProblem.badRequest("must be an ISO 8601 time or milliseconds since 1970", field: field)
        default: throw APIProblem.badRequest("must be an ISO 8601 time or milliseconds since 1970", field: field)
        }
    }

    @Sendable static func listRuleFirings(_ api: APIRequest) async throws -> Response {
        let services = try ruleServices(api)
        let caller = try api.caller
        let rule = try await services.rules.rule(try api.parameter("id"), by: caller)
        return try await firings(api, services: services, ruleID: rule.id, caller: caller)
    }

    @Sendable static func listFirings(_ api: APIRequest) async throws -> Response {
        let services = try ruleServices(api)
        let caller = try api.caller
        var ruleID = api.query("rule")
        if let reference = ruleID { ruleID = try await services.rules.rule(reference, by: caller).id }
        return try await firings(api, services: services, ruleID: ruleID, caller: caller)
    }

    private static func firings(_ api: APIRequest, services: RuleServices, ruleID: String?, caller: Caller) async throws -> Response {
        let limit = try api.integerQuery("limit", in: 1...1000, default: 100) ?? 100
        let cursor = api.query("cursor").flatMap { $0.isEmpty ? nil : $0 }
        if let cursor, RuleListCursor.parse(cursor) == nil { throw APIProblem.badRequest("is not a cursor this API returned", field: "cursor") }
        await services.engine.settle()
        let page = try await services.firings.firings(
            tenantID: caller.tenantID, ruleID: ruleID, deviceID: api.query("device"), limit: limit, cursor: cursor
        )
        var object: [String: JSONValue] = ["items": .array(page.items.map(AlarmJSON.firing))]
        object["nextCursor"] = page.nextCursor.map(JSONValue.string) ?? .null
        return json(.object(object))
    }

    @Sendable static func getFiring(_ api: APIRequest) async throws -> Response {
        let services = try ruleServices(api)
        let caller = try api.caller
        guard let firing = try await services.firings.firing(id: try api.parameter("id"), tenantID: caller.tenantID) else {
            throw APIProblem(RegistryError.notFound("firing"))
        }
        return json(AlarmJSON.firing(firing))
    }

    /// `GET /alarms?status=&severity=&device=&rule=&from=&to=&limit=&cursor=`; `status` and
    /// `severity` take comma-separated lists; `status=open` means active or acknowledged.
    @Sendable static func listAlarms(_ api: APIRequest) async throws -> Response {
        let services = try ruleServices(api)
        let caller = try api.caller
        var filter = AlarmFilter(tenantID: caller.tenantID)
        if let text = api.query("status"), !text.isEmpty {
            var statuses: Set<AlarmStatus> = []
            for part in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
                if part == "open" {
                    statuses.formUnion([.active, .acknowledged])
                } else if let status = AlarmStatus(rawValue: part) {
                    statuses.insert(status)
                } else {
                    throw APIProblem.badRequest("must be open, active, acknowledged or cleared (comma-separated)", field: "status")
                }
            }
            filter.statuses = statuses
        }
        if let text = api.query("severity"), !text.isEmpty {
            var severities: Set<AlarmSeverity> = []
            for part in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
                guard let severity = AlarmSeverity(rawValue: part) else {
                    throw APIProblem.badRequest("must be critical, major, minor, warning or info (comma-separated)", field: "severity")
                }
                severities.insert(severity)
            }
            filter.severities = severities
        }
        filter.deviceID = api.query("device").flatMap { $0.isEmpty ? nil : $0 }
        if let reference = api.query("rule"), !reference.isEmpty { filter.ruleID = try await services.rules.rule(reference, by: caller).id }
        filter.raisedFrom = try api.query("from").map { text in
            guard let date = APIJSON.parseDate(text) else { throw APIProblem.badRequest("must be an ISO 8601 time", field: "from") }
            return date
        }
        filter.raisedBefore = try api.query("to").map { text in
            guard let date = APIJSON.parseDate(text) else { throw APIProblem.badRequest("must be an ISO 8601 time", field: "to") }
            return date
        }
        let limit = try api.integerQuery("limit", in: 1...1000, default: 100) ?? 100
        let cursor = api.query("cursor").flatMap { $0.isEmpty ? nil : $0 }
        if let cursor, RuleListCursor.parse(cursor) == nil { throw APIProblem.badRequest("is not a cursor this API returned", field: "cursor") }
        let page = try await services.alarms.alarms(filter, limit: limit, cursor: cursor, by: caller)
        var object: [String: JSONValue] = ["items": .array(page.items.map(AlarmJSON.alarm))]
        object["nextCursor"] = page.nextCursor.map(JSONValue.string) ?? .null
        return json(.object(object))
    }

    @Sendable static func getAlarm(_ api: APIRequest) async throws -> Response {
        let services = try ruleServices(api)
        return json(AlarmJSON.alarm(try await services.alarms.alarm(try api.parameter("id"), by: try api.caller)))
    }

    @Sendable static func getAlarmHistory(_ api: APIRequest) async throws -> Response {
        let services = try ruleServices(api)
        let history = try await services.alarms.history(try api.parameter("id"), by: try api.caller)
        return json(.object(["items": .array(history.map(AlarmJSON.history))]))
    }

    @Sendable static func acknowledgeAlarm(_ api: APIRequest) async throws -> Response {
        let services = try ruleServices(api)
        return json(AlarmJSON.alarm(try await services.alarms.acknowledge(try api.parameter("id"), by: try api.caller)))
    }

    @Sendable static func clearAlarm(_ api: APIRequest) async throws -> Response {
        let services = try ruleServices(api)
        return json(AlarmJSON.alarm(try await services.alarms.clear(try api.parameter("id"), by: try api.caller)))
    }

    /// `POST /alarms/{id}/comments` with `{"text": "..."}`.
    @Sendable static func commentAlarm(_ api: APIRequest) async throws -> Response {
        let services = try ruleServices(api)
        guard case .object(let object) = try await body(api), case .string(let text)? = object["text"] else {
            throw APIProblem.badRequest("send {\"text\": \"...\"}", field: "text")
        }
        return json(AlarmJSON.alarm(try await services.alarms.comment(try api.parameter("id"), text: text, by: try api.caller)), status: .created)
    }
}

import Foundation
import HTTPTypes
import MeridianCore

/// The OpenAPI 3.1 description of the REST API, served at `/api/v1/openapi.json`. A test
/// checks that its operations and ``APIRoutes/endpoints`` (what the router serves) are exactly
/// the same set.
enum OpenAPIDocument {
    /// The document, encoded once (sorted keys).
    static let json: [UInt8] = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(document)) ?? Data("{}".utf8)) + [UInt8(ascii: "\n")]
    }()

    /// Every documented operation as `METHOD /path` (relative to `/api/v1`).
    static var operations: Set<String> {
        var result = Set<String>()
        for (path, item) in document["paths"]?.entries ?? [:] {
            for method in item.entries.keys { result.insert("\(method.uppercased()) \(path)") }
        }
        return result
    }

    static let document: OpenAPIValue = [
        "openapi": "3.1.0",
        "info": [
            "title": "Meridian REST API",
            "version": .string(MeridianVersion.current),
            "description": .string(
                """
                Tenants, users, API keys, device profiles, devices, credentials, certificates, claiming, \
                provisioning and the audit log. Authenticate with `Authorization: Bearer <token>`: an API key, or \
                the access token from `POST /auth/login`. Every operation names the least role it needs \
                (`x-minimum-role`); anything of another tenant is 404. Errors are `application/problem+json` \
                naming the offending `field`.

                Live stream: `GET /api/v1/stream` is a WebSocket (not listed below) that pushes telemetry as it \
                is stored. Authenticate with the same token (`Authorization: Bearer`, a `token` query parameter, \
                or a first message `{"type":"auth","token":"..."}`), then send \
                `{"type":"subscribe","id":"s1","topic":"telemetry","devices":["<id>"] or "*","keys":["temp"]}`; \
                events arrive as `{"type":"telemetry","subscription":"s1","device":"<id>","samples":{"temp":\
                [{"ts":<ms>,"value":21.5}]}}`. Errors are `{"type":"error","code","id","error","field"}`; a slow \
                reader gets `{"type":"dropped","count":n}`; a bad, expired or revoked token closes with code 4401. \
                With `"topic":"twin"` a subscription gets every twin change of its devices as \
                `{"type":"twin","subscription","device","name","operation","version","actor","patch","desired","reported","delta"}`. \
                The full protocol is in docs/api.md ("Live stream").
                """
            ),
        ],
        "servers": [["url": "/api/v1"]],
        "security": [["bearer": []]],
        "paths": .object(paths),
        "components": [
            "securitySchemes": [
                "bearer": [
                    "type": "http", "scheme": "bearer",
                    "description": "An API key (shown once at creation) or an access token from /auth/login (15 minutes).",
                ]
            ],
            "schemas": .object(schemas),
            "responses": [
                "Problem": [
                    "description": "The request was refused: a problem+json body says why and names the field at fault.",
                    "content": ["application/problem+json": ["schema": ref("Problem")]],
                ],
                "NoContent": ["description": "Done; no body."],
            ],
        ],
    ]

    // MARK: Paths

    private static let paths: [String: OpenAPIValue] = {
        var paths: [String: [String: OpenAPIValue]] = [:]
        func add(_ method: HTTPRequest.Method, _ path: String, _ operation: OpenAPIValue) {
            let access = APIRoutes.endpoints.first { $0.method == method && $0.path == path }?.access
            var operation = operation.entries
            operation["operationId"] = .string(operationID(method, path))
            switch access {
            case .anyone:
                operation["security"] = []
            case .role(let role):
                operation["x-minimum-role"] = .string(role.rawValue)
            case .user(let role):
                operation["x-minimum-role"] = .string(role.rawValue)
                operation["x-users-only"] = true
            case nil:
                break
            }
            let parameters = pathParameters(path)
            if !parameters.isEmpty {
                operation["parameters"] = .array(parameters + (operation["parameters"].map { if case .array(let a) = $0 { a } else { [] } } ?? []))
            }
            var responses = operation["responses"]?.entries ?? [:]
            if responses["4XX"] == nil { responses["4XX"] = ["$ref": "#/components/responses/Problem"] }
            operation["responses"] = .object(responses)
            paths[path, default: [:]][method.rawValue.lowercased()] = .object(operation)
        }

        // Authentication
        add(.post, "/auth/login", op(
            "Log in", tag: "auth",
            description: "Checks a user's password and returns a 15-minute access token and a refresh token. Failed attempts are limited per user name and per client address (429 with Retry-After).",
            body: ref("LoginRequest"), responses: ["200": json(ref("TokenPair"), "Logged in")]
        ))
        add(.post, "/auth/refresh", op(
            "Exchange a refresh token", tag: "auth",
            description: "Returns a new access token and a new refresh token; the old refresh token stops working.",
            body: ref("RefreshRequest"), responses: ["200": json(ref("TokenPair"), "New tokens")]
        ))
        add(.get, "/me", op("Who am I", tag: "auth", responses: ["200": json(ref("Me"), "The caller")]))

        // Tenants, users, API keys
        add(.get, "/tenants", op(
            "List tenants", tag: "tenants",
            description: "A user's tenants; for an API key, its own tenant.",
            responses: ["200": json(list(ref("Tenant")), "Tenants")]
        ))
        add(.post, "/tenants", op(
            "Create a tenant", tag: "tenants",
            description: "A new tenant owned by the calling user (API keys cannot create tenants).",
            body: ref("CreateTenantRequest"), responses: ["201": json(ref("Tenant"), "Created")]
        ))
        add(.get, "/users", op("List the tenant's users", tag: "users", responses: ["200": json(list(ref("User")), "Users")]))
        add(.post, "/users", op(
            "Add a user to the tenant", tag: "users",
            description: "Creates the user when the name is new (then `password` is required). Only owners may grant owner.",
            body: ref("CreateUserRequest"), responses: ["201": json(ref("User"), "Added")]
        ))
        add(.patch, "/users/{id}", op(
            "Change a user's role", tag: "users", body: ref("SetRoleRequest"),
            responses: ["200": json(ref("User"), "Changed")]
        ))
        add(.delete, "/users/{id}", op(
            "Remove a user from the tenant", tag: "users",
            description: "The last owner cannot be removed.", responses: ["204": noContent]
        ))
        add(.get, "/api-keys", op("List API keys", tag: "api-keys", responses: ["200": json(list(ref("APIKey")), "API keys")]))
        add(.post, "/api-keys", op(
            "Create an API key", tag: "api-keys",
            description: "The key itself is in `key`, shown only in this answer. A key's role cannot be above the caller's.",
            body: ref("CreateAPIKeyRequest"), responses: ["201": json(ref("APIKey"), "Created")]
        ))
        add(.delete, "/api-keys/{id}", op("Revoke an API key", tag: "api-keys", responses: ["204": noContent]))

        // Profiles
        add(.get, "/profiles", op("List device profiles", tag: "profiles", responses: ["200": json(list(ref("Profile")), "Profiles")]))
        add(.post, "/profiles", op(
            "Create a device profile", tag: "profiles",
            description: "With provisioning enabled and no secret given, a secret is generated and shown once in `provisioningSecret`.",
            body: ref("ProfileRequest"), responses: ["201": json(ref("Profile"), "Created")]
        ))
        add(.get, "/profiles/{id}", op("Show a device profile", tag: "profiles", responses: ["200": json(ref("Profile"), "The profile")]))
        add(.put, "/profiles/{id}", op(
            "Replace a device profile", tag: "profiles", body: ref("ProfileRequest"),
            responses: ["200": json(ref("Profile"), "Replaced")]
        ))
        add(.delete, "/profiles/{id}", op(
            "Delete a device profile", tag: "profiles", description: "Refused (409) while devices use it.",
            responses: ["204": noContent]
        ))

        // Devices
        add(.get, "/devices", op(
            "List devices", tag: "devices",
            description: "Ordered by id, a page at a time: pass `nextCursor` as `cursor` for the next page (null on the last).",
            parameters: [
                queryParameter("limit", ["type": "integer", "minimum": 1, "maximum": 1000, "default": 100], "Devices per page."),
                queryParameter("cursor", ["type": "string"], "The previous page's nextCursor."),
                queryParameter(
                    "q", ["type": "string", "maxLength": 4096],
                    "A fleet query, e.g. `labels.site = \"plant-3\" AND reported.firmware.version < \"2.0\" AND online` (language in docs/api.md, \"Fleet queries\"). Not combined with label, status, profile or namePrefix. A query that does not parse or type-check is a 400 whose `position` (offset, line, column) points at the mistake."
                ),
                [
                    "name": "label", "in": "query", "required": false, "style": "form", "explode": true,
                    "description": "key=value; repeat for several (all must match).",
                    "schema": ["type": "array", "items": ["type": "string", "pattern": "^[^=]+=.*$"]],
                ],
                queryParameter("status", ["type": "string", "enum": enumeration(DeviceStatus.allCases)], "Only devices with this status."),
                queryParameter("profile", ["type": "string"], "Only devices of this profile (id)."),
                queryParameter("namePrefix", ["type": "string"], "Only devices whose name starts with this."),
            ],
            responses: ["200": json(pageOf(ref("Device")), "A page of devices")]
        ))
        add(.post, "/devices", op(
            "Create a device", tag: "devices", body: ref("CreateDeviceRequest"),
            responses: ["201": json(ref("Device"), "Created")]
        ))
        add(.post, "/devices/import", op(
            "Import devices in bulk", tag: "devices",
            description: "CSV with a header row (`name` required; `id`, `profile`, `labels` as `k=v;k2=v2`, and `label.<key>` columns) or a JSON array of devices. All or nothing: every row is checked first, and a bad row refuses the whole import with `errors` listing each bad row (line, field, reason).",
            requestBody: [
                "required": true,
                "content": [
                    "application/json": ["schema": ["type": "array", "items": ref("CreateDeviceRequest")]],
                    "text/csv": ["schema": ["type": "string"]],
                ],
            ],
            responses: ["201": json(ref("ImportResult"), "Every device was created")]
        ))
        add(.get, "/devices/{id}", op("Show a device", tag: "devices", responses: ["200": json(ref("Device"), "The device")]))
        add(.patch, "/devices/{id}", op(
            "Change a device", tag: "devices",
            description: "Fields left out stay as they are; `labels` replaces all labels; status `disabled` disconnects the device.",
            body: ref("DevicePatch"), responses: ["200": json(ref("Device"), "Changed")]
        ))
        add(.delete, "/devices/{id}", op(
            "Delete a device", tag: "devices", description: "Deletes it with its credentials.",
            responses: ["204": noContent]
        ))
        add(.post, "/devices/{id}/decommission", op(
            "Decommission a device", tag: "devices",
            description: "Revokes every credential and disconnects it; keeps it (status decommissioned) or, with purge, deletes it.",
            body: ref("DecommissionRequest"), bodyRequired: false,
            responses: ["200": json(ref("Device"), "Decommissioned and kept"), "204": noContent]
        ))

        // Presence
        add(.get, "/devices/{id}/presence", op(
            "A device's presence", tag: "presence",
            description: "Online while any of its MQTT connections is open; otherwise when it was last seen and why its last connection ended. Times in milliseconds since 1970.",
            responses: ["200": json(ref("Presence"), "The device's presence")]
        ))
        add(.get, "/devices/{id}/presence/events", op(
            "A device's connection history", tag: "presence",
            description: "Connect and disconnect events, newest first, a page at a time (pass `nextCursor` as `cursor`).",
            parameters: [
                queryParameter("limit", ["type": "integer", "minimum": 1, "maximum": 1000, "default": 100], "Events per page."),
                queryParameter("cursor", ["type": "string"], "The previous page's nextCursor."),
            ],
            responses: ["200": json(pageOf(ref("PresenceEvent")), "A page of events")]
        ))

        // Telemetry
        add(.post, "/devices/{id}/telemetry", op(
            "Send telemetry (device)", tag: "telemetry",
            description: "Authenticated with the device's access token (`Authorization: Bearer <device token>`), not an API key. The body is `{\"temp\": 21.5, \"on\": true}`, `{\"ts\": <ms>, \"values\": {...}}`, or an array of either. Answered once the samples are durable. A payload that cannot be stored is refused whole (400, naming the key).",
            requestBody: ["required": true, "content": ["application/json": ["schema": anyJSON]]],
            responses: ["200": json(ref("TelemetryAccepted"), "Stored durably")]
        ))
        add(.get, "/devices/{id}/telemetry", op(
            "Read a device's telemetry", tag: "telemetry",
            description: "Raw points in `from`...`to` (milliseconds, both included; default the last day), oldest first, at most `limit` per key; when a key has more, the `Next-Cursor` header (and a `Link` header) give the next page. With `interval` one point per bucket (aligned to multiples of the interval since 1970 UTC) aggregated by `agg`; the engine uses its 1-minute and 1-hour rollups where the interval allows. `format=csv` returns `ts,key,value` rows of the whole range. NaN and infinities are the strings `NaN`, `Infinity`, `-Infinity`.",
            parameters: telemetryParameters + [
                queryParameter("limit", ["type": "integer", "minimum": 1, "maximum": 100_000, "default": 1000], "Raw points per key in one page."),
                queryParameter("cursor", string, "The Next-Cursor of the previous page."),
                queryParameter("format", ["type": "string", "enum": ["json", "csv"], "default": "json"], "json, or csv for a download."),
            ],
            responses: [
                "200": [
                    "description": "Points per key",
                    "content": ["application/json": ["schema": ref("TelemetrySeries")], "text/csv": ["schema": string]],
                ]
            ]
        ))
        add(.get, "/devices/{id}/telemetry/latest", op(
            "Latest values of a device", tag: "telemetry",
            parameters: [queryParameter("keys", string, "Comma-separated keys; default all.")],
            responses: ["200": json(ref("LatestValues"), "The newest value of each key")]
        ))
        add(.get, "/devices/{id}/telemetry/keys", op(
            "Keys a device has sent", tag: "telemetry",
            responses: ["200": json(object(required: ["keys"], ["keys": ["type": "array", "items": string]]), "Keys, sorted")]
        ))
        add(.get, "/telemetry", op(
            "Read several devices' telemetry", tag: "telemetry",
            description: "As for one device, per device (one page of raw points per key). Devices of other tenants or without telemetry are absent.",
            parameters: [devicesParameter] + telemetryParameters + [
                queryParameter("limit", ["type": "integer", "minimum": 1, "maximum": 100_000, "default": 1000], "Raw points per key and device.")
            ],
            responses: ["200": json(["type": "object", "additionalProperties": ref("TelemetrySeries")], "Per device, points per key")]
        ))
        add(.get, "/telemetry/latest", op(
            "Latest values of several devices", tag: "telemetry",
            parameters: [devicesParameter, queryParameter("keys", string, "Comma-separated keys; default all.")],
            responses: ["200": json(["type": "object", "additionalProperties": ref("LatestValues")], "Per device, the newest value of each key")]
        ))
        add(.get, "/telemetry/retention", op(
            "The tenant's telemetry retention", tag: "telemetry",
            description: "Milliseconds each tier is kept (null: forever) and where the setting comes from.",
            responses: ["200": json(ref("Retention"), "Retention")]
        ))
        add(.put, "/telemetry/retention", op(
            "Set the tenant's telemetry retention", tag: "telemetry",
            description: "`{\"raw\": ms|null, \"minute\": ms|null, \"hour\": ms|null}` (null: forever), or `{\"inherit\": true}` for the server default. Device profiles may override it.",
            body: ref("RetentionRequest"), responses: ["200": json(ref("Retention"), "Retention")]
        ))
        add(.get, "/profiles/{id}/retention", op(
            "A device profile's telemetry retention", tag: "telemetry",
            responses: ["200": json(ref("Retention"), "Retention (the profile's, else the tenant's, else the default)")]
        ))
        add(.put, "/profiles/{id}/retention", op(
            "Set a device profile's telemetry retention", tag: "telemetry",
            description: "As for the tenant; `{\"inherit\": true}` falls back to the tenant's.",
            body: ref("RetentionRequest"), responses: ["200": json(ref("Retention"), "Retention")]
        ))

        // Twins
        let ifMatch: OpenAPIValue = [
            "name": "If-Match", "in": "header", "required": false, "schema": string,
            "description": "The twin version the change is based on (`\"3\"`, or `3`); 409 when it is not the current version.",
        ]
        let twinResponse: OpenAPIValue = [
            "description": "The twin; `ETag` is its version",
            "headers": ["ETag": ["schema": string, "description": "The version, quoted: `\"3\"`"]],
            "content": ["application/json": ["schema": ref("Twin")]],
        ]
        let historyParameters = [
            queryParameter("limit", ["type": "integer", "minimum": 1, "maximum": 1000, "default": 100], "Entries in one page."),
            queryParameter("cursor", string, "The nextCursor of the previous page."),
        ]
        for (prefix, what) in [("/devices/{id}/twin", "the device's twin"), ("/devices/{id}/twins/{name}", "a named twin")] {
            add(.get, prefix, op(
                "Read \(what)", tag: "twins",
                description: "`desired` (set by operators), `reported` (set by the device), `delta` (desired members that differ from reported, members not reported yet included), `metadata` (`{\"timestamp\": ms}` per leaf), `version`. With `at` the twin as it was at that time (404 before its first version or beyond the history's retention). A device's default twin always exists (version 0 before the first change); a named twin is 404 until written.",
                parameters: [queryParameter("at", string, "RFC 3339 time or milliseconds since 1970.")],
                responses: ["200": twinResponse]
            ))
            add(.patch, prefix, op(
                "Change the desired state of \(what)", tag: "twins",
                description: "A JSON merge patch (RFC 7386) of `desired`: members set to null are removed, arrays are replaced whole. The device gets the delta on its twin topics (native, AWS shadow, ThingsBoard shared attributes). 400 for a patch nesting deeper than `twin.max_depth`, 413 for a twin over `twin.max_document_bytes`, 409 when `If-Match` is not the current version.",
                parameters: [ifMatch], body: ref("TwinPatch"), responses: ["200": twinResponse]
            ))
            add(.delete, prefix, op(
                "Delete \(what)", tag: "twins",
                description: "Empties desired, reported and metadata; the version counter is kept (the next change is version + 1). 404 when there is nothing to delete.",
                parameters: [ifMatch], responses: ["204": noContent]
            ))
            add(.get, prefix + "/history", op(
                "History of \(what)", tag: "twins",
                description: "Every version, newest first: who changed it (actor kind and id), when, the patch, and the state after it.",
                parameters: historyParameters, responses: ["200": json(ref("TwinHistory"), "One page of history")]
            ))
        }
        add(.get, "/devices/{id}/twins", op(
            "Names of a device's twins", tag: "twins", description: "The twins that exist; the default twin is \"\".",
            responses: ["200": json(object(required: ["items"], ["items": ["type": "array", "items": string]]), "Names")]
        ))

        // Credentials, certificates, CA
        add(.get, "/devices/{id}/credentials", op(
            "List a device's credentials", tag: "credentials", description: "Never the secrets.",
            responses: ["200": json(list(ref("Credential")), "Credentials")]
        ))
        add(.post, "/devices/{id}/credentials", op(
            "Issue a credential", tag: "credentials",
            description: "`token`: an access token (given, or generated), shown only here. `password`: a user name and password. `certificate`: with `csr`, a certificate signed by the tenant's CA; with `certificate`, an existing certificate registered by fingerprint; with neither, a key pair generated for the device (`privateKey`, shown only here).",
            body: ref("CreateCredentialRequest"), responses: ["201": json(ref("IssuedCredential"), "Issued")]
        ))
        add(.delete, "/devices/{id}/credentials/{credentialId}", op(
            "Revoke a credential", tag: "credentials",
            description: "Connections that used it are closed at once.", responses: ["204": noContent]
        ))
        add(.post, "/devices/{id}/certificates", op(
            "Issue a device certificate", tag: "credentials",
            description: "Same as a certificate credential: from a CSR, or with a generated key pair when no CSR is given.",
            body: ref("CertificateRequest"), bodyRequired: false,
            responses: ["201": json(ref("IssuedCredential"), "Issued")]
        ))
        add(.get, "/ca", op(
            "List the tenant's certificate authorities", tag: "credentials",
            description: "The built-in CA is created on first use. Certificates only, never keys.",
            responses: ["200": json(list(ref("CertificateAuthority")), "Certificate authorities")]
        ))
        add(.post, "/ca", op(
            "Register an external certificate authority", tag: "credentials",
            body: ref("RegisterCARequest"), responses: ["201": json(ref("CertificateAuthority"), "Registered")]
        ))

        // Claiming and provisioning
        add(.post, "/devices/{id}/claim-code", op(
            "Set a device's claim code", tag: "claiming",
            description: "Replaces the code; valid for durationSeconds.", body: ref("ClaimCodeRequest"),
            responses: ["204": noContent]
        ))
        add(.post, "/claims", op(
            "Claim a device", tag: "claiming",
            description: "Moves the device with this id (or name) and unexpired claim code into the caller's tenant; its old credentials are revoked.",
            body: ref("ClaimRequest"), responses: ["200": json(ref("Device"), "Claimed")]
        ))
        add(.post, "/provision", op(
            "Provision a device (ThingsBoard-compatible)", tag: "provisioning",
            description: "A device registers itself with its profile's provisioning key and secret. No authentication header.",
            body: ref("ProvisionRequest"),
            responses: [
                "200": json(ref("ProvisionResult"), "Provisioned"),
                "4XX": json(ref("ProvisionFailure"), "Refused"),
            ]
        ))

        // Audit
        add(.get, "/audit", op(
            "List audit entries", tag: "audit", description: "The tenant's entries, newest first.",
            parameters: [
                queryParameter("limit", ["type": "integer", "minimum": 1, "maximum": 1000, "default": 100], "Entries per page."),
                queryParameter("before", ["type": "integer", "minimum": 1], "Only entries with a lower sequence (the previous page's nextCursor)."),
            ],
            responses: ["200": json(pageOf(ref("AuditEntry")), "A page of entries")]
        ))
        add(.get, "/audit/verify", op(
            "Verify the audit chain", tag: "audit", description: "Walks the whole hash chain.",
            responses: ["200": json(ref("AuditVerification"), "The outcome")]
        ))
        // Commands
        add(.post, "/devices/{id}/commands", op(
            "Send a command to a device", tag: "commands",
            description: "`{\"method\": \"reboot\", \"params\": {...}, \"timeoutMs\": 5000, \"persistent\": false, \"oneWay\": false, \"expiresInMs\": 60000}`. A two-way command waits for the device's answer: 200 with `status` `succeeded` (and `response`) or `failed` (and `error`); 504 with the command (`status` `timed_out`) when no answer came within `timeoutMs` of sending. A one-way command answers 202 once sent. A persistent command to an offline device answers 202 with `status` `queued`; it is sent when the device subscribes to its command topic, unless it expires first (`expiresInMs`, at most `commands.max_expiry_ms`). A non-persistent command to a device that is not connected is 409 (device-offline). Past `commands.rate_per_device` or `commands.rate_per_tenant` a minute: 429 with Retry-After.",
            body: ref("SendCommandRequest"),
            responses: [
                "200": json(ref("Command"), "The two-way command finished (succeeded or failed)"),
                "202": json(ref("Command"), "One-way: sent; persistent to an offline device: queued"),
                "504": json(ref("Command"), "No answer within timeoutMs: timed_out"),
            ]
        ))
        add(.get, "/devices/{id}/commands", op(
            "List a device's commands", tag: "commands", description: "Newest first.",
            parameters: [
                queryParameter("limit", ["type": "integer", "minimum": 1, "maximum": 1000, "default": 100], "Commands per page."),
                queryParameter("cursor", string, "The nextCursor of the previous page."),
            ],
            responses: ["200": json(pageOf(ref("Command")), "A page of commands")]
        ))
        add(.get, "/devices/{id}/commands/{commandId}", op(
            "A command and its state", tag: "commands",
            responses: ["200": json(ref("Command"), "The command")]
        ))
        // Rules, firings, alarms
        let ruleDoc = "A rule: `name` (unique in the tenant), `description`, `enabled`, `scope` (`{\"tenant\": true}`, `{\"device\": id}`, `{\"profile\": id or name}` or `{\"query\": fleet query}`), `condition` (exactly one of `threshold`, `expression`, `noData`, `presence`, `anomaly`), `alarm` (`severity`, `message` template) and `actions` (`webhook`, `republish`, `command`, `twin`, `telemetry`, each with `when`: raise, clear or both). See docs/rules.md. Errors are 422 problems whose `field` names the offending field (`condition.threshold.op`) and, for expressions, whose detail gives line:column."
        add(.get, "/rules", op("List rules", tag: "rules", description: "By name. Webhook secrets are never shown (`secretSet`).", responses: ["200": json(list(ref("Rule")), "The tenant's rules")]))
        add(.post, "/rules", op("Create a rule", tag: "rules", description: ruleDoc, body: ref("RuleDefinition"), responses: ["201": json(ref("Rule"), "Created (version 1)")]))
        add(.post, "/rules/apply", op(
            "Apply a set of rules", tag: "rules",
            description: "`{\"rules\": [...], \"prune\": false}`: upserts by name (a rule equal to the stored one stays at its version); with prune, deletes the tenant's rules not in the set. Every rule is checked first: one mistake (field `rules[i]....`) changes nothing. What `meridian rule apply -f rules.yaml` sends.",
            body: ["type": "object", "required": ["rules"], "properties": ["rules": ["type": "array", "items": ref("RuleDefinition")], "prune": ["type": "boolean", "default": false]]],
            responses: ["200": json(ref("RuleApplyResult"), "What was created, updated, unchanged and deleted, by name")]
        ))
        add(.post, "/rules/dry-run", op(
            "Evaluate a rule over stored history", tag: "rules",
            description: "`{\"rule\": {...}}` or `{\"ruleId\": id or name}`, optional `devices` (ids; default the rule's scope, at most 1,000 devices), `from` and `to` (ISO 8601 or milliseconds; default the last 24 hours). Returns when the rule would have raised and cleared on each device. Nothing is raised, recorded or acted on.",
            body: ["type": "object", "properties": ["rule": ref("RuleDefinition"), "ruleId": string, "devices": ["type": "array", "items": string], "from": anyJSON, "to": anyJSON]],
            responses: ["200": json(ref("RuleDryRun"), "The would-have-fired events")]
        ))
        add(.get, "/rules/{id}", op("A rule", tag: "rules", description: "By id or name.", responses: ["200": json(ref("Rule"), "The rule")]))
        add(.put, "/rules/{id}", op(
            "Replace a rule", tag: "rules",
            description: "A new version. `If-Match: <version>` refuses the write with 409 when the rule changed meanwhile. A webhook sent back with `secretSet: true` and no secret keeps its secret. A changed scope or condition restarts the rule's evaluation and clears its open alarms.",
            body: ref("RuleDefinition"), responses: ["200": json(ref("Rule"), "The new version")]
        ))
        add(.patch, "/rules/{id}", op(
            "Enable or disable a rule", tag: "rules", description: "`{\"enabled\": false}`. Disabling clears the rule's open alarms.",
            body: ["type": "object", "required": ["enabled"], "properties": ["enabled": ["type": "boolean"]]],
            responses: ["200": json(ref("Rule"), "The new version")]
        ))
        add(.delete, "/rules/{id}", op("Delete a rule", tag: "rules", description: "With its versions; its open alarms are cleared.", responses: ["204": noContent]))
        add(.get, "/rules/{id}/versions", op("A rule's versions", tag: "rules", description: "Newest first.", responses: ["200": json(list(ref("Rule")), "Every version")]))
        let firingParameters = [
            queryParameter("device", string, "Only this device's firings."),
            queryParameter("limit", ["type": "integer", "minimum": 1, "maximum": 1000, "default": 100], "Firings per page."),
            queryParameter("cursor", string, "The nextCursor of the previous page."),
        ]
        add(.get, "/rules/{id}/firings", op("A rule's firings", tag: "rules", description: "Newest first.", parameters: firingParameters, responses: ["200": json(pageOf(ref("Firing")), "A page of firings")]))
        add(.get, "/firings", op(
            "Firings", tag: "rules", description: "Every raise and clear of every rule, newest first: the input values and what each action did.",
            parameters: [queryParameter("rule", string, "Only this rule's (id or name).")] + firingParameters,
            responses: ["200": json(pageOf(ref("Firing")), "A page of firings")]
        ))
        add(.get, "/firings/{id}", op("A firing: why it fired and what it did", tag: "rules", responses: ["200": json(ref("Firing"), "The firing")]))
        add(.get, "/alarms", op(
            "List alarms", tag: "alarms", description: "Newest raised first.",
            parameters: [
                queryParameter("status", string, "Comma-separated: open (active or acknowledged), active, acknowledged, cleared."),
                queryParameter("severity", string, "Comma-separated: critical, major, minor, warning, info."),
                queryParameter("device", string, "Only this device's."),
                queryParameter("rule", string, "Only this rule's (id or name)."),
                queryParameter("from", dateTime, "Raised at or after."),
                queryParameter("to", dateTime, "Raised before."),
                queryParameter("limit", ["type": "integer", "minimum": 1, "maximum": 1000, "default": 100], "Alarms per page."),
                queryParameter("cursor", string, "The nextCursor of the previous page."),
            ],
            responses: ["200": json(pageOf(ref("Alarm")), "A page of alarms")]
        ))
        add(.get, "/alarms/{id}", op("An alarm", tag: "alarms", responses: ["200": json(ref("Alarm"), "The alarm")]))
        add(.get, "/alarms/{id}/history", op("An alarm's history", tag: "alarms", description: "Oldest first: raised, repeated, acknowledged, commented, cleared, with who and when.", responses: ["200": json(list(ref("AlarmHistoryEntry")), "The changes")]))
        add(.post, "/alarms/{id}/acknowledge", op("Acknowledge an alarm", tag: "alarms", description: "409 when it is already acknowledged or cleared.", responses: ["200": json(ref("Alarm"), "Acknowledged")]))
        add(.post, "/alarms/{id}/clear", op("Clear an alarm", tag: "alarms", description: "By hand; 409 when it is already cleared.", responses: ["200": json(ref("Alarm"), "Cleared")]))
        add(.post, "/alarms/{id}/comments", op(
            "Comment on an alarm", tag: "alarms", description: "`{\"text\": \"...\"}`, at most 4,096 characters; open alarms only.",
            body: ["type": "object", "required": ["text"], "properties": ["text": ["type": "string", "minLength": 1, "maxLength": 4096]]],
            responses: ["201": json(ref("Alarm"), "The alarm with the comment")]
        ))
        // Webhook dead letters
        add(.get, "/webhooks/dead-letters", op(
            "List webhook dead letters", tag: "webhooks",
            description: "Webhooks of the tenant's rules that could not be delivered (every attempt failed, or the endpoint refused the request with a 4xx), newest first. A dead letter never shows its secret: `secretSet` says whether the request is signed.",
            parameters: [
                queryParameter("rule", string, "Only this rule's dead letters (rule id)."),
                queryParameter("limit", ["type": "integer", "minimum": 1, "maximum": 1000, "default": 100], "Dead letters per page."),
                queryParameter("cursor", string, "The nextCursor of the previous page."),
            ],
            responses: ["200": json(pageOf(ref("WebhookDeadLetter")), "A page of dead letters")]
        ))
        add(.get, "/webhooks/dead-letters/{id}", op(
            "A webhook dead letter", tag: "webhooks", responses: ["200": json(ref("WebhookDeadLetter"), "The dead letter")]
        ))
        add(.post, "/webhooks/dead-letters/{id}/replay", op(
            "Replay a webhook dead letter", tag: "webhooks",
            description: "Sends the request once more, signed with a new timestamp and the same `X-Meridian-Delivery` id. Delivered: the dead letter is deleted (`{\"status\": \"delivered\", \"attempts\": 1, \"httpStatus\": 200}`). Failed: it stays, with its attempts, last error and `replays` updated (`{\"status\": \"deadLettered\", ...}`). Either way the answer is 200.",
            responses: ["200": json(ref("WebhookOutcome"), "What the replay came to")]
        ))
        add(.delete, "/webhooks/dead-letters/{id}", op(
            "Delete a webhook dead letter", tag: "webhooks", responses: ["204": noContent]
        ))
        add(.get, "/openapi.json", op(
            "This document", tag: "meta",
            responses: ["200": ["description": "OpenAPI 3.1", "content": ["application/json": ["schema": ["type": "object"]]]]]
        ))
        return paths.mapValues { .object($0) }
    }()

    // MARK: Schemas

    private static let schemas: [String: OpenAPIValue] = ruleSchemas.merging(baseSchemas) { rule, _ in rule }

    private static let ruleSchemas: [String: OpenAPIValue] = [
        "RuleDefinition": object(
            required: ["name", "condition"],
            [
                "name": ["type": "string", "minLength": 1, "maxLength": 128], "description": string, "enabled": ["type": "boolean", "default": true],
                "scope": ["type": "object", "description": "One of tenant (true), device, profile, query."],
                "condition": ["type": "object", "description": "One of threshold, expression, noData, presence, anomaly."],
                "alarm": ["type": "object", "properties": ["severity": ["type": "string", "enum": enumeration(AlarmSeverity.allCases)], "message": string]],
                "actions": ["type": "array", "maxItems": 16, "items": ["type": "object", "required": ["type"], "properties": ["type": ["type": "string", "enum": ["webhook", "republish", "command", "twin", "telemetry"]], "when": ["type": "string", "enum": ["raise", "clear", "both"]]]]],
            ]
        ),
        "Rule": ["allOf": [ref("RuleDefinition"), object(required: ["id", "version", "createdAt", "updatedAt"], ["id": string, "version": ["type": "integer", "minimum": 1], "createdAt": dateTime, "updatedAt": dateTime, "updatedBy": string])]],
        "RuleApplyResult": object(
            required: ["created", "updated", "unchanged", "deleted"],
            ["created": ["type": "array", "items": string], "updated": ["type": "array", "items": string], "unchanged": ["type": "array", "items": string], "deleted": ["type": "array", "items": string]]
        ),
        "RuleDryRun": object(
            required: ["from", "to", "devices", "samples", "truncated", "firings"],
            [
                "from": dateTime, "to": dateTime, "devices": ["type": "integer"], "samples": ["type": "integer"], "truncated": ["type": "boolean"],
                "firings": ["type": "array", "items": object(required: ["device", "event", "at", "message"], ["device": string, "event": ["type": "string", "enum": ["raise", "clear"]], "at": ["type": "integer"], "time": dateTime, "message": string, "values": ["type": "object"]])],
            ]
        ),
        "Firing": object(
            required: ["id", "rule", "device", "event", "at", "message", "values", "actions"],
            [
                "id": string, "rule": ["type": "object", "properties": ["id": string, "name": string, "version": ["type": "integer"]]], "device": string,
                "event": ["type": "string", "enum": ["raise", "clear"]], "at": dateTime, "recordedAt": dateTime, "message": string, "values": ["type": "object"],
                "alarm": string,
                "actions": ["type": "array", "items": object(required: ["index", "type", "status", "detail"], ["index": ["type": "integer"], "type": string, "status": ["type": "string", "enum": enumeration([RuleActionOutcome.Status.pending, .succeeded, .failed, .dropped, .deadLettered])], "detail": string, "attempts": ["type": "integer"], "at": dateTime])],
            ]
        ),
        "Alarm": object(
            required: ["id", "rule", "device", "severity", "status", "message", "count", "raisedAt"],
            [
                "id": string, "rule": string, "ruleVersion": ["type": "integer"], "device": string, "severity": ["type": "string", "enum": enumeration(AlarmSeverity.allCases)],
                "status": ["type": "string", "enum": enumeration(AlarmStatus.allCases)], "message": string, "inputs": ["type": "object"], "lastInputs": ["type": "object"],
                "count": ["type": "integer"], "raisedAt": dateTime, "lastRaisedAt": dateTime, "acknowledgedAt": dateTime, "acknowledgedBy": ["type": "object"],
                "clearedAt": dateTime, "clearedBy": ["type": "object"], "comments": ["type": "array", "items": ["type": "object"]],
            ]
        ),
        "AlarmHistoryEntry": object(
            required: ["change", "at", "by", "status", "severity", "count"],
            ["change": ["type": "string", "enum": ["raised", "repeated", "acknowledged", "cleared", "commented"]], "at": dateTime, "by": ["type": "object"], "status": string, "severity": string, "count": ["type": "integer"], "comment": string]
        ),
    ]

    private static let baseSchemas: [String: OpenAPIValue] = [
        "SendCommandRequest": object(
            required: ["method"],
            [
                "method": ["type": "string", "minLength": 1, "maxLength": 128, "description": "No / + # $; not request or response."],
                "params": anyJSON,
                "timeoutMs": ["type": "integer", "minimum": 1, "description": "Default commands.default_timeout_ms; at most commands.max_timeout_ms."],
                "persistent": ["type": "boolean", "default": false],
                "oneWay": ["type": "boolean", "default": false],
                "expiresInMs": ["type": "integer", "minimum": 1, "description": "Persistent commands only; default and maximum commands.max_expiry_ms."],
            ]
        ),
        "Command": object(
            required: ["id", "deviceId", "method", "params", "oneWay", "persistent", "timeoutMs", "status", "timestamps", "createdAt", "actor"],
            [
                "id": string, "deviceId": string, "method": string, "params": anyJSON, "oneWay": ["type": "boolean"],
                "persistent": ["type": "boolean"], "timeoutMs": ["type": "integer"], "expiresAt": dateTime,
                "status": ["type": "string", "enum": enumeration(CommandState.allCases)],
                "timestamps": ["type": "object", "description": "The time each state was reached, by state.", "additionalProperties": dateTime],
                "createdAt": dateTime,
                "convention": ["type": "string", "enum": enumeration(CommandConvention.allCases), "description": "How it was sent."],
                "response": anyJSON, "error": string, "actor": string,
            ]
        ),
        "WebhookDeadLetter": object(
            required: [
                "id", "deliveryId", "url", "body", "secretSet", "timeoutMs", "maxAttempts", "attempts", "lastError", "firstAttemptAt",
                "lastAttemptAt", "createdAt", "replays",
            ],
            [
                "id": string, "ruleId": string, "deviceId": string, "firingId": string,
                "deliveryId": ["type": "string", "description": "Sent as X-Meridian-Delivery on every attempt and replay."],
                "url": ["type": "string", "description": "Where it is sent (a password in the URL shows as ***)."],
                "body": anyJSON, "secretSet": ["type": "boolean", "description": "Whether the request is signed (the secret is never shown)."],
                "timeoutMs": ["type": "integer"], "maxAttempts": ["type": "integer"],
                "attempts": ["type": "integer", "description": "Attempts in all, replays included (0: the server stopped before sending it)."],
                "lastError": ["type": "string", "description": "HTTP 500, timed out after 5 s, connection refused, ..."],
                "lastStatus": ["type": "integer", "description": "The HTTP status of the last attempt, when the endpoint answered."],
                "firstAttemptAt": dateTime, "lastAttemptAt": dateTime, "createdAt": dateTime,
                "replays": ["type": "integer", "description": "Replays that failed."],
            ]
        ),
        "WebhookOutcome": object(
            required: ["status"],
            [
                "status": ["type": "string", "enum": ["delivered", "deadLettered"]],
                "attempts": ["type": "integer"], "httpStatus": ["type": "integer"], "error": string,
                "deadLetter": ref("WebhookDeadLetter"),
            ]
        ),
        "TelemetryValue": ["description": "A number, boolean or string (NaN and infinities as the strings NaN, Infinity, -Infinity).", "type": ["number", "boolean", "string"]],
        "TelemetryPoint": object(required: ["ts", "value"], ["ts": ["type": "integer"], "value": ref("TelemetryValue")]),
        "TelemetrySeries": ["type": "object", "additionalProperties": ["type": "array", "items": ref("TelemetryPoint")]],
        "LatestValues": ["type": "object", "additionalProperties": ref("TelemetryPoint")],
        "TelemetryAccepted": object(required: ["accepted"], ["accepted": ["type": "integer", "minimum": 1]]),
        "Twin": object(
            required: ["desired", "reported", "delta", "version", "metadata"],
            [
                "desired": ["type": "object"], "reported": ["type": "object"], "delta": ["type": "object"],
                "version": ["type": "integer", "minimum": 0],
                "metadata": object(required: ["desired", "reported"], ["desired": ["type": "object"], "reported": ["type": "object"]]),
                "timestamp": ["type": "integer", "description": "When this version was made (ms)."],
            ]
        ),
        "TwinPatch": object(required: ["desired"], ["desired": ["type": ["object", "null"], "description": "A JSON merge patch; null clears desired."]]),
        "TwinHistory": object(
            required: ["items", "nextCursor"],
            [
                "items": [
                    "type": "array",
                    "items": object(
                        required: ["version", "timestamp", "operation", "actor"],
                        [
                            "version": ["type": "integer"], "timestamp": ["type": "integer"],
                            "operation": ["type": "string", "enum": ["update", "delete"]],
                            "actor": object(required: ["kind", "id"], ["kind": string, "id": string]),
                            "patch": ["description": "`{\"desired\": ..., \"reported\": ...}` as sent; null for a delete."],
                            "desired": ["type": "object"], "reported": ["type": "object"],
                        ]
                    ),
                ],
                "nextCursor": ["type": ["string", "null"]],
            ]
        ),
        "Retention": object(
            required: ["raw", "minute", "hour", "source"],
            [
                "raw": nullable(["type": "integer", "minimum": 60_000]), "minute": nullable(["type": "integer", "minimum": 60_000]),
                "hour": nullable(["type": "integer", "minimum": 60_000]), "source": ["type": "string", "enum": ["default", "tenant", "profile"]],
            ]
        ),
        "RetentionRequest": [
            "type": "object",
            "properties": [
                "raw": nullable(["type": "integer", "minimum": 60_000]), "minute": nullable(["type": "integer", "minimum": 60_000]),
                "hour": nullable(["type": "integer", "minimum": 60_000]), "inherit": ["type": "boolean"],
            ],
        ],
        "Problem": object(
            required: ["type", "title", "status", "detail"],
            [
                "type": ["type": "string", "description": "urn:meridian:problem:<kind>"],
                "title": string, "status": ["type": "integer"], "detail": string,
                "field": ["type": "string", "description": "The offending input: a JSON field (dotted path), query parameter or header."],
                "errors": [
                    "type": "array",
                    "items": object(required: ["line", "field", "reason"], ["line": ["type": "integer"], "field": string, "reason": string]),
                ],
                "position": object(
                    required: ["offset", "line", "column"],
                    ["offset": ["type": "integer"], "line": ["type": "integer"], "column": ["type": "integer"]]
                ),
            ]
        ),
        "Role": ["type": "string", "enum": enumeration(Role.allCases)],
        "Presence": object(
            required: ["online", "lastSeen", "since", "address", "protocol", "transport", "connections", "lastDisconnectReason"],
            [
                "online": ["type": "boolean"],
                "lastSeen": nullable(["type": "integer", "description": "Milliseconds since 1970: now while online; null for a device never seen."]),
                "since": nullable(["type": "integer", "description": "Online since, or offline since (milliseconds since 1970)."]),
                "address": nullable(["type": "string", "description": "ip:port of the newest (online) or last (offline) connection."]),
                "protocol": nullable(["type": "string", "enum": ["mqtt-3.1", "mqtt-3.1.1", "mqtt-5.0"]]),
                "transport": nullable(["type": "string", "enum": ["tcp", "tls", "ws", "wss"]]),
                "connections": ["type": "integer", "description": "Open connections."],
                "lastDisconnectReason": nullable(["type": "string", "enum": enumeration(PresenceReason.allCases)]),
            ]
        ),
        "PresenceEvent": object(
            required: ["sequence", "device", "event", "time", "protocol", "transport", "connection", "online"],
            [
                "sequence": ["type": "integer"], "device": string, "event": ["type": "string", "enum": ["connected", "disconnected"]],
                "time": ["type": "integer", "description": "Milliseconds since 1970."], "address": string,
                "protocol": string, "transport": string, "connection": ["type": "integer"],
                "reason": ["type": "string", "enum": enumeration(PresenceReason.allCases)],
                "reasonCode": ["type": "integer", "description": "The MQTT reason code sent or received, if any."],
                "online": ["type": "boolean", "description": "Whether the device is online after this event."],
            ]
        ),
        "LoginRequest": object(
            required: ["username", "password"],
            ["username": username, "password": ["type": "string", "maxLength": 1024], "tenant": ["type": "string", "description": "Tenant id or name; the first tenant when absent."]]
        ),
        "RefreshRequest": object(required: ["refreshToken"], ["refreshToken": string]),
        "TokenPair": object(
            required: ["accessToken", "tokenType", "expiresIn", "refreshToken", "tenant", "role", "tenants"],
            [
                "accessToken": string, "tokenType": ["type": "string", "const": "Bearer"],
                "expiresIn": ["type": "integer", "description": "Seconds."], "refreshToken": string, "tenant": string,
                "role": ref("Role"), "tenants": ["type": "array", "items": ref("Tenant")],
            ]
        ),
        "Me": object(
            required: ["kind", "id", "tenant", "role"],
            ["kind": ["type": "string", "enum": ["user", "api-key"]], "id": string, "username": string, "tenant": string, "role": ref("Role")]
        ),
        "Tenant": object(required: ["id", "name", "createdAt"], ["id": string, "name": string, "createdAt": dateTime, "role": ref("Role")]),
        "CreateTenantRequest": object(required: ["name"], ["name": name]),
        "User": object(
            required: ["id", "username", "role", "createdAt", "disabled"],
            ["id": string, "username": string, "role": ref("Role"), "createdAt": dateTime, "disabled": ["type": "boolean"]]
        ),
        "CreateUserRequest": object(required: ["username", "role"], ["username": username, "password": password, "role": ref("Role")]),
        "SetRoleRequest": object(required: ["role"], ["role": ref("Role")]),
        "APIKey": object(
            required: ["id", "name", "role", "prefix", "createdAt", "expiresAt", "lastUsedAt", "revokedAt"],
            [
                "id": string, "name": string, "role": ref("Role"), "prefix": string, "createdAt": dateTime,
                "expiresAt": nullable(dateTime), "lastUsedAt": nullable(dateTime), "revokedAt": nullable(dateTime),
                "key": ["type": "string", "description": "The key itself: only in the answer to its creation."],
            ]
        ),
        "CreateAPIKeyRequest": object(required: ["name", "role"], ["name": name, "role": ref("Role"), "expiresAt": dateTime]),
        "Profile": object(
            required: ["id", "name", "description", "transport", "provisioning", "createdAt"],
            [
                "id": string, "name": string, "description": string, "transport": anyJSON,
                "provisioning": object(
                    required: ["mode", "key"],
                    ["mode": ["type": "string", "enum": enumeration(ProvisioningSettings.Mode.allCases)], "key": nullable(string)]
                ),
                "createdAt": dateTime,
                "provisioningSecret": ["type": "string", "description": "Only when generated by this request."],
            ]
        ),
        "ProfileRequest": object(
            required: ["name"],
            [
                "name": name, "description": ["type": "string", "maxLength": 4096], "transport": anyJSON,
                "provisioningMode": ["type": "string", "enum": enumeration(ProvisioningSettings.Mode.allCases)],
                "provisioningKey": string, "provisioningSecret": string,
            ]
        ),
        "Labels": [
            "type": "object", "maxProperties": 64,
            "propertyNames": ["type": "string", "pattern": "^[A-Za-z0-9._/-]{1,128}$"],
            "additionalProperties": ["type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[^\\u0000-\\u001f\\u007f]+$"],
        ],
        "Device": object(
            required: ["id", "name", "profileId", "labels", "metadata", "status", "createdAt", "lastSeenAt"],
            [
                "id": string, "name": string, "profileId": nullable(string), "labels": ref("Labels"), "metadata": anyJSON,
                "status": ["type": "string", "enum": enumeration(DeviceStatus.allCases)], "createdAt": dateTime,
                "lastSeenAt": nullable(dateTime),
            ]
        ),
        "CreateDeviceRequest": object(
            required: ["name"],
            [
                "id": [
                    "type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$",
                    "description": "Optional: 1-64 letters, digits, - _ . :; generated when absent.",
                ],
                "name": name, "profile": ["type": "string", "description": "Profile id or name."],
                "labels": ref("Labels"), "metadata": anyJSON,
            ]
        ),
        "DevicePatch": object(
            required: [],
            [
                "name": name, "profile": ["type": "string", "description": "Profile id or name; empty removes it."],
                "labels": ref("Labels"), "metadata": anyJSON,
                "status": ["type": "string", "enum": ["active", "disabled"]],
            ]
        ),
        "DecommissionRequest": object(required: [], ["purge": ["type": "boolean", "default": false]]),
        "ImportResult": object(
            required: ["created", "devices"],
            ["created": ["type": "integer"], "devices": ["type": "array", "items": ref("Device")]]
        ),
        "Credential": object(
            required: ["id", "deviceId", "type", "createdAt", "expiresAt", "revokedAt"],
            credentialProperties
        ),
        "IssuedCredential": object(
            required: ["id", "deviceId", "type", "createdAt", "expiresAt", "revokedAt"],
            credentialProperties.merging([
                "token": ["type": "string", "description": "token: shown only here."],
                "privateKey": ["type": "string", "description": "Generated certificate: the device's key (PKCS#8 PEM), shown only here."],
                "caCertificate": ["type": "string", "description": "certificate: the issuing CA (PEM)."],
            ])
        ),
        "CreateCredentialRequest": object(
            required: ["type"],
            [
                "type": ["type": "string", "enum": enumeration(CredentialType.allCases)],
                "token": token.merging(["description": "token: 16-256 characters; generated when absent."]),
                "username": username.merging(["description": "password: the MQTT user name."]),
                "password": password.merging(["description": "password: 8-1024 characters."]),
                "csr": ["type": "string", "description": "certificate: a PEM certificate signing request."],
                "certificate": ["type": "string", "description": "certificate: an existing PEM certificate to register."],
                "validityDays": ["type": "integer", "minimum": 1, "maximum": 3650],
                "expiresAt": dateTime,
            ]
        ),
        "CertificateRequest": object(
            required: [],
            [
                "csr": ["type": "string", "description": "A PEM certificate signing request; a key pair is generated when absent."],
                "certificate": ["type": "string", "description": "An existing PEM certificate to register."],
                "validityDays": ["type": "integer", "minimum": 1, "maximum": 3650],
            ]
        ),
        "CertificateAuthority": object(
            required: ["id", "kind", "certificate", "fingerprint", "subject", "createdAt"],
            [
                "id": string, "kind": ["type": "string", "enum": ["built-in", "external"]], "certificate": string,
                "fingerprint": string, "subject": string, "createdAt": dateTime,
            ]
        ),
        "RegisterCARequest": object(required: ["certificate"], ["certificate": ["type": "string", "description": "PEM."]]),
        "ClaimCodeRequest": object(
            required: ["code", "durationSeconds"],
            ["code": string, "durationSeconds": ["type": "integer", "minimum": 1, "maximum": .integer(APIRoutes.maximumClaimDuration)]]
        ),
        "ClaimRequest": object(
            required: ["deviceId", "code"],
            ["deviceId": ["type": "string", "description": "The device's id or name."], "code": string]
        ),
        "ProvisionRequest": object(
            required: ["provisionDeviceKey", "provisionDeviceSecret"],
            [
                "provisionDeviceKey": string, "provisionDeviceSecret": string, "deviceName": string,
                "credentialsType": ["type": "string", "enum": ["ACCESS_TOKEN", "MQTT_BASIC"], "default": "ACCESS_TOKEN"],
                "token": string, "username": string, "password": string, "clientId": string,
            ]
        ),
        "ProvisionResult": object(
            required: ["status", "credentialsType", "credentialsValue", "deviceId", "deviceName"],
            [
                "status": ["type": "string", "const": "SUCCESS"],
                "credentialsType": ["type": "string", "enum": ["ACCESS_TOKEN", "MQTT_BASIC"]],
                "credentialsValue": [
                    "oneOf": [
                        ["type": "string", "description": "ACCESS_TOKEN: the token."],
                        object(
                            required: ["clientId", "userName", "password"],
                            ["clientId": nullable(string), "userName": string, "password": string]
                        ),
                    ]
                ],
                "deviceId": string, "deviceName": string,
            ]
        ),
        "ProvisionFailure": object(
            required: ["status", "errorMsg"],
            ["status": ["type": "string", "const": "FAILURE"], "errorMsg": string]
        ),
        "AuditEntry": object(
            required: ["sequence", "timestamp", "tenantId", "actor", "action", "target", "details", "previousHash", "hash"],
            [
                "sequence": ["type": "integer"], "timestamp": dateTime, "tenantId": nullable(string),
                "actor": object(
                    required: ["kind", "id", "remoteAddress"],
                    [
                        "kind": ["type": "string", "enum": ["user", "api-key", "device", "system"]], "id": string,
                        "remoteAddress": nullable(string),
                    ]
                ),
                "action": string, "target": string, "details": ["type": "object", "additionalProperties": string],
                "previousHash": string, "hash": string,
            ]
        ),
        "AuditVerification": object(
            required: ["intact", "entries"],
            [
                "intact": ["type": "boolean"], "entries": ["type": "integer"], "firstBrokenSequence": ["type": "integer"],
                "problem": string,
            ]
        ),
    ]

    private static let credentialProperties: OpenAPIValue = [
        "id": string, "deviceId": string, "type": ["type": "string", "enum": enumeration(CredentialType.allCases)],
        "createdAt": dateTime, "expiresAt": nullable(dateTime), "revokedAt": nullable(dateTime),
        "username": ["type": "string", "description": "password credentials."],
        "fingerprint": ["type": "string", "description": "certificate: SHA-256 of the DER certificate, hex."],
        "commonName": ["type": "string", "description": "certificate: the subject CN."],
        "certificate": ["type": "string", "description": "certificate: PEM."],
    ]

    // MARK: Helpers

    private static let string: OpenAPIValue = ["type": "string"]
    private static let devicesParameter: OpenAPIValue = [
        "name": "devices", "in": "query", "required": true, "schema": ["type": "string", "minLength": 1],
        "description": "Comma-separated device ids (at most 1000).",
    ]
    private static let telemetryParameters: [OpenAPIValue] = [
        queryParameter("keys", ["type": "string"], "Comma-separated keys; default all."),
        queryParameter("from", ["type": "integer"], "Start, milliseconds since 1970 (included); default a day before to."),
        queryParameter("to", ["type": "integer"], "End, milliseconds since 1970 (included); default now."),
        queryParameter("interval", ["type": "string", "pattern": "^[0-9]+(ms|s|m|h|d|w)?$"], "Bucket width: 30s, 1m, 15m, 1h, 1d, or milliseconds."),
        queryParameter("agg", ["type": "string", "enum": ["avg", "min", "max", "sum", "count", "first", "last"], "default": "avg"], "How a bucket's samples combine (with interval)."),
    ]
    /// A name: 1-128 characters, no control characters.
    private static let name: OpenAPIValue = ["type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[^\\u0000-\\u001f\\u007f]*\\S[^\\u0000-\\u001f\\u007f]*$"]
    private static let username: OpenAPIValue = ["type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[^\\s\\u0000-\\u001f\\u007f]+$"]
    private static let password: OpenAPIValue = ["type": "string", "minLength": 8, "maxLength": 1024]
    private static let token: OpenAPIValue = ["type": "string", "minLength": 16, "maxLength": 256, "pattern": "^[\\x21-\\x7e]+$"]
    private static let dateTime: OpenAPIValue = ["type": "string", "format": "date-time"]
    /// Any JSON value.
    private static let anyJSON: OpenAPIValue = ["description": "Any JSON value."]
    private static let noContent: OpenAPIValue = ["$ref": "#/components/responses/NoContent"]

    private static func ref(_ name: String) -> OpenAPIValue {
        ["$ref": .string("#/components/schemas/\(name)")]
    }

    private static func nullable(_ schema: OpenAPIValue) -> OpenAPIValue {
        ["anyOf": [schema, ["type": "null"]]]
    }

    private static func object(required: [String], _ properties: OpenAPIValue) -> OpenAPIValue {
        ["type": "object", "required": .array(required.map { .string($0) }), "properties": properties]
    }

    private static func enumeration<T: RawRepresentable>(_ cases: [T]) -> OpenAPIValue where T.RawValue == String {
        .array(cases.map { .string($0.rawValue) })
    }

    private static func list(_ item: OpenAPIValue) -> OpenAPIValue {
        object(required: ["items"], ["items": ["type": "array", "items": item]])
    }

    private static func pageOf(_ item: OpenAPIValue) -> OpenAPIValue {
        object(
            required: ["items", "nextCursor"],
            ["items": ["type": "array", "items": item], "nextCursor": nullable(string)]
        )
    }

    private static func json(_ schema: OpenAPIValue, _ description: String) -> OpenAPIValue {
        ["description": .string(description), "content": ["application/json": ["schema": schema]]]
    }

    private static func queryParameter(_ name: String, _ schema: OpenAPIValue, _ description: String) -> OpenAPIValue {
        ["name": .string(name), "in": "query", "required": false, "schema": schema, "description": .string(description)]
    }

    private static func pathParameters(_ path: String) -> [OpenAPIValue] {
        path.split(separator: "/").compactMap { component -> OpenAPIValue? in
            guard component.hasPrefix("{"), component.hasSuffix("}") else { return nil }
            let name = String(component.dropFirst().dropLast())
            return ["name": .string(name), "in": "path", "required": true, "schema": ["type": "string"]]
        }
    }

    private static func operationID(_ method: HTTPRequest.Method, _ path: String) -> String {
        let words = path.split(whereSeparator: { $0 == "/" || $0 == "-" || $0 == "." || $0 == "{" || $0 == "}" })
        return method.rawValue.lowercased() + words.map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
    }

    private static func op(
        _ summary: String, tag: String, description: String? = nil, parameters: [OpenAPIValue] = [],
        body: OpenAPIValue? = nil, bodyRequired: Bool = true, requestBody: OpenAPIValue? = nil,
        responses: [String: OpenAPIValue]
    ) -> OpenAPIValue {
        var operation: [String: OpenAPIValue] = [
            "summary": .string(summary), "tags": [.string(tag)], "responses": .object(responses),
        ]
        if let description { operation["description"] = .string(description) }
        if !parameters.isEmpty { operation["parameters"] = .array(parameters) }
        if let requestBody {
            operation["requestBody"] = requestBody
        } else if let body {
            operation["requestBody"] = ["required": .bool(bodyRequired), "content": ["application/json": ["schema": body]]]
        }
        return .object(operation)
    }
}

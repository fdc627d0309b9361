import Crypto
import Foundation
import HTTPTypes
import MeridianCore
import SwiftASN1
import Testing
import X509

@testable import MeridianServer

/// The REST API end to end through the router, on a real registry: what scripts, the CLI and
/// the dashboard rely on.
@Suite("REST API routes", .timeLimit(.minutes(2)))
struct APIRouteTests {
    // MARK: RBAC

    /// One kind of thing a caller does, with the least role it needs.
    struct Family: Sendable, CustomTestStringConvertible {
        let name: String
        let minimum: Role
        /// Does it as `key` in tenant B (`world`); returns the status.
        let perform: @Sendable (APIHarness, RBACWorld, String) async throws -> Int

        var testDescription: String { "\(name) (\(minimum.rawValue))" }
    }

    /// Tenant B, its owner token, and a device in it.
    struct RBACWorld: Sendable {
        let ownerToken: String
        let deviceID: String
    }

    static let families: [Family] = [
        Family(name: "me", minimum: .viewer) { api, _, key in try await api.call(.get, "/me", key: key).status },
        Family(name: "read tenants", minimum: .viewer) { api, _, key in try await api.call(.get, "/tenants", key: key).status },
        Family(name: "read users", minimum: .viewer) { api, _, key in try await api.call(.get, "/users", key: key).status },
        Family(name: "manage users", minimum: .admin) { api, _, key in
            try await api.call(.post, "/users", key: key, json: #"{"username": "u-\#(UUID().uuidString)", "password": "long enough pass", "role": "viewer"}"#).status
        },
        Family(name: "read API keys", minimum: .admin) { api, _, key in try await api.call(.get, "/api-keys", key: key).status },
        Family(name: "manage API keys", minimum: .admin) { api, _, key in
            try await api.call(.post, "/api-keys", key: key, json: #"{"name": "k-\#(UUID().uuidString)", "role": "viewer"}"#).status
        },
        Family(name: "read profiles", minimum: .viewer) { api, _, key in try await api.call(.get, "/profiles", key: key).status },
        Family(name: "manage profiles", minimum: .admin) { api, _, key in
            try await api.call(.post, "/profiles", key: key, json: #"{"name": "p-\#(UUID().uuidString)"}"#).status
        },
        Family(name: "read devices", minimum: .viewer) { api, world, key in
            let list = try await api.call(.get, "/devices", key: key).status
            let one = try await api.call(.get, "/devices/\(world.deviceID)", key: key).status
            return list == one ? one : 0
        },
        Family(name: "create devices", minimum: .operator) { api, _, key in
            try await api.call(.post, "/devices", key: key, json: #"{"name": "d-\#(UUID().uuidString)"}"#).status
        },
        Family(name: "change and delete devices", minimum: .operator) { api, world, key in
            let id = try await api.device(key: world.ownerToken)
            let patch = try await api.call(.patch, "/devices/\(id)", key: key, json: #"{"labels": {"a": "b"}}"#).status
            let delete = try await api.call(.delete, "/devices/\(id)", key: key).status
            return (200..<300).contains(patch) && (200..<300).contains(delete) ? 200 : patch == delete ? patch : 0
        },
        Family(name: "import devices", minimum: .operator) { api, _, key in
            try await api.call(.post, "/devices/import", key: key, json: #"[{"name": "i-\#(UUID().uuidString)"}]"#).status
        },
        Family(name: "read credentials", minimum: .viewer) { api, world, key in
            try await api.call(.get, "/devices/\(world.deviceID)/credentials", key: key).status
        },
        Family(name: "issue credentials", minimum: .operator) { api, world, key in
            try await api.call(.post, "/devices/\(world.deviceID)/credentials", key: key, json: #"{"type": "token"}"#).status
        },
        Family(name: "issue certificates", minimum: .operator) { api, world, key in
            try await api.call(.post, "/devices/\(world.deviceID)/certificates", key: key, json: "{}").status
        },
        Family(name: "read CAs", minimum: .viewer) { api, _, key in try await api.call(.get, "/ca", key: key).status },
        Family(name: "register CAs", minimum: .admin) { api, _, key in
            try await api.call(.post, "/ca", key: key, json: try jsonString(["certificate": TestPKI.selfSignedCA()])).status
        },
        Family(name: "claim codes", minimum: .operator) { api, world, key in
            try await api.call(.post, "/devices/\(world.deviceID)/claim-code", key: key, json: #"{"code": "c-\#(UUID().uuidString)", "durationSeconds": 600}"#).status
        },
        Family(name: "read the audit log", minimum: .admin) { api, _, key in
            let list = try await api.call(.get, "/audit", key: key).status
            let verify = try await api.call(.get, "/audit/verify", key: key).status
            return list == verify ? list : 0
        },
    ]

    @Test("every role × every route family: allowed from its least role up, 403 below", arguments: Role.allCases)
    func rbacMatrix(_ role: Role) async throws {
        try await APIHarness.with { api in
            let (ownerToken, _, _) = try await api.secondTenant()
            let world = RBACWorld(ownerToken: ownerToken, deviceID: try await api.device(key: ownerToken))
            let key = try await api.apiKey(role, key: ownerToken).key
            for family in Self.families {
                let status = try await family.perform(api, world, key)
                if role.allows(family.minimum) {
                    #expect((200..<300).contains(status), "\(role.rawValue) → \(family.name): \(status)")
                } else {
                    #expect(status == 403, "\(role.rawValue) → \(family.name): \(status)")
                }
            }
        }
    }

    @Test("only logged-in users create tenants; an API key, even an owner's, gets 403")
    func tenantsAreForUsers() async throws {
        try await APIHarness.with { api in
            let (ownerToken, tenantID, _) = try await api.secondTenant()
            let ownerKey = try await api.apiKey(.owner, key: ownerToken).key
            try await api.expect(403, .post, "/tenants", key: ownerKey, json: #"{"name": "nope"}"#)
            let tenants = try await api.call(.get, "/tenants", key: ownerToken)
            #expect(tenants.items.contains { $0["id"] as? String == tenantID })
        }
    }

    // MARK: Tenant isolation

    @Test("tenant A gets 404 for tenant B's device, credential, profile, API key and user, and never sees B's audit entries")
    func tenantIsolation() async throws {
        try await APIHarness.with { api in
            let a = APIHarness.adminKey
            let (b, tenantB, _) = try await api.secondTenant()
            let device = try await api.device(key: b, name: "secret-device")
            let credential = try #require(try await api.expect(201, .post, "/devices/\(device)/credentials", key: b, json: #"{"type": "token"}"#)["id"] as? String)
            let profile = try #require(try await api.expect(201, .post, "/profiles", key: b, json: #"{"name": "b-profile"}"#)["id"] as? String)
            let (keyID, keyB) = try await api.apiKey(.viewer, key: b)
            let user = try #require(try await api.expect(201, .post, "/users", key: b, json: #"{"username": "only-in-b", "password": "long enough pass", "role": "viewer"}"#)["id"] as? String)

            let refusals: [(HTTPRequest.Method, String, String?)] = [
                (.get, "/devices/\(device)", nil),
                (.patch, "/devices/\(device)", #"{"name": "mine"}"#),
                (.delete, "/devices/\(device)", nil),
                (.post, "/devices/\(device)/decommission", #"{"purge": true}"#),
                (.get, "/devices/\(device)/credentials", nil),
                (.post, "/devices/\(device)/credentials", #"{"type": "token"}"#),
                (.delete, "/devices/\(device)/credentials/\(credential)", nil),
                (.post, "/devices/\(device)/certificates", "{}"),
                (.post, "/devices/\(device)/claim-code", #"{"code": "abc", "durationSeconds": 60}"#),
                (.get, "/profiles/\(profile)", nil),
                (.put, "/profiles/\(profile)", #"{"name": "mine"}"#),
                (.delete, "/profiles/\(profile)", nil),
                (.delete, "/api-keys/\(keyID)", nil),
                (.patch, "/users/\(user)", #"{"role": "admin"}"#),
                (.delete, "/users/\(user)", nil),
            ]
            for (method, path, json) in refusals {
                let response = try await api.call(method, path, key: a, json: json)
                #expect(response.status == 404, "\(method) \(path): \(response.status) \(response.text)")
            }
            // Nothing of B shows in A's lists.
            #expect(!(try await api.call(.get, "/devices?namePrefix=secret", key: a)).items.contains { $0["id"] as? String == device })
            #expect(!(try await api.call(.get, "/profiles", key: a)).items.contains { $0["id"] as? String == profile })
            #expect(!(try await api.call(.get, "/api-keys", key: a)).items.contains { $0["id"] as? String == keyID })
            #expect(!(try await api.call(.get, "/users", key: a)).items.contains { $0["id"] as? String == user })
            let audit = try await api.call(.get, "/audit?limit=1000", key: a)
            #expect(!audit.items.isEmpty)
            #expect(!audit.items.contains { $0["tenantId"] as? String == tenantB })
            // B's things are untouched.
            try await api.expect(200, .get, "/devices/\(device)", key: b)
            try await api.expect(200, .get, "/me", key: keyB)
            let bAudit = try await api.call(.get, "/audit?limit=1000", key: b)
            #expect(bAudit.items.contains { $0["tenantId"] as? String == tenantB })
            #expect(bAudit.items.allSatisfy { $0["tenantId"] as? String == tenantB })
        }
    }

    // MARK: The contract scripts rely on

    @Test("POST /devices → 201 with id; GET; list pages with cursors; DELETE → 204, then 404")
    func deviceContract() async throws {
        try await APIHarness.with { api in
            let created = try await api.call(.post, "/devices", json: #"{"name": "pump-1", "labels": {"site": "berlin"}}"#)
            #expect(created.status == 201)
            #expect(created.contentType == "application/json")
            let id = try #require(created.object["id"] as? String)
            #expect(created.object["name"] as? String == "pump-1")
            #expect((created.object["labels"] as? [String: String]) == ["site": "berlin"])
            #expect(created.object["status"] as? String == "active")
            #expect((created.object["createdAt"] as? String).flatMap(APIJSON.parseDate) != nil)
            let fetched = try await api.expect(200, .get, "/devices/\(id)")
            #expect(fetched["id"] as? String == id)
            try await api.expect(409, .post, "/devices", json: #"{"name": "pump-1"}"#)

            var ids: Set<String> = [id]
            for index in 2...7 { ids.insert(try await api.device(name: "pump-\(index)", labels: index % 2 == 0 ? ["site": "berlin"] : [:])) }
            var seen: [String] = []
            var cursor: String?
            var pages = 0
            repeat {
                let page = try await api.call(.get, "/devices?limit=3" + (cursor.map { "&cursor=\($0)" } ?? ""))
                #expect(page.status == 200)
                seen += page.items.compactMap { $0["id"] as? String }
                cursor = page.object["nextCursor"] as? String
                pages += 1
            } while cursor != nil && pages < 10
            #expect(pages == 3)
            #expect(seen.count == 7)
            #expect(Set(seen) == ids)
            #expect(seen == seen.sorted())
            let berlin = try await api.call(.get, "/devices?label=site%3Dberlin&namePrefix=pump")
            #expect(Set(berlin.items.compactMap { $0["name"] as? String }) == ["pump-1", "pump-2", "pump-4", "pump-6"])

            let patched = try await api.expect(200, .patch, "/devices/\(id)", json: #"{"status": "disabled"}"#)
            #expect(patched["status"] as? String == "disabled")
            let disabled = try await api.call(.get, "/devices?status=disabled")
            #expect(disabled.items.compactMap { $0["id"] as? String } == [id])

            let deleted = try await api.call(.delete, "/devices/\(id)")
            #expect(deleted.status == 204)
            #expect(deleted.data.isEmpty)
            let gone = try await api.call(.get, "/devices/\(id)")
            #expect(gone.status == 404)
            #expect(gone.contentType == "application/problem+json")
        }
    }

    @Test("credentials: token, password, certificate from a CSR, generated and existing; listings never show secrets; revoke")
    func credentials() async throws {
        try await APIHarness.with { api in
            let id = try await api.device()
            let token = try await api.expect(201, .post, "/devices/\(id)/credentials", json: #"{"type": "token"}"#)
            #expect(token["type"] as? String == "token")
            let tokenValue = try #require(token["token"] as? String)
            #expect(tokenValue.count >= 16)
            let tokenID = try #require(token["id"] as? String)
            #expect(try await api.registry.authenticateDevice(token: tokenValue)?.deviceID == id)

            let chosen = try await api.expect(201, .post, "/devices/\(id)/credentials", json: #"{"type": "token", "token": "my-own-token-0123456789"}"#)
            #expect(chosen["token"] as? String == "my-own-token-0123456789")

            let password = try await api.expect(
                201, .post, "/devices/\(id)/credentials", json: #"{"type": "password", "username": "dev-\#(id)", "password": "s3cret-password"}"#
            )
            #expect(password["username"] as? String == "dev-\(id)")
            #expect(password["password"] == nil)

            let (csr, _) = try TestPKI.csr(commonName: id)
            let signed = try await api.expect(201, .post, "/devices/\(id)/credentials", json: try jsonString(["type": "certificate", "csr": csr]))
            let certificatePEM = try #require(signed["certificate"] as? String)
            let certificate = try Certificate(pemEncoded: certificatePEM)
            #expect(certificate.subject.description.contains(id))
            let signingCAPEM = try #require(signed["caCertificate"] as? String)
            _ = try Certificate(pemEncoded: signingCAPEM)
            #expect(signed["privateKey"] == nil)

            let generated = try await api.expect(201, .post, "/devices/\(id)/certificates", json: "{}")
            #expect((generated["privateKey"] as? String)?.contains("PRIVATE KEY") == true)
            #expect(generated["certificate"] is String)

            // A certificate from the tenant's own CA, registered first.
            let (caPEM, leafPEM) = try TestPKI.caAndLeaf(commonName: "existing-\(id)")
            let unknownIssuer = try await api.call(.post, "/devices/\(id)/credentials", json: try jsonString(["type": "certificate", "certificate": leafPEM]))
            #expect(unknownIssuer.status == 422)
            #expect(unknownIssuer.object["field"] as? String == "certificate")
            let ca = try await api.expect(201, .post, "/ca", json: try jsonString(["certificate": caPEM]))
            #expect(ca["kind"] as? String == "external")
            let authorities = try await api.call(.get, "/ca")
            #expect(authorities.items.contains { $0["id"] as? String == ca["id"] as? String })
            #expect(!authorities.text.contains("PRIVATE KEY"))
            let registered = try await api.expect(201, .post, "/devices/\(id)/credentials", json: try jsonString(["type": "certificate", "certificate": leafPEM]))
            #expect((registered["fingerprint"] as? String)?.count == 64)

            let listing = try await api.call(.get, "/devices/\(id)/credentials")
            #expect(listing.items.count == 6)
            #expect(!listing.text.contains(tokenValue))
            #expect(!listing.text.contains("s3cret-password"))
            #expect(!listing.text.contains("PRIVATE KEY"))
            #expect(!listing.text.contains("\"token\":"))

            try await api.expect(204, .delete, "/devices/\(id)/credentials/\(tokenID)")
            #expect(try await api.registry.authenticateDevice(token: tokenValue) == nil)
            try await api.expect(404, .delete, "/devices/\(id)/credentials/no-such-credential")
        }
    }

    // MARK: Errors

    @Test("bad JSON and bad fields are problem+json naming the field; unknown routes are 404 problems")
    func problems() async throws {
        try await APIHarness.with { api in
            let malformed = try await api.call(.post, "/devices", json: "{not json")
            #expect(malformed.status == 400)
            #expect(malformed.contentType == "application/problem+json")
            #expect((malformed.object["type"] as? String)?.hasPrefix("urn:meridian:problem:") == true)
            #expect(malformed.object["title"] is String)
            #expect(malformed.object["detail"] is String)
            #expect(malformed.object["status"] as? Int == 400)

            let wrongType = try await api.call(.post, "/devices", json: #"{"name": 5}"#)
            #expect(wrongType.status == 400)
            #expect(wrongType.object["field"] as? String == "name")
            let missing = try await api.call(.post, "/devices", json: #"{"labels": {}}"#)
            #expect(missing.object["field"] as? String == "name")
            let badLabel = try await api.call(.post, "/devices", json: #"{"name": "x", "labels": {"a": true}}"#)
            #expect(badLabel.object["field"] as? String == "labels.a")
            let badRole = try await api.call(.post, "/api-keys", json: #"{"name": "x", "role": "king"}"#)
            #expect(badRole.status == 400)
            #expect(badRole.object["field"] as? String == "role")
            let badID = try await api.call(.post, "/devices", json: #"{"name": "x", "id": "a/b#"}"#)
            #expect(badID.status == 422)
            #expect(badID.object["field"] as? String == "id")

            for (query, field) in [("limit=0", "limit"), ("limit=abc", "limit"), ("limit=1001", "limit"), ("label=nokey", "label"), ("status=sleeping", "status")] {
                let response = try await api.call(.get, "/devices?\(query)")
                #expect(response.status == 400, "\(query)")
                #expect(response.object["field"] as? String == field, "\(query)")
            }
            let unknown = try await api.call(.get, "/api/v1/gadgets")
            #expect(unknown.status == 404)
            #expect(unknown.contentType == "application/problem+json")
            let wrongMethod = try await api.call(.put, "/devices")
            #expect(wrongMethod.status == 404)
            #expect(wrongMethod.contentType == "application/problem+json")
        }
    }

    @Test("the bootstrap key authenticates; a wrong or missing key is 401 with WWW-Authenticate")
    func authentication() async throws {
        try await APIHarness.with { api in
            let me = try await api.expect(200, .get, "/me")
            #expect(me["kind"] as? String == "api-key")
            #expect(["admin", "owner"].contains(me["role"] as? String))
            for key in ["mk_wrong_key_0123456789", "a.b.c", "" as String?] as [String?] {
                let response = try await api.call(.get, "/me", key: key == "" ? nil : key)
                #expect(response.status == 401)
                #expect(response.headers[HTTPField.Name("WWW-Authenticate")!]?.hasPrefix("Bearer") == true)
                #expect(response.contentType == "application/problem+json")
            }
            let (revokeID, revoked) = try await api.apiKey(.viewer)
            try await api.expect(200, .get, "/me", key: revoked)
            try await api.expect(204, .delete, "/api-keys/\(revokeID)")
            try await api.expect(401, .get, "/me", key: revoked)
        }
    }

    @Test("login returns a JWT and a refresh token; refresh rotates it; 10 failures → 429 with Retry-After")
    func loginRefreshAndRateLimit() async throws {
        try await APIHarness.with { api in
            try await api.expect(201, .post, "/users", json: #"{"username": "ada", "password": "analytical engine", "role": "operator"}"#)
            let login = try await api.call(.post, "/auth/login", key: nil, json: #"{"username": "ada", "password": "analytical engine"}"#)
            #expect(login.status == 200)
            let pair = login.object
            #expect(pair["tokenType"] as? String == "Bearer")
            #expect(pair["expiresIn"] as? Int == 900)
            #expect(pair["role"] as? String == "operator")
            #expect((pair["tenants"] as? [[String: Any]])?.count == 1)
            let access = try #require(pair["accessToken"] as? String)
            let refresh = try #require(pair["refreshToken"] as? String)
            let me = try await api.expect(200, .get, "/me", key: access)
            #expect(me["kind"] as? String == "user")
            #expect(me["username"] as? String == "ada")
            #expect(me["role"] as? String == "operator")
            try await api.expect(201, .post, "/devices", key: access, json: #"{"name": "by-ada"}"#)
            try await api.expect(403, .post, "/profiles", key: access, json: #"{"name": "by-ada"}"#)

            let refreshed = try await api.expect(200, .post, "/auth/refresh", key: nil, json: try jsonString(["refreshToken": refresh]))
            let newRefresh = try #require(refreshed["refreshToken"] as? String)
            #expect(newRefresh != refresh)
            try await api.expect(200, .get, "/me", key: try #require(refreshed["accessToken"] as? String))
            try await api.expect(401, .post, "/auth/refresh", key: nil, json: try jsonString(["refreshToken": refresh]))
            try await api.expect(401, .post, "/auth/refresh", key: nil, json: #"{"refreshToken": "made-up"}"#)

            for _ in 0..<10 {
                try await api.expect(401, .post, "/auth/login", key: nil, json: #"{"username": "ada", "password": "wrong guess"}"#)
            }
            let limited = try await api.call(.post, "/auth/login", key: nil, json: #"{"username": "ada", "password": "analytical engine"}"#)
            #expect(limited.status == 429)
            #expect(Int(limited.headers[HTTPField.Name("Retry-After")!] ?? "") ?? 0 > 0)
            #expect(limited.contentType == "application/problem+json")
            // Other users are not limited by ada's failures (no client address in these tests).
            try await api.expect(401, .post, "/auth/login", key: nil, json: #"{"username": "bob", "password": "whatever it is"}"#)
        }
    }

    // MARK: Import, provisioning, claiming, audit

    @Test("bulk import: CSV and JSON create every row; a bad row refuses all with an error per row")
    func bulkImport() async throws {
        try await APIHarness.with { api in
            let csv = "name,labels,label.site\nimp-1,a=1;b=2,berlin\nimp-2,,paris\n"
            let created = try await api.call(.post, "/devices/import", body: csv, contentType: "text/csv")
            #expect(created.status == 201, "\(created.text)")
            #expect(created.object["created"] as? Int == 2)
            #expect((created.object["devices"] as? [[String: Any]])?.count == 2)
            let json = try await api.call(.post, "/devices/import", json: #"[{"name": "imp-3"}, {"name": "imp-4", "labels": {"x": "y"}}]"#)
            #expect(json.status == 201)
            let bad = try await api.call(.post, "/devices/import", body: "name,id\nimp-5,ok-id\n,\nimp-1,\n", contentType: "text/csv")
            #expect([400, 422].contains(bad.status))
            #expect(bad.contentType == "application/problem+json")
            let errors = try #require(bad.object["errors"] as? [[String: Any]])
            #expect(errors.count >= 2)
            #expect(errors.allSatisfy { $0["line"] is Int && $0["field"] is String && $0["reason"] is String })
            try await api.expect(404, .get, "/devices/ok-id")
            let wrongShape = try await api.call(.post, "/devices/import", json: #"[{"name": 1}]"#)
            #expect(wrongShape.status == 400)
            #expect(wrongShape.object["field"] as? String == "[0].name")
            let unsupported = try await api.call(.post, "/devices/import", body: "<xml/>", contentType: "application/xml")
            #expect(unsupported.status == 415)
        }
    }

    @Test("provisioning over HTTP answers ThingsBoard's SUCCESS with a token, or FAILURE with a 4xx")
    func provisioning() async throws {
        try await APIHarness.with { api in
            let profile = try await api.expect(201, .post, "/profiles", json: #"{"name": "sensors", "provisioningMode": "allow-create", "provisioningKey": "prov-key-1"}"#)
            let secret = try #require(profile["provisioningSecret"] as? String)
            let ok = try await api.call(.post, "/provision", key: nil, json: try jsonString(["provisionDeviceKey": "prov-key-1", "provisionDeviceSecret": secret, "deviceName": "self-made"]))
            #expect(ok.status == 200, "\(ok.text)")
            #expect(ok.object["status"] as? String == "SUCCESS")
            #expect(ok.object["credentialsType"] as? String == "ACCESS_TOKEN")
            let token = try #require(ok.object["credentialsValue"] as? String)
            let deviceID = try #require(ok.object["deviceId"] as? String)
            #expect(try await api.registry.authenticateDevice(token: token)?.deviceID == deviceID)
            let bad = try await api.call(.post, "/provision", key: nil, json: #"{"provisionDeviceKey": "prov-key-1", "provisionDeviceSecret": "wrong"}"#)
            #expect((400..<500).contains(bad.status))
            #expect(bad.object["status"] as? String == "FAILURE")
            #expect(bad.object["errorMsg"] is String)
            let malformed = try await api.call(.post, "/provision", key: nil, json: #"{"provisionDeviceKey": 1}"#)
            #expect(malformed.status == 400)
            #expect(malformed.object["status"] as? String == "FAILURE")
        }
    }

    @Test("claiming moves a device into the claiming tenant; the audit log records changes and verifies")
    func claimingAndAudit() async throws {
        try await APIHarness.with { api in
            let (b, _, _) = try await api.secondTenant()
            let device = try await api.device(name: "shipped")
            try await api.expect(204, .post, "/devices/\(device)/claim-code", json: #"{"code": "LABEL-1234", "durationSeconds": 600}"#)
            try await api.expect(400, .post, "/devices/\(device)/claim-code", json: #"{"code": "x", "durationSeconds": 0}"#)
            let wrong = try await api.call(.post, "/claims", key: b, json: try jsonString(["deviceId": device, "code": "WRONG"]))
            #expect((400..<500).contains(wrong.status))
            let claimed = try await api.call(.post, "/claims", key: b, json: try jsonString(["deviceId": device, "code": "LABEL-1234"]))
            #expect(claimed.status == 200, "\(claimed.text)")
            try await api.expect(200, .get, "/devices/\(device)", key: b)
            try await api.expect(404, .get, "/devices/\(device)")

            let audit = try await api.call(.get, "/audit?limit=2")
            #expect(audit.status == 200)
            #expect(audit.items.count == 2)
            let cursor = try #require(audit.object["nextCursor"] as? String)
            let older = try await api.call(.get, "/audit?limit=2&before=\(cursor)")
            let first = try #require(audit.items.last?["sequence"] as? Int)
            #expect(older.items.allSatisfy { ($0["sequence"] as? Int ?? .max) < first })
            let verify = try await api.expect(200, .get, "/audit/verify")
            #expect(verify["intact"] as? Bool == true)
            #expect((verify["entries"] as? Int ?? 0) > 0)
        }
    }

    // MARK: OpenAPI and docs

    @Test("every documented operation is served by the router: answered, never the unknown-route 404")
    func everyOperationIsRouted() async throws {
        try await APIHarness.with { api in
            for endpoint in APIRoutes.endpoints {
                let path = endpoint.path.replacing(/\{[A-Za-z]+\}/, with: "x")
                let response = try await api.call(endpoint.method, path, key: nil, json: endpoint.method == .get || endpoint.method == .delete ? nil : "{}")
                #expect(response.object["type"] as? String != "urn:meridian:problem:unknown-route", "\(endpoint.method) \(path)")
                if endpoint.access.minimumRole != nil {
                    #expect(response.status == 401, "\(endpoint.method) \(path): \(response.status)")
                }
            }
            let document = try await api.call(.get, "/openapi.json", key: nil)
            #expect(document.status == 200)
            #expect(document.object["openapi"] as? String == "3.1.0")
            let docs = try await api.call(.get, "/api/docs", key: nil)
            #expect(docs.status == 200)
            #expect(docs.contentType?.hasPrefix("text/html") == true)
            #expect(docs.text.contains("/api/v1/openapi.json"))
            #expect(!docs.text.contains("https://"))
        }
    }
}

func jsonString(_ object: [String: String]) throws -> String {
    String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
}

/// Certificates for the credential tests (swift-certificates).
enum TestPKI {
    /// A CSR (PEM) for a new P-256 key, and the key.
    static func csr(commonName: String) throws -> (pem: String, key: P256.Signing.PrivateKey) {
        let key = P256.Signing.PrivateKey()
        let request = try CertificateSigningRequest(
            version: .v1,
            subject: try DistinguishedName { CommonName(commonName) },
            privateKey: Certificate.PrivateKey(key),
            attributes: CertificateSigningRequest.Attributes(),
            signatureAlgorithm: .ecdsaWithSHA256
        )
        return (try request.serializeAsPEM().pemString, key)
    }

    /// A CA certificate and a leaf certificate for `commonName` it signed (PEM).
    static func caAndLeaf(commonName: String) throws -> (ca: String, leaf: String) {
        let caKey = P256.Signing.PrivateKey()
        let caName = try DistinguishedName { CommonName("Own CA \(UUID().uuidString.prefix(8))") }
        let ca = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: Certificate.PublicKey(caKey.publicKey),
            notValidBefore: Date().addingTimeInterval(-60), notValidAfter: Date().addingTimeInterval(365 * 86_400),
            issuer: caName, subject: caName, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            },
            issuerPrivateKey: Certificate.PrivateKey(caKey)
        )
        let leafKey = P256.Signing.PrivateKey()
        let leaf = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: Certificate.PublicKey(leafKey.publicKey),
            notValidBefore: Date().addingTimeInterval(-60), notValidAfter: Date().addingTimeInterval(30 * 86_400),
            issuer: caName, subject: try DistinguishedName { CommonName(commonName) }, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
            },
            issuerPrivateKey: Certificate.PrivateKey(caKey)
        )
        return (try ca.serializeAsPEM().pemString, try leaf.serializeAsPEM().pemString)
    }

    /// A self-signed CA certificate (PEM).
    static func selfSignedCA(commonName: String = "Test CA \(UUID().uuidString.prefix(8))") throws -> String {
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName { CommonName(commonName) }
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: Certificate.PublicKey(key.publicKey),
            notValidBefore: Date().addingTimeInterval(-60),
            notValidAfter: Date().addingTimeInterval(365 * 86_400),
            issuer: name,
            subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            },
            issuerPrivateKey: Certificate.PrivateKey(key)
        )
        return try certificate.serializeAsPEM().pemString
    }
}

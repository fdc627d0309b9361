import Foundation
import MeridianCore
import MeridianStorage
import Testing

@Suite("Registry: bootstrap, API keys, devices")
struct RegistryDeviceTests {
    @Test("bootstrap runs once and stores exactly the given API key")
    func bootstrapOnce() async throws {
        let fixture = try await RegistryFixture()
        #expect(fixture.tenantA.name == "default")
        #expect(try await fixture.registry.bootstrapIfEmpty(apiKey: "another-key-0123456789") == nil)
        let key = try #require(try await fixture.registry.authenticateAPIKey("test-bootstrap-key-0123456789"))
        #expect(key.role == .owner)
        #expect(key.name == "bootstrap")
        #expect(key.keyHash == Secrets.sha256("test-bootstrap-key-0123456789"))
        #expect(try await fixture.registry.authenticateAPIKey("another-key-0123456789") == nil)
        #expect(try await fixture.registry.tenant(fixture.tenantA.id) == fixture.tenantA)
    }

    @Test("bootstrap without a key creates user admin whose one-time password logs in")
    func bootstrapAdminUser() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-registry-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let registry = Registry(store: try SQLiteRegistryStore(path: directory.appendingPathComponent("meridian.sqlite").path))
        let result = try #require(try await registry.bootstrapIfEmpty(apiKey: nil))
        #expect(result.adminUsername == "admin")
        let password = try #require(result.adminPassword)
        let login = try await registry.login(username: "admin", password: password, remoteAddress: nil)
        #expect(login.memberships.map(\.role) == [.owner])
        #expect(login.memberships.map(\.tenantID) == [result.tenant.id])
        await #expect { try await registry.login(username: "admin", password: "wrong-password", remoteAddress: nil) } throws: {
            RegistryError.Code.matches($0, .unauthenticated)
        }
        await #expect { try await registry.login(username: "nobody", password: password, remoteAddress: nil) } throws: {
            RegistryError.Code.matches($0, .unauthenticated)
        }
        // Refresh tokens rotate: the old one stops working.
        let refresh = try await registry.issueRefreshToken(userID: login.user.id, tenantID: result.tenant.id, lifetime: 3600)
        let rotated = try await registry.refresh(token: refresh, lifetime: 3600)
        #expect(rotated.membership.role == .owner)
        #expect(rotated.refreshToken != refresh)
        await #expect { try await registry.refresh(token: refresh, lifetime: 3600) } throws: {
            RegistryError.Code.matches($0, .unauthenticated)
        }
        #expect(try await registry.bootstrapIfEmpty(apiKey: nil) == nil)
    }

    @Test("API keys: secret shown once, hashed, role capped by the creator's, revocation notifies")
    func apiKeys() async throws {
        let fixture = try await RegistryFixture()
        let registry = fixture.registry
        let (key, secret) = try await registry.createAPIKey(name: "ci", role: .operator, expiresAt: nil, by: fixture.ownerA)
        #expect(secret.hasPrefix("mk_"))
        #expect(key.keyHash == Secrets.sha256(secret))
        #expect(key.prefix == String(secret.prefix(8)))
        let authenticated = try #require(try await registry.authenticateAPIKey(secret))
        #expect(authenticated.id == key.id)
        #expect(authenticated.lastUsedAt == fixture.clock.now)
        // last use is written at most once a minute
        fixture.clock.advance(30)
        #expect(try await registry.authenticateAPIKey(secret)?.lastUsedAt == authenticated.lastUsedAt)
        fixture.clock.advance(31)
        #expect(try await registry.authenticateAPIKey(secret)?.lastUsedAt == fixture.clock.now)

        let admin = fixture.caller(fixture.ownerA, role: .admin)
        await #expect { try await registry.createAPIKey(name: "root", role: .owner, expiresAt: nil, by: admin) } throws: {
            RegistryError.Code.matches($0, .forbidden)
        }
        let viewer = fixture.caller(fixture.ownerA, role: .viewer)
        await #expect { try await registry.createAPIKey(name: "v", role: .viewer, expiresAt: nil, by: viewer) } throws: {
            RegistryError.Code.matches($0, .forbidden)
        }
        await #expect { try await registry.createAPIKey(name: "old", role: .viewer, expiresAt: fixture.clock.now.addingTimeInterval(-1), by: admin) } throws: {
            RegistryError.Code.matches($0, .invalid, field: "expiresAt")
        }
        let (expiring, expiringSecret) = try await registry.createAPIKey(name: "short", role: .viewer, expiresAt: fixture.clock.now.addingTimeInterval(10), by: admin)
        #expect(try await registry.authenticateAPIKey(expiringSecret)?.id == expiring.id)
        fixture.clock.advance(11)
        #expect(try await registry.authenticateAPIKey(expiringSecret) == nil)

        try await registry.revokeAPIKey(id: key.id, by: fixture.ownerA)
        #expect(try await registry.authenticateAPIKey(secret) == nil)
        #expect(fixture.recordedChanges().contains(.apiKeyRevoked(apiKeyID: key.id)))
        #expect(try await registry.apiKeys(by: fixture.ownerA).first { $0.id == key.id }?.revokedAt != nil)
    }

    @Test("users: roles up to one's own, only owners grant owner, the last owner stays")
    func users() async throws {
        let fixture = try await RegistryFixture()
        let registry = fixture.registry
        let admin = fixture.caller(fixture.ownerA, role: .admin)
        let added = try await registry.addUser(username: "ops@example.com", password: "correct horse", role: .operator, by: admin)
        #expect(added.user.passwordHash.isEmpty)
        #expect(try await registry.users(by: admin).allSatisfy { $0.user.passwordHash.isEmpty })
        await #expect { try await registry.addUser(username: "boss@example.com", password: "correct horse", role: .owner, by: admin) } throws: {
            RegistryError.Code.matches($0, .forbidden)
        }
        await #expect { try await registry.addUser(username: "ops@example.com", password: nil, role: .viewer, by: admin) } throws: {
            RegistryError.Code.matches($0, .conflict, field: "username")
        }
        await #expect { try await registry.addUser(username: "new@example.com", password: nil, role: .viewer, by: admin) } throws: {
            RegistryError.Code.matches($0, .invalid, field: "password")
        }
        _ = try await registry.addUser(username: "boss@example.com", password: "correct horse", role: .owner, by: fixture.ownerA)
        #expect(try await registry.setRole(userID: added.user.id, role: .owner, by: fixture.ownerA).role == .owner)
        // Two owners now: one may be demoted.
        #expect(try await registry.setRole(userID: added.user.id, role: .viewer, by: fixture.ownerA).role == .viewer)
        try await registry.removeUser(userID: added.user.id, by: admin)
        #expect(try await registry.users(by: admin).map(\.user.username) == ["boss@example.com"])
        await #expect { try await registry.removeUser(userID: added.user.id, by: admin) } throws: {
            RegistryError.Code.matches($0, .notFound)
        }
    }

    @Test("the last owner cannot be demoted or removed")
    func lastOwner() async throws {
        let fixture = try await RegistryFixture()
        let registry = fixture.registry
        let owner = try await registry.addUser(username: "owner@example.com", password: "correct horse", role: .owner, by: fixture.ownerA)
        await #expect { try await registry.setRole(userID: owner.user.id, role: .admin, by: fixture.ownerA) } throws: {
            RegistryError.Code.matches($0, .conflict, field: "role")
        }
        await #expect { try await registry.removeUser(userID: owner.user.id, by: fixture.ownerA) } throws: {
            RegistryError.Code.matches($0, .conflict)
        }
        // An admin cannot touch an owner at all.
        await #expect { try await registry.removeUser(userID: owner.user.id, by: fixture.caller(fixture.ownerA, role: .admin)) } throws: {
            RegistryError.Code.matches($0, .forbidden)
        }
    }

    @Test("device create, read, update, delete with validation errors naming the field")
    func deviceCRUD() async throws {
        let fixture = try await RegistryFixture()
        let registry = fixture.registry
        let caller = fixture.caller(fixture.ownerA, role: .operator)
        let device = try await registry.createDevice(DeviceDraft(name: "pump-1", labels: ["site": "north", "k8s.io/zone": "a"]), by: caller)
        #expect(MeridianID.isValidDeviceID(device.id))
        #expect(device.status == .active)
        #expect(try await registry.device(device.id, by: caller) == device)

        await #expect { try await registry.createDevice(DeviceDraft(name: "pump-1"), by: caller) } throws: {
            RegistryError.Code.matches($0, .conflict, field: "name")
        }
        await #expect { try await registry.createDevice(DeviceDraft(id: device.id, name: "pump-2"), by: caller) } throws: {
            RegistryError.Code.matches($0, .conflict, field: "id")
        }
        await #expect { try await registry.createDevice(DeviceDraft(id: "bad/id", name: "pump-3"), by: caller) } throws: {
            RegistryError.Code.matches($0, .invalid, field: "id")
        }
        await #expect { try await registry.createDevice(DeviceDraft(name: ""), by: caller) } throws: {
            RegistryError.Code.matches($0, .invalid, field: "name")
        }
        await #expect { try await registry.createDevice(DeviceDraft(name: "x", labels: ["bad key": "v"]), by: caller) } throws: {
            RegistryError.Code.matches($0, .invalid, field: "labels")
        }
        await #expect { try await registry.createDevice(DeviceDraft(name: "x", labels: ["k": ""]), by: caller) } throws: {
            RegistryError.Code.matches($0, .invalid, field: "labels")
        }
        await #expect { try await registry.createDevice(DeviceDraft(name: "x", profile: "nope"), by: caller) } throws: {
            RegistryError.Code.matches($0, .invalid, field: "profile")
        }
        await #expect { try await registry.createDevice(DeviceDraft(name: "x"), by: fixture.caller(fixture.ownerA, role: .viewer)) } throws: {
            RegistryError.Code.matches($0, .forbidden)
        }

        let chosen = try await registry.createDevice(DeviceDraft(id: "truck:42", name: "truck", metadata: .object(["vin": .string("X1")])), by: caller)
        #expect(chosen.id == "truck:42")
        #expect(chosen.metadata["vin"]?.stringValue == "X1")

        let updated = try await registry.updateDevice(device.id, DevicePatch(name: "pump-one", labels: ["site": "south"], status: .disabled), by: caller)
        #expect(updated.name == "pump-one")
        #expect(updated.labels == ["site": "south"])
        #expect(updated.status == .disabled)
        #expect(fixture.recordedChanges().contains(.deviceRevoked(deviceID: device.id, reason: "disabled")))
        await #expect { try await registry.updateDevice(device.id, DevicePatch(name: "truck"), by: caller) } throws: {
            RegistryError.Code.matches($0, .conflict, field: "name")
        }
        await #expect { try await registry.updateDevice(device.id, DevicePatch(status: .decommissioned), by: caller) } throws: {
            RegistryError.Code.matches($0, .invalid, field: "status")
        }
        // The label index follows the update.
        let south = try await registry.devices(DeviceQuery(tenantID: "ignored", labels: ["site": "south"]), by: caller)
        #expect(south.items.map(\.id) == [device.id])
        #expect(try await registry.devices(DeviceQuery(tenantID: "", labels: ["site": "north"]), by: caller).items.isEmpty)

        try await registry.deleteDevice(device.id, by: caller)
        await #expect { try await registry.device(device.id, by: caller) } throws: { RegistryError.Code.matches($0, .notFound) }
        #expect(fixture.recordedChanges().contains(.deviceRevoked(deviceID: device.id, reason: "deleted")))
    }

    @Test("device lists page by id with a cursor and filter by labels, status, profile and name prefix")
    func listing() async throws {
        let fixture = try await RegistryFixture()
        let registry = fixture.registry
        let caller = fixture.ownerA
        let (profile, _) = try await registry.createProfile(ProfileDraft(name: "thermometer"), by: caller)
        for index in 0..<25 {
            let labels = ["parity": index % 2 == 0 ? "even" : "odd", "site": index < 10 ? "north" : "south"]
            _ = try await registry.createDevice(
                DeviceDraft(id: String(format: "dev-%02d", index), name: (index < 5 ? "boiler-" : "sensor-") + "\(index)", profile: index % 5 == 0 ? "thermometer" : nil, labels: labels),
                by: caller
            )
        }
        var ids: [String] = []
        var cursor: String?
        var pages = 0
        repeat {
            let page = try await registry.devices(DeviceQuery(tenantID: "", limit: 10, after: cursor), by: caller)
            ids += page.items.map(\.id)
            cursor = page.nextCursor
            pages += 1
        } while cursor != nil
        #expect(pages == 3)
        #expect(ids == (0..<25).map { String(format: "dev-%02d", $0) })

        let evenNorth = try await registry.devices(DeviceQuery(tenantID: "", labels: ["parity": "even", "site": "north"]), by: caller)
        #expect(evenNorth.items.map(\.id) == ["dev-00", "dev-02", "dev-04", "dev-06", "dev-08"])
        #expect(evenNorth.nextCursor == nil)
        let boilers = try await registry.devices(DeviceQuery(tenantID: "", namePrefix: "boiler-"), by: caller)
        #expect(boilers.items.count == 5)
        let byProfileName = try await registry.devices(DeviceQuery(tenantID: "", profileID: "thermometer"), by: caller)
        let byProfileID = try await registry.devices(DeviceQuery(tenantID: "", profileID: profile.id), by: caller)
        #expect(byProfileName.items.map(\.id) == ["dev-00", "dev-05", "dev-10", "dev-15", "dev-20"])
        #expect(byProfileID == byProfileName)
        _ = try await registry.updateDevice("dev-03", DevicePatch(status: .disabled), by: caller)
        #expect(try await registry.devices(DeviceQuery(tenantID: "", status: .disabled), by: caller).items.map(\.id) == ["dev-03"])
        await #expect { try await registry.devices(DeviceQuery(tenantID: "", limit: 0), by: caller) } throws: {
            RegistryError.Code.matches($0, .invalid, field: "limit")
        }
    }

    @Test("decommissioning revokes every credential and keeps or purges the device")
    func decommission() async throws {
        let fixture = try await RegistryFixture()
        let registry = fixture.registry
        let caller = fixture.ownerA
        let kept = try await registry.createDevice(DeviceDraft(name: "old-meter"), by: caller)
        let issued = try await registry.createCredential(deviceID: kept.id, .token(nil), by: caller)
        let token = try #require(issued.token)
        #expect(try await registry.authenticateDevice(token: token) != nil)
        let result = try #require(try await registry.decommissionDevice(kept.id, purge: false, by: caller))
        #expect(result.status == .decommissioned)
        #expect(try await registry.authenticateDevice(token: token) == nil)
        #expect(try await registry.credentials(deviceID: kept.id, by: caller).allSatisfy { $0.revokedAt != nil })
        #expect(fixture.recordedChanges().contains(.deviceRevoked(deviceID: kept.id, reason: "decommissioned")))
        await #expect { try await registry.updateDevice(kept.id, DevicePatch(status: .active), by: caller) } throws: {
            RegistryError.Code.matches($0, .conflict, field: "status")
        }
        await #expect { try await registry.createCredential(deviceID: kept.id, .token(nil), by: caller) } throws: {
            RegistryError.Code.matches($0, .conflict)
        }

        let purged = try await registry.createDevice(DeviceDraft(name: "scrap"), by: caller)
        #expect(try await registry.decommissionDevice(purged.id, purge: true, by: caller) == nil)
        await #expect { try await registry.device(purged.id, by: caller) } throws: { RegistryError.Code.matches($0, .notFound) }
        let audit = try await registry.auditEntries(by: caller, limit: 100, before: nil)
        #expect(audit.items.contains { $0.action == "device.decommission" && $0.details["purge"] == "true" && $0.target == "device:\(purged.id)" })
        #expect(audit.items.contains { $0.action == "device.decommission" && $0.details["purge"] == "false" && $0.target == "device:\(kept.id)" })
    }

    @Test("markSeen updates many devices at once")
    func markSeen() async throws {
        let fixture = try await RegistryFixture()
        var ids: [String] = []
        for index in 0..<700 { ids.append(try await fixture.registry.createDevice(DeviceDraft(name: "d\(index)"), by: fixture.ownerA).id) }
        let seen = Date(timeIntervalSince1970: 1_800_000_000)
        try await fixture.registry.markSeen(deviceIDs: ids, at: seen)
        let page = try await fixture.registry.devices(DeviceQuery(tenantID: "", limit: 1000), by: fixture.ownerA)
        #expect(page.items.count == 700)
        #expect(page.items.allSatisfy { $0.lastSeenAt == seen })
    }

    @Test("the database reopens with its data; a newer schema is refused untouched")
    func reopen() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-registry-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("meridian.sqlite").path
        do {
            let registry = Registry(store: try SQLiteRegistryStore(path: path))
            _ = try await registry.bootstrapIfEmpty(apiKey: "reopen-key-0123456789")
        }
        let store = try SQLiteRegistryStore(path: path)
        let registry = Registry(store: store)
        #expect(try await registry.authenticateAPIKey("reopen-key-0123456789") != nil)
        #expect(try await registry.bootstrapIfEmpty(apiKey: nil) == nil)
        try await store.unsafeExecute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('registry-v99')")
        #expect(throws: SQLiteRegistryStore.OpenError.self) { try SQLiteRegistryStore(path: path) }
    }
}

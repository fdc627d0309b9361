import Foundation
import MeridianCore
import MeridianStorage
import Testing

@Suite("Registry: tenant isolation")
struct RegistryIsolationTests {
    private func expectNotFound(_ what: String, _ body: () async throws -> Void) async {
        do {
            try await body()
            Issue.record("tenant B reached tenant A's \(what)")
        } catch let error as RegistryError {
            #expect(error.code == .notFound, "\(what): \(error)")
        } catch {
            Issue.record("\(what): unexpected \(error)")
        }
    }

    @Test("tenant B can neither see nor change tenant A's devices, credentials, profiles, keys, users or audit entries")
    func isolation() async throws {
        let fixture = try await RegistryFixture()
        let registry = fixture.registry
        let a = fixture.ownerA
        let b = try await fixture.makeTenant("tenant-b")

        let (profile, _) = try await registry.createProfile(ProfileDraft(name: "shared-name"), by: a)
        let device = try await registry.createDevice(DeviceDraft(name: "a-device", profile: profile.id, labels: ["site": "a"]), by: a)
        let credential = try await registry.createCredential(deviceID: device.id, .token(nil), by: a)
        let (key, _) = try await registry.createAPIKey(name: "a-key", role: .viewer, expiresAt: nil, by: a)
        let user = try await registry.addUser(username: "alice@example.com", password: "correct horse", role: .viewer, by: a)

        // Devices
        await expectNotFound("device read") { _ = try await registry.device(device.id, by: b) }
        await expectNotFound("device update") { _ = try await registry.updateDevice(device.id, DevicePatch(name: "mine"), by: b) }
        await expectNotFound("device delete") { try await registry.deleteDevice(device.id, by: b) }
        await expectNotFound("device decommission") { _ = try await registry.decommissionDevice(device.id, purge: true, by: b) }
        #expect(try await registry.devices(DeviceQuery(tenantID: fixture.tenantA.id), by: b).items.isEmpty)
        #expect(try await registry.devices(DeviceQuery(tenantID: "", labels: ["site": "a"]), by: b).items.isEmpty)
        // Names are per tenant: B may use A's device and profile names.
        _ = try await registry.createDevice(DeviceDraft(name: "a-device"), by: b)
        _ = try await registry.createProfile(ProfileDraft(name: "shared-name"), by: b)
        // B cannot attach A's profile.
        await #expect { try await registry.createDevice(DeviceDraft(name: "x", profile: profile.id), by: b) } throws: {
            RegistryError.Code.matches($0, .invalid, field: "profile")
        }
        // But ids are global.
        await #expect { try await registry.createDevice(DeviceDraft(id: device.id, name: "copy"), by: b) } throws: {
            RegistryError.Code.matches($0, .conflict, field: "id")
        }

        // Credentials
        await expectNotFound("credential list") { _ = try await registry.credentials(deviceID: device.id, by: b) }
        await expectNotFound("credential create") { _ = try await registry.createCredential(deviceID: device.id, .token(nil), by: b) }
        await expectNotFound("credential revoke") {
            try await registry.revokeCredential(deviceID: device.id, credentialID: credential.credential.id, by: b)
        }
        let ownB = try await registry.createDevice(DeviceDraft(name: "b-device"), by: b)
        await expectNotFound("credential revoke through own device") {
            try await registry.revokeCredential(deviceID: ownB.id, credentialID: credential.credential.id, by: b)
        }

        // Profiles
        await expectNotFound("profile read") { _ = try await registry.profile(profile.id, by: b) }
        await expectNotFound("profile update") { _ = try await registry.updateProfile(profile.id, ProfileDraft(name: "taken"), by: b) }
        await expectNotFound("profile delete") { try await registry.deleteProfile(profile.id, by: b) }
        #expect(try await registry.profiles(by: b).allSatisfy { $0.tenantID == b.tenantID })

        // API keys and users
        await expectNotFound("API key revoke") { try await registry.revokeAPIKey(id: key.id, by: b) }
        #expect(try await registry.apiKeys(by: b).allSatisfy { $0.tenantID == b.tenantID })
        await expectNotFound("user role") { _ = try await registry.setRole(userID: user.user.id, role: .admin, by: b) }
        await expectNotFound("user remove") { try await registry.removeUser(userID: user.user.id, by: b) }
        #expect(try await registry.users(by: b).isEmpty)

        // Audit entries
        let auditB = try await registry.auditEntries(by: b, limit: 1000, before: nil)
        #expect(auditB.items.allSatisfy { $0.tenantID == b.tenantID })
        #expect(!auditB.items.contains { $0.target == "device:\(device.id)" })

        // Nothing of A's changed.
        #expect(try await registry.device(device.id, by: a) == device)
        #expect(try await registry.authenticateDevice(token: try #require(credential.token)) != nil)
        #expect(try await registry.users(by: a).map(\.role) == [.viewer])
        #expect(try await registry.apiKeys(by: a).first { $0.id == key.id }?.revokedAt == nil)
    }

    @Test("every read and change needs the right role")
    func roles() async throws {
        let fixture = try await RegistryFixture()
        let registry = fixture.registry
        let viewer = fixture.caller(fixture.ownerA, role: .viewer)
        let op = fixture.caller(fixture.ownerA, role: .operator)
        let device = try await registry.createDevice(DeviceDraft(name: "d"), by: op)
        _ = try await registry.device(device.id, by: viewer)
        await #expect { try await registry.createCredential(deviceID: device.id, .token(nil), by: viewer) } throws: {
            RegistryError.Code.matches($0, .forbidden)
        }
        await #expect { try await registry.createProfile(ProfileDraft(name: "p"), by: op) } throws: {
            RegistryError.Code.matches($0, .forbidden)
        }
        await #expect { try await registry.auditEntries(by: op, limit: 10, before: nil) } throws: {
            RegistryError.Code.matches($0, .forbidden)
        }
        await #expect { try await registry.registerCertificateAuthority(pem: "x", by: op) } throws: {
            RegistryError.Code.matches($0, .forbidden)
        }
        await #expect { try await registry.createTenant(name: "mine", by: fixture.ownerA) } throws: {
            RegistryError.Code.matches($0, .forbidden)
        }
    }
}

import Foundation
import MeridianCore
import MeridianStorage
import Testing

@Suite("Registry: provisioning and claiming")
struct RegistryProvisioningTests {
    @Test("allow-create provisions new devices with a token, refuses bad secrets and a second provisioning")
    func allowCreate() async throws {
        let fixture = try await RegistryFixture()
        let registry = fixture.registry
        let (profile, secret) = try await registry.createProfile(
            ProfileDraft(name: "field-sensor", provisioningMode: .allowCreate, provisioningKey: "field-key"), by: fixture.ownerA
        )
        let provisioningSecret = try #require(secret)
        #expect(profile.provisioning.secretHash == Secrets.sha256(provisioningSecret))

        let (device, credential) = try await registry.provision(
            ProvisionRequest(provisionKey: "field-key", provisionSecret: provisioningSecret, deviceName: "sensor-a", remoteAddress: "198.51.100.7")
        )
        #expect(device.name == "sensor-a")
        #expect(device.profileID == profile.id)
        #expect(device.tenantID == fixture.tenantA.id)
        #expect(credential.credential.type == .token)
        #expect(try await registry.authenticateDevice(token: try #require(credential.token))?.deviceID == device.id)
        let audit = try await registry.auditEntries(by: fixture.ownerA, limit: 10, before: nil)
        #expect(audit.items.contains { $0.action == "device.create" && $0.actor == AuditActor(kind: .device, id: device.id, remoteAddress: "198.51.100.7") })

        await #expect { try await registry.provision(ProvisionRequest(provisionKey: "field-key", provisionSecret: "wrong-secret", deviceName: "sensor-b")) } throws: {
            RegistryError.Code.matches($0, .unauthenticated)
        }
        await #expect { try await registry.provision(ProvisionRequest(provisionKey: "no-such-key", provisionSecret: provisioningSecret, deviceName: "sensor-b")) } throws: {
            RegistryError.Code.matches($0, .unauthenticated)
        }
        // Provisioned already: refused until its credentials are revoked.
        await #expect { try await registry.provision(ProvisionRequest(provisionKey: "field-key", provisionSecret: provisioningSecret, deviceName: "sensor-a")) } throws: {
            RegistryError.Code.matches($0, .conflict)
        }
        try await registry.revokeCredential(deviceID: device.id, credentialID: credential.credential.id, by: fixture.ownerA)
        let (again, second) = try await registry.provision(
            ProvisionRequest(provisionKey: "field-key", provisionSecret: provisioningSecret, deviceName: "sensor-a", credential: .token("my-own-token-0123456789"))
        )
        #expect(again.id == device.id)
        #expect(second.token == "my-own-token-0123456789")

        // No name: one is generated.
        let (unnamed, _) = try await registry.provision(ProvisionRequest(provisionKey: "field-key", provisionSecret: provisioningSecret, deviceName: nil))
        #expect(unnamed.name.hasPrefix("device-"))

        // Switched off: forbidden.
        _ = try await registry.updateProfile(profile.id, ProfileDraft(name: "field-sensor", provisioningMode: .disabled), by: fixture.ownerA)
        await #expect { try await registry.provision(ProvisionRequest(provisionKey: "field-key", provisionSecret: provisioningSecret, deviceName: "sensor-c")) } throws: {
            RegistryError.Code.matches($0, .forbidden)
        }
        // Provisioning keys are unique across tenants.
        let b = try await fixture.makeTenant("b")
        await #expect { try await registry.createProfile(ProfileDraft(name: "x", provisioningMode: .allowCreate, provisioningKey: "field-key"), by: b) } throws: {
            RegistryError.Code.matches($0, .conflict, field: "provisioningKey")
        }
    }

    @Test("pre-registered-only hands credentials only to devices that exist and are active")
    func preRegistered() async throws {
        let fixture = try await RegistryFixture()
        let registry = fixture.registry
        _ = try await registry.createProfile(
            ProfileDraft(name: "fleet", provisioningMode: .preRegisteredOnly, provisioningKey: "fleet-key", provisioningSecret: "fleet-secret-1"), by: fixture.ownerA
        )
        let truck = try await registry.createDevice(DeviceDraft(name: "truck-7", profile: "fleet"), by: fixture.ownerA)
        await #expect { try await registry.provision(ProvisionRequest(provisionKey: "fleet-key", provisionSecret: "fleet-secret-1", deviceName: "truck-8")) } throws: {
            RegistryError.Code.matches($0, .forbidden)
        }
        let (device, credential) = try await registry.provision(
            ProvisionRequest(provisionKey: "fleet-key", provisionSecret: "fleet-secret-1", deviceName: "truck-7", credential: .password(username: "truck-7", password: "truck-pass-7"))
        )
        #expect(device.id == truck.id)
        #expect(credential.credential.type == .password)
        #expect(try await registry.authenticateDevice(username: "truck-7", password: "truck-pass-7")?.deviceID == truck.id)

        let parked = try await registry.createDevice(DeviceDraft(name: "truck-9", profile: "fleet"), by: fixture.ownerA)
        _ = try await registry.updateDevice(parked.id, DevicePatch(status: .disabled), by: fixture.ownerA)
        await #expect { try await registry.provision(ProvisionRequest(provisionKey: "fleet-key", provisionSecret: "fleet-secret-1", deviceName: "truck-9")) } throws: {
            RegistryError.Code.matches($0, .forbidden)
        }
    }

    @Test("claiming moves a device with a valid code to the claimer's tenant and revokes its old credentials")
    func claiming() async throws {
        let fixture = try await RegistryFixture()
        let registry = fixture.registry
        let maker = fixture.ownerA
        let buyer = try await fixture.makeTenant("buyer")
        _ = try await registry.createProfile(ProfileDraft(name: "factory"), by: maker)
        let device = try await registry.createDevice(DeviceDraft(name: "kettle-1", profile: "factory"), by: maker)
        let credential = try await registry.createCredential(deviceID: device.id, .token(nil), by: maker)
        let token = try #require(credential.token)

        // A device sets only its own code.
        await #expect {
            try await registry.setClaimCode(deviceID: device.id, code: "ABC-123-XYZ", duration: 3600, actor: AuditActor(kind: .device, id: "someone-else"))
        } throws: { RegistryError.Code.matches($0, .forbidden) }
        try await registry.setClaimCode(deviceID: device.id, code: "ABC-123-XYZ", duration: 3600, actor: AuditActor(kind: .device, id: device.id))

        await #expect { try await registry.claimDevice(deviceID: device.id, code: "WRONG-CODE", by: buyer) } throws: {
            RegistryError.Code.matches($0, .notFound)
        }
        await #expect { try await registry.claimDevice(deviceID: "no-such-device", code: "ABC-123-XYZ", by: buyer) } throws: {
            RegistryError.Code.matches($0, .notFound)
        }
        let claimed = try await registry.claimDevice(deviceID: device.id, code: "ABC-123-XYZ", by: buyer)
        #expect(claimed.tenantID == buyer.tenantID)
        #expect(claimed.profileID == nil)
        #expect(try await registry.device(device.id, by: buyer).name == "kettle-1")
        await #expect { try await registry.device(device.id, by: maker) } throws: { RegistryError.Code.matches($0, .notFound) }
        #expect(try await registry.authenticateDevice(token: token) == nil)
        #expect(try await registry.credentials(deviceID: device.id, by: buyer).isEmpty)
        #expect(fixture.recordedChanges().contains(.deviceRevoked(deviceID: device.id, reason: "claimed by another tenant")))
        #expect(fixture.recordedChanges().contains(.credentialRevoked(deviceID: device.id, credentialID: credential.credential.id)))
        // The code is used up.
        let third = try await fixture.makeTenant("third")
        await #expect { try await registry.claimDevice(deviceID: device.id, code: "ABC-123-XYZ", by: third) } throws: {
            RegistryError.Code.matches($0, .notFound)
        }
        // Both tenants' logs record it.
        #expect(try await registry.auditEntries(by: maker, limit: 50, before: nil).items.contains { $0.action == "device.claimed-away" })
        #expect(try await registry.auditEntries(by: buyer, limit: 50, before: nil).items.contains { $0.action == "device.claim" })
        #expect(try await registry.verifyAudit().isIntact)

        // The new owner can issue credentials.
        _ = try await registry.createCredential(deviceID: device.id, .token(nil), by: buyer)
    }

    @Test("claim codes expire, and a name taken in the claimer's tenant is a conflict")
    func claimingLimits() async throws {
        let fixture = try await RegistryFixture()
        let registry = fixture.registry
        let buyer = try await fixture.makeTenant("buyer")
        let device = try await registry.createDevice(DeviceDraft(name: "lamp"), by: fixture.ownerA)
        try await registry.setClaimCode(deviceID: device.id, code: "LAMP-CODE-1", duration: 60, by: fixture.ownerA)
        _ = try await registry.createDevice(DeviceDraft(name: "lamp"), by: buyer)
        await #expect { try await registry.claimDevice(deviceID: device.id, code: "LAMP-CODE-1", by: buyer) } throws: {
            RegistryError.Code.matches($0, .conflict, field: "name")
        }
        fixture.clock.advance(61)
        let other = try await fixture.makeTenant("other")
        await #expect { try await registry.claimDevice(deviceID: device.id, code: "LAMP-CODE-1", by: other) } throws: {
            RegistryError.Code.matches($0, .notFound)
        }
        // Another tenant cannot set a code on A's device.
        await #expect { try await registry.setClaimCode(deviceID: device.id, code: "MINE-NOW-1", duration: 60, by: other) } throws: {
            RegistryError.Code.matches($0, .notFound)
        }
    }
}

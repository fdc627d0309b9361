import Foundation
import MeridianCore
import MeridianStorage
import Testing

@Suite("Registry: audit log")
struct RegistryAuditTests {
    @Test("every change is audited with who, what and where; the chain verifies; an edited row is detected")
    func chain() async throws {
        let fixture = try await RegistryFixture()
        let registry = fixture.registry
        let b = try await fixture.makeTenant("b")
        for index in 0..<40 {
            let caller = index % 2 == 0 ? fixture.ownerA : b
            let device = try await registry.createDevice(DeviceDraft(name: "d\(index)"), by: caller)
            let credential = try await registry.createCredential(deviceID: device.id, .token(nil), by: caller)
            if index % 3 == 0 { try await registry.revokeCredential(deviceID: device.id, credentialID: credential.credential.id, by: caller) }
            if index % 5 == 0 { _ = try await registry.updateDevice(device.id, DevicePatch(labels: ["n": "\(index)"]), by: caller) }
        }
        let verification = try await registry.verifyAudit()
        #expect(verification.isIntact)
        #expect(verification.entries > 100)

        let page = try await registry.auditEntries(by: fixture.ownerA, limit: 5, before: nil)
        #expect(page.items.count == 5)
        #expect(page.items.map(\.sequence) == page.items.map(\.sequence).sorted(by: >))
        let first = page.items[0]
        #expect(first.actor == fixture.ownerA.actor)
        #expect(first.actor.remoteAddress == "192.0.2.1")
        let next = try await registry.auditEntries(by: fixture.ownerA, limit: 5, before: Int64(try #require(page.nextCursor)))
        #expect(next.items.allSatisfy { $0.sequence < page.items.last!.sequence })

        // No secrets in details.
        let all = try await registry.auditEntries(by: fixture.ownerA, limit: 1000, before: nil)
        let tokenCreations = all.items.filter { $0.action == "credential.create" }
        #expect(!tokenCreations.isEmpty)
        #expect(tokenCreations.allSatisfy { Set($0.details.keys).isSubset(of: ["device", "type", "generated"]) })

        // Tampering with one row breaks the chain exactly there.
        let victim = all.items[all.items.count / 2].sequence
        try await fixture.store.unsafeExecute(sql: "UPDATE audit_log SET actor_id = 'someone-else' WHERE sequence = \(victim)")
        let broken = try await registry.verifyAudit()
        #expect(!broken.isIntact)
        #expect(broken.firstBrokenSequence == victim)
        #expect(broken.entries == victim - 1)
    }

    @Test(
        "tampering by hand — a blob, a wrong type, an unknown actor kind, a removed entry — is reported at that entry, never a crash",
        arguments: [
            "UPDATE audit_log SET hash = x'00ff' WHERE sequence = VICTIM",
            "UPDATE audit_log SET timestamp_ms = 'yesterday' WHERE sequence = VICTIM",
            "UPDATE audit_log SET actor_kind = 'robot' WHERE sequence = VICTIM",
            "UPDATE audit_log SET details = 'not json' WHERE sequence = VICTIM",
            "DROP TRIGGER IF EXISTS audit_log_no_delete; DELETE FROM audit_log WHERE sequence = VICTIM",
        ]
    )
    func tamperingByHand(statement: String) async throws {
        let fixture = try await RegistryFixture()
        for index in 0..<6 {
            _ = try await fixture.registry.createDevice(DeviceDraft(name: "tamper-\(index)"), by: fixture.ownerA)
        }
        let intact = try await fixture.registry.verifyAudit()
        #expect(intact.isIntact)
        let victim = intact.entries - 3
        try await fixture.store.unsafeExecute(sql: statement.replacingOccurrences(of: "VICTIM", with: "\(victim)"))
        let broken = try await fixture.registry.verifyAudit()
        #expect(!broken.isIntact)
        // A removed entry shows up at the one after it (the sequence gap).
        #expect(broken.firstBrokenSequence == (statement.contains("DELETE") ? victim + 1 : victim))
    }

    @Test("a failed change leaves no audit entry and the chain intact")
    func rollback() async throws {
        let fixture = try await RegistryFixture()
        let before = try await fixture.registry.verifyAudit().entries
        _ = try await fixture.registry.createDevice(DeviceDraft(name: "one"), by: fixture.ownerA)
        await #expect(throws: RegistryError.self) { try await fixture.registry.createDevice(DeviceDraft(name: "one"), by: fixture.ownerA) }
        let after = try await fixture.registry.verifyAudit()
        #expect(after.isIntact)
        #expect(after.entries == before + 1)
    }
}

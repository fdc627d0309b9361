import Foundation
import MeridianCore
import Testing

@Suite("Audit chain")
struct AuditChainTests {
    private func chain(_ count: Int) -> [AuditEntry] {
        var entries: [AuditEntry] = []
        var previous = AuditEntry.genesisHash
        for index in 1...count {
            let record = AuditRecord(
                tenantID: "t1",
                actor: AuditActor(kind: .user, id: "u\(index)", remoteAddress: "127.0.0.1"),
                action: "device.create",
                target: "device:d\(index)",
                details: ["name": "sensor-\(index)", "labels": "site=a"]
            )
            let entry = AuditEntry(sequence: Int64(index), timestamp: Date(timeIntervalSince1970: 1_700_000_000 + Double(index)), record: record, previousHash: previous)
            previous = entry.hash
            entries.append(entry)
        }
        return entries
    }

    private func verify(_ entries: [AuditEntry]) -> AuditChain.Verification {
        var verifier = AuditChain.Verifier()
        for entry in entries where !verifier.feed(entry) { break }
        return verifier.result
    }

    @Test("an untouched chain verifies")
    func intact() {
        let result = verify(chain(20))
        #expect(result.isIntact)
        #expect(result.entries == 20)
    }

    @Test("an edited field, a removed entry, or a re-hashed edit is detected at that entry")
    func tampering() {
        var edited = chain(10)
        edited[4].target = "device:other"
        #expect(verify(edited).firstBrokenSequence == 5)

        var removed = chain(10)
        removed.remove(at: 6)
        #expect(verify(removed).firstBrokenSequence == 8)

        // Recomputing the edited entry's own hash moves the break to the next entry.
        var rehashed = chain(10)
        rehashed[2].details["name"] = "forged"
        rehashed[2].hash = rehashed[2].computedHash()
        #expect(verify(rehashed).firstBrokenSequence == 4)
    }

    @Test("password hashes verify the right password only, and are salted")
    func passwordHash() {
        let first = PasswordHash.make("correct horse", rounds: 1000)
        let second = PasswordHash.make("correct horse", rounds: 1000)
        #expect(first != second)
        #expect(PasswordHash.verify("correct horse", against: first))
        #expect(!PasswordHash.verify("correct horsE", against: first))
        #expect(!PasswordHash.verify("correct horse", against: "garbage"))
    }
}

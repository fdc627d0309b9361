import Foundation
import MeridianCore
import MeridianStorage
import Synchronization

/// A registry on a real SQLite file in a fresh temporary directory, with tenant `default`
/// (bootstrapped with an API key) and helpers for a second tenant.
final class RegistryFixture: Sendable {
    let directory: URL
    let store: SQLiteRegistryStore
    let registry: Registry
    let clock: TestClock
    /// The bootstrap key's owner in tenant `default`.
    let ownerA: Caller
    let tenantA: Tenant
    let changes = ChangeLog()

    init() async throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-registry-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        store = try SQLiteRegistryStore(path: directory.appendingPathComponent("meridian.sqlite").path)
        let clock = TestClock()
        self.clock = clock
        registry = Registry(store: store, now: { clock.now })
        guard let result = try await registry.bootstrapIfEmpty(apiKey: "test-bootstrap-key-0123456789"), let keyID = result.apiKeyID else {
            throw FixtureError(description: "bootstrap did nothing")
        }
        tenantA = result.tenant
        ownerA = Caller(tenantID: result.tenant.id, role: .owner, actor: AuditActor(kind: .apiKey, id: keyID, remoteAddress: "192.0.2.1"))
        let changes = self.changes
        registry.observe { change in changes.entries.withLock { $0.append(change) } }
    }

    deinit {
        try? FileManager.default.removeItem(at: directory)
    }

    /// A second tenant with an owner API key (set up directly in the store).
    func makeTenant(_ name: String) async throws -> Caller {
        let tenant = Tenant(id: MeridianID.generate(), name: name, createdAt: clock.now)
        let key = APIKey(
            id: MeridianID.generate(), tenantID: tenant.id, name: "owner", role: .owner, keyHash: Secrets.sha256(Secrets.generate()),
            prefix: "", createdAt: clock.now
        )
        try await store.write { tx in
            try tx.insertTenant(tenant)
            try tx.insertAPIKey(key)
        }
        return Caller(tenantID: tenant.id, role: .owner, actor: AuditActor(kind: .apiKey, id: key.id))
    }

    func caller(_ base: Caller, role: Role) -> Caller {
        Caller(tenantID: base.tenantID, role: role, actor: base.actor)
    }

    func recordedChanges() -> [RegistryChange] {
        changes.entries.withLock { $0 }
    }
}

/// What observers were told.
final class ChangeLog: Sendable {
    let entries = Mutex<[RegistryChange]>([])
}

struct FixtureError: Error, CustomStringConvertible {
    var description: String
}

/// A clock tests move by hand, in whole milliseconds.
final class TestClock: Sendable {
    private let milliseconds = Mutex(Int64(Date().timeIntervalSince1970 * 1000))

    var now: Date { Date(timeIntervalSince1970: Double(milliseconds.withLock { $0 }) / 1000) }

    func advance(_ seconds: TimeInterval) {
        milliseconds.withLock { $0 += Int64(seconds * 1000) }
    }
}

extension RegistryError.Code {
    /// For `#expect(throws:)` checks on a code and field.
    static func matches(_ error: any Error, _ code: RegistryError.Code, field: String? = nil) -> Bool {
        guard let error = error as? RegistryError, error.code == code else { return false }
        return field == nil || error.field == field
    }
}

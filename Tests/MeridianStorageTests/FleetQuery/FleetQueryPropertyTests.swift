import Foundation
import MeridianCore
import MeridianStorage
import Synchronization
import Testing

/// Random fleets and random queries: what ``FleetQueryService`` returns (registry prefilter,
/// batching, paging, evaluation) must equal a brute-force filter written independently of the
/// query engine, on every registry backend.
@Suite("Fleet query: results equal a brute-force filter on random fleets")
struct FleetQueryPropertyTests {
    @Test("SQLite", arguments: [1, 2, 3])
    func sqlite(seed: UInt64) async throws {
        try await ConformanceContext.with(.sqlite) { try await Self.run(seed: seed, context: $0) }
    }

    @Test("PostgreSQL", .enabled(if: PostgresTestServer.isConfigured, "needs MERIDIAN_TEST_POSTGRES_URL (bash scripts/test sets it)"), arguments: [4])
    func postgres(seed: UInt64) async throws {
        try await ConformanceContext.with(.postgres) { try await Self.run(seed: seed, context: $0) }
    }

    /// What the generator decided about one device: the oracle reads only this.
    struct Model: Sendable {
        var id: String
        var name: String
        var labels: [String: String]
        var status: DeviceStatus
        var profile: String?
        var rack: Double?
        var online: Bool
        var version: String?
        var mode: String?
        var temperature: Double?
        var lastSeen: Int64?
    }

    /// A condition as text plus the oracle's verdict for it.
    struct Condition {
        var text: String
        var holds: (Model) -> Bool
    }

    static func run(seed: UInt64, context: ConformanceContext) async throws {
        var random = SeededGenerator(seed: seed)
        guard let boot = try await context.registry.bootstrapIfEmpty(apiKey: "fleet-property-key-0123456789"), let keyID = boot.apiKeyID else {
            throw FixtureError(description: "bootstrap did nothing")
        }
        let caller = Caller(tenantID: boot.tenant.id, role: .owner, actor: AuditActor(kind: .apiKey, id: keyID))
        // Another tenant's devices must never show up.
        let other = Tenant(id: "other-tenant", name: "other", createdAt: context.now)
        try await context.store.write { try $0.insertTenant(other) }
        for name in ["p1", "p2"] { _ = try await context.registry.createProfile(ProfileDraft(name: name), by: caller) }
        let profiles = try await context.registry.profiles(by: caller)
        let profileIDs = Dictionary(uniqueKeysWithValues: profiles.map { ($0.name, $0.id) })

        let sites = ["plant-1", "plant-2", "plant-3", "plänt-4"]
        let versions = ["1.0", "1.5", "1.10", "2.0", "2.1"]
        let nowMilliseconds = Int64((context.now.timeIntervalSince1970 * 1000).rounded())
        var models: [Model] = []
        for index in 0..<240 {
            var labels: [String: String] = [:]
            if random.next() % 5 != 0 { labels["site"] = sites.randomElement(using: &random) }
            if random.next() % 2 == 0 { labels["tier"] = ["a", "b", "c"].randomElement(using: &random) }
            let rack: Double? = random.next() % 4 == 0 ? nil : Double(random.next() % 10)
            let seenAgo = Int64(random.next() % 7200) * 1000
            models.append(
                Model(
                    id: String(format: "dev-%03d", index), name: "device \(index)", labels: labels,
                    status: random.next() % 5 == 0 ? .disabled : .active,
                    profile: [nil, "p1", "p2"].randomElement(using: &random) ?? nil, rack: rack,
                    online: random.next() % 3 == 0, version: random.next() % 6 == 0 ? nil : versions.randomElement(using: &random),
                    mode: ["eco", "turbo", nil].randomElement(using: &random) ?? nil,
                    temperature: random.next() % 5 == 0 ? nil : Double(Int(random.next() % 600) - 100) / 10,
                    lastSeen: random.next() % 4 == 0 ? nil : nowMilliseconds - seenAgo
                )
            )
        }
        let rows = models.enumerated().map { index, model in
            DeviceImport.Row(
                line: index + 1,
                draft: DeviceDraft(
                    id: model.id, name: model.name, profile: model.profile, labels: model.labels,
                    metadata: model.rack.map { .object(["rack": .number($0), "tags": .array([])]) }
                )
            )
        }
        _ = try await context.registry.importDevices(rows, by: caller)
        for model in models where model.status == .disabled {
            _ = try await context.registry.updateDevice(model.id, DevicePatch(status: .disabled), by: caller)
        }
        for model in models {
            if let seen = model.lastSeen {
                try await context.registry.markSeen(deviceIDs: [model.id], at: Date(timeIntervalSince1970: Double(seen) / 1000))
            }
        }
        try await context.store.write { tx in
            try tx.insertDevice(Device(id: "zz-other", tenantID: other.id, name: "device 1", labels: ["site": "plant-1"], createdAt: context.now))
        }

        let sources = FleetTestSources(models: models)
        let service = FleetQueryService(
            registry: context.registry, presence: sources, twins: sources, telemetry: sources,
            batchSize: Int(random.next() % 50) + 7, now: { context.now }
        )
        #expect(profileIDs.count == 2)

        for round in 0..<150 {
            let condition = makeCondition(depth: 3, random: &random, sites: sites, versions: versions, now: nowMilliseconds)
            let query = try FleetQuery(condition.text)
            let expected = models.filter(condition.holds).map(\.id)
            var found: [String] = []
            var cursor: String?
            let pageSize = [1000, 17, 5][round % 3]
            repeat {
                let page = try await service.devices(matching: query, limit: pageSize, after: cursor, by: caller)
                #expect(page.items.count <= pageSize)
                found += page.items.map(\.id)
                cursor = page.nextCursor
            } while cursor != nil
            #expect(
                found == expected,
                "seed \(seed) query \(condition.text): extra \(Set(found).subtracting(expected).sorted().prefix(5)), missing \(Set(expected).subtracting(found).sorted().prefix(5))"
            )
        }
    }

    static func makeCondition(depth: Int, random: inout SeededGenerator, sites: [String], versions: [String], now: Int64) -> Condition {
        if depth > 0, random.next() % 3 != 0 {
            let left = makeCondition(depth: depth - 1, random: &random, sites: sites, versions: versions, now: now)
            switch random.next() % 3 {
            case 0:
                let right = makeCondition(depth: depth - 1, random: &random, sites: sites, versions: versions, now: now)
                return Condition(text: "(\(left.text) AND \(right.text))") { left.holds($0) && right.holds($0) }
            case 1:
                let right = makeCondition(depth: depth - 1, random: &random, sites: sites, versions: versions, now: now)
                return Condition(text: "(\(left.text) OR \(right.text))") { left.holds($0) || right.holds($0) }
            default:
                return Condition(text: "NOT \(left.text)") { !left.holds($0) }
            }
        }
        let site = sites.randomElement(using: &random) ?? "plant-1"
        let version = versions.randomElement(using: &random) ?? "2.0"
        let number = Double(random.next() % 10)
        let minutes = Int64(random.next() % 120)
        switch random.next() % 17 {
        case 0: return Condition(text: "labels.site = \"\(site)\"") { $0.labels["site"] == site }
        case 1: return Condition(text: "labels.site != \"\(site)\"") { $0.labels["site"].map { $0 != site } ?? false }
        case 2: return Condition(text: "labels.tier IN [\"a\", \"c\"]") { ["a", "c"].contains($0.labels["tier"] ?? "") }
        case 3: return Condition(text: "EXISTS labels.tier") { $0.labels["tier"] != nil }
        case 4: return Condition(text: "status = \"active\"") { $0.status == .active }
        case 5: return Condition(text: "online") { $0.online }
        case 6: return Condition(text: "online = false") { !$0.online }
        case 7:
            return Condition(text: "reported.firmware.version < \"\(version)\"") { model in
                model.version.map { Array($0.utf8).lexicographicallyPrecedes(Array(version.utf8)) } ?? false
            }
        case 8: return Condition(text: "desired.mode = \"eco\"") { $0.mode == "eco" }
        case 9: return Condition(text: "telemetry.temp >= \(number)") { $0.temperature.map { $0 >= number } ?? false }
        case 10: return Condition(text: "lastSeen > now - \(minutes)m") { $0.lastSeen.map { $0 > now - minutes * 60_000 } ?? false }
        case 11: return Condition(text: "metadata.rack > \(number)") { $0.rack.map { $0 > number } ?? false }
        case 12:
            let profile = ["p1", "p2"].randomElement(using: &random) ?? "p1"
            return Condition(text: "profile = \"\(profile)\"") { $0.profile == profile }
        case 13: return Condition(text: "has(metadata.tags)") { $0.rack != nil }
        case 14:
            let id = String(format: "dev-%03d", Int(random.next() % 240))
            return Condition(text: "id <= \"\(id)\"") { $0.id <= id }
        case 15:
            // "device 1" is a prefix of "device 10".."device 199": the registry's name-prefix
            // filter narrows, the exact comparison decides.
            let name = "device \(Int(random.next() % 30))"
            return Condition(text: "name = \"\(name)\"") { $0.name == name }
        default:
            return Condition(text: "(labels.site = \"\(site)\" AND status = \"active\")") { $0.labels["site"] == site && $0.status == .active }
        }
    }
}

/// Presence, twins and telemetry as the generator decided them.
struct FleetTestSources: FleetPresenceSource, FleetTwinSource, FleetTelemetrySource {
    let models: [String: FleetQueryPropertyTests.Model]

    init(models: [FleetQueryPropertyTests.Model]) {
        self.models = Dictionary(uniqueKeysWithValues: models.map { ($0.id, $0) })
    }

    func onlineDevices(among deviceIDs: [String]) async throws -> Set<String> {
        Set(deviceIDs.filter { models[$0]?.online == true })
    }

    func twins(tenantID: String, deviceIDs: [String]) async throws -> [String: FleetTwinDocuments] {
        var result: [String: FleetTwinDocuments] = [:]
        for id in deviceIDs {
            guard let model = models[id] else { continue }
            let reported: JSONValue = model.version.map { .object(["firmware": .object(["version": .string($0)])]) } ?? .emptyObject
            let desired: JSONValue = model.mode.map { .object(["mode": .string($0)]) } ?? .emptyObject
            result[id] = FleetTwinDocuments(reported: reported, desired: desired)
        }
        return result
    }

    func latest(deviceIDs: [String]) async throws -> [String: [String: TelemetryPoint]] {
        var result: [String: [String: TelemetryPoint]] = [:]
        for id in deviceIDs {
            guard let temperature = models[id]?.temperature else { continue }
            result[id] = ["temp": TelemetryPoint(timestamp: 1, value: .number(temperature))]
        }
        return result
    }
}

/// SplitMix64: a small, seedable generator, so a failing seed reproduces.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D4_9BA3_26EB_3E11
        return z ^ (z >> 31)
    }
}

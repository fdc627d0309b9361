// meridian-fleetbench: fleet-query benchmarks, driven by scripts/bench-fleet-query. Not installed
// and not part of the product. Builds a registry of N devices (SQLite in a fresh directory, or a
// PostgreSQL database with --postgres URL), then times FleetQueryService queries and prints one
// JSON object per query on standard output.
//
//   meridian-fleetbench --dir D [--devices 100000] [--sites 100] [--runs 50] [--postgres URL]
import Dispatch
import Foundation
import Logging
import MeridianCore
import MeridianStorage

func parseOptions() -> [String: String] {
    var options: [String: String] = [:]
    let arguments = Array(CommandLine.arguments.dropFirst())
    var position = 0
    while position < arguments.count {
        let name = arguments[position]
        guard name.hasPrefix("--"), position + 1 < arguments.count else {
            FileHandle.standardError.write(Data("meridian-fleetbench: unexpected argument \(name)\n".utf8))
            exit(2)
        }
        options[String(name.dropFirst(2))] = arguments[position + 1]
        position += 2
    }
    guard options["dir"] != nil else {
        FileHandle.standardError.write(Data("usage: meridian-fleetbench --dir D [--devices N] [--sites S] [--runs R] [--postgres URL]\n".utf8))
        exit(2)
    }
    return options
}

func log(_ text: String) { FileHandle.standardError.write(Data((text + "\n").utf8)) }

/// Every third device (by the number in its id) is online.
struct EveryThirdOnline: FleetPresenceSource {
    func onlineDevices(among deviceIDs: [String]) async throws -> Set<String> {
        Set(deviceIDs.filter { (Int($0.suffix(7)) ?? 1) % 3 == 0 })
    }
}

func milliseconds(since start: DispatchTime) -> Double {
    Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e6
}

func run(options: [String: String]) async throws {
    let directory = options["dir"] ?? "."
    let deviceCount = Int(options["devices"] ?? "") ?? 100_000
    let siteCount = Int(options["sites"] ?? "") ?? 100
    let runs = Int(options["runs"] ?? "") ?? 50
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let store: any RegistryStore
    var database: PostgresDatabase?
    if let url = options["postgres"] {
        let configuration = try PostgresConfiguration(url: url)
        let postgres = PostgresDatabase(configuration: configuration, logger: Logger(label: "fleetbench"))
        Task.detached { try? await postgres.run() }
        database = postgres
        store = try await PostgresRegistryStore(database: postgres)
    } else {
        store = try SQLiteRegistryStore(path: (directory as NSString).appendingPathComponent("meridian.sqlite"))
    }
    let registry = Registry(store: store)
    guard let boot = try await registry.bootstrapIfEmpty(apiKey: "fleetbench-key-0123456789abcdef"), let keyID = boot.apiKeyID else {
        log("the database is not empty: use a fresh --dir / database")
        exit(1)
    }
    let caller = Caller(tenantID: boot.tenant.id, role: .owner, actor: AuditActor(kind: .apiKey, id: keyID))
    let loadStart = DispatchTime.now()
    var line = 0
    let chunk = 10_000
    var created = 0
    while created < deviceCount {
        let rows = (created..<min(deviceCount, created + chunk)).map { index -> DeviceImport.Row in
            line += 1
            return DeviceImport.Row(
                line: line,
                draft: DeviceDraft(
                    id: String(format: "dev-%07d", index), name: "device \(index)",
                    labels: ["site": "plant-\(index % siteCount)", "tier": ["a", "b", "c", "d"][index % 4], "batch": "b\(index / 1000)"],
                    metadata: .object(["rack": .number(Double(index % 50))])
                )
            )
        }
        _ = try await registry.importDevices(rows, by: caller)
        created += rows.count
        log("created \(created) devices")
    }
    let loadSeconds = milliseconds(since: loadStart) / 1000
    let service = FleetQueryService(registry: registry, presence: EveryThirdOnline())
    let queries: [(name: String, text: String, limit: Int)] = [
        ("indexed label, first page (100)", #"labels.site = "plant-42""#, 100),
        ("indexed label, every match (\(deviceCount / siteCount))", #"labels.site = "plant-42""#, 1000),
        ("two indexed labels", #"labels.site = "plant-42" AND labels.tier = "c""#, 100),
        ("indexed label AND online", #"labels.site = "plant-42" AND online"#, 100),
        ("indexed label AND metadata range", #"labels.site = "plant-42" AND metadata.rack >= 40"#, 100),
        ("no index, common match (first page)", #"metadata.rack < 25"#, 100),
        ("name (SQL prefix filter), one match", #"name = "device 99""#, 100),
        ("nothing indexable, no match (full scan)", #"metadata.rack = 49.5"#, 100),
    ]
    for query in queries {
        let parsed = try FleetQuery(query.text)
        var timings: [Double] = []
        var matches = 0
        for _ in 0..<(runs + 2) {
            let start = DispatchTime.now()
            let page = try await service.devices(matching: parsed, limit: query.limit, by: caller)
            timings.append(milliseconds(since: start))
            matches = page.items.count
        }
        timings = Array(timings.dropFirst(2)).sorted()
        let median = timings[timings.count / 2]
        let p95 = timings[min(timings.count - 1, Int(Double(timings.count) * 0.95))]
        let object: [String: Any] = [
            "query": query.text, "name": query.name, "limit": query.limit, "matches": matches, "devices": deviceCount,
            "runs": timings.count, "median_ms": (median * 100).rounded() / 100, "p95_ms": (p95 * 100).rounded() / 100,
            "max_ms": ((timings.last ?? 0) * 100).rounded() / 100, "load_s": (loadSeconds * 10).rounded() / 10,
            "backend": database == nil ? "sqlite" : "postgres",
        ]
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }
}

do {
    try await run(options: parseOptions())
} catch {
    log("meridian-fleetbench: \(error)")
    exit(1)
}

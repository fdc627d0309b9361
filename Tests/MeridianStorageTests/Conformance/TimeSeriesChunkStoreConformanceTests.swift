import Foundation
import Logging
import MeridianCore
import NIOPosix
import Testing

@testable import MeridianStorage

/// The same cases against every `TimeSeriesChunkStore` backend: whatever the time-series engine
/// relies on from its store — series rows, chunk lookups by range, rollups, head snapshots,
/// latest values bit for bit, device deletion, retention overrides, transactions — and the
/// engine itself running on it must behave identically on SQLite and on PostgreSQL.
@Suite("TimeSeriesChunkStore conformance")
struct TimeSeriesChunkStoreConformanceTests {
    @Test("SQLite", arguments: ChunkStoreConformance.cases)
    func sqlite(_ conformanceCase: ChunkStoreCase) async throws {
        try await ChunkStoreContext.with(.sqlite, conformanceCase.body)
    }

    // PostgreSQL needs a server: `bash scripts/test` (and so CI) always starts a throwaway one
    // (scripts/postgres-test-server) and sets MERIDIAN_TEST_POSTGRES_URL; a bare `swift test`
    // without a server has nothing to run these against.
    @Test(
        "PostgreSQL",
        .enabled(if: PostgresTestServer.isConfigured, "needs MERIDIAN_TEST_POSTGRES_URL (bash scripts/test sets it)"),
        arguments: ChunkStoreConformance.cases
    )
    func postgres(_ conformanceCase: ChunkStoreCase) async throws {
        try await ChunkStoreContext.with(.postgres, conformanceCase.body)
    }

    // Only PostgreSQL can be shared by two nodes, each giving out series ids of its own.
    @Test(
        "PostgreSQL: a series id already held by another series is refused, never merged",
        .enabled(if: PostgresTestServer.isConfigured, "needs MERIDIAN_TEST_POSTGRES_URL (bash scripts/test sets it)")
    )
    func postgresSeriesIDClash() async throws {
        try await ChunkStoreContext.with(.postgres) { context in
            try await context.write { writer in
                try writer.saveSeries(
                    StoredSeries(id: 1, tenantID: "t1", deviceID: "d1", key: "temp", type: .number, sealedEnd: 5)
                )
            }
            let store = context.store
            let refused = try await context.blocking { () -> String? in
                do {
                    try store.write(durable: false) { writer in
                        try writer.saveSeries(
                            StoredSeries(
                                id: 1,
                                tenantID: "t1",
                                deviceID: "d2",
                                key: "temp",
                                type: .number,
                                sealedEnd: 9
                            )
                        )
                    }
                    return nil
                } catch {
                    return "\(error)"
                }
            }
            #expect(refused?.contains("another Meridian node") == true, "\(refused ?? "accepted")")
            let stored = try await context.blocking { try store.allSeries() }
            #expect(stored.map(\.deviceID) == ["d1"])
            #expect(stored.map(\.sealedEnd) == [5])
        }
    }
}

/// The backends the time-series engine stores its chunks in.
enum ChunkStoreBackend: String, Sendable {
    case sqlite
    case postgres
}

/// One backend's fresh, empty store for one conformance case.
final class ChunkStoreContext: Sendable {
    let backend: ChunkStoreBackend
    let store: any TimeSeriesChunkStore
    /// A store on the same data, as a restarted engine opens it (SQLite: a new connection
    /// pool on the same file; PostgreSQL: the same database).
    private let reopenStore: @Sendable () throws -> any TimeSeriesChunkStore

    init(
        backend: ChunkStoreBackend,
        store: any TimeSeriesChunkStore,
        reopenStore: @escaping @Sendable () throws -> any TimeSeriesChunkStore
    ) {
        self.backend = backend
        self.store = store
        self.reopenStore = reopenStore
    }

    /// Runs `body` on a thread of its own: the stores' calls block (PostgreSQL waits for the
    /// server), which the cooperative pool must never do.
    func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await Self.threads.runIfActive(body)
    }

    /// The suite's own threads: its PostgreSQL cases keep them busy for a minute, which on NIO's
    /// shared pool (one thread per core) would hold up every other suite's blocking work.
    private static let threads: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 4)
        pool.start()
        return pool
    }()

    /// One transaction on ``store``.
    func write(_ body: @escaping @Sendable (any TimeSeriesChunkWriter) throws -> Void) async throws {
        let store = self.store
        try await blocking { try store.write(durable: false, body) }
    }

    /// An engine of `fixture` (its clock, its chunk size, its directory for the WAL) on this
    /// backend's data; opening it again is a restart. Call it, and the engine, in ``blocking(_:)``.
    func openEngine(_ fixture: TimeSeriesFixture) throws -> TimeSeriesEngine {
        try fixture.open(store: try reopenStore())
    }

    /// Runs `body` with a fresh, empty store of `backend`, removed afterwards.
    static func with(
        _ backend: ChunkStoreBackend,
        _ body: @escaping @Sendable (ChunkStoreContext) async throws -> Void
    ) async throws {
        switch backend {
        case .sqlite:
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
                "meridian-ts-conformance-\(UUID().uuidString)"
            ).path
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let path = directory + "/telemetry.sqlite"
            let store = try SQLiteChunkStore(path: path)
            try await body(
                ChunkStoreContext(backend: .sqlite, store: store, reopenStore: { try SQLiteChunkStore(path: path) })
            )
        case .postgres:
            try await PostgresTestServer.withFreshDatabase { configuration in
                let database = PostgresDatabase(configuration: configuration, logger: PostgresTestServer.logger())
                try await database.withRunning { database in
                    let store = try await PostgresChunkStore(database: database)
                    try await body(ChunkStoreContext(backend: .postgres, store: store, reopenStore: { store }))
                }
            }
        }
    }
}

/// One conformance case: a name and what it checks, given a fresh store.
struct ChunkStoreCase: Sendable, CustomTestStringConvertible {
    let name: String
    let body: @Sendable (ChunkStoreContext) async throws -> Void

    init(_ name: String, _ body: @escaping @Sendable (ChunkStoreContext) async throws -> Void) {
        self.name = name
        self.body = body
    }

    var testDescription: String { name }
}

/// What a case throws inside a write to see it rolled back.
private struct Abort: Error {}

/// A chunk whose blob is recognisable (every byte value, the start mixed in).
private func chunk(_ start: Int64, _ end: Int64, count: Int = 3, tag: UInt8 = 0) -> StoredChunk {
    StoredChunk(
        start: start,
        end: end,
        count: count,
        data: (0...255).map { UInt8($0) } + [UInt8(truncatingIfNeeded: start), tag]
    )
}

private func series(
    _ id: Int64,
    _ device: String,
    _ key: String,
    _ type: TelemetryValueType = .number,
    sealedEnd: Int64? = nil
) -> StoredSeries {
    StoredSeries(id: id, tenantID: "t1", deviceID: device, key: key, type: type, sealedEnd: sealedEnd)
}

private func same(_ a: [StoredChunk], _ b: [StoredChunk]) -> Bool {
    a.count == b.count
        && zip(a, b).allSatisfy {
            $0.start == $1.start && $0.end == $1.end && $0.count == $1.count && $0.data == $1.data
        }
}

enum ChunkStoreConformance {
    static let base: Int64 = 1_700_000_000_000

    static let cases: [ChunkStoreCase] = storeCases + engineCases

    // MARK: the store

    static let storeCases: [ChunkStoreCase] = [
        ChunkStoreCase("series: every field kept; saving again updates sealed_end in place") { context in
            try await context.write { writer in
                try writer.saveSeries(series(1, "d1", "temp"))
                try writer.saveSeries(series(2, "d1", "on", .bool))
                try writer.saveSeries(
                    StoredSeries(id: 3, tenantID: "t2", deviceID: "d2", key: "gps.lat ✓", type: .string, sealedEnd: -5)
                )
            }
            try await context.write { writer in
                try writer.saveSeries(series(1, "d1", "temp", sealedEnd: base + 99))
                try writer.saveSeries(series(3, "d2", "gps.lat ✓", .string, sealedEnd: nil))
            }
            let store = context.store
            let all = try await context.blocking { try store.allSeries() }.sorted { $0.id < $1.id }
            #expect(all.map(\.id) == [1, 2, 3])
            #expect(all.map(\.deviceID) == ["d1", "d1", "d2"])
            #expect(all.map(\.key) == ["temp", "on", "gps.lat ✓"])
            #expect(all.map(\.type) == [.number, .bool, .string])
            #expect(all.map(\.sealedEnd) == [base + 99, nil, nil])
            // The tenant is the one the series was created with.
            #expect(all.map(\.tenantID) == ["t1", "t1", "t2"])
        },

        ChunkStoreCase("a batch of writes lands as if made one by one: the last write of each row wins; several rollups read at once") { context in
            let minute = RollupTier.minute
            try await context.write { writer in
                try writer.putChunk(series: 1, chunk(0, 9, tag: 1))
                try writer.putRollup(series: 1, tier: minute, period: 0, data: [1])
                try writer.putHead(series: 1, data: [1])
                try writer.saveSeries(series(1, "d1", "temp"))
            }
            let nan = Double(bitPattern: 0x7FF8_0000_0000_0ABC)
            var batch = TimeSeriesWriteBatch()
            batch.writes = [
                .saveSeries(series(1, "d1", "temp", sealedEnd: 9)),
                .saveSeries(series(2, "d1", "mode", .string)),
                .saveSeries(series(2, "d1", "mode", .string, sealedEnd: 30)),
                .deleteChunk(series: 1, start: 0),
                .putChunk(series: 1, chunk(10, 19, tag: 2)),
                .putChunk(series: 1, chunk(10, 19, tag: 3)),
                .putChunk(series: 2, chunk(20, 30, tag: 4)),
                .putRollup(RollupKey(series: 1, tier: minute, period: 0), [2, 2]),
                .putRollup(RollupKey(series: 2, tier: .hour, period: 0), [3]),
                .deleteRollup(RollupKey(series: 2, tier: .hour, period: 0)),
                .putRollup(RollupKey(series: 2, tier: minute, period: 86_400_000), [4]),
                .deleteHead(series: 1),
                .putHead(series: 2, [5]),
                .putLatest(deviceID: "d1", key: "temp", point: TelemetryPoint(timestamp: 1, value: .number(1))),
                .putLatest(deviceID: "d1", key: "temp", point: TelemetryPoint(timestamp: 2, value: .number(nan))),
                .putLatest(deviceID: "d1", key: "mode", point: TelemetryPoint(timestamp: 3, value: .string("eco\u{0}✓"))),
                .putLatest(deviceID: "d1", key: "on", point: TelemetryPoint(timestamp: 4, value: .bool(true))),
            ]
            let applied = batch
            try await context.write { writer in try writer.apply(applied) }
            let store = context.store
            let stored = try await context.blocking { try store.allSeries() }.sorted { $0.id < $1.id }
            #expect(stored.map(\.sealedEnd) == [9, 30])
            let chunks1 = try await context.blocking { try store.chunks(series: 1, from: .min, to: .max) }
            #expect(chunks1.map(\.start) == [10] && chunks1.first?.data == chunk(10, 19, tag: 3).data)
            let heads = try await context.blocking { try store.allHeads() }
            #expect(heads.map(\.0) == [2] && heads.first?.1 == [5])
            let latest = try await context.blocking { try store.allLatest() }.sorted { $0.key < $1.key }
            #expect(latest.map(\.key) == ["mode", "on", "temp"])
            #expect(latest[0].point == TelemetryPoint(timestamp: 3, value: .string("eco\u{0}✓")))
            #expect(latest[1].point == TelemetryPoint(timestamp: 4, value: .bool(true)))
            #expect(latest[2].point.timestamp == 2 && latest[2].point.value.isIdentical(to: .number(nan)))
            let keys = [
                RollupKey(series: 1, tier: minute, period: 0), RollupKey(series: 2, tier: .hour, period: 0),
                RollupKey(series: 2, tier: minute, period: 86_400_000), RollupKey(series: 3, tier: minute, period: 0),
            ]
            try await context.write { writer in
                let found = try writer.rollups(keys)
                #expect(found == [keys[0]: [2, 2], keys[2]: [4]])
            }
        },

        ChunkStoreCase(
            "chunks: a range holds the chunks starting inside it, and the one starting before it only if it reaches in, oldest first"
        ) { context in
            // Put out of order; series 2 overlaps everything and must never show up.
            try await context.write { writer in
                try writer.putChunk(series: 1, chunk(40, 49))
                try writer.putChunk(series: 1, chunk(0, 9))
                try writer.putChunk(series: 1, chunk(20, 29))
                try writer.putChunk(series: 1, chunk(10, 19))
                try writer.putChunk(series: 2, chunk(-100, 100))
            }
            let store = context.store
            let lookups: [(Int64, Int64, [Int64])] = [
                (.min, .max, [0, 10, 20, 40]),
                (15, 25, [10, 20]),
                (29, 29, [20]),  // the previous chunk's last sample is the range's first
                (30, 35, []),  // the previous chunk ends before the range; a gap
                (30, 40, [40]),  // a chunk starting at the range's end
                (40, 40, [40]),
                (45, 1000, [40]),
                (50, 60, []),
                (-10, -1, []),
                (0, 0, [0]),
                (9, 10, [0, 10]),
            ]
            for (from, to, starts) in lookups {
                let found = try await context.blocking { try store.chunks(series: 1, from: from, to: to) }
                #expect(found.map(\.start) == starts, "chunks(from: \(from), to: \(to))")
            }
            let all = try await context.blocking { try store.chunks(series: 1, from: .min, to: .max) }
            #expect(same(all, [chunk(0, 9), chunk(10, 19), chunk(20, 29), chunk(40, 49)]))
            #expect(try await context.blocking { try store.chunks(series: 3, from: .min, to: .max) }.isEmpty)
        },

        ChunkStoreCase(
            "chunks: a put at the same start replaces the chunk; a delete removes exactly one; a write sees its own changes"
        ) { context in
            try await context.write { writer in
                for start in stride(from: Int64(0), to: 40, by: 10) {
                    try writer.putChunk(series: 1, chunk(start, start + 9))
                }
                try writer.putChunk(series: 2, chunk(0, 9))
            }
            try await context.write { writer in
                try writer.putChunk(series: 1, chunk(10, 15, count: 7, tag: 9))
                try writer.deleteChunk(series: 1, start: 20)
                try writer.deleteChunk(series: 1, start: 21)  // nothing starts there
                // Inside the transaction: the writes before are visible.
                let seen = try writer.chunks(series: 1, from: .min, to: .max)
                #expect(same(seen, [chunk(0, 9), chunk(10, 15, count: 7, tag: 9), chunk(30, 39)]))
                // 16...19 is no longer covered by the replaced chunk.
                #expect(try writer.chunks(series: 1, from: 16, to: 19).isEmpty)
            }
            let store = context.store
            let all = try await context.blocking { try store.chunks(series: 1, from: .min, to: .max) }
            #expect(same(all, [chunk(0, 9), chunk(10, 15, count: 7, tag: 9), chunk(30, 39)]))
            #expect(
                same(try await context.blocking { try store.chunks(series: 2, from: .min, to: .max) }, [chunk(0, 9)])
            )
        },

        ChunkStoreCase(
            "rollups: one blob per (series, tier, period), replaced and deleted; ranges inclusive and ordered, tiers apart"
        ) { context in
            let hour: Int64 = 3_600_000
            try await context.write { writer in
                for period in [3, 1, 2, 5].map({ base + $0 * hour }) {
                    try writer.putRollup(
                        series: 1,
                        tier: .minute,
                        period: period,
                        data: [1, UInt8(truncatingIfNeeded: period / hour)]
                    )
                }
                try writer.putRollup(series: 1, tier: .hour, period: base + 2 * hour, data: [2, 2])
                try writer.putRollup(series: 2, tier: .minute, period: base + 2 * hour, data: [3])
            }
            try await context.write { writer in
                #expect(
                    try writer.rollup(series: 1, tier: .minute, period: base + 2 * hour) == [
                        1, UInt8(truncatingIfNeeded: (base + 2 * hour) / hour),
                    ]
                )
                #expect(try writer.rollup(series: 1, tier: .minute, period: base + 4 * hour) == nil)
                try writer.putRollup(series: 1, tier: .minute, period: base + 2 * hour, data: [9, 9, 9])
                try writer.deleteRollup(series: 1, tier: .minute, period: base + 3 * hour)
                #expect(try writer.rollup(series: 1, tier: .minute, period: base + 2 * hour) == [9, 9, 9])
                #expect(
                    try writer.rollups(series: 1, tier: .minute, fromPeriod: .min, toPeriod: .max).map(\.0)
                        == [1, 2, 5].map { base + $0 * hour }
                )
            }
            let store = context.store
            let minute = try await context.blocking {
                try store.rollups(series: 1, tier: .minute, fromPeriod: base + 2 * hour, toPeriod: base + 5 * hour)
            }
            #expect(minute.map(\.0) == [base + 2 * hour, base + 5 * hour])
            #expect(minute.first?.1 == [9, 9, 9])
            let hourly = try await context.blocking {
                try store.rollups(series: 1, tier: .hour, fromPeriod: .min, toPeriod: .max)
            }
            #expect(hourly.map(\.0) == [base + 2 * hour])
            #expect(hourly.first?.1 == [2, 2])
            #expect(
                try await context.blocking {
                    try store.rollups(series: 1, tier: .minute, fromPeriod: base + 6 * hour, toPeriod: .max)
                }.isEmpty
            )
            #expect(
                try await context.blocking {
                    try store.rollups(series: 2, tier: .hour, fromPeriod: .min, toPeriod: .max)
                }.isEmpty
            )
        },

        ChunkStoreCase("head snapshots: put, replaced, deleted; every one listed at start-up") { context in
            try await context.write { writer in
                try writer.putHead(series: 1, data: [1, 2, 3])
                try writer.putHead(series: 2, data: [])
                try writer.putHead(series: 3, data: [0, 255])
            }
            try await context.write { writer in
                try writer.putHead(series: 1, data: [4])
                try writer.deleteHead(series: 3)
                try writer.deleteHead(series: 4)
            }
            let store = context.store
            let heads = try await context.blocking { try store.allHeads() }.sorted { $0.0 < $1.0 }
            #expect(heads.map(\.0) == [1, 2])
            #expect(heads.map(\.1) == [[4], []])
        },

        ChunkStoreCase(
            "latest values come back bit for bit: -0, NaN payloads, infinities, booleans, strings; a new point replaces the key's"
        ) { context in
            let specials: [Double] = [
                -0.0, .nan, -.nan, Double(bitPattern: 0x7FF0_0000_0000_0001), Double(bitPattern: 0xFFF8_DEAD_BEEF_0001),
                .infinity, -.infinity, .leastNonzeroMagnitude, 21.53,
            ]
            var expected: [String: TelemetryPoint] = [:]
            for (index, value) in specials.enumerated() {
                expected["n\(index)"] = TelemetryPoint(timestamp: base + Int64(index), value: .number(value))
            }
            expected["on"] = TelemetryPoint(timestamp: -1, value: .bool(true))
            expected["off"] = TelemetryPoint(timestamp: .max, value: .bool(false))
            expected["empty"] = TelemetryPoint(timestamp: 0, value: .string(""))
            expected["text"] = TelemetryPoint(timestamp: .min, value: .string("eco ✓ \u{0} 🌡️ \"quoted\""))
            let entries = expected
            try await context.write { writer in
                for (key, point) in entries {
                    try writer.putLatest(
                        deviceID: "d1",
                        key: key,
                        point: TelemetryPoint(timestamp: 1, value: .string("old"))
                    )
                }
                try writer.putLatest(deviceID: "d2", key: "on", point: TelemetryPoint(timestamp: 7, value: .number(7)))
            }
            try await context.write { writer in
                for (key, point) in entries { try writer.putLatest(deviceID: "d1", key: key, point: point) }
            }
            let store = context.store
            let latest = try await context.blocking { try store.allLatest() }
            #expect(latest.count == expected.count + 1)
            for entry in latest where entry.deviceID == "d1" {
                let want = try #require(expected[entry.key], "unexpected key \(entry.key)")
                #expect(entry.point.timestamp == want.timestamp, "\(entry.key)")
                #expect(
                    entry.point.value.isIdentical(to: want.value),
                    "\(entry.key): \(entry.point.value) is not \(want.value)"
                )
            }
            #expect(
                latest.contains {
                    $0.deviceID == "d2" && $0.key == "on" && $0.point == TelemetryPoint(timestamp: 7, value: .number(7))
                }
            )
        },

        ChunkStoreCase(
            "deleting a device removes its series, chunks, rollups, heads and latest values, and nothing of another device"
        ) { context in
            try await context.write { writer in
                for (id, device) in [(Int64(1), "d1"), (2, "d1"), (3, "d2")] {
                    try writer.saveSeries(series(id, device, "k\(id)"))
                    try writer.putChunk(series: id, chunk(0, 9))
                    try writer.putRollup(series: id, tier: .minute, period: 0, data: [1])
                    try writer.putRollup(series: id, tier: .hour, period: 0, data: [2])
                    try writer.putHead(series: id, data: [3])
                    try writer.putLatest(
                        deviceID: device,
                        key: "k\(id)",
                        point: TelemetryPoint(timestamp: 1, value: .number(1))
                    )
                }
            }
            try await context.write { writer in try writer.deleteSeries(deviceID: "d1") }
            let store = context.store
            let (stored, heads, latest) = try await context.blocking {
                (try store.allSeries(), try store.allHeads(), try store.allLatest())
            }
            #expect(stored.map(\.id) == [3])
            #expect(heads.map(\.0) == [3])
            #expect(latest.map(\.deviceID) == ["d2"])
            for id in [Int64(1), 2] {
                #expect(try await context.blocking { try store.chunks(series: id, from: .min, to: .max) }.isEmpty)
                for tier in RollupTier.allCases {
                    #expect(
                        try await context.blocking {
                            try store.rollups(series: id, tier: tier, fromPeriod: .min, toPeriod: .max)
                        }.isEmpty
                    )
                }
            }
            #expect(try await context.blocking { try store.chunks(series: 3, from: .min, to: .max) }.count == 1)
            #expect(
                try await context.blocking {
                    try store.rollups(series: 3, tier: .hour, fromPeriod: .min, toPeriod: .max)
                }.count == 1
            )
        },

        ChunkStoreCase("series with data before a cut: raw chunks by start, rollups by tier and period") { context in
            try await context.write { writer in
                try writer.putChunk(series: 1, chunk(0, 100))
                try writer.putChunk(series: 1, chunk(101, 200))
                try writer.putChunk(series: 2, chunk(150, 300))
                try writer.putRollup(series: 1, tier: .hour, period: 500, data: [1])
                try writer.putRollup(series: 3, tier: .minute, period: 10, data: [1])
                try writer.putRollup(series: 4, tier: .minute, period: 600, data: [1])
            }
            let store = context.store
            #expect(try await context.blocking { try store.seriesWithData(before: 150, tier: nil) }.sorted() == [1])
            #expect(try await context.blocking { try store.seriesWithData(before: 151, tier: nil) }.sorted() == [1, 2])
            #expect(try await context.blocking { try store.seriesWithData(before: 0, tier: nil) }.isEmpty)
            #expect(
                try await context.blocking { try store.seriesWithData(before: 601, tier: .minute) }.sorted() == [3, 4]
            )
            #expect(try await context.blocking { try store.seriesWithData(before: 600, tier: .minute) }.sorted() == [3])
            #expect(try await context.blocking { try store.seriesWithData(before: 501, tier: .hour) }.sorted() == [1])
        },

        ChunkStoreCase(
            "retention overrides: set, replaced, removed; tiers left unset stay unset; scopes and ids kept apart"
        ) { context in
            let store = context.store
            try await context.blocking {
                try store.setRetention(
                    scope: "tenant",
                    id: "t1",
                    TelemetryRetention(raw: 86_400_000, minute: nil, hour: 7)
                )
                try store.setRetention(scope: "profile", id: "t1", TelemetryRetention(raw: 1, minute: 2, hour: 3))
            }
            #expect(
                try await context.blocking { try store.retention(scope: "tenant", id: "t1") }
                    == TelemetryRetention(raw: 86_400_000, minute: nil, hour: 7)
            )
            #expect(
                try await context.blocking { try store.retention(scope: "profile", id: "t1") }
                    == TelemetryRetention(raw: 1, minute: 2, hour: 3)
            )
            #expect(try await context.blocking { try store.retention(scope: "tenant", id: "t2") } == nil)
            try await context.blocking {
                try store.setRetention(
                    scope: "tenant",
                    id: "t1",
                    TelemetryRetention(raw: nil, minute: 60_000, hour: nil)
                )
            }
            #expect(
                try await context.blocking { try store.retention(scope: "tenant", id: "t1") }
                    == TelemetryRetention(raw: nil, minute: 60_000, hour: nil)
            )
            try await context.blocking { try store.setRetention(scope: "tenant", id: "t1", nil) }
            #expect(try await context.blocking { try store.retention(scope: "tenant", id: "t1") } == nil)
            #expect(
                try await context.blocking { try store.retention(scope: "profile", id: "t1") }
                    == TelemetryRetention(raw: 1, minute: 2, hour: 3)
            )
            // Removing what is not there is no error.
            try await context.blocking { try store.setRetention(scope: "tenant", id: "nobody", nil) }
        },

        ChunkStoreCase("a write that throws leaves nothing behind, and the next write works") { context in
            try await context.write { writer in
                try writer.saveSeries(series(1, "d1", "temp"))
                try writer.putChunk(series: 1, chunk(0, 9))
            }
            let store = context.store
            let rolledBack = try await context.blocking { () -> Bool in
                do {
                    try store.write(durable: true) { writer in
                        try writer.saveSeries(series(1, "d1", "temp", sealedEnd: 99))
                        try writer.saveSeries(series(2, "d1", "other"))
                        try writer.deleteChunk(series: 1, start: 0)
                        try writer.putChunk(series: 1, chunk(10, 19))
                        try writer.putRollup(series: 1, tier: .minute, period: 0, data: [1])
                        try writer.putHead(series: 1, data: [1])
                        try writer.putLatest(
                            deviceID: "d1",
                            key: "temp",
                            point: TelemetryPoint(timestamp: 1, value: .number(1))
                        )
                        throw Abort()
                    }
                    return false
                } catch is Abort {
                    return true
                }
            }
            #expect(rolledBack, "the body's own error comes back")
            let (stored, heads, latest) = try await context.blocking {
                (try store.allSeries(), try store.allHeads(), try store.allLatest())
            }
            #expect(stored.map(\.id) == [1])
            #expect(stored.first?.sealedEnd == nil)
            #expect(heads.isEmpty)
            #expect(latest.isEmpty)
            #expect(
                same(try await context.blocking { try store.chunks(series: 1, from: .min, to: .max) }, [chunk(0, 9)])
            )
            #expect(
                try await context.blocking {
                    try store.rollups(series: 1, tier: .minute, fromPeriod: .min, toPeriod: .max)
                }.isEmpty
            )
            try await context.write { writer in try writer.putChunk(series: 1, chunk(10, 19)) }
            #expect(
                try await context.blocking { try store.chunks(series: 1, from: .min, to: .max) }.map(\.start) == [
                    0, 10,
                ]
            )
        },

        ChunkStoreCase("the size on disk counts the stored chunks") { context in
            let store = context.store
            let before = try await context.blocking { store.sizeOnDisk() }
            var random = SeededRandom(seed: 7)
            // Random bytes: nothing compresses them.
            let blob = (0..<1_000_000).map { _ in UInt8.random(in: 0...255, using: &random) }
            try await context.write { writer in
                try writer.putChunk(series: 1, StoredChunk(start: 0, end: 1, count: 2, data: blob))
            }
            let after = try await context.blocking { store.sizeOnDisk() }
            #expect(before > 0)
            #expect(after >= before + 900_000, "\(before) -> \(after)")
        },
    ]

    // MARK: the engine on the store

    static func message(_ device: String, _ samples: [TelemetrySample]) -> DeviceMessage {
        TimeSeriesFixture.message(device, samples)
    }

    static func all(
        _ engine: TimeSeriesEngine,
        _ device: String,
        _ keys: [String]? = nil
    ) throws -> [String: [TelemetryPoint]] {
        try engine.range(TelemetryRangeQuery(deviceID: device, keys: keys, from: .min, to: .max, limit: 100_000)).points
    }

    static let engineCases: [ChunkStoreCase] = [
        ChunkStoreCase(
            "engine: values read back bit-identical across sealed chunks and heads, before and after a restart"
        ) { context in
            let fixture = TimeSeriesFixture(chunkSamples: 16)
            try await context.blocking {
                let specials: [Double] = [
                    .nan, -.nan, .infinity, -.infinity, -0.0, 0.0, .greatestFiniteMagnitude, 21.53,
                ]
                var numbers: [TelemetryPoint] = []
                var flags: [TelemetryPoint] = []
                var modes: [TelemetryPoint] = []
                func check(_ engine: TimeSeriesEngine) throws {
                    let points = try all(engine, "d1")
                    let temps = points["temp"] ?? []
                    #expect(temps.count == numbers.count)
                    #expect(
                        zip(temps, numbers).allSatisfy {
                            $0.timestamp == $1.timestamp && $0.value.isIdentical(to: $1.value)
                        }
                    )
                    #expect(points["on"] == flags)
                    #expect(points["mode"] == modes)
                    let latest = engine.latest(deviceIDs: ["d1"])["d1"]
                    #expect(latest?["temp"] == TelemetryPoint(timestamp: base + 99_000, value: .number(0.99)))
                    #expect(latest?["on"] == flags.last)
                    #expect(latest?["mode"] == modes.last)
                }

                do {
                    let engine = try context.openEngine(fixture)
                    for i in 0..<100 {
                        // Samples before the checkpoint are in the store; after it, only in the WAL.
                        if i == 70 { try engine.checkpoint() }
                        let timestamp = base + Int64(i) * 1000
                        numbers.append(
                            TelemetryPoint(
                                timestamp: timestamp,
                                value: .number(i < specials.count ? specials[i] : Double(i) * 0.01)
                            )
                        )
                        flags.append(TelemetryPoint(timestamp: timestamp, value: .bool(i % 3 == 0)))
                        modes.append(TelemetryPoint(timestamp: timestamp, value: .string(i % 2 == 0 ? "eco ✓" : "")))
                        try engine.append([
                            message(
                                "d1",
                                [
                                    TelemetrySample(key: "temp", timestamp: timestamp, value: numbers[i].value),
                                    TelemetrySample(key: "on", timestamp: timestamp, value: flags[i].value),
                                    TelemetrySample(key: "mode", timestamp: timestamp, value: modes[i].value),
                                ]
                            )
                        ])
                    }
                    try check(engine)
                }
                // A restart: sealed chunks and head snapshots from the store, the rest from the WAL.
                try check(try context.openEngine(fixture))
            }
            // Sealed chunks went to the store.
            let store = context.store
            #expect(try await context.blocking { try store.allSeries() }.count == 3)
            #expect(try await context.blocking { try store.chunks(series: 1, from: .min, to: .max) }.count >= 6)
        },

        ChunkStoreCase(
            "engine: late and repeated samples merge into sealed chunks, last write wins, rollups follow; also after a restart"
        ) { context in
            let fixture = TimeSeriesFixture(chunkSamples: 8)
            try await context.blocking {
                var expected: [Int64: Double] = [:]
                func check(_ engine: TimeSeriesEngine) throws {
                    let points = try all(engine, "d1", ["v"])["v"] ?? []
                    #expect(points.map(\.timestamp) == expected.keys.sorted())
                    #expect(points.map(\.value) == expected.keys.sorted().map { .number(expected[$0]!) })
                    for (interval, aggregation) in [
                        (Int64(3_600_000), TelemetryAggregation.sum), (60_000, .count), (3_600_000, .max),
                    ] {
                        let result = try engine.aggregate(
                            TelemetryAggregateQuery(
                                deviceID: "d1",
                                keys: ["v"],
                                from: base - 3_600_000,
                                to: base + 3_600_000,
                                interval: interval,
                                aggregation: aggregation
                            )
                        )
                        let want: Double =
                            switch aggregation {
                            case .sum: expected.values.reduce(0, +)
                            case .count: Double(expected.count)
                            default: expected.values.max()!
                            }
                        let got = result["v"]?.reduce(0.0) { total, point in
                            guard case .number(let value) = point.value else { return .nan }
                            return aggregation == .max ? max(total, value) : total + value
                        }
                        #expect(got == want, "\(aggregation) per \(interval)")
                    }
                }

                do {
                    let engine = try context.openEngine(fixture)
                    for i in stride(from: 0, to: 40, by: 2) {
                        try engine.append([
                            message("d1", TimeSeriesFixture.numbers("v", [(base + Int64(i), Double(i))]))
                        ])
                        expected[base + Int64(i)] = Double(i)
                    }
                    let late: [(Int64, Double)] = [
                        (base + 3, 3), (base + 4, 400), (base + 38, 3800), (base + 37, 37), (base - 5, -5),
                    ]
                    try engine.append([message("d1", TimeSeriesFixture.numbers("v", late))])
                    try engine.append([message("d1", TimeSeriesFixture.numbers("v", [(base + 4, 4000)]))])
                    for (timestamp, value) in late { expected[timestamp] = value }
                    expected[base + 4] = 4000
                    try check(engine)
                }
                try check(try context.openEngine(fixture))
            }
        },

        ChunkStoreCase(
            "engine: aggregates over minute, hour and day buckets equal a brute-force computation, across a restart"
        ) { context in
            let fixture = TimeSeriesFixture(chunkSamples: 50)
            try await context.blocking {
                var random = SeededRandom(seed: 5)
                var raw: [(Int64, Double)] = []
                var timestamp = base - base % 86_400_000 - 5_000_000
                for _ in 0..<1500 {
                    timestamp += Int64.random(in: 1_000...200_000, using: &random)
                    raw.append((timestamp, Double(Int.random(in: -5000...5000, using: &random)) / 100))
                }
                func compare(_ engine: TimeSeriesEngine) throws {
                    for interval in [60_000, 900_000, 3_600_000, 86_400_000] as [Int64] {
                        for (from, to) in [(raw[0].0, raw[raw.count - 1].0), (raw[10].0 + 1234, raw[1400].0 - 777)] {
                            for aggregation in TelemetryAggregation.allCases {
                                let result = try engine.aggregate(
                                    TelemetryAggregateQuery(
                                        deviceID: "d1",
                                        keys: ["t"],
                                        from: from,
                                        to: to,
                                        interval: interval,
                                        aggregation: aggregation
                                    )
                                )
                                var buckets: [(Int64, [Double])] = []
                                for (ts, value) in raw where ts >= from && ts <= to {
                                    let start = bucketStart(ts, interval)
                                    if buckets.last?.0 == start {
                                        buckets[buckets.count - 1].1.append(value)
                                    } else {
                                        buckets.append((start, [value]))
                                    }
                                }
                                let got = result["t"] ?? []
                                #expect(got.map(\.timestamp) == buckets.map(\.0), "\(aggregation) per \(interval)")
                                for (point, bucket) in zip(got, buckets) {
                                    guard case .number(let value) = point.value else {
                                        Issue.record("not a number")
                                        continue
                                    }
                                    let values = bucket.1
                                    let want: Double
                                    switch aggregation {
                                    case .avg: want = values.reduce(0, +) / Double(values.count)
                                    case .sum: want = values.reduce(0, +)
                                    case .min: want = values.min()!
                                    case .max: want = values.max()!
                                    case .count: want = Double(values.count)
                                    case .first: want = values.first!
                                    case .last: want = values.last!
                                    }
                                    #expect(
                                        abs(value - want) <= 1e-9 * max(1, abs(want)),
                                        "\(aggregation) per \(interval) at \(point.timestamp)"
                                    )
                                }
                            }
                        }
                    }
                }

                do {
                    let engine = try context.openEngine(fixture)
                    for batch in stride(from: 0, to: raw.count, by: 23) {
                        try engine.append([
                            message(
                                "d1",
                                TimeSeriesFixture.numbers("t", Array(raw[batch..<min(batch + 23, raw.count)]))
                            )
                        ])
                    }
                    try compare(engine)
                }
                try compare(try context.openEngine(fixture))
            }
        },

        ChunkStoreCase(
            "engine: a deleted device's telemetry is gone from the store, also after a restart; other devices keep theirs"
        ) { context in
            let fixture = TimeSeriesFixture(chunkSamples: 4)
            try await context.blocking {
                let engine = try context.openEngine(fixture)
                try engine.append([
                    message("d1", TimeSeriesFixture.numbers("a", (0..<10).map { (base + Int64($0) * 60_000, 1) })),
                    message("d2", TimeSeriesFixture.numbers("a", (0..<10).map { (base + Int64($0) * 60_000, 2) })),
                ])
                try engine.checkpoint()
                try engine.deleteDevice("d1")
                #expect(engine.latest(deviceIDs: ["d1"]).isEmpty)
                #expect(try all(engine, "d1").isEmpty)
                let reopened = try context.openEngine(fixture)
                #expect(reopened.latest(deviceIDs: ["d1", "d2"]).keys.sorted() == ["d2"])
                #expect(try all(reopened, "d1").isEmpty)
                #expect(try all(reopened, "d2")["a"]?.count == 10)
            }
            let store = context.store
            let (stored, latest) = try await context.blocking { (try store.allSeries(), try store.allLatest()) }
            #expect(Set(stored.map(\.deviceID)) == ["d2"])
            #expect(Set(latest.map(\.deviceID)) == ["d2"])
        },

        ChunkStoreCase("engine: retention overrides are kept in the store; retention removes exactly the old samples") {
            context in
            let fixture = TimeSeriesFixture(chunkSamples: 4)
            try await context.blocking {
                let engine = try context.openEngine(fixture)
                try engine.setRetentionOverride(
                    .tenant,
                    id: "t1",
                    TelemetryRetention(raw: 10_000, minute: nil, hour: nil)
                )
                try engine.append([
                    message(
                        "d1",
                        TimeSeriesFixture.numbers("a", (0..<20).map { (base + Int64($0) * 1000, Double($0)) })
                    )
                ])
                // Out of the WAL first: a replay at the restart would bring removed samples back.
                try engine.checkpoint()
                let outcome = try engine.applyRetention(
                    deviceID: "d1",
                    retention: TelemetryRetention(raw: 10_500, minute: nil, hour: nil),
                    now: base + 20_000
                )
                // Everything is sealed (one append of 20); samples older than base + 9_500 go (0...9).
                #expect(outcome.samples == 10)
                #expect(try all(engine, "d1")["a"]?.map(\.timestamp) == (10..<20).map { base + Int64($0) * 1000 })
                let reopened = try context.openEngine(fixture)
                #expect(
                    try reopened.retentionOverride(.tenant, id: "t1")
                        == TelemetryRetention(raw: 10_000, minute: nil, hour: nil)
                )
                #expect(try all(reopened, "d1")["a"]?.map(\.timestamp) == (10..<20).map { base + Int64($0) * 1000 })
            }
        },
    ]
}

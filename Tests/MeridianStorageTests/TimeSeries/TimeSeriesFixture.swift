import Foundation
import Logging
import MeridianCore
import Synchronization

@testable import MeridianStorage

/// A time-series engine in a fresh temporary directory with a clock the test moves.
final class TimeSeriesFixture: Sendable {
    let directory: String
    let now = Mutex<Int64>(1_700_000_000_000)
    let chunkSamples: Int

    init(chunkSamples: Int = 16) {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-ts-\(UUID().uuidString)").path
        self.chunkSamples = chunkSamples
    }

    deinit {
        try? FileManager.default.removeItem(atPath: directory)
    }

    var configuration: TimeSeriesEngine.Configuration {
        var configuration = TimeSeriesEngine.Configuration()
        configuration.chunkSamples = chunkSamples
        return configuration
    }

    /// The engine on SQLite, in ``directory``.
    func open() throws -> TimeSeriesEngine {
        try TimeSeriesEngine(directory: directory, configuration: configuration, logger: Logger(label: "test"), clock: { [self] in now.withLock { $0 } })
    }

    /// The engine on `store`, its WAL in ``directory``. The store may block (PostgreSQL): call
    /// it, and the engine, off the cooperative pool.
    func open(store: any TimeSeriesChunkStore) throws -> TimeSeriesEngine {
        try TimeSeriesEngine(
            directory: directory, store: store, configuration: configuration, logger: Logger(label: "test"), clock: { [self] in now.withLock { $0 } }
        )
    }

    static func message(_ device: String, _ samples: [TelemetrySample], tenant: String = "t1") -> DeviceMessage {
        DeviceMessage(tenantID: tenant, deviceID: device, receivedAt: samples.first?.timestamp ?? 0, kind: .telemetry(samples))
    }

    static func numbers(_ key: String, _ points: [(Int64, Double)]) -> [TelemetrySample] {
        points.map { TelemetrySample(key: key, timestamp: $0.0, value: .number($0.1)) }
    }
}

/// A small deterministic generator (SplitMix64).
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

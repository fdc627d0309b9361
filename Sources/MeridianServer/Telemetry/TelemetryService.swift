import Foundation
import Logging
import MeridianCore
import MeridianStorage
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle

/// Telemetry as the rest of the server sees it: the engine (queries), the pipeline (ingest),
/// retention settings, and the background work (checkpoints, retention sweeps).
public final class TelemetryService: Sendable {
    public let engine: TimeSeriesEngine
    public let pipeline: TelemetryPipeline
    /// Retention when neither the tenant nor the device's profile says otherwise.
    public let defaultRetention: TelemetryRetention
    let logger: Logger
    /// Threads for blocking engine work, this service's own: queries and maintenance never wait
    /// behind other users of a shared pool (NIO's singleton has one thread per core), and those
    /// never wait behind a slow query. Queries mostly wait on the store (PostgreSQL round trips),
    /// so there are more of them than cores.
    private let threads: NIOThreadPool

    public init(engine: TimeSeriesEngine, pipeline: TelemetryPipeline, defaultRetention: TelemetryRetention, logger: Logger) {
        self.engine = engine
        self.pipeline = pipeline
        self.defaultRetention = defaultRetention
        self.logger = logger
        threads = NIOThreadPool(numberOfThreads: 4)
        threads.start()
    }

    deinit {
        threads.shutdownGracefully { _ in }
    }

    /// Runs blocking engine work (queries read the store: SQLite or PostgreSQL) off Swift's cooperative pool.
    func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await threads.runIfActive(body)
    }

    /// Milliseconds since 1970 now.
    static func now() -> Int64 {
        Int64(Date().timeIntervalSince1970 * 1000)
    }

    /// Parses a device's payload into a message, or says why it cannot be stored.
    static func message(
        _ payload: UnsafeRawBufferPointer, tenantID: String, deviceID: String, receivedAt: Int64
    ) -> Result<DeviceMessage, TelemetryPayloadError> {
        do {
            let samples = try TelemetryPayloadParser.parse(payload, receivedAt: receivedAt)
            return .success(DeviceMessage(tenantID: tenantID, deviceID: deviceID, receivedAt: receivedAt, kind: .telemetry(samples)))
        } catch {
            return .failure(error)
        }
    }
}

/// Checkpoints the engine on an interval (heads and latest values into the store, WAL
/// segments dropped) and sweeps retention and compaction hourly, device by device with pauses, so background
/// work takes a bounded share of the CPU. A final checkpoint runs at shutdown.
struct TelemetryMaintenance: Service {
    let telemetry: TelemetryService
    /// Seconds between checkpoints.
    let checkpointInterval: Double
    /// Seconds between retention sweeps.
    let retentionInterval: Double
    /// Resolves a device's retention (tenant and profile overrides).
    let retention: @Sendable (_ tenantID: String, _ deviceID: String) async -> TelemetryRetention

    func run() async throws {
        var lastSweep = ContinuousClock.now
        let engine = telemetry.engine
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            try? await gracefulShutdownOrTimeout(.seconds(checkpointInterval))
            do {
                try await telemetry.blocking { try engine.checkpoint() }
            } catch {
                telemetry.logger.error("telemetry checkpoint failed; the WAL keeps the samples", metadata: ["error": "\(error)"])
            }
            if ContinuousClock.now - lastSweep >= .seconds(retentionInterval), !Task.isShuttingDownGracefully {
                lastSweep = ContinuousClock.now
                await sweepRetention()
            }
        }
        // Shutting down: the pipeline has drained; leave a tidy store.
        do {
            try await telemetry.blocking { try engine.checkpoint() }
        } catch {
            telemetry.logger.error("final telemetry checkpoint failed; the WAL keeps the samples", metadata: ["error": "\(error)"])
        }
    }

    /// Sleeps for `duration`, or less when graceful shutdown begins.
    private func gracefulShutdownOrTimeout(_ duration: Duration) async throws {
        try await cancelWhenGracefulShutdown {
            try await Task.sleep(for: duration)
        }
    }

    /// One pass over every device; after each device, pauses four times as long as it took
    /// (at most a fifth of a core).
    func sweepRetention() async {
        let engine = telemetry.engine
        let now = TelemetryService.now()
        var removed = TimeSeriesEngine.RetentionOutcome()
        for (deviceID, tenantID) in engine.devices() {
            if Task.isShuttingDownGracefully { return }
            let policy = await retention(tenantID, deviceID)
            let started = ContinuousClock.now
            do {
                let outcome = try await telemetry.blocking {
                    let outcome = try engine.applyRetention(deviceID: deviceID, retention: policy, now: now)
                    try engine.compact(deviceID: deviceID)
                    return outcome
                }
                removed.samples += outcome.samples
                removed.buckets += outcome.buckets
            } catch {
                telemetry.logger.error("telemetry retention failed for a device", metadata: ["device.id": "\(deviceID)", "error": "\(error)"])
            }
            try? await Task.sleep(for: (ContinuousClock.now - started) * 4)
        }
        // Checkpoint at once, so a restart does not replay trimmed samples from the WAL.
        do {
            try await telemetry.blocking { try engine.checkpoint() }
        } catch {
            telemetry.logger.error("telemetry checkpoint after retention failed", metadata: ["error": "\(error)"])
        }
        if removed.samples > 0 || removed.buckets > 0 {
            telemetry.logger.info("telemetry retention applied", metadata: ["telemetry.samples_removed": "\(removed.samples)", "telemetry.buckets_removed": "\(removed.buckets)"])
        }
    }
}

extension TelemetryService: TelemetryStore {
    /// Stores the messages through the pipeline (so they are batched with everything else) and
    /// returns once all are durable.
    public func append(_ messages: [DeviceMessage]) async throws {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let futures = messages.map { pipeline.submit($0, on: loop) }
        try await EventLoopFuture.andAllSucceed(futures, on: loop).get()
    }

    public func latest(deviceIDs: [String]) async throws -> [String: [String: TelemetryPoint]] {
        engine.latest(deviceIDs: deviceIDs)
    }

    public func range(_ query: TelemetryRangeQuery) async throws -> TelemetryRangeResult {
        let engine = self.engine
        return try await blocking { try engine.range(query) }
    }

    public func aggregate(_ query: TelemetryAggregateQuery) async throws -> [String: [TelemetryPoint]] {
        let engine = self.engine
        return try await blocking { try engine.aggregate(query) }
    }

    public func deleteDevice(_ deviceID: String) async throws {
        let engine = self.engine
        try await blocking { try engine.deleteDevice(deviceID) }
    }
}

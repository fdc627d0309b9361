import Foundation
import Logging
import MeridianCore
import MeridianStorage
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

@testable import MeridianServer

@Suite("Telemetry pipeline")
struct TelemetryPipelineTests {
    static func engine() throws -> (TimeSeriesEngine, String) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-pipeline-\(UUID().uuidString)").path
        return (try TimeSeriesEngine(directory: directory, logger: Logger(label: "test")), directory)
    }

    static func message(_ device: String, _ n: Int) -> DeviceMessage {
        DeviceMessage(
            tenantID: "t1", deviceID: device, receivedAt: 1_700_000_000_000,
            kind: .telemetry([TelemetrySample(key: "n", timestamp: 1_700_000_000_000 + Int64(n), value: .number(Double(n)))])
        )
    }

    @Test("every submitted message is durable when its future succeeds, and listeners see each batch once")
    func submitAndListen() async throws {
        let (engine, directory) = try Self.engine()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let pipeline = TelemetryPipeline(engine: engine, logger: Logger(label: "test"))
        let heard = NIOLockedValueBox(0)
        _ = pipeline.addListener { messages in heard.withLockedValue { $0 += messages.count } }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for device in 0..<8 {
                group.addTask {
                    for n in 0..<200 {
                        try await pipeline.submit(Self.message("d\(device)", n))
                        // Acknowledged means readable.
                        if n % 50 == 0 {
                            #expect(engine.latest(deviceIDs: ["d\(device)"])["d\(device)"]?["n"]?.timestamp == 1_700_000_000_000 + Int64(n))
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(heard.withLockedValue { $0 } == 1600)
        let points = try engine.range(TelemetryRangeQuery(deviceID: "d3", keys: ["n"], from: .min, to: .max, limit: 1000)).points["n"]
        #expect(points?.count == 200)
        await pipeline.stop()
        await #expect(throws: TelemetryPipelineError.self) { try await pipeline.submit(Self.message("d1", 999)) }
        // Reopened from disk: all there.
        let reopened = try TimeSeriesEngine(directory: directory, logger: Logger(label: "test"))
        #expect(reopened.latest(deviceIDs: (0..<8).map { "d\($0)" }).count == 8)
    }
}

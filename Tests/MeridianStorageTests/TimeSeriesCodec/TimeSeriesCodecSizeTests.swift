import MeridianCore
import Testing

@testable import MeridianStorage

/// What a day of a realistic 1 Hz sensor costs at rest, in the recommended chunk size of 2 hours (7,200
/// samples): whole chunks counted (header, timestamps, values, checksums).
struct TimeSeriesCodecSizeTests {
    typealias Fixture = TimeSeriesCodecFixture

    /// The recommended chunk: 2 hours of 1 Hz data.
    static let chunkSize = 7200

    /// Bytes per sample for one day of `signal` in chunks, and the same with values as Gorilla XOR.
    static func dayCost(_ signal: SensorSignal) throws -> (chunked: Double, xorOnly: Double) {
        let day = signal.samples(count: 86_400)
        var total = 0
        var xorTotal = 0
        for start in stride(from: 0, to: day.timestamps.count, by: chunkSize) {
            let end = min(start + chunkSize, day.timestamps.count)
            let values = Array(day.values[start..<end])
            let chunk = try Fixture.roundTrip(Array(day.timestamps[start..<end]), .numbers(values))
            total += chunk.count
            xorTotal += chunk.count - Fixture.valueSectionLength(chunk) + Fixture.xorSectionLength(values)
        }
        return (Double(total) / 86_400, Double(xorTotal) / 86_400)
    }

    @Test("A 1 Hz temperature with 2 decimals costs under 1 byte per sample, far less than XOR alone")
    func twoDecimals() throws {
        let cost = try Self.dayCost(SensorSignal(base: 21, dailyAmplitude: 2, noise: 0.05, decimals: 2))
        #expect(cost.chunked < 1.0, "\(cost.chunked) bytes per sample")
        #expect(cost.chunked * 4 < cost.xorOnly, "\(cost.chunked) vs XOR \(cost.xorOnly) bytes per sample")
    }

    @Test("A 1 Hz signal with 3 decimals costs under 1.5 bytes per sample, far less than XOR alone")
    func threeDecimals() throws {
        let cost = try Self.dayCost(SensorSignal(base: 21, dailyAmplitude: 2, noise: 0.05, decimals: 3))
        #expect(cost.chunked < 1.5, "\(cost.chunked) bytes per sample")
        #expect(cost.chunked * 4 < cost.xorOnly, "\(cost.chunked) vs XOR \(cost.xorOnly) bytes per sample")
    }

    @Test("Arrival-time timestamps (±20 ms jitter) keep a 2-decimal signal under 2 bytes per sample")
    func jitteredTimestamps() throws {
        let cost = try Self.dayCost(SensorSignal(decimals: 2, jitterMilliseconds: 20))
        #expect(cost.chunked < 2.0, "\(cost.chunked) bytes per sample")
        #expect(cost.chunked < cost.xorOnly)
    }

    @Test("Values without a short decimal form cost no more than XOR alone")
    func fullPrecision() throws {
        let cost = try Self.dayCost(SensorSignal(decimals: 17))
        #expect(cost.chunked <= cost.xorOnly)
    }
}

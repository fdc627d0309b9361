import Foundation

/// A small deterministic pseudo-random generator (SplitMix64, Steele et al. 2014) so that test data is the
/// same on every run and every machine.
struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform `Double` in [0, 1).
    mutating func nextUnit() -> Double {
        Double(next() >> 11) * 0x1.0p-53
    }

    /// An approximately normal `Double` with mean 0 and standard deviation 1 (the sum of 12 uniforms).
    mutating func nextGaussian() -> Double {
        var sum = 0.0
        for _ in 0..<12 { sum += nextUnit() }
        return sum - 6
    }
}

/// A realistic sensor signal for tests and benchmarks: a base value with a slow daily sine, gaussian noise,
/// rounded to a number of decimals as a device printing JSON would, sampled at a fixed interval (optionally
/// with timestamp jitter, as when the platform stamps arrival times).
///
/// The values are what a JSON parser returns for the printed decimals (`Double(n) / 10^decimals`), so a
/// decimal-aware codec sees exactly what it would see in production.
struct SensorSignal: Sendable {
    /// The mean value (21 °C).
    var base = 21.0
    /// Amplitude of the daily sine.
    var dailyAmplitude = 2.0
    /// Standard deviation of the noise.
    var noise = 0.05
    /// Decimals the device prints.
    var decimals = 2
    /// Milliseconds between samples.
    var intervalMilliseconds: Int64 = 1000
    /// Largest timestamp jitter in milliseconds (uniform in ±jitter; 0 = device-stamped, regular).
    var jitterMilliseconds: Int64 = 0
    /// First timestamp (2023-11-14T22:13:20Z).
    var start: Int64 = 1_700_000_000_000
    /// Seed of the pseudo-random noise.
    var seed: UInt64 = 42

    /// The first `count` samples, timestamps strictly increasing.
    func samples(count: Int) -> (timestamps: [Int64], values: [Double]) {
        var random = SplitMix64(seed: seed)
        var timestamps: [Int64] = []
        var values: [Double] = []
        timestamps.reserveCapacity(count)
        values.reserveCapacity(count)
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        let day = 86_400_000.0
        for index in 0..<count {
            var timestamp = start + Int64(index) * intervalMilliseconds
            if jitterMilliseconds > 0 {
                timestamp += Int64(random.next() % UInt64(2 * jitterMilliseconds + 1)) - jitterMilliseconds
            }
            if let last = timestamps.last, timestamp <= last { timestamp = last + 1 }
            timestamps.append(timestamp)
            let phase = Double(timestamp - start) / day * 2 * Double.pi
            let exact = base + dailyAmplitude * sin(phase) + noise * random.nextGaussian()
            values.append((exact * scale).rounded() / scale)
        }
        return (timestamps, values)
    }
}

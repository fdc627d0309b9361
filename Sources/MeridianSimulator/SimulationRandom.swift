import Foundation

/// A small, fast, seeded random number generator (xoshiro256**, seeded through SplitMix64).
///
/// A generator is derived from the run's seed, a device index and a stream number, so that every
/// device (and every concern of a device: its signal model, each of its faults) draws from a
/// stream of its own: the same seed gives the same numbers again, and device 7's numbers do not
/// depend on how many devices the fleet has or on what the other devices drew.
public struct SimulationRandom: RandomNumberGenerator, Sendable, Hashable {
    private var state: (UInt64, UInt64, UInt64, UInt64)
    /// The second normal deviate of the last Box–Muller pair, handed out by the next call.
    private var spareNormal: Double?

    /// The generator for `stream` of device `deviceIndex` in a run seeded with `seed`.
    /// Stream 0 is the device's signal model; fault injection uses streams of its own.
    public init(seed: UInt64, deviceIndex: Int, stream: UInt64 = 0) {
        var mixer = SplitMix64(state: seed)
        let base = mixer.next()
        var deviceMixer = SplitMix64(state: base ^ UInt64(bitPattern: Int64(deviceIndex)) &* 0x9E37_79B9_7F4A_7C15)
        let deviceBase = deviceMixer.next()
        var streamMixer = SplitMix64(state: deviceBase ^ (stream &+ 1) &* 0xD1B5_4A32_D192_ED03)
        state = (streamMixer.next(), streamMixer.next(), streamMixer.next(), streamMixer.next())
        if state == (0, 0, 0, 0) { state.0 = 0x9E37_79B9_7F4A_7C15 }  // xoshiro's one forbidden state
    }

    /// Another generator derived from this one's current state, for a sub-concern that must not
    /// shift this stream (drawing from it does not advance `self`).
    public func derived(stream: UInt64) -> SimulationRandom {
        var copy = self
        copy.spareNormal = nil
        var mixer = SplitMix64(state: state.0 ^ state.2 ^ (stream &+ 1) &* 0xBF58_476D_1CE4_E5B9)
        copy.state = (mixer.next(), mixer.next(), mixer.next(), mixer.next())
        return copy
    }

    /// The next 64 random bits (xoshiro256**).
    public mutating func next() -> UInt64 {
        let result = rotateLeft(state.1 &* 5, 7) &* 9
        let t = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= t
        state.3 = rotateLeft(state.3, 45)
        return result
    }

    /// A uniform number in [0, 1) with 53 random bits.
    public mutating func uniform() -> Double {
        Double(next() >> 11) * 0x1.0p-53
    }

    /// A uniform number in `range` (its bounds included up to rounding).
    public mutating func uniform(in range: ClosedRange<Double>) -> Double {
        range.lowerBound + (range.upperBound - range.lowerBound) * uniform()
    }

    /// A uniform integer in `range`.
    public mutating func integer(in range: ClosedRange<Int>) -> Int {
        Int.random(in: range, using: &self)
    }

    /// A normal deviate (Box–Muller); always finite.
    public mutating func normal(mean: Double = 0, standardDeviation: Double = 1) -> Double {
        if let spare = spareNormal {
            spareNormal = nil
            return mean + standardDeviation * spare
        }
        let u1 = 1.0 - uniform()  // (0, 1]: log never sees 0
        let u2 = uniform()
        let radius = (-2.0 * log(u1)).squareRoot()
        let angle = 2.0 * Double.pi * u2
        spareNormal = radius * sin(angle)
        return mean + standardDeviation * radius * cos(angle)
    }

    /// True with probability `probability` (clamped to [0, 1]).
    public mutating func bernoulli(_ probability: Double) -> Bool {
        guard probability > 0 else { return false }
        guard probability < 1 else { return true }
        return uniform() < probability
    }

    /// An element of `items` chosen uniformly (nil when empty).
    public mutating func pick<T>(_ items: [T]) -> T? {
        items.isEmpty ? nil : items[integer(in: 0...(items.count - 1))]
    }

    public static func == (lhs: SimulationRandom, rhs: SimulationRandom) -> Bool {
        lhs.state == rhs.state && lhs.spareNormal == rhs.spareNormal
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(state.0)
        hasher.combine(state.1)
        hasher.combine(state.2)
        hasher.combine(state.3)
        hasher.combine(spareNormal)
    }
}

@inline(__always)
private func rotateLeft(_ value: UInt64, _ count: UInt64) -> UInt64 {
    (value << count) | (value >> (64 - count))
}

/// SplitMix64, used to turn one 64-bit seed into well-mixed state words.
struct SplitMix64 {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

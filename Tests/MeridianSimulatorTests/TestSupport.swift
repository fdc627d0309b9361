import MeridianCore
import MeridianSimulator

/// 2024-03-04 00:00:00 UTC, a Monday: tests start at midnight so hours of day are known.
let midnight: Int64 = 1_709_510_400_000
let minute: Int64 = 60_000
let hour: Int64 = 3_600_000
let day: Int64 = 86_400_000

/// The samples of `model` every `step` milliseconds from `start`, `count` of them.
func samples(
    of model: inout some DeviceModel,
    from start: Int64 = midnight,
    every step: Int64,
    count: Int
) -> [[String: JSONValue]] {
    (0..<count).map { model.sample(at: start + Int64($0) * step) }
}

/// The samples of a fresh model of `profile` (device `deviceIndex`, seed `seed`).
func samples(
    _ profile: SimulatedProfile,
    seed: UInt64,
    deviceIndex: Int = 0,
    every step: Int64 = minute,
    count: Int = 600
) -> [[String: JSONValue]] {
    var model = profile.makeModel(deviceIndex: deviceIndex, seed: seed)
    return (0..<count).map { model.sample(at: midnight + Int64($0) * step) }
}

extension Dictionary where Key == String, Value == JSONValue {
    func number(_ key: String) -> Double {
        self[key]?.numberValue ?? .nan
    }
}

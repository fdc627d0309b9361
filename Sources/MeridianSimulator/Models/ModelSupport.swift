import Foundation
import MeridianCore

/// Shared arithmetic of the signal models.
enum ModelMath {
    static let millisecondsPerDay: Int64 = 86_400_000

    /// The hour of day (UTC) at `time`, in [0, 24).
    static func hourOfDay(_ time: Int64) -> Double {
        var milliseconds = time % millisecondsPerDay
        if milliseconds < 0 { milliseconds += millisecondsPerDay }
        return Double(milliseconds) / 3_600_000
    }

    /// A daily sine wave in [-1, 1] peaking at `peakHour`.
    static func dailyCycle(_ time: Int64, peakHour: Double) -> Double {
        cos(2 * Double.pi * (hourOfDay(time) - peakHour) / 24)
    }

    /// Seconds elapsed since `last` (0 for the first sample or time going backwards), capped at
    /// one day so that a long pause neither hangs nor explodes the integration.
    static func elapsedSeconds(from last: Int64?, to time: Int64) -> Double {
        guard let last, time > last else { return 0 }
        return min(Double(time - last) / 1000, 86_400)
    }

    /// Splits `seconds` into integration steps of at most `maxStep` seconds.
    static func steps(_ seconds: Double, maxStep: Double) -> (count: Int, step: Double) {
        guard seconds > 0 else { return (0, 0) }
        let count = Int((seconds / maxStep).rounded(.up))
        return (count, seconds / Double(count))
    }

    /// The fraction of the way an exponential relaxation with time constant `tau` covers in `dt`.
    static func relax(_ dt: Double, tau: Double) -> Double {
        1 - exp(-dt / tau)
    }

    /// `value` clamped to `range`; a non-finite value becomes the range's middle.
    static func clamp(_ value: Double, _ range: ClosedRange<Double>) -> Double {
        guard value.isFinite else { return (range.lowerBound + range.upperBound) / 2 }
        return min(max(value, range.lowerBound), range.upperBound)
    }

    /// `value` rounded to `decimals` decimal places (payloads stay short and readable).
    static func round(_ value: Double, _ decimals: Int) -> Double {
        let factor = pow(10, Double(decimals))
        return (value * factor).rounded() / factor
    }
}

/// Reading command parameters and desired settings.
enum Params {
    /// The number under `key` of `params`: required, finite and within `range`.
    static func number(_ params: JSONValue, _ key: String, in range: ClosedRange<Double>) throws -> Double {
        guard let value = try optionalNumber(params, key, in: range) else {
            throw SimulatedCommandError.invalidParams("parameter '\(key)' is required (a number)", field: key)
        }
        return value
    }

    /// The number under `key` of `params` when present; throws when it is not a finite number
    /// within `range`.
    static func optionalNumber(_ params: JSONValue, _ key: String, in range: ClosedRange<Double>) throws -> Double? {
        guard let raw = params[key], raw != .null else { return nil }
        guard let value = raw.numberValue, value.isFinite else {
            throw SimulatedCommandError.invalidParams("parameter '\(key)' must be a number", field: key)
        }
        guard range.contains(value) else {
            throw SimulatedCommandError.invalidParams(
                "parameter '\(key)' must be between \(format(range.lowerBound)) and \(format(range.upperBound))",
                field: key
            )
        }
        return value
    }

    /// The boolean under `key` of `params` when present; throws when it is not a boolean.
    static func optionalBool(_ params: JSONValue, _ key: String) throws -> Bool? {
        guard let raw = params[key], raw != .null else { return nil }
        guard case .bool(let value) = raw else {
            throw SimulatedCommandError.invalidParams("parameter '\(key)' must be true or false", field: key)
        }
        return value
    }

    /// The string under `key` of `params` when present; throws when it is not one of `allowed`.
    static func optionalChoice(_ params: JSONValue, _ key: String, _ allowed: [String]) throws -> String? {
        guard let raw = params[key], raw != .null else { return nil }
        guard let value = raw.stringValue, allowed.contains(value) else {
            throw SimulatedCommandError.invalidParams(
                "parameter '\(key)' must be one of \(allowed.joined(separator: ", "))",
                field: key
            )
        }
        return value
    }

    /// The desired number under `key` when it is finite and within `range`, else nil.
    static func desiredNumber(_ desired: [String: JSONValue], _ key: String, in range: ClosedRange<Double>) -> Double? {
        guard let value = desired[key]?.numberValue, value.isFinite, range.contains(value) else { return nil }
        return value
    }

    /// The desired boolean under `key`, else nil.
    static func desiredBool(_ desired: [String: JSONValue], _ key: String) -> Bool? {
        guard case .bool(let value)? = desired[key] else { return nil }
        return value
    }

    /// The desired string under `key` when it is one of `allowed`, else nil.
    static func desiredChoice(_ desired: [String: JSONValue], _ key: String, _ allowed: [String]) -> String? {
        guard let value = desired[key]?.stringValue, allowed.contains(value) else { return nil }
        return value
    }

    static func format(_ value: Double) -> String {
        value == value.rounded() ? String(Int64(value)) : String(value)
    }
}

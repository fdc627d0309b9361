/// When a failed webhook attempt is tried again: exponential backoff with full jitter. The delay
/// after attempt `n` is uniform in `0...min(cap, base × factor^(n-1))` (1 s, 2 s, 4 s, ... up to
/// 60 s by default), so many endpoints failing at once do not retry in lock-step.
public struct WebhookRetryPolicy: Sendable, Hashable {
    /// The largest delay after the first attempt.
    public var base: Duration
    /// How much the largest delay grows with each attempt.
    public var factor: Double
    /// The largest delay of any retry.
    public var cap: Duration

    /// A policy; the defaults are base 1 s, factor 2, cap 60 s.
    public init(base: Duration = .seconds(1), factor: Double = 2, cap: Duration = .seconds(60)) {
        self.base = base
        self.factor = max(1, factor)
        self.cap = cap
    }

    /// Base 1 s, factor 2, cap 60 s.
    public static let standard = WebhookRetryPolicy()

    /// The upper bound of the delay after attempt `attempt` (from 1).
    public func maximumDelay(afterAttempt attempt: Int) -> Duration {
        let capSeconds = Self.seconds(cap)
        let exponent = Double(max(0, attempt - 1))
        let grown = Self.seconds(base) * pow(factor, exponent)
        let bound = grown.isFinite ? min(capSeconds, grown) : capSeconds
        return Self.duration(max(0, bound))
    }

    /// A random delay after attempt `attempt` (from 1): uniform in `0...maximumDelay`.
    public func delay(afterAttempt attempt: Int, using generator: inout some RandomNumberGenerator) -> Duration {
        let bound = Self.seconds(maximumDelay(afterAttempt: attempt))
        guard bound > 0 else { return .zero }
        return Self.duration(Double.random(in: 0...bound, using: &generator))
    }

    /// A random delay after attempt `attempt`, from the system's random numbers.
    public func delay(afterAttempt attempt: Int) -> Duration {
        var generator = SystemRandomNumberGenerator()
        return delay(afterAttempt: attempt, using: &generator)
    }

    /// Whether an answer with this HTTP status is worth another attempt: 408, 429 and 5xx. Other
    /// 4xx mean the endpoint refused the request; 2xx and 3xx (redirects are not followed) end it.
    public static func isRetryable(status: Int) -> Bool {
        status == 408 || status == 429 || (500...599).contains(status)
    }

    static func seconds(_ duration: Duration) -> Double {
        let parts = duration.components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }

    static func duration(_ seconds: Double) -> Duration {
        .nanoseconds(Int64((seconds * 1e9).rounded()))
    }

    private func pow(_ base: Double, _ exponent: Double) -> Double {
        var result = 1.0
        var remaining = Int(exponent)
        while remaining > 0 && result.isFinite && result < 1e12 {
            result *= base
            remaining -= 1
        }
        return result
    }
}

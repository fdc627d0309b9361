import Foundation
import Synchronization

/// Counts failed logins per user name and per client address and refuses further attempts
/// once either has `maximumFailures` within `window` (until the oldest of them leaves the
/// window). A successful login clears the user name's count (not the address's: one address
/// guessing many users stays limited).
///
/// Memory is bounded: at most `capacity` names and addresses are tracked; beyond that the
/// ones whose last failure is oldest are forgotten first.
public final class LoginRateLimiter: Sendable {
    /// What is counted.
    public enum Key: Hashable, Sendable {
        case username(String)
        case address(String)
    }

    private struct Entry {
        /// Failure times, oldest first; at most `maximumFailures`.
        var failures: [Date]
    }

    public let maximumFailures: Int
    public let window: TimeInterval
    public let capacity: Int
    private let entries = Mutex<[Key: Entry]>([:])

    public init(maximumFailures: Int = 10, window: TimeInterval = 300, capacity: Int = 10_000) {
        self.maximumFailures = max(1, maximumFailures)
        self.window = window
        self.capacity = max(2, capacity)
    }

    /// Seconds until a login for `username` from `address` may be tried again; nil when it
    /// may be tried now.
    public func retryAfter(username: String, address: String?, now: Date = Date()) -> TimeInterval? {
        let keys = Self.keys(username: username, address: address)
        return entries.withLock { entries in
            var longest: TimeInterval?
            for key in keys {
                guard let entry = entries[key] else { continue }
                let recent = entry.failures.filter { now.timeIntervalSince($0) < window }
                guard recent.count >= maximumFailures, let oldest = recent.first else { continue }
                let wait = window - now.timeIntervalSince(oldest)
                longest = max(longest ?? 0, wait)
            }
            return longest
        }
    }

    /// Records a failed login.
    public func recordFailure(username: String, address: String?, now: Date = Date()) {
        let keys = Self.keys(username: username, address: address)
        entries.withLock { entries in
            for key in keys {
                var entry = entries[key] ?? Entry(failures: [])
                entry.failures.removeAll { now.timeIntervalSince($0) >= window }
                entry.failures.append(now)
                if entry.failures.count > maximumFailures { entry.failures.removeFirst(entry.failures.count - maximumFailures) }
                entries[key] = entry
            }
            if entries.count > capacity { Self.evict(&entries, capacity: capacity, window: window, now: now) }
        }
    }

    /// Records a successful login: the user name's failures are forgotten.
    public func recordSuccess(username: String) {
        _ = entries.withLock { $0.removeValue(forKey: .username(Self.normalized(username))) }
    }

    /// How many names and addresses are tracked.
    public var trackedCount: Int { entries.withLock { $0.count } }

    private static func evict(_ entries: inout [Key: Entry], capacity: Int, window: TimeInterval, now: Date) {
        entries = entries.filter { _, entry in
            entry.failures.last.map { now.timeIntervalSince($0) < window } ?? false
        }
        guard entries.count > capacity else { return }
        // Still full of recent failures: forget those whose last failure is oldest, down to
        // three quarters of the capacity so that this does not run on every failure.
        let keep = capacity * 3 / 4
        let sorted = entries.sorted { ($0.value.failures.last ?? .distantPast) > ($1.value.failures.last ?? .distantPast) }
        entries = Dictionary(uniqueKeysWithValues: sorted.prefix(keep).map { ($0.key, $0.value) })
    }

    private static func keys(username: String, address: String?) -> [Key] {
        var keys = [Key.username(normalized(username))]
        if let address { keys.append(.address(address)) }
        return keys
    }

    private static func normalized(_ username: String) -> String {
        String(username.lowercased().prefix(256))
    }
}

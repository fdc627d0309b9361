import Crypto
import Foundation
import MQTTBroker
import MeridianCore
import NIOConcurrencyHelpers

/// Successful authentications, kept in memory so reconnect storms neither run the slow password
/// hash again nor query the database.
///
/// Entries are keyed by the SHA-256 of everything the client presented (user name, password,
/// certificate fingerprint), so the secrets themselves are never kept. They are dropped at once
/// when the registry reports a change to the device, credential or API key they stand for,
/// expire after ``lifetime`` (users' memberships change without a registry notification), and
/// the oldest go when there are more than ``capacity``.
final class AuthenticationCache: Sendable {
    /// What a cached authentication produced: the principal minus its client identifier.
    struct Entry: Sendable {
        var principal: MQTTPrincipal
        var expires: ContinuousClock.Instant
    }

    private struct State {
        var entries: [String: Entry] = [:]
        /// Keys in insertion order from `head` on, for eviction (may hold keys already removed).
        var order: [String] = []
        var head = 0
    }

    let capacity: Int
    let lifetime: Duration
    private let state = NIOLockedValueBox(State())

    init(capacity: Int = 50_000, lifetime: Duration = .seconds(300)) {
        self.capacity = max(1, capacity)
        self.lifetime = lifetime
    }

    /// The cache key for what a client presented; `nil` fields are distinct from empty ones.
    static func key(kind: String, username: String?, password: [UInt8]?, certificateFingerprint: String?) -> String {
        var hasher = SHA256()
        func add(_ bytes: [UInt8]?) {
            guard let bytes else {
                hasher.update(data: [0])
                return
            }
            var length = UInt32(bytes.count).bigEndian
            hasher.update(data: [1])
            withUnsafeBytes(of: &length) { hasher.update(bufferPointer: $0) }
            hasher.update(data: bytes)
        }
        add(Array(kind.utf8))
        add(username.map { Array($0.utf8) })
        add(password)
        add(certificateFingerprint.map { Array($0.utf8) })
        return hasher.finalize().map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }

    func lookup(_ key: String) -> MQTTPrincipal? {
        let now = ContinuousClock.now
        return state.withLockedValue { state in
            guard let entry = state.entries[key] else { return nil }
            if entry.expires <= now {
                state.entries[key] = nil
                return nil
            }
            return entry.principal
        }
    }

    func store(_ principal: MQTTPrincipal, for key: String) {
        let expires = ContinuousClock.now + lifetime
        state.withLockedValue { state in
            if state.entries.updateValue(Entry(principal: principal, expires: expires), forKey: key) == nil {
                state.order.append(key)
            }
            while state.entries.count > capacity, state.head < state.order.count {
                state.entries[state.order[state.head]] = nil
                state.head += 1
            }
            // Keys evicted or invalidated stay in `order`; keep it from growing without bound.
            if state.order.count - state.head > 2 * capacity || state.head > capacity {
                let entries = state.entries
                state.order = state.order[state.head...].filter { entries[$0] != nil }
                state.head = 0
            }
        }
    }

    /// Drops every entry whose principal matches.
    func invalidate(where predicate: (MQTTPrincipal) -> Bool) {
        state.withLockedValue { state in
            state.entries = state.entries.filter { !predicate($0.value.principal) }
        }
    }

    func removeAll() {
        state.withLockedValue { state in
            state.entries.removeAll()
            state.order.removeAll()
            state.head = 0
        }
    }

    var count: Int { state.withLockedValue { $0.entries.count } }
}

import NIOConcurrencyHelpers

/// Runs work for the same key one after the other, in the order it was enqueued (a device's
/// twin requests and the pushes that follow them), and work for different keys concurrently:
/// one task per key with work pending drains that key's FIFO, then ends. Keys without pending
/// work hold no memory.
final class KeyedSerialQueue: Sendable {
    typealias Work = @Sendable () async -> Void

    /// Pending work per key; a key is present while its task runs.
    private let queues = NIOLockedValueBox([String: [Work]]())

    /// Runs `work` after every earlier work of `key` has finished.
    func enqueue(_ key: String, _ work: @escaping Work) {
        let start = queues.withLockedValue { queues -> Bool in
            if queues[key] != nil {
                queues[key, default: []].append(work)
                return false
            }
            queues[key] = [work]
            return true
        }
        if start { Task { await self.drain(key) } }
    }

    private func drain(_ key: String) async {
        while let work = next(key) { await work() }
    }

    /// The next work of `key`, or nil (and the key forgotten) when there is none.
    private func next(_ key: String) -> Work? {
        queues.withLockedValue { queues in
            guard var pending = queues[key], !pending.isEmpty else {
                queues.removeValue(forKey: key)
                return nil
            }
            let first = pending.removeFirst()
            queues[key] = pending
            return first
        }
    }

    /// Keys with work pending (tests).
    var pendingKeys: Int { queues.withLockedValue { $0.count } }
}

import NIOConcurrencyHelpers

/// Runs work for the same key one after the other, in the order it was enqueued (a device's
/// twin requests and the pushes that follow them), and work for different keys concurrently.
/// Keys without pending work hold no memory.
final class KeyedSerialQueue: Sendable {
    private struct State {
        var nextTicket: UInt64 = 0
        var tails: [String: (ticket: UInt64, task: Task<Void, Never>)] = [:]
    }

    private let state = NIOLockedValueBox(State())

    /// Runs `work` after every earlier work of `key` has finished.
    func enqueue(_ key: String, _ work: @escaping @Sendable () async -> Void) {
        state.withLockedValue { state in
            let previous = state.tails[key]?.task
            state.nextTicket += 1
            let ticket = state.nextTicket
            let task = Task {
                await previous?.value
                await work()
                self.finished(key, ticket: ticket)
            }
            state.tails[key] = (ticket, task)
        }
    }

    private func finished(_ key: String, ticket: UInt64) {
        state.withLockedValue { state in
            if state.tails[key]?.ticket == ticket { state.tails.removeValue(forKey: key) }
        }
    }

    /// Keys with work pending (tests).
    var pendingKeys: Int { state.withLockedValue { $0.tails.count } }
}

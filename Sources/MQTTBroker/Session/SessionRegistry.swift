import NIOConcurrencyHelpers
import NIOCore

/// Client identifier → current session, shared by all event loops. Touched at connect and at
/// session end only, never per message.
final class SessionRegistry: Sendable {
    private struct Entry {
        var session: Session
        /// While the session is still taking over its predecessor, or its connection is not yet
        /// attached: completes when it has settled. The next connection with the same client identifier waits for it. `nil`
        /// once settled, so idle sessions hold no future.
        var settled: EventLoopFuture<Void>?
    }

    private let entries = NIOLockedValueBox<[String: Entry]>([:])

    var count: Int { entries.withLockedValue { $0.count } }

    /// Registers `session` as the client's current session. If an earlier session exists, it
    /// is taken over on its own loop (its connection disconnected with "session taken over")
    /// and either handed to `session` or discarded (`cleanStart`). Completes on `session`'s
    /// loop with whether a previous session was resumed.
    func open(_ session: Session, cleanStart: Bool) -> EventLoopFuture<Bool> {
        let eventLoop = session.eventLoop
        let settled = eventLoop.makePromise(of: Void.self)
        let previous: Entry? = entries.withLockedValue { entries in
            let previous = entries[session.clientIdentifier]
            entries[session.clientIdentifier] = Entry(session: session, settled: settled.futureResult)
            return previous
        }
        // Settled once the session is taken over or set up *and* its connection attached (or
        // given up): a takeover that ran earlier would find no connection to disconnect.
        let settle: @Sendable () -> Void = {
            session.whenSetupFinished {
                self.markSettled(session)
                settled.succeed()
            }
        }
        guard let previous else {
            settle()
            return eventLoop.makeSucceededFuture(false)
        }
        let old = previous.session
        let owner = session.principal.sessionOwner
        let result = (previous.settled ?? old.eventLoop.makeSucceededVoidFuture())
            .hop(to: old.eventLoop)
            .flatMap { old.takeOver(by: session, discard: cleanStart || old.principal.sessionOwner != owner) }
            .hop(to: eventLoop)
            .flatMap { handed -> EventLoopFuture<Bool> in
                guard let handed else { return eventLoop.makeSucceededFuture(false) }
                return session.adopt(handed).map { true }
            }
        result.whenComplete { _ in settle() }
        return result
    }

    private func markSettled(_ session: Session) {
        entries.withLockedValue { entries in
            if entries[session.clientIdentifier]?.session === session {
                entries[session.clientIdentifier]?.settled = nil
            }
        }
    }

    /// Removes `session` if it is still the client's current one; returns whether it was.
    func remove(_ session: Session) -> Bool {
        entries.withLockedValue { entries in
            guard let entry = entries[session.clientIdentifier], entry.session === session else { return false }
            entries[session.clientIdentifier] = nil
            return true
        }
    }

    /// The current session of a client, if any.
    func session(for clientIdentifier: String) -> Session? {
        entries.withLockedValue { $0[clientIdentifier]?.session }
    }

    /// All sessions (for shutdown and statistics).
    var all: [Session] { entries.withLockedValue { $0.values.map(\.session) } }
}

import Foundation
import PostgresNIO
import Synchronization

// Synchronous access for stores whose protocols are synchronous and whose callers run on threads
// of their own (the time-series engine: the ingest writer thread, query threads): the caller's
// thread borrows a connection of the pool and runs its statements on it, waiting for each.
extension PostgresDatabase {
    /// Runs `body` on the calling thread with a connection of the pool, outside any
    /// transaction: each statement commits on its own (single-statement reads and writes).
    ///
    /// Blocks the calling thread until a connection is free, at most ``leaseTimeout`` (then it
    /// throws, naming the wait: a stalled pool fails the caller, never hangs it). Never call it from an event loop
    /// (the statements wait on the event loops), nor from Swift's cooperative pool (it would hold
    /// one of its few threads). The connection is leased by a task on the database's own
    /// executor, which never needs a cooperative thread to make progress.
    func blockingConnection<T>(_ body: (PostgresSession) throws -> T) throws -> T {
        let loan = ConnectionLoan()
        let client = self.client
        Task.detached(executorPreference: executor) {
            do {
                try await client.withConnection { connection in
                    await withCheckedContinuation { (returned: CheckedContinuation<Void, Never>) in
                        loan.lend(connection, until: returned)
                    }
                }
            } catch {
                loan.fail(error)
            }
        }
        let connection: PostgresConnection
        do {
            connection = try loan.borrow(timeout: leaseTimeout)
        } catch let error as ConnectionLoan.TimedOut {
            throw DatabaseError(
                "PostgreSQL at \(configuration.redactedURL): no connection within \(error.timeout) "
                    + "(all \(configuration.maximumConnections) connections busy, or the server unreachable)"
            )
        } catch {
            throw Self.describe(error, doing: "PostgreSQL at \(configuration.redactedURL)")
        }
        defer { loan.giveBack() }
        return try body(PostgresSession(connection: connection, logger: queryLogger))
    }

    /// Runs `body` in one `READ COMMITTED` transaction on the calling thread: committed when it
    /// returns, rolled back when it throws (its error is rethrown untouched). Not `durable`:
    /// the commit does not wait for the server's flush (`synchronous_commit = off` — as SQLite's
    /// `synchronous = NORMAL`, a server crash may lose the last such commits, never half of one,
    /// and a later durable commit makes them durable too).
    ///
    /// Blocks the calling thread, as ``blockingConnection(_:)``.
    func blockingTransaction<T>(durable: Bool, _ body: (PostgresSession) throws -> T) throws -> T {
        try blockingConnection { session in
            try session.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
            let result: T
            do {
                if !durable { try session.execute("SET LOCAL synchronous_commit TO OFF") }
                result = try body(session)
            } catch {
                session.rollback()
                throw error
            }
            do {
                try session.execute("COMMIT")
            } catch {
                session.rollback()
                throw error
            }
            return result
        }
    }
}

/// A pool connection lent by the task holding its lease to a thread outside Swift's concurrency
/// pool, until that thread gives it back.
private final class ConnectionLoan: Sendable {
    private enum State {
        case waiting
        case lent(PostgresConnection, CheckedContinuation<Void, Never>)
        case failed(any Error)
        case returned
    }

    private let state = Mutex<State>(.waiting)
    private let ready = DispatchSemaphore(value: 0)

    /// The leasing task: hands the connection over; `returned` resumes once it is given back.
    func lend(_ connection: PostgresConnection, until returned: CheckedContinuation<Void, Never>) {
        let accepted = state.withLock { state -> Bool in
            guard case .waiting = state else { return false }
            state = .lent(connection, returned)
            return true
        }
        if accepted { ready.signal() } else { returned.resume() }
    }

    /// The leasing task: no connection.
    func fail(_ error: any Error) {
        let failed = state.withLock { state -> Bool in
            guard case .waiting = state else { return false }
            state = .failed(error)
            return true
        }
        if failed { ready.signal() }
    }

    /// The borrowing thread gave up waiting.
    struct TimedOut: Error {
        var timeout: Duration
    }

    /// The borrowing thread: waits for the connection, at most `timeout`. After a timeout the
    /// loan is over: a connection lent later goes straight back to the pool.
    func borrow(timeout: Duration) throws -> PostgresConnection {
        let nanoseconds = timeout.components.seconds * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000
        let signalled = ready.wait(timeout: .now() + .nanoseconds(Int(clamping: nanoseconds))) == .success
        return try state.withLock { state -> PostgresConnection in
            switch state {
            case .lent(let connection, _): return connection
            case .failed(let error): throw error
            case .waiting:
                state = .returned
                throw signalled ? PostgresDatabase.DatabaseError("PostgreSQL: no connection") : TimedOut(timeout: timeout)
            case .returned: throw PostgresDatabase.DatabaseError("PostgreSQL: no connection")
            }
        }
    }

    /// The borrowing thread: done with the connection.
    func giveBack() {
        let returned = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard case .lent(_, let returned) = state else { return nil }
            state = .returned
            return returned
        }
        returned?.resume()
    }
}

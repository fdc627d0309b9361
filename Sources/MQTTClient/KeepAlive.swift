import NIOCore

/// When to send PINGREQ and when the server counts as gone (MQTT 5 §3.1.2.10, §4.13).
///
/// A pure state machine: time comes in as arguments and decisions go out as actions, so the
/// channel handler only carries them out and tests drive it with made-up deadlines.
struct KeepAlive: Sendable {
    /// What the handler does next.
    enum Action: Sendable, Equatable {
        /// Check again at this deadline.
        case check(at: NIODeadline)
        /// Send PINGREQ now, then check again at the deadline.
        case sendPing(thenCheckAt: NIODeadline)
        /// PINGRESP is overdue: close the connection.
        case timedOut
    }

    /// The longest the client stays silent.
    let interval: TimeAmount
    /// How long PINGRESP may take.
    let pingTimeout: TimeAmount
    private(set) var lastSent: NIODeadline
    private(set) var pingSentAt: NIODeadline?

    init(interval: TimeAmount, pingTimeout: TimeAmount, lastSent: NIODeadline) {
        precondition(interval > .zero, "keep-alive interval must be positive")
        self.interval = interval
        self.pingTimeout = pingTimeout
        self.lastSent = lastSent
    }

    /// When the first check is due.
    var firstCheck: NIODeadline { lastSent + interval }

    /// A packet went out at `now`.
    mutating func packetSent(at now: NIODeadline) {
        lastSent = now
    }

    /// PINGRESP arrived; returns when to check next.
    mutating func pingResponseReceived() -> NIODeadline {
        pingSentAt = nil
        return lastSent + interval
    }

    /// The check scheduled earlier is due at `now`.
    mutating func timerFired(at now: NIODeadline) -> Action {
        if let pingSentAt {
            let deadline = pingSentAt + pingTimeout
            return now >= deadline ? .timedOut : .check(at: deadline)
        }
        let due = lastSent + interval
        guard now >= due else { return .check(at: due) }
        pingSentAt = now
        lastSent = now
        return .sendPing(thenCheckAt: now + pingTimeout)
    }
}

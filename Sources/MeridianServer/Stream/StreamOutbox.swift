import MeridianCore
import NIOConcurrencyHelpers

/// One live-stream connection's bounded queue of device messages waiting to be sent, between
/// the telemetry pipeline's writer thread (which offers and must never wait) and the
/// connection's event loop (which takes while the socket is writable).
///
/// When the client does not keep up, the queue holds at most ``Limits/messages`` messages and
/// ``Limits/samples`` samples: the oldest are discarded and counted, and the connection tells
/// the client how many with one `{"type":"dropped","count":n}` before the newer events. Memory
/// stays bounded and the pipeline never waits for a slow client.
final class StreamOutbox: Sendable {
    /// How much one connection may have waiting.
    struct Limits: Sendable {
        var messages = 1000
        var samples = 50_000
    }

    private struct State {
        /// Waiting messages from `head` on (the slots before it have been taken).
        var queue: [StreamEvent] = []
        var head = 0
        var samples = 0
        /// Discarded since the last ``take(maximum:)``.
        var dropped = 0
        /// Whether the event loop has been asked to drain (and has not yet found the queue empty).
        var draining = false
        /// The socket is not writable: no drain is asked for until ``resume()``.
        var paused = false
        var closed = false

        var count: Int { queue.count - head }

        mutating func removeFirst() {
            samples -= queue[head].weight
            head += 1
            if head > 64, head * 2 > queue.count {
                queue.removeFirst(head)
                head = 0
            }
        }
    }

    let limits: Limits
    private let state = NIOLockedValueBox(State())
    /// Asks the connection's event loop to drain (called at most once until it finds the
    /// queue empty or the socket unwritable).
    private let requestDrain: @Sendable () -> Void

    init(limits: Limits = Limits(), requestDrain: @escaping @Sendable () -> Void) {
        self.limits = limits
        self.requestDrain = requestDrain
    }

    /// Queues `messages`, discarding the oldest beyond the limits. Returns how many were
    /// discarded now (0 when the client keeps up). Never blocks beyond a short lock.
    @discardableResult
    func offer(_ messages: [DeviceMessage]) -> Int {
        offer(events: messages.map(StreamEvent.telemetry))
    }

    /// Queues `events` (telemetry or twin changes), as ``offer(_:)`` does; a twin change
    /// weighs one sample per 64 bytes of its JSON.
    @discardableResult
    func offer(events: [StreamEvent]) -> Int {
        let (drain, dropped) = state.withLockedValue { state -> (Bool, Int) in
            guard !state.closed else { return (false, 0) }
            var dropped = 0
            for message in events {
                state.queue.append(message)
                state.samples += message.weight
                while state.count > limits.messages || (state.samples > limits.samples && state.count > 1) {
                    state.removeFirst()
                    dropped += 1
                }
            }
            state.dropped += dropped
            guard !state.draining, !state.paused else { return (false, dropped) }
            state.draining = true
            return (true, dropped)
        }
        if drain { requestDrain() }
        return dropped
    }

    /// Up to `maximum` waiting messages, oldest first, and how many were discarded before
    /// them. When nothing is left, the next ``offer(_:)`` asks for a drain again.
    func take(maximum: Int) -> (messages: [StreamEvent], dropped: Int) {
        state.withLockedValue { state in
            let dropped = state.dropped
            state.dropped = 0
            let taken = min(maximum, state.count)
            let messages = Array(state.queue[state.head..<(state.head + taken)])
            for _ in 0..<taken { state.removeFirst() }
            if state.count == 0 {
                state.queue.removeAll(keepingCapacity: state.queue.capacity <= 1024)
                state.head = 0
                if dropped == 0 && taken == 0 { state.draining = false }
            }
            return (messages, dropped)
        }
    }

    /// The socket stopped accepting writes: offers queue (and discard) without asking for a
    /// drain until ``resume()``.
    func pause() {
        state.withLockedValue { state in
            state.paused = true
            state.draining = false
        }
    }

    /// The socket accepts writes again. Returns whether the caller should drain now (it is
    /// then the one draining).
    func resume() -> Bool {
        state.withLockedValue { state in
            state.paused = false
            guard !state.draining, state.count > 0 || state.dropped > 0 else { return false }
            state.draining = true
            return true
        }
    }

    /// The connection is gone: drops what waits, takes no more.
    func close() {
        state.withLockedValue { state in
            state.closed = true
            state.queue = []
            state.head = 0
            state.samples = 0
        }
    }

    /// Messages waiting (for tests and metrics).
    var waiting: Int { state.withLockedValue { $0.count } }
}

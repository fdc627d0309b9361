import Foundation
import Logging
import MeridianCore
import MeridianStorage
import Metrics
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle

/// The one flow after the ingress adapters: every `DeviceMessage` (from MQTT, HTTP, ...) is
/// queued here, written by one writer thread in batches (one WAL fsync for many messages: group
/// commit) and acknowledged once durable; then live subscribers see its samples.
///
/// Back-pressure: acknowledgements wait while the writer is behind, so MQTT publishers are held
/// by their receive maximum (QoS 1/2) or by the broker reading no further (QoS 0), and HTTP
/// requests by their answer, instead of memory growing.
public final class TelemetryPipeline: Service, Sendable {
    /// Tuning.
    public struct Configuration: Sendable {
        /// Most samples written in one batch (one WAL write and fsync).
        public var batchSamples = 50_000

        public init() {}
    }

    private struct Pending {
        var message: DeviceMessage
        var promise: EventLoopPromise<Void>?
    }

    private struct State {
        var queue: [Pending] = []
        var queuedSamples = 0
        var stopping = false
        var stopped = false
        var waiting: [CheckedContinuation<Void, Never>] = []
    }

    /// The engine everything is written to.
    public let engine: TimeSeriesEngine
    private let configuration: Configuration
    private let logger: Logger
    /// Signalled when work (or the stop request) is queued.
    private let condition = WakeUp()
    private let state = NIOLockedValueBox(State())
    private let listeners = NIOLockedValueBox([UInt64: @Sendable ([DeviceMessage]) -> Void]())
    private let nextListener = NIOLockedValueBox<UInt64>(0)
    private let samplesCounter = Counter(label: "meridian_telemetry_samples_total")
    private let messagesCounter = Counter(label: "meridian_telemetry_messages_total")
    private let failedCounter = Counter(label: "meridian_telemetry_write_failures_total")

    public init(engine: TimeSeriesEngine, configuration: Configuration = Configuration(), logger: Logger) {
        self.engine = engine
        self.configuration = configuration
        self.logger = logger
        let thread = Thread { [self] in writerLoop() }
        thread.name = "meridian-telemetry-writer"
        thread.start()
    }

    /// Queues a message; the future succeeds once its samples are durable (fails if they could
    /// not be written). `loop` is where the future completes.
    public func submit(_ message: DeviceMessage, on loop: any EventLoop) -> EventLoopFuture<Void> {
        let promise = loop.makePromise(of: Void.self)
        enqueue(Pending(message: message, promise: promise))
        return promise.futureResult
    }

    /// Queues a message and waits until it is durable.
    public func submit(_ message: DeviceMessage) async throws {
        try await submit(message, on: MultiThreadedEventLoopGroup.singleton.next()).get()
    }

    private func enqueue(_ pending: Pending) {
        let accepted = state.withLockedValue { state -> Bool in
            guard !state.stopping else { return false }
            state.queue.append(pending)
            state.queuedSamples += pending.message.samples.count
            return true
        }
        guard accepted else {
            pending.promise?.fail(TelemetryPipelineError.stopped)
            return
        }
        condition.signal()
    }

    /// Samples waiting for the writer.
    public var queuedSamples: Int { state.withLockedValue { $0.queuedSamples } }

    /// Calls `listener` (on the writer thread; it must return quickly) with every batch once
    /// durable, before the batch's messages are acknowledged. Returns a token for
    /// ``removeListener(_:)``.
    public func addListener(_ listener: @escaping @Sendable ([DeviceMessage]) -> Void) -> UInt64 {
        let id = nextListener.withLockedValue { value -> UInt64 in
            value += 1
            return value
        }
        listeners.withLockedValue { $0[id] = listener }
        return id
    }

    public func removeListener(_ id: UInt64) {
        listeners.withLockedValue { _ = $0.removeValue(forKey: id) }
    }

    private func writerLoop() {
        while true {
            condition.wait()
            let (batch, stop) = state.withLockedValue { state -> ([Pending], Bool) in
                var taken = 0
                var samples = 0
                while taken < state.queue.count, samples < configuration.batchSamples || taken == 0 {
                    samples += state.queue[taken].message.samples.count
                    taken += 1
                }
                let batch = Array(state.queue.prefix(taken))
                state.queue.removeFirst(taken)
                state.queuedSamples -= samples
                return (batch, state.stopping && state.queue.isEmpty)
            }
            if state.withLockedValue({ !$0.queue.isEmpty }) { condition.signal() }
            if !batch.isEmpty { write(batch) }
            if stop {
                let waiting = state.withLockedValue { state in
                    state.stopped = true
                    defer { state.waiting.removeAll() }
                    return state.waiting
                }
                for continuation in waiting { continuation.resume() }
                return
            }
        }
    }

    private func write(_ batch: [Pending]) {
        let messages = batch.map(\.message)
        do {
            try engine.append(messages)
        } catch {
            failedCounter.increment(by: batch.count)
            logger.error("telemetry write failed; the messages are not acknowledged", metadata: ["telemetry.messages": "\(batch.count)", "error": "\(error)"])
            for pending in batch { pending.promise?.fail(TelemetryPipelineError.writeFailed("\(error)")) }
            return
        }
        var samples = 0
        for message in messages { samples += message.samples.count }
        samplesCounter.increment(by: samples)
        messagesCounter.increment(by: messages.count)
        // Listeners first: when a device's message is acknowledged, its live subscribers (and
        // anything else listening) have been handed it.
        for listener in listeners.withLockedValue({ Array($0.values) }) { listener(messages) }
        for pending in batch { pending.promise?.succeed() }
    }

    /// Runs until graceful shutdown, then writes what is queued and stops the writer.
    public func run() async throws {
        try? await gracefulShutdown()
        await stop()
    }

    /// Stops accepting, writes every queued message, and ends the writer thread.
    public func stop() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let alreadyStopped = state.withLockedValue { state -> Bool in
                state.stopping = true
                if !state.stopped { state.waiting.append(continuation) }
                return state.stopped
            }
            if alreadyStopped {
                continuation.resume()
                return
            }
            condition.signal()
        }
    }
}

/// Why the pipeline did not take a message.
public enum TelemetryPipelineError: Error, CustomStringConvertible {
    /// The server is shutting down.
    case stopped
    /// The store could not write (disk full, I/O error); the message was not acknowledged.
    case writeFailed(String)

    public var description: String {
        switch self {
        case .stopped: "the server is shutting down"
        case .writeFailed(let reason): "telemetry could not be stored: \(reason)"
        }
    }
}

/// A flag the writer thread sleeps on until another thread raises it.
private final class WakeUp: @unchecked Sendable {
    private let condition = NSCondition()
    private var raised = false

    func signal() {
        condition.lock()
        raised = true
        condition.signal()
        condition.unlock()
    }

    /// Waits until raised, then lowers it.
    func wait() {
        condition.lock()
        while !raised { condition.wait() }
        raised = false
        condition.unlock()
    }
}

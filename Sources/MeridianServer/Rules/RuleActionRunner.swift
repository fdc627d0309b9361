import Foundation
import Logging
import MQTTBroker
import MQTTCore
import MeridianCore
import Metrics
import NIOCore
import Synchronization

/// One action to run for a firing.
struct RuleActionJob: Sendable {
    var firing: RuleFiring
    var index: Int
    var action: RuleAction
    var template: RuleTemplate
    var severity: AlarmSeverity?
}

/// Runs rule actions from bounded queues, one queue and worker per kind of action, so that a
/// slow webhook endpoint holds only webhooks back — never ingestion, never the engine, never
/// the other kinds. A full queue drops the job and records it as `dropped` with the firing.
final class RuleActionRunner: Sendable {
    /// Where the outcome of each action goes (the firing's record).
    typealias Record = @Sendable (RuleActionOutcome, _ firingID: String) -> Void

    /// Hands a webhook (url, body, secret, timeout in ms, attempts, its firing, the action's index)
    /// to the dispatcher.
    typealias WebhookSend = @Sendable (String, String, String?, Int64, Int, RuleFiring, Int) -> String?

    /// What actions reach: each nil when that part of the platform is absent.
    struct Targets: Sendable {
        var broker: BrokerReference?
        var commands: CommandService?
        var twins: TwinService?
        var pipeline: TelemetryPipeline?
        /// Hands a webhook to the dispatcher; returns its delivery id, nil when its queue is full.
        /// The final outcome is recorded when the dispatcher reports it.
        var webhook: WebhookSend?
    }

    private final class Queue: Sendable {
        let name: String
        let capacity: Int
        let state = Mutex<(jobs: [RuleActionJob], head: Int, waiter: CheckedContinuation<Void, Never>?, closed: Bool)>(([], 0, nil, false))

        init(name: String, capacity: Int) {
            self.name = name
            self.capacity = capacity
        }

        /// Adds a job; false when full or closed.
        func push(_ job: RuleActionJob) -> Bool {
            let (accepted, waiter) = state.withLock { state -> (Bool, CheckedContinuation<Void, Never>?) in
                guard !state.closed, state.jobs.count - state.head < capacity else { return (false, nil) }
                state.jobs.append(job)
                defer { state.waiter = nil }
                return (true, state.waiter)
            }
            waiter?.resume()
            return accepted
        }

        /// The next job; nil once closed and empty.
        func pop() async -> RuleActionJob? {
            while true {
                let next = state.withLock { state -> (RuleActionJob?, Bool) in
                    guard state.head < state.jobs.count else { return (nil, state.closed) }
                    let job = state.jobs[state.head]
                    state.head += 1
                    if state.head > 1024, state.head * 2 > state.jobs.count {
                        state.jobs.removeFirst(state.head)
                        state.head = 0
                    }
                    return (job, false)
                }
                if let job = next.0 { return job }
                if next.1 { return nil }
                await withCheckedContinuation { continuation in
                    let resumeNow = state.withLock { state -> Bool in
                        if state.head < state.jobs.count || state.closed { return true }
                        state.waiter = continuation
                        return false
                    }
                    if resumeNow { continuation.resume() }
                }
            }
        }

        func close() {
            let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
                state.closed = true
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume()
        }
    }

    private let queues: [String: Queue]
    private let targets: Targets
    private let record: Record
    private let logger: Logger
    private let workers = Mutex<[Task<Void, Never>]>([])
    private let dropped = Counter(label: "meridian_rule_actions_dropped_total")
    private let completed = Counter(label: "meridian_rule_actions_total")

    init(targets: Targets, capacity: Int = 10_000, record: @escaping Record, logger: Logger) {
        self.targets = targets
        self.record = record
        self.logger = logger
        var queues: [String: Queue] = [:]
        for kind in ["republish", "command", "twin", "telemetry"] { queues[kind] = Queue(name: kind, capacity: capacity) }
        self.queues = queues
        var tasks: [Task<Void, Never>] = []
        for queue in queues.values {
            tasks.append(Task { [self] in
                while let job = await queue.pop() { await run(job) }
            })
        }
        workers.withLock { $0 = tasks }
    }

    /// Stops the workers after their queued jobs.
    func shutdown() async {
        for queue in queues.values { queue.close() }
        for task in workers.withLock({ $0 }) { await task.value }
    }

    /// Queues a firing's actions; returns their initial outcomes (pending, or dropped).
    func submit(_ jobs: [RuleActionJob]) -> [RuleActionOutcome] {
        jobs.map { job in
            let type = job.action.kind.name
            let now = Date()
            if case .webhook(let webhook) = job.action.kind {
                guard let send = targets.webhook else {
                    return RuleActionOutcome(index: job.index, type: type, status: .failed, detail: "webhooks are not available on this server", at: now)
                }
                let body = (webhook.body.map(job.template.render) ?? RuleTemplate.firingDocument(job.firing, severity: job.severity)).jsonText
                guard let delivery = send(webhook.url, body, webhook.secret, webhook.timeout.milliseconds, webhook.retries + 1, job.firing, job.index)
                else {
                    dropped.increment()
                    return RuleActionOutcome(index: job.index, type: type, status: .dropped, detail: "the webhook queue is full", at: now)
                }
                return RuleActionOutcome(index: job.index, type: type, status: .pending, detail: "queued for delivery \(delivery)", at: now)
            }
            guard let queue = queues[type], queue.push(job) else {
                dropped.increment()
                return RuleActionOutcome(index: job.index, type: type, status: .dropped, detail: "the \(type) action queue is full", at: now)
            }
            return RuleActionOutcome(index: job.index, type: type, status: .pending, detail: "queued", at: now)
        }
    }

    private func run(_ job: RuleActionJob) async {
        let type = job.action.kind.name
        let outcome: RuleActionOutcome
        do {
            let detail = try await perform(job)
            outcome = RuleActionOutcome(index: job.index, type: type, status: .succeeded, detail: detail, attempts: 1, at: Date())
        } catch {
            logger.warning(
                "rule action failed",
                metadata: ["rule.id": "\(job.firing.ruleID)", "device.id": "\(job.firing.deviceID)", "action.type": "\(type)", "error": "\(error)"]
            )
            outcome = RuleActionOutcome(index: job.index, type: type, status: .failed, detail: "\(error)", attempts: 1, at: Date())
        }
        completed.increment()
        record(outcome, job.firing.id)
    }

    private struct Unavailable: Error, CustomStringConvertible {
        var description: String
    }

    private func perform(_ job: RuleActionJob) async throws -> String {
        let firing = job.firing
        let actor = AuditActor(kind: .system, id: "rule:\(firing.ruleID)")
        switch job.action.kind {
        case .webhook:
            return "handed to the webhook dispatcher"
        case .republish(let action):
            guard let broker = targets.broker?.value else { throw Unavailable(description: "the broker is not running") }
            let topic = job.template.text(action.topic)
            let payload = (action.payload.map(job.template.render) ?? RuleTemplate.firingDocument(firing, severity: job.severity)).jsonText
            let receivers = try await broker.publish(
                topic: topic, payload: ByteBuffer(string: payload), qos: action.qos == 1 ? .atLeastOnce : .atMostOnce, retain: action.retain
            )
            return "published to \(topic) (\(receivers) subscriber\(receivers == 1 ? "" : "s"))"
        case .command(let action):
            guard let commands = targets.commands else { throw Unavailable(description: "commands are not available on this server") }
            let request = CommandRequest(
                method: action.method, params: action.params.map(job.template.render) ?? .emptyObject, oneWay: true, persistent: true
            )
            let command = try await commands.send(request, tenantID: firing.tenantID, deviceID: firing.deviceID, actor: actor.description)
            return "command \(command.id) (\(action.method)) \(command.state.rawValue)"
        case .twin(let action):
            guard let twins = targets.twins else { throw Unavailable(description: "twins are not available on this server") }
            let update = try await twins.update(
                TwinKey(tenantID: firing.tenantID, deviceID: firing.deviceID), desired: job.template.render(action.desired), actor: actor
            )
            return "desired state patched (twin version \(update.current.version))"
        case .telemetry(let action):
            guard let pipeline = targets.pipeline else { throw Unavailable(description: "telemetry is not available on this server") }
            let value: TelemetryValue
            switch job.template.render(action.value) {
            case .number(let number): value = .number(number)
            case .bool(let flag): value = .bool(flag)
            case .string(let text):
                if let number = Double(text), number.isFinite { value = .number(number) } else { value = .string(text) }
            default: throw Unavailable(description: "the value template did not give a number, bool or string")
            }
            let message = DeviceMessage(
                tenantID: firing.tenantID, deviceID: firing.deviceID, receivedAt: Int64(Date().timeIntervalSince1970 * 1000),
                kind: .telemetry([TelemetrySample(key: action.key, timestamp: firing.at, value: value)])
            )
            try await pipeline.submit(message)
            return "\(action.key) written"
        }
    }
}

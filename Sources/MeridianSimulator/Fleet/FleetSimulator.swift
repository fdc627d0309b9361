import Foundation
import Logging
import MQTTCore
import MeridianCore
import MeridianDevice
import Synchronization

/// A moment of a running simulation, for progress lines.
public struct FleetProgress: Sendable, Hashable {
    /// Time since the start.
    public var elapsed: Duration
    /// Devices connected now, and in the fleet.
    public var connected: Int
    public var devices: Int
    /// Samples handed to the devices (sent or buffered) and acknowledged by the server, so far.
    public var sent: Int
    public var acknowledged: Int
    /// Samples waiting in the devices' buffers now.
    public var buffered: Int
    /// Errors: failed provisionings and connects, refused telemetry.
    public var errors: Int
    /// Faults injected so far.
    public var faults: FaultCounts
    /// Commands answered and desired-state changes applied.
    public var commands: Int
    public var desiredChanges: Int
}

/// How many of each fault the simulator injected.
public struct FaultCounts: Sendable, Hashable, Codable {
    public var dropouts = 0
    public var spikes = 0
    public var stuckSamples = 0
    public var lostMessages = 0
    public var delayedMessages = 0
    public var disconnects = 0
    public var reboots = 0
}

/// What a finished simulation did.
public struct FleetSummary: Sendable, Hashable, Codable {
    public var devices: Int
    public var connectedAtEnd: Int
    public var seconds: Double
    public var sent: Int
    public var acknowledged: Int
    public var buffered: Int
    public var dropped: Int
    public var refused: Int
    public var errors: Int
    public var commands: Int
    public var desiredChanges: Int
    public var faults: FaultCounts
    /// Acknowledged samples per second over the run.
    public var acknowledgedPerSecond: Double
    /// The first error, when there were any (e.g. why provisioning failed).
    public var firstError: String?
}

/// Runs a fleet of virtual devices from one process: each a ``DeviceModel`` driven by its own
/// clock, behind a ``FaultInjector``, connected through the device SDK (``MeridianDevice``).
public final class FleetSimulator: Sendable {
    public let plan: FleetPlan
    private let logger: Logger
    private let counters = Counters()
    private let members = Mutex<[VirtualDevice]>([])
    private let tokens = Mutex<[Int: String]>([:])

    public init(plan: FleetPlan, logger: Logger = Logger(label: "meridian.simulate", factory: { _ in SwiftLogNoOpLogHandler() })) throws {
        try plan.validate()
        self.plan = plan
        self.logger = logger
    }

    /// Runs the fleet for the plan's duration (or until the task is cancelled), calling
    /// `progress` every `progressInterval`; then waits up to `drainTimeout` for buffered
    /// samples and disconnects every device.
    public func run(
        progressInterval: Duration = .seconds(5),
        drainTimeout: Duration = .seconds(10),
        progress: @escaping @Sendable (FleetProgress) async -> Void = { _ in }
    ) async -> FleetSummary {
        let clock = ContinuousClock()
        let start = clock.now
        let end = plan.duration.map { start + $0 }
        await withTaskGroup(of: Void.self) { group in
            for index in 0..<plan.devices {
                group.addTask { [self] in
                    // The ramp: device i starts i / connectRate seconds in.
                    try? await Task.sleep(for: .seconds(Double(index) / plan.connectRate))
                    guard !Task.isCancelled, end.map({ clock.now < $0 }) ?? true else { return }
                    guard let member = await makeDevice(index) else { return }
                    members.withLock { $0.append(member) }
                    await member.run(until: end, counters: counters)
                }
            }
            group.addTask { [self] in
                while !Task.isCancelled {
                    try? await Task.sleep(for: progressInterval)
                    if Task.isCancelled { return }
                    if let end, clock.now >= end { return }
                    await progress(await snapshot(elapsed: clock.now - start))
                }
            }
            if let end {
                try? await Task.sleep(until: end)
                group.cancelAll()
            }
            await group.waitForAll()
        }
        let everyone = members.withLock { $0 }
        await withTaskGroup(of: Void.self) { group in
            for member in everyone {
                group.addTask { await member.finish(drainTimeout: drainTimeout) }
            }
        }
        return await summary(elapsed: clock.now - start)
    }

    /// The tokens devices got by provisioning, by device index: save them to run the same
    /// fleet again with ``FleetCredentials/tokens(_:)`` (provisioning a name twice is refused).
    public var provisionedTokens: [Int: String] { tokens.withLock { $0 } }

    private func makeDevice(_ index: Int) async -> VirtualDevice? {
        let profile = plan.profile(of: index)
        let token: String
        switch plan.credentials {
        case .tokens(let tokens):
            token = tokens[index]
        case .provision(let key, let secret, let prefix):
            var request = MeridianDevice.ProvisioningRequest(
                host: plan.host, port: plan.port, tls: plan.tls, profileKey: key, profileSecret: secret,
                deviceName: "\(prefix)-\(index)"
            )
            request.timeout = .seconds(30)
            do {
                token = try await MeridianDevice.provision(request)
                tokens.withLock { $0[index] = token }
            } catch {
                counters.record(error: "device \(index): \(error)")
                logger.error("a simulated device could not provision", metadata: ["device.index": "\(index)", "error": "\(error)"])
                return nil
            }
        }
        var configuration = MeridianDevice.Configuration(host: plan.host, port: plan.port, credentials: .accessToken(token))
        configuration.tls = plan.tls
        configuration.protocolVersion = plan.protocolVersion
        configuration.clientIdentifier = "sim-\(plan.seed)-\(index)"
        configuration.telemetry.linger = .milliseconds(5)
        do {
            let device = try MeridianDevice(configuration: configuration)
            if let recorder = plan.latencyRecorder { await device.onAcknowledged(recorder) }
            return VirtualDevice(
                extraKeys: plan.extraKeys,
                index: index,
                device: device,
                model: ModelBox(profile.makeModel(deviceIndex: index, seed: plan.seed)),
                injector: FaultInjector(faults: plan.faults, seed: plan.seed, deviceIndex: index, profile: profile),
                interval: .seconds(1 / plan.rate),
                phase: .seconds(Double(index % 1000) / 1000 / plan.rate),
                seed: plan.seed,
                logger: logger
            )
        } catch {
            counters.record(error: "device \(index): \(error)")
            logger.error("a simulated device could not start", metadata: ["device.index": "\(index)", "error": "\(error)"])
            return nil
        }
    }

    /// The fleet's state now (what `progress` is called with).
    public func currentProgress(since start: ContinuousClock.Instant) async -> FleetProgress {
        await snapshot(elapsed: ContinuousClock.now - start)
    }

    private func snapshot(elapsed: Duration) async -> FleetProgress {
        let everyone = members.withLock { $0 }
        var connected = 0
        var acknowledged = 0
        var buffered = 0
        var refused = 0
        for member in everyone {
            let stats = await member.device.stats
            if await member.device.connected { connected += 1 }
            acknowledged += stats.acknowledged
            buffered += stats.buffered
            refused += stats.refused
        }
        return FleetProgress(
            elapsed: elapsed,
            connected: connected,
            devices: plan.devices,
            sent: counters.sent.load(ordering: .relaxed),
            acknowledged: acknowledged,
            buffered: buffered,
            errors: counters.errors.load(ordering: .relaxed) + refused,
            faults: counters.faultCounts(),
            commands: counters.commands.load(ordering: .relaxed),
            desiredChanges: counters.desiredChanges.load(ordering: .relaxed)
        )
    }

    private func summary(elapsed: Duration) async -> FleetSummary {
        let everyone = members.withLock { $0 }
        var summary = FleetSummary(
            devices: plan.devices, connectedAtEnd: 0, seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18,
            sent: counters.sent.load(ordering: .relaxed), acknowledged: 0, buffered: 0, dropped: 0, refused: 0,
            errors: counters.errors.load(ordering: .relaxed), commands: counters.commands.load(ordering: .relaxed),
            desiredChanges: counters.desiredChanges.load(ordering: .relaxed), faults: counters.faultCounts(), acknowledgedPerSecond: 0
        )
        for member in everyone {
            let stats = await member.device.stats
            summary.acknowledged += stats.acknowledged
            summary.buffered += stats.buffered
            summary.dropped += stats.dropped
            summary.refused += stats.refused
            if member.wasConnectedAtEnd.load(ordering: .relaxed) { summary.connectedAtEnd += 1 }
        }
        summary.acknowledgedPerSecond = summary.seconds > 0 ? Double(summary.acknowledged) / summary.seconds : 0
        summary.firstError = counters.firstError.withLock { $0 }
        return summary
    }

    /// Counters shared by every virtual device.
    final class Counters: Sendable {
        let sent = Atomic<Int>(0)
        let errors = Atomic<Int>(0)
        let commands = Atomic<Int>(0)
        let desiredChanges = Atomic<Int>(0)
        let dropouts = Atomic<Int>(0)
        let spikes = Atomic<Int>(0)
        let stuckSamples = Atomic<Int>(0)
        let lostMessages = Atomic<Int>(0)
        let delayedMessages = Atomic<Int>(0)
        let disconnects = Atomic<Int>(0)
        let reboots = Atomic<Int>(0)
        let firstError = Mutex<String?>(nil)

        func record(error message: String) {
            errors.add(1, ordering: .relaxed)
            firstError.withLock { if $0 == nil { $0 = message } }
        }

        func faultCounts() -> FaultCounts {
            FaultCounts(
                dropouts: dropouts.load(ordering: .relaxed),
                spikes: spikes.load(ordering: .relaxed),
                stuckSamples: stuckSamples.load(ordering: .relaxed),
                lostMessages: lostMessages.load(ordering: .relaxed),
                delayedMessages: delayedMessages.load(ordering: .relaxed),
                disconnects: disconnects.load(ordering: .relaxed),
                reboots: reboots.load(ordering: .relaxed)
            )
        }
    }
}

/// A device's model, shared by its sampling loop and its twin and command handlers.
actor ModelBox {
    private var model: any DeviceModel

    init(_ model: any DeviceModel) {
        self.model = model
    }

    func sample(at time: Int64) -> [String: JSONValue] { model.sample(at: time) }
    var reported: [String: JSONValue] { model.reported }
    func applyDesired(_ desired: [String: JSONValue]) -> [String: JSONValue] {
        model.applyDesired(desired)
        return model.reported
    }
    func handle(method: String, params: JSONValue) throws -> JSONValue {
        try model.handle(method: method, params: params)
    }
}

/// One virtual device: its model, its faults and its SDK connection.
final class VirtualDevice: Sendable {
    let index: Int
    let device: MeridianDevice
    let model: ModelBox
    let interval: Duration
    let phase: Duration
    let logger: Logger
    let wasConnectedAtEnd = Atomic<Bool>(false)
    private let injector: Mutex<FaultInjector>
    private let random: Mutex<SimulationRandom>

    let extraKeys: Int

    init(
        extraKeys: Int, index: Int, device: MeridianDevice, model: ModelBox, injector: FaultInjector, interval: Duration, phase: Duration,
        seed: UInt64, logger: Logger
    ) {
        self.extraKeys = extraKeys
        self.index = index
        self.device = device
        self.model = model
        self.injector = Mutex(injector)
        self.interval = interval
        self.phase = phase
        self.random = Mutex(SimulationRandom(seed: seed, deviceIndex: index, stream: 7))
        self.logger = logger
    }

    /// Connects, then samples every `interval` until `end` (or cancellation).
    func run(until end: ContinuousClock.Instant?, counters: FleetSimulator.Counters) async {
        let model = self.model
        let device = self.device
        await device.onDesiredChange { desired, _ in
            let reported = await model.applyDesired(desired)
            counters.desiredChanges.add(1, ordering: .relaxed)
            _ = try? await device.report(reported)
        }
        await device.onOtherCommands { method, params in
            let answer = try await model.handle(method: method, params: params)
            counters.commands.add(1, ordering: .relaxed)
            return answer
        }
        guard await connect(counters: counters) else { return }
        // The settings in effect, reported without holding up the first sample.
        Task { _ = try? await device.report(await model.reported) }
        let clock = ContinuousClock()
        var next = clock.now + phase
        while !Task.isCancelled {
            if let end, next >= end { break }
            try? await Task.sleep(until: next)
            if Task.isCancelled { break }
            next += interval
            let network = injector.withLock { $0.tick() }
            if network.shouldReboot || network.shouldDisconnect {
                if network.shouldReboot {
                    counters.reboots.add(1, ordering: .relaxed)
                } else {
                    counters.disconnects.add(1, ordering: .relaxed)
                }
                await device.dropConnection()
                let pause = random.withLock { $0.uniform(in: network.shouldReboot ? 2...5 : 0.5...2) }
                try? await Task.sleep(for: .seconds(pause))
                if Task.isCancelled { break }
                _ = await connect(counters: counters)
                continue
            }
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            var values = await model.sample(at: now)
            if extraKeys > 0 {
                random.withLock { random in
                    for key in 0..<extraKeys { values["x\(key)"] = .number((random.uniform() * 1000).rounded() / 10) }
                }
            }
            guard let sample = injector.withLock({ $0.apply(values, at: now) }) else {
                counters.dropouts.add(1, ordering: .relaxed)
                continue
            }
            if sample.spikedKey != nil { counters.spikes.add(1, ordering: .relaxed) }
            if sample.stuckKey != nil { counters.stuckSamples.add(1, ordering: .relaxed) }
            if network.shouldDrop {
                counters.lostMessages.add(1, ordering: .relaxed)
                continue
            }
            if network.delayMilliseconds > 0 {
                counters.delayedMessages.add(1, ordering: .relaxed)
                try? await Task.sleep(for: .milliseconds(network.delayMilliseconds))
            }
            do {
                try await device.send(sample.values, at: Date(timeIntervalSince1970: Double(sample.time) / 1000))
                counters.sent.add(1, ordering: .relaxed)
            } catch {
                counters.errors.add(1, ordering: .relaxed)
            }
        }
    }

    /// Connects (the SDK retries with backoff); false when refused for good.
    private func connect(counters: FleetSimulator.Counters) async -> Bool {
        do {
            try await device.connect()
            return true
        } catch is CancellationError {
            return false
        } catch {
            counters.record(error: "device \(index): \(error)")
            logger.error("a simulated device could not connect", metadata: ["device.index": "\(index)", "error": "\(error)"])
            return false
        }
    }

    /// Gives the buffer up to `drainTimeout` to drain, then disconnects.
    func finish(drainTimeout: Duration) async {
        wasConnectedAtEnd.store(await device.connected, ordering: .relaxed)
        if drainTimeout > .zero { _ = await device.flush(timeout: drainTimeout) }
        await device.disconnect()
    }
}

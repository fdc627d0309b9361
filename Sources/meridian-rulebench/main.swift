// meridian-rulebench: the rule engine's benchmark (issue 8), driven by scripts/bench-rules. Not
// installed and not part of the product. In one process, alternating in the same run:
//
//   baseline  TelemetryPipeline over a TimeSeriesEngine (fresh directory), fed as fast as it takes
//             messages by many submitters with a bounded window of outstanding submits (as a
//             loaded broker would); accepted (durable) samples/s.
//   rules     the same, with 1,000 rules over the registry's 10,000 devices and the RuleEngine
//             following the pipeline; meanwhile probes inject threshold-crossing samples on
//             dedicated devices and time them until the AlarmService observer sees `raised`.
//
// The registry (SQLite in --dir) is real: the engine reads devices and profiles through it.
// Every phase prints one JSON object on standard output; progress goes to standard error.
//
//   meridian-rulebench --dir D [--devices 10000] [--rules 1000] [--probe-devices 200]
//                      [--warmup 3] [--duration 15] [--repeat 2] [--submitters 64] [--window 16]
//                      [--probe-concurrency 16] [--phases baseline,rules]
import Dispatch
import Foundation
import Histogram
import Logging
import MeridianCore
import MeridianServer
import MeridianStorage
import Metrics
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

// MARK: - options, clocks, output

struct Options: Sendable {
    var directory = ""
    var devices = 10_000
    var rules = 1_000
    var probeDevices = 200
    var warmup = 3.0
    var duration = 15.0
    var repeats = 2
    var submitters = 64
    var window = 16
    var probeConcurrency = 16
    var phases = ["baseline", "rules"]
    /// Total samples/s the submitters offer (0: as fast as the pipeline takes them).
    var rate = 0.0
}

func fail(_ text: String) -> Never {
    FileHandle.standardError.write(Data("meridian-rulebench: \(text)\n".utf8))
    exit(2)
}

func parseOptions() -> Options {
    var options = Options()
    let arguments = Array(CommandLine.arguments.dropFirst())
    var position = 0
    func number(_ text: String, _ name: String) -> Double {
        guard let value = Double(text), value >= 0 else { fail("--\(name) needs a number") }
        return value
    }
    while position < arguments.count {
        let name = arguments[position]
        guard name.hasPrefix("--"), position + 1 < arguments.count else { fail("unexpected argument \(name)") }
        let value = arguments[position + 1]
        switch name.dropFirst(2) {
        case "dir": options.directory = value
        case "devices": options.devices = Int(number(value, "devices"))
        case "rules": options.rules = Int(number(value, "rules"))
        case "probe-devices": options.probeDevices = Int(number(value, "probe-devices"))
        case "warmup": options.warmup = number(value, "warmup")
        case "duration": options.duration = number(value, "duration")
        case "repeat": options.repeats = Int(number(value, "repeat"))
        case "submitters": options.submitters = Int(number(value, "submitters"))
        case "window": options.window = Int(number(value, "window"))
        case "probe-concurrency": options.probeConcurrency = Int(number(value, "probe-concurrency"))
        case "phases": options.phases = value.split(separator: ",").map(String.init)
        case "rate": options.rate = number(value, "rate")
        default: fail("unknown option \(name)")
        }
        position += 2
    }
    guard !options.directory.isEmpty else { fail("usage: meridian-rulebench --dir D [options]; see the top of main.swift") }
    guard options.probeDevices < options.devices, options.submitters > 0, options.window > 0, options.probeConcurrency > 0 else {
        fail("needs fewer probe devices than devices, and at least one submitter, window slot and probe")
    }
    return options
}

func log(_ text: String) { FileHandle.standardError.write(Data((text + "\n").utf8)) }

/// Monotonic nanoseconds.
@inline(__always)
func monotonic() -> UInt64 {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
}

/// Wall-clock milliseconds since 1970 (sample timestamps).
@inline(__always)
func wallMilliseconds() -> Int64 {
    var spec = timespec()
    clock_gettime(CLOCK_REALTIME, &spec)
    return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000
}

func rounded(_ value: Double, _ places: Double = 1) -> Double {
    let scale = pow(10, places)
    return (value * scale).rounded() / scale
}

func emit(_ object: [String: Any]) {
    guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { fail("could not encode a result") }
    FileHandle.standardOutput.write(data + Data("\n".utf8))
}

/// The process's thread ids.
func threadIDs() -> Set<String> {
    Set((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? [])
}

/// CPU seconds per kind of thread (Linux `/proc/self/task/*/stat`), to say where the time goes.
/// `writers` are the pipeline's writer threads (Foundation threads inherit their creator's name
/// on Linux, so they are told apart by id).
func threadCPU(writers: Set<String>) -> [String: Double] {
    var result: [String: Double] = [:]
    let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
    guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task") else { return [:] }
    for task in tasks {
        guard let stat = try? String(contentsOfFile: "/proc/self/task/\(task)/stat", encoding: .utf8),
            let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")")
        else { continue }
        var name = String(stat[stat.index(after: open)..<close])
        if writers.contains(task) {
            name = "pipeline writer"
        } else if name.hasPrefix("NIO-ELT") {
            name = "NIO event loops (submitters)"
        } else if name.hasSuffix("default-qos") {
            name = "Swift concurrency pool (rule engine, probes, alarm writer)"
        }
        let fields = stat[stat.index(close, offsetBy: 2)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { continue }
        result[name, default: 0] += (user + system) / ticks
    }
    return result
}

func processCPU() -> Double {
    var spec = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &spec)
    return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
}

/// SplitMix64: a fast deterministic generator for the load's values.
struct SplitMix {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 52) - 1 }
    mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
}

// MARK: - metrics: the engine's and the pipeline's counters, read back

final class BenchCounter: CounterHandler, Sendable {
    let value = Atomic<Int64>(0)
    func increment(by amount: Int64) { value.add(amount, ordering: .relaxed) }
    func reset() { value.store(0, ordering: .relaxed) }
}

final class BenchMetrics: MetricsFactory, Sendable {
    private let counters = Mutex<[String: BenchCounter]>([:])

    func value(_ label: String) -> Int64 { counters.withLock { $0[label] }?.value.load(ordering: .relaxed) ?? 0 }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        counters.withLock { counters in
            if let existing = counters[label] { return existing }
            let counter = BenchCounter()
            counters[label] = counter
            return counter
        }
    }
    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler { NOOPMetricsHandler.instance }
    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler { NOOPMetricsHandler.instance }
    func destroyCounter(_ handler: any CounterHandler) {}
    func destroyRecorder(_ handler: any RecorderHandler) {}
    func destroyTimer(_ handler: any TimerHandler) {}
}

/// The counters every phase reads (bootstrapped once, before any pipeline or engine exists).
enum Bench {
    static let metrics = BenchMetrics()
}

enum Label {
    static let stored = "meridian_telemetry_samples_total"
    static let evaluated = "meridian_rules_evaluated_samples_total"
    static let skipped = "meridian_rules_skipped_samples_total"
    static let firings = "meridian_rule_firings_total"
}

// MARK: - the fleet: a real registry on SQLite

struct Fleet: Sendable {
    var registry: Registry
    var caller: Caller
    var tenantID: String
    /// Devices the load generator feeds.
    var loadDevices: [String]
    /// Devices only the latency probes feed.
    var probeDevices: [String]
    var devices: [Device]
    var profileNames: [String: String]
    static let profiles = 20
    static let sites = 100
}

func buildFleet(_ options: Options) async throws -> Fleet {
    let path = (options.directory as NSString).appendingPathComponent("meridian.sqlite")
    let registry = Registry(store: try SQLiteRegistryStore(path: path))
    guard let boot = try await registry.bootstrapIfEmpty(apiKey: "rulebench-key-0123456789abcdef"), let keyID = boot.apiKeyID else {
        fail("the registry in --dir is not empty: use a fresh directory")
    }
    let caller = Caller(tenantID: boot.tenant.id, role: .owner, actor: AuditActor(kind: .apiKey, id: keyID))
    var profileNames: [String: String] = [:]
    for index in 0..<Fleet.profiles {
        let profile = try await registry.createProfile(ProfileDraft(name: "model-\(index)"), by: caller).profile
        profileNames[profile.id] = profile.name
    }
    let probeCount = options.probeDevices
    var line = 0
    var created = 0
    while created < options.devices {
        let rows = (created..<min(options.devices, created + 5_000)).map { index -> DeviceImport.Row in
            line += 1
            // The last `probeCount` devices are the probes' (ids "prb-..."); all share the mix of
            // profiles and labels, so the probes' devices carry the same rules as any other.
            let id = index >= options.devices - probeCount ? String(format: "prb-%05d", index) : String(format: "dev-%05d", index)
            return DeviceImport.Row(
                line: line,
                draft: DeviceDraft(
                    id: id, name: "device \(index)", profile: "model-\(index % Fleet.profiles)",
                    labels: ["site": "plant-\(index % Fleet.sites)", "tier": ["a", "b", "c", "d"][(index / Fleet.sites) % 4]]
                )
            )
        }
        _ = try await registry.importDevices(rows, by: caller)
        created += rows.count
    }
    var devices: [Device] = []
    var after: String?
    repeat {
        let page = try await registry.devices(DeviceQuery(tenantID: caller.tenantID, limit: 1_000, after: after), by: caller)
        devices += page.items
        after = page.nextCursor
    } while after != nil
    let ids = devices.map(\.id).sorted()
    return Fleet(
        registry: registry, caller: caller, tenantID: caller.tenantID, loadDevices: ids.filter { $0.hasPrefix("dev-") },
        probeDevices: ids.filter { $0.hasPrefix("prb-") }, devices: devices, profileNames: profileNames
    )
}

// MARK: - the rules: a mix over the fleet

struct RuleMix {
    var texts: [(category: String, json: String)] = []

    func counts() -> [String: Int] {
        texts.reduce(into: [:]) { $0[$1.category, default: 0] += 1 }
    }
}

func threshold(_ key: String, _ op: String, _ value: Double, for duration: String? = nil, clear: (String, Double, String?)? = nil) -> String {
    var parts = [#""key": "\#(key)""#, #""op": "\#(op)""#, #""value": \#(value)"#]
    if let duration { parts.append(#""for": "\#(duration)""#) }
    if let clear {
        var inner = [#""op": "\#(clear.0)""#, #""value": \#(clear.1)"#]
        if let clearFor = clear.2 { inner.append(#""for": "\#(clearFor)""#) }
        parts.append(#""clear": {\#(inner.joined(separator: ", "))}"#)
    }
    return #"{"threshold": {\#(parts.joined(separator: ", "))}}"#
}

func expression(_ text: String, for duration: String? = nil, clear: String? = nil) -> String {
    var parts = [#""expr": "\#(text.replacingOccurrences(of: "\"", with: "\\\""))""#]
    if let duration { parts.append(#""for": "\#(duration)""#) }
    if let clear { parts.append(#""clear": "\#(clear)""#) }
    return #"{"expression": {\#(parts.joined(separator: ", "))}}"#
}

func noData(key: String?, _ duration: String) -> String {
    key.map { #"{"noData": {"key": "\#($0)", "for": "\#(duration)"}}"# } ?? #"{"noData": {"for": "\#(duration)"}}"#
}

func rule(_ name: String, scope: String, condition: String, severity: String = "major") -> String {
    #"{"name": "\#(name)", "scope": \#(scope), "condition": \#(condition), "alarm": {"severity": "\#(severity)", "message": "{{rule.name}} on {{device.id}}"}}"#
}

/// The probe rule of a probe device: raises at once on `temp > 1000`, clears below 900.
func probeRule(_ device: String) -> String {
    rule("probe \(device)", scope: #"{"device": "\#(device)"}"#, condition: threshold("temp", ">", 1000, clear: ("<", 900, nil)), severity: "critical")
}

/// 1,000 rules (scaled by `count`): the probes' device rules, a few tenant-wide rules (two of them
/// no-data), five per profile (20 profiles; four of them no-data), four per site (label queries),
/// and single-device rules for the rest. Thresholds have hysteresis and durations; expressions use
/// avg/delta/max_over/rate windows.
func ruleMix(_ fleet: Fleet, count: Int) -> RuleMix {
    var mix = RuleMix()
    guard count > 0 else { return mix }
    for device in fleet.probeDevices where mix.texts.count < count { mix.texts.append(("device (probe)", probeRule(device))) }
    let tenant = #"{"tenant": true}"#
    let tenantRules = [
        rule("offline", scope: tenant, condition: noData(key: nil, "10m"), severity: "warning"),
        rule("humidity silent", scope: tenant, condition: noData(key: "humidity", "15m"), severity: "minor"),
        rule("vibration high", scope: tenant, condition: threshold("vibration", ">", 4, for: "30s", clear: ("<", 3, "10s"))),
        rule("vibration extreme", scope: tenant, condition: threshold("vibration", ">", 6, for: "5s", clear: ("<", 5, "5s")), severity: "critical"),
        rule("temperature jump", scope: tenant, condition: expression("delta(temp, 1m) > 8")),
        rule("hot and humid", scope: tenant, condition: expression("avg(humidity, 5m) > 85 && temp > 30", for: "1m")),
        rule("condensation", scope: tenant, condition: threshold("humidity", ">", 95, for: "1m", clear: ("<", 90, "1m"))),
        rule("frost", scope: tenant, condition: threshold("temp", "<", -10, for: "30s", clear: (">", -5, "30s"))),
    ]
    for text in tenantRules where mix.texts.count < count { mix.texts.append(("tenant", text)) }
    for profile in 0..<Fleet.profiles {
        let scope = #"{"profile": "model-\#(profile)"}"#
        let fifth =
            profile < 4
            ? ("profile no-data", rule("model-\(profile) temp silent", scope: scope, condition: noData(key: "temp", "5m"), severity: "warning"))
            : ("profile", rule("model-\(profile) shaking", scope: scope, condition: threshold("vibration", ">", 2.5, for: "5s", clear: ("<", 2, nil))))
        let texts = [
            ("profile", rule("model-\(profile) overheat", scope: scope, condition: threshold("temp", ">", 30 + Double(profile % 5), for: "20s", clear: ("<", 28, "10s")))),
            ("profile", rule("model-\(profile) warm average", scope: scope, condition: expression("avg(temp, 1m) > 29", clear: "avg(temp, 1m) < 27"))),
            ("profile", rule("model-\(profile) bearing", scope: scope, condition: expression("delta(vibration, 30s) > 1.5 && humidity > 60", for: "10s"))),
            ("profile", rule("model-\(profile) damp", scope: scope, condition: threshold("humidity", ">", 80, for: "10s", clear: ("<", 75, nil)))),
            fifth,
        ]
        for text in texts where mix.texts.count < count { mix.texts.append(text) }
    }
    for site in 0..<Fleet.sites {
        let siteScope = #"{"query": "labels.site = \"plant-\#(site)\""}"#
        let tierScope = #"{"query": "labels.site = \"plant-\#(site)\" AND labels.tier = \"b\""}"#
        let texts = [
            ("label query", rule("plant-\(site) hot", scope: siteScope, condition: threshold("temp", ">", 27, for: "10s", clear: ("<", 25.5, "5s")))),
            ("label query", rule("plant-\(site) drift", scope: siteScope, condition: expression("avg(temp, 30s) - avg(temp, 5m) > 2", for: "5s"))),
            ("label query", rule("plant-\(site) tier b", scope: tierScope, condition: expression("max_over(vibration, 1m) > 2 && avg(humidity, 1m) > 55"))),
            ("label query", rule("plant-\(site) tier b dry", scope: tierScope, condition: threshold("humidity", "<", 30, for: "30s", clear: (">", 35, "30s")))),
        ]
        for text in texts where mix.texts.count < count { mix.texts.append(text) }
    }
    var random = SplitMix(state: 42)
    var index = 0
    while mix.texts.count < count {
        let device = fleet.loadDevices[random.below(fleet.loadDevices.count)]
        let scope = #"{"device": "\#(device)"}"#
        let condition =
            switch index % 3 {
            case 0: threshold("temp", ">", 26, for: "5s", clear: ("<", 24, "5s"))
            case 1: expression("avg(temp, 2m) > 25 || rate(temp, 1m) > 0.2")
            default: threshold("humidity", ">", 70, for: "10s", clear: ("<", 65, "10s"))
            }
        mix.texts.append(("device", rule("device \(device) #\(index)", scope: scope, condition: condition)))
        index += 1
    }
    return mix
}

// MARK: - the load: submitters with a window of outstanding submits

final class LoadCounters: Sendable {
    let acceptedSamples = Atomic<Int>(0)
    let failedMessages = Atomic<Int>(0)
    let stopping = Atomic<Bool>(false)
}

/// One submitter: keeps `window` submits outstanding on its event loop (a loaded connection
/// with a receive maximum), each message one device's temp/humidity/vibration at the current
/// time, values on a mean-reverting random walk per device.
///
/// Every mutable field is touched only on `loop`.
final class Submitter: @unchecked Sendable {
    let loop: any EventLoop
    let pipeline: TelemetryPipeline
    let tenantID: String
    let devices: [String]
    let counters: LoadCounters
    var temp: [Double]
    var humidity: [Double]
    var vibration: [Double]
    var next = 0
    var random: SplitMix
    var inflight = 0
    let finished: EventLoopPromise<Void>
    /// Messages per 10 ms tick when paced (0: not paced), and the messages allowed now.
    let perTick: Double
    var credits = 0.0
    var window = 0

    init(
        loop: any EventLoop, pipeline: TelemetryPipeline, tenantID: String, devices: [String], counters: LoadCounters, seed: UInt64,
        messagesPerSecond: Double
    ) {
        perTick = messagesPerSecond / 100
        self.loop = loop
        self.pipeline = pipeline
        self.tenantID = tenantID
        self.devices = devices
        self.counters = counters
        random = SplitMix(state: seed)
        temp = devices.map { _ in 22 }
        humidity = devices.map { _ in 50 }
        vibration = devices.map { _ in 0.5 }
        finished = loop.makePromise()
        for index in devices.indices {
            temp[index] += 3 * random.unit()
            humidity[index] += 10 * random.unit()
        }
    }

    func start(window: Int) {
        loop.execute {
            self.window = window
            guard self.perTick > 0 else {
                self.inflight = window
                for _ in 0..<window { self.fire() }
                return
            }
            // Paced: credits every 10 ms (at most a tick's worth banked), at most `window` out.
            self.inflight = 1
            _ = self.loop.scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(10)) { task in
                if self.counters.stopping.load(ordering: .relaxed) {
                    task.cancel()
                    self.settle()
                    return
                }
                self.credits = min(self.credits + self.perTick, 2 * max(1, self.perTick))
                self.pump()
            }
        }
    }

    /// Paced: sends while there are credits and room in the window.
    private func pump() {
        while credits >= 1, inflight < window + 1, !counters.stopping.load(ordering: .relaxed) {
            credits -= 1
            inflight += 1
            send()
        }
    }

    /// One reference is the timer's; the last completion after the stop finishes.
    private func settle() {
        inflight -= 1
        if inflight == 0 { finished.succeed() }
    }

    private func walk(_ value: Double, mean: Double, spread: Double) -> Double {
        let moved = value + (mean - value) * 0.02 + spread * 0.25 * random.unit()
        return (moved * 100).rounded() / 100
    }

    private func fire() {
        if counters.stopping.load(ordering: .relaxed) {
            inflight -= 1
            if inflight == 0 { finished.succeed() }
            return
        }
        send()
    }

    private func send() {
        let index = next
        next = next + 1 == devices.count ? 0 : next + 1
        temp[index] = walk(temp[index], mean: 22, spread: 3)
        humidity[index] = walk(humidity[index], mean: 50, spread: 10)
        vibration[index] = max(0, walk(vibration[index], mean: 0.5, spread: 0.4))
        let time = wallMilliseconds()
        let message = DeviceMessage(
            tenantID: tenantID, deviceID: devices[index], receivedAt: time,
            kind: .telemetry([
                TelemetrySample(key: "temp", timestamp: time, value: .number(temp[index])),
                TelemetrySample(key: "humidity", timestamp: time, value: .number(humidity[index])),
                TelemetrySample(key: "vibration", timestamp: time, value: .number(vibration[index])),
            ])
        )
        pipeline.submit(message, on: loop).whenComplete { result in
            switch result {
            case .success: self.counters.acceptedSamples.add(3, ordering: .relaxed)
            case .failure: self.counters.failedMessages.add(1, ordering: .relaxed)
            }
            if self.perTick > 0 {
                self.settle()
                self.pump()
            } else {
                self.fire()
            }
        }
    }
}

// MARK: - the probes: threshold crossings timed until the alarm is raised

/// What the probes wait for, by probe device: set up before the submit, completed by the
/// pipeline's listener (durable) and the alarm observer (raised / cleared).
final class ProbeBook: Sendable {
    struct Entry {
        var expecting: AlarmChange.Kind
        var submittedAt: UInt64
        var durableAt: UInt64?
        var changedAt: UInt64?
        var waiter: CheckedContinuation<Void, Never>?
    }

    let probeRules: [String: String]
    private let entries = Mutex<[String: Entry]>([:])
    let lost = Atomic<Int>(0)
    let alarmChanges = Mutex<[String: Int]>([:])

    init(probeRules: [String: String]) { self.probeRules = probeRules }

    func expect(_ device: String, _ kind: AlarmChange.Kind, submittedAt: UInt64) {
        entries.withLock { $0[device] = Entry(expecting: kind, submittedAt: submittedAt) }
    }

    /// The pipeline's listener (writer thread): probe messages are durable.
    func durable(_ messages: [DeviceMessage]) {
        let time = monotonic()
        for message in messages where message.deviceID.utf8.first == UInt8(ascii: "p") {
            entries.withLock { entries in
                if entries[message.deviceID]?.durableAt == nil { entries[message.deviceID]?.durableAt = time }
            }
        }
    }

    /// The alarm observer (the engine's task).
    func observe(_ change: AlarmChange) {
        let time = monotonic()
        alarmChanges.withLock { $0[change.kind.rawValue, default: 0] += 1 }
        let device = change.alarm.deviceID
        guard device.utf8.first == UInt8(ascii: "p"), probeRules[device] == change.alarm.ruleID else { return }
        let waiter = entries.withLock { entries -> CheckedContinuation<Void, Never>? in
            guard var entry = entries[device], entry.expecting == change.kind, entry.changedAt == nil else { return nil }
            entry.changedAt = time
            defer { entry.waiter = nil; entries[device] = entry }
            return entry.waiter
        }
        waiter?.resume()
    }

    /// Waits until the expected change is seen (or given up by ``expire(olderThan:)``).
    func wait(_ device: String) async -> Entry? {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = entries.withLock { entries -> Bool in
                guard var entry = entries[device], entry.changedAt == nil else { return true }
                entry.waiter = continuation
                entries[device] = entry
                return false
            }
            if ready { continuation.resume() }
        }
        return entries.withLock { $0.removeValue(forKey: device) }
    }

    /// Gives up on changes not seen within `nanoseconds` (a skipped batch would never raise).
    func expire(olderThan nanoseconds: UInt64) {
        let now = monotonic()
        let waiters = entries.withLock { entries -> [CheckedContinuation<Void, Never>] in
            var waiters: [CheckedContinuation<Void, Never>] = []
            for (device, entry) in entries where entry.changedAt == nil && now - entry.submittedAt > nanoseconds {
                if let waiter = entry.waiter { waiters.append(waiter) }
                entries[device]?.waiter = nil
                entries[device]?.changedAt = 0
            }
            return waiters
        }
        lost.add(waiters.count, ordering: .relaxed)
        for waiter in waiters { waiter.resume() }
    }
}

struct Latencies: Sendable {
    /// Microseconds.
    var submitToAlarm = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    var durableToAlarm = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    var submitToDurable = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    var submitToCleared = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)

    mutating func add(_ other: Latencies) {
        submitToAlarm.add(other.submitToAlarm)
        durableToAlarm.add(other.durableToAlarm)
        submitToDurable.add(other.submitToDurable)
        submitToCleared.add(other.submitToCleared)
    }
}

func summary(_ histogram: Histogram<UInt64>) -> [String: Any] {
    func ms(_ value: UInt64) -> Double { rounded(Double(value) / 1000, 2) }
    return [
        "count": histogram.totalCount, "p50_ms": ms(histogram.valueAtPercentile(50)), "p90_ms": ms(histogram.valueAtPercentile(90)),
        "p99_ms": ms(histogram.valueAtPercentile(99)), "p999_ms": ms(histogram.valueAtPercentile(99.9)), "max_ms": ms(histogram.max),
    ]
}

/// One probe loop: on each of its devices in turn, a sample with temp 1500 (raise), timed until
/// the alarm is raised, then a normal sample (clear), waited for until the alarm is cleared.
func probeLoop(
    devices: [String], tenantID: String, pipeline: TelemetryPipeline, book: ProbeBook, stop: LoadCounters, loop: any EventLoop
) async -> Latencies {
    var latencies = Latencies()
    var turn = 0
    func message(_ device: String, temp: Double) -> DeviceMessage {
        let time = wallMilliseconds()
        return DeviceMessage(
            tenantID: tenantID, deviceID: device, receivedAt: time,
            kind: .telemetry([
                TelemetrySample(key: "temp", timestamp: time, value: .number(temp)),
                TelemetrySample(key: "humidity", timestamp: time, value: .number(50)),
                TelemetrySample(key: "vibration", timestamp: time, value: .number(0.5)),
            ])
        )
    }
    while !stop.stopping.load(ordering: .relaxed) {
        let device = devices[turn % devices.count]
        turn += 1
        let submitted = monotonic()
        book.expect(device, .raised, submittedAt: submitted)
        guard (try? await pipeline.submit(message(device, temp: 1500), on: loop).get()) != nil else { break }
        if let entry = await book.wait(device), let changed = entry.changedAt, changed > 0 {
            _ = latencies.submitToAlarm.record((changed - entry.submittedAt) / 1000)
            if let durable = entry.durableAt {
                _ = latencies.submitToDurable.record((durable - entry.submittedAt) / 1000)
                _ = latencies.durableToAlarm.record(changed > durable ? (changed - durable) / 1000 : 0)
            }
        }
        let clearing = monotonic()
        book.expect(device, .cleared, submittedAt: clearing)
        guard (try? await pipeline.submit(message(device, temp: 22), on: loop).get()) != nil else { break }
        if let entry = await book.wait(device), let changed = entry.changedAt, changed > 0 {
            _ = latencies.submitToCleared.record((changed - entry.submittedAt) / 1000)
        }
    }
    return latencies
}

// MARK: - one phase

func runPhase(_ kind: String, round: Int, fleet: Fleet, mix: RuleMix, options: Options, group: MultiThreadedEventLoopGroup) async throws
    -> (result: [String: Any], latencies: Latencies?)
{
    let withRules = kind == "rules"
    var quiet = Logger(label: "rulebench")
    quiet.logLevel = .error
    let directory = (options.directory as NSString).appendingPathComponent("ts-\(kind)-\(round)")
    try? FileManager.default.removeItem(atPath: directory)
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let series = try TimeSeriesEngine(directory: directory, logger: quiet)
    let threadsBefore = threadIDs()
    let pipeline = TelemetryPipeline(engine: series, logger: quiet)
    let writers = threadIDs().subtracting(threadsBefore)
    var result: [String: Any] = ["phase": kind, "round": round]

    var engine: RuleEngine?
    var engineTask: Task<Void, Never>?
    var book: ProbeBook?
    if withRules {
        let alarms = try await AlarmService(store: InMemoryAlarmStore())
        let rules = RuleService(store: InMemoryRuleStore(), maximumRules: 100_000)
        var probeRules: [String: String] = [:]
        for item in mix.texts {
            let definition = try RuleService.definition(try JSONDecoder().decode(JSONValue.self, from: Data(item.json.utf8)))
            let created = try await rules.create(definition, by: fleet.caller)
            if case .device(let device) = definition.scope, device.hasPrefix("prb-") { probeRules[device] = created.id }
        }
        let probes = ProbeBook(probeRules: probeRules)
        alarms.observe { change in probes.observe(change) }
        _ = pipeline.addListener { messages in probes.durable(messages) }
        book = probes
        let ruleEngine = RuleEngine(rules: rules, alarms: alarms, firings: InMemoryRuleFiringStore(), registry: fleet.registry, logger: quiet)
        ruleEngine.follow(pipeline)
        let started = monotonic()
        engineTask = Task { try? await ruleEngine.run() }
        await ruleEngine.settle()
        result["engine_start_s"] = rounded(Double(monotonic() - started) / 1e9, 2)
        engine = ruleEngine
    }

    let counters = LoadCounters()
    let loops = group.makeIterator().map { $0 }
    var submitters: [Submitter] = []
    for index in 0..<options.submitters {
        let devices = stride(from: index, to: fleet.loadDevices.count, by: options.submitters).map { fleet.loadDevices[$0] }
        submitters.append(
            Submitter(
                loop: loops[index % loops.count], pipeline: pipeline, tenantID: fleet.tenantID, devices: devices, counters: counters,
                seed: UInt64(index + 1) * 7919 + UInt64(round), messagesPerSecond: options.rate / 3 / Double(options.submitters)
            )
        )
    }
    let stats = (stored: Bench.metrics.value(Label.stored), evaluated: Bench.metrics.value(Label.evaluated), skipped: Bench.metrics.value(Label.skipped))
    let firingsBefore = Bench.metrics.value(Label.firings)
    let loadStart = monotonic()
    for submitter in submitters { submitter.start(window: options.window) }

    // Engine lag (samples durable but not yet evaluated nor skipped) and the pipeline's queue,
    // sampled every 20 ms.
    let lagStopRef = LoadCounters()
    let sampler = Task { () -> (maxLag: Int64, maxQueue: Int, samples: [Int64]) in
        var maxLag: Int64 = 0
        var maxQueue = 0
        var lags: [Int64] = []
        while !lagStopRef.stopping.load(ordering: .relaxed) {
            try? await Task.sleep(for: .milliseconds(20))
            let lag =
                (Bench.metrics.value(Label.stored) - stats.stored) - (Bench.metrics.value(Label.evaluated) - stats.evaluated)
                - (Bench.metrics.value(Label.skipped) - stats.skipped)
            if withRules {
                maxLag = max(maxLag, lag)
                lags.append(lag)
            }
            maxQueue = max(maxQueue, pipeline.queuedSamples)
        }
        return (maxLag, maxQueue, lags)
    }

    try await Task.sleep(for: .milliseconds(Int(options.warmup * 1000)))
    // Measured window.
    let probeStop = LoadCounters()
    let watchdogStop = LoadCounters()
    var probeTasks: [Task<Latencies, Never>] = []
    var watchdog: Task<Void, Never>?
    if let book {
        let concurrency = min(options.probeConcurrency, fleet.probeDevices.count)
        for index in 0..<concurrency {
            let devices = stride(from: index, to: fleet.probeDevices.count, by: concurrency).map { fleet.probeDevices[$0] }
            let loop = loops[index % loops.count]
            probeTasks.append(
                Task { await probeLoop(devices: devices, tenantID: fleet.tenantID, pipeline: pipeline, book: book, stop: probeStop, loop: loop) }
            )
        }
        watchdog = Task {
            // Until every probe loop is done (a probe waiting after the stop is expired too).
            while !watchdogStop.stopping.load(ordering: .relaxed) {
                try? await Task.sleep(for: .milliseconds(200))
                book.expire(olderThan: 10_000_000_000)
            }
        }
    }
    let acceptedStart = counters.acceptedSamples.load(ordering: .relaxed)
    let cpuStart = processCPU()
    let threadsStart = threadCPU(writers: writers)
    let windowStart = monotonic()
    let evaluatedStart = Bench.metrics.value(Label.evaluated)
    try await Task.sleep(for: .milliseconds(Int(options.duration * 1000)))
    let windowEnd = monotonic()
    let acceptedEnd = counters.acceptedSamples.load(ordering: .relaxed)
    let evaluatedEnd = Bench.metrics.value(Label.evaluated)
    let cpuEnd = processCPU()
    let threadsEnd = threadCPU(writers: writers)
    let lagAtEnd =
        (Bench.metrics.value(Label.stored) - stats.stored) - (Bench.metrics.value(Label.evaluated) - stats.evaluated) - (Bench.metrics.value(Label.skipped) - stats.skipped)

    probeStop.stopping.store(true, ordering: .relaxed)
    var latencies = Latencies()
    for task in probeTasks { latencies.add(await task.value) }
    watchdogStop.stopping.store(true, ordering: .relaxed)
    await watchdog?.value
    counters.stopping.store(true, ordering: .relaxed)
    for submitter in submitters { try await submitter.finished.futureResult.get() }
    let loadEnd = monotonic()
    lagStopRef.stopping.store(true, ordering: .relaxed)
    let sampled = await sampler.value

    let seconds = Double(windowEnd - windowStart) / 1e9
    let accepted = acceptedEnd - acceptedStart
    result["samples_per_s"] = rounded(Double(accepted) / seconds, 0)
    result["measured_s"] = rounded(seconds, 2)
    result["accepted_samples"] = accepted
    result["failed_messages"] = counters.failedMessages.load(ordering: .relaxed)
    result["cpu_s"] = rounded(cpuEnd - cpuStart, 2)
    result["cpu_cores_busy"] = rounded((cpuEnd - cpuStart) / seconds, 2)
    result["cpu_us_per_sample"] = accepted > 0 ? rounded((cpuEnd - cpuStart) * 1e6 / Double(accepted), 3) : 0
    var threads: [String: Double] = [:]
    for (name, end) in threadsEnd {
        let used = end - (threadsStart[name] ?? 0)
        if used >= 0.01 { threads[name] = rounded(used / seconds, 3) }
    }
    result["thread_cores_busy"] = threads
    result["max_pipeline_queue_samples"] = sampled.maxQueue
    result["load_s"] = rounded(Double(loadEnd - loadStart) / 1e9, 2)

    if let engine, let book {
        let drainStart = monotonic()
        await engine.settle()
        result["engine_drain_after_load_s"] = rounded(Double(monotonic() - drainStart) / 1e9, 3)
        result["engine_evaluated_samples_per_s"] = rounded(Double(evaluatedEnd - evaluatedStart) / seconds, 0)
        result["engine_max_lag_samples"] = sampled.maxLag
        result["engine_lag_at_end_samples"] = lagAtEnd
        let sortedLags = sampled.samples.sorted()
        result["engine_median_lag_samples"] = sortedLags.isEmpty ? 0 : sortedLags[sortedLags.count / 2]
        result["skipped_samples"] = Bench.metrics.value(Label.skipped) - stats.skipped
        result["firings"] = Bench.metrics.value(Label.firings) - firingsBefore
        result["alarm_changes"] = book.alarmChanges.withLock { $0 }
        result["probes_lost"] = book.lost.load(ordering: .relaxed)
        result["latency_submit_to_alarm"] = summary(latencies.submitToAlarm)
        result["latency_durable_to_alarm"] = summary(latencies.durableToAlarm)
        result["latency_submit_to_durable"] = summary(latencies.submitToDurable)
        result["latency_submit_to_cleared"] = summary(latencies.submitToCleared)
    }
    engineTask?.cancel()
    await engineTask?.value
    await pipeline.stop()
    try? FileManager.default.removeItem(atPath: directory)
    return (result, withRules ? latencies : nil)
}

// MARK: - main

func run() async throws {
    let options = parseOptions()
    MetricsSystem.bootstrap(Bench.metrics)
    try FileManager.default.createDirectory(atPath: options.directory, withIntermediateDirectories: true)
    let setupStart = monotonic()
    let fleet = try await buildFleet(options)
    log("registry: \(fleet.devices.count) devices (\(fleet.probeDevices.count) for probes) in \(rounded(Double(monotonic() - setupStart) / 1e9, 1)) s")
    let mix = ruleMix(fleet, count: options.rules)
    // Rules in scope per device, from the definitions (what the engine evaluates per device).
    var perDevice: [Int] = []
    var byKey: [String: Int] = [:]
    let definitions = try mix.texts.map { try RuleService.definition(try JSONDecoder().decode(JSONValue.self, from: Data($0.json.utf8))) }
    for device in fleet.devices {
        let profileName = device.profileID.flatMap { fleet.profileNames[$0] }
        let inScope = definitions.filter { $0.scope.contains(device, profileName: profileName) }
        perDevice.append(inScope.count)
        for definition in inScope {
            for key in definition.condition.keys ?? ["(any key)"] { byKey[key, default: 0] += 1 }
        }
    }
    perDevice.sort()
    let mean = Double(perDevice.reduce(0, +)) / Double(max(1, perDevice.count))
    emit([
        "phase": "setup", "devices": fleet.devices.count, "probe_devices": fleet.probeDevices.count, "rules": mix.texts.count,
        "rules_by_category": mix.counts(), "rules_per_device_mean": rounded(mean, 2), "rules_per_device_min": perDevice.first ?? 0,
        "rules_per_device_max": perDevice.last ?? 0,
        "rule_evaluations_per_device_by_key": byKey.mapValues { rounded(Double($0) / Double(max(1, fleet.devices.count)), 2) },
        "setup_s": rounded(Double(monotonic() - setupStart) / 1e9, 1), "submitters": options.submitters, "window": options.window,
        "outstanding_messages": options.submitters * options.window, "probe_concurrency": options.probeConcurrency,
        "warmup_s": options.warmup, "duration_s": options.duration, "repeats": options.repeats,
        "samples_per_message": 3, "cpus_available": ProcessInfo.processInfo.activeProcessorCount, "offered_samples_per_s": options.rate,
    ])
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    var combined = Latencies()
    for round in 1...max(1, options.repeats) {
        for kind in options.phases {
            log("round \(round): \(kind)")
            let (result, latencies) = try await runPhase(kind, round: round, fleet: fleet, mix: mix, options: options, group: group)
            if let latencies { combined.add(latencies) }
            emit(result)
            var line = "  \(kind): \(result["samples_per_s"] ?? 0) samples/s"
            if let latency = result["latency_submit_to_alarm"] as? [String: Any] {
                line += "; submit→alarm p50 \(latency["p50_ms"] ?? 0) ms p99 \(latency["p99_ms"] ?? 0) ms (\(latency["count"] ?? 0))"
                line += "; skipped \(result["skipped_samples"] ?? 0); max lag \(result["engine_max_lag_samples"] ?? 0)"
            }
            log(line)
        }
    }
    if options.phases.contains("rules") {
        emit([
            "phase": "latency (all rules phases)", "latency_submit_to_alarm": summary(combined.submitToAlarm),
            "latency_durable_to_alarm": summary(combined.durableToAlarm), "latency_submit_to_durable": summary(combined.submitToDurable),
            "latency_submit_to_cleared": summary(combined.submitToCleared),
        ])
    }
    try await group.shutdownGracefully()
}

do {
    try await run()
} catch {
    log("meridian-rulebench: \(error)")
    exit(1)
}

import ArgumentParser
import Foundation
import Histogram
import MeridianSimulator
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// `meridian bench`: the platform end to end — a fresh `meridian serve` in a child process and a
/// simulated fleet against it; accepted samples per second, send-to-stored latency, CPU and memory.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmark the platform end to end with a simulated fleet.",
        discussion: """
            Starts `meridian serve` (this binary) on free loopback ports with an empty data directory \
            in a temporary directory, provisions --devices simulated devices against it, runs them at \
            --rate messages per second each for --warmup plus --duration, and reports for the measured \
            part: samples accepted per second, the latency from a device's send to the server's \
            acknowledgement (stored and queryable; p50, p99, p99.9, max, from an HDR histogram), and \
            the CPU time and resident memory of the server and of the simulator. The server and the \
            fleet share this machine: the figures are for both on it.
            """
    )

    @Option(help: "Simulated devices.") var devices = 1000
    @Option(help: "Messages per second per device.") var rate = 1.0
    @Option(help: "Measured time: 60, 60s, 5m.") var duration = "60s"
    @Option(help: "Time before measuring (connects and warm-up), not counted.") var warmup = "15s"
    @Option(name: .customLong("profile"), help: ArgumentHelp("Profile(s) to simulate (repeatable; default all).", valueName: "name"))
    var profiles: [String] = []
    @Option(name: .customLong("extra-keys"), help: "Extra numeric keys per sample (larger payloads).") var extraKeys = 0
    @Option(help: "The random seed.") var seed: UInt64 = 1
    @Option(name: .customLong("connect-rate"), help: "New connections per second while the fleet starts.") var connectRate = 500.0
    @Option(name: .customLong("server-arg"), help: ArgumentHelp("An extra argument for `meridian serve` (repeatable), e.g. --server-arg=--set --server-arg=telemetry.chunk_samples=512.", valueName: "arg"))
    var serverArguments: [String] = []
    @Flag(help: "Print the result as JSON.") var json = false

    struct Result: Codable {
        var devices: Int
        var ratePerDevice: Double
        var seconds: Double
        var offeredPerSecond: Double
        var acceptedPerSecond: Double
        var latencyMicroseconds: [String: UInt64]
        var latencySamples: UInt64
        var errors: Int
        var server: Usage
        var simulator: Usage
    }

    struct Usage: Codable {
        /// CPU seconds per wall second over the measured part (1.0 = one core).
        var cores: Double
        var rssMiB: Double
    }

    func run() async throws {
        let measured = try SimulateCommand.parseDuration(duration)
        let warm = try SimulateCommand.parseDuration(warmup)
        guard (1...20_000).contains(devices) else { throw ValidationError("--devices: from 1 to 20000") }
        guard rate > 0 else { throw ValidationError("--rate: must be positive") }
        let selected = try profiles.map { name in
            guard let profile = SimulatedProfile(name: name) else { throw ValidationError("--profile: unknown profile \(name)") }
            return profile
        }

        let server = try ServerProcess.start(extraArguments: serverArguments)
        defer { server.stop() }
        SimulateCommand.status("bench: server pid \(server.pid) on mqtt=\(server.mqttPort) http=\(server.httpPort)")
        let api = APIClient(server: URL(string: "http://127.0.0.1:\(server.httpPort)")!, apiKey: server.apiKey)
        let created = try await api.send(
            "POST", "/api/v1/profiles",
            json: ["name": "bench", "provisioningMode": "allow-create", "provisioningKey": "bench-key"]
        ) as? [String: Any]
        guard let secret = created?["provisioningSecret"] as? String else { throw ValidationError("the server made no provisioning secret") }

        let histogram = Mutex(Histogram<UInt64>(highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: .three))
        let recording = Atomic<Bool>(false)
        var plan = FleetPlan(host: "127.0.0.1", port: server.mqttPort, credentials: .provision(profileKey: "bench-key", profileSecret: secret, namePrefix: "bench"))
        plan.devices = devices
        plan.rate = rate
        plan.seed = seed
        plan.connectRate = connectRate
        plan.extraKeys = extraKeys
        if !selected.isEmpty { plan.profiles = selected }
        plan.duration = warm + measured
        plan.latencyRecorder = { latencies in
            guard recording.load(ordering: .relaxed) else { return }
            histogram.withLock { histogram in
                for latency in latencies {
                    let (seconds, attoseconds) = latency.components
                    histogram.record(UInt64(max(0, seconds * 1_000_000 + attoseconds / 1_000_000_000_000)))
                }
            }
        }
        let simulator: FleetSimulator
        do {
            simulator = try FleetSimulator(plan: plan)
        } catch {
            throw ValidationError("\(error)")
        }
        SimulateCommand.status("bench: \(devices) devices at \(rate) msg/s, warm-up \(warmup), measuring \(duration)")
        let start = ContinuousClock.now
        let run = Task { await simulator.run(progressInterval: .seconds(5), drainTimeout: .seconds(5)) { SimulateCommand.status(SimulateCommand.line($0)) } }

        try await Task.sleep(until: start + warm)
        recording.store(true, ordering: .relaxed)
        let before = await simulator.currentProgress(since: start)
        let serverBefore = ProcessUsage.of(pid: server.pid)
        let selfBefore = ProcessUsage.of(pid: getpid())
        let measureStart = ContinuousClock.now
        try await Task.sleep(until: start + warm + measured)
        let after = await simulator.currentProgress(since: start)
        let measureEnd = ContinuousClock.now
        recording.store(false, ordering: .relaxed)
        let serverAfter = ProcessUsage.of(pid: server.pid)
        let selfAfter = ProcessUsage.of(pid: getpid())
        let summary = await run.value

        let seconds = Self.seconds(measureEnd - measureStart)
        let result = histogram.withLock { histogram in
            Result(
                devices: devices,
                ratePerDevice: rate,
                seconds: seconds,
                offeredPerSecond: Double(devices) * rate,
                acceptedPerSecond: Double(after.acknowledged - before.acknowledged) / seconds,
                latencyMicroseconds: [
                    "p50": histogram.valueAtPercentile(50), "p99": histogram.valueAtPercentile(99),
                    "p99.9": histogram.valueAtPercentile(99.9), "max": histogram.max,
                ],
                latencySamples: histogram.totalCount,
                errors: summary.errors,
                server: Usage(cores: (serverAfter.cpuSeconds - serverBefore.cpuSeconds) / seconds, rssMiB: serverAfter.rssMiB),
                simulator: Usage(cores: (selfAfter.cpuSeconds - selfBefore.cpuSeconds) / seconds, rssMiB: selfAfter.rssMiB)
            )
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(result), as: UTF8.self))
        } else {
            print(Self.table(result))
        }
        if let error = summary.firstError { SimulateCommand.status("bench: first error: \(error)") }
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    static func table(_ result: Result) -> String {
        func ms(_ key: String) -> String { String(format: "%.1f ms", Double(result.latencyMicroseconds[key] ?? 0) / 1000) }
        return """
            devices × rate        \(result.devices) × \(result.ratePerDevice) msg/s = \(String(format: "%.0f", result.offeredPerSecond)) msg/s offered
            measured              \(String(format: "%.1f", result.seconds)) s
            accepted              \(String(format: "%.0f", result.acceptedPerSecond)) samples/s
            latency send→stored   p50 \(ms("p50"))   p99 \(ms("p99"))   p99.9 \(ms("p99.9"))   max \(ms("max"))   (\(result.latencySamples) samples)
            server                \(String(format: "%.2f", result.server.cores)) cores, \(String(format: "%.0f", result.server.rssMiB)) MiB resident
            simulator             \(String(format: "%.2f", result.simulator.cores)) cores, \(String(format: "%.0f", result.simulator.rssMiB)) MiB resident
            errors                \(result.errors)
            """
    }
}

/// CPU time and resident memory of a process, from /proc.
struct ProcessUsage {
    var cpuSeconds: Double
    var rssMiB: Double

    static func of(pid: Int32) -> ProcessUsage {
        var usage = ProcessUsage(cpuSeconds: 0, rssMiB: 0)
        if let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        {
            // Fields after the command name: state is field 3; utime and stime are 14 and 15.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) {
                usage.cpuSeconds = (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
            }
        }
        if let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kib = Double(line.split(separator: " ").dropFirst().first ?? "")
        {
            usage.rssMiB = kib / 1024
        }
        return usage
    }
}

/// `meridian serve` in a child process, on free loopback ports, in a temporary data directory.
final class ServerProcess: Sendable {
    let pid: Int32
    let mqttPort: Int
    let httpPort: Int
    let apiKey: String
    let directory: String
    private let process: Process

    private init(process: Process, mqttPort: Int, httpPort: Int, apiKey: String, directory: String) {
        self.process = process
        self.pid = process.processIdentifier
        self.mqttPort = mqttPort
        self.httpPort = httpPort
        self.apiKey = apiKey
        self.directory = directory
    }

    static func start(extraArguments: [String]) throws -> ServerProcess {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-bench-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let apiKey = "mk_bench_\(UUID().uuidString.replacingOccurrences(of: "-", with: ""))"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL
        if !FileManager.default.isExecutableFile(atPath: process.executableURL!.path) {
            process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        }
        process.arguments = [
            "serve", "--bind", "127.0.0.1", "--mqtt-port", "0", "--http-port", "0",
            "--data-dir", directory + "/data", "--log-level", "warning",
            "--set", "network.mqtts_port=0", "--set", "network.https_port=0",
        ] + extraArguments
        var environment = ProcessInfo.processInfo.environment
        environment["MERIDIAN_BOOTSTRAP_API_KEY"] = apiKey
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
        // The `listening mqtt=… http=…` line, within 60 s.
        let reader = output.fileHandleForReading
        var text = ""
        let deadline = Date().addingTimeInterval(60)
        while !text.contains("\n"), Date() < deadline, process.isRunning {
            let chunk = reader.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
        }
        let line = text.split(separator: "\n").first { $0.hasPrefix("listening ") } ?? ""
        var ports: [String: Int] = [:]
        for item in line.split(separator: " ").dropFirst() {
            let pair = item.split(separator: "=")
            if pair.count == 2, let port = Int(pair[1]) { ports[String(pair[0])] = port }
        }
        guard let mqtt = ports["mqtt"], let http = ports["http"] else {
            process.terminate()
            throw ValidationError("the server did not start (output: \(text.prefix(500)))")
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        reader.readabilityHandler = { handle in _ = handle.availableData }
        return ServerProcess(process: process, mqttPort: mqtt, httpPort: http, apiKey: apiKey, directory: directory)
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: directory)
    }
}

import ArgumentParser
import Foundation
import MQTTCore
import MeridianDevice
import MeridianSimulator

/// `meridian simulate`: a fleet of virtual devices against a running Meridian.
struct SimulateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Run a fleet of simulated devices against a Meridian server.",
        discussion: """
            Each virtual device runs a signal model of its profile (thermostat, cold-chain-truck, \
            factory-motor, wearable, smart-meter; assigned round robin), sends telemetry at --rate \
            messages per second, follows desired settings in its twin and answers commands. The same \
            --seed gives the same signals and faults again.

            Credentials: either --provision-key and --provision-secret of a device profile that \
            allows allow-create (each device provisions itself as <name-prefix>-<index>; a name can \
            be provisioned once, so keep the tokens with --save-tokens), or --tokens-file with one \
            access token per line.

            Faults (repeatable --fault): stuck:5%  spikes:2%  dropouts:10%  clock-skew:5%:30s  \
            disconnects:1%  network-delay:20%:200ms  packet-loss:5%  reboots:1%, each optionally \
            limited to a profile with @profile (spikes:2%@factory-motor). See docs/simulator.md.

            Progress goes to standard error every --progress-interval seconds; the summary to \
            standard output (as JSON with --json).
            """
    )

    @Option(help: "The server's host.") var host = "127.0.0.1"
    @Option(name: .customLong("mqtt-port"), help: "The server's MQTT port (default 1883, or 8883 with --tls).") var mqttPort: Int?
    @Flag(help: "Connect over TLS.") var tls = false
    @Option(name: .customLong("ca-file"), help: "PEM certificates to trust for TLS (default: the system's roots).") var caFile: String?
    @Option(name: .customLong("tls-server-name"), help: "The name the server's certificate must carry (default: the host).")
    var tlsServerName: String?
    @Option(help: "How many devices.") var devices = 100
    @Option(help: "Messages per second per device.") var rate = 1.0
    @Option(help: "How long to run: 90, 90s, 5m, 1h (default: until interrupted).") var duration: String?
    @Option(help: "The random seed.") var seed: UInt64 = 1
    @Option(name: .customLong("profile"), help: ArgumentHelp("A profile to simulate (repeatable; default: all five).", valueName: "name"))
    var profiles: [String] = []
    @Option(name: .customLong("fault"), help: ArgumentHelp("A fault to inject (repeatable), e.g. spikes:2%@factory-motor.", valueName: "spec"))
    var faults: [String] = []
    @Option(name: .customLong("provision-key"), help: "A device profile's provisioning key.") var provisionKey: String?
    @Option(name: .customLong("provision-secret"), help: "The profile's provisioning secret.") var provisionSecret: String?
    @Option(name: .customLong("name-prefix"), help: "Provisioned devices are named <prefix>-<index>.") var namePrefix = "sim"
    @Option(name: .customLong("tokens-file"), help: "A file of access tokens, one per line.") var tokensFile: String?
    @Option(name: .customLong("save-tokens"), help: "Write the provisioned devices' tokens to this file (for --tokens-file in a later run).")
    var saveTokens: String?
    @Option(name: .customLong("mqtt-version"), help: "5 or 3.1.1.") var mqttVersion = "5"
    @Option(name: .customLong("connect-rate"), help: "New connections per second while the fleet starts.") var connectRate = 500.0
    @Option(name: .customLong("progress-interval"), help: "Seconds between progress lines.") var progressInterval = 5.0
    @Flag(help: "Print the summary as JSON.") var json = false

    func run() async throws {
        let plan = try makePlan()
        let simulator: FleetSimulator
        do {
            simulator = try FleetSimulator(plan: plan)
        } catch {
            throw ValidationError("\(error)")
        }
        let profileNames = Set(plan.profiles).map(\.rawValue).sorted().joined(separator: ", ")
        Self.status(
            "simulating \(plan.devices) devices (\(profileNames)) at \(plan.rate) msg/s each against \(plan.host):\(plan.port ?? (plan.tls == nil ? 1883 : 8883)), seed \(plan.seed)"
        )
        let run = Task {
            await simulator.run(progressInterval: .seconds(progressInterval)) { progress in
                Self.status(Self.line(progress))
            }
        }
        // Ctrl-C ends the run cleanly, with a summary.
        signal(SIGINT, SIG_IGN)
        let interrupt = DispatchSource.makeSignalSource(signal: SIGINT)
        interrupt.setEventHandler { run.cancel() }
        interrupt.resume()
        let summary = await run.value
        interrupt.cancel()
        if let saveTokens {
            let provisioned = simulator.provisionedTokens
            let lines = (0..<plan.devices).compactMap { provisioned[$0] }
            do {
                try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: saveTokens))
                Self.status("saved \(lines.count) tokens to \(saveTokens)")
            } catch {
                Self.status("could not write --save-tokens \(saveTokens): \(error.localizedDescription)")
            }
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(summary), as: UTF8.self))
        } else {
            print(Self.summaryText(summary))
        }
        if summary.acknowledged == 0 { throw ExitCode(1) }
    }

    func makePlan() throws -> FleetPlan {
        let credentials: FleetCredentials
        switch (provisionKey, provisionSecret, tokensFile) {
        case (let key?, let secret?, nil):
            credentials = .provision(profileKey: key, profileSecret: secret, namePrefix: namePrefix)
        case (nil, nil, let file?):
            let text: String
            do {
                text = try String(contentsOfFile: file, encoding: .utf8)
            } catch {
                throw ValidationError("--tokens-file: cannot read \(file): \(error.localizedDescription)")
            }
            let tokens = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.isEmpty && !$0.hasPrefix("#") }
            credentials = .tokens(tokens)
        case (nil, nil, nil):
            throw ValidationError("credentials: give --provision-key and --provision-secret, or --tokens-file")
        case (.some, nil, _), (nil, .some, _):
            throw ValidationError("--provision-key and --provision-secret go together")
        default:
            throw ValidationError("give either --provision-key/--provision-secret or --tokens-file, not both")
        }
        var plan = FleetPlan(host: host, port: mqttPort, credentials: credentials)
        plan.devices = devices
        plan.rate = rate
        plan.seed = seed
        plan.connectRate = connectRate
        if let duration { plan.duration = try Self.parseDuration(duration) }
        if !profiles.isEmpty {
            plan.profiles = try profiles.map { name in
                guard let profile = SimulatedProfile(name: name) else {
                    throw ValidationError(
                        "--profile: unknown profile \(name) (one of \(SimulatedProfile.allCases.map(\.rawValue).joined(separator: ", ")))"
                    )
                }
                return profile
            }
        }
        do {
            plan.faults = try faults.map { try FaultSpec(parsing: $0) }
        } catch {
            throw ValidationError("--fault: \(error)")
        }
        switch mqttVersion {
        case "5", "5.0": plan.protocolVersion = .v5
        case "3.1.1", "3", "4": plan.protocolVersion = .v3_1_1
        default: throw ValidationError("--mqtt-version: 5 or 3.1.1 (got \(mqttVersion))")
        }
        if tls || caFile != nil {
            var settings = MeridianDevice.TLS(serverName: tlsServerName)
            if let caFile {
                do {
                    settings.trustedCertificatesPEM = try String(contentsOfFile: caFile, encoding: .utf8)
                } catch {
                    throw ValidationError("--ca-file: cannot read \(caFile): \(error.localizedDescription)")
                }
            }
            plan.tls = settings
        }
        guard progressInterval > 0 else { throw ValidationError("--progress-interval: must be positive") }
        do {
            try plan.validate()
        } catch {
            throw ValidationError("\(error)")
        }
        return plan
    }

    /// `90`, `90s`, `5m`, `1h`, `250ms`.
    static func parseDuration(_ text: String) throws -> Duration {
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            if let value = Double(text.dropLast(suffix.count)), value > 0, value.isFinite {
                return .seconds(value * factor)
            }
            throw ValidationError("--duration: not a duration: \(text) (e.g. 90s, 5m, 1h)")
        }
        guard let seconds = Double(text), seconds > 0, seconds.isFinite else {
            throw ValidationError("--duration: not a duration: \(text) (e.g. 90s, 5m, 1h)")
        }
        return .seconds(seconds)
    }

    static func status(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    static func line(_ progress: FleetProgress) -> String {
        let seconds = progress.elapsed.components.seconds
        var line = String(format: "[%5ds] connected %d/%d  sent %d  acknowledged %d  buffered %d  errors %d",
            Int(seconds), progress.connected, progress.devices, progress.sent, progress.acknowledged, progress.buffered, progress.errors)
        let faults = progress.faults
        let injected = faults.dropouts + faults.spikes + faults.stuckSamples + faults.lostMessages + faults.delayedMessages
            + faults.disconnects + faults.reboots
        if injected > 0 { line += "  faults \(injected)" }
        if progress.commands > 0 { line += "  commands \(progress.commands)" }
        return line
    }

    static func summaryText(_ summary: FleetSummary) -> String {
        let faults = summary.faults
        return """
            devices            \(summary.devices) (connected at the end: \(summary.connectedAtEnd))
            duration           \(String(format: "%.1f", summary.seconds)) s
            samples sent       \(summary.sent)
            acknowledged       \(summary.acknowledged) (\(String(format: "%.0f", summary.acknowledgedPerSecond))/s)
            still buffered     \(summary.buffered)
            dropped (buffer)   \(summary.dropped)
            refused by server  \(summary.refused)
            errors             \(summary.errors)\(summary.firstError.map { " (first: \($0))" } ?? "")
            commands answered  \(summary.commands)
            desired applied    \(summary.desiredChanges)
            faults             dropouts \(faults.dropouts), spikes \(faults.spikes), stuck \(faults.stuckSamples), lost \(faults.lostMessages), delayed \(faults.delayedMessages), disconnects \(faults.disconnects), reboots \(faults.reboots)
            """
    }
}

import ArgumentParser
import Foundation
import Logging
import MeridianServer
import Synchronization

/// `meridian serve`: build the configuration, then run the server.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the Meridian server.",
        discussion: """
            Every setting has a key (listed below) that can be set in the TOML config file, with a \
            MERIDIAN_* environment variable, or with --set KEY=VALUE; the most common ones also have a \
            flag. Precedence, highest first: command-line flags, the config file, MERIDIAN_* \
            environment variables, defaults.
            """
    )

    /// Printed after the options by `meridian serve --help`.
    static var helpEpilogue: String {
        MeridianConfiguration.keysReference()
            + "\n\nSee docs/configuration.md for the config file format, precedence and every key in detail."
    }

    @OptionGroup var options: ConfigurationOptions

    @Flag(help: "Also run a small simulated fleet (thermostats, trucks, motors, wearables, meters) in this process, to try Meridian without devices.")
    var demo = false

    @Option(name: .customLong("demo-devices"), help: "How many simulated devices --demo runs.")
    var demoDevices = 50

    func run() async throws {
        let resolved = try options.resolve()
        let level = resolved.configuration.logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "meridian")
        logger.debug("configuration read", metadata: ["config.file": "\(resolved.configFile ?? "none")"])
        guard (1...10_000).contains(demoDevices) else {
            throw ValidationError("--demo-devices: from 1 to 10000 (got \(demoDevices))")
        }
        var application = MeridianApplication(configuration: resolved.configuration, logger: logger)
        let demoTask = DemoTask()
        if demo {
            let fleet = DemoFleet(
                devices: demoDevices,
                dataDirectory: resolved.configuration.dataDirectory,
                bind: resolved.configuration.network.bind,
                logger: logger
            )
            application.onReady = { platform in demoTask.start { await fleet.run(platform) } }
        }
        defer { demoTask.cancel() }
        do {
            try await application.run()
        } catch {
            // Start-up problems (a port in use, a database from a newer version) end the
            // process with one readable line and exit code 1, never a stack trace.
            FileHandle.standardError.write(Data("meridian: cannot start: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}

/// The demo fleet's task, started once the server listens and cancelled when it stops.
final class DemoTask: Sendable {
    private let task = Mutex<Task<Void, Never>?>(nil)

    func start(_ body: @escaping @Sendable () async -> Void) {
        task.withLock { $0 = Task { await body() } }
    }

    func cancel() {
        task.withLock { $0?.cancel() }
    }
}

import ArgumentParser
import Foundation
import Logging
import MeridianServer

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
        do {
            try await MeridianApplication(configuration: resolved.configuration, logger: logger).run()
        } catch {
            // Start-up problems (a port in use, a database from a newer version) end the
            // process with one readable line and exit code 1, never a stack trace.
            FileHandle.standardError.write(Data("meridian: cannot start: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}

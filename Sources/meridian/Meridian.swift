import ArgumentParser

/// The `meridian` command: parses arguments and hands over to the library.
@main
struct Meridian: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "meridian",
        abstract: "Meridian IoT platform: MQTT broker, device registry, telemetry and dashboard in one binary.",
        subcommands: [
            ServeCommand.self, ConfigCommand.self, DeviceCommand.self, CredentialsCommand.self, CertCommand.self,
            APIKeyCommand.self, AuditCommand.self, RuleCommand.self, AlarmCommand.self, SimulateCommand.self, BenchCommand.self,
        ]
    )

    /// ArgumentParser's `main`, except that `meridian serve --help` ends with the configuration
    /// key reference and a pointer to docs/configuration.md (ArgumentParser has no epilogue).
    static func main() async {
        do {
            var command = try await asyncParseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            if exitCode(for: error) == .success, fullMessage(for: error) == helpMessage(for: ServeCommand.self) {
                print(fullMessage(for: error) + "\n\n" + ServeCommand.helpEpilogue)
                return
            }
            exit(withError: error)
        }
    }
}

import ArgumentParser
import Foundation
import MeridianServer

/// The options that shape the configuration, shared by `serve`, `config show` and `config check`.
struct ConfigurationOptions: ParsableArguments {
    @Option(
        name: .customLong("config"),
        help: ArgumentHelp(
            "TOML config file. (default: ./meridian.toml if it exists; env: MERIDIAN_CONFIG)",
            valueName: "path"
        )
    )
    var configFile: String?

    @Option(help: Self.help(for: "network.bind", valueName: "address"))
    var bind: String?

    @Option(help: Self.help(for: "network.mqtt_port", valueName: "port"))
    var mqttPort: String?

    @Option(help: Self.help(for: "network.http_port", valueName: "port"))
    var httpPort: String?

    @Option(help: Self.help(for: "network.mqtts_port", valueName: "port"))
    var mqttsPort: String?

    @Option(help: Self.help(for: "network.https_port", valueName: "port"))
    var httpsPort: String?

    @Option(help: Self.help(for: "data_dir", valueName: "path"))
    var dataDir: String?

    @Option(help: Self.help(for: "log_level", valueName: "level"))
    var logLevel: String?

    @Option(help: Self.help(for: "database.url", valueName: "url"))
    var database: String?

    @Option(help: Self.help(for: "broker.durability", valueName: "strict|batch|none"))
    var durability: String?

    @Option(
        name: .customLong("set"),
        help: ArgumentHelp(
            "Set any configuration key (repeatable), e.g. --set broker.limits.maximum_connections=5000. "
                + "The keys are listed below.",
            valueName: "key=value"
        ),
        transform: { text in
            guard let setting = ConfigurationSetting(assignment: text) else {
                throw ValidationError("expected key=value, e.g. network.mqtt_port=1884")
            }
            return setting
        }
    )
    var settings: [ConfigurationSetting] = []

    /// Every value given on the command line, dedicated flags after `--set` ones.
    var commandLineSettings: [ConfigurationSetting] {
        let flags: [(String, String?)] = [
            ("network.bind", bind),
            ("network.mqtt_port", mqttPort),
            ("network.http_port", httpPort),
            ("network.mqtts_port", mqttsPort),
            ("network.https_port", httpsPort),
            ("data_dir", dataDir),
            ("log_level", logLevel),
            ("database.url", database),
            ("broker.durability", durability),
        ]
        return settings
            + flags.compactMap { name, value in
                guard let value, let key = MeridianConfiguration.key(named: name) else { return nil }
                return ConfigurationSetting(key: name, value: value, flag: key.flag ?? "--" + name)
            }
    }

    /// The configuration from the command line, the config file, the environment and defaults.
    /// On any problem: one `meridian: invalid configuration: ...` line each on standard error, and
    /// exit code 1.
    func resolve() throws -> ResolvedConfiguration {
        do {
            return try MeridianConfiguration.load(
                commandLine: commandLineSettings,
                configFile: configFile,
                environment: ProcessInfo.processInfo.environment
            )
        } catch {
            for problem in error.errors {
                FileHandle.standardError.write(Data("meridian: invalid configuration: \(problem)\n".utf8))
            }
            throw ExitCode(1)
        }
    }

    private static func help(for name: String, valueName: String) -> ArgumentHelp {
        ArgumentHelp(MeridianConfiguration.key(named: name)?.flagHelp ?? "", valueName: valueName)
    }
}

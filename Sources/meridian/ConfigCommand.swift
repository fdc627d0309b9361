import ArgumentParser
import MeridianServer

/// `meridian config ...`: inspect and validate the configuration.
struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Show, check and list the server's configuration.",
        subcommands: [Show.self, Check.self, Keys.self, Example.self]
    )

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the effective configuration as TOML, with the source of each value.",
            discussion: "Takes the same options as `meridian serve`."
        )

        @OptionGroup var options: ConfigurationOptions

        func run() throws {
            print(try options.resolve().renderTOML(), terminator: "")
        }
    }

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate the configuration: exit code 0 when valid, 1 with the problems otherwise.",
            discussion: "Takes the same options as `meridian serve`."
        )

        @OptionGroup var options: ConfigurationOptions

        func run() throws {
            let resolved = try options.resolve()
            print("meridian: configuration is valid (config file: \(resolved.configFile ?? "none"))")
        }
    }

    struct Keys: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List every configuration key with its type, default and environment variable."
        )

        @Flag(help: "Print the table used in docs/configuration.md.")
        var markdown = false

        func run() {
            print(markdown ? MeridianConfiguration.markdownReference() : MeridianConfiguration.keysReference())
        }
    }
}

extension ConfigCommand {
    struct Example: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print an example config file: every key commented out at its default (meridian.example.toml)."
        )

        func run() {
            print(MeridianConfiguration.exampleTOML(), terminator: "")
        }
    }
}

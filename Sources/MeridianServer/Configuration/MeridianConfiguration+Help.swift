extension ConfigurationKey {
    /// Help for this key's dedicated command-line flag: the key's help, then its type, default, key
    /// name and environment variable.
    public var flagHelp: String {
        "\(help) (\(type); default: \(defaultValue.plainText); key: \(name); env: \(environmentVariable))"
    }

    /// One row of the key table in `docs/configuration.md`:
    /// `| name | type | default | env | flag | meaning |`.
    public var markdownRow: String {
        let flagCell = flag.map { "`\($0)`" } ?? ""
        return "| `\(name)` | \(type) | `\(defaultValue.tomlText)` | `\(environmentVariable)` | \(flagCell) | \(help) |"
    }
}

extension MeridianConfiguration {
    /// Every key with its default, type, environment variable and help, for `meridian serve --help`
    /// and `meridian config keys`.
    public static func keysReference() -> String {
        var lines = ["CONFIGURATION KEYS (config file, --set KEY=VALUE, or the environment variable shown):"]
        for key in keys {
            lines.append("  \(key.name) = \(key.defaultValue.tomlText)")
            lines.append("        \(key.type); env \(key.environmentVariable)")
            lines.append("        \(key.help)")
        }
        return lines.joined(separator: "\n")
    }

    /// The key table of `docs/configuration.md`, one row per key; a test keeps the doc equal to it.
    public static func markdownReference() -> String {
        let header = [
            "| key | type | default | environment variable | flag | meaning |",
            "|---|---|---|---|---|---|",
        ]
        return (header + keys.map(\.markdownRow)).joined(separator: "\n") + "\n"
    }
}

extension TOMLValue {
    /// The value as typed on a command line: strings without quotes.
    var plainText: String {
        if case .string(let string) = self { return string }
        return tomlText
    }
}

extension ResolvedConfiguration {
    /// The effective configuration as a TOML file, each value followed by a comment naming its
    /// source (`# default`, `# --mqtt-port`, `# meridian.toml line 3`, ...). Reading the text back
    /// gives the same configuration.
    public func renderTOML() -> String {
        var header = [
            "# Effective Meridian configuration.",
            "# Precedence, highest first: command-line flags, config file, MERIDIAN_* environment variables, defaults.",
        ]
        header.append("# Config file: " + (configFile ?? "none"))
        let keys = MeridianConfiguration.keys
        let width =
            keys.map { key in
                key.shortName.count + 3 + key.displayText(key.value(in: configuration)).count
            }.max() ?? 0
        return MeridianConfiguration.renderByTable(header: header) { key in
            let assignment = "\(key.shortName) = \(key.displayText(key.value(in: configuration)))"
            let padding = String(repeating: " ", count: max(0, width - assignment.count))
            return [assignment + padding + "  # \(source(of: key))"]
        }
    }
}

extension MeridianConfiguration {
    /// The example config file (`meridian.example.toml`): every key commented out at its default,
    /// with its help, type and environment variable above it.
    public static func exampleTOML() -> String {
        let header = [
            "# Meridian configuration file (TOML). Every key is shown commented out at its default.",
            "# Copy to meridian.toml (read from the working directory), or pass --config PATH or set",
            "# MERIDIAN_CONFIG. Precedence, highest first: command-line flags, this file, MERIDIAN_*",
            "# environment variables, defaults. See docs/configuration.md.",
        ]
        return renderByTable(header: header) { key in
            [
                "# \(key.help)",
                "# \(key.type); env \(key.environmentVariable)",
                "# \(key.shortName) = \(key.defaultValue.tomlText)",
                "",
            ]
        }
    }

    /// The registry's keys grouped under their `[table]` headers (top-level keys first, then tables
    /// in registry order), each key rendered by `lines`.
    static func renderByTable(header: [String], _ lines: (ConfigurationKey) -> [String]) -> String {
        var tables: [[String]] = []
        var keysByTable: [[String]: [ConfigurationKey]] = [:]
        for key in keys {
            let table = Array(key.path.dropLast())
            if keysByTable[table] == nil {
                tables.append(table)
            }
            keysByTable[table, default: []].append(key)
        }
        // Top-level keys must come before the first header.
        tables = tables.filter(\.isEmpty) + tables.filter { !$0.isEmpty }
        var output = header
        for table in tables {
            if output.last != "" { output.append("") }
            if !table.isEmpty { output.append("[\(table.joined(separator: "."))]") }
            for key in keysByTable[table, default: []] {
                output += lines(key)
            }
        }
        while output.last == "" { output.removeLast() }
        return output.joined(separator: "\n") + "\n"
    }
}

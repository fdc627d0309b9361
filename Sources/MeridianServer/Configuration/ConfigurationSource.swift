/// Where a configuration value came from. Sources in order of precedence, highest first:
/// the command line, the config file, the environment, the built-in default.
public enum ConfigurationSource: Sendable, Hashable, CustomStringConvertible {
    /// A command-line flag such as `--mqtt-port`, or `--set` for the generic form.
    case commandLine(flag: String)
    /// A line of the TOML config file, with the path as it was given.
    case file(path: String, line: Int)
    /// A `MERIDIAN_*` environment variable.
    case environment(variable: String)
    /// The built-in default.
    case defaultValue

    /// "--mqtt-port", "meridian.toml line 12", "environment variable MERIDIAN_LOG_LEVEL" or "default".
    public var description: String {
        switch self {
        case .commandLine(let flag): flag
        case .file(let path, let line): "\(path) line \(line)"
        case .environment(let variable): "environment variable \(variable)"
        case .defaultValue: "default"
        }
    }
}

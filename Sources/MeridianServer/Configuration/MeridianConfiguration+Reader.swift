#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A value given on the command line: by a dedicated flag (`--mqtt-port 1884`) or by
/// `--set network.mqtt_port=1884`.
public struct ConfigurationSetting: Sendable, Hashable {
    /// Registry name of the key: `network.mqtt_port`.
    public var key: String
    /// The value as typed.
    public var value: String
    /// The flag it was given with, for messages: `--mqtt-port` or `--set`.
    public var flag: String

    public init(key: String, value: String, flag: String) {
        self.key = key
        self.value = value
        self.flag = flag
    }

    /// Reads `key=value` as given to `--set`; nil when there is no `=` or no key.
    public init?(assignment: String, flag: String = "--set") {
        guard let equals = assignment.firstIndex(of: "=") else { return nil }
        let key = String(assignment[..<equals]).trimmingSpaces
        guard !key.isEmpty else { return nil }
        self.init(key: key, value: String(assignment[assignment.index(after: equals)...]), flag: flag)
    }
}

/// The configuration a server runs with, and where each value came from.
public struct ResolvedConfiguration: Sendable {
    /// The effective configuration.
    public var configuration: MeridianConfiguration
    /// The source of every key not at its default, by registry name.
    public var sources: [String: ConfigurationSource]
    /// The config file that was read, if any.
    public var configFile: String?

    /// Where `key`'s value came from.
    public func source(of key: ConfigurationKey) -> ConfigurationSource {
        sources[key.name] ?? .defaultValue
    }
}

extension MeridianConfiguration {
    /// The environment variable naming the config file when `--config` is not given.
    public static let configFileVariable = "MERIDIAN_CONFIG"
    /// The config file read when neither `--config` nor `MERIDIAN_CONFIG` names one, if it exists.
    public static let defaultConfigFile = "meridian.toml"

    /// Builds the configuration from its sources, highest precedence first: command-line settings,
    /// the config file, `MERIDIAN_*` environment variables, defaults.
    ///
    /// The config file is `configFile` (from `--config`), else `environment["MERIDIAN_CONFIG"]`, else
    /// `defaultConfigFile` if that file exists. Every source is checked in full, even values that a
    /// higher source overrides; unknown keys in the file or on the command line are errors, unknown
    /// `MERIDIAN_*` variables are ignored.
    ///
    /// - Throws: ``InvalidConfiguration`` listing every problem found, each naming the key and source.
    public static func load(
        commandLine: [ConfigurationSetting] = [],
        configFile: String? = nil,
        environment: [String: String] = [:],
        defaultConfigFile: String = MeridianConfiguration.defaultConfigFile
    ) throws(InvalidConfiguration) -> ResolvedConfiguration {
        var errors: [ConfigurationError] = []
        var assignments: [Assignment] = []

        assignments += environmentAssignments(environment, errors: &errors)

        var fileRead: String?
        let fileChoice: (path: String, origin: String)? =
            if let configFile {
                (configFile, "--config")
            } else if let path = environment[configFileVariable] {
                (path, configFileVariable)
            } else if fileExists(defaultConfigFile) {
                (defaultConfigFile, "default location")
            } else {
                nil
            }
        if let (path, origin) = fileChoice {
            switch readFile(path) {
            case .success(let text):
                fileRead = path
                assignments += fileAssignments(text: text, path: path, errors: &errors)
            case .failure(let failure):
                errors.append(.unreadableFile(path: path, givenBy: origin, reason: failure.reason))
            }
        }

        assignments += commandLineAssignments(commandLine, errors: &errors)

        return try resolve(assignments, configFile: fileRead, errors: errors)
    }

    /// Reads a configuration from TOML text alone (no environment, no command line), e.g. for tests
    /// and tools. `path` names the text in messages.
    public static func load(toml text: String, path: String = "<toml>") throws(InvalidConfiguration)
        -> ResolvedConfiguration
    {
        var errors: [ConfigurationError] = []
        let assignments = fileAssignments(text: text, path: path, errors: &errors)
        return try resolve(assignments, configFile: path, errors: errors)
    }

    /// Applies `assignments` in order (later ones win) to the defaults, then runs the checks across
    /// keys; throws when there is any error, earlier ones included.
    private static func resolve(
        _ assignments: [Assignment],
        configFile: String?,
        errors: [ConfigurationError]
    ) throws(InvalidConfiguration) -> ResolvedConfiguration {
        var configuration = MeridianConfiguration()
        var sources: [String: ConfigurationSource] = [:]
        for assignment in assignments {
            // Values were validated when the assignments were made.
            _ = assignment.key.apply(assignment.value, to: &configuration)
            sources[assignment.key.name] = assignment.source
        }
        let resolved = ResolvedConfiguration(configuration: configuration, sources: sources, configFile: configFile)
        let errors = errors + crossKeyErrors(resolved)
        if !errors.isEmpty { throw InvalidConfiguration(errors: errors) }
        return resolved
    }

    // MARK: Sources

    /// A checked value for a key, ready to apply.
    private struct Assignment {
        var key: ConfigurationKey
        var value: TOMLValue
        var source: ConfigurationSource
    }

    private static func environmentAssignments(
        _ environment: [String: String],
        errors: inout [ConfigurationError]
    ) -> [Assignment] {
        var assignments: [Assignment] = []
        for key in keys {
            guard let text = environment[key.environmentVariable] else { continue }
            let source = ConfigurationSource.environment(variable: key.environmentVariable)
            if let assignment = checked(key, text: text, source: source, errors: &errors) {
                assignments.append(assignment)
            }
        }
        return assignments
    }

    private static func fileAssignments(
        text: String,
        path: String,
        errors: inout [ConfigurationError]
    ) -> [Assignment] {
        let document: TOMLDocument
        do {
            document = try TOMLDocument(parsing: text)
        } catch {
            errors.append(.syntax(path: path, error: error))
            return []
        }
        var assignments: [Assignment] = []
        for entry in document.entries {
            let source = ConfigurationSource.file(path: path, line: entry.line)
            guard let key = keys.first(where: { $0.path == entry.key }) else {
                let name = TOMLParser.display(entry.key)
                errors.append(.unknownKey(name, source: source, suggestion: suggestion(for: name)))
                continue
            }
            if let reason = key.validate(entry.value) {
                errors.append(
                    .invalidValue(key: key.name, value: key.displayText(entry.value), source: source, reason: reason)
                )
                continue
            }
            assignments.append(Assignment(key: key, value: entry.value, source: source))
        }
        return assignments
    }

    private static func commandLineAssignments(
        _ settings: [ConfigurationSetting],
        errors: inout [ConfigurationError]
    ) -> [Assignment] {
        var assignments: [Assignment] = []
        var flagsByKey: [String: String] = [:]
        for setting in settings {
            let source = ConfigurationSource.commandLine(flag: setting.flag)
            guard let key = key(named: setting.key) else {
                errors.append(.unknownKey(setting.key, source: source, suggestion: suggestion(for: setting.key)))
                continue
            }
            // `--set k=1 --set k=2` means k=2; `--mqtt-port 1 --set network.mqtt_port=2` is ambiguous.
            if let earlier = flagsByKey[key.name], earlier != setting.flag {
                errors.append(
                    .conflict(
                        key: key.name,
                        source: source,
                        message: "\(key.name) is given twice on the command line (\(earlier) and \(setting.flag))"
                    )
                )
                continue
            }
            flagsByKey[key.name] = setting.flag
            if let assignment = checked(key, text: setting.value, source: source, errors: &errors) {
                assignments.append(assignment)
            }
        }
        return assignments
    }

    /// `text` read and checked for `key`, or nil with the problem added to `errors`.
    private static func checked(
        _ key: ConfigurationKey,
        text: String,
        source: ConfigurationSource,
        errors: inout [ConfigurationError]
    ) -> Assignment? {
        switch key.parse(text: text) {
        case .failure(let failure):
            errors.append(
                .invalidValue(
                    key: key.name,
                    value: key.displayText(.string(text)),
                    source: source,
                    reason: failure.reason
                )
            )
            return nil
        case .success(let value):
            if let reason = key.validate(value) {
                errors.append(.invalidValue(key: key.name, value: key.displayText(value), source: source, reason: reason))
                return nil
            }
            return Assignment(key: key, value: value, source: source)
        }
    }

    // MARK: Checks across keys

    private static func crossKeyErrors(_ resolved: ResolvedConfiguration) -> [ConfigurationError] {
        var errors: [ConfigurationError] = []
        let configuration = resolved.configuration
        let network = configuration.network
        var listeners: [(name: String, port: Int)] = [
            ("network.mqtt_port", network.mqttPort),
            ("network.http_port", network.httpPort),
        ]
        if configuration.tls.enabled {
            listeners += [("network.mqtts_port", network.mqttsPort), ("network.https_port", network.httpsPort)]
        }
        for (index, listener) in listeners.enumerated() where listener.port != 0 {
            guard let earlier = listeners[..<index].first(where: { $0.port == listener.port }),
                var first = key(named: earlier.name), var second = key(named: listener.name)
            else { continue }
            // Blame the key that was set over the one left at its default.
            if resolved.source(of: second) == .defaultValue && resolved.source(of: first) != .defaultValue {
                swap(&first, &second)
            }
            let firstSource = resolved.source(of: first)
            let secondSource = resolved.source(of: second)
            errors.append(
                .conflict(
                    key: second.name,
                    source: secondSource,
                    message: "\(second.name) = \(listener.port) (\(secondSource)) is the same as "
                        + "\(first.name) (\(firstSource)): the two listeners need different ports"
                )
            )
        }
        return errors
    }

    // MARK: Helpers

    /// The registry key closest to a mistyped `name`, if one is close enough to be a likely typo.
    static func suggestion(for name: String) -> String? {
        let scored = keys.map { ($0.name, editDistance(name, $0.name)) }
        guard let best = scored.min(by: { $0.1 < $1.1 }) else { return nil }
        return best.1 <= max(2, name.count / 4) ? best.0 : nil
    }

    private static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a.utf8)
        let b = Array(b.utf8)
        var previous = Array(0...b.count)
        for i in 1..<(a.count + 1) {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1..<(b.count + 1) {
                let substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)
                current[j] = min(previous[j] + 1, current[j - 1] + 1, substitution)
            }
            previous = current
        }
        return previous[b.count]
    }

    private struct ReadFailure: Error {
        var reason: String
    }

    private static func fileExists(_ path: String) -> Bool {
        access(path, F_OK) == 0
    }

    /// The file's contents as UTF-8 text, or why it could not be read.
    private static func readFile(_ path: String) -> Result<String, ReadFailure> {
        guard let handle = fopen(path, "rb") else {
            return .failure(ReadFailure(reason: String(cString: strerror(errno))))
        }
        defer { fclose(handle) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, handle) }
            bytes += chunk[0..<count]
            if count < chunk.count {
                if ferror(handle) != 0 { return .failure(ReadFailure(reason: String(cString: strerror(errno)))) }
                break
            }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            return .failure(ReadFailure(reason: "not valid UTF-8 text"))
        }
        return .success(text)
    }
}

import Foundation
import Logging
import MQTTBroker
import MQTTCore
import MeridianServer
import Testing

/// A config file in a fresh temporary directory, removed by `remove()`.
struct TemporaryConfigFile {
    let directory: URL
    let path: String

    init(_ text: String, name: String = "meridian.toml") throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "meridian-config-\(UUID().uuidString)"
        )
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        path = directory.appendingPathComponent(name).path
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    }

    func remove() {
        try? FileManager.default.removeItem(at: directory)
    }
}

/// The messages of the problems `body` throws, or an issue when it does not throw.
func problems(
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws(InvalidConfiguration) -> ResolvedConfiguration
) -> [String] {
    do {
        let resolved = try body()
        Issue.record("expected an invalid configuration, got \(resolved.sources)", sourceLocation: sourceLocation)
        return []
    } catch {
        return error.errors.map(\.message)
    }
}

/// A file path that does not exist, for `defaultConfigFile:` so tests never read a stray ./meridian.toml.
let noDefaultFile = "/nonexistent/meridian-tests/meridian.toml"

@Suite("Configuration sources and precedence")
struct ConfigurationLoadingTests {
    @Test func defaultsWithNoSources() throws {
        let resolved = try MeridianConfiguration.load(defaultConfigFile: noDefaultFile)
        let configuration = resolved.configuration
        #expect(configuration.network.bind == "0.0.0.0")
        #expect(configuration.network.mqttPort == 1883)
        #expect(configuration.network.httpPort == 8080)
        #expect(configuration.network.webSocketPath == "/mqtt")
        #expect(configuration.dataDirectory == "./meridian-data")
        #expect(configuration.logLevel == .info)
        #expect(configuration.broker.limits.maximumConnections == 100_000)
        #expect(resolved.sources.isEmpty)
        #expect(resolved.configFile == nil)
    }

    /// The same key from every combination of sources: flag > file > environment > default.
    @Test(arguments: [
        (flag: true, file: true, env: true, expected: 1003),
        (flag: true, file: false, env: true, expected: 1003),
        (flag: true, file: true, env: false, expected: 1003),
        (flag: false, file: true, env: true, expected: 1002),
        (flag: false, file: true, env: false, expected: 1002),
        (flag: false, file: false, env: true, expected: 1001),
        (flag: false, file: false, env: false, expected: 1883),
    ])
    func precedence(flag: Bool, file: Bool, env: Bool, expected: Int) throws {
        let configFile = try TemporaryConfigFile("# a comment\n[network]\nmqtt_port = 1002\n")
        defer { configFile.remove() }
        let resolved = try MeridianConfiguration.load(
            commandLine: flag
                ? [ConfigurationSetting(key: "network.mqtt_port", value: "1003", flag: "--mqtt-port")] : [],
            configFile: file ? configFile.path : nil,
            environment: env ? ["MERIDIAN_NETWORK_MQTT_PORT": "1001"] : [:],
            defaultConfigFile: noDefaultFile
        )
        #expect(resolved.configuration.network.mqttPort == expected)
        let key = try #require(MeridianConfiguration.key(named: "network.mqtt_port"))
        let expectedSource: ConfigurationSource =
            switch expected {
            case 1003: .commandLine(flag: "--mqtt-port")
            case 1002: .file(path: configFile.path, line: 3)
            case 1001: .environment(variable: "MERIDIAN_NETWORK_MQTT_PORT")
            default: .defaultValue
            }
        #expect(resolved.source(of: key) == expectedSource)
    }

    @Test func sourcesMixAcrossKeys() throws {
        let configFile = try TemporaryConfigFile("log_level = \"debug\"\n")
        defer { configFile.remove() }
        let resolved = try MeridianConfiguration.load(
            commandLine: [ConfigurationSetting(key: "network.bind", value: "127.0.0.1", flag: "--bind")],
            configFile: configFile.path,
            environment: ["MERIDIAN_DATA_DIR": "/var/lib/meridian", "MERIDIAN_LOG_LEVEL": "error"],
            defaultConfigFile: noDefaultFile
        )
        #expect(resolved.configuration.network.bind == "127.0.0.1")
        #expect(resolved.configuration.logLevel == .debug)
        #expect(resolved.configuration.dataDirectory == "/var/lib/meridian")
        #expect(resolved.configuration.network.mqttPort == 1883)
        #expect(resolved.configFile == configFile.path)
    }

    @Test func laterSetWinsOverEarlierSet() throws {
        let resolved = try MeridianConfiguration.load(
            commandLine: [
                try #require(ConfigurationSetting(assignment: "broker.sys_interval=5")),
                try #require(ConfigurationSetting(assignment: "broker.sys_interval=7")),
            ],
            defaultConfigFile: noDefaultFile
        )
        #expect(resolved.configuration.broker.sysInterval == 7)
    }

    @Test func setAssignmentSyntax() throws {
        let setting = try #require(ConfigurationSetting(assignment: " network.bind =::1=x"))
        #expect(setting == ConfigurationSetting(key: "network.bind", value: "::1=x", flag: "--set"))
        #expect(ConfigurationSetting(assignment: "network.bind") == nil)
        #expect(ConfigurationSetting(assignment: "=1") == nil)
        #expect(ConfigurationSetting(assignment: "data_dir=")?.value == "")
    }

    // MARK: The config file's location

    @Test func configFileFromTheEnvironment() throws {
        let configFile = try TemporaryConfigFile("[network]\nhttp_port = 9000\n")
        defer { configFile.remove() }
        let resolved = try MeridianConfiguration.load(
            environment: ["MERIDIAN_CONFIG": configFile.path],
            defaultConfigFile: noDefaultFile
        )
        #expect(resolved.configuration.network.httpPort == 9000)
        #expect(resolved.configFile == configFile.path)
    }

    @Test func configFlagBeatsConfigVariable() throws {
        let fromFlag = try TemporaryConfigFile("[network]\nhttp_port = 9001\n")
        let fromEnv = try TemporaryConfigFile("[network]\nhttp_port = 9002\n")
        defer {
            fromFlag.remove()
            fromEnv.remove()
        }
        let resolved = try MeridianConfiguration.load(
            configFile: fromFlag.path,
            environment: ["MERIDIAN_CONFIG": fromEnv.path],
            defaultConfigFile: noDefaultFile
        )
        #expect(resolved.configuration.network.httpPort == 9001)
    }

    @Test func defaultConfigFileIsReadWhenItExists() throws {
        let configFile = try TemporaryConfigFile("[network]\nhttp_port = 9003\n")
        defer { configFile.remove() }
        let resolved = try MeridianConfiguration.load(defaultConfigFile: configFile.path)
        #expect(resolved.configuration.network.httpPort == 9003)
        #expect(resolved.configFile == configFile.path)
    }

    @Test func missingConfigFileIsAnErrorOnlyWhenNamed() throws {
        let missing = "/nonexistent/meridian-tests/other.toml"
        #expect(
            problems { () throws(InvalidConfiguration) in try MeridianConfiguration.load(configFile: missing) }
                == ["cannot read config file \(missing) (given by --config): No such file or directory"]
        )
        #expect(
            problems { () throws(InvalidConfiguration) in
                try MeridianConfiguration.load(environment: ["MERIDIAN_CONFIG": missing])
            } == ["cannot read config file \(missing) (given by MERIDIAN_CONFIG): No such file or directory"]
        )
        #expect(try MeridianConfiguration.load(defaultConfigFile: missing).configFile == nil)
    }

    @Test func configFileThatIsNotUTF8() throws {
        let configFile = try TemporaryConfigFile("")
        defer { configFile.remove() }
        try Data([0x61, 0x20, 0x3D, 0x20, 0xFF, 0x0A]).write(to: URL(fileURLWithPath: configFile.path))
        #expect(
            problems { () throws(InvalidConfiguration) in
                try MeridianConfiguration.load(configFile: configFile.path)
            } == ["cannot read config file \(configFile.path) (given by --config): not valid UTF-8 text"]
        )
    }

    // MARK: Environment

    @Test func environmentValuesAreReadByType() throws {
        let resolved = try MeridianConfiguration.load(
            environment: [
                "MERIDIAN_BROKER_LIMITS_MAXIMUM_CONNECTIONS": "5_000",
                "MERIDIAN_BROKER_LIMITS_MAXIMUM_PACKET_SIZE": "0x10000",
                "MERIDIAN_BROKER_FEATURES_RETAIN_AVAILABLE": "false",
                "MERIDIAN_BROKER_FEATURES_SHARED_SUBSCRIPTIONS_AVAILABLE": "0",
                "MERIDIAN_BROKER_FEATURES_WILDCARD_SUBSCRIPTIONS_AVAILABLE": "TRUE",
                "MERIDIAN_BROKER_FEATURES_MAXIMUM_QOS": "1",
                "MERIDIAN_LOG_LEVEL": "Warning",
                "MERIDIAN_NETWORK_BIND": "::1",
                "MERIDIAN_NETWORK_WEBSOCKET_PATH": "/ws",
                "MERIDIAN_BROKER_LIMITS_MAXIMUM_SESSION_EXPIRY_INTERVAL": "4294967295",
            ],
            defaultConfigFile: noDefaultFile
        )
        let configuration = resolved.configuration
        #expect(configuration.broker.limits.maximumConnections == 5000)
        #expect(configuration.broker.limits.maximumPacketSize == 65536)
        #expect(configuration.broker.features.retainAvailable == false)
        #expect(configuration.broker.features.sharedSubscriptionsAvailable == false)
        #expect(configuration.broker.features.wildcardSubscriptionsAvailable == true)
        #expect(configuration.broker.features.maximumQoS == .atLeastOnce)
        #expect(configuration.logLevel == .warning)
        #expect(configuration.network.bind == "::1")
        #expect(configuration.network.webSocketPath == "/ws")
        #expect(configuration.broker.limits.maximumSessionExpiryInterval == UInt32.max)
    }

    @Test func unknownMeridianVariablesAreIgnored() throws {
        let resolved = try MeridianConfiguration.load(
            environment: ["MERIDIAN_API_KEY": "secret", "MERIDIAN_NETWORK_MQTT_PROT": "1", "PATH": "/bin"],
            defaultConfigFile: noDefaultFile
        )
        #expect(resolved.sources.isEmpty)
    }

    @Test(arguments: [
        (
            "MERIDIAN_NETWORK_MQTT_PORT", "abc",
            "network.mqtt_port = \"abc\" (environment variable MERIDIAN_NETWORK_MQTT_PORT): must be an integer"
        ),
        (
            "MERIDIAN_NETWORK_MQTT_PORT", "70000",
            "network.mqtt_port = 70000 (environment variable MERIDIAN_NETWORK_MQTT_PORT): must be between 0 and 65535"
        ),
        (
            "MERIDIAN_NETWORK_MQTT_PORT", "",
            "network.mqtt_port = \"\" (environment variable MERIDIAN_NETWORK_MQTT_PORT): must be an integer"
        ),
        (
            "MERIDIAN_BROKER_LIMITS_MAXIMUM_CONNECTIONS", "99999999999999999999",
            "broker.limits.maximum_connections = \"99999999999999999999\" (environment variable MERIDIAN_BROKER_LIMITS_MAXIMUM_CONNECTIONS): does not fit in 64 bits"
        ),
        (
            "MERIDIAN_BROKER_FEATURES_RETAIN_AVAILABLE", "yes",
            "broker.features.retain_available = \"yes\" (environment variable MERIDIAN_BROKER_FEATURES_RETAIN_AVAILABLE): must be true or false"
        ),
        (
            "MERIDIAN_LOG_LEVEL", "loud",
            "log_level = \"loud\" (environment variable MERIDIAN_LOG_LEVEL): must be one of trace, debug, info, notice, warning, error, critical"
        ),
        ("MERIDIAN_DATA_DIR", "", "data_dir = \"\" (environment variable MERIDIAN_DATA_DIR): must not be empty"),
    ])
    func badEnvironmentValueNamesTheVariable(variable: String, value: String, message: String) {
        #expect(
            problems { () throws(InvalidConfiguration) in
                try MeridianConfiguration.load(environment: [variable: value], defaultConfigFile: noDefaultFile)
            } == [message]
        )
    }

    @Test func environmentVariableNames() {
        let names = MeridianConfiguration.keys.map(\.environmentVariable)
        #expect(Set(names).count == names.count, "two keys map to the same environment variable")
        #expect(
            MeridianConfiguration.key(named: "network.mqtt_port")?.environmentVariable == "MERIDIAN_NETWORK_MQTT_PORT"
        )
        #expect(
            MeridianConfiguration.key(named: "broker.limits.maximum_connections")?.environmentVariable
                == "MERIDIAN_BROKER_LIMITS_MAXIMUM_CONNECTIONS"
        )
        #expect(!names.contains(MeridianConfiguration.configFileVariable))
    }

    // MARK: Validation

    @Test func invalidFileValueNamesKeyFileAndLine() {
        let text =
            (1...10).map { "# line \($0)" }.joined(separator: "\n") + "\n[broker.limits]\nmaximum_connections = -5\n"
        #expect(
            problems { () throws(InvalidConfiguration) in
                try MeridianConfiguration.load(toml: text, path: "meridian.toml")
            }
                == ["broker.limits.maximum_connections = -5 (meridian.toml line 12): must be at least 1"]
        )
    }

    @Test(arguments: [
        (
            "[network]\nmqtt_port = \"1883\"",
            "network.mqtt_port = \"1883\" (m.toml line 2): must be an integer, not a string"
        ),
        ("[network]\nmqtt_port = 65536", "network.mqtt_port = 65536 (m.toml line 2): must be between 0 and 65535"),
        ("[network]\nhttp_port = -1", "network.http_port = -1 (m.toml line 2): must be between 0 and 65535"),
        ("[network]\nmqtt_port = 1.5", "network.mqtt_port = 1.5 (m.toml line 2): must be an integer, not a float"),
        ("[network]\nbind = 0", "network.bind = 0 (m.toml line 2): must be a string, not an integer"),
        ("[network]\nbind = \"\"", "network.bind = \"\" (m.toml line 2): must not be empty"),
        (
            "[network]\nwebsocket_path = \"mqtt\"",
            "network.websocket_path = \"mqtt\" (m.toml line 2): must start with /"
        ),
        (
            "[broker.features]\nmaximum_qos = 3",
            "broker.features.maximum_qos = 3 (m.toml line 2): must be between 0 and 2"
        ),
        (
            "[broker.features]\nretain_available = \"yes\"",
            "broker.features.retain_available = \"yes\" (m.toml line 2): must be a boolean (true or false), not a string"
        ),
        (
            "[broker.limits]\nreceive_maximum = 0",
            "broker.limits.receive_maximum = 0 (m.toml line 2): must be between 1 and 65535"
        ),
        (
            "[broker.limits]\nmaximum_inflight = 70000",
            "broker.limits.maximum_inflight = 70000 (m.toml line 2): must be between 1 and 65535"
        ),
        (
            "[broker.limits]\nmaximum_session_expiry_interval = 4294967296",
            "broker.limits.maximum_session_expiry_interval = 4294967296 (m.toml line 2): must be between 0 and 4294967295"
        ),
        ("[broker]\nsys_interval = -1", "broker.sys_interval = -1 (m.toml line 2): must be between 0 and 86400"),
        (
            "log_level = \"verbose\"",
            "log_level = \"verbose\" (m.toml line 1): must be one of trace, debug, info, notice, warning, error, critical"
        ),
        ("log_level = [\"info\"]", "log_level = [\"info\"] (m.toml line 1): must be a string, not an array"),
        (
            "[broker.limits]\nmax_connections = 5",
            "unknown key broker.limits.max_connections (m.toml line 2); did you mean broker.limits.maximum_connections?"
        ),
        ("[cluster]\nenabled = true", "unknown key cluster.enabled (m.toml line 2)"),
        (
            "[network]\nmqtt_port = 1883\nhttp_port = 1883",
            "network.http_port = 1883 (m.toml line 3) is the same as network.mqtt_port (m.toml line 2): the two listeners need different ports"
        ),
        ("[network]\n\nmqtt_port == 1", "m.toml line 3: unexpected '='; expected a value"),
    ])
    func invalidFileValue(text: String, message: String) {
        #expect(
            problems { () throws(InvalidConfiguration) in try MeridianConfiguration.load(toml: text, path: "m.toml") }
                == [message]
        )
    }

    @Test func everyProblemIsReportedInSourceOrder() throws {
        let configFile = try TemporaryConfigFile("[network]\nmqtt_port = -1\nhttp_port = \"x\"\n")
        defer { configFile.remove() }
        let messages = problems { () throws(InvalidConfiguration) in
            try MeridianConfiguration.load(
                commandLine: [
                    ConfigurationSetting(key: "log_level", value: "chatty", flag: "--log-level"),
                    ConfigurationSetting(key: "nope", value: "1", flag: "--set"),
                ],
                configFile: configFile.path,
                environment: ["MERIDIAN_BROKER_SYS_INTERVAL": "often"],
                defaultConfigFile: noDefaultFile
            )
        }
        #expect(
            messages == [
                "broker.sys_interval = \"often\" (environment variable MERIDIAN_BROKER_SYS_INTERVAL): must be an integer",
                "network.mqtt_port = -1 (\(configFile.path) line 2): must be between 0 and 65535",
                "network.http_port = \"x\" (\(configFile.path) line 3): must be an integer, not a string",
                "log_level = \"chatty\" (--log-level): must be one of trace, debug, info, notice, warning, error, critical",
                "unknown key nope (--set)",
            ]
        )
    }

    @Test func badValueIsAnErrorEvenWhenOverridden() {
        #expect(
            problems { () throws(InvalidConfiguration) in
                try MeridianConfiguration.load(
                    commandLine: [ConfigurationSetting(key: "network.mqtt_port", value: "1884", flag: "--mqtt-port")],
                    environment: ["MERIDIAN_NETWORK_MQTT_PORT": "x"],
                    defaultConfigFile: noDefaultFile
                )
            } == ["network.mqtt_port = \"x\" (environment variable MERIDIAN_NETWORK_MQTT_PORT): must be an integer"]
        )
    }

    @Test func commandLineErrorsNameTheFlag() {
        #expect(
            problems { () throws(InvalidConfiguration) in
                try MeridianConfiguration.load(
                    commandLine: [
                        ConfigurationSetting(key: "network.mqtt_port", value: "70000", flag: "--mqtt-port"),
                        ConfigurationSetting(key: "broker.limits.maximum_connections", value: "0", flag: "--set"),
                        ConfigurationSetting(key: "network.mqtt_prot", value: "1", flag: "--set"),
                    ],
                    defaultConfigFile: noDefaultFile
                )
            } == [
                "network.mqtt_port = 70000 (--mqtt-port): must be between 0 and 65535",
                "broker.limits.maximum_connections = 0 (--set): must be at least 1",
                "unknown key network.mqtt_prot (--set); did you mean network.mqtt_port?",
            ]
        )
    }

    @Test func flagAndSetForTheSameKeyConflict() {
        #expect(
            problems { () throws(InvalidConfiguration) in
                try MeridianConfiguration.load(
                    commandLine: [
                        ConfigurationSetting(key: "network.mqtt_port", value: "1", flag: "--set"),
                        ConfigurationSetting(key: "network.mqtt_port", value: "2", flag: "--mqtt-port"),
                    ],
                    defaultConfigFile: noDefaultFile
                )
            } == ["network.mqtt_port is given twice on the command line (--set and --mqtt-port)"]
        )
    }

    @Test func portsMayBothBeZero() throws {
        let resolved = try MeridianConfiguration.load(toml: "[network]\nmqtt_port = 0\nhttp_port = 0\n")
        #expect(resolved.configuration.network.mqttPort == 0)
        #expect(resolved.configuration.network.httpPort == 0)
    }

    @Test func errorCodes() throws {
        func codes(_ text: String) -> [ConfigurationError.Code] {
            do {
                _ = try MeridianConfiguration.load(toml: text)
                return []
            } catch {
                return error.errors.map(\.code)
            }
        }
        #expect(codes("log_level = 1") == [.invalidValue])
        #expect(codes("nope = 1") == [.unknownKey])
        #expect(codes("log_level = ") == [.syntax])
        #expect(codes("[network]\nmqtt_port = 1\nhttp_port = 1") == [.conflict])
    }
}

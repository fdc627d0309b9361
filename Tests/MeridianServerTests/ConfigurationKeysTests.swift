import Foundation
import MQTTBroker
import MeridianServer
import Testing

extension ConfigurationKey: CustomTestStringConvertible {
    public var testDescription: String { name }
}

/// A valid value for `key` that differs from its default.
func nonDefaultValue(for key: ConfigurationKey) -> TOMLValue {
    // A string key whose check wants a URL.
    if key.name == "database.url" { return .string("postgres://meridian@db.example:5432/meridian?sslmode=require") }
    switch (key.type, key.defaultValue) {
    case (.integer(let range), .integer(let current)):
        return .integer(current == range.lowerBound ? range.lowerBound + 1 : range.lowerBound)
    case (.boolean, .boolean(let current)):
        return .boolean(!current)
    case (.choice(let words), .string(let current)):
        return .string(words.first { $0 != current } ?? current)
    default:
        return .string("/tmp/meridian-test/\"quoted\"/é")
    }
}

/// `value` as a plain-text setting (environment variable or `--set`).
func plainText(_ value: TOMLValue) -> String {
    if case .string(let string) = value { return string }
    return value.tomlText
}

@Suite("Configuration key registry")
struct ConfigurationKeysTests {
    @Test func namesAreDottedSnakeCaseAndUnique() {
        let names = MeridianConfiguration.keys.map(\.name)
        #expect(Set(names).count == names.count)
        for name in names {
            let components = name.split(separator: ".", omittingEmptySubsequences: false)
            #expect(
                components.allSatisfy { !$0.isEmpty && $0.allSatisfy { $0.isLowercase || $0.isNumber || $0 == "_" } },
                "\(name) is not dotted snake_case"
            )
        }
        // No key is also the table of another key.
        for name in names {
            #expect(!names.contains { $0.hasPrefix(name + ".") }, "\(name) is both a key and a table")
        }
    }

    @Test func theIssuesKeysExist() {
        for name in [
            "network.bind", "network.mqtt_port", "network.http_port", "network.websocket_path", "data_dir",
            "log_level", "broker.limits.maximum_connections", "broker.features.retain_available",
            "broker.sys_interval",
        ] {
            #expect(MeridianConfiguration.key(named: name) != nil, "\(name) missing")
        }
    }

    /// Every stored field of `BrokerConfiguration` (and of its limits and features) has a key, so a
    /// field the broker adds later without a key fails here.
    @Test(arguments: ["broker.limits.", "broker.features.", "broker.", "network."])
    func everyFieldIsConfigurable(prefix: String) {
        let fields =
            switch prefix {
            case "broker.limits.": Mirror(reflecting: BrokerConfiguration.Limits())
            case "broker.features.": Mirror(reflecting: BrokerConfiguration.Features())
            case "broker.": Mirror(reflecting: BrokerConfiguration())
            default: Mirror(reflecting: MeridianConfiguration.Network())
            }
        // `maximumQoS` and `maximum_qos` both become "maximumqos".
        func normalized(_ name: some StringProtocol) -> String {
            name.lowercased().filter { $0 != "_" }
        }
        let keyNames = Set(
            MeridianConfiguration.keys.filter { $0.name.hasPrefix(prefix) }.map {
                normalized($0.name.dropFirst(prefix.count))
            }
        )
        #expect(fields.children.count > 1)
        for case let (label?, value) in fields.children {
            // Nested configurations (broker.limits, ...) are checked on their own.
            if value is BrokerConfiguration.Limits || value is BrokerConfiguration.Features { continue }
            #expect(keyNames.contains(normalized(label)), "no key for \(prefix)\(label)")
        }
    }

    @Test(arguments: MeridianConfiguration.keys)
    func defaultIsValid(_ key: ConfigurationKey) {
        #expect(key.validate(key.defaultValue) == nil)
    }

    @Test(arguments: MeridianConfiguration.keys)
    func roundTripsThroughTheFile(_ key: ConfigurationKey) throws {
        let value = nonDefaultValue(for: key)
        let table = key.path.dropLast()
        let header = table.isEmpty ? "" : "[\(table.joined(separator: "."))]\n"
        let resolved = try MeridianConfiguration.load(
            toml: "# set one key\n\(header)\(key.shortName) = \(value.tomlText)\n",
            path: "rt.toml"
        )
        #expect(key.value(in: resolved.configuration) == value)
        #expect(resolved.source(of: key) == .file(path: "rt.toml", line: table.isEmpty ? 2 : 3))
        expectOthersAtDefault(resolved, except: key)
    }

    @Test(arguments: MeridianConfiguration.keys)
    func roundTripsThroughADottedKey(_ key: ConfigurationKey) throws {
        let value = nonDefaultValue(for: key)
        let resolved = try MeridianConfiguration.load(toml: "\(key.name) = \(value.tomlText)\n")
        #expect(key.value(in: resolved.configuration) == value)
    }

    @Test(arguments: MeridianConfiguration.keys)
    func roundTripsThroughTheEnvironment(_ key: ConfigurationKey) throws {
        let value = nonDefaultValue(for: key)
        let resolved = try MeridianConfiguration.load(
            environment: [key.environmentVariable: plainText(value)],
            defaultConfigFile: noDefaultFile
        )
        #expect(key.value(in: resolved.configuration) == value)
        #expect(resolved.source(of: key) == .environment(variable: key.environmentVariable))
        expectOthersAtDefault(resolved, except: key)
    }

    @Test(arguments: MeridianConfiguration.keys)
    func roundTripsThroughSet(_ key: ConfigurationKey) throws {
        let value = nonDefaultValue(for: key)
        let setting = try #require(ConfigurationSetting(assignment: "\(key.name)=\(plainText(value))"))
        let resolved = try MeridianConfiguration.load(commandLine: [setting], defaultConfigFile: noDefaultFile)
        #expect(key.value(in: resolved.configuration) == value)
        #expect(resolved.source(of: key) == .commandLine(flag: "--set"))
    }

    @Test(arguments: MeridianConfiguration.keys.filter { $0.type != .boolean && $0.type != .string })
    func rangeEndsAreAcceptedAndJustOutsideRejected(_ key: ConfigurationKey) {
        var configuration = MeridianConfiguration()
        switch key.type {
        case .integer(let range):
            #expect(key.apply(.integer(range.lowerBound), to: &configuration) == nil)
            #expect(key.value(in: configuration) == .integer(range.lowerBound))
            #expect(key.apply(.integer(range.upperBound), to: &configuration) == nil)
            #expect(key.value(in: configuration) == .integer(range.upperBound))
            #expect(key.apply(.integer(range.lowerBound - 1), to: &configuration) != nil)
            if range.upperBound < Int.max {
                #expect(key.apply(.integer(range.upperBound + 1), to: &configuration) != nil)
            }
            #expect(key.value(in: configuration) == .integer(range.upperBound))
        case .choice(let words):
            for word in words {
                #expect(key.apply(.string(word.uppercased()), to: &configuration) == nil)
                #expect(key.value(in: configuration) == .string(word))
            }
        default:
            break
        }
    }

    @Test func showOutputReadsBackToTheSameConfiguration() throws {
        var commandLine: [ConfigurationSetting] = []
        for key in MeridianConfiguration.keys where key.name != "network.http_port" {
            commandLine.append(
                ConfigurationSetting(key: key.name, value: plainText(nonDefaultValue(for: key)), flag: "--set")
            )
        }
        let resolved = try MeridianConfiguration.load(commandLine: commandLine, defaultConfigFile: noDefaultFile)
        let shown = resolved.renderTOML()
        #expect(shown.contains("mqtt_port = 0"))
        #expect(shown.contains("  # --set\n"))
        #expect(shown.contains("http_port = 8080") && shown.contains("  # default\n"))
        let reread = try MeridianConfiguration.load(toml: shown)
        for key in MeridianConfiguration.keys {
            #expect(key.value(in: reread.configuration) == key.value(in: resolved.configuration), "\(key.name)")
        }
    }

    @Test func showNamesTheSourceOfEachValue() throws {
        let configFile = try TemporaryConfigFile("\n[network]\nmqtt_port = 1884\n")
        defer { configFile.remove() }
        let resolved = try MeridianConfiguration.load(
            commandLine: [ConfigurationSetting(key: "network.bind", value: "127.0.0.1", flag: "--bind")],
            configFile: configFile.path,
            environment: ["MERIDIAN_LOG_LEVEL": "debug"],
            defaultConfigFile: noDefaultFile
        )
        let lines = resolved.renderTOML().split(separator: "\n").map(String.init)
        func line(startingWith prefix: String) -> String? {
            lines.first { $0.hasPrefix(prefix) }
        }
        #expect(line(startingWith: "bind = ")?.hasSuffix("# --bind") == true)
        #expect(line(startingWith: "mqtt_port = 1884")?.hasSuffix("# \(configFile.path) line 3") == true)
        #expect(
            line(startingWith: "log_level = \"debug\"")?.hasSuffix("# environment variable MERIDIAN_LOG_LEVEL") == true
        )
        #expect(line(startingWith: "http_port = 8080")?.hasSuffix("# default") == true)
        #expect(lines.contains("# Config file: \(configFile.path)"))
    }

    private func expectOthersAtDefault(
        _ resolved: ResolvedConfiguration,
        except changed: ConfigurationKey,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        for key in MeridianConfiguration.keys where key.name != changed.name {
            #expect(
                key.value(in: resolved.configuration) == key.defaultValue,
                "\(key.name) changed when setting \(changed.name)",
                sourceLocation: sourceLocation
            )
        }
    }
}

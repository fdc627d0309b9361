import Foundation
import MeridianServer
import Testing

@Suite("Configuration: database.url")
struct DatabaseConfigurationTests {
    @Test("empty by default (embedded SQLite); set from --database, the file or MERIDIAN_DATABASE_URL")
    func sources() throws {
        #expect(MeridianConfiguration().database.url.isEmpty)
        let key = try #require(MeridianConfiguration.key(named: "database.url"))
        #expect(key.flag == "--database")
        #expect(key.environmentVariable == "MERIDIAN_DATABASE_URL")
        let url = "postgres://meridian@db.example:5432/meridian"
        let fromEnvironment = try MeridianConfiguration.load(
            environment: ["MERIDIAN_DATABASE_URL": url],
            defaultConfigFile: noDefaultFile
        )
        #expect(fromEnvironment.configuration.database.url == url)
        let fromFile = try MeridianConfiguration.load(toml: "[database]\nurl = \"\(url)\"\n")
        #expect(fromFile.configuration.database.url == url)
        let fromFlag = try MeridianConfiguration.load(
            commandLine: [ConfigurationSetting(key: "database.url", value: url, flag: "--database")],
            defaultConfigFile: noDefaultFile
        )
        #expect(fromFlag.configuration.database.url == url)
    }

    @Test(
        "a URL that is not a usable postgres:// URL stops start-up naming the key and why",
        arguments: [
            ("mysql://u@h/db", "the scheme must be postgres://"),
            ("postgres://h:5432/db", "must name a user"),
            ("postgres://u@h:5432/", "must name one database"),
            ("postgres://u@h/db?sslmode=maybe", "sslmode must be one of"),
            ("postgres://u@h/db?color=blue", "unknown parameter color"),
            ("not a url", "not a URL"),
        ]
    )
    func invalid(url: String, reason: String) {
        let messages = problems { () throws(InvalidConfiguration) in
            try MeridianConfiguration.load(
                environment: ["MERIDIAN_DATABASE_URL": url],
                defaultConfigFile: noDefaultFile
            )
        }
        #expect(messages.count == 1)
        #expect(messages.first?.hasPrefix("database.url = ") == true, "\(messages)")
        #expect(messages.first?.contains("(environment variable MERIDIAN_DATABASE_URL)") == true, "\(messages)")
        #expect(messages.first?.contains(reason) == true, "\(messages)")
    }

    @Test("the password never shows: not in errors, not in config show")
    func passwordHidden() throws {
        let bad = "postgres://meridian:hunter2-secret@db.example/meridian?sslmode=sometimes"
        let messages = problems { () throws(InvalidConfiguration) in
            try MeridianConfiguration.load(
                commandLine: [ConfigurationSetting(key: "database.url", value: bad, flag: "--database")],
                defaultConfigFile: noDefaultFile
            )
        }
        #expect(messages.count == 1)
        #expect(messages.allSatisfy { !$0.contains("hunter2") }, "\(messages)")
        #expect(messages.first?.contains("meridian:***@db.example") == true, "\(messages)")

        let good = "postgres://meridian:hunter2-secret@db.example/meridian"
        let resolved = try MeridianConfiguration.load(
            environment: ["MERIDIAN_DATABASE_URL": good],
            defaultConfigFile: noDefaultFile
        )
        #expect(resolved.configuration.database.url == good)
        let shown = resolved.renderTOML()
        #expect(!shown.contains("hunter2"))
        #expect(shown.contains(#"url = "postgres://meridian:***@db.example/meridian""#))
    }
}

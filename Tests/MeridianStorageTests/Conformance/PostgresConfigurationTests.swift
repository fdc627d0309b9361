import Foundation
import MeridianStorage
import Testing

@Suite("PostgreSQL URLs")
struct PostgresConfigurationTests {
    @Test("a full URL: user, percent-encoded password, host, port, database, sslmode")
    func full() throws {
        let configuration = try PostgresConfiguration(
            url: "postgresql://meri%40dian:p%2Fss%3Aw0rd@db.example:6543/iot%20prod?sslmode=verify-full"
        )
        #expect(configuration.username == "meri@dian")
        #expect(configuration.password == "p/ss:w0rd")
        #expect(configuration.host == "db.example")
        #expect(configuration.port == 6543)
        #expect(configuration.database == "iot prod")
        #expect(configuration.tls == .verifyFull)
        #expect(configuration.unixSocketDirectory == nil)
        #expect(!configuration.redactedURL.contains("w0rd"))
        #expect(configuration.redactedURL.contains(":***@db.example:6543/"))
    }

    @Test("defaults: port 5432, sslmode prefer, no password; IPv6 hosts; unix sockets")
    func defaults() throws {
        let plain = try PostgresConfiguration(url: "postgres://meridian@127.0.0.1/meridian")
        #expect(plain.port == 5432)
        #expect(plain.tls == .prefer)
        #expect(plain.password == nil)
        #expect(plain.redactedURL == "postgres://meridian@127.0.0.1:5432/meridian")
        let v6 = try PostgresConfiguration(url: "postgres://meridian@[::1]:5433/meridian?sslmode=disable")
        #expect(v6.host == "::1")
        #expect(v6.port == 5433)
        #expect(v6.tls == .disable)
        let socket = try PostgresConfiguration(url: "postgres://meridian@/meridian?host=/run/postgresql")
        #expect(socket.unixSocketDirectory == "/run/postgresql")
        #expect(socket.host == nil)
        #expect(socket.tls == .disable)
    }

    @Test(
        "unusable URLs are refused with the reason, never echoing a password",
        arguments: [
            "http://u@h/db", "postgres://h/db", "postgres://u@h", "postgres://u@h/a/b", "postgres://u@h:0/db",
            "postgres://u@h/db?sslmode=verify-ca", "postgres://u@h/db?x=1", "postgres://u@/db",
            "postgres://u@h/db?host=relative",
            "postgres://u:topsecret@/db?host=/s&sslmode=require", "",
        ]
    )
    func refused(url: String) {
        #expect(throws: PostgresConfiguration.URLError.self) { try PostgresConfiguration(url: url) }
        let problem = PostgresConfiguration.problem(url: url)
        #expect(problem != nil)
        #expect(problem?.contains("topsecret") == false)
    }

    @Test("redact hides only the password")
    func redact() {
        #expect(
            PostgresConfiguration.redact(url: "postgres://u:pw@h:1/d?sslmode=require")
                == "postgres://u:***@h:1/d?sslmode=require"
        )
        #expect(PostgresConfiguration.redact(url: "postgres://u@h/d") == "postgres://u@h/d")
        // Credentials in something that is not a postgres URL are not shown either.
        #expect(!PostgresConfiguration.redact(url: "meridian:hunter2@db.example/meridian").contains("hunter2"))
        #expect(!PostgresConfiguration.redact(url: "postgres://meridian:hun ter2@db/x").contains("hun"))
    }
}

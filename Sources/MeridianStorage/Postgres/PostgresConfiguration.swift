import Foundation

/// Where a ``PostgresDatabase`` connects, read from a `postgres://` URL (libpq's form):
///
///     postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=MODE]
///     postgres://USER@/DATABASE?host=/run/postgresql        (a unix socket directory)
///
/// `sslmode` is `disable`, `prefer` (the default, as libpq: TLS when the server offers it,
/// without verifying its certificate), `require` (TLS, unverified) or `verify-full` (TLS, the
/// certificate verified against the system's trust roots and the host name). User names,
/// passwords and database names may be percent-encoded.
public struct PostgresConfiguration: Sendable, Hashable {
    /// How the connection is encrypted.
    public enum TLSMode: String, Sendable, Hashable, CaseIterable {
        case disable
        case prefer
        case require
        case verifyFull = "verify-full"
    }

    /// Why a URL was refused; never contains the password.
    public struct URLError: Error, Sendable, Hashable, CustomStringConvertible {
        public var description: String
    }

    /// Host name or address (TCP); nil with ``unixSocketDirectory``.
    public var host: String?
    /// TCP port, or the number in the socket's name (`.s.PGSQL.<port>`).
    public var port: Int
    /// The directory holding the server's unix socket, when connecting over one.
    public var unixSocketDirectory: String?
    public var username: String
    /// Secret: never logged or shown (see ``redactedURL``).
    public var password: String?
    public var database: String
    public var tls: TLSMode
    /// Most connections the pool opens (each running transaction holds one).
    public var maximumConnections: Int = 8
    /// How long to wait for a connection (and for the server at start-up).
    public var connectTimeout: Duration = .seconds(10)

    /// A configuration for a TCP connection.
    public init(
        host: String,
        port: Int = 5432,
        username: String,
        password: String? = nil,
        database: String,
        tls: TLSMode = .prefer
    ) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
        self.tls = tls
    }

    /// Reads a `postgres://` (or `postgresql://`) URL.
    public init(url text: String) throws(URLError) {
        func refuse(_ reason: String) -> URLError { URLError(description: reason) }
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased() else {
            throw refuse("not a URL; expected postgres://user@host:port/database")
        }
        guard scheme == "postgres" || scheme == "postgresql" else {
            throw refuse("the scheme must be postgres:// (or postgresql://), not \(scheme)://")
        }
        guard let user = components.user, !user.isEmpty else {
            throw refuse("must name a user: postgres://user@host:port/database")
        }
        var database = components.path
        if database.hasPrefix("/") { database.removeFirst() }
        database = database.removingPercentEncoding ?? database
        guard !database.isEmpty, !database.contains("/") else {
            throw refuse("must name one database after the host: postgres://user@host:port/database")
        }
        var sslmode: TLSMode = .prefer
        var socketDirectory: String?
        for item in components.queryItems ?? [] {
            switch item.name {
            case "sslmode":
                guard let value = item.value, let mode = TLSMode(rawValue: value) else {
                    throw refuse("sslmode must be one of " + TLSMode.allCases.map(\.rawValue).joined(separator: ", "))
                }
                sslmode = mode
            case "host":
                guard let value = item.value, value.hasPrefix("/") else {
                    throw refuse("the host parameter must be the absolute path of the server's socket directory")
                }
                socketDirectory = value
            default:
                throw refuse("unknown parameter \(item.name) (known: sslmode, host)")
            }
        }
        let port = components.port ?? 5432
        guard (1...65535).contains(port) else { throw refuse("the port must be between 1 and 65535") }
        let host = components.host.flatMap { $0.isEmpty ? nil : $0 }
        if socketDirectory == nil {
            guard let host else { throw refuse("must name a host: postgres://user@host:port/database") }
            self.host = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        } else {
            guard host == nil else { throw refuse("give either a host or a host= socket directory, not both") }
            guard sslmode == .prefer || sslmode == .disable else {
                throw refuse("sslmode=\(sslmode.rawValue) needs a TCP host, not a unix socket")
            }
            self.host = nil
        }
        self.port = port
        self.unixSocketDirectory = socketDirectory
        self.username = user
        self.password = components.password
        self.database = database
        self.tls = socketDirectory == nil ? sslmode : .disable
    }

    /// Why `text` is not a usable URL, or nil when it is (for configuration checks).
    public static func problem(url text: String) -> String? {
        do {
            _ = try PostgresConfiguration(url: text)
            return nil
        } catch {
            return error.description
        }
    }

    /// Where the server is, without the password: `postgres://meridian@db.example:5432/meridian`.
    public var redactedURL: String {
        let user = username.addingPercentEncoding(withAllowedCharacters: .urlUserAllowed) ?? username
        let name = database.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? database
        let secret = password == nil ? "" : ":***"
        if let unixSocketDirectory {
            return "postgres://\(user)\(secret)@/\(name)?host=\(unixSocketDirectory)"
        }
        let shownHost = (host ?? "").contains(":") ? "[\(host ?? "")]" : (host ?? "")
        return "postgres://\(user)\(secret)@\(shownHost):\(port)/\(name)"
    }

    /// `url` with its password (if any) replaced by `***`. Text that does not read as a URL
    /// with a scheme, or that has an `@` whose user part was not understood, is shown as
    /// `<not a URL>`: it never shows a secret by accident.
    public static func redact(url text: String) -> String {
        let notAURL = "<not a URL>"
        guard var components = URLComponents(string: text), components.scheme != nil,
            let schemeEnd = text.range(of: "://")
        else {
            return text.contains("@") ? notAURL : text
        }
        if components.password != nil {
            components.password = "***"
        } else if let at = text.lastIndex(of: "@"), at > schemeEnd.upperBound,
            text[schemeEnd.upperBound..<at].contains(":")
        {
            // A user:password part the parser did not take as one.
            return notAURL
        }
        return components.string ?? notAURL
    }

    /// The same server and credentials, another database (tests, tools).
    public func with(database: String) -> PostgresConfiguration {
        var copy = self
        copy.database = database
        return copy
    }
}

import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// One PostgreSQL database shared by Meridian's stores: a connection pool (PostgresNIO's
/// `PostgresClient`) and the threads that run the stores' synchronous transaction bodies.
///
/// Stores (``PostgresRegistryStore``, later the telemetry store) take a `PostgresDatabase`, apply
/// their own named migrations with ``migrate(_:)`` and run their work in ``transaction(_:_:)``.
///
/// The pool only works while ``run()`` runs: run it (once) as a `Service`, or in a task of its
/// own, before using the database and for as long as any store uses it; it ends on graceful
/// shutdown or cancellation, closing the connections. ``withRunning(_:)`` does both for a scope.
///
/// Transaction bodies are synchronous closures (the stores' protocols are): each runs on a
/// thread of the database's own thread pool, never on Swift's cooperative pool, issuing its
/// queries one after the other on one connection and waiting for each.
public final class PostgresDatabase: Service, Sendable {
    /// Why the database could not be used; never contains a password.
    public struct DatabaseError: Error, Sendable, CustomStringConvertible {
        public var description: String
        /// The server's SQLSTATE (`23505`), when the server refused a statement.
        public var sqlState: String?

        public init(_ description: String, sqlState: String? = nil) {
            self.description = description
            self.sqlState = sqlState
        }
    }

    /// What kind of transaction to run.
    public enum TransactionMode: Sendable, Hashable {
        /// `REPEATABLE READ READ ONLY`: one consistent snapshot for the whole body.
        case read
        /// `READ COMMITTED`, serialized with every other writer holding the same `lock` (in this
        /// process and in any other process using the database): the body sees everything earlier
        /// writers committed, and nothing changes under it that another writer of the same lock
        /// would change.
        case write(lock: Int64)
    }

    public let configuration: PostgresConfiguration
    let client: PostgresClient
    private let threads: NIOThreadPool
    /// Where the pool's own tasks run (see ``DedicatedTaskExecutor``).
    let executor = DedicatedTaskExecutor(label: "meridian.postgres")
    private let eventLoopGroup: any EventLoopGroup
    let logger: Logger
    /// PostgresNIO's own logging, at info at the lowest: its debug and trace output carries rows.
    let queryLogger: Logger
    /// Writers waiting in this process, per lock.
    private let writers = Mutex<[Int64: AsyncGate]>([:])
    /// How long a blocking caller (``blockingConnection(_:)``) waits for a connection before it
    /// fails: long enough for any burst, short enough that a stalled pool shows as an error.
    let leaseTimeout: Duration

    /// A database at `configuration`; nothing connects before ``run()`` and the first use.
    public convenience init(
        configuration: PostgresConfiguration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger
    ) {
        self.init(configuration: configuration, eventLoopGroup: eventLoopGroup, logger: logger, leaseTimeout: .seconds(120))
    }

    /// A database whose blocking callers wait at most `leaseTimeout` for a connection (tests
    /// shorten it).
    init(
        configuration: PostgresConfiguration,
        eventLoopGroup: any EventLoopGroup,
        logger: Logger,
        leaseTimeout: Duration
    ) {
        self.leaseTimeout = leaseTimeout
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        var queryLogger = logger
        if queryLogger.logLevel < .info { queryLogger.logLevel = .info }
        self.queryLogger = queryLogger
        var options = PostgresClient.Configuration.Options()
        options.maximumConnections = max(1, configuration.maximumConnections)
        options.minimumConnections = 0
        options.connectTimeout = configuration.connectTimeout
        options.keepAliveBehavior = .init(frequency: .seconds(30))
        var clientConfiguration = Self.clientConfiguration(configuration)
        clientConfiguration.options = options
        client = PostgresClient(
            configuration: clientConfiguration,
            eventLoopGroup: eventLoopGroup,
            backgroundLogger: queryLogger
        )
        threads = NIOThreadPool(numberOfThreads: max(1, configuration.maximumConnections))
        threads.start()
    }

    deinit {
        threads.shutdownGracefully { _ in }
    }

    private static func unverifiedTLS() -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .none
        return configuration
    }

    private static func clientTLS(_ mode: PostgresConfiguration.TLSMode) -> PostgresClient.Configuration.TLS {
        switch mode {
        case .disable: return .disable
        case .prefer: return .prefer(unverifiedTLS())
        case .require: return .require(unverifiedTLS())
        case .verifyFull: return .require(.makeClientConfiguration())
        }
    }

    private static func connectionTLS(
        _ mode: PostgresConfiguration.TLSMode
    ) throws -> PostgresConnection.Configuration.TLS {
        switch mode {
        case .disable: return .disable
        case .prefer: return .prefer(try NIOSSLContext(configuration: unverifiedTLS()))
        case .require: return .require(try NIOSSLContext(configuration: unverifiedTLS()))
        case .verifyFull: return .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
        }
    }

    private static func clientConfiguration(_ configuration: PostgresConfiguration) -> PostgresClient.Configuration {
        if let directory = configuration.unixSocketDirectory {
            return PostgresClient.Configuration(
                unixSocketPath: Self.socketPath(directory: directory, port: configuration.port),
                username: configuration.username,
                password: configuration.password,
                database: configuration.database
            )
        }
        return PostgresClient.Configuration(
            host: configuration.host ?? "localhost",
            port: configuration.port,
            username: configuration.username,
            password: configuration.password,
            database: configuration.database,
            tls: clientTLS(configuration.tls)
        )
    }

    private static func socketPath(directory: String, port: Int) -> String {
        (directory as NSString).appendingPathComponent(".s.PGSQL.\(port)")
    }

    /// Runs the connection pool until graceful shutdown or cancellation, then closes its
    /// connections (and stops the transaction threads): the `Service` entry point.
    public func run() async throws {
        // The pool's run loop opens connections in child tasks, which inherit the preference:
        // the pool serves blocking callers also while the cooperative pool is exhausted.
        await withTaskExecutorPreference(executor) {
            await client.run()
        }
        try? await threads.shutdownGracefully()
    }

    /// Runs the pool while `body` runs, and until `body` has returned: graceful shutdown of the
    /// surrounding task does not stop it early, so that services shutting down inside `body`
    /// can still write (the application, tests, tools).
    public func withRunning<T>(_ body: (PostgresDatabase) async throws -> T) async throws -> T {
        // A detached task does not inherit the caller's graceful-shutdown context; it ends
        // only when cancelled below.
        let runner = Task.detached { try? await self.run() }
        let result: Result<T, any Error>
        do {
            result = .success(try await body(self))
        } catch {
            result = .failure(error)
        }
        runner.cancel()
        await runner.value
        return try result.get()
    }

    /// Connects once, directly (not through the pool), to report an unreachable server, refused
    /// credentials or a missing database right away and with the reason (the pool only retries).
    public func checkConnection() async throws {
        var connectionConfiguration: PostgresConnection.Configuration
        let tls: PostgresConnection.Configuration.TLS
        do {
            tls = try Self.connectionTLS(configuration.tls)
        } catch {
            throw DatabaseError("cannot set up TLS for PostgreSQL at \(configuration.redactedURL): \(error)")
        }
        if let directory = configuration.unixSocketDirectory {
            connectionConfiguration = .init(
                unixSocketPath: Self.socketPath(directory: directory, port: configuration.port),
                username: configuration.username,
                password: configuration.password,
                database: configuration.database
            )
        } else {
            connectionConfiguration = .init(
                host: configuration.host ?? "localhost",
                port: configuration.port,
                username: configuration.username,
                password: configuration.password,
                database: configuration.database,
                tls: tls
            )
        }
        connectionConfiguration.options.connectTimeout = TimeAmount.nanoseconds(
            configuration.connectTimeout.components.seconds * 1_000_000_000 + configuration.connectTimeout.components
                .attoseconds / 1_000_000_000
        )
        do {
            let connection = try await PostgresConnection.connect(
                on: eventLoopGroup.any(),
                configuration: connectionConfiguration,
                id: 0,
                logger: queryLogger
            )
            try? await connection.close()
        } catch {
            throw Self.describe(error, doing: "cannot connect to PostgreSQL at \(configuration.redactedURL)")
        }
    }

    // MARK: Transactions

    /// Runs `body` in a transaction on one connection, on a thread of the database's own pool:
    /// committed when it returns, rolled back when it throws (its error is rethrown).
    ///
    /// Write transactions take `pg_advisory_xact_lock(lock)` first, so writers of the same lock
    /// run one at a time across every process using the database (released at commit or
    /// rollback); in this process they also queue before taking a connection, so that waiting
    /// writers leave the pool's connections to readers.
    func transaction<T: Sendable>(
        _ mode: TransactionMode,
        _ body: @escaping @Sendable (PostgresSession) throws -> T
    ) async throws -> T {
        var gate: AsyncGate?
        if case .write(let lock) = mode {
            gate = writers.withLock { gates in
                if let gate = gates[lock] { return gate }
                let gate = AsyncGate()
                gates[lock] = gate
                return gate
            }
            await gate?.acquire()
        }
        defer { gate?.release() }
        let logger = queryLogger
        let threads = self.threads
        do {
            return try await client.withConnection { connection in
                try await threads.runIfActive {
                    let session = PostgresSession(connection: connection, logger: logger)
                    switch mode {
                    case .read:
                        try session.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    case .write(let lock):
                        try session.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
                        try session.execute("SELECT pg_advisory_xact_lock(\(lock))")
                    }
                    let result: T
                    do {
                        result = try body(session)
                    } catch {
                        session.rollback()
                        throw BodyError(error: error)
                    }
                    do {
                        try session.execute("COMMIT")
                    } catch {
                        session.rollback()
                        throw error
                    }
                    return result
                }
            }
        } catch let error as BodyError {
            throw error.error
        } catch let error as DatabaseError {
            throw error
        } catch {
            // No connection (server down, pool closed) or no thread: say where.
            throw Self.describe(error, doing: "PostgreSQL at \(configuration.redactedURL)")
        }
    }

    /// What a transaction body threw, passed through untouched.
    private struct BodyError: Error {
        var error: any Error
    }

    /// Runs one statement outside any transaction (`CREATE DATABASE`, repairs, tests). The SQL
    /// is used as given: never build it from input.
    public func unsafeExecute(sql: String) async throws {
        do {
            try await client.withConnection { connection in
                // The whole answer, so the statement has finished when the connection goes back.
                _ = try await connection.answer(PostgresQuery(unsafeSQL: sql), logger: queryLogger).get()
            }
        } catch {
            throw Self.describe(error, doing: "PostgreSQL")
        }
    }

    // MARK: Errors

    /// A readable error without secrets: PostgresNIO's own errors print a generic text to avoid
    /// leaking (their details can hold bound values); here only the server's message (which
    /// names constraints, never the values: the detail field is left out), the SQLSTATE, or
    /// the network error are kept.
    static func describe(_ error: any Error, doing context: String) -> DatabaseError {
        if let error = error as? DatabaseError { return error }
        guard let error = error as? PSQLError else { return DatabaseError("\(context): \(error)") }
        if let info = error.serverInfo {
            let state = info[.sqlState]
            let message = info[.message] ?? "error"
            return DatabaseError("\(context): \(message)" + (state.map { " (SQLSTATE \($0))" } ?? ""), sqlState: state)
        }
        var reason = "\(error.code)"
        if let underlying = error.underlying { reason += ": \(underlying)" }
        return DatabaseError("\(context): \(reason)")
    }
}

/// A FIFO async mutex: one holder at a time, waiters resumed in arrival order. Waiting does not
/// block a thread.
final class AsyncGate: Sendable {
    private struct State {
        var held = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    func acquire() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let acquired = state.withLock { state -> Bool in
                if state.held {
                    state.waiters.append(continuation)
                    return false
                }
                state.held = true
                return true
            }
            if acquired { continuation.resume() }
        }
    }

    func release() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiters.isEmpty {
                state.held = false
                return nil
            }
            return state.waiters.removeFirst()
        }
        next?.resume()
    }
}

import Foundation
import Logging
import NIOCore
import PostgresNIO

/// One connection inside a transaction, used synchronously from a transaction body's thread
/// (never an event loop, never the cooperative pool): each call sends one statement and waits
/// for its result.
///
/// Values are always bound parameters: a `PostgresQuery` literal's interpolations
/// (`"... WHERE id = \(id)"`) become `$1`, `$2`, ...; dynamic SQL is built with
/// ``PostgresStatement``.
struct PostgresSession {
    let connection: PostgresConnection
    let logger: Logger

    /// Runs a statement; returns the number of rows it affected (0 when it says none).
    @discardableResult
    func execute(_ query: PostgresQuery) throws -> Int {
        try run(query).metadata.rows ?? 0
    }

    /// Runs a query and returns its rows.
    func rows(_ query: PostgresQuery) throws -> [PostgresRandomAccessRow] {
        try run(query).rows.map { $0.makeRandomAccess() }
    }

    /// Runs a query and returns its first row.
    func row(_ query: PostgresQuery) throws -> PostgresRandomAccessRow? {
        try run(query).rows.first?.makeRandomAccess()
    }

    private func run(_ query: PostgresQuery) throws -> PostgresQueryResult {
        do {
            return try connection.answer(query, logger: logger).wait()
        } catch {
            throw PostgresDatabase.describe(error, doing: "PostgreSQL")
        }
    }

    /// Ends a failed transaction. Should the rollback itself fail, the connection is closed so
    /// that the pool never hands out a connection stuck in a transaction.
    func rollback() {
        do {
            try execute("ROLLBACK")
        } catch {
            _ = try? connection.close().wait()
        }
    }
}

/// SQL built piece by piece (a query whose filters vary) with every value bound: `bind(_:)`
/// appends the value to the bindings and returns its placeholder (`$3`).
struct PostgresStatement {
    private(set) var sql: String
    private var bindings = PostgresBindings()

    init(_ sql: String) {
        self.sql = sql
    }

    mutating func append(_ fragment: String) {
        sql += fragment
    }

    mutating func bind(_ value: some PostgresDynamicTypeEncodable) -> String {
        bindings.append(value)
        return "$\(bindings.count)"
    }

    var query: PostgresQuery {
        PostgresQuery(unsafeSQL: sql, binds: bindings)
    }
}

extension PostgresRandomAccessRow {
    /// The column's value; a NULL or a value of another type throws (a damaged row is an error,
    /// never a crash).
    func value<T: PostgresDecodable>(_ column: String, as type: T.Type = T.self) throws -> T {
        guard contains(column) else {
            throw PostgresDatabase.DatabaseError("PostgreSQL: no column \(column) in the result")
        }
        do {
            return try self[column].decode(T.self)
        } catch {
            throw PostgresDatabase.DatabaseError("PostgreSQL: column \(column) does not hold a \(T.self)")
        }
    }

    /// The column's value, nil for NULL.
    func optional<T: PostgresDecodable>(_ column: String, as type: T.Type = T.self) throws -> T?
    where T._DecodableType == T {
        try value(column, as: T?.self)
    }
}

extension PostgresConnection {
    /// The server's closing the connection: what a statement on it fails with.
    struct Closed: Error, CustomStringConvertible {
        var description: String { "the connection to the server is closed" }
    }

    /// Runs `query`; fails if the connection is closed before the statement reaches it.
    ///
    /// PostgresNIO writes a statement to its channel without a promise: on a channel that has
    /// just closed (a backend terminated by the server, a restart) the statement is dropped and
    /// its result never completes. A caller waiting for it would wait for ever, holding its
    /// thread and its pool lease. The check runs on the channel's event loop right after the
    /// write (tasks run in order there): if the channel is closed by then, the write was dropped
    /// and the statement fails; if not, the connection's handler has it and fails it should the
    /// channel close later. (Not a callback on the close future: that would keep one closure per
    /// statement for the life of the connection.)
    func answer(_ query: PostgresQuery, logger: Logger) -> EventLoopFuture<PostgresQueryResult> {
        let eventLoop = closeFuture.eventLoop
        if isClosed { return eventLoop.makeFailedFuture(Closed()) }
        let promise = eventLoop.makePromise(of: PostgresQueryResult.self)
        self.query(query, logger: logger).cascade(to: promise)
        eventLoop.execute {
            // A second completion of the promise is ignored: the first wins.
            if self.isClosed { promise.fail(Closed()) }
        }
        return promise.futureResult
    }
}

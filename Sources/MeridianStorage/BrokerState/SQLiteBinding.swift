import GRDB
import GRDBSQLite
import NIOCore

/// Binds and steps a prepared statement through SQLite's C API: the broker state writer runs a
/// handful of statements hundreds of thousands of times a second, and GRDB's general argument
/// path (an array of boxed values per row) costs more than the write itself.
struct SQLiteBinding {
    private let statement: OpaquePointer
    private var index: Int32 = 0

    /// SQLite copies the bytes (`SQLITE_TRANSIENT`).
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    private init(_ statement: Statement) {
        self.statement = statement.sqliteStatement
        sqlite3_reset(self.statement)
    }

    /// Binds the values `bind` adds, in order, and runs the statement once.
    static func run(_ statement: Statement, in db: Database, _ bind: (inout SQLiteBinding) -> Void) throws {
        var binding = SQLiteBinding(statement)
        bind(&binding)
        let code = sqlite3_step(binding.statement)
        guard code == SQLITE_DONE else {
            let message = db.sqliteConnection.flatMap { sqlite3_errmsg($0) }.map { String(cString: $0) } ?? "unknown error"
            sqlite3_reset(binding.statement)
            throw DatabaseError(resultCode: ResultCode(rawValue: code), message: message)
        }
        sqlite3_reset(binding.statement)
    }

    private mutating func next() -> Int32 {
        index += 1
        return index
    }

    mutating func bind(_ value: Int64) {
        sqlite3_bind_int64(statement, next(), value)
    }

    mutating func bind(_ value: Int64?) {
        if let value { bind(value) } else { bindNull() }
    }

    mutating func bind(_ value: Int) {
        sqlite3_bind_int64(statement, next(), Int64(value))
    }

    mutating func bind(_ value: Bool) {
        sqlite3_bind_int64(statement, next(), value ? 1 : 0)
    }

    mutating func bind(_ value: String) {
        let position = next()
        var value = value
        value.withUTF8 { bytes in
            _ = sqlite3_bind_text(statement, position, UnsafeRawPointer(bytes.baseAddress)?.assumingMemoryBound(to: CChar.self), Int32(bytes.count), Self.transient)
        }
    }

    mutating func bind(_ value: String?) {
        if let value { bind(value) } else { bindNull() }
    }

    /// Binds bytes; an empty buffer as an empty blob (never NULL, unless `emptyIsNull`).
    mutating func bind(_ buffer: ByteBuffer, emptyIsNull: Bool = false) {
        let position = next()
        if buffer.readableBytes == 0 {
            if emptyIsNull {
                sqlite3_bind_null(statement, position)
            } else {
                sqlite3_bind_zeroblob(statement, position, 0)
            }
            return
        }
        buffer.withUnsafeReadableBytes { bytes in
            _ = sqlite3_bind_blob(statement, position, bytes.baseAddress, Int32(bytes.count), Self.transient)
        }
    }

    mutating func bindNull() {
        sqlite3_bind_null(statement, next())
    }
}

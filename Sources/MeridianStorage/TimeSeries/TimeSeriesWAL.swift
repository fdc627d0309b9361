import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The time-series engine's write-ahead log: numbered segment files (`00000001.wal`, ...) in
/// one directory, each a sequence of records `[length u32][CRC-32C u32][payload]`. Appends go to
/// the newest segment; a checkpoint rotates to a new one and removes the segments whose records
/// are all in the store. Used by one writer at a time (the engine serialises it).
final class TimeSeriesWAL {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    let directory: String
    private let logger: Logger
    private var descriptor: Int32 = -1
    private(set) var segment: Int = 0
    /// Bytes in the current segment.
    private(set) var size: Int = 0

    /// The largest record accepted on replay (a length beyond it means a torn write).
    static let maximumRecordSize = 256 << 20

    init(directory: String, logger: Logger) throws {
        self.directory = directory
        self.logger = logger
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw Failure(description: "cannot create the telemetry WAL directory \(directory): \(error)")
        }
    }

    deinit {
        if descriptor >= 0 { close(descriptor) }
    }

    /// The segment numbers present, oldest first.
    func segments() throws -> [Int] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.compactMap { name in
            guard name.hasSuffix(".wal") else { return nil }
            return Int(name.dropLast(4))
        }.sorted()
    }

    private func path(_ segment: Int) -> String {
        let digits = String(segment)
        return directory + "/" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits + ".wal"
    }

    /// Reads every record of every segment, oldest first. A torn or corrupt tail (a crash mid
    /// write) ends the segment: it is truncated there, with a log line.
    func replay(_ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        for number in try segments() {
            let path = path(number)
            guard let data = FileManager.default.contents(atPath: path) else {
                throw Failure(description: "cannot read the telemetry WAL segment \(path)")
            }
            var valid = 0
            var problem: String?
            try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
                var offset = 0
                while offset < raw.count {
                    guard offset + 8 <= raw.count else {
                        problem = "a record header is cut short"
                        break
                    }
                    let length = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
                    let checksum = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self))
                    guard length <= Self.maximumRecordSize, offset + 8 + length <= raw.count else {
                        problem = "a record is cut short"
                        break
                    }
                    let payload = UnsafeRawBufferPointer(rebasing: raw[(offset + 8)..<(offset + 8 + length)])
                    guard CRC32C.checksum(payload) == checksum else {
                        problem = "a record fails its checksum"
                        break
                    }
                    try body(payload)
                    offset += 8 + length
                    valid = offset
                }
            }
            if let problem {
                logger.warning(
                    "telemetry WAL has a torn or corrupt tail; truncating it",
                    metadata: ["wal.segment": "\(path)", "wal.valid_bytes": "\(valid)", "wal.dropped_bytes": "\(data.count - valid)", "wal.problem": "\(problem)"]
                )
                guard truncate(path, off_t(valid)) == 0 else {
                    throw Failure(description: "cannot truncate the telemetry WAL segment \(path): \(String(cString: strerror(errno)))")
                }
            }
        }
    }

    /// Opens a new segment after the existing ones; returns the number of the last segment
    /// before it (0 if none).
    @discardableResult
    func rotate() throws -> Int {
        let previous = max(segment, try segments().last ?? 0)
        if descriptor >= 0 {
            close(descriptor)
            descriptor = -1
        }
        let next = previous + 1
        let fd = open(path(next), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw Failure(description: "cannot create the telemetry WAL segment \(path(next)): \(String(cString: strerror(errno)))")
        }
        descriptor = fd
        segment = next
        size = 0
        syncDirectory()
        return previous
    }

    /// Appends records (each already framed by ``frame(_:into:)``); not yet durable.
    func append(_ framed: [UInt8]) throws {
        if descriptor < 0 { try rotate() }
        var written = 0
        try framed.withUnsafeBytes { raw in
            while written < raw.count {
                let result = write(descriptor, raw.baseAddress! + written, raw.count - written)
                if result < 0 {
                    if errno == EINTR { continue }
                    throw Failure(description: "cannot write the telemetry WAL: \(String(cString: strerror(errno)))")
                }
                written += result
            }
        }
        size += written
    }

    /// Makes every appended record durable.
    func sync() throws {
        guard descriptor >= 0 else { return }
        #if canImport(Darwin)
        let result = fsync(descriptor)
        #else
        let result = fdatasync(descriptor)
        #endif
        guard result == 0 else {
            throw Failure(description: "cannot sync the telemetry WAL: \(String(cString: strerror(errno)))")
        }
    }

    /// Removes segments up to and including `last`.
    func removeSegments(through last: Int) {
        for number in (try? segments()) ?? [] where number <= last && number != segment {
            unlink(path(number))
        }
    }

    /// Bytes on disk in all segments.
    func totalSize() -> Int {
        ((try? segments()) ?? []).reduce(0) { total, number in
            let size = (try? FileManager.default.attributesOfItem(atPath: path(number))[.size] as? Int) ?? 0
            return total + size
        }
    }

    private func syncDirectory() {
        let fd = open(directory, O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            fsync(fd)
            close(fd)
        }
    }

    /// Frames one record's payload (length, checksum) at the end of `buffer`.
    static func frame(_ payload: [UInt8], into buffer: inout [UInt8]) {
        withUnsafeBytes(of: UInt32(payload.count).littleEndian) { buffer.append(contentsOf: $0) }
        let checksum = payload.withUnsafeBytes { CRC32C.checksum($0) }
        withUnsafeBytes(of: checksum.littleEndian) { buffer.append(contentsOf: $0) }
        buffer.append(contentsOf: payload)
    }
}

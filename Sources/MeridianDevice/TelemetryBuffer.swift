import DequeModule
import Foundation

/// The samples a device has accepted and the server has not yet acknowledged, oldest first.
///
/// Every sample gets a sequence number. The sender takes a batch from the front and, once the
/// server acknowledged it, removes everything up to its last sequence number: samples evicted
/// meanwhile (``MeridianDevice/BufferOverflow/dropOldest``) do not upset that.
///
/// On disk (optional), the buffer is a journal of lines `<sequence> <sample JSON>` and a file
/// holding the highest acknowledged (or evicted) sequence number; opening it reads back what
/// was not acknowledged. The journal starts afresh whenever the buffer runs empty.
struct TelemetryBuffer {
    struct Entry {
        var sequence: UInt64
        /// `{"ts": <ms>, "values": {...}}`
        var json: String
        /// When it was added (this run; samples read back from disk count from the open).
        var added = ContinuousClock.now
    }

    private(set) var entries = Deque<Entry>()
    private var nextSequence: UInt64 = 1
    private let journal: Journal?

    init(directory: String?, name: String) throws {
        guard let directory else {
            journal = nil
            return
        }
        let journal = try Journal(directory: directory, name: name)
        self.journal = journal
        for entry in try journal.load() {
            entries.append(entry)
            nextSequence = entry.sequence + 1
        }
    }

    var count: Int { entries.count }
    var isEmpty: Bool { entries.isEmpty }

    /// Appends a sample; returns its sequence number.
    @discardableResult
    mutating func append(_ json: String) throws -> UInt64 {
        let entry = Entry(sequence: nextSequence, json: json)
        nextSequence += 1
        try journal?.append(entry)
        entries.append(entry)
        return entry.sequence
    }

    /// Up to `limit` samples from the front.
    func front(_ limit: Int) -> [Entry] {
        Array(entries.prefix(limit))
    }

    /// Removes every sample up to and including `sequence` (acknowledged, or evicted).
    mutating func remove(through sequence: UInt64) throws {
        var removed = false
        while let first = entries.first, first.sequence <= sequence {
            entries.removeFirst()
            removed = true
        }
        guard removed || entries.isEmpty else { return }
        if entries.isEmpty {
            try journal?.reset()
        } else {
            try journal?.acknowledge(through: sequence)
        }
    }

    /// Drops the oldest sample; returns whether there was one.
    mutating func dropOldest() throws -> Bool {
        guard let first = entries.first else { return false }
        try remove(through: first.sequence)
        return true
    }

    /// The two files of a buffer on disk.
    private final class Journal {
        let journalPath: String
        let acknowledgedPath: String
        let handle: FileHandle

        init(directory: String, name: String) throws {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            } catch {
                throw MeridianDeviceError.storage("cannot create \(directory): \(error.localizedDescription)")
            }
            let safe = String(name.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "_" })
            journalPath = (directory as NSString).appendingPathComponent("\(safe).telemetry")
            acknowledgedPath = journalPath + ".acked"
            if !FileManager.default.fileExists(atPath: journalPath) {
                guard FileManager.default.createFile(atPath: journalPath, contents: nil) else {
                    throw MeridianDeviceError.storage("cannot create \(journalPath)")
                }
            }
            guard let handle = FileHandle(forUpdatingAtPath: journalPath) else {
                throw MeridianDeviceError.storage("cannot open \(journalPath)")
            }
            self.handle = handle
        }

        deinit {
            try? handle.close()
        }

        /// The samples not yet acknowledged. A torn last line (a crash mid-write) is ignored.
        func load() throws -> [Entry] {
            let acknowledged = (try? String(contentsOfFile: acknowledgedPath, encoding: .utf8))
                .flatMap { UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
            let data: Data
            do {
                data = try Data(contentsOf: URL(fileURLWithPath: journalPath))
            } catch {
                throw MeridianDeviceError.storage("cannot read \(journalPath): \(error.localizedDescription)")
            }
            var entries: [Entry] = []
            var validLength = 0
            var offset = 0
            for line in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
                let lineLength = line.count
                defer { offset += lineLength + 1 }
                guard offset + lineLength < data.count else { break }  // no newline: torn
                guard let space = line.firstIndex(of: UInt8(ascii: " ")),
                    let sequence = UInt64(String(decoding: line[line.startIndex..<space], as: UTF8.self))
                else { break }
                validLength = offset + lineLength + 1
                if sequence > acknowledged {
                    entries.append(Entry(sequence: sequence, json: String(decoding: line[(space + 1)...], as: UTF8.self)))
                }
            }
            do {
                try handle.truncate(atOffset: UInt64(validLength))
                try handle.seekToEnd()
            } catch {
                throw MeridianDeviceError.storage("cannot open \(journalPath): \(error.localizedDescription)")
            }
            return entries
        }

        func append(_ entry: Entry) throws {
            do {
                try handle.write(contentsOf: Data("\(entry.sequence) \(entry.json)\n".utf8))
            } catch {
                throw MeridianDeviceError.storage("cannot write \(journalPath): \(error.localizedDescription)")
            }
        }

        func acknowledge(through sequence: UInt64) throws {
            do {
                try Data(String(sequence).utf8).write(to: URL(fileURLWithPath: acknowledgedPath), options: .atomic)
            } catch {
                throw MeridianDeviceError.storage("cannot write \(acknowledgedPath): \(error.localizedDescription)")
            }
        }

        func reset() throws {
            do {
                try handle.truncate(atOffset: 0)
                try? FileManager.default.removeItem(atPath: acknowledgedPath)
            } catch {
                throw MeridianDeviceError.storage("cannot truncate \(journalPath): \(error.localizedDescription)")
            }
        }
    }
}

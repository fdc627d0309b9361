import Crypto
import Foundation

/// Who did something: a user, an API key, a device, or Meridian itself.
public struct AuditActor: Sendable, Hashable, Codable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable, Codable {
        case user
        case apiKey = "api-key"
        case device
        case system
    }

    public var kind: Kind
    public var id: String
    /// The address the request came from, when there was one.
    public var remoteAddress: String?

    public init(kind: Kind, id: String, remoteAddress: String? = nil) {
        self.kind = kind
        self.id = id
        self.remoteAddress = remoteAddress
    }

    /// Meridian itself (first start, expiry sweeps).
    public static let system = AuditActor(kind: .system, id: "meridian")

    public var description: String { "\(kind.rawValue):\(id)" }
}

/// What is about to be recorded: every change the registry makes carries one, written in the same
/// transaction as the change.
public struct AuditRecord: Sendable, Hashable {
    public var tenantID: String?
    public var actor: AuditActor
    /// e.g. `device.create`, `credential.revoke`.
    public var action: String
    /// e.g. `device:abc123`.
    public var target: String
    /// Non-secret facts about the change (never tokens, passwords or keys).
    public var details: [String: String]

    public init(tenantID: String?, actor: AuditActor, action: String, target: String, details: [String: String] = [:]) {
        self.tenantID = tenantID
        self.actor = actor
        self.action = action
        self.target = target
        self.details = details
    }
}

/// One entry of the append-only audit log. Each carries the SHA-256 of the entry before it, so
/// editing, deleting or reordering entries breaks the chain (see ``AuditChain``).
public struct AuditEntry: Sendable, Hashable, Codable {
    /// 1, 2, 3, ... without gaps.
    public var sequence: Int64
    /// Milliseconds since 1970 (what the hash covers).
    public var timestampMilliseconds: Int64
    public var tenantID: String?
    public var actor: AuditActor
    public var action: String
    public var target: String
    public var details: [String: String]
    /// The previous entry's ``hash`` (64 zeros for the first).
    public var previousHash: String
    /// SHA-256 (hex) over this entry's fields and ``previousHash``.
    public var hash: String

    public var timestamp: Date { Date(timeIntervalSince1970: Double(timestampMilliseconds) / 1000) }

    /// The hash of the first entry's predecessor.
    public static let genesisHash = String(repeating: "0", count: 64)

    /// Makes the entry that follows `previousHash`, with its hash computed.
    public init(sequence: Int64, timestamp: Date, record: AuditRecord, previousHash: String) {
        self.sequence = sequence
        self.timestampMilliseconds = Int64((timestamp.timeIntervalSince1970 * 1000).rounded(.down))
        self.tenantID = record.tenantID
        self.actor = record.actor
        self.action = record.action
        self.target = record.target
        self.details = record.details
        self.previousHash = previousHash
        self.hash = ""
        self.hash = computedHash()
    }

    /// An entry as stored (for reading back and verifying).
    public init(
        sequence: Int64, timestampMilliseconds: Int64, tenantID: String?, actor: AuditActor, action: String,
        target: String, details: [String: String], previousHash: String, hash: String
    ) {
        self.sequence = sequence
        self.timestampMilliseconds = timestampMilliseconds
        self.tenantID = tenantID
        self.actor = actor
        self.action = action
        self.target = target
        self.details = details
        self.previousHash = previousHash
        self.hash = hash
    }

    /// SHA-256 over an unambiguous encoding of every field but ``hash``: each field
    /// length-prefixed, details sorted by key.
    public func computedHash() -> String {
        var bytes = [UInt8]()
        func field(_ value: String?) {
            guard let value else {
                bytes.append(0)
                return
            }
            bytes.append(1)
            let utf8 = Array(value.utf8)
            withUnsafeBytes(of: UInt32(utf8.count).bigEndian) { bytes.append(contentsOf: $0) }
            bytes.append(contentsOf: utf8)
        }
        field(String(sequence))
        field(String(timestampMilliseconds))
        field(tenantID)
        field(actor.kind.rawValue)
        field(actor.id)
        field(actor.remoteAddress)
        field(action)
        field(target)
        field(String(details.count))
        for key in details.keys.sorted() {
            field(key)
            field(details[key])
        }
        field(previousHash)
        return SHA256.hash(data: bytes).hexString
    }
}

/// Verifies the audit log's hash chain.
public enum AuditChain {
    /// The outcome of a verification.
    public struct Verification: Sendable, Hashable, Codable {
        /// Entries checked.
        public var entries: Int64
        /// The first entry that does not verify, if any.
        public var firstBrokenSequence: Int64?
        /// Why it does not.
        public var problem: String?

        public var isIntact: Bool { firstBrokenSequence == nil }

        public init(entries: Int64, firstBrokenSequence: Int64? = nil, problem: String? = nil) {
            self.entries = entries
            self.firstBrokenSequence = firstBrokenSequence
            self.problem = problem
        }
    }

    /// Incremental verifier: feed entries in sequence order.
    public struct Verifier: Sendable {
        private var expectedSequence: Int64 = 1
        private var previousHash = AuditEntry.genesisHash
        public private(set) var result = Verification(entries: 0)

        public init() {}

        /// Checks the next entry; returns false once the chain is broken (later entries are not
        /// looked at).
        @discardableResult
        public mutating func feed(_ entry: AuditEntry) -> Bool {
            guard result.isIntact else { return false }
            let problem: String?
            if entry.sequence != expectedSequence {
                problem = "expected entry \(expectedSequence), found \(entry.sequence): an entry was removed or reordered"
            } else if entry.previousHash != previousHash {
                problem = "entry \(entry.sequence) does not point at the hash of entry \(entry.sequence - 1)"
            } else if entry.computedHash() != entry.hash {
                problem = "entry \(entry.sequence) was changed after it was written: its hash does not match its content"
            } else {
                problem = nil
            }
            if let problem {
                result.firstBrokenSequence = entry.sequence
                result.problem = problem
                return false
            }
            result.entries += 1
            expectedSequence += 1
            previousHash = entry.hash
            return true
        }
    }
}

extension Sequence where Element == UInt8 {
    /// Lower-case hex.
    public var hexString: String {
        var result = ""
        for byte in self {
            let hex = String(byte, radix: 16)
            if hex.count == 1 { result += "0" }
            result += hex
        }
        return result
    }
}

extension Digest {
    /// Lower-case hex.
    public var hexString: String { Array(self).hexString }
}

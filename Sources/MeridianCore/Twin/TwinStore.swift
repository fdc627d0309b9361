/// What kind of change made a twin version.
public enum TwinOperation: String, Sendable, Hashable, Codable {
    /// A merge patch of `desired` and/or `reported`.
    case update
    /// The twin was deleted: its state emptied, its version kept.
    case delete
}

/// One entry of a twin's history: who changed it when, how, and the twin after the change.
public struct TwinHistoryEntry: Sendable, Hashable {
    /// Increasing per store; the history's order and paging cursor.
    public var sequence: Int64
    public var key: TwinKey
    public var version: Int64
    /// Milliseconds since 1970.
    public var timestamp: Int64
    public var actor: AuditActor
    public var operation: TwinOperation
    /// `{"desired": ..., "reported": ...}` as sent (nil for a delete).
    public var patch: JSONValue?
    /// The twin after the change.
    public var document: TwinDocument

    public init(
        sequence: Int64 = 0,
        key: TwinKey,
        version: Int64,
        timestamp: Int64,
        actor: AuditActor,
        operation: TwinOperation,
        patch: JSONValue?,
        document: TwinDocument
    ) {
        self.sequence = sequence
        self.key = key
        self.version = version
        self.timestamp = timestamp
        self.actor = actor
        self.operation = operation
        self.patch = patch
        self.document = document
    }
}

/// Where twins and their history live (SQLite or PostgreSQL). A store only stores: merging,
/// limits and version checks are the ``TwinService``'s; the store makes each save atomic and
/// refuses one that lost a race.
public protocol TwinStore: Sendable {
    /// The twin as it is now (nil: never written; a deleted twin is returned with
    /// `exists == false` and its version).
    func twin(_ key: TwinKey) async throws -> TwinDocument?
    /// Saves `entry.document` as the twin's current state and appends `entry` to its history,
    /// in one transaction, provided the stored twin is still at `previousVersion` (0: no row
    /// yet) with existence `previousExists`. Returns false, saving nothing, when another writer
    /// got there first.
    func save(_ entry: TwinHistoryEntry, previousVersion: Int64, previousExists: Bool) async throws -> Bool
    /// The twin as it was at `timestamp` (ms): the newest history entry at or before it, or nil.
    func twin(_ key: TwinKey, at timestamp: Int64) async throws -> TwinHistoryEntry?
    /// History entries, newest first, with a sequence below `before` (nil: from the newest),
    /// at most `limit`.
    func history(_ key: TwinKey, before: Int64?, limit: Int) async throws -> [TwinHistoryEntry]
    /// Removes history entries older than `timestamp`, except each twin's newest entry;
    /// returns how many went.
    func deleteHistory(before timestamp: Int64) async throws -> Int
    /// The names of a device's twins that exist (the default twin as "").
    func twinNames(tenantID: String, deviceID: String) async throws -> [String]
    /// The current default twins of these devices (missing ones left out).
    func twins(tenantID: String, deviceIDs: [String]) async throws -> [String: TwinDocument]
    /// Removes every twin and history entry of a device, in any tenant (it was deleted, or
    /// claimed into another tenant).
    func deleteTwins(deviceID: String) async throws
}

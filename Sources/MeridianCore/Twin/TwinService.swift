import Foundation
import Synchronization

/// A change to a twin, as observers (the MQTT adapters, the live stream) see it after it was
/// stored.
public struct TwinChange: Sendable, Hashable {
    public var key: TwinKey
    public var previous: TwinDocument
    public var current: TwinDocument
    public var operation: TwinOperation
    public var actor: AuditActor
    /// The `desired` part of the patch (nil: not touched; `.null`: cleared).
    public var desiredPatch: JSONValue?
    /// The `reported` part of the patch (nil: not touched; `.null`: cleared).
    public var reportedPatch: JSONValue?
    /// The `clientToken` of the request, echoed in the pushes that follow it.
    public var clientToken: String?

    /// Whether the desired state changed.
    public var desiredChanged: Bool { previous.desired != current.desired }
}

/// The result of an update or delete: the twin before and after (equal when nothing changed).
public struct TwinUpdate: Sendable, Hashable {
    public var previous: TwinDocument
    public var current: TwinDocument
    /// False when the request changed nothing (no new version was made).
    public var changed: Bool
}

/// Device twins (AWS IoT's shadows, Azure's device twins): a device's `desired` and
/// `reported` state, updated with JSON merge patches, versioned, with optimistic concurrency
/// and a history of every version. Every way in (REST, the three MQTT conventions) calls this
/// one service; observers hear of every stored change.
public final class TwinService: Sendable {
    /// What a twin may hold and how long its history is kept.
    public struct Limits: Sendable, Hashable {
        /// Deepest nesting of objects and arrays in `desired` or `reported` (`twin.max_depth`).
        public var maximumDepth: Int
        /// Largest `{"desired": ..., "reported": ...}` as JSON, in bytes
        /// (`twin.max_document_bytes`).
        public var maximumDocumentBytes: Int
        /// How long history entries are kept, in seconds (`twin.history_retention_days`);
        /// nil: forever. A twin's newest entry is always kept.
        public var historyRetention: TimeInterval?

        public init(
            maximumDepth: Int = 8,
            maximumDocumentBytes: Int = 65_536,
            historyRetention: TimeInterval? = 90 * 86_400
        ) {
            self.maximumDepth = maximumDepth
            self.maximumDocumentBytes = maximumDocumentBytes
            self.historyRetention = historyRetention
        }
    }

    public let store: any TwinStore
    public let limits: Limits
    private let now: @Sendable () -> Int64
    private let observers = Mutex<[@Sendable (TwinChange) -> Void]>([])
    /// How often a save that lost a race is retried (requests without an expected version).
    static let maximumAttempts = 32

    public init(
        store: any TwinStore,
        limits: Limits = Limits(),
        now: @escaping @Sendable () -> Int64 = TwinService.currentMilliseconds
    ) {
        self.store = store
        self.limits = limits
        self.now = now
    }

    /// Milliseconds since 1970, now.
    public static func currentMilliseconds() -> Int64 {
        Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
    }

    /// Calls `observer` after every stored change (synchronously, after the store committed).
    public func observe(_ observer: @escaping @Sendable (TwinChange) -> Void) {
        observers.withLock { $0.append(observer) }
    }

    // MARK: reads

    /// The twin now; an empty one with version 0 when it was never written.
    public func twin(_ key: TwinKey) async throws -> TwinDocument {
        try await store.twin(key) ?? TwinDocument()
    }

    /// The twin as it was at `timestamp` (ms since 1970).
    ///
    /// - Throws: ``TwinError`` `notFound` when it did not exist then, or its history from
    ///   then was removed by retention.
    public func twin(_ key: TwinKey, at timestamp: Int64) async throws -> TwinDocument {
        guard let entry = try await store.twin(key, at: timestamp) else {
            throw TwinError(
                .notFound,
                "the twin has no version at or before that time (never written then, or its history was removed)",
                field: "at"
            )
        }
        return entry.document
    }

    /// The changes, newest first: entries with a sequence below `before`, at most `limit`.
    public func history(_ key: TwinKey, before: Int64? = nil, limit: Int = 100) async throws -> [TwinHistoryEntry] {
        try await store.history(key, before: before, limit: max(1, limit))
    }

    /// The names of the device's twins that exist ("" for the default twin).
    public func twinNames(tenantID: String, deviceID: String) async throws -> [String] {
        try await store.twinNames(tenantID: tenantID, deviceID: deviceID)
    }

    /// The current default twins of these devices (what fleet queries read).
    public func twins(tenantID: String, deviceIDs: [String]) async throws -> [String: TwinDocument] {
        try await store.twins(tenantID: tenantID, deviceIDs: deviceIDs)
    }

    // MARK: writes

    /// Merges `desired` and/or `reported` (RFC 7386 merge patches: objects; `null` clears the
    /// whole section; nil leaves it alone) into the twin.
    ///
    /// - Parameters:
    ///   - expectedVersion: when given, the update is refused unless the twin is at exactly
    ///     this version (0: never written).
    ///   - actor: who makes the change (recorded in the history).
    ///   - clientToken: passed on to observers (AWS `clientToken`).
    /// - Throws: ``TwinError`` — `invalid` for a patch that is not an object or nests too
    ///   deeply, `tooLarge` for a document over the size limit, `versionConflict`.
    @discardableResult
    public func update(
        _ key: TwinKey,
        desired: JSONValue? = nil,
        reported: JSONValue? = nil,
        expectedVersion: Int64? = nil,
        actor: AuditActor,
        clientToken: String? = nil
    ) async throws -> TwinUpdate {
        try validate(desired, field: "desired")
        try validate(reported, field: "reported")
        if let expectedVersion, expectedVersion < 0 {
            throw TwinError.invalid("version", "version must be 0 or more")
        }
        var patch: [String: JSONValue] = [:]
        if let desired { patch["desired"] = desired }
        if let reported { patch["reported"] = reported }
        for _ in 0..<Self.maximumAttempts {
            let previous = try await twin(key)
            if let expectedVersion, expectedVersion != previous.version {
                throw Self.conflict(expected: expectedVersion, current: previous.version)
            }
            let timestamp = max(now(), previous.timestamp)
            var next = previous
            merge(desired, into: &next.desired, metadata: &next.desiredMetadata, timestamp: timestamp)
            merge(reported, into: &next.reported, metadata: &next.reportedMetadata, timestamp: timestamp)
            if previous.exists, next.desired == previous.desired, next.reported == previous.reported {
                return TwinUpdate(previous: previous, current: previous, changed: false)
            }
            let size = JSONValue.object(["desired": .object(next.desired), "reported": .object(next.reported)]).jsonText
                .utf8.count
            guard size <= limits.maximumDocumentBytes else {
                throw TwinError(
                    .tooLarge,
                    "the twin would be \(size) bytes; the limit is \(limits.maximumDocumentBytes) (twin.max_document_bytes)",
                    field: reported != nil && desired == nil ? "reported" : "desired"
                )
            }
            next.version = previous.version + 1
            next.timestamp = timestamp
            next.exists = true
            let entry = TwinHistoryEntry(
                key: key,
                version: next.version,
                timestamp: timestamp,
                actor: actor,
                operation: .update,
                patch: .object(patch),
                document: next
            )
            if try await store.save(entry, previousVersion: previous.version, previousExists: previous.exists) {
                notify(
                    TwinChange(
                        key: key,
                        previous: previous,
                        current: next,
                        operation: .update,
                        actor: actor,
                        desiredPatch: desired,
                        reportedPatch: reported,
                        clientToken: clientToken
                    )
                )
                return TwinUpdate(previous: previous, current: next, changed: true)
            }
            if expectedVersion != nil {
                let current = try await twin(key)
                throw Self.conflict(expected: expectedVersion ?? 0, current: current.version)
            }
        }
        throw TwinError(
            .versionConflict,
            "the twin changed too often while this update was being applied; send it again",
            field: "version"
        )
    }

    /// Deletes the twin: its state and metadata are emptied, its version counter is kept (the
    /// next update makes version + 1), and the deletion is recorded in the history.
    ///
    /// - Throws: ``TwinError`` `notFound` when there is no twin, `versionConflict` when
    ///   `expectedVersion` is not current.
    @discardableResult
    public func delete(
        _ key: TwinKey,
        expectedVersion: Int64? = nil,
        actor: AuditActor,
        clientToken: String? = nil
    ) async throws -> TwinUpdate {
        for _ in 0..<Self.maximumAttempts {
            let previous = try await twin(key)
            guard previous.exists else { throw TwinError(.notFound, "the twin does not exist") }
            if let expectedVersion, expectedVersion != previous.version {
                throw Self.conflict(expected: expectedVersion, current: previous.version)
            }
            let timestamp = max(now(), previous.timestamp)
            let next = TwinDocument(version: previous.version, timestamp: timestamp, exists: false)
            let entry = TwinHistoryEntry(
                key: key,
                version: next.version,
                timestamp: timestamp,
                actor: actor,
                operation: .delete,
                patch: nil,
                document: next
            )
            if try await store.save(entry, previousVersion: previous.version, previousExists: previous.exists) {
                notify(
                    TwinChange(
                        key: key,
                        previous: previous,
                        current: next,
                        operation: .delete,
                        actor: actor,
                        desiredPatch: .null,
                        reportedPatch: .null,
                        clientToken: clientToken
                    )
                )
                return TwinUpdate(previous: previous, current: next, changed: true)
            }
        }
        throw TwinError(
            .versionConflict,
            "the twin changed too often while it was being deleted; send it again",
            field: "version"
        )
    }

    /// Removes history older than the retention (each twin's newest entry stays).
    @discardableResult
    public func sweepHistory() async throws -> Int {
        guard let retention = limits.historyRetention else { return 0 }
        return try await store.deleteHistory(before: now() - Int64(retention * 1000))
    }

    /// Forgets a device's twins and history (deleted, or claimed into another tenant).
    public func deviceRemoved(deviceID: String) async throws {
        try await store.deleteTwins(deviceID: deviceID)
    }

    // MARK: helpers

    private func validate(_ section: JSONValue?, field: String) throws(TwinError) {
        guard let section else { return }
        switch section {
        case .null: return
        case .object:
            if let path = JSONMergePatch.pathTooDeep(section, limit: limits.maximumDepth, path: field) {
                throw TwinError.invalid(
                    path,
                    "\(path) nests deeper than \(limits.maximumDepth) levels (twin.max_depth)"
                )
            }
        default:
            throw TwinError.invalid(field, "\(field) must be a JSON object (or null to clear it)")
        }
    }

    private func merge(
        _ patch: JSONValue?,
        into state: inout [String: JSONValue],
        metadata: inout [String: JSONValue],
        timestamp: Int64
    ) {
        switch patch {
        case .none: return
        case .some(.object(let members)):
            JSONMergePatch.apply(members, to: &state, metadata: &metadata, timestamp: timestamp)
        case .some:
            state = [:]
            metadata = [:]
        }
    }

    private static func conflict(expected: Int64, current: Int64) -> TwinError {
        TwinError(.versionConflict, "version \(expected) is not the current version \(current)", field: "version")
    }

    private func notify(_ change: TwinChange) {
        for observer in observers.withLock({ $0 }) { observer(change) }
    }
}

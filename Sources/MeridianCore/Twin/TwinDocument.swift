/// Which twin of a device: its default twin (empty ``name``) or a named one (AWS named shadows).
public struct TwinKey: Sendable, Hashable, CustomStringConvertible {
    public var tenantID: String
    public var deviceID: String
    /// Empty for the device's default twin.
    public var name: String

    public init(tenantID: String, deviceID: String, name: String = "") {
        self.tenantID = tenantID
        self.deviceID = deviceID
        self.name = name
    }

    /// Whether this is the device's default twin.
    public var isDefault: Bool { name.isEmpty }

    public var description: String { name.isEmpty ? deviceID : "\(deviceID)/\(name)" }

    /// Checks a named twin's name: 1 to 64 letters, digits, `-`, `_` or `:` (as AWS allows).
    public static func validate(name: String) throws(TwinError) {
        guard (1...64).contains(name.utf8.count),
            name.unicodeScalars.allSatisfy({
                $0.isASCII
                    && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "-_:".unicodeScalars.contains($0))
            })
        else {
            throw TwinError.invalid("name", "a twin name is 1 to 64 letters, digits, '-', '_' or ':'")
        }
    }
}

/// One version of a twin: the operator's `desired` state, the device's `reported` state, the
/// time each leaf was last set, and the version.
public struct TwinDocument: Sendable, Hashable {
    public var desired: [String: JSONValue]
    public var reported: [String: JSONValue]
    /// `{"desired": {...}, "reported": {...}}` trees mirroring the states, with
    /// `{"timestamp": ms}` at every leaf.
    public var desiredMetadata: [String: JSONValue]
    public var reportedMetadata: [String: JSONValue]
    /// Increases by one with every change; kept when the twin is deleted.
    public var version: Int64
    /// When this version was made (milliseconds since 1970).
    public var timestamp: Int64
    /// False for a twin that was never written or was deleted (its version is kept).
    public var exists: Bool

    public init(
        desired: [String: JSONValue] = [:],
        reported: [String: JSONValue] = [:],
        desiredMetadata: [String: JSONValue] = [:],
        reportedMetadata: [String: JSONValue] = [:],
        version: Int64 = 0,
        timestamp: Int64 = 0,
        exists: Bool = false
    ) {
        self.desired = desired
        self.reported = reported
        self.desiredMetadata = desiredMetadata
        self.reportedMetadata = reportedMetadata
        self.version = version
        self.timestamp = timestamp
        self.exists = exists
    }

    /// Desired members whose value differs from the reported one (members not reported yet
    /// included); objects are compared member by member, as AWS IoT does.
    public var delta: [String: JSONValue] {
        Self.delta(desired: desired, reported: reported)
    }

    /// The delta's metadata: the desired metadata of the members in ``delta``.
    public var deltaMetadata: [String: JSONValue] {
        Self.restrict(desiredMetadata, to: delta)
    }

    /// Desired members that differ from `reported`.
    public static func delta(desired: [String: JSONValue], reported: [String: JSONValue]) -> [String: JSONValue] {
        var result: [String: JSONValue] = [:]
        for (key, wanted) in desired {
            guard let actual = reported[key] else {
                result[key] = wanted
                continue
            }
            if case .object(let wantedMembers) = wanted, case .object(let actualMembers) = actual {
                let inner = delta(desired: wantedMembers, reported: actualMembers)
                if !inner.isEmpty { result[key] = .object(inner) }
            } else if wanted != actual {
                result[key] = wanted
            }
        }
        return result
    }

    /// The parts of a metadata tree whose paths are in `state`.
    static func restrict(_ metadata: [String: JSONValue], to state: [String: JSONValue]) -> [String: JSONValue] {
        var result: [String: JSONValue] = [:]
        for (key, value) in state {
            guard let entry = metadata[key] else { continue }
            if case .object(let members) = value, !members.isEmpty, case .object(let inner) = entry {
                result[key] = .object(restrict(inner, to: members))
            } else {
                result[key] = entry
            }
        }
        return result
    }

    /// `{"desired": ..., "reported": ...}`: the metadata in AWS's shape.
    public var metadata: JSONValue {
        .object(["desired": .object(desiredMetadata), "reported": .object(reportedMetadata)])
    }

    /// The state and metadata as one JSON value (what the stores keep):
    /// `{"desired", "reported", "metadata": {"desired", "reported"}}`.
    public var stateValue: JSONValue {
        .object(["desired": .object(desired), "reported": .object(reported), "metadata": metadata])
    }

    /// A document from ``stateValue`` and its version, time and existence.
    public init(stateValue: JSONValue, version: Int64, timestamp: Int64, exists: Bool) {
        let metadata = stateValue["metadata"]
        self.init(
            desired: stateValue["desired"]?.objectValue ?? [:],
            reported: stateValue["reported"]?.objectValue ?? [:],
            desiredMetadata: metadata?["desired"]?.objectValue ?? [:],
            reportedMetadata: metadata?["reported"]?.objectValue ?? [:],
            version: version,
            timestamp: timestamp,
            exists: exists
        )
    }

    /// The twin as the REST API returns it: `{"desired", "reported", "delta", "version",
    /// "metadata", "timestamp"}`.
    public var apiValue: JSONValue {
        .object([
            "desired": .object(desired),
            "reported": .object(reported),
            "delta": .object(delta),
            "version": .number(Double(version)),
            "metadata": metadata,
            "timestamp": .number(Double(timestamp)),
        ])
    }
}

/// Which devices a rule watches: one device, the devices of a profile, the devices a fleet query
/// matches (labels, status, profile, name), or every device of the tenant.
public enum RuleScope: Sendable, Hashable {
    case tenant
    case device(String)
    case profile(String)
    case query(FleetQuery)

    /// Reads `{"tenant": true}`, `{"device": "id"}`, `{"profile": "id"}` or `{"query": "..."}`.
    public init(json: JSONValue, path: String = "scope") throws(ConditionSpecError) {
        let reader = try ConditionSpecReader(json, path: path)
        try reader.refuseUnknown(allowed: ["tenant", "device", "profile", "query"])
        let given = ["tenant", "device", "profile", "query"].filter { reader.has($0) }
        guard given.count == 1 else {
            throw ConditionSpecError(field: path, message: "needs exactly one of tenant, device, profile, query")
        }
        switch given[0] {
        case "tenant":
            guard case .bool(true)? = reader.object["tenant"] else {
                throw ConditionSpecError(field: reader.field("tenant"), message: "must be true")
            }
            self = .tenant
        case "device":
            self = .device(try Self.identifier(reader, "device"))
        case "profile":
            self = .profile(try Self.identifier(reader, "profile"))
        default:
            let text = try reader.requiredString("query")
            switch FleetQuery.parse(text) {
            case .success(let query): self = .query(query)
            case .failure(let error): throw ConditionSpecError(field: reader.field("query"), message: "\(error)")
            }
        }
    }

    private static func identifier(_ reader: ConditionSpecReader, _ name: String) throws(ConditionSpecError) -> String {
        let value = try reader.requiredString(name)
        guard !value.isEmpty, value.utf8.count <= 128 else {
            throw ConditionSpecError(field: reader.field(name), message: "must be an id of 1 to 128 bytes")
        }
        return value
    }

    /// The scope's JSON form.
    public var json: JSONValue {
        switch self {
        case .tenant: .object(["tenant": .bool(true)])
        case .device(let id): .object(["device": .string(id)])
        case .profile(let id): .object(["profile": .string(id)])
        case .query(let query): .object(["query": .string(query.text)])
        }
    }

    /// Whether `device` is in scope (a query scope is matched on the device's registry fields
    /// only: labels, status, profile, name; `online`, twin and telemetry terms never match here).
    public func contains(_ device: Device, profileName: String?) -> Bool {
        switch self {
        case .tenant: true
        case .device(let id): device.id == id
        case .profile(let id): device.profileID == id || (profileName != nil && profileName == id)
        case .query(let query):
            query.matches(
                FleetDeviceContext(device: device, profileName: profileName, online: false, reported: nil, desired: nil, telemetry: [:]),
                now: 0
            )
        }
    }
}

/// The condition of a rule: one of the kinds, each evaluated per device.
public enum RuleCondition: Sendable, Hashable {
    case threshold(ThresholdCondition)
    case expression(ExpressionCondition)
    case noData(NoDataCondition)
    case presence(PresenceCondition)
    case anomaly(AnomalyCondition)

    static let kinds = ["threshold", "expression", "noData", "presence", "anomaly"]

    /// Reads `{"threshold": {...}}`, `{"expression": {...}}`, `{"noData": {...}}`,
    /// `{"presence": {...}}` or `{"anomaly": {...}}`; errors name the field from `path`
    /// (`condition.threshold.op`).
    public init(json: JSONValue, path: String = "condition") throws(ConditionSpecError) {
        let reader = try ConditionSpecReader(json, path: path)
        try reader.refuseUnknown(allowed: Set(Self.kinds))
        let given = Self.kinds.filter { reader.has($0) }
        guard given.count == 1, let spec = reader.object[given[0]] else {
            throw ConditionSpecError(field: path, message: "needs exactly one of \(Self.kinds.joined(separator: ", "))")
        }
        let kind = given[0]
        do {
            switch kind {
            case "threshold": self = .threshold(try ThresholdCondition(json: spec))
            case "expression": self = .expression(try ExpressionCondition(json: spec))
            case "noData": self = .noData(try NoDataCondition(json: spec))
            case "presence": self = .presence(try PresenceCondition(json: spec))
            default: self = .anomaly(try AnomalyCondition(json: spec))
            }
        } catch {
            let inner = error.field.isEmpty ? "" : ".\(error.field)"
            throw ConditionSpecError(field: "\(path).\(kind)\(inner)", message: error.message)
        }
    }

    /// The condition's JSON form.
    public var json: JSONValue {
        switch self {
        case .threshold(let condition): .object(["threshold": condition.json])
        case .expression(let condition): .object(["expression": condition.json])
        case .noData(let condition): .object(["noData": condition.json])
        case .presence(let condition): .object(["presence": condition.json])
        case .anomaly(let condition): .object(["anomaly": condition.json])
        }
    }

    /// The telemetry keys whose samples the condition reads; nil for "every key" (no data on
    /// any key) and empty for none (presence).
    public var keys: Set<String>? {
        switch self {
        case .threshold(let condition): [condition.key]
        case .expression(let condition): condition.referencedKeys
        case .noData(let condition): condition.key.map { [$0] }
        case .presence: []
        case .anomaly(let condition): [condition.key]
        }
    }

    /// Whether time passing alone can raise it (no data, presence): the engine ticks these.
    public var needsTicks: Bool {
        switch self {
        case .noData, .presence: true
        default: false
        }
    }
}

import Foundation

/// A parsed, type-checked fleet query, e.g.
/// `labels.site = "plant-3" AND reported.firmware.version < "2.0" AND online`.
///
/// Queries are evaluated in memory against each candidate device (``matches(_:now:)``); the
/// only part that reaches a database is ``prefilter`` — label, status and profile equalities
/// passed as bound parameters to the registry's indexed device listing — so there is no path
/// from query text to SQL text.
public struct FleetQuery: Sendable, Hashable {
    /// The query as written.
    public let text: String
    public let expression: FleetExpression

    /// Parses and type-checks `text`; throws ``FleetQueryError`` with the position of the
    /// first mistake.
    public init(_ text: String) throws(FleetQueryError) {
        var parser = try FleetQueryParser(source: text)
        self.text = text
        self.expression = try parser.parse()
    }

    /// Parses and type-checks `text`: the query, or the first mistake with its position.
    public static func parse(_ text: String) -> Result<FleetQuery, FleetQueryError> {
        do {
            return .success(try FleetQuery(text))
        } catch {
            return .failure(error)
        }
    }

    /// Equalities every match must satisfy (from the top-level AND chain) that the registry can
    /// answer itself: `labels.k = "v"`, `status = "..."`, `profile = "..."` (from indexes) and
    /// `name = "..."` (as a name-prefix filter in SQL, checked exactly in memory).
    public struct Prefilter: Sendable, Hashable {
        public var labels: [String: String] = [:]
        public var status: DeviceStatus?
        /// A profile id or name.
        public var profile: String?
        /// Names starting with this (an exact `name = "..."` of the query).
        public var namePrefix: String?
    }

    /// See ``Prefilter``. Narrowing only: every device is still checked with ``matches(_:now:)``.
    public var prefilter: Prefilter {
        var result = Prefilter()
        var pending = [expression]
        while let next = pending.popLast() {
            switch next {
            case .and(let left, let right):
                pending.append(right)
                pending.append(left)
            case .compare(.label(let key), .equal, .string(let value)):
                if result.labels[key] == nil { result.labels[key] = value }
            case .compare(.status, .equal, .string(let value)):
                if result.status == nil { result.status = DeviceStatus(rawValue: value) }
            case .compare(.profile, .equal, .string(let value)):
                if result.profile == nil { result.profile = value }
            case .compare(.name, .equal, .string(let value)) where !value.isEmpty:
                if result.namePrefix == nil { result.namePrefix = value }
            default:
                break
            }
        }
        return result
    }

    /// What the evaluation needs besides the registry's device rows.
    public struct Needs: Sendable, Hashable {
        public var presence = false
        public var twins = false
        public var profiles = false
        /// Telemetry keys read (`telemetry.<key>`).
        public var telemetryKeys: Set<String> = []
    }

    public var needs: Needs {
        var needs = Needs()
        func visit(_ field: FleetField) {
            switch field {
            case .online: needs.presence = true
            case .reported, .desired: needs.twins = true
            case .profile: needs.profiles = true
            case .telemetry(let key): needs.telemetryKeys.insert(key)
            default: break
            }
        }
        var pending = [expression]
        while let next = pending.popLast() {
            switch next {
            case .and(let left, let right), .or(let left, let right):
                pending.append(left)
                pending.append(right)
            case .not(let inner): pending.append(inner)
            case .compare(let field, _, _), .isIn(let field, _), .exists(let field), .truthy(let field): visit(field)
            }
        }
        return needs
    }

    /// Whether the device matches; `now` (epoch milliseconds) is what `now` means in the query.
    public func matches(_ device: FleetDeviceContext, now: Int64) -> Bool {
        FleetQueryEvaluator(device: device, now: now).evaluate(expression)
    }
}

/// Everything a query can read about one device.
public struct FleetDeviceContext: Sendable {
    public var device: Device
    /// The name of the device's profile, when it has one.
    public var profileName: String?
    public var online: Bool
    /// The twin's reported and desired documents (nil: no twin).
    public var reported: JSONValue?
    public var desired: JSONValue?
    /// Latest telemetry values by key.
    public var telemetry: [String: TelemetryValue]

    public init(
        device: Device, profileName: String? = nil, online: Bool = false, reported: JSONValue? = nil, desired: JSONValue? = nil,
        telemetry: [String: TelemetryValue] = [:]
    ) {
        self.device = device
        self.profileName = profileName
        self.online = online
        self.reported = reported
        self.desired = desired
        self.telemetry = telemetry
    }
}

import Foundation

/// The twin documents fleet queries read (`reported.<path>`, `desired.<path>`). The twins
/// service implements it; tests use a double.
public protocol FleetTwinSource: Sendable {
    /// The reported and desired documents of those of `deviceIDs` that have a twin.
    func twins(tenantID: String, deviceIDs: [String]) async throws -> [String: FleetTwinDocuments]
}

/// One device's twin as a fleet query sees it.
public struct FleetTwinDocuments: Sendable, Hashable {
    public var reported: JSONValue
    public var desired: JSONValue

    public init(reported: JSONValue, desired: JSONValue) {
        self.reported = reported
        self.desired = desired
    }
}

/// Which devices are online (the `online` field).
public protocol FleetPresenceSource: Sendable {
    /// Those of `deviceIDs` that have at least one open connection.
    func onlineDevices(among deviceIDs: [String]) async throws -> Set<String>
}

/// Latest telemetry values (the `telemetry.<key>` fields); `TelemetryService` provides it.
public protocol FleetTelemetrySource: Sendable {
    /// Latest point per key, per device (devices without telemetry are absent).
    func latest(deviceIDs: [String]) async throws -> [String: [String: TelemetryPoint]]
}

/// Runs fleet queries over a tenant's devices: the registry's indexed listing narrows the
/// candidates with the query's ``FleetQuery/prefilter`` (bound parameters, in id order), and
/// each batch is checked in memory with whatever else the query reads (presence, twins,
/// latest telemetry — fetched per batch, only when the query uses them).
public final class FleetQueryService: Sendable {
    let registry: Registry
    let presence: (any FleetPresenceSource)?
    let twins: (any FleetTwinSource)?
    let telemetry: (any FleetTelemetrySource)?
    let now: @Sendable () -> Date

    /// Devices read from the registry per batch (at most ``Registry/maxPageSize``).
    let batchSize: Int

    public init(
        registry: Registry, presence: (any FleetPresenceSource)? = nil, twins: (any FleetTwinSource)? = nil,
        telemetry: (any FleetTelemetrySource)? = nil, batchSize: Int = Registry.maxPageSize,
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.batchSize = min(max(1, batchSize), Registry.maxPageSize)
        self.registry = registry
        self.presence = presence
        self.twins = twins
        self.telemetry = telemetry
        self.now = now
    }

    /// The caller's devices matching `query`, ordered by id, after the device id `after`, at
    /// most `limit` (capped at ``Registry/maxPageSize``); `nextCursor` continues the list.
    public func devices(matching query: FleetQuery, limit: Int, after: String? = nil, by caller: Caller) async throws -> Page<Device> {
        guard limit >= 1 else { throw RegistryError.invalid("limit", "must be at least 1") }
        let limit = min(limit, Registry.maxPageSize)
        let prefilter = query.prefilter
        let needs = query.needs
        let nowMilliseconds = Int64((now().timeIntervalSince1970 * 1000).rounded())
        var profileNames: [String: String] = [:]
        if needs.profiles {
            for profile in try await registry.profiles(by: caller) { profileNames[profile.id] = profile.name }
        }
        var listing = DeviceQuery(
            tenantID: caller.tenantID, labels: prefilter.labels, status: prefilter.status, profileID: prefilter.profile,
            namePrefix: prefilter.namePrefix
        )
        // The first batch is the page (plus one, to know whether there is more): enough when
        // the registry's filter is the whole query; later batches grow to `batchSize`.
        listing.limit = min(batchSize, limit + 1)
        listing.after = after
        var matches: [Device] = []
        while true {
            let page = try await registry.devices(listing, by: caller)
            let ids = page.items.map(\.id)
            var online: Set<String> = []
            var twinDocuments: [String: FleetTwinDocuments] = [:]
            var latest: [String: [String: TelemetryPoint]] = [:]
            if needs.presence, let presence { online = try await presence.onlineDevices(among: ids) }
            if needs.twins, let twins { twinDocuments = try await twins.twins(tenantID: caller.tenantID, deviceIDs: ids) }
            if !needs.telemetryKeys.isEmpty, let telemetry { latest = try await telemetry.latest(deviceIDs: ids) }
            for device in page.items {
                let twin = twinDocuments[device.id]
                let context = FleetDeviceContext(
                    device: device, profileName: device.profileID.flatMap { profileNames[$0] }, online: online.contains(device.id),
                    reported: twin?.reported, desired: twin?.desired,
                    telemetry: latest[device.id]?.mapValues(\.value) ?? [:]
                )
                guard query.matches(context, now: nowMilliseconds) else { continue }
                if matches.count == limit {
                    return Page(items: matches, nextCursor: matches.last?.id)
                }
                matches.append(device)
            }
            guard let next = page.nextCursor else { return Page(items: matches, nextCursor: nil) }
            listing.after = next
            listing.limit = min(batchSize, listing.limit * 4)
        }
    }
}

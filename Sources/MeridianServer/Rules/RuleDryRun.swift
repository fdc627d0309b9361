import Foundation
import MeridianCore
import MeridianStorage

/// Evaluates a rule over stored history and says when it would have fired: a fresh
/// ``RuleEngineCore`` fed each device's stored samples in time order (and, for presence rules,
/// its stored connects and disconnects), with the clock ticking through the range for no-data
/// and presence conditions. Expressions read the twin as it is now. Nothing is raised, recorded
/// or acted on.
struct RuleDryRun: Sendable {
    let registry: Registry
    let telemetry: TelemetryService?
    let presence: PresenceService?
    let twins: TwinService?

    /// Most devices one dry run evaluates.
    static let maximumDevices = 1_000
    /// Most samples one dry run reads, over all devices.
    static let maximumSamples = 2_000_000
    /// Most firings returned.
    static let maximumFirings = 10_000

    struct Firing: Sendable {
        var deviceID: String
        var event: RuleFiring.Event
        var at: Int64
        var message: String
        var values: [String: JSONValue]
    }

    struct Result: Sendable {
        var devices: Int
        var samples: Int
        var firings: [Firing]
        var truncated: Bool
    }

    func run(_ definition: RuleDefinition, deviceIDs: [String]?, from: Int64, to: Int64, by caller: Caller) async throws -> Result {
        guard from < to else { throw RegistryError.invalid("from", "must be before to") }
        let rule = Rule(
            id: "dry-run", tenantID: caller.tenantID, version: 1, definition: { var copy = definition; copy.enabled = true; return copy }(),
            createdAt: Date(), updatedAt: Date(), updatedBy: caller.actor.description
        )
        let devices = try await scopeDevices(rule, deviceIDs: deviceIDs, caller: caller)
        let profiles = Dictionary((try await registry.profiles(by: caller)).map { ($0.id, $0.name) }, uniquingKeysWith: { first, _ in first })
        var result = Result(devices: 0, samples: 0, firings: [], truncated: false)
        let condition = definition.condition
        for device in devices {
            var core = RuleEngineCore()
            core.load([rule])
            let info = RuleDeviceInfo(device: device, profileName: device.profileID.flatMap { profiles[$0] })
            guard rule.definition.scope.contains(device, profileName: info.profileName) else { continue }
            result.devices += 1
            var presenceEvents: [(Int64, Bool)] = []
            if case .presence = condition, let presence {
                presenceEvents = try await storedPresence(device.id, presence: presence, from: from, to: to, caller: caller)
            }
            let online: Bool? = presenceEvents.isEmpty ? nil : !presenceEvents[0].1
            core.track(info, online: online, now: from)
            if condition.readsTwin, let twins, let twin = try? await twins.twin(TwinKey(tenantID: caller.tenantID, deviceID: device.id)) {
                core.setTwin(tenantID: caller.tenantID, deviceID: device.id, reported: .object(twin.reported), desired: .object(twin.desired))
            }
            let samples = try await storedSamples(device.id, keys: condition.keys, from: from, to: to, budget: Self.maximumSamples - result.samples)
            result.samples += samples.count
            if result.samples >= Self.maximumSamples { result.truncated = true }
            var events: [RuleEngineEvent] = []
            let step = condition.tickStep
            var nextTick = step.map { from + $0 }
            var sampleIndex = 0
            var presenceIndex = 0
            while sampleIndex < samples.count || presenceIndex < presenceEvents.count || (nextTick.map { $0 <= to } ?? false) {
                let sampleTime = sampleIndex < samples.count ? samples[sampleIndex].timestamp : Int64.max
                let presenceTime = presenceIndex < presenceEvents.count ? presenceEvents[presenceIndex].0 : Int64.max
                let tickTime = nextTick.flatMap { $0 <= to ? $0 : nil } ?? Int64.max
                if tickTime < sampleTime && tickTime < presenceTime {
                    events += core.tick(now: tickTime)
                    nextTick = tickTime + (step ?? 1)
                } else if presenceTime <= sampleTime {
                    let (time, isOnline) = presenceEvents[presenceIndex]
                    events += core.observePresence(tenantID: caller.tenantID, deviceID: device.id, online: isOnline, at: time)
                    presenceIndex += 1
                } else {
                    var end = sampleIndex
                    while end < samples.count, samples[end].timestamp == sampleTime { end += 1 }
                    let message = DeviceMessage(
                        tenantID: caller.tenantID, deviceID: device.id, receivedAt: sampleTime, kind: .telemetry(Array(samples[sampleIndex..<end]))
                    )
                    events += core.observe(message, now: sampleTime)
                    sampleIndex = end
                }
            }
            for event in events {
                guard result.firings.count < Self.maximumFirings else {
                    result.truncated = true
                    break
                }
                let reason = event.transition.reason
                result.firings.append(
                    Firing(
                        deviceID: device.id, event: event.transition.isRaise ? .raise : .clear, at: reason.timestamp, message: reason.message,
                        values: reason.values
                    )
                )
            }
            if result.truncated { break }
        }
        result.firings.sort { ($0.at, $0.deviceID) < ($1.at, $1.deviceID) }
        return result
    }

    private func scopeDevices(_ rule: Rule, deviceIDs: [String]?, caller: Caller) async throws -> [Device] {
        if let deviceIDs {
            guard deviceIDs.count <= Self.maximumDevices else {
                throw RegistryError.invalid("devices", "at most \(Self.maximumDevices) devices per dry run")
            }
            var devices: [Device] = []
            for id in deviceIDs { devices.append(try await registry.device(id, by: caller)) }
            return devices
        }
        if case .device(let id) = rule.definition.scope { return [try await registry.device(id, by: caller)] }
        var devices: [Device] = []
        var after: String?
        repeat {
            var query = DeviceQuery(tenantID: caller.tenantID, limit: 1_000, after: after)
            if case .profile(let profile) = rule.definition.scope { query.profileID = profile }
            let page = try await registry.devices(query, by: caller)
            devices += page.items
            guard devices.count <= Self.maximumDevices else {
                throw RegistryError.invalid(
                    "devices", "the rule's scope has more than \(Self.maximumDevices) devices: name up to \(Self.maximumDevices) in devices"
                )
            }
            after = page.nextCursor
        } while after != nil
        return devices
    }

    private func storedSamples(_ deviceID: String, keys: Set<String>?, from: Int64, to: Int64, budget: Int) async throws -> [TelemetrySample] {
        guard let telemetry, budget > 0 else { return [] }
        if let keys, keys.isEmpty { return [] }
        var samples: [TelemetrySample] = []
        var after: [String: Int64] = [:]
        let engine = telemetry.engine
        repeat {
            let query = TelemetryRangeQuery(deviceID: deviceID, keys: keys.map { Array($0).sorted() }, from: from, to: to, limit: 10_000, after: after)
            let page = try await telemetry.blocking { try engine.range(query) }
            for (key, points) in page.points {
                for point in points { samples.append(TelemetrySample(key: key, timestamp: point.timestamp, value: point.value)) }
            }
            after = page.next
        } while !after.isEmpty && samples.count < budget
        samples.sort { ($0.timestamp, $0.key) < ($1.timestamp, $1.key) }
        return Array(samples.prefix(budget))
    }

    /// The device's presence changes in the range, oldest first, with the state just before the
    /// range first (as an event at `from`).
    private func storedPresence(_ deviceID: String, presence: PresenceService, from: Int64, to: Int64, caller: Caller) async throws -> [(Int64, Bool)] {
        var events: [(Int64, Bool)] = []
        var before: Int64?
        var stateBefore: Bool?
        scan: while true {
            let page = try await presence.events(of: deviceID, before: before, limit: 1_000, by: caller)
            for event in page.items {
                let time = RuleTime.milliseconds(event.time)
                if time > to { continue }
                if time < from {
                    stateBefore = event.online
                    break scan
                }
                events.append((time, event.online))
            }
            guard let cursor = page.nextCursor, let next = Int64(cursor) else { break }
            before = next
            if events.count > 100_000 { break }
        }
        events.reverse()
        events.insert((from, stateBefore ?? false), at: 0)
        return events
    }
}

extension RuleCondition {
    /// Whether an expression reads the twin.
    var readsTwin: Bool {
        if case .expression(let condition) = self { return condition.readsTwin }
        return false
    }

    /// How often a dry run ticks: a tenth of the duration, from 1 s to 1 h; nil for conditions
    /// time alone does not raise.
    var tickStep: Int64? {
        let duration: Int64
        switch self {
        case .noData(let condition): duration = condition.silence.milliseconds
        case .presence(let condition): duration = condition.offlineFor.milliseconds
        default: return nil
        }
        return min(max(duration / 10, 1_000), 3_600_000)
    }
}

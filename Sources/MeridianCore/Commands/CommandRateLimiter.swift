import Foundation
import Synchronization

/// Token buckets per device and per tenant: each bucket holds up to `rate` tokens (the burst)
/// and refills at `rate` per minute; a command takes one token from its device's bucket and one
/// from its tenant's, or is refused with the time until both have one.
public final class CommandRateLimiter: Sendable {
    /// Commands per minute per device (and the burst); 0: unlimited.
    public let perDevice: Int
    /// Commands per minute per tenant (and the burst); 0: unlimited.
    public let perTenant: Int

    private struct Bucket {
        var tokens: Double
        var updated: Date
    }

    private struct State {
        var devices: [String: Bucket] = [:]
        var tenants: [String: Bucket] = [:]
    }

    private let state = Mutex(State())

    public init(perDevice: Int, perTenant: Int) {
        self.perDevice = max(0, perDevice)
        self.perTenant = max(0, perTenant)
    }

    /// What refused a command: which limit and how long until it would pass.
    public struct Refusal: Sendable, Hashable {
        public var scope: String
        public var retryAfter: TimeInterval
    }

    /// Takes a token for `deviceID` and one for `tenantID`, or neither and says why not.
    public func acquire(tenantID: String, deviceID: String, now: Date) -> Refusal? {
        state.withLock { state -> Refusal? in
            let deviceKey = tenantID + "/" + deviceID
            var device = Self.refilled(state.devices[deviceKey], rate: perDevice, now: now)
            var tenant = Self.refilled(state.tenants[tenantID], rate: perTenant, now: now)
            if perDevice > 0, device.tokens < 1 {
                return Refusal(scope: "device", retryAfter: Self.wait(for: device, rate: perDevice))
            }
            if perTenant > 0, tenant.tokens < 1 {
                return Refusal(scope: "tenant", retryAfter: Self.wait(for: tenant, rate: perTenant))
            }
            if perDevice > 0 {
                device.tokens -= 1
                state.devices[deviceKey] = device
            }
            if perTenant > 0 {
                tenant.tokens -= 1
                state.tenants[tenantID] = tenant
            }
            // Full buckets carry no information: forget them so the maps stay small.
            if state.devices.count > 100_000 { state.devices = state.devices.filter { $0.value.tokens < Double(perDevice) - 1 } }
            return nil
        }
    }

    private static func refilled(_ bucket: Bucket?, rate: Int, now: Date) -> Bucket {
        guard var bucket else { return Bucket(tokens: Double(rate), updated: now) }
        let elapsed = max(0, now.timeIntervalSince(bucket.updated))
        bucket.tokens = min(Double(rate), bucket.tokens + elapsed * Double(rate) / 60)
        bucket.updated = now
        return bucket
    }

    private static func wait(for bucket: Bucket, rate: Int) -> TimeInterval {
        (1 - bucket.tokens) * 60 / Double(rate)
    }
}

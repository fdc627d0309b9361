/// What every way in (MQTT, HTTP, later CoAP) turns a device's message into: after the ingress
/// adapter, nothing knows which protocol the device used (DESIGN.md, "the one flow").
public struct DeviceMessage: Sendable {
    /// What the message carries.
    public enum Kind: Sendable {
        /// Samples, already parsed and validated (every sample has its timestamp).
        case telemetry([TelemetrySample])
    }

    public var tenantID: String
    public var deviceID: String
    /// When the platform received the message, in milliseconds since 1970-01-01 UTC.
    public var receivedAt: Int64
    public var kind: Kind

    public init(tenantID: String, deviceID: String, receivedAt: Int64, kind: Kind) {
        self.tenantID = tenantID
        self.deviceID = deviceID
        self.receivedAt = receivedAt
        self.kind = kind
    }

    /// The samples, for telemetry messages.
    public var samples: [TelemetrySample] {
        switch kind {
        case .telemetry(let samples): samples
        }
    }
}

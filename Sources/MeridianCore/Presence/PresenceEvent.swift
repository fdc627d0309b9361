import Foundation

/// Why a device's connection ended.
public enum PresenceReason: String, Sendable, Hashable, Codable, CaseIterable {
    /// The device sent DISCONNECT.
    case clean
    /// Nothing arrived within 1.5 × the keep-alive interval.
    case keepaliveTimeout = "keepalive-timeout"
    /// Another connection with the same client id took the session over.
    case takeover
    /// The platform closed it: the device, its credential or its API key was revoked or
    /// disabled.
    case revoked
    /// The server shut down.
    case shutdown
    /// A protocol violation, or the network connection broke without DISCONNECT.
    case error
}

/// One connect or disconnect of one device connection, as stored and streamed.
public struct PresenceEvent: Sendable, Hashable, Codable {
    /// What happened.
    public enum Kind: String, Sendable, Hashable, Codable {
        case connected
        case disconnected
    }

    /// Assigned by the store (increasing); 0 before the event is stored.
    public var sequence: Int64
    public var tenantID: String
    public var deviceID: String
    public var kind: Kind
    /// When it happened (whole milliseconds).
    public var time: Date
    /// The connection's remote address (`ip:port`).
    public var address: String?
    /// `mqtt-3.1.1`, `mqtt-5.0`, ...
    public var protocolName: String
    /// `tcp`, `tls`, `websocket`, `secure-websocket`.
    public var transport: String
    /// Unique per connection within one server process.
    public var connectionID: UInt64
    /// Disconnects: why.
    public var reason: PresenceReason?
    /// Disconnects: the MQTT reason code sent or received, if any.
    public var reasonCode: UInt8?
    /// Whether the device is online after this event (another connection may still be open).
    public var online: Bool

    public init(
        sequence: Int64 = 0, tenantID: String, deviceID: String, kind: Kind, time: Date, address: String?, protocolName: String,
        transport: String, connectionID: UInt64, reason: PresenceReason? = nil, reasonCode: UInt8? = nil, online: Bool
    ) {
        self.sequence = sequence
        self.tenantID = tenantID
        self.deviceID = deviceID
        self.kind = kind
        self.time = time
        self.address = address
        self.protocolName = protocolName
        self.transport = transport
        self.connectionID = connectionID
        self.reason = reason
        self.reasonCode = reasonCode
        self.online = online
    }
}

/// A device's presence now (`GET /devices/{id}/presence`).
public struct DevicePresence: Sendable, Hashable {
    public var online: Bool
    /// Now while online; else when it was last connected (its last disconnect, or the registry's
    /// last-seen time, whichever is later). Nil for a device never seen.
    public var lastSeen: Date?
    /// Online: since when (the first of its current connections); offline: since its last
    /// disconnect.
    public var since: Date?
    /// The newest connection's (online) or the last connection's (offline) remote address.
    public var address: String?
    public var protocolName: String?
    public var transport: String?
    /// Open connections (several while one is taking over, or with several client ids).
    public var connections: Int
    /// Offline: why the last connection ended.
    public var lastDisconnectReason: PresenceReason?

    public init(
        online: Bool, lastSeen: Date?, since: Date?, address: String?, protocolName: String?, transport: String?, connections: Int,
        lastDisconnectReason: PresenceReason?
    ) {
        self.online = online
        self.lastSeen = lastSeen
        self.since = since
        self.address = address
        self.protocolName = protocolName
        self.transport = transport
        self.connections = connections
        self.lastDisconnectReason = lastDisconnectReason
    }
}

/// Where presence events are kept: `presence_events` in the registry's database (SQLite
/// `meridian.sqlite` or PostgreSQL).
public protocol PresenceStore: Sendable {
    /// Stores the events in order, assigning increasing sequences.
    func append(_ events: [PresenceEvent]) async throws
    /// The device's events with a sequence below `before` (all when nil), newest first, at most
    /// `limit`.
    func events(tenantID: String, deviceID: String, before: Int64?, limit: Int) async throws -> [PresenceEvent]
    /// Forgets a device's events (the device was deleted).
    func deleteEvents(deviceID: String) async throws
    /// Forgets events older than `time`; returns how many.
    @discardableResult
    func deleteEvents(before time: Date) async throws -> Int
}

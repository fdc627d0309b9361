import MQTTCore

/// Why a device operation failed.
public enum MeridianDeviceError: Error, Sendable, CustomStringConvertible {
    /// The configuration cannot work; the message names the setting.
    case invalidConfiguration(String)
    /// The server refused the connection (bad credentials, not authorized, ...): retrying does
    /// not help.
    case refused(ReasonCode, String)
    /// The offline buffer is full and ``MeridianDevice/BufferOverflow/rejectNew`` is set.
    case bufferFull
    /// A value cannot be telemetry: the message names the key.
    case invalidTelemetry(String)
    /// The server did not answer a request in time.
    case timedOut(String)
    /// The server rejected a twin request: its code (400, 409, 413, ...) and message.
    case rejected(code: Int, message: String)
    /// Provisioning failed: the server's message.
    case provisioningFailed(String)
    /// The device is not connected (``MeridianDevice/connect()`` was not called, or it was
    /// disconnected).
    case notConnected
    /// The on-disk buffer could not be read or written.
    case storage(String)

    public var description: String {
        switch self {
        case .invalidConfiguration(let message): "invalid device configuration: \(message)"
        case .refused(let code, let message): "the server refused the connection (\(code)): \(message)"
        case .bufferFull: "the telemetry buffer is full"
        case .invalidTelemetry(let message): "invalid telemetry: \(message)"
        case .timedOut(let what): "no answer from the server: \(what)"
        case .rejected(let code, let message): "rejected by the server (\(code)): \(message)"
        case .provisioningFailed(let message): "provisioning failed: \(message)"
        case .notConnected: "the device is not connected"
        case .storage(let message): "telemetry buffer: \(message)"
        }
    }
}

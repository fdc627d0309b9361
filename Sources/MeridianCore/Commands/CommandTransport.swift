/// The way out to devices the command service uses (the server's `DeviceGateway`): whether a
/// device can be reached now, and sending a command to it.
public protocol CommandTransport: Sendable {
    /// How `deviceID` listens for commands on this node right now: the convention of its
    /// subscription, or nil when it is not connected or not subscribed to commands.
    func route(tenantID: String, deviceID: String) -> CommandConvention?

    /// Sends `command` (already in state `sent`) by `convention` — or, when the transport only
    /// guessed the convention, by the first that reaches the device; returns the convention it
    /// reached the device's session with, or nil when it reached nobody (the device went away).
    func send(_ command: Command, by convention: CommandConvention) async -> CommandConvention?
}

/// What became of a device's answer to a command.
public enum CommandAnswerVerdict: Sendable, Hashable {
    /// Recorded: the command succeeded or failed with it.
    case accepted
    /// No command has this id.
    case unknown
    /// The command belongs to another device (or tenant): refused, not recorded.
    case notYours
    /// The command is finished already (answered, timed out, expired) or is one-way.
    case finished
}

/// How important a ``CommandLog`` line is.
public enum CommandLogLevel: Sendable, Hashable {
    case debug, info, warning, error
}

/// Where the command service reports what happened: a short message and dotted metadata keys
/// (`device.id`), never payloads. The server passes its swift-log logger through it.
public typealias CommandLog = @Sendable (_ level: CommandLogLevel, _ message: String, _ metadata: [String: String]) -> Void

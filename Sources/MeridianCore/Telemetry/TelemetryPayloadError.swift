/// Why a telemetry payload was refused. ``reason`` is the text the device sees (the MQTT 5 reason
/// string of a PUBACK 0x99, the MQTT 3.1.1 error message, the HTTP problem detail), for example
/// `value of "temp" must be a number, boolean or string (byte 12)`.
///
/// The text never carries the payload beyond a key name, and key names in it are cut to 64 bytes.
public struct TelemetryPayloadError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What is wrong, for the device: one sentence, ending with ` (byte N)` when a place in the
    /// payload is to blame.
    public var reason: String
    /// The 0-based byte offset in the payload where the problem starts, when there is one.
    public var offset: Int?
    /// The key the problem concerns (flattened with dots, cut to 64 bytes), when there is one.
    public var key: String?

    public init(reason: String, offset: Int? = nil, key: String? = nil) {
        self.reason = reason
        self.offset = offset
        self.key = key
    }

    /// The same as ``reason``.
    public var description: String { reason }
}

extension TelemetryPayloadError {
    /// Longest key name, in UTF-8 bytes, quoted in a reason.
    static let displayedKeyLength = 64

    /// An error whose reason is `message` plus the byte offset.
    static func at(_ offset: Int?, _ message: String, key: String? = nil) -> TelemetryPayloadError {
        let reason = offset.map { "\(message) (byte \($0))" } ?? message
        return TelemetryPayloadError(reason: reason, offset: offset, key: key)
    }

    static func notJSON(_ offset: Int, _ detail: String) -> TelemetryPayloadError {
        .at(offset, "not valid JSON: \(detail)")
    }

    /// A problem with the value of `key` (a display key, see ``display(_:)``).
    static func value(_ key: String, _ offset: Int, _ problem: String) -> TelemetryPayloadError {
        .at(offset, "value of \"\(key)\" \(problem)", key: key)
    }

    /// A key name fit for a reason: at most ``displayedKeyLength`` bytes (cut on a character
    /// boundary, with "…"), control characters replaced by `?`.
    static func display<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> String {
        var cut = Array(bytes.prefix(displayedKeyLength + 1))
        var truncated = false
        if cut.count > displayedKeyLength {
            truncated = true
            cut.removeLast(cut.count - displayedKeyLength)
            // Do not end inside a multi-byte character: drop a last sequence that is incomplete.
            var start = cut.count - 1
            while start > 0 && cut.count - start < 4 && cut[start] & 0xC0 == 0x80 { start -= 1 }
            let lead = cut[start]
            let length = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1
            if cut.count - start < length { cut.removeLast(cut.count - start) }
        }
        var text = String(decoding: cut, as: UTF8.self)
        if text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            text = String(
                String.UnicodeScalarView(text.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : $0 })
            )
        }
        return truncated ? text + "…" : text
    }
}

/// An error thrown when a time-series chunk cannot be read: it is truncated, fails its checksum, has a format
/// version this build does not know, or its contents contradict themselves.
///
/// Check ``code`` to handle a kind of error; ``message`` says what exactly was wrong (offsets and counts, never
/// sample values). Equality considers only ``code``, so tests can compare with
/// `#expect(throws: TimeSeriesCodecError.truncated)`.
public struct TimeSeriesCodecError: Error, Hashable, CustomStringConvertible {
    /// The kind of error.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base: Hashable, Sendable {
            case truncated
            case checksumMismatch
            case unsupportedVersion
            case malformed
        }

        fileprivate var base: Base

        /// The chunk ends before its header or one of its sections does.
        public static let truncated = Code(base: .truncated)
        /// The header's or the body's CRC-32C does not match: the bytes were changed after encoding.
        public static let checksumMismatch = Code(base: .checksumMismatch)
        /// The chunk was written by a newer format version (or is not a chunk at all).
        public static let unsupportedVersion = Code(base: .unsupportedVersion)
        /// The checksums hold but the contents contradict themselves (unknown encoding, counts that do not add
        /// up, invalid UTF-8, ...).
        public static let malformed = Code(base: .malformed)

        /// The code's name.
        public var description: String {
            switch base {
            case .truncated: "truncated"
            case .checksumMismatch: "checksumMismatch"
            case .unsupportedVersion: "unsupportedVersion"
            case .malformed: "malformed"
            }
        }
    }

    /// The kind of error.
    public var code: Code
    /// What was wrong, for logs and bug reports.
    public var message: String

    /// An error of the given kind with an explanation.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// A truncated chunk (for comparisons in tests).
    public static let truncated = TimeSeriesCodecError(.truncated, "chunk is truncated")
    /// A checksum mismatch (for comparisons in tests).
    public static let checksumMismatch = TimeSeriesCodecError(.checksumMismatch, "checksum mismatch")
    /// An unknown format version (for comparisons in tests).
    public static let unsupportedVersion = TimeSeriesCodecError(.unsupportedVersion, "unsupported format version")
    /// Self-contradicting contents (for comparisons in tests).
    public static let malformed = TimeSeriesCodecError(.malformed, "chunk is malformed")

    /// `TimeSeriesCodecError.<code>: <message>`.
    public var description: String { "TimeSeriesCodecError.\(code): \(message)" }

    /// Errors are equal when their codes are (the message is not compared).
    public static func == (lhs: TimeSeriesCodecError, rhs: TimeSeriesCodecError) -> Bool { lhs.code == rhs.code }

    /// Hashes the code only, consistent with `==`.
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}

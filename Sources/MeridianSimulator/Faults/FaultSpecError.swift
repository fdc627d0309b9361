/// A fault spec that does not parse; ``part`` is the piece that is wrong, and ``description``
/// says what was expected.
public struct FaultSpecError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The whole spec as given.
    public var spec: String
    /// The part of it that is wrong (the kind, the percentage, the duration or the profile).
    public var part: String
    /// What is wrong and what was expected.
    public var message: String

    /// An error about `part` of `spec`.
    public init(spec: String, part: String, _ message: String) {
        self.spec = spec
        self.part = part
        self.message = message
    }

    public var description: String { "invalid fault '\(spec)': \(message)" }
}

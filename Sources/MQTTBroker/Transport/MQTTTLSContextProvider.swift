import NIOConcurrencyHelpers
import NIOSSL

/// The TLS context of a listener, replaceable while the listener runs.
///
/// Every accepted connection takes the context current at that moment, so after
/// ``replace(with:)`` new connections present the new certificate (and verify clients against
/// the new authorities) while established connections carry on with the old one.
public final class MQTTTLSContextProvider: Sendable {
    private let current: NIOLockedValueBox<NIOSSLContext>

    /// A provider starting with `context`.
    public init(_ context: NIOSSLContext) {
        self.current = NIOLockedValueBox(context)
    }

    /// The context new connections use.
    public var context: NIOSSLContext {
        current.withLockedValue { $0 }
    }

    /// Makes `context` the one new connections use.
    public func replace(with context: NIOSSLContext) {
        current.withLockedValue { $0 = context }
    }
}

import Hummingbird
import NIOCore

/// The request context of Meridian's HTTP and HTTPS routes: Hummingbird's basics plus the
/// address of the peer (for endpoints restricted to loopback clients).
public struct MeridianRequestContext: RequestContext, RemoteAddressRequestContext {
    /// Hummingbird's per-request state (logger, parameters, endpoint path).
    public var coreContext: CoreRequestContextStorage
    /// The client's address, as the socket reports it.
    public let remoteAddress: SocketAddress?

    /// The context of a request arriving on `source`'s channel.
    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress
    }
}

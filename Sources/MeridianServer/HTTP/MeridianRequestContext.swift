import Hummingbird
import NIOCore

/// The request context of Meridian's HTTP and HTTPS routes: Hummingbird's basics plus the
/// address of the peer (for endpoints restricted to loopback clients).
public struct MeridianRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The client's address, as the socket reports it.
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress
    }
}

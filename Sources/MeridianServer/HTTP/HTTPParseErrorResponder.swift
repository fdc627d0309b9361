import NIOCore
import NIOHTTP1

/// Answers a connection's first request with `400 Bad Request` (and closes) when NIO cannot
/// parse it: a request line or headers over its limits (80 KiB), bytes that are not HTTP.
///
/// Hummingbird answers parse errors itself once a request is in its hands, but the first request
/// of a connection is parsed before that, while NIO's upgrade handler waits for a complete head
/// to decide between HTTP and a WebSocket upgrade; an error there would leave the client waiting
/// for an answer that never comes. After the first head has passed, errors go on unchanged.
final class HTTPParseErrorResponder: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// The answer, in the API's problem+json format.
    static let problem = #"{"type":"urn:meridian:problem:invalid-request","title":"Invalid request","status":400,"detail":"the request could not be parsed as HTTP/1.1 (request line and headers are limited to 80 KiB)"}"#

    private var sawHead = false
    private var answered = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !sawHead, case .head = unwrapInboundIn(data) { sawHead = true }
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard !sawHead, error is HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        guard !answered else { return }
        answered = true
        let body = ByteBuffer(string: Self.problem)
        var headers = HTTPHeaders()
        headers.add(name: "Connection", value: "close")
        headers.add(name: "Content-Type", value: "application/problem+json")
        headers.add(name: "Content-Length", value: "\(body.readableBytes)")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .badRequest, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }
}

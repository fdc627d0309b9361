import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// A WebSocket server on 127.0.0.1 that records the frames a client sends and lets the test
/// write frames of its choosing (fragmented messages, pings, close), to exercise the client's
/// WebSocket framing without a broker.
final class ScriptedWebSocketServer: Sendable {
    /// A frame as the server saw it, unmasked.
    struct Frame: Sendable {
        var opcode: WebSocketOpcode
        var fin: Bool
        var data: ByteBuffer
    }

    let host = "127.0.0.1"
    let port: Int
    /// Frames from the client, in order.
    let frames: StreamRecorder<Frame>
    /// The upgraded connections (normally one).
    let channels: StreamRecorder<any Channel>
    private let serverChannel: any Channel

    private init(serverChannel: any Channel, frames: StreamRecorder<Frame>, channels: StreamRecorder<any Channel>) {
        self.serverChannel = serverChannel
        self.port = serverChannel.localAddress!.port!
        self.frames = frames
        self.channels = channels
    }

    static func start() async throws -> ScriptedWebSocketServer {
        let (frameStream, frameContinuation) = AsyncStream.makeStream(of: Frame.self)
        let (channelStream, channelContinuation) = AsyncStream.makeStream(of: (any Channel).self)
        let serverChannel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                let upgrader = NIOWebSocketServerUpgrader(
                    automaticErrorHandling: false,
                    shouldUpgrade: { channel, head in
                        guard head.uri == "/mqtt", head.headers["Sec-WebSocket-Protocol"].first == "mqtt" else {
                            return channel.eventLoop.makeSucceededFuture(nil)
                        }
                        return channel.eventLoop.makeSucceededFuture(HTTPHeaders([("Sec-WebSocket-Protocol", "mqtt")]))
                    },
                    upgradePipelineHandler: { channel, _ in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(
                                FrameRecorder(continuation: frameContinuation)
                            )
                            channelContinuation.yield(channel)
                        }
                    }
                )
                return channel.eventLoop.makeCompletedFuture {
                    // Requests that are not upgraded get a 404, as from a real web server.
                    let notFound = NotFoundResponder()
                    let boundNotFound = NIOLoopBound(notFound, eventLoop: channel.eventLoop)
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                        withServerUpgrade: (
                            upgraders: [upgrader],
                            completionHandler: { context in
                                context.pipeline.syncOperations.removeHandler(boundNotFound.value, promise: nil)
                            }
                        )
                    )
                    try channel.pipeline.syncOperations.addHandler(notFound)
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        return ScriptedWebSocketServer(
            serverChannel: serverChannel,
            frames: StreamRecorder(frameStream),
            channels: StreamRecorder(channelStream)
        )
    }

    /// Writes a frame (unmasked, as a server must) on the first connection.
    func send(_ opcode: WebSocketOpcode, fin: Bool = true, _ bytes: [UInt8]) async throws {
        let channel = try await channels.first()
        let frame = WebSocketFrame(fin: fin, opcode: opcode, data: ByteBuffer(bytes: bytes))
        try await channel.writeAndFlush(frame)
    }

    /// All application bytes the client sent so far (binary and continuation frames).
    var receivedBytes: [UInt8] {
        frames.all.filter { $0.opcode == .binary || $0.opcode == .continuation }.flatMap {
            Array($0.data.readableBytesView)
        }
    }

    func stop() async {
        try? await serverChannel.close()
        for channel in channels.all { try? await channel.close() }
    }

    private final class NotFoundResponder: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard case .end = unwrapInboundIn(data) else { return }
            let head = HTTPResponseHead(version: .http1_1, status: .notFound, headers: ["Content-Length": "0"])
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }

    private final class FrameRecorder: ChannelInboundHandler {
        typealias InboundIn = WebSocketFrame
        let continuation: AsyncStream<Frame>.Continuation

        init(continuation: AsyncStream<Frame>.Continuation) {
            self.continuation = continuation
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let frame = unwrapInboundIn(data)
            continuation.yield(Frame(opcode: frame.opcode, fin: frame.fin, data: frame.unmaskedData))
        }
    }
}

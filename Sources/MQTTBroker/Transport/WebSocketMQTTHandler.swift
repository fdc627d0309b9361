import NIOCore
import NIOWebSocket

/// Carries MQTT over WebSocket (MQTT 5 §6): binary frames in, bytes out to the MQTT handler;
/// bytes from the MQTT handler out as binary frames. Answers pings, completes the close
/// handshake, and refuses text frames (the MQTT spec requires binary).
///
/// Frames may split or join MQTT packets freely; the MQTT handler reassembles them.
public final class WebSocketMQTTHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = WebSocketFrame
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = WebSocketFrame

    private var awaitingClose = false
    private var inBinaryMessage = false

    public init() {}

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .binary:
            inBinaryMessage = !frame.fin
            context.fireChannelRead(wrapInboundOut(frame.unmaskedData))
        case .continuation:
            guard inBinaryMessage else { return closeWith(context: context, code: .protocolError) }
            inBinaryMessage = !frame.fin
            context.fireChannelRead(wrapInboundOut(frame.unmaskedData))
        case .text:
            closeWith(context: context, code: .unacceptableData)
        case .ping:
            var payload = frame.unmaskedData
            let pong = WebSocketFrame(fin: true, opcode: .pong, data: payload.readSlice(length: payload.readableBytes) ?? ByteBuffer())
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case .pong:
            break
        case .connectionClose:
            if awaitingClose {
                context.close(promise: nil)
            } else {
                awaitingClose = true
                var data = frame.unmaskedData
                let code = data.readWebSocketErrorCode() ?? .normalClosure
                var reply = context.channel.allocator.buffer(capacity: 2)
                reply.write(webSocketErrorCode: code)
                let close = WebSocketFrame(fin: true, opcode: .connectionClose, data: reply)
                context.writeAndFlush(wrapOutboundOut(close)).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            }
        default:
            closeWith(context: context, code: .protocolError)
        }
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let bytes = unwrapOutboundIn(data)
        context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .binary, data: bytes)), promise: promise)
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard mode == .all, !awaitingClose, context.channel.isActive else {
            context.close(mode: mode, promise: promise)
            return
        }
        // Send a close frame first so browsers see a clean close; then close the socket.
        awaitingClose = true
        var data = context.channel.allocator.buffer(capacity: 2)
        data.write(webSocketErrorCode: .normalClosure)
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data))).assumeIsolated().whenComplete { _ in
            context.close(mode: .all, promise: promise)
        }
    }

    private func closeWith(context: ChannelHandlerContext, code: WebSocketErrorCode) {
        guard !awaitingClose else { return }
        awaitingClose = true
        var data = context.channel.allocator.buffer(capacity: 2)
        data.write(webSocketErrorCode: code)
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }
}

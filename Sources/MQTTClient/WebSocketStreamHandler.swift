import NIOCore
import NIOWebSocket

/// Turns a WebSocket connection into the byte stream MQTT expects (MQTT 5 §6).
///
/// Inbound binary and continuation frames are forwarded as bytes (an MQTT packet may span
/// frames and a frame may hold several packets; the MQTT decoder after this handler frames
/// them). Pings are answered with pongs; a close frame is answered and the channel closed.
/// Outbound bytes leave as masked binary frames; closing the channel sends a close frame first.
final class WebSocketStreamHandler: ChannelDuplexHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = WebSocketFrame

    private var sentClose = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .binary, .continuation, .text:
            context.fireChannelRead(wrapInboundOut(frame.unmaskedData))
        case .ping:
            let pong = WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case .pong:
            break
        case .connectionClose:
            if !sentClose {
                sentClose = true
                var data = frame.unmaskedData
                let code = data.readWebSocketErrorCode() ?? .normalClosure
                var reply = context.channel.allocator.buffer(capacity: 2)
                reply.write(webSocketErrorCode: code)
                let close = WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: reply)
                context.writeAndFlush(wrapOutboundOut(close)).assumeIsolated().whenComplete { _ in
                    context.close(promise: nil)
                }
            } else {
                context.close(promise: nil)
            }
        default:
            break
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let bytes = unwrapOutboundIn(data)
        let frame = WebSocketFrame(fin: true, opcode: .binary, maskKey: .random(), data: bytes)
        context.write(wrapOutboundOut(frame), promise: promise)
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard mode == .all, !sentClose, context.channel.isActive else {
            context.close(mode: mode, promise: promise)
            return
        }
        sentClose = true
        var data = context.channel.allocator.buffer(capacity: 2)
        data.write(webSocketErrorCode: .normalClosure)
        let frame = WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: data)
        context.writeAndFlush(wrapOutboundOut(frame)).assumeIsolated().whenComplete { _ in
            context.close(mode: mode, promise: promise)
        }
    }
}

@available(*, unavailable)
extension WebSocketStreamHandler: Sendable {}

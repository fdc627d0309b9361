import Foundation
import Logging
import MeridianCore
import NIOCore
import NIOWebSocket

/// One live-stream connection after the WebSocket upgrade: RFC 6455 framing on one side (text
/// messages up to ``maximumMessageSize``, also fragmented; pings answered; a client silent for
/// the hub's ping interval pinged, and one silent for twice as long closed; the close handshake),
/// ``StreamSession`` on the other, and the connection's ``StreamOutbox`` drained while the
/// socket is writable.
///
/// The session's asynchronous checks (a token, a subscription's devices) run as tasks; while
/// one runs, the handler reads no more from the socket and holds the messages already read.
final class StreamChannelHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    /// Largest client message (after joining fragments), in bytes.
    static let maximumMessageSize = 64 * 1024
    /// How long a client without a token on the upgrade has to send its `auth` message.
    static let authenticationTimeout = TimeAmount.seconds(10)
    /// How long a close handshake may take before the socket is closed anyway.
    static let closeTimeout = TimeAmount.seconds(5)
    /// Most device messages sent between flushes.
    static let flushEvery = 32
    /// Most bytes of messages held while a check runs.
    static let maximumHeldBytes = 256 * 1024

    private var session: StreamSession
    private let hub: StreamHub
    private let logger: Logger
    private var context: ChannelHandlerContext?
    private var outbox: StreamOutbox?
    private var connectionID: UInt64?
    /// A text message being reassembled from fragments.
    private var fragments: ByteBuffer?
    /// Messages read while a check ran, oldest first, and their size.
    private var held: [String] = []
    private var heldBytes = 0
    /// A `read` held back while a check runs.
    private var readHeld = false
    private var closeSent = false
    private var authenticationTimer: Scheduled<Void>?
    private var expiryTimer: Scheduled<Void>?
    private var closeTimer: Scheduled<Void>?
    private var pingTimer: RepeatedTask?
    /// When the client last sent a frame (any: a pong, a message, a ping).
    private var lastHeard = NIODeadline.now()
    private let remoteAddress: String?
    private var lastDropLog: NIODeadline?
    private var droppedSinceLog = 0

    init(hub: StreamHub, principal: StreamSession.Principal?, remoteAddress: String?, logger: Logger) {
        self.hub = hub
        self.session = StreamSession(principal: principal)
        self.remoteAddress = remoteAddress
        self.logger = logger
    }

    // MARK: lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        outbox = StreamOutbox(limits: hub.outboxLimits) {
            eventLoop.execute { loopBound.value.drain() }
        }
        lastHeard = eventLoop.now
        // Checked twice per interval: a silent client is pinged between 1 and 1.5 intervals
        // after its last frame and closed between 2 and 2.5.
        let interval = hub.pingInterval
        let check = TimeAmount.nanoseconds(max(interval.nanoseconds / 2, 1_000_000))
        pingTimer = eventLoop.scheduleRepeatedTask(initialDelay: check, delay: check) { _ in
            loopBound.value.checkLiveness(interval: interval)
        }
        if session.principal == nil {
            authenticationTimer = eventLoop.scheduleTask(in: Self.authenticationTimeout) {
                loopBound.value.perform(loopBound.value.session.authenticationDeadlinePassed())
            }
        } else {
            perform(session.opening())
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        tearDown()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        tearDown()
        context.fireChannelInactive()
    }

    private func tearDown() {
        session.close()
        authenticationTimer?.cancel()
        expiryTimer?.cancel()
        closeTimer?.cancel()
        pingTimer?.cancel()
        pingTimer = nil
        outbox?.close()
        if let connectionID {
            hub.unregister(connectionID)
            self.connectionID = nil
        }
    }

    // MARK: inbound frames

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        lastHeard = context.eventLoop.now
        // Once closing, only the client's close frame matters.
        guard !closeSent || frame.opcode == .connectionClose else { return }
        guard frame.maskKey != nil else {
            // RFC 6455 §5.1: a client masks every frame.
            return fail(code: .protocolError, reason: "client frames must be masked")
        }
        guard !frame.rsv1, !frame.rsv2, !frame.rsv3 else {
            return fail(code: .protocolError, reason: "no extension was negotiated")
        }
        switch frame.opcode {
        case .text:
            guard fragments == nil else {
                return fail(code: .protocolError, reason: "a new message began inside a fragmented one")
            }
            var data = frame.unmaskedData
            if frame.fin {
                message(&data)
            } else {
                fragments = data
            }
        case .continuation:
            guard var buffer = fragments else {
                return fail(code: .protocolError, reason: "a continuation frame without a message")
            }
            var data = frame.unmaskedData
            guard buffer.readableBytes + data.readableBytes <= Self.maximumMessageSize else {
                fragments = nil
                return fail(code: .messageTooLarge, reason: "messages are limited to \(Self.maximumMessageSize) bytes")
            }
            fragments = nil  // no second reference: the append does not copy
            buffer.writeBuffer(&data)
            if frame.fin {
                message(&buffer)
            } else {
                fragments = buffer
            }
        case .binary:
            fail(code: .unacceptableData, reason: "send JSON text messages")
        case .ping:
            guard !closeSent else { return }
            var payload = frame.unmaskedData
            let pong = WebSocketFrame(
                fin: true,
                opcode: .pong,
                data: payload.readSlice(length: payload.readableBytes) ?? ByteBuffer()
            )
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case .pong:
            break
        case .connectionClose:
            receivedClose(frame, context: context)
        default:
            fail(code: .protocolError, reason: "unknown opcode")
        }
    }

    /// Pings a client that has been silent for an interval; closes one silent for two (it is
    /// gone: a dead peer never answers a close handshake, so the socket is simply closed).
    private func checkLiveness(interval: TimeAmount) {
        guard let context, !closeSent else { return }
        let silence = context.eventLoop.now - lastHeard
        if silence >= interval * 2 {
            logger.info(
                "live stream client gone: no answer to pings",
                metadata: ["stream.remote": "\(remoteAddress ?? "-")", "stream.silent_s": "\(silence.nanoseconds / 1_000_000_000)"]
            )
            pingTimer?.cancel()
            pingTimer = nil
            context.close(promise: nil)
        } else if silence >= interval {
            let ping = WebSocketFrame(fin: true, opcode: .ping, data: ByteBuffer(string: "meridian"))
            context.writeAndFlush(wrapOutboundOut(ping), promise: nil)
        }
    }

    private func message(_ data: inout ByteBuffer) {
        guard data.readableBytes <= Self.maximumMessageSize else {
            return fail(code: .messageTooLarge, reason: "messages are limited to \(Self.maximumMessageSize) bytes")
        }
        guard let text = String(validating: data.readableBytesView, as: UTF8.self) else {
            return fail(code: .dataInconsistentWithMessage, reason: "text messages must be UTF-8")
        }
        guard !closeSent else { return }
        if session.isBusy || !held.isEmpty {
            held.append(text)
            heldBytes += text.utf8.count
            if heldBytes > Self.maximumHeldBytes {
                fail(code: .policyViolation, reason: "too many messages while a request is being checked")
            }
            return
        }
        perform(session.received(text))
    }

    /// Feeds held messages while no check runs, then lets reading resume.
    private func feedHeld() {
        while !session.isBusy, !held.isEmpty, !closeSent {
            let text = held.removeFirst()
            heldBytes -= text.utf8.count
            perform(session.received(text))
        }
        if !session.isBusy, readHeld, let context {
            readHeld = false
            context.read()
        }
    }

    private func receivedClose(_ frame: WebSocketFrame, context: ChannelHandlerContext) {
        session.close()
        guard !closeSent else {
            context.close(promise: nil)
            return
        }
        closeSent = true
        var data = frame.unmaskedData
        let code = data.readWebSocketErrorCode() ?? .normalClosure
        var reply = context.channel.allocator.buffer(capacity: 2)
        reply.write(webSocketErrorCode: code)
        let close = WebSocketFrame(fin: true, opcode: .connectionClose, data: reply)
        context.writeAndFlush(wrapOutboundOut(close)).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    // MARK: outbound

    func read(context: ChannelHandlerContext) {
        if session.isBusy {
            readHeld = true
        } else {
            context.read()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, outbox?.resume() == true { drain() }
        context.fireChannelWritabilityChanged()
    }

    /// Sends what the outbox holds while the socket is writable.
    private func drain() {
        guard let context, let outbox else { return }
        guard !closeSent else {
            outbox.close()
            return
        }
        // One device message at a time, checking writability before each: what waits in NIO's
        // buffer stays within its high watermark plus one message. A flush may make the socket
        // writable again (its writability event comes while this drain still runs): go on then.
        var exhausted = false
        repeat {
            var unflushed = 0
            while context.channel.isWritable {
                let (messages, dropped) = outbox.take(maximum: 1)
                if dropped > 0 {
                    send(.dropped(count: dropped), flush: false)
                    logDrops(dropped)
                }
                if messages.isEmpty && dropped == 0 {
                    exhausted = true
                    break
                }
                for event in messages {
                    for active in session.subscriptions where active.follows(event.deviceID) {
                        let text: String?
                        switch (event, active.subscription.topic) {
                        case (.telemetry(let message), .telemetry):
                            text = StreamServerMessage.telemetry(subscription: active.subscription.id, message: message, keys: active.subscription.keys)
                        case (.twin(_, _, let members), .twin):
                            text = StreamServerMessage.twin(subscription: active.subscription.id, members: members)
                        case (.alarm(_, _, let members), .alarm):
                            text = StreamServerMessage.event(type: "alarm", subscription: active.subscription.id, members: members)
                        case (.presence(let presence), .presence):
                            text = StreamServerMessage.presence(subscription: active.subscription.id, event: presence)
                        default:
                            text = nil
                        }
                        guard let text else { continue }
                        write(text)
                    }
                }
                unflushed += 1
                if unflushed >= Self.flushEvery {
                    context.flush()
                    unflushed = 0
                }
            }
            context.flush()
        } while !exhausted && context.channel.isWritable && !closeSent
        // Not writable: the writability event resumes the drain.
        if !exhausted { outbox.pause() }
    }

    /// Logs discarded messages, at most once a minute per connection.
    private func logDrops(_ count: Int) {
        droppedSinceLog += count
        let now = NIODeadline.now()
        if let last = lastDropLog, now - last < .seconds(60) { return }
        lastDropLog = now
        logger.info(
            "stream client too slow: messages discarded",
            metadata: ["stream.connection": "\(connectionID ?? 0)", "stream.dropped": "\(droppedSinceLog)"]
        )
        droppedSinceLog = 0
    }

    private func write(_ text: String) {
        guard let context else { return }
        let buffer = context.channel.allocator.buffer(string: text)
        context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, data: buffer)), promise: nil)
    }

    private func send(_ message: StreamServerMessage, flush: Bool = true) {
        guard !closeSent, let context else { return }
        write(message.text)
        if flush { context.flush() }
    }

    /// Sends a close frame with `code` and `reason`, then closes the socket once the client
    /// answers it (or after ``closeTimeout``).
    func close(code: UInt16, reason: String) {
        session.close()
        guard !closeSent, let context else { return }
        closeSent = true
        outbox?.close()
        var data = context.channel.allocator.buffer(capacity: 2 + reason.utf8.count)
        data.write(webSocketErrorCode: WebSocketErrorCode(codeNumber: Int(code)))
        // A close frame's payload is at most 125 bytes.
        data.writeString(String(decoding: reason.utf8.prefix(120), as: UTF8.self))
        let frame = WebSocketFrame(fin: true, opcode: .connectionClose, data: data)
        context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
        closeTimer = context.eventLoop.scheduleTask(in: Self.closeTimeout) { [channel = context.channel] in
            channel.close(promise: nil)
        }
    }

    private func fail(code: WebSocketErrorCode, reason: String) {
        logger.debug("stream connection closed for a protocol error", metadata: ["ws.reason": "\(reason)"])
        guard let context else { return }
        if closeSent {
            context.close(promise: nil)
        } else {
            close(code: UInt16(webSocketErrorCode: code), reason: reason)
        }
    }

    // MARK: the session's actions

    private func perform(_ actions: [StreamSession.Action]) {
        for action in actions {
            switch action {
            case .send(let message):
                send(message)
            case .close(let code, let reason):
                close(code: code, reason: reason)
            case .authenticate(let token):
                authenticate(token)
            case .checkDevices(let subscription, let caller):
                check(subscription, caller: caller)
            case .open(let principal):
                authenticationTimer?.cancel()
                authenticationTimer = nil
                guard let outbox, let context else { continue }
                let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
                let eventLoop = context.eventLoop
                guard
                    let id = hub.register(
                        tenantID: principal.tenantID,
                        apiKeyID: principal.apiKeyID,
                        outbox: outbox,
                        close: { code, reason in eventLoop.execute { loopBound.value.close(code: code, reason: reason) }
                        }
                    )
                else {
                    close(code: StreamCloseCode.goingAway, reason: "server shutting down")
                    continue
                }
                connectionID = id
                scheduleExpiry(principal)
                logger.debug(
                    "stream connection opened",
                    metadata: ["tenant.id": "\(principal.tenantID)", "stream.connection": "\(id)"]
                )
            case .renew(let principal):
                if let connectionID { hub.setCredential(connectionID, apiKeyID: principal.apiKeyID) }
                scheduleExpiry(principal)
            case .setInterest(let interest):
                if let connectionID { hub.setInterest(connectionID, interest) }
            case .setPresenceInterest(let interest):
                if let connectionID { hub.setPresenceInterest(connectionID, interest) }
            }
        }
    }

    private func scheduleExpiry(_ principal: StreamSession.Principal) {
        expiryTimer?.cancel()
        expiryTimer = nil
        guard let expiresAt = principal.expiresAt, let context else { return }
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let delay = max(0, expiresAt.timeIntervalSinceNow)
        expiryTimer = context.eventLoop.scheduleTask(in: .milliseconds(Int64((delay * 1000).rounded(.up)))) {
            let handler = loopBound.value
            handler.perform(handler.session.credentialExpired())
        }
    }

    private func authenticate(_ token: String) {
        guard let context else { return }
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        let services = hub.services
        let remoteAddress = self.remoteAddress
        Task {
            let outcome: Result<StreamSession.Principal, APIProblem>
            do {
                let identity = try await services.authenticate(token: token, remoteAddress: remoteAddress)
                outcome = .success(StreamSession.Principal(caller: identity.caller, expiresAt: identity.expiresAt))
            } catch let problem as APIProblem {
                outcome = .failure(problem)
            } catch {
                outcome = .failure(APIProblem.unauthenticated("the token could not be checked", tokenGiven: true))
            }
            eventLoop.execute {
                let handler = loopBound.value
                switch outcome {
                case .success(let principal): handler.perform(handler.session.authenticated(principal))
                case .failure(let problem): handler.perform(handler.session.authenticationFailed(problem.detail))
                }
                handler.feedHeld()
            }
        }
    }

    private func check(_ subscription: StreamSubscription, caller: Caller) {
        guard let context, case .some(let devices) = subscription.devices else { return }
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        let registry = hub.services.registry
        Task {
            var unknown: [String] = []
            var failed = false
            for device in devices {
                do {
                    _ = try await registry.device(device, by: caller)
                } catch let error as RegistryError where error.code == .notFound {
                    unknown.append(device)
                } catch {
                    failed = true
                    break
                }
            }
            eventLoop.execute { [unknown, failed] in
                let handler = loopBound.value
                if failed {
                    handler.perform(handler.session.devicesCheckFailed(subscription))
                } else {
                    handler.perform(handler.session.devicesChecked(subscription, unknown: unknown))
                }
                handler.feedHeld()
            }
        }
    }
}

@available(*, unavailable)
extension StreamChannelHandler: Sendable {}

import MQTTCore
import NIOCore

/// The last handler of a client connection: hands inbound packets to the ``ClientCore``,
/// encodes outbound packets, and keeps the connection alive with PINGREQ.
///
/// It belongs to its event loop (which is the client's), like the core it talks to.
final class MQTTClientChannelHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = MQTTPacket
    typealias OutboundOut = ByteBuffer

    /// The connection attempt this handler serves.
    let connectionID: Int
    private let core: ClientCore
    private let version: MQTTProtocolVersion
    /// Over WebSocket the connection is ready only once the upgrade completed.
    private let awaitsUpgrade: Bool
    private var context: ChannelHandlerContext?
    private var announcedReady = false
    private var isReading = false
    private var needsFlush = false

    private var keepAlive: KeepAlive?
    private var keepAliveTask: Scheduled<Void>?

    init(core: ClientCore, connectionID: Int, version: MQTTProtocolVersion, awaitsUpgrade: Bool) {
        self.core = core
        self.connectionID = connectionID
        self.version = version
        self.awaitsUpgrade = awaitsUpgrade
    }

    // MARK: channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        core.attach(self)
        if context.channel.isActive && !awaitsUpgrade { announceReady() }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        stopKeepAlive()
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        if !awaitsUpgrade { announceReady() }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        stopKeepAlive()
        core.transportClosed(self)
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        isReading = true
        core.received(unwrapInboundIn(data), on: self)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        isReading = false
        if needsFlush {
            needsFlush = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        core.transportFailed(self, error: error)
    }

    /// The transport is ready for MQTT (TCP/TLS connected, or WebSocket upgraded).
    func announceReady() {
        guard !announcedReady else { return }
        announcedReady = true
        core.transportReady(self)
    }

    // MARK: writing

    /// Encodes and writes `packet`; flushes at once unless a read burst is in progress (then at
    /// its end, so acknowledgements of many packets go out in one write).
    func write(_ packet: MQTTPacket, promise: EventLoopPromise<Void>? = nil) {
        guard let context else {
            promise?.fail(MQTTClientError.connectionClosed())
            return
        }
        var buffer = context.channel.allocator.buffer(capacity: packet.encodedSize(version: version))
        packet.write(to: &buffer, version: version)
        writeRaw(buffer, promise: promise)
    }

    /// Writes bytes as they are.
    func writeRaw(_ buffer: ByteBuffer, promise: EventLoopPromise<Void>? = nil) {
        guard let context else {
            promise?.fail(MQTTClientError.connectionClosed())
            return
        }
        keepAlive?.packetSent(at: .now())
        context.write(wrapOutboundOut(buffer), promise: promise)
        if isReading {
            needsFlush = true
        } else {
            context.flush()
        }
    }

    /// Closes the connection after flushing what was written.
    func close() {
        guard let context else { return }
        if needsFlush {
            needsFlush = false
            context.flush()
        }
        context.close(promise: nil)
    }

    // MARK: keep-alive

    /// Starts sending PINGREQ whenever nothing was written for `interval`; the connection is
    /// closed if PINGRESP does not follow within `timeout`.
    func startKeepAlive(interval: TimeAmount, timeout: TimeAmount) {
        guard interval > .zero else { return }
        let keepAlive = KeepAlive(interval: interval, pingTimeout: timeout, lastSent: .now())
        self.keepAlive = keepAlive
        scheduleKeepAlive(at: keepAlive.firstCheck)
    }

    /// A PINGRESP arrived.
    func pingResponseReceived() {
        guard let next = keepAlive?.pingResponseReceived() else { return }
        scheduleKeepAlive(at: next)
    }

    private func stopKeepAlive() {
        keepAliveTask?.cancel()
        keepAliveTask = nil
        keepAlive = nil
    }

    private func scheduleKeepAlive(at deadline: NIODeadline) {
        guard let context else { return }
        keepAliveTask?.cancel()
        let loopBoundSelf = NIOLoopBound(self, eventLoop: context.eventLoop)
        keepAliveTask = context.eventLoop.scheduleTask(deadline: deadline) {
            loopBoundSelf.value.keepAliveFired()
        }
    }

    private func keepAliveFired() {
        keepAliveTask = nil
        guard context != nil, let action = keepAlive?.timerFired(at: .now()) else { return }
        switch action {
        case .check(let deadline):
            scheduleKeepAlive(at: deadline)
        case .sendPing(let deadline):
            write(.pingreq)
            scheduleKeepAlive(at: deadline)
        case .timedOut:
            core.keepAliveTimedOut(self)
        }
    }
}

@available(*, unavailable)
extension MQTTClientChannelHandler: Sendable {}

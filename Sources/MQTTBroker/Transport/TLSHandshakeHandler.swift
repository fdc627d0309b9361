import Logging
import NIOCore
import NIOSSL
import NIOTLS

/// Sits right behind a `NIOSSLServerHandler` until the TLS handshake is over.
///
/// When the handshake completes it calls `onHandshakeCompleted` (the MQTT listener adds the
/// connection handler there, with the client certificate) and removes itself. When it fails —
/// a plaintext client on the TLS port, a client certificate that does not chain to the trusted
/// authorities, no certificate where one is required, no common protocol version — it logs one
/// line with the peer's address and the reason, and closes the connection. A handshake that
/// takes longer than `timeout` is closed the same way.
///
/// Belongs to its channel's event loop.
public final class TLSHandshakeHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer

    private let logger: Logger
    private let listener: String
    private let timeout: TimeAmount
    private let onHandshakeCompleted: (any Channel) throws -> Void
    private let onFailure: () -> Void
    private var timeoutTask: Scheduled<Void>?
    private var finished = false

    /// - Parameters:
    ///   - logger: where the one line per failed handshake goes (at info).
    ///   - listener: names the listener in that line (`tls.listener`), e.g. `mqtts` or `https`.
    ///   - timeout: how long a client has to complete the handshake.
    ///   - onFailure: called once per failed handshake (e.g. to count it).
    ///   - onHandshakeCompleted: called on the event loop once the handshake succeeded, before
    ///     any application data is passed on; throwing closes the connection.
    public init(
        logger: Logger,
        listener: String,
        timeout: TimeAmount = .seconds(10),
        onFailure: @escaping () -> Void = {},
        onHandshakeCompleted: @escaping (any Channel) throws -> Void = { _ in }
    ) {
        self.logger = logger
        self.listener = listener
        self.timeout = timeout
        self.onHandshakeCompleted = onHandshakeCompleted
        self.onFailure = onFailure
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { startTimer(context: context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        startTimer(context: context)
        context.fireChannelActive()
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        timeoutTask?.cancel()
        timeoutTask = nil
    }

    private func startTimer(context: ChannelHandlerContext) {
        guard timeoutTask == nil, !finished else { return }
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timeoutTask = context.eventLoop.scheduleTask(in: timeout) {
            let (handler, context) = bound.value
            handler.fail(
                context: context,
                reason: "no TLS handshake within \(handler.timeout.nanoseconds / 1_000_000_000) s"
            )
        }
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard !finished, let tlsEvent = event as? TLSUserEvent, case .handshakeCompleted = tlsEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        finished = true
        timeoutTask?.cancel()
        timeoutTask = nil
        context.fireUserInboundEventTriggered(event)
        do {
            try onHandshakeCompleted(context.channel)
        } catch {
            log(context: context, reason: "connection setup after the handshake failed: \(error)")
            onFailure()
            context.close(promise: nil)
            return
        }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard !finished else {
            context.fireErrorCaught(error)
            return
        }
        fail(context: context, reason: Self.reason(for: error))
    }

    public func channelInactive(context: ChannelHandlerContext) {
        if !finished {
            finished = true
            timeoutTask?.cancel()
            timeoutTask = nil
            logger.debug(
                "connection closed before the TLS handshake completed",
                metadata: [
                    "tls.listener": "\(listener)", "tls.remote": "\(Self.describe(context.channel.remoteAddress))",
                ]
            )
        }
        context.fireChannelInactive()
    }

    private func fail(context: ChannelHandlerContext, reason: String) {
        guard !finished else { return }
        finished = true
        timeoutTask?.cancel()
        timeoutTask = nil
        log(context: context, reason: reason)
        onFailure()
        context.close(promise: nil)
    }

    private func log(context: ChannelHandlerContext, reason: String) {
        logger.info(
            "TLS handshake failed",
            metadata: [
                "tls.listener": "\(listener)",
                "tls.remote": "\(Self.describe(context.channel.remoteAddress))",
                "tls.reason": "\(reason)",
            ]
        )
    }

    private static func describe(_ address: SocketAddress?) -> String {
        guard let address else { return "?" }
        return "\(address.ipAddress ?? "?"):\(address.port ?? 0)"
    }

    /// A short reason for a failed handshake, naming the usual causes in words and keeping
    /// BoringSSL's codes (e.g. `WRONG_VERSION_NUMBER`) for the rest.
    public static func reason(for error: any Error) -> String {
        if let sslError = error as? NIOSSLError, case .uncleanShutdown = sslError {
            return "connection closed during the handshake"
        }
        let text = String(describing: error)
        let codes = boringSSLCodes(in: text)
        let known: [(code: String, meaning: String)] = [
            ("WRONG_VERSION_NUMBER", "not a TLS client (plaintext on the TLS port?)"),
            ("HTTP_REQUEST", "plain HTTP on the TLS port"),
            ("UNKNOWN_PROTOCOL", "not a TLS client"),
            ("PEER_DID_NOT_RETURN_A_CERTIFICATE", "client certificate required but none presented"),
            (
                "CERTIFICATE_VERIFY_FAILED",
                "client certificate not trusted (does not chain to the client CA, or expired)"
            ),
            ("UNSUPPORTED_PROTOCOL", "no TLS version in common (TLS 1.2 or 1.3 required)"),
            ("NO_SHARED_CIPHER", "no cipher suite in common"),
            ("TLSV1_ALERT_UNKNOWN_CA", "the client does not trust the server certificate (unknown CA)"),
            ("SSLV3_ALERT_BAD_CERTIFICATE", "the client rejected the server certificate"),
            ("SSLV3_ALERT_CERTIFICATE_UNKNOWN", "the client rejected the server certificate"),
            ("TLSV1_ALERT_PROTOCOL_VERSION", "the client does not support TLS 1.2 or 1.3"),
            (
                "DECRYPTION_FAILED_OR_BAD_RECORD_MAC",
                "the client broke off the handshake (did it reject the server certificate?)"
            ),
        ]
        for entry in known where codes.contains(entry.code) || text.contains(entry.code) {
            return "\(entry.meaning) (\(entry.code))"
        }
        return codes.isEmpty ? text : "TLS error: " + codes.joined(separator: ", ")
    }

    /// The error codes in a BoringSSL error description (`...:OPENSSL_internal:CODE at ...`).
    private static func boringSSLCodes(in text: String) -> [String] {
        var codes: [String] = []
        for part in text.split(separator: "OPENSSL_internal:").dropFirst() {
            let code = String(part.prefix { $0.isUppercase || $0.isNumber || $0 == "_" })
            if !code.isEmpty && !codes.contains(code) { codes.append(code) }
        }
        return codes
    }
}

@available(*, unavailable)
extension TLSHandshakeHandler: Sendable {}

import Logging
import ServiceLifecycle
import UnixSignals

/// Reloads the TLS certificate, key and client CA on SIGHUP — the conventional "re-read your
/// files" signal — and so also keeps SIGHUP from ending the process.
///
/// The signal is trapped when the sequence is created, before the server prints its
/// `listening` line; a SIGHUP arriving later is never fatal.
struct ReloadOnHangUp: Service {
    let signals: UnixSignalsSequence
    /// Nil when TLS is disabled: the signal is then only logged.
    let tls: TLSService?
    let logger: Logger

    func run() async throws {
        for await _ in signals.cancelOnGracefulShutdown() {
            guard let tls else {
                logger.info("SIGHUP received; TLS is disabled, nothing to reload")
                continue
            }
            logger.info("SIGHUP received; reloading the TLS certificate")
            // A failure is logged by the reload and leaves the current certificate in use.
            _ = try? tls.reload()
        }
    }
}

import Foundation
import Logging
import MQTTBroker
import NIOConcurrencyHelpers
import NIOSSL

/// The running server's TLS certificate, key and client CA, and their reload.
///
/// Both TLS listeners take their context from here: the MQTT one through an
/// ``MQTTTLSContextProvider``, the HTTPS one through ``HTTPSChannels``. ``reload()`` reads the
/// files again and, only when everything loads and checks out, switches both; connections
/// accepted afterwards use the new certificate, established ones keep theirs.
final class TLSService: Sendable {
    let configuration: MeridianConfiguration.TLS
    let dataDirectory: String
    let logger: Logger
    /// The MQTT over TLS listener's context.
    let mqtt: MQTTTLSContextProvider
    /// The HTTPS listener's TLS configuration.
    let https: HTTPSChannels
    private let current: NIOLockedValueBox<TLSMaterial>
    /// Further authorities the MQTT listener trusts for client certificates (the tenants' CAs,
    /// set by the registry integration); when there are any, MQTT clients may present one.
    private let mqttClientAuthorities = NIOLockedValueBox<[NIOSSLCertificate]>([])
    /// Held for a whole reload, so two reloads (a signal and a request) do not interleave.
    private let reloading = NIOLock()

    /// Loads the certificate, key and client CA (generating the self-signed certificate when
    /// none is configured, or renewing it when it has expired) and logs the certificate's
    /// fingerprint.
    ///
    /// - Throws: ``TLSSetupError`` naming the key at fault; start-up stops.
    init(configuration: MeridianConfiguration.TLS, dataDirectory: String, logger: Logger) throws(TLSSetupError) {
        self.configuration = configuration
        self.dataDirectory = dataDirectory
        self.logger = logger
        let material = try TLSMaterial.load(
            configuration,
            dataDirectory: dataDirectory,
            renewExpired: true,
            logger: logger
        )
        let contexts = try Self.contexts(for: material, configuration: configuration)
        self.mqtt = MQTTTLSContextProvider(contexts.mqtt)
        self.https = HTTPSChannels(configuration: contexts.https)
        self.current = NIOLockedValueBox(material)
        if !configuration.clientCA.isEmpty && configuration.clientAuthentication == .none {
            logger.warning("tls.client_ca is set but tls.client_auth is none: client certificates are not requested")
        }
        log("TLS certificate loaded", material)
    }

    /// The certificate in use.
    var material: TLSMaterial { current.withLockedValue { $0 } }

    /// Reads certificate, key and client CA again and switches new connections to them. On
    /// failure the current ones stay and the error is logged (and thrown).
    @discardableResult
    func reload() throws(TLSSetupError) -> TLSMaterial {
        reloading.lock()
        defer { reloading.unlock() }
        let material: TLSMaterial
        let contexts: (mqtt: NIOSSLContext, https: TLSConfiguration)
        do throws(TLSSetupError) {
            material = try TLSMaterial.load(configuration, dataDirectory: dataDirectory, logger: logger)
            contexts = try Self.contexts(for: material, configuration: configuration)
            do {
                try https.replace(with: contexts.https)
            } catch {
                throw TLSSetupError.invalidCertificate(
                    key: "tls.certificate",
                    path: material.certificatePath,
                    reason: "\(error)"
                )
            }
        } catch {
            logger.error("TLS reload failed; keeping the current certificate", metadata: ["tls.error": "\(error)"])
            throw error
        }
        mqtt.replace(with: (try? mqttContext(for: material)) ?? contexts.mqtt)
        current.withLockedValue { $0 = material }
        log("TLS certificate reloaded", material)
        return material
    }

    /// Makes the MQTT listener also trust `authorities` for client certificates (requested,
    /// optional unless `tls.client_auth` is `required`), for connections accepted from now on.
    func setMQTTClientAuthorities(_ authorities: [NIOSSLCertificate]) throws(TLSSetupError) {
        reloading.lock()
        defer { reloading.unlock() }
        mqttClientAuthorities.withLockedValue { $0 = authorities }
        mqtt.replace(with: try mqttContext(for: material))
    }

    /// The MQTT listener's context: the HTTPS one's, plus the tenants' authorities when any.
    private func mqttContext(for material: TLSMaterial) throws(TLSSetupError) -> NIOSSLContext {
        let extra = mqttClientAuthorities.withLockedValue { $0 }
        var tlsConfiguration = material.serverConfiguration(
            clientAuthentication: extra.isEmpty || configuration.clientAuthentication == .required ? configuration.clientAuthentication : .optional
        )
        if !extra.isEmpty {
            tlsConfiguration.trustRoots = .certificates(material.clientAuthorities + extra)
            tlsConfiguration.sendCANameList = true
        }
        do {
            return try NIOSSLContext(configuration: tlsConfiguration)
        } catch {
            throw .invalidClientCA(key: "tls.client_ca", path: configuration.clientCA, reason: "refused by the TLS library: \(error)")
        }
    }

    /// The MQTT listener's context and the HTTPS listener's configuration for `material`.
    private static func contexts(
        for material: TLSMaterial,
        configuration: MeridianConfiguration.TLS
    ) throws(TLSSetupError) -> (mqtt: NIOSSLContext, https: TLSConfiguration) {
        let tlsConfiguration = material.serverConfiguration(clientAuthentication: configuration.clientAuthentication)
        do {
            return (try NIOSSLContext(configuration: tlsConfiguration), tlsConfiguration)
        } catch {
            // swift-nio-ssl checks the chain, the key and the CA list as BoringSSL sees them.
            throw .invalidCertificate(
                key: "tls.certificate",
                path: material.certificatePath,
                reason: "refused by the TLS library: \(error)"
            )
        }
    }

    private func log(_ message: Logger.Message, _ material: TLSMaterial) {
        logger.info(
            message,
            metadata: [
                "tls.fingerprint": "\(material.fingerprint)",
                "tls.subject": "\(material.subject)",
                "tls.not_after": "\(Self.timestamp(material.notValidAfter))",
                "tls.certificate": "\(material.certificatePath)",
                "tls.self_signed": "\(material.isSelfSigned)",
            ]
        )
        let now = Date()
        if material.notValidAfter < now {
            logger.warning(
                "the TLS certificate has expired",
                metadata: ["tls.not_after": "\(Self.timestamp(material.notValidAfter))"]
            )
        } else if material.notValidAfter < now.addingTimeInterval(14 * 24 * 3600) {
            logger.warning(
                "the TLS certificate expires within 14 days",
                metadata: ["tls.not_after": "\(Self.timestamp(material.notValidAfter))"]
            )
        }
    }

    static func timestamp(_ date: Date) -> String {
        date.formatted(.iso8601)
    }
}

import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// `POST /admin/tls/reload`: re-reads the TLS certificate, key and client CA, like SIGHUP.
///
/// Until Meridian has an authenticated admin API, the endpoint answers only clients connecting
/// from a loopback address (127.0.0.0/8, ::1); others get 403. Success is 200 with the new
/// certificate's fingerprint; a certificate that does not load is 500 with a problem+json body
/// naming the configuration key at fault, and the current certificate stays in use.
enum TLSAdminRoutes {
    static let reloadPath = "/admin/tls/reload"

    /// What a successful reload answers.
    struct Reloaded: Encodable {
        var fingerprint: String
        var subject: String
        var notAfter: String
        var certificate: String
        var selfSigned: Bool

        enum CodingKeys: String, CodingKey {
            case fingerprint, subject, certificate
            case notAfter = "not_after"
            case selfSigned = "self_signed"
        }
    }

    static func add(to router: Router<MeridianRequestContext>, tls: TLSService?) {
        router.post(RouterPath(reloadPath)) { _, context -> Response in
            guard let address = context.remoteAddress, isLoopback(address) else {
                throw AdminProblem(
                    status: .forbidden,
                    type: "forbidden",
                    title: "this endpoint answers loopback clients only",
                    detail: "connect from 127.0.0.1 or ::1 (the admin API with authentication is not there yet)"
                )
            }
            guard let tls else {
                throw AdminProblem(
                    status: .conflict,
                    type: "tls-disabled",
                    title: "TLS is disabled",
                    detail: "tls.enabled is false: there is no certificate to reload",
                    field: "tls.enabled"
                )
            }
            let material: TLSMaterial
            do throws(TLSSetupError) {
                material = try tls.reload()
            } catch {
                throw AdminProblem(
                    status: .internalServerError,
                    type: "tls-reload-failed",
                    title: "TLS reload failed; the current certificate stays in use",
                    detail: error.description,
                    field: error.key
                )
            }
            let body = Reloaded(
                fingerprint: material.fingerprint,
                subject: material.subject,
                notAfter: TLSService.timestamp(material.notValidAfter),
                certificate: material.certificatePath,
                selfSigned: material.isSelfSigned
            )
            return try jsonResponse(body, status: .ok, contentType: "application/json")
        }
    }

    /// 127.0.0.0/8, ::1, IPv4-mapped loopback, and Unix domain sockets.
    static func isLoopback(_ address: SocketAddress) -> Bool {
        switch address {
        case .unixDomainSocket:
            return true
        case .v4, .v6:
            guard let ip = address.ipAddress?.lowercased() else { return false }
            return ip.hasPrefix("127.") || ip == "::1" || ip.hasPrefix("::ffff:127.")
        }
    }

    static func jsonResponse(
        _ value: some Encodable,
        status: HTTPResponse.Status,
        contentType: String
    ) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var data = try encoder.encode(value)
        data.append(UInt8(ascii: "\n"))
        return Response(
            status: status,
            headers: [.contentType: contentType],
            body: .init(byteBuffer: ByteBuffer(bytes: data))
        )
    }
}

/// An `application/problem+json` answer (RFC 9457) of the admin endpoints.
struct AdminProblem: HTTPResponseError, Encodable {
    let status: HTTPResponse.Status
    /// Stable identifier of the kind of problem: `urn:meridian:problem:<type>`.
    let type: String
    let title: String
    let detail: String
    /// The configuration key at fault, if any.
    let field: String?

    init(status: HTTPResponse.Status, type: String, title: String, detail: String, field: String? = nil) {
        self.status = status
        self.type = "urn:meridian:problem:" + type
        self.title = title
        self.detail = detail
        self.field = field
    }

    enum CodingKeys: String, CodingKey {
        case type, title, detail, field, status
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(type, forKey: .type)
        try container.encode(title, forKey: .title)
        try container.encode(status.code, forKey: .status)
        try container.encode(detail, forKey: .detail)
        try container.encodeIfPresent(field, forKey: .field)
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        try TLSAdminRoutes.jsonResponse(self, status: status, contentType: "application/problem+json")
    }
}

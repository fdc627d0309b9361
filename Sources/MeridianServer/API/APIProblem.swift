import Foundation
import HTTPTypes
import Hummingbird
import MeridianCore
import NIOCore

/// An error answer of the REST API: `application/problem+json` (RFC 9457) with a stable `type`
/// (`urn:meridian:problem:<type>`), a human `title` and `detail`, the offending input `field`
/// when one is to blame, and `errors` (one per bad row) for bulk imports.
public struct APIProblem: Error, HTTPResponseError, Sendable, Hashable {
    /// One bad row of a bulk import.
    public struct RowError: Sendable, Hashable, Codable {
        public var line: Int
        public var field: String
        public var reason: String

        public init(line: Int, field: String, reason: String) {
            self.line = line
            self.field = field
            self.reason = reason
        }
    }

    public let status: HTTPResponse.Status
    /// `urn:meridian:problem:<type>`.
    public let type: String
    public let title: String
    public let detail: String
    /// The offending input: a JSON field (dotted path for nested ones), a query parameter or a
    /// header.
    public let field: String?
    public let errors: [RowError]
    /// Where in a query text the problem is (fleet queries: `q`).
    public let position: TextPosition?
    /// Extra response headers (`WWW-Authenticate`, `Retry-After`).
    public let headers: [String: String]

    /// A problem of kind `type` (the part after `urn:meridian:problem:`).
    public init(
        _ status: HTTPResponse.Status, type: String, title: String, detail: String, field: String? = nil,
        errors: [RowError] = [], headers: [String: String] = [:], position: TextPosition? = nil
    ) {
        self.status = status
        self.type = "urn:meridian:problem:" + type
        self.title = title
        self.detail = detail
        self.field = field
        self.errors = errors
        self.headers = headers
        self.position = position
    }

    /// A position in a text parameter: `offset` in characters from 0, `line` and `column` from 1.
    public struct TextPosition: Sendable, Hashable, Codable {
        public var offset: Int
        public var line: Int
        public var column: Int

        public init(offset: Int, line: Int, column: Int) {
            self.offset = offset
            self.line = line
            self.column = column
        }
    }

    /// 400: the request body or a parameter does not have the expected form.
    public static func badRequest(_ detail: String, field: String? = nil) -> APIProblem {
        APIProblem(.badRequest, type: "invalid-request", title: "Invalid request", detail: detail, field: field)
    }

    /// 404 for a path under `/api` that names no endpoint (or not with this method).
    public static func unknownRoute(method: HTTPRequest.Method, path: String) -> APIProblem {
        APIProblem(
            .notFound, type: "unknown-route", title: "No such endpoint",
            detail: "\(method.rawValue) \(path) is not an endpoint of the API (see /api/v1/openapi.json)"
        )
    }

    /// 401 with `WWW-Authenticate: Bearer`.
    public static func unauthenticated(_ detail: String, tokenGiven: Bool) -> APIProblem {
        let challenge = tokenGiven ? #"Bearer realm="meridian", error="invalid_token""# : #"Bearer realm="meridian""#
        return APIProblem(
            .unauthorized, type: "unauthenticated", title: "Authentication required", detail: detail,
            headers: ["WWW-Authenticate": challenge]
        )
    }

    /// 403: the caller's role (or kind) does not allow this.
    public static func forbidden(_ detail: String) -> APIProblem {
        APIProblem(.forbidden, type: "forbidden", title: "Not allowed", detail: detail)
    }

    /// 429 with `Retry-After` (whole seconds, at least 1).
    public static func tooManyRequests(_ detail: String, retryAfter: TimeInterval) -> APIProblem {
        let seconds = max(1, Int(retryAfter.rounded(.up)))
        return APIProblem(
            .tooManyRequests, type: "rate-limited", title: "Too many attempts", detail: detail,
            headers: ["Retry-After": "\(seconds)"]
        )
    }

    /// The answer to a ``RegistryError``: invalid → 422 (the request was well-formed JSON but
    /// its values do not validate), notFound → 404, conflict → 409, unauthenticated → 401,
    /// forbidden → 403, limitExceeded → 429.
    public init(_ error: RegistryError) {
        let rows = error.rowErrors.map { RowError(line: $0.line, field: $0.field, reason: $0.reason) }
        switch error.code {
        case .invalid:
            self.init(
                .unprocessableContent, type: "invalid-value", title: "Invalid value", detail: error.message,
                field: error.field, errors: rows
            )
        case .notFound:
            self.init(.notFound, type: "not-found", title: "Not found", detail: error.message, field: error.field)
        case .conflict:
            self.init(.conflict, type: "conflict", title: "Conflict", detail: error.message, field: error.field)
        case .unauthenticated:
            self = .unauthenticated(error.message, tokenGiven: true)
        case .forbidden:
            self.init(.forbidden, type: "forbidden", title: "Not allowed", detail: error.message, field: error.field)
        case .limitExceeded:
            self = .tooManyRequests(error.message, retryAfter: 60)
        default:
            self.init(.internalServerError, type: "internal", title: "Internal error", detail: error.message)
        }
    }

    /// The answer to a body that does not decode: 400 naming the field (its coding path) and
    /// saying what was wrong with it.
    public init(decoding error: DecodingError) {
        func path(_ codingPath: [any CodingKey], appending key: (any CodingKey)? = nil) -> String? {
            let keys = codingPath + (key.map { [$0] } ?? [])
            guard !keys.isEmpty else { return nil }
            var result = ""
            for key in keys {
                if let index = key.intValue {
                    result += "[\(index)]"
                } else {
                    result += result.isEmpty ? key.stringValue : "." + key.stringValue
                }
            }
            return result
        }
        switch error {
        case .keyNotFound(let key, let context):
            let field = path(context.codingPath, appending: key) ?? key.stringValue
            self = .badRequest("\(field) is required", field: field)
        case .typeMismatch(let type, let context):
            let field = path(context.codingPath)
            self = .badRequest("\(field ?? "the body") must be \(Self.describe(type))", field: field)
        case .valueNotFound(let type, let context):
            let field = path(context.codingPath)
            self = .badRequest("\(field ?? "the body") must be \(Self.describe(type)), not null", field: field)
        case .dataCorrupted(let context):
            if let field = path(context.codingPath) {
                self = .badRequest("\(field) is not valid: \(context.debugDescription)", field: field)
            } else {
                self = .badRequest("the body is not valid JSON")
            }
        @unknown default:
            self = .badRequest("the body does not decode")
        }
    }

    private static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Bool.Type: "a boolean"
        case is Int.Type, is Int64.Type, is Int32.Type: "an integer"
        case is Double.Type, is Float.Type: "a number"
        case is [String: String].Type: "an object of strings"
        default:
            if "\(type)".hasPrefix("Array") { "an array" } else { "an object" }
        }
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var response = APIJSON.response(self, status: status, contentType: "application/problem+json")
        for (name, value) in headers {
            if let fieldName = HTTPField.Name(name) { response.headers[fieldName] = value }
        }
        return response
    }
}

extension APIProblem: Encodable {
    enum CodingKeys: String, CodingKey {
        case type, title, status, detail, field, errors, position
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(type, forKey: .type)
        try container.encode(title, forKey: .title)
        try container.encode(status.code, forKey: .status)
        try container.encode(detail, forKey: .detail)
        try container.encodeIfPresent(field, forKey: .field)
        if !errors.isEmpty { try container.encode(errors, forKey: .errors) }
        try container.encodeIfPresent(position, forKey: .position)
    }
}

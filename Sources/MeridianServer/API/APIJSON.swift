import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// JSON in and out of the REST API: camelCase keys as declared, ISO-8601 dates, sorted keys.
enum APIJSON {
    /// Largest body most endpoints read.
    static let maximumBodySize = 1 << 20
    /// Largest bulk-import body (10,000 devices fit several times over).
    static let maximumImportSize = 32 << 20

    static func makeEncoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }

    static func makeDecoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            if let date = parseDate(text) { return date }
            throw DecodingError.dataCorruptedError(
                in: container,
                debugDescription: "expected an ISO-8601 date and time such as 2030-01-31T12:00:00Z"
            )
        }
        return decoder
    }

    /// `2030-01-31T12:00:00Z`, with or without fractional seconds, any offset.
    static func parseDate(_ text: String) -> Date? {
        if let date = try? Date(text, strategy: .iso8601) { return date }
        return try? Date(
            text,
            strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)
        )
    }

    /// A JSON response (`application/json` unless told otherwise), newline-terminated.
    static func response(
        _ value: some Encodable, status: HTTPResponse.Status = .ok, contentType: String = "application/json"
    ) -> Response {
        var data: Data
        do {
            data = try makeEncoder().encode(value)
        } catch {
            // Only non-finite numbers fail to encode; never expected from the API's types.
            data = Data(#"{"type":"urn:meridian:problem:internal","title":"Internal error","status":500}"#.utf8)
            return Response(
                status: .internalServerError,
                headers: [.contentType: "application/problem+json"],
                body: .init(byteBuffer: ByteBuffer(bytes: data))
            )
        }
        data.append(UInt8(ascii: "\n"))
        return Response(status: status, headers: [.contentType: contentType], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// 204 No Content.
    static func noContent() -> Response {
        Response(status: .noContent)
    }

    /// The request body, up to `limit` bytes (413 problem beyond).
    static func body(of request: Request, limit: Int = maximumBodySize) async throws -> ByteBuffer {
        do {
            return try await request.body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw APIProblem(
                .contentTooLarge, type: "body-too-large", title: "Request body too large",
                detail: "the body may be at most \(limit) bytes"
            )
        }
    }

    /// Decodes the body as `T`; malformed JSON or a wrong type is a 400 naming the field.
    static func decode<T: Decodable>(_ type: T.Type, from request: Request, limit: Int = maximumBodySize) async throws -> T {
        let buffer = try await body(of: request, limit: limit)
        return try decode(type, from: Data(buffer.readableBytesView))
    }

    static func decode<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
        guard !data.isEmpty else {
            throw APIProblem.badRequest("a JSON body is required")
        }
        do {
            return try makeDecoder().decode(type, from: data)
        } catch let error as DecodingError {
            throw APIProblem(decoding: error)
        } catch let error as APIProblem {
            throw error
        } catch {
            throw APIProblem.badRequest("the body is not valid JSON")
        }
    }
}

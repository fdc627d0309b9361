import Foundation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Talks to a running server's REST API for the admin commands (`meridian device ...`).
struct APIClient {
    let server: URL
    let apiKey: String

    /// A failed call, with the server's problem+json turned into one readable message.
    struct Failure: Error, CustomStringConvertible {
        var description: String
        /// The HTTP status (0 when the server was not reached).
        var status = 0
        /// The problem's `field` and `detail` (or `title`), for a caller that words them itself.
        var field: String?
        var detail: String?
    }

    /// Sends a request; returns the decoded JSON body (nil for 204). Non-2xx answers throw a
    /// ``Failure`` naming the status, the problem's title/detail and the offending field.
    @discardableResult
    func send(
        _ method: String,
        _ path: String,
        query: [(String, String)] = [],
        json body: Any? = nil,
        rawBody: (data: Data, contentType: String)? = nil
    ) async throws -> Any? {
        guard var components = URLComponents(url: server, resolvingAgainstBaseURL: false) else {
            throw Failure(description: "--server \(server) is not a valid URL")
        }
        components.path = (components.path.hasSuffix("/") ? String(components.path.dropLast()) : components.path) + path
        if !query.isEmpty { components.queryItems = query.map { URLQueryItem(name: $0.0, value: $0.1) } }
        guard let url = components.url else { throw Failure(description: "cannot build a URL for \(path)") }
        var request = URLRequest(url: url)
        request.httpMethod = method
        request.timeoutInterval = 30
        request.setValue("Bearer \(apiKey)", forHTTPHeaderField: "Authorization")
        request.setValue("application/json", forHTTPHeaderField: "Accept")
        if let body {
            request.httpBody = try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        } else if let rawBody {
            request.httpBody = rawBody.data
            request.setValue(rawBody.contentType, forHTTPHeaderField: "Content-Type")
        }
        let data: Data
        let response: URLResponse
        do {
            (data, response) = try await URLSession.shared.data(for: request)
        } catch {
            throw Failure(description: "cannot reach \(server): \(error.localizedDescription)")
        }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        let decoded: Any? = data.isEmpty ? nil : try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
        guard (200..<300).contains(status) else {
            let problem = decoded as? [String: Any]
            throw Failure(
                description: Self.describeProblem(status: status, body: decoded, raw: data), status: status,
                field: problem?["field"] as? String, detail: (problem?["detail"] as? String) ?? (problem?["title"] as? String)
            )
        }
        return decoded
    }

    /// `HTTP 404: device not found`, `HTTP 400: name: must not be empty`, with every row error
    /// of a bulk import on its own line.
    static func describeProblem(status: Int, body: Any?, raw: Data) -> String {
        guard let problem = body as? [String: Any] else {
            let text = String(decoding: raw.prefix(500), as: UTF8.self)
            return "HTTP \(status)" + (text.isEmpty ? "" : ": \(text)")
        }
        var message = "HTTP \(status)"
        let detail = (problem["detail"] as? String) ?? (problem["title"] as? String) ?? ""
        if let field = problem["field"] as? String {
            message += ": \(field): \(detail)"
        } else if !detail.isEmpty {
            message += ": \(detail)"
        }
        if let errors = problem["errors"] as? [[String: Any]] {
            for error in errors {
                let line = error["line"].map { "line \($0)" } ?? ""
                let field = (error["field"] as? String) ?? ""
                let reason = (error["reason"] as? String) ?? ""
                message += "\n  \(line) \(field): \(reason)"
            }
        }
        return message
    }
}

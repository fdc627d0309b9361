import ArgumentParser
import Foundation

/// `meridian apikey ...`: API keys of the tenant.
struct APIKeyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apikey",
        abstract: "Create, list and revoke API keys (scoped to the tenant and a role).",
        subcommands: [Create.self, List.self, Revoke.self]
    )

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create an API key; the key is printed once, now.")
        @OptionGroup var admin: AdminOptions
        @Option(help: "A name to recognise the key by.") var name: String
        @Option(help: "viewer, operator, admin or owner (not above your own).") var role: String = "viewer"
        @Option(help: "Expire after this many days (default: never).") var expiresInDays: Int?

        func validate() throws {
            guard ["viewer", "operator", "admin", "owner"].contains(role) else {
                throw ValidationError("--role must be viewer, operator, admin or owner, not '\(role)'")
            }
            if let expiresInDays, expiresInDays < 1 { throw ValidationError("--expires-in-days must be at least 1") }
        }

        func run() async throws {
            var body: [String: Any] = ["name": name, "role": role]
            if let expiresInDays {
                let formatter = ISO8601DateFormatter()
                body["expiresAt"] = formatter.string(from: Date().addingTimeInterval(Double(expiresInDays) * 86_400))
            }
            let result = try await admin.client().send("POST", "/api/v1/api-keys", json: body)
            admin.output(result) { value in
                guard let object = value as? [String: Any] else { return Output.json(value) + "\n" }
                return Output.record(object, order: ["id", "name", "role", "key", "expiresAt"]) + "(the key is shown only now)\n"
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the tenant's API keys (never the keys themselves).")
        @OptionGroup var admin: AdminOptions

        func run() async throws {
            let result = try await admin.client().send("GET", "/api/v1/api-keys")
            admin.output(result) { value in
                let items = ((value as? [String: Any])?["items"] as? [[String: Any]]) ?? (value as? [[String: Any]]) ?? []
                let columns = ["id", "name", "role", "prefix", "createdAt", "expiresAt", "lastUsedAt", "revokedAt"]
                return Output.table(items.map { item in columns.map { Output.cell(item[$0]) } }, header: columns.map { $0.uppercased() })
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke an API key at once.")
        @OptionGroup var admin: AdminOptions
        @Argument(help: "The key's id.") var id: String

        func run() async throws {
            try await admin.client().send("DELETE", "/api/v1/api-keys/\(pathSegment(id))")
            if admin.json { print(Output.json(["revoked": id])) } else { print("API key \(id) revoked") }
        }
    }
}

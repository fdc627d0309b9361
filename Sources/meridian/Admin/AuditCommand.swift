import ArgumentParser
import Foundation

/// `meridian audit ...`: the tamper-evident audit log.
struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Read and verify the audit log.",
        subcommands: [Verify.self, List.self]
    )

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check the audit log's hash chain: exit 0 when intact, 1 naming the first broken entry.",
            discussion: """
                Every entry carries the SHA-256 of the one before it, so an edited, removed or reordered \
                entry breaks the chain from that entry on. Asks the server (admin role), or, with \
                --data-dir, reads the database file directly (works while the server is stopped).
                """
        )
        @OptionGroup var admin: AdminOptions
        @Option(help: "Verify the database in this data directory instead of asking a server.") var dataDir: String?

        func run() async throws {
            let result: [String: Any]
            if let dataDir {
                result = try await OfflineAudit.verify(dataDirectory: dataDir)
            } else {
                guard let answer = try await admin.client().send("GET", "/api/v1/audit/verify") as? [String: Any] else {
                    throw APIClient.Failure(description: "unexpected answer from the server")
                }
                result = answer
            }
            let intact = (result["intact"] as? Bool) ?? false
            if admin.json {
                print(Output.json(result))
            } else if intact {
                print("audit log intact: \(Output.cell(result["entries"])) entries verified")
            } else {
                print(
                    "audit log BROKEN at entry \(Output.cell(result["firstBrokenSequence"])): \(Output.cell(result["problem"])) "
                        + "(\(Output.cell(result["entries"])) entries before it verified)"
                )
            }
            if !intact { throw ExitCode(1) }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the tenant's most recent audit entries.")
        @OptionGroup var admin: AdminOptions
        @Option(help: "How many entries.") var limit: Int = 50

        func run() async throws {
            let result = try await admin.client().send("GET", "/api/v1/audit", query: [("limit", String(limit))])
            admin.output(result) { value in
                let items = ((value as? [String: Any])?["items"] as? [[String: Any]]) ?? []
                let rows = items.map { item -> [String] in
                    let actor = item["actor"] as? [String: Any]
                    return [
                        Output.cell(item["sequence"]), Output.cell(item["timestamp"]),
                        actor.map { "\(Output.cell($0["kind"])):\(Output.cell($0["id"]))" } ?? "-",
                        Output.cell(actor?["remoteAddress"]), Output.cell(item["action"]), Output.cell(item["target"]),
                    ]
                }
                return Output.table(rows, header: ["SEQ", "TIME", "ACTOR", "FROM", "ACTION", "TARGET"])
            }
        }
    }
}

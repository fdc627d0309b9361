import ArgumentParser
import Foundation

/// `meridian alarm ...`: the alarms rules raise, through the API.
struct AlarmCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "alarm",
        abstract: "List, show, acknowledge, clear and comment on the alarms rules raise (through the REST API).",
        subcommands: [List.self, Get.self, Ack.self, Clear.self, Comment.self]
    )

    /// `user:<id>`, `api_key:<id>`, `rule:<id>`.
    static func actorCell(_ value: Any?) -> String {
        guard let actor = value as? [String: Any] else { return Output.cell(value) }
        return "\(Output.cell(actor["kind"])):\(Output.cell(actor["id"]))"
    }

    static func alarmRecord(_ value: Any?, ruleNames: [String: String] = [:]) -> String {
        guard var object = value as? [String: Any] else { return Output.json(value) + "\n" }
        object["comments"] = nil  // in the history
        for key in ["acknowledgedBy", "clearedBy"] where object[key] != nil { object[key] = actorCell(object[key]) }
        if let rule = object["rule"] as? String, let name = ruleNames[rule] { object["rule"] = "\(name) (\(rule))" }
        return Output.record(
            object,
            order: [
                "id", "rule", "ruleVersion", "device", "severity", "status", "message", "count", "raisedAt", "lastRaisedAt",
                "acknowledgedAt", "acknowledgedBy", "clearedAt", "clearedBy", "inputs", "lastInputs",
            ]
        )
    }

    /// Rule ids to names, for tables (empty if the rules cannot be read).
    static func ruleNames(_ client: APIClient) async -> [String: String] {
        guard let listed = try? await client.send("GET", "/api/v1/rules") as? [String: Any],
            let items = listed["items"] as? [[String: Any]]
        else { return [:] }
        return Dictionary(items.compactMap { item in (item["id"] as? String).flatMap { id in (item["name"] as? String).map { (id, $0) } } }) { a, _ in a }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List alarms, newest first, filtered.",
            discussion: """
                Examples:
                  meridian alarm list --status open                 # active or acknowledged
                  meridian alarm list --severity critical,major --rule overheat --device dev_1
                """
        )
        @OptionGroup var admin: AdminOptions
        @Option(help: "open (active or acknowledged), active, acknowledged or cleared; comma-separated for several.") var status: String?
        @Option(help: "critical, major, minor, warning or info; comma-separated for several.") var severity: String?
        @Option(help: ArgumentHelp("Only this device's alarms.", valueName: "id")) var device: String?
        @Option(help: ArgumentHelp("Only this rule's alarms (name or id).", valueName: "rule")) var rule: String?
        @Option(help: "Alarms per page (1-1000).") var limit: Int = 100
        @Option(help: "Continue from this cursor (printed after a full page).") var cursor: String?
        @Flag(help: "Fetch every page.") var all = false

        func validate() throws {
            guard (1...1000).contains(limit) else { throw ValidationError("--limit must be between 1 and 1000") }
            let statuses: Set<String> = ["open", "active", "acknowledged", "cleared"]
            for part in (status ?? "").split(separator: ",") where !statuses.contains(String(part)) {
                throw ValidationError("--status '\(part)': must be open, active, acknowledged or cleared")
            }
            let severities: Set<String> = ["critical", "major", "minor", "warning", "info"]
            for part in (severity ?? "").split(separator: ",") where !severities.contains(String(part)) {
                throw ValidationError("--severity '\(part)': must be critical, major, minor, warning or info")
            }
        }

        func run() async throws {
            let client = try admin.client()
            var query: [(String, String)] = [("limit", String(limit))]
            if let status { query.append(("status", status)) }
            if let severity { query.append(("severity", severity)) }
            if let device { query.append(("device", device)) }
            if let rule { query.append(("rule", rule)) }
            var next = cursor
            var items: [[String: Any]] = []
            var lastCursor: String?
            repeat {
                let page = try await client.send("GET", "/api/v1/alarms", query: query + (next.map { [("cursor", $0)] } ?? [])) as? [String: Any]
                items += (page?["items"] as? [[String: Any]]) ?? []
                lastCursor = page?["nextCursor"] as? String
                next = lastCursor
            } while all && next != nil
            var result: [String: Any] = ["items": items]
            if let lastCursor { result["nextCursor"] = lastCursor }
            let names = admin.json ? [:] : await AlarmCommand.ruleNames(client)
            admin.output(result) { _ in
                let rows = items.map { alarm in
                    [
                        Output.cell(alarm["id"]), Output.cell(alarm["severity"]), Output.cell(alarm["status"]),
                        (alarm["rule"] as? String).map { names[$0] ?? $0 } ?? "-", Output.cell(alarm["device"]), Output.cell(alarm["count"]),
                        Output.cell(alarm["raisedAt"]), Output.cell(alarm["message"]),
                    ]
                }
                var text = Output.table(rows, header: ["ID", "SEVERITY", "STATUS", "RULE", "DEVICE", "COUNT", "RAISED", "MESSAGE"])
                if let lastCursor { text += "more: --cursor \(lastCursor)\n" }
                return text
            }
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show an alarm and its history (raised, repeated, acknowledged, commented, cleared; who and when).")
        @OptionGroup var admin: AdminOptions
        @Argument(help: "The alarm id.") var id: String

        func run() async throws {
            let client = try admin.client()
            let alarm = try await client.send("GET", "/api/v1/alarms/\(pathSegment(id))")
            let history = try await client.send("GET", "/api/v1/alarms/\(pathSegment(id))/history")
            let entries = ((history as? [String: Any])?["items"] as? [[String: Any]]) ?? []
            if admin.json {
                print(Output.json(["alarm": alarm ?? NSNull(), "history": entries]))
                return
            }
            let names = await AlarmCommand.ruleNames(client)
            print(AlarmCommand.alarmRecord(alarm, ruleNames: names), terminator: "")
            print("\nhistory:")
            let rows = entries.map { entry in
                [
                    Output.cell(entry["at"]), Output.cell(entry["change"]), AlarmCommand.actorCell(entry["by"]), Output.cell(entry["status"]),
                    Output.cell(entry["count"]), Output.cell(entry["comment"]),
                ]
            }
            print(Output.table(rows, header: ["AT", "CHANGE", "BY", "STATUS", "COUNT", "COMMENT"]), terminator: "")
        }
    }

    struct Ack: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ack",
            abstract: "Acknowledge an active alarm (someone is on it); it stays open until its rule clears it or `alarm clear`."
        )
        @OptionGroup var admin: AdminOptions
        @Argument(help: "The alarm id.") var id: String

        func run() async throws {
            let alarm = try await admin.client().send("POST", "/api/v1/alarms/\(pathSegment(id))/acknowledge")
            admin.output(alarm) { AlarmCommand.alarmRecord($0) }
        }
    }

    struct Clear: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Clear an alarm by hand.")
        @OptionGroup var admin: AdminOptions
        @Argument(help: "The alarm id.") var id: String

        func run() async throws {
            let alarm = try await admin.client().send("POST", "/api/v1/alarms/\(pathSegment(id))/clear")
            admin.output(alarm) { AlarmCommand.alarmRecord($0) }
        }
    }

    struct Comment: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a comment to an alarm.",
            discussion: "Example: meridian alarm comment alm_123 \"replaced the fan, watching it\""
        )
        @OptionGroup var admin: AdminOptions
        @Argument(help: "The alarm id.") var id: String
        @Argument(help: "The comment.") var text: String

        func validate() throws {
            guard !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { throw ValidationError("the comment is empty") }
        }

        func run() async throws {
            let alarm = try await admin.client().send("POST", "/api/v1/alarms/\(pathSegment(id))/comments", json: ["text": text])
            admin.output(alarm) { _ in "comment added to alarm \(id)\n" }
        }
    }
}

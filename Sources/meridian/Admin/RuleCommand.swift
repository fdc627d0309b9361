import ArgumentParser
import Foundation
import MeridianCore

/// `meridian rule ...`: rules through the API, and `rule apply -f rules.yaml` for rules kept in
/// files (YAML or JSON).
struct RuleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rule",
        abstract: "Apply rules from a file; list, show, enable, disable, delete, test rules and see their firings (through the REST API).",
        subcommands: [Apply.self, List.self, Get.self, Enable.self, Disable.self, Delete.self, Versions.self, Test.self, Firings.self]
    )

    // MARK: formatting

    /// `tenant`, `device:<id>`, `profile:<id>`, `query:<text>`.
    static func scopeCell(_ value: Any?) -> String {
        guard let scope = value as? [String: Any], let kind = scope.keys.sorted().first else { return "tenant" }
        if kind == "tenant" { return "tenant" }
        return "\(kind):\(Output.cell(scope[kind]))"
    }

    /// The condition's kind (`threshold`, `expression`, `noData`, `presence`, `anomaly`).
    static func conditionCell(_ value: Any?) -> String {
        (value as? [String: Any])?.keys.sorted().first ?? "-"
    }

    static func actionsCell(_ value: Any?) -> String {
        let types = ((value as? [[String: Any]]) ?? []).map { Output.cell($0["type"]) }
        return types.isEmpty ? "-" : types.joined(separator: ",")
    }

    static func ruleTable(_ value: Any?) -> String {
        let items = ((value as? [String: Any])?["items"] as? [[String: Any]]) ?? []
        let rows = items.map { rule in
            [
                Output.cell(rule["name"]), Output.cell(rule["enabled"]), Output.cell(rule["version"]), scopeCell(rule["scope"]),
                conditionCell(rule["condition"]), Output.cell((rule["alarm"] as? [String: Any])?["severity"]), actionsCell(rule["actions"]),
            ]
        }
        return Output.table(rows, header: ["NAME", "ENABLED", "VERSION", "SCOPE", "CONDITION", "SEVERITY", "ACTIONS"])
    }

    /// `raise`/`clear` events of firings (stored or from a dry run).
    static func firingTable(_ items: [[String: Any]], stored: Bool) -> String {
        let rows = items.map { firing -> [String] in
            let time = Output.cell(firing["time"] ?? firing["at"])
            var row = [time, Output.cell(firing["device"]), Output.cell(firing["event"])]
            if stored {
                let version = Output.cell((firing["rule"] as? [String: Any])?["version"])
                let actions = ((firing["actions"] as? [[String: Any]]) ?? []).map { "\(Output.cell($0["type"])):\(Output.cell($0["status"]))" }
                row += [version, Output.cell(firing["alarm"]), actions.isEmpty ? "-" : actions.joined(separator: ",")]
            }
            return row + [Output.cell(firing["message"])]
        }
        let header = ["TIME", "DEVICE", "EVENT"] + (stored ? ["VERSION", "ALARM", "ACTIONS"] : []) + ["MESSAGE"]
        return Output.table(rows, header: header)
    }

    /// A JSONValue as the `Any` that ``Output`` prints.
    static func plain(_ value: JSONValue) -> Any? {
        try? JSONSerialization.jsonObject(with: Data(value.jsonText.utf8), options: [.fragmentsAllowed])
    }

    /// Sends `body` and, for a 422 naming a field of a rule of `file`, throws that error worded
    /// with the file, line and rule name.
    static func send(
        _ client: APIClient, _ method: String, _ path: String, body: JSONValue, file: RuleFile?, singleIndex: Int? = nil
    ) async throws -> Any? {
        do {
            return try await client.send(method, path, rawBody: (Data(body.jsonText.utf8), "application/json"))
        } catch let failure as APIClient.Failure {
            if let file, failure.status == 422, let field = failure.field,
                let message = file.describe(field: field, message: failure.detail ?? "invalid", index: singleIndex)
            {
                throw RuleFile.Failure(description: message)
            }
            throw failure
        }
    }

    // MARK: subcommands

    struct Apply: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create or update the rules of a YAML or JSON file, by name (all or nothing).",
            discussion: """
                The file holds a list of rules, or `rules:` with a list, or one rule; several YAML \
                documents (separated by ---) are concatenated. Each rule is matched by name: new \
                names are created, changed rules get a new version, identical ones are left alone. \
                With --prune, the tenant's rules that are not in the file are deleted. If any rule \
                is invalid nothing changes, and the error names the file, the line and the rule.

                Values are read as in YAML 1.2: only true/false are booleans (yes, no, on, off \
                stay strings), durations such as 5m stay strings. See docs/rules.md.

                Example rules.yaml:

                  rules:
                    - name: overheat
                      scope: {profile: thermostat}
                      condition:
                        threshold: {key: temp, op: ">", value: 80, for: 5m,
                                    clear: {op: "<", value: 75, for: 1m}}
                      alarm: {severity: major, message: "{{device.name}} is overheating"}
                      actions:
                        - {type: webhook, url: "https://ops.example.com/hook", secret: s3cret}
                    - name: silent
                      condition: {noData: {key: temp, for: 10m}}
                      alarm: {severity: warning}

                  meridian rule apply -f rules.yaml --dry-run   # check it, send nothing
                  meridian rule apply -f rules.yaml             # create/update
                  meridian rule apply -f rules.yaml --prune     # also delete rules not in the file
                """
        )

        @OptionGroup var admin: AdminOptions
        @Option(name: [.customShort("f"), .customLong("file")], help: ArgumentHelp("The rules file (.yaml, .yml or .json).", valueName: "file"))
        var file: String
        @Flag(help: "Delete the tenant's rules that are not in the file.") var prune = false
        @Flag(
            name: .customLong("dry-run"),
            help: "Check the file (with the server's rule parser, locally) and print the rules it would send; change nothing."
        )
        var dryRun = false

        func run() async throws {
            let rules = try RuleFile.load(path: file)
            if dryRun {
                try rules.validate()
                if admin.json {
                    print(Output.json(RuleCommand.plain(.object(["rules": rules.rulesJSON, "prune": .bool(prune)]))))
                } else {
                    print(Output.json(RuleCommand.plain(rules.rulesJSON)))
                    let names = rules.entries.compactMap(\.name)
                    print("\(file): \(names.count) valid rule\(names.count == 1 ? "" : "s") (\(names.joined(separator: ", "))); dry run, nothing sent")
                }
                return
            }
            let body = JSONValue.object(["rules": rules.rulesJSON, "prune": .bool(prune)])
            let result = try await RuleCommand.send(admin.client(), "POST", "/api/v1/rules/apply", body: body, file: rules)
            admin.output(result) { value in
                let object = (value as? [String: Any]) ?? [:]
                var text = ""
                var counts: [String] = []
                for change in ["created", "updated", "unchanged", "deleted"] {
                    let names = (object[change] as? [String]) ?? []
                    text += names.map { "\(change.padding(toLength: 9, withPad: " ", startingAt: 0))  \($0)\n" }.joined()
                    counts.append("\(names.count) \(change)")
                }
                return text + counts.joined(separator: ", ") + "\n"
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the tenant's rules.")
        @OptionGroup var admin: AdminOptions

        func run() async throws {
            let rules = try await admin.client().send("GET", "/api/v1/rules")
            admin.output(rules, table: RuleCommand.ruleTable)
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print one rule as JSON (the form `rule apply` and the API take back).",
            discussion: "Example: meridian rule get overheat > overheat.json"
        )
        @OptionGroup var admin: AdminOptions
        @Argument(help: "The rule's name or id.") var rule: String

        func run() async throws {
            print(Output.json(try await admin.client().send("GET", "/api/v1/rules/\(pathSegment(rule))")))
        }
    }

    struct Enable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Enable a rule (a new version).")
        @OptionGroup var admin: AdminOptions
        @Argument(help: "The rule's name or id.") var rule: String

        func run() async throws { try await RuleCommand.setEnabled(admin: admin, rule: rule, true) }
    }

    struct Disable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Disable a rule: it stops evaluating and its active alarms are cleared; `rule enable` turns it back on."
        )
        @OptionGroup var admin: AdminOptions
        @Argument(help: "The rule's name or id.") var rule: String

        func run() async throws { try await RuleCommand.setEnabled(admin: admin, rule: rule, false) }
    }

    static func setEnabled(admin: AdminOptions, rule: String, _ enabled: Bool) async throws {
        let result = try await admin.client().send("PATCH", "/api/v1/rules/\(pathSegment(rule))", json: ["enabled": enabled])
        admin.output(result) { value in
            let object = (value as? [String: Any]) ?? [:]
            return "rule \(Output.cell(object["name"] ?? rule)) \(enabled ? "enabled" : "disabled") (version \(Output.cell(object["version"])))\n"
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a rule (its active alarms are cleared).")
        @OptionGroup var admin: AdminOptions
        @Argument(help: "The rule's name or id.") var rule: String

        func run() async throws {
            try await admin.client().send("DELETE", "/api/v1/rules/\(pathSegment(rule))")
            if admin.json { print(Output.json(["deleted": rule])) } else { print("rule \(rule) deleted") }
        }
    }

    struct Versions: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List a rule's versions, newest first (`--json` for each version's whole definition)."
        )
        @OptionGroup var admin: AdminOptions
        @Argument(help: "The rule's name or id.") var rule: String

        func run() async throws {
            let versions = try await admin.client().send("GET", "/api/v1/rules/\(pathSegment(rule))/versions")
            admin.output(versions) { value in
                let items = ((value as? [String: Any])?["items"] as? [[String: Any]]) ?? []
                let rows = items.map { item in
                    [
                        Output.cell(item["version"]), Output.cell(item["updatedAt"]), Output.cell(item["updatedBy"]), Output.cell(item["enabled"]),
                        RuleCommand.conditionCell(item["condition"]), RuleCommand.actionsCell(item["actions"]),
                    ]
                }
                return Output.table(rows, header: ["VERSION", "UPDATED", "BY", "ENABLED", "CONDITION", "ACTIONS"])
            }
        }
    }

    struct Test: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Dry-run a rule over stored telemetry: when it would have raised and cleared, per device.",
            discussion: """
                Test a saved rule by name, or a rule from a file (not saved) with -f; a file with \
                several rules needs --rule NAME. Nothing is recorded and no action runs.

                Times are ISO 8601 (2026-11-20T08:00:00Z), milliseconds since 1970, or a duration \
                ago (30m, 6h, 7d). Default: the last 24 hours.

                Examples:
                  meridian rule test overheat --from 6h
                  meridian rule test -f rules.yaml --rule overheat --from 2026-11-20T00:00:00Z --to 2026-11-21T00:00:00Z --device dev_1
                """
        )
        @OptionGroup var admin: AdminOptions
        @Argument(help: "A saved rule's name or id (or use -f).") var rule: String?
        @Option(name: [.customShort("f"), .customLong("file")], help: ArgumentHelp("Test a rule from this file instead.", valueName: "file"))
        var file: String?
        @Option(name: .customLong("rule"), help: ArgumentHelp("Which rule of the file (by name).", valueName: "name"))
        var ruleName: String?
        @Option(help: ArgumentHelp("Start of the period (default: 24 hours before --to).", valueName: "time")) var from: String?
        @Option(help: ArgumentHelp("End of the period (default: now).", valueName: "time")) var to: String?
        @Option(name: .customLong("device"), help: ArgumentHelp("Only this device (repeatable; default: the rule's scope).", valueName: "id"))
        var devices: [String] = []

        func validate() throws {
            guard (rule == nil) != (file == nil) else { throw ValidationError("give a saved rule's name, or -f FILE (not both)") }
            if ruleName != nil && file == nil { throw ValidationError("--rule picks a rule of -f FILE; for a saved rule give its name") }
            _ = try from.map { try Self.time($0, option: "--from") }
            _ = try to.map { try Self.time($0, option: "--to") }
        }

        /// ISO 8601 and milliseconds as given; a duration (`30m`) as that long before now, in ms.
        static func time(_ text: String, option: String) throws -> JSONValue {
            if text == "now" { return .number(Double(RuleTime.milliseconds(Date()))) }
            if Int64(text) != nil || RuleTime.date(text) != nil { return .string(text) }
            let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3_600), ("d", 86_400), ("w", 604_800)]
            for (unit, seconds) in units where text.hasSuffix(unit) {
                if let amount = Double(text.dropLast(unit.count)), amount >= 0, amount.isFinite {
                    return .number((Date().timeIntervalSince1970 - amount * seconds).rounded() * 1000)
                }
            }
            throw ValidationError("\(option) '\(text)': expected an ISO 8601 time, milliseconds since 1970, or a duration ago such as 6h")
        }

        func run() async throws {
            var body: [String: JSONValue] = [:]
            var source: RuleFile?
            var index: Int?
            if let file {
                let rules = try RuleFile.load(path: file)
                if let ruleName {
                    guard let found = rules.entries.firstIndex(where: { $0.name == ruleName }) else {
                        throw ValidationError("\(file): no rule named \"\(ruleName)\" (it has: \(rules.entries.compactMap(\.name).joined(separator: ", ")))")
                    }
                    index = found
                } else {
                    guard rules.entries.count == 1 else {
                        throw ValidationError("\(file) has \(rules.entries.count) rules: pick one with --rule NAME")
                    }
                    index = 0
                }
                body["rule"] = rules.entries[index ?? 0].json
                source = rules
            } else if let rule {
                body["ruleId"] = .string(rule)
            }
            if !devices.isEmpty { body["devices"] = .array(devices.map(JSONValue.string)) }
            if let from { body["from"] = try Self.time(from, option: "--from") }
            if let to { body["to"] = try Self.time(to, option: "--to") }
            let result = try await RuleCommand.send(
                admin.client(), "POST", "/api/v1/rules/dry-run", body: .object(body), file: source, singleIndex: index
            )
            admin.output(result) { value in
                let object = (value as? [String: Any]) ?? [:]
                let firings = (object["firings"] as? [[String: Any]]) ?? []
                var text = firings.isEmpty ? "" : RuleCommand.firingTable(firings, stored: false)
                text += "\(Output.cell(object["from"])) to \(Output.cell(object["to"])): \(Output.cell(object["devices"])) devices, "
                text += "\(Output.cell(object["samples"])) samples, \(firings.count) firing\(firings.count == 1 ? "" : "s")"
                if (object["truncated"] as? Bool) == true { text += " (truncated: narrow the period or the devices)" }
                return text + "\n"
            }
        }
    }

    struct Firings: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A rule's recorded firings, newest first: why it fired, and what each action did.",
            discussion: "Example: meridian rule firings overheat --device dev_1 --limit 20"
        )
        @OptionGroup var admin: AdminOptions
        @Argument(help: "The rule's name or id.") var rule: String
        @Option(help: ArgumentHelp("Only this device's firings.", valueName: "id")) var device: String?
        @Option(help: "At most this many (1-1000).") var limit: Int = 50
        @Option(help: "Continue from this cursor (printed after a full page).") var cursor: String?

        func validate() throws {
            guard (1...1000).contains(limit) else { throw ValidationError("--limit must be between 1 and 1000") }
        }

        func run() async throws {
            var query: [(String, String)] = [("limit", String(limit))]
            if let device { query.append(("device", device)) }
            if let cursor { query.append(("cursor", cursor)) }
            let page = try await admin.client().send("GET", "/api/v1/rules/\(pathSegment(rule))/firings", query: query)
            admin.output(page) { value in
                let object = (value as? [String: Any]) ?? [:]
                var text = RuleCommand.firingTable((object["items"] as? [[String: Any]]) ?? [], stored: true)
                if let next = object["nextCursor"] as? String { text += "more: --cursor \(next)\n" }
                return text
            }
        }
    }
}

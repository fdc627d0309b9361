import ArgumentParser
import Foundation

/// `meridian device ...`: manage devices through the API.
struct DeviceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "device",
        abstract: "Create, list, show, disable, enable, decommission and delete devices (through the REST API).",
        subcommands: [Create.self, List.self, Show.self, Disable.self, Enable.self, Decommission.self, Delete.self, Import.self]
    )

    static let columns = ["id", "name", "status", "profileId", "labels", "lastSeenAt"]

    static func deviceTable(_ value: Any?) -> String {
        let items = ((value as? [String: Any])?["items"] as? [[String: Any]]) ?? (value as? [[String: Any]]) ?? []
        return Output.table(items.map { item in columns.map { Output.cell(item[$0]) } }, header: columns.map { $0.uppercased() })
    }

    static func deviceRecord(_ value: Any?) -> String {
        guard let object = value as? [String: Any] else { return Output.json(value) + "\n" }
        return Output.record(object, order: ["id", "name", "status", "tenantId", "profileId", "labels", "metadata", "createdAt", "lastSeenAt"])
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Register a device; prints it, with its id.")

        @OptionGroup var admin: AdminOptions
        @Option(help: "The device's name (unique in the tenant).") var name: String
        @Option(help: "A caller-chosen device id (default: generated).") var id: String?
        @Option(help: "Profile id or name.") var profile: String?
        @Option(name: .customLong("label"), help: ArgumentHelp("A label, key=value (repeatable).", valueName: "key=value"))
        var labels: [String] = []

        func run() async throws {
            var body: [String: Any] = ["name": name]
            if let id { body["id"] = id }
            if let profile { body["profile"] = profile }
            if !labels.isEmpty {
                body["labels"] = Dictionary(try labels.map { try parseLabel($0, option: "--label") }, uniquingKeysWith: { $1 })
            }
            let device = try await admin.client().send("POST", "/api/v1/devices", json: body)
            admin.output(device, table: DeviceCommand.deviceRecord)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List devices, filtered; follows pages with --all.")

        @OptionGroup var admin: AdminOptions
        @Option(name: .customLong("label"), help: ArgumentHelp("Only devices with this label (repeatable; all must match).", valueName: "key=value"))
        var labels: [String] = []
        @Option(help: "Only devices with this status: active, disabled, decommissioned.") var status: String?
        @Option(help: "Only devices of this profile (id or name).") var profile: String?
        @Option(help: "Only devices whose name starts with this.") var namePrefix: String?
        @Option(help: "Devices per page (1-1000).") var limit: Int = 100
        @Option(help: "Continue from this cursor (printed after a full page).") var cursor: String?
        @Flag(help: "Fetch every page.") var all = false

        func validate() throws {
            guard (1...1000).contains(limit) else { throw ValidationError("--limit must be between 1 and 1000") }
            for label in labels { _ = try parseLabel(label, option: "--label") }
        }

        func run() async throws {
            let client = try admin.client()
            var query: [(String, String)] = [("limit", String(limit))]
            query += labels.map { ("label", $0) }
            if let status { query.append(("status", status)) }
            if let profile { query.append(("profile", profile)) }
            if let namePrefix { query.append(("namePrefix", namePrefix)) }
            var next = cursor
            var items: [[String: Any]] = []
            var lastCursor: String?
            repeat {
                let page = try await client.send("GET", "/api/v1/devices", query: query + (next.map { [("cursor", $0)] } ?? [])) as? [String: Any]
                items += (page?["items"] as? [[String: Any]]) ?? []
                lastCursor = page?["nextCursor"] as? String
                next = lastCursor
            } while all && next != nil
            var result: [String: Any] = ["items": items]
            if let lastCursor { result["nextCursor"] = lastCursor }
            admin.output(result) { value in
                var text = DeviceCommand.deviceTable(value)
                if let lastCursor { text += "more: --cursor \(lastCursor)\n" }
                return text
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one device.")
        @OptionGroup var admin: AdminOptions
        @Argument(help: "The device id.") var id: String

        func run() async throws {
            let device = try await admin.client().send("GET", "/api/v1/devices/\(pathSegment(id))")
            admin.output(device, table: DeviceCommand.deviceRecord)
        }
    }

    struct Disable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Disable a device: its connections are closed at once and it cannot reconnect until enabled."
        )
        @OptionGroup var admin: AdminOptions
        @Argument(help: "The device id.") var id: String

        func run() async throws {
            let device = try await admin.client().send("PATCH", "/api/v1/devices/\(pathSegment(id))", json: ["status": "disabled"])
            admin.output(device, table: DeviceCommand.deviceRecord)
        }
    }

    struct Enable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Enable a disabled device again.")
        @OptionGroup var admin: AdminOptions
        @Argument(help: "The device id.") var id: String

        func run() async throws {
            let device = try await admin.client().send("PATCH", "/api/v1/devices/\(pathSegment(id))", json: ["status": "active"])
            admin.output(device, table: DeviceCommand.deviceRecord)
        }
    }

    struct Decommission: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Take a device out of service: revoke every credential, disconnect it, keep or purge its record."
        )
        @OptionGroup var admin: AdminOptions
        @Argument(help: "The device id.") var id: String
        @Flag(help: "Delete the device and its data instead of keeping it as decommissioned.") var purge = false

        func run() async throws {
            let result = try await admin.client().send("POST", "/api/v1/devices/\(pathSegment(id))/decommission", json: ["purge": purge])
            if admin.json {
                print(Output.json(result))
            } else {
                print(purge ? "device \(id) decommissioned and purged" : "device \(id) decommissioned")
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a device and its credentials.")
        @OptionGroup var admin: AdminOptions
        @Argument(help: "The device id.") var id: String

        func run() async throws {
            try await admin.client().send("DELETE", "/api/v1/devices/\(pathSegment(id))")
            if admin.json { print(Output.json(["deleted": id])) } else { print("device \(id) deleted") }
        }
    }

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Import devices from a CSV or JSON file: all or nothing, with an error per bad row.",
            discussion: """
                CSV: a header row with `name` (required) and optionally `id`, `profile`, `labels` \
                (k=v;k2=v2) and `label.<key>` columns. JSON: an array of {"name", "id", "profile", "labels"}.
                """
        )
        @OptionGroup var admin: AdminOptions
        @Argument(help: "The file (.csv or .json).") var file: String

        func run() async throws {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw ValidationError("cannot read \(file)")
            }
            let contentType = file.lowercased().hasSuffix(".json") ? "application/json" : "text/csv"
            let result = try await admin.client().send("POST", "/api/v1/devices/import", rawBody: (data, contentType))
            admin.output(result) { value in
                let created = (value as? [String: Any])?["created"].map { Output.cell($0) } ?? "?"
                return "imported \(created) devices\n"
            }
        }
    }
}

/// Percent-encodes one path segment.
func pathSegment(_ value: String) -> String {
    var allowed = CharacterSet.urlPathAllowed
    allowed.remove("/")
    return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value
}

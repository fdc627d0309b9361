import Foundation
import Logging
import MeridianCore
import MeridianServer
import MeridianSimulator

/// `meridian serve --demo`: a small simulated fleet in the server's own process, registered in
/// the first tenant, so that a new user sees live devices, telemetry and twins at once.
///
/// The devices (`demo-<profile>-NN`, label `demo=true`) and their tokens are kept in
/// `<data dir>/demo.json` (mode 0600): a restart reuses them instead of registering new ones.
struct DemoFleet {
    let devices: Int
    let dataDirectory: String
    let bind: String
    let logger: Logger

    /// What the demo keeps between starts.
    struct State: Codable {
        var tenantID: String
        /// Device id → access token.
        var tokens: [String: String]
    }

    var statePath: String { (dataDirectory as NSString).appendingPathComponent("demo.json") }

    /// Registers (or finds) the demo devices and runs them until the task is cancelled.
    func run(_ platform: MeridianApplication.ReadyPlatform) async {
        do {
            let tokens = try await prepare(platform)
            var plan = FleetPlan(host: connectHost, port: platform.endpoints.mqttPort, credentials: .tokens(tokens))
            plan.devices = tokens.count
            plan.rate = 1
            plan.seed = 1
            plan.connectRate = 100
            let simulator = try FleetSimulator(plan: plan, logger: logger)
            logger.info(
                "demo: simulated devices are connecting",
                metadata: ["demo.devices": "\(tokens.count)", "demo.query": #"GET /api/v1/devices?q=labels.demo = "true""#]
            )
            _ = await simulator.run(progressInterval: .seconds(3600), drainTimeout: .zero)
        } catch {
            logger.error("demo: the simulated fleet could not start", metadata: ["error": "\(error)"])
        }
    }

    /// Where the simulated devices connect: the bound address, or loopback for a wildcard.
    private var connectHost: String {
        ["0.0.0.0", "::", "", "*"].contains(bind) ? "127.0.0.1" : bind
    }

    /// The demo devices' tokens in fleet order, registering what is missing.
    private func prepare(_ platform: MeridianApplication.ReadyPlatform) async throws -> [String] {
        guard let registry = platform.registry else { throw DemoError("the server runs without a registry") }
        var state = try? JSONDecoder().decode(State.self, from: Data(contentsOf: URL(fileURLWithPath: statePath)))
        if state == nil, let tenantID = platform.firstStartTenantID {
            state = State(tenantID: tenantID, tokens: [:])
        }
        guard var state else {
            throw DemoError(
                "this data directory was first started without --demo, so the demo does not know which tenant to use; "
                    + "start it with a fresh --data-dir (or delete the directory)"
            )
        }
        let caller = Caller(tenantID: state.tenantID, role: .owner, actor: AuditActor(kind: .system, id: "demo"))
        let sites = ["plant-berlin", "plant-lyon", "depot-rotterdam"]
        var tokens: [String] = []
        for index in 0..<devices {
            let profile = SimulatedProfile.allCases[index % SimulatedProfile.allCases.count]
            let id = "demo-\(profile.rawValue)-\(String(format: "%02d", index / SimulatedProfile.allCases.count + 1))"
            if let token = state.tokens[id], (try? await registry.device(id, by: caller)) != nil {
                tokens.append(token)
                continue
            }
            if (try? await registry.device(id, by: caller)) == nil {
                _ = try await registry.createDevice(
                    DeviceDraft(
                        id: id, name: id,
                        labels: ["demo": "true", "profile": profile.rawValue, "site": sites[index % sites.count]]
                    ),
                    by: caller
                )
            }
            let issued = try await registry.createCredential(deviceID: id, .token(nil), by: caller)
            guard let token = issued.token else { throw DemoError("no token issued for \(id)") }
            state.tokens[id] = token
            tokens.append(token)
        }
        let data = try JSONEncoder().encode(state)
        FileManager.default.createFile(atPath: statePath, contents: data, attributes: [.posixPermissions: 0o600])
        if let rules = platform.rules { await addRules(rules, caller: caller) }
        return tokens
    }

    /// A few rules over the demo fleet, so that alarms appear too: created when missing, never
    /// overwritten (a user's edits stay).
    static let rules = [
        #"""
        {"name": "demo: cold-chain excursion", "description": "Cargo warmer than 6 °C for a minute (doors open at deliveries).",
         "scope": {"query": "labels.profile = \"cold-chain-truck\""},
         "condition": {"threshold": {"key": "temperature", "op": ">", "value": 6, "for": "1m", "clear": {"op": "<", "value": 5, "for": "1m"}}},
         "alarm": {"severity": "major", "message": "{{device.id}}: cargo at {{values.temperature}} °C"}}
        """#,
        #"""
        {"name": "demo: motor vibration", "description": "Vibration above ISO 10816 zone C for 5 minutes (bearing wear).",
         "scope": {"query": "labels.profile = \"factory-motor\""},
         "condition": {"threshold": {"key": "vibrationRms", "op": ">", "value": 7.1, "for": "5m", "clear": {"op": "<", "value": 4.5, "for": "5m"}}},
         "alarm": {"severity": "critical", "message": "{{device.id}}: vibration {{values.vibrationRms}} mm/s"}}
        """#,
        #"""
        {"name": "demo: offline", "description": "A demo device offline for 2 minutes.",
         "scope": {"query": "labels.demo = \"true\""},
         "condition": {"presence": {"for": "2m"}},
         "alarm": {"severity": "warning", "message": "{{device.id}} is offline"}}
        """#,
    ]

    private func addRules(_ rules: RuleService, caller: Caller) async {
        for text in Self.rules {
            do {
                guard let json = JSONValue.parse(Data(text.utf8)) else { throw DemoError("a demo rule is not JSON") }
                let definition = try RuleService.definition(json)
                if (try? await rules.rule(definition.name, by: caller)) == nil { _ = try await rules.create(definition, by: caller) }
            } catch {
                logger.warning("demo: a rule could not be added", metadata: ["error": "\(error)"])
            }
        }
    }
}

struct DemoError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

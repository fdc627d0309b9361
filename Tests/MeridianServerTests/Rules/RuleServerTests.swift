import Foundation
import MQTTClient
import MQTTCore
import MeridianCore
import NIOCore
import Testing

@testable import MeridianServer

/// Rules on a running server: defined over REST, evaluated on real telemetry, alarms on the live
/// stream and in the API, actions reaching the broker, the twin and the pipeline, dry runs over
/// stored history.
@Suite("Rules on a running server")
struct RuleServerTests {
    static func firings(_ api: StreamTestAPI, rule: String, count: Int, timeout: Duration = .seconds(20)) async throws -> [[String: Any]] {
        let deadline = ContinuousClock.now + timeout
        while true {
            let page = try await api.expect(200, "GET", "/api/v1/rules/\(rule)/firings")
            let items = page["items"] as? [[String: Any]] ?? []
            let settled = items.allSatisfy { item in
                (item["actions"] as? [[String: Any]] ?? []).allSatisfy { $0["status"] as? String != "pending" }
            }
            if items.count >= count && settled { return items }
            guard ContinuousClock.now < deadline else {
                Issue.record("expected \(count) settled firings of \(rule), got \(items)")
                return items
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    @Test("a threshold rule raises an alarm on telemetry, streamed live; operators acknowledge, comment and clear it; history and the firing's why are in the API")
    func alarmLifecycle() async throws {
        try await ServerFixture.withStream { server, api in
            let device = try await api.device()
            let created = try await api.expect(
                201, "POST", "/api/v1/rules",
                body: #"{"name": "hot", "scope": {"device": "\#(device.id)"}, "condition": {"threshold": {"key": "temp", "op": ">", "value": 80, "clear": {"op": "<", "value": 75}}}, "alarm": {"severity": "major", "message": "{{device.id}} at {{values.temp}}"}}"#
            )
            let ruleID = try #require(created["id"] as? String)
            #expect(created["version"] as? Int == 1)
            let stream = try await StreamTestClient.connect(port: server.httpPort, headers: [("Authorization", "Bearer \(StreamTestAPI.adminKey)")])
            _ = try await stream.next { $0["type"] as? String == "authenticated" }
            #expect(try await stream.subscribe("al", devices: [device.id], topic: "alarm")["type"] as? String == "subscribed")

            try await api.post(device, #"{"temp": 70}"#)
            try await api.post(device, #"{"temp": 85}"#)
            let raised = try await stream.next { $0["type"] as? String == "alarm" }
            #expect(raised["change"] as? String == "raised" && raised["subscription"] as? String == "al")
            let alarm = try #require(raised["alarm"] as? [String: Any])
            let alarmID = try #require(alarm["id"] as? String)
            #expect(alarm["message"] as? String == "\(device.id) at 85")
            #expect(alarm["severity"] as? String == "major" && alarm["status"] as? String == "active")
            // 90 fires again while open: counted on the same alarm, not a second one.
            try await api.post(device, #"{"temp": 90}"#)
            try await api.post(device, #"{"temp": 78}"#)
            try await api.post(device, #"{"temp": 91}"#)
            let open = try await api.expect(200, "GET", "/api/v1/alarms?status=open&device=\(device.id)")
            #expect((open["items"] as? [[String: Any]])?.map { $0["id"] as? String } == [alarmID])

            let acknowledged = try await api.expect(200, "POST", "/api/v1/alarms/\(alarmID)/acknowledge")
            #expect(acknowledged["status"] as? String == "acknowledged")
            #expect((acknowledged["acknowledgedBy"] as? [String: Any])?["kind"] as? String == "api_key")
            try await api.expect(409, "POST", "/api/v1/alarms/\(alarmID)/acknowledge")
            try await api.expect(201, "POST", "/api/v1/alarms/\(alarmID)/comments", body: #"{"text": "fan replaced"}"#)
            try await api.expect(400, "POST", "/api/v1/alarms/\(alarmID)/comments", body: #"{"note": 1}"#)
            let viewer = try await api.apiKey("viewer")
            try await api.expect(403, "POST", "/api/v1/alarms/\(alarmID)/clear", key: viewer.key)

            // Below the clear level: the rule clears it.
            try await api.post(device, #"{"temp": 70}"#)
            let cleared = try await stream.next { $0["type"] as? String == "alarm" && $0["change"] as? String == "cleared" }
            #expect((cleared["by"] as? [String: Any])?["kind"] as? String == "rule")
            let history = try await api.expect(200, "GET", "/api/v1/alarms/\(alarmID)/history")
            #expect((history["items"] as? [[String: Any]])?.compactMap { $0["change"] as? String } == ["raised", "acknowledged", "commented", "cleared"])
            let stored = try await api.expect(200, "GET", "/api/v1/alarms/\(alarmID)")
            #expect(stored["status"] as? String == "cleared" && stored["count"] as? Int == 1)
            try await api.expect(409, "POST", "/api/v1/alarms/\(alarmID)/clear")
            try await api.expect(404, "GET", "/api/v1/alarms/alm_unknown")

            // The why: the raise with its input value, the clear with its own.
            let firings = try await Self.firings(api, rule: ruleID, count: 2)
            #expect(firings.compactMap { $0["event"] as? String } == ["clear", "raise"])
            #expect((firings.last?["values"] as? [String: Any])?["temp"] as? Double == 85)
            #expect((firings.last?["message"] as? String)?.contains("temp > 80") == true)
            #expect(firings.last?["alarm"] as? String == alarmID)
            let one = try await api.expect(200, "GET", "/api/v1/firings/\(try #require(firings.last?["id"] as? String))")
            #expect(one["device"] as? String == device.id)
            let filtered = try await api.expect(200, "GET", "/api/v1/alarms?severity=critical")
            #expect((filtered["items"] as? [[String: Any]])?.isEmpty == true)
            try await api.expect(400, "GET", "/api/v1/alarms?status=sleeping")
            await stream.close()
        }
    }

    @Test("actions: republish reaches an MQTT subscriber, a twin's desired state is patched, a derived value is stored, a command is queued; each outcome is on the firing")
    func actions() async throws {
        try await ServerFixture.withStream { server, api in
            let device = try await api.device()
            let watcher = server.client()
            _ = try await watcher.connect()
            _ = try await watcher.subscribe("alerts/#", qos: .atLeastOnce)
            let inbox = MessageCollector(watcher)
            let created = try await api.expect(
                201, "POST", "/api/v1/rules",
                body: #"""
                {"name": "overheat", "condition": {"threshold": {"key": "temp", "op": ">", "value": 80}},
                 "actions": [
                   {"type": "republish", "topic": "alerts/{{device.id}}", "payload": {"device": "{{device.id}}", "temp": "{{values.temp}}", "event": "{{event}}"}},
                   {"type": "twin", "desired": {"fan": "max"}},
                   {"type": "telemetry", "key": "overheat", "value": 1},
                   {"type": "command", "method": "cool", "params": {"to": 70}},
                   {"type": "telemetry", "when": "clear", "key": "overheat", "value": 0}
                 ]}
                """#
            )
            let ruleID = try #require(created["id"] as? String)
            try await api.post(device, #"{"temp": 95}"#)
            let alert = try await inbox.next(on: "alerts/\(device.id)")
            #expect(alert["device"] as? String == device.id && alert["temp"] as? Double == 95 && alert["event"] as? String == "raise")
            let firing = try #require(try await Self.firings(api, rule: ruleID, count: 1).first)
            let outcomes = try #require(firing["actions"] as? [[String: Any]])
            #expect(outcomes.compactMap { $0["type"] as? String } == ["republish", "twin", "telemetry", "command"])
            #expect(outcomes.allSatisfy { $0["status"] as? String == "succeeded" }, "\(outcomes)")
            let twin = try await api.expect(200, "GET", "/api/v1/devices/\(device.id)/twin")
            #expect((twin["desired"] as? [String: Any])?["fan"] as? String == "max")
            let latest = try await api.expect(200, "GET", "/api/v1/devices/\(device.id)/telemetry/latest")
            #expect((latest["overheat"] as? [String: Any])?["value"] as? Double == 1)
            let commands = try await api.expect(200, "GET", "/api/v1/devices/\(device.id)/commands")
            #expect((commands["items"] as? [[String: Any]])?.first?["method"] as? String == "cool")
            // The clear runs the clear action only.
            try await api.post(device, #"{"temp": 60}"#)
            let both = try await Self.firings(api, rule: ruleID, count: 2)
            #expect((both.first?["actions"] as? [[String: Any]])?.compactMap { $0["index"] as? Int } == [4])
            let after = try await api.expect(200, "GET", "/api/v1/devices/\(device.id)/telemetry/latest")
            #expect((after["overheat"] as? [String: Any])?["value"] as? Double == 0)
            try await watcher.disconnect()
        }
    }

    @Test("a dry run over stored history shows when a rule would have fired and cleared, and raises nothing")
    func dryRun() async throws {
        try await ServerFixture.withStream { server, api in
            let device = try await api.device()
            let base: Int64 = 1_700_000_000_000
            let samples = [70, 85, 86, 70, 90].enumerated().map { #"{"ts": \#(base + Int64($0.offset) * 60_000), "values": {"temp": \#($0.element)}}"# }
            try await api.post(device, "[" + samples.joined(separator: ",") + "]")
            let rule = #"{"name": "hot", "condition": {"threshold": {"key": "temp", "op": ">", "value": 80, "for": "1m"}}, "alarm": {}}"#
            let result = try await api.expect(
                200, "POST", "/api/v1/rules/dry-run",
                body: #"{"rule": \#(rule), "devices": ["\#(device.id)"], "from": \#(base - 1), "to": \#(base + 3_600_000)}"#
            )
            let firings = try #require(result["firings"] as? [[String: Any]])
            // 85 at +1m, 86 at +2m: held 1 minute at +2m; 70 at +3m clears; 90 at +4m alone is not 1 minute.
            #expect(firings.compactMap { $0["event"] as? String } == ["raise", "clear"])
            #expect(firings.compactMap { $0["at"] as? Int64 } == [base + 120_000, base + 180_000])
            #expect(result["samples"] as? Int == 5 && result["devices"] as? Int == 1)
            let alarms = try await api.expect(200, "GET", "/api/v1/alarms")
            #expect((alarms["items"] as? [[String: Any]])?.isEmpty == true)
            // Errors name the field.
            let bad = try await api.call("POST", "/api/v1/rules/dry-run", body: #"{"rule": {"name": "x", "condition": {"threshold": {"key": "t", "op": "?", "value": 1}}, "alarm": {}}}"#)
            #expect(bad.status == 422 && bad.json["field"] as? String == "rule.condition.threshold.op")
            let backwards = try await api.call("POST", "/api/v1/rules/dry-run", body: #"{"rule": \#(rule), "from": 10, "to": 5}"#)
            #expect(backwards.status == 422 && backwards.json["field"] as? String == "from")
            _ = server
        }
    }

    @Test("rules over REST: 422 naming the field, versions with If-Match, enable and disable, apply by name, delete")
    func ruleCRUD() async throws {
        try await ServerFixture.withStream { _, api in
            let bad = try await api.call("POST", "/api/v1/rules", body: #"{"name": "x", "condition": {"expression": {"expr": "temp >"}}, "alarm": {}}"#)
            #expect(bad.status == 422 && bad.json["field"] as? String == "condition.expression.expr")
            #expect((bad.json["detail"] as? String)?.contains("at 1:7") == true)
            let rule = #"{"name": "cold", "condition": {"threshold": {"key": "temp", "op": "<", "value": 5}}, "alarm": {"severity": "minor"}}"#
            let created = try await api.expect(201, "POST", "/api/v1/rules", body: rule)
            let id = try #require(created["id"] as? String)
            try await api.expect(409, "POST", "/api/v1/rules", body: rule)
            let changed = rule.replacingOccurrences(of: "\"value\": 5", with: "\"value\": 2")
            let put = try await api.call("PUT", "/api/v1/rules/\(id)", body: changed)
            #expect(put.status == 200 && put.json["version"] as? Int == 2)
            let disabled = try await api.expect(200, "PATCH", "/api/v1/rules/cold", body: #"{"enabled": false}"#)
            #expect(disabled["enabled"] as? Bool == false && disabled["version"] as? Int == 3)
            let versions = try await api.expect(200, "GET", "/api/v1/rules/\(id)/versions")
            #expect((versions["items"] as? [[String: Any]])?.compactMap { $0["version"] as? Int } == [3, 2, 1])
            let applied = try await api.expect(
                200, "POST", "/api/v1/rules/apply",
                body: #"{"rules": [\#(rule), {"name": "warm", "condition": {"threshold": {"key": "temp", "op": ">", "value": 30}}, "alarm": {}}], "prune": true}"#
            )
            #expect(applied["updated"] as? [String] == ["cold"] && applied["created"] as? [String] == ["warm"])
            let refused = try await api.call("POST", "/api/v1/rules/apply", body: #"{"rules": [\#(rule), {"name": "w2"}]}"#)
            #expect(refused.status == 422 && refused.json["field"] as? String == "rules[1].condition")
            try await api.expect(204, "DELETE", "/api/v1/rules/warm")
            try await api.expect(404, "GET", "/api/v1/rules/warm")
            let list = try await api.expect(200, "GET", "/api/v1/rules")
            #expect((list["items"] as? [[String: Any]])?.compactMap { $0["name"] as? String } == ["cold"])
        }
    }

    @Test("a rule's webhook reaches a local endpoint with its template body and a valid signature; a failing one ends dead-lettered on the firing and replays from the API")
    func webhookAction() async throws {
        try await WebhookTestReceiver.with { receiver in
            try await ServerFixture.withStream { _, api in
                let device = try await api.device()
                let created = try await api.expect(
                    201, "POST", "/api/v1/rules",
                    body: #"""
                    {"name": "hook", "condition": {"threshold": {"key": "temp", "op": ">", "value": 80}},
                     "actions": [{"type": "webhook", "url": "\#(receiver.url)", "secret": "s3cret", "retries": 1, "timeout": "2s",
                                  "body": {"device": "{{device.id}}", "temp": "{{values.temp}}"}}]}
                    """#
                )
                let ruleID = try #require(created["id"] as? String)
                try await api.post(device, #"{"temp": 90}"#)
                let delivered = try #require(try await Self.firings(api, rule: ruleID, count: 1).first)
                let outcome = try #require((delivered["actions"] as? [[String: Any]])?.first)
                #expect(outcome["status"] as? String == "succeeded", "\(outcome)")
                let received = try #require(receiver.received.first)
                let body = try #require(try JSONSerialization.jsonObject(with: Data(received.body.utf8)) as? [String: Any])
                #expect(body["device"] as? String == device.id && body["temp"] as? Double == 90)
                let signature = try #require(received.header("X-Meridian-Signature"))
                #expect(WebhookSignature.verify(header: signature, body: received.body, secret: "s3cret", now: Date(), tolerance: 300))

                // Failing twice (one retry): dead-lettered, recorded on the firing, replayable.
                receiver.answer(500)
                try await api.post(device, #"{"temp": 60}"#)
                try await api.post(device, #"{"temp": 95}"#)
                let failed = try #require(try await Self.firings(api, rule: ruleID, count: 3).first)
                let deadOutcome = try #require((failed["actions"] as? [[String: Any]])?.first)
                #expect(deadOutcome["status"] as? String == "dead_lettered" && deadOutcome["attempts"] as? Int == 2, "\(deadOutcome)")
                let letters = try await api.expect(200, "GET", "/api/v1/webhooks/dead-letters")
                let letter = try #require((letters["items"] as? [[String: Any]])?.first)
                #expect(!(String(describing: letters)).contains("s3cret"))
                receiver.answer(200)
                let replayed = try await api.expect(200, "POST", "/api/v1/webhooks/dead-letters/\(try #require(letter["id"] as? String))/replay")
                #expect(replayed["status"] as? String == "delivered")
                // The firing's webhook now says delivered.
                let firingID = try #require(failed["id"] as? String)
                let deadline = ContinuousClock.now + .seconds(20)
                var status: String?
                repeat {
                    let firing = try await api.expect(200, "GET", "/api/v1/firings/\(firingID)")
                    status = (firing["actions"] as? [[String: Any]])?.first?["status"] as? String
                    if status == "succeeded" { break }
                    try await Task.sleep(for: .milliseconds(50))
                } while ContinuousClock.now < deadline
                #expect(status == "succeeded")
            }
        }
    }

    @Test("rules, open alarms and firings survive a restart; an alarm open before it clears at its rule's clear condition after it")
    func restart() async throws {
        var configuration = ServerFixture.testConfiguration()
        configuration.api.bootstrapAPIKey = StreamTestAPI.adminKey
        defer { try? FileManager.default.removeItem(atPath: configuration.dataDirectory) }
        let (device, ruleID, alarmID) = try await ServerFixture.with(configuration, keepData: true) { server in
            let api = StreamTestAPI(port: server.httpPort)
            let device = try await api.device()
            let created = try await api.expect(
                201, "POST", "/api/v1/rules",
                body: #"{"name": "hot", "condition": {"threshold": {"key": "temp", "op": ">", "value": 80, "clear": {"op": "<", "value": 75}}}, "alarm": {"severity": "critical"}}"#
            )
            try await api.post(device, #"{"temp": 90}"#)
            let ruleID = try #require(created["id"] as? String)
            _ = try await Self.firings(api, rule: ruleID, count: 1)
            let open = try await api.expect(200, "GET", "/api/v1/alarms?status=open")
            return (device, ruleID, try #require((open["items"] as? [[String: Any]])?.first?["id"] as? String))
        }
        try await ServerFixture.with(configuration, keepData: true) { server in
            let api = StreamTestAPI(port: server.httpPort)
            let rule = try await api.expect(200, "GET", "/api/v1/rules/hot")
            #expect(rule["id"] as? String == ruleID && rule["version"] as? Int == 1)
            #expect(try await Self.firings(api, rule: ruleID, count: 1).count == 1)
            let alarm = try await api.expect(200, "GET", "/api/v1/alarms/\(alarmID)")
            #expect(alarm["status"] as? String == "active")
            // Still hot: counted on the open alarm; then cool: cleared by the rule.
            try await api.post(device, #"{"temp": 92}"#)
            try await api.post(device, #"{"temp": 70}"#)
            let deadline = ContinuousClock.now + .seconds(20)
            var status: String?
            repeat {
                status = try await api.expect(200, "GET", "/api/v1/alarms/\(alarmID)")["status"] as? String
                if status == "cleared" { break }
                try await Task.sleep(for: .milliseconds(50))
            } while ContinuousClock.now < deadline
            #expect(status == "cleared")
            let history = try await api.expect(200, "GET", "/api/v1/alarms/\(alarmID)/history")
            #expect((history["items"] as? [[String: Any]])?.compactMap { $0["change"] as? String } == ["raised", "cleared"])
        }
    }
}

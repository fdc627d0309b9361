import Foundation
import MeridianCore

/// Rules, alarms, firings and dry runs, as the API and the live stream use them.
public final class RuleServices: Sendable {
    public let rules: RuleService
    public let alarms: AlarmService
    public let engine: RuleEngine
    let dryRun: RuleDryRun

    init(rules: RuleService, alarms: AlarmService, engine: RuleEngine, dryRun: RuleDryRun) {
        self.rules = rules
        self.alarms = alarms
        self.engine = engine
        self.dryRun = dryRun
    }

    public var firings: any RuleFiringStore { engine.firings }
}

/// The JSON forms of alarms and firings in the API and on the stream.
enum AlarmJSON {
    static func actor(_ actor: AlarmActor) -> JSONValue {
        .object(["kind": .string(actor.kind.rawValue), "id": .string(actor.id)])
    }

    static func alarm(_ alarm: Alarm) -> JSONValue {
        var object: [String: JSONValue] = [
            "id": .string(alarm.id),
            "rule": .string(alarm.ruleID),
            "ruleVersion": .number(Double(alarm.ruleVersion)),
            "device": .string(alarm.deviceID),
            "severity": .string(alarm.severity.rawValue),
            "status": .string(alarm.status.rawValue),
            "message": .string(alarm.message),
            "inputs": .object(alarm.inputs),
            "lastInputs": .object(alarm.lastInputs),
            "count": .number(Double(alarm.count)),
            "raisedAt": .string(RuleTime.iso(alarm.raisedAt)),
            "lastRaisedAt": .string(RuleTime.iso(alarm.lastRaisedAt)),
            "comments": .array(
                alarm.comments.map { .object(["at": .string(RuleTime.iso($0.at)), "by": actor($0.by), "text": .string($0.text)]) }
            ),
        ]
        if let at = alarm.acknowledgedAt { object["acknowledgedAt"] = .string(RuleTime.iso(at)) }
        if let by = alarm.acknowledgedBy { object["acknowledgedBy"] = actor(by) }
        if let at = alarm.clearedAt { object["clearedAt"] = .string(RuleTime.iso(at)) }
        if let by = alarm.clearedBy { object["clearedBy"] = actor(by) }
        return .object(object)
    }

    static func history(_ entry: AlarmHistoryEntry) -> JSONValue {
        var object: [String: JSONValue] = [
            "change": .string(entry.kind.rawValue),
            "at": .string(RuleTime.iso(entry.at)),
            "by": actor(entry.by),
            "status": .string(entry.status.rawValue),
            "severity": .string(entry.severity.rawValue),
            "count": .number(Double(entry.count)),
        ]
        if let comment = entry.comment { object["comment"] = .string(comment) }
        return .object(object)
    }

    static func firing(_ firing: RuleFiring) -> JSONValue {
        var object: [String: JSONValue] = [
            "id": .string(firing.id),
            "rule": .object(["id": .string(firing.ruleID), "name": .string(firing.ruleName), "version": .number(Double(firing.ruleVersion))]),
            "device": .string(firing.deviceID),
            "event": .string(firing.event.rawValue),
            "at": .string(RuleTime.iso(milliseconds: firing.at)),
            "recordedAt": .string(RuleTime.iso(firing.recordedAt)),
            "message": .string(firing.message),
            "values": .object(firing.values),
            "actions": .array(
                firing.actions.map { outcome in
                    .object([
                        "index": .number(Double(outcome.index)), "type": .string(outcome.type), "status": .string(outcome.status.rawValue),
                        "detail": .string(outcome.detail), "attempts": .number(Double(outcome.attempts)), "at": .string(RuleTime.iso(outcome.at)),
                    ])
                }
            ),
        ]
        if let alarmID = firing.alarmID { object["alarm"] = .string(alarmID) }
        return .object(object)
    }
}

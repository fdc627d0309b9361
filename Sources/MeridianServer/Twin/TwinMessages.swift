import Foundation
import MeridianCore

/// The JSON the MQTT twin conventions exchange, in AWS IoT's shapes: the native topics use
/// them with times in milliseconds, the AWS shadow topics with times in seconds (as AWS does).
enum TwinMessages {
    /// How times are written.
    enum Clock: Sendable {
        /// Milliseconds since 1970 (native topics, REST).
        case milliseconds
        /// Seconds since 1970 (AWS IoT).
        case seconds

        func time(_ milliseconds: Int64) -> JSONValue {
            switch self {
            case .milliseconds: .number(Double(milliseconds))
            case .seconds: .number(Double(milliseconds / 1000))
            }
        }

        /// A metadata tree with its `timestamp` leaves in this clock.
        func metadata(_ tree: [String: JSONValue]) -> JSONValue {
            guard case .seconds = self else { return .object(tree) }
            return .object(tree.mapValues(Self.seconds))
        }

        private static func seconds(_ value: JSONValue) -> JSONValue {
            guard case .object(let members) = value else { return value }
            if members.count == 1, case .number(let milliseconds) = members["timestamp"] {
                return .object(["timestamp": .number((milliseconds / 1000).rounded(.down))])
            }
            return .object(members.mapValues(seconds))
        }
    }

    /// A parsed request: `{"state": {"desired": ..., "reported": ...}, "version": N,
    /// "clientToken": "..."}` (every member optional here; the operation checks what it needs).
    struct Request: Sendable {
        var desired: JSONValue?
        var reported: JSONValue?
        var version: Int64?
        var clientToken: String?
        var hasState: Bool
    }

    /// Why a request was refused: the `rejected` answer's code and message.
    struct Refusal: Error, Sendable {
        var code: Int
        var message: String
        var clientToken: String?
    }

    /// Parses a request payload; an empty payload is an empty request.
    static func request(_ payload: Data) -> Result<Request, Refusal> {
        if payload.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) {
            return .success(Request(hasState: false))
        }
        guard let value = JSONValue.parse(payload), case .object(let members) = value else {
            return .failure(Refusal(code: 400, message: "Payload contains invalid json"))
        }
        var request = Request(hasState: false)
        if let token = members["clientToken"] {
            guard case .string(let text) = token, text.utf8.count <= 64 else {
                return .failure(Refusal(code: 400, message: "clientToken must be a string of at most 64 bytes"))
            }
            request.clientToken = text
        }
        if let version = members["version"] {
            guard case .number(let number) = version, number >= 0, number == number.rounded(), number < 9e15 else {
                return .failure(
                    Refusal(
                        code: 400,
                        message: "version must be a non-negative integer",
                        clientToken: request.clientToken
                    )
                )
            }
            request.version = Int64(number)
        }
        if let state = members["state"] {
            guard case .object(let sections) = state else {
                return .failure(
                    Refusal(code: 400, message: "state must be an object", clientToken: request.clientToken)
                )
            }
            for key in sections.keys where key != "desired" && key != "reported" {
                return .failure(
                    Refusal(
                        code: 400,
                        message: "State contains an invalid node: '\(key)'",
                        clientToken: request.clientToken
                    )
                )
            }
            request.desired = sections["desired"]
            request.reported = sections["reported"]
            request.hasState = true
        }
        return .success(request)
    }

    private static func withToken(_ members: [String: JSONValue], _ clientToken: String?) -> JSONValue {
        var members = members
        if let clientToken { members["clientToken"] = .string(clientToken) }
        return .object(members)
    }

    /// `get/accepted`: the state (sections that are not empty), metadata, version, timestamp.
    static func document(_ document: TwinDocument, clock: Clock, now: Int64, clientToken: String?) -> JSONValue {
        var state: [String: JSONValue] = [:]
        var metadata: [String: JSONValue] = [:]
        if !document.desired.isEmpty {
            state["desired"] = .object(document.desired)
            metadata["desired"] = clock.metadata(document.desiredMetadata)
        }
        if !document.reported.isEmpty {
            state["reported"] = .object(document.reported)
            metadata["reported"] = clock.metadata(document.reportedMetadata)
        }
        let delta = document.delta
        if !delta.isEmpty { state["delta"] = .object(delta) }
        return withToken(
            [
                "state": .object(state), "metadata": .object(metadata), "version": .number(Double(document.version)),
                "timestamp": clock.time(now),
            ],
            clientToken
        )
    }

    /// `update/accepted`: the request's state echoed, with the metadata of what it set.
    static func updateAccepted(_ request: Request, current: TwinDocument, clock: Clock, now: Int64) -> JSONValue {
        var state: [String: JSONValue] = [:]
        var metadata: [String: JSONValue] = [:]
        if let desired = request.desired {
            state["desired"] = desired
            if case .object(let members) = desired {
                metadata["desired"] = clock.metadata(restrict(current.desiredMetadata, to: members))
            }
        }
        if let reported = request.reported {
            state["reported"] = reported
            if case .object(let members) = reported {
                metadata["reported"] = clock.metadata(restrict(current.reportedMetadata, to: members))
            }
        }
        return withToken(
            [
                "state": .object(state), "metadata": .object(metadata), "version": .number(Double(current.version)),
                "timestamp": clock.time(now),
            ],
            request.clientToken
        )
    }

    /// `delete/accepted`: `{"version", "timestamp"}`.
    static func deleteAccepted(version: Int64, clock: Clock, now: Int64, clientToken: String?) -> JSONValue {
        withToken(["version": .number(Double(version)), "timestamp": clock.time(now)], clientToken)
    }

    /// `.../rejected`: `{"code", "message", "timestamp"}`.
    static func rejected(_ refusal: Refusal, clock: Clock, now: Int64) -> JSONValue {
        withToken(
            ["code": .number(Double(refusal.code)), "message": .string(refusal.message), "timestamp": clock.time(now)],
            refusal.clientToken
        )
    }

    /// `update/delta`: the desired members that differ from reported.
    static func delta(_ document: TwinDocument, clock: Clock, clientToken: String?) -> JSONValue {
        withToken(
            [
                "state": .object(document.delta), "metadata": clock.metadata(document.deltaMetadata),
                "version": .number(Double(document.version)),
                "timestamp": clock.time(document.timestamp),
            ],
            clientToken
        )
    }

    /// `update/documents`: the twin before and after a change.
    static func documents(
        previous: TwinDocument,
        current: TwinDocument,
        clock: Clock,
        clientToken: String?
    ) -> JSONValue {
        func side(_ document: TwinDocument) -> JSONValue {
            .object([
                "state": .object(["desired": .object(document.desired), "reported": .object(document.reported)]),
                "metadata": .object([
                    "desired": clock.metadata(document.desiredMetadata),
                    "reported": clock.metadata(document.reportedMetadata),
                ]),
                "version": .number(Double(document.version)),
            ])
        }
        return withToken(
            ["previous": side(previous), "current": side(current), "timestamp": clock.time(current.timestamp)],
            clientToken
        )
    }

    /// The parts of a metadata tree whose paths are in `state` (a `null` member's metadata is
    /// gone; it is left out).
    static func restrict(_ metadata: [String: JSONValue], to state: [String: JSONValue]) -> [String: JSONValue] {
        var result: [String: JSONValue] = [:]
        for (key, value) in state {
            guard let entry = metadata[key] else { continue }
            if case .object(let members) = value, !members.isEmpty, case .object(let inner) = entry,
                !(inner.count == 1 && inner["timestamp"] != nil)
            {
                result[key] = .object(restrict(inner, to: members))
            } else {
                result[key] = entry
            }
        }
        return result
    }

    // MARK: ThingsBoard

    /// The shared-attribute push for a desired change: changed or added top-level members,
    /// and `{"deleted": [...]}` for removed ones (nil when nothing of that kind).
    static func sharedAttributeChanges(
        previous: [String: JSONValue],
        current: [String: JSONValue]
    ) -> (updated: JSONValue?, deleted: JSONValue?) {
        var updated: [String: JSONValue] = [:]
        for (key, value) in current where previous[key] != value { updated[key] = value }
        let deleted = previous.keys.filter { current[$0] == nil }.sorted()
        return (
            updated.isEmpty ? nil : .object(updated),
            deleted.isEmpty ? nil : .object(["deleted": .array(deleted.map(JSONValue.string))])
        )
    }

    /// The answer to a ThingsBoard attribute request `{"clientKeys": "a,b", "sharedKeys": "c"}`:
    /// `{"client": {...}, "shared": {...}}`; without either list, every attribute of both kinds.
    static func attributeResponse(_ request: JSONValue?, document: TwinDocument) -> JSONValue {
        func keys(_ name: String) -> [String]? {
            guard let value = request?[name] else { return nil }
            switch value {
            case .string(let text):
                return text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            case .array(let items): return items.compactMap(\.stringValue)
            default: return nil
            }
        }
        let client = keys("clientKeys")
        let shared = keys("sharedKeys")
        var response: [String: JSONValue] = [:]
        func pick(_ state: [String: JSONValue], _ wanted: [String]?) -> JSONValue {
            guard let wanted else { return .object(state) }
            var picked: [String: JSONValue] = [:]
            for key in wanted { if let value = state[key] { picked[key] = value } }
            return .object(picked)
        }
        if client != nil || shared == nil { response["client"] = pick(document.reported, client) }
        if shared != nil || client == nil { response["shared"] = pick(document.desired, shared) }
        return .object(response)
    }
}

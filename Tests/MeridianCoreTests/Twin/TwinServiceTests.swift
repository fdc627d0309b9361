import Foundation
import MeridianCore
import Synchronization
import Testing

/// JSON text to a JSONValue (test input).
func json(_ text: String) -> JSONValue {
    guard let value = JSONValue.parse(Data(text.utf8)) else {
        Issue.record("not JSON: \(text)")
        return .null
    }
    return value
}

@Suite("JSON merge patch")
struct JSONMergePatchTests {
    // The examples of RFC 7386, appendix A.
    @Test(
        "RFC 7386 examples",
        arguments: [
            (#"{"a":"b"}"#, #"{"a":"c"}"#, #"{"a":"c"}"#),
            (#"{"a":"b"}"#, #"{"b":"c"}"#, #"{"a":"b","b":"c"}"#),
            (#"{"a":"b"}"#, #"{"a":null}"#, #"{}"#),
            (#"{"a":"b","b":"c"}"#, #"{"a":null}"#, #"{"b":"c"}"#),
            (#"{"a":["b"]}"#, #"{"a":"c"}"#, #"{"a":"c"}"#),
            (#"{"a":"c"}"#, #"{"a":["b"]}"#, #"{"a":["b"]}"#),
            (#"{"a":{"b":"c"}}"#, #"{"a":{"b":"d","c":null}}"#, #"{"a":{"b":"d"}}"#),
            (#"{"a":[{"b":"c"}]}"#, #"{"a":[1]}"#, #"{"a":[1]}"#),
            (#"["a","b"]"#, #"["c","d"]"#, #"["c","d"]"#),
            (#"{"a":"b"}"#, #"["c"]"#, #"["c"]"#),
            (#"{"a":"foo"}"#, #"null"#, #"null"#),
            (#"{"a":"foo"}"#, #""bar""#, #""bar""#),
            (#"{"e":null}"#, #"{"a":1}"#, #"{"a":1,"e":null}"#),
            (#"[1,2]"#, #"{"a":"b","c":null}"#, #"{"a":"b"}"#),
            (#"{}"#, #"{"a":{"bb":{"ccc":null}}}"#, #"{"a":{"bb":{}}}"#),
        ]
    )
    func rfcExamples(original: String, patch: String, result: String) {
        #expect(JSONMergePatch.apply(json(patch), to: json(original)) == json(result))
    }

    @Test("metadata gets a timestamp per leaf set, and loses removed members")
    func metadata() {
        var state: [String: JSONValue] = [:]
        var metadata: [String: JSONValue] = [:]
        JSONMergePatch.apply(
            json(#"{"a":1,"b":{"c":true,"d":[1,2]}}"#).objectValue!,
            to: &state,
            metadata: &metadata,
            timestamp: 100
        )
        #expect(
            JSONValue.object(metadata)
                == json(#"{"a":{"timestamp":100},"b":{"c":{"timestamp":100},"d":{"timestamp":100}}}"#)
        )
        JSONMergePatch.apply(
            json(#"{"b":{"c":false,"d":null},"a":null}"#).objectValue!,
            to: &state,
            metadata: &metadata,
            timestamp: 200
        )
        #expect(JSONValue.object(state) == json(#"{"b":{"c":false}}"#))
        #expect(JSONValue.object(metadata) == json(#"{"b":{"c":{"timestamp":200}}}"#))
    }

    @Test("JSON text: sorted keys, integers without a fraction, escapes")
    func text() {
        #expect(json(#"{"b":1,"a":[true,null,2.5,"x\"\n"]}"#).jsonText == #"{"a":[true,null,2.5,"x\"\n"],"b":1}"#)
    }
}

@Suite("Twin delta")
struct TwinDeltaTests {
    @Test("delta holds desired members that differ, nested objects compared member by member")
    func delta() {
        let desired = json(#"{"color":{"r":10,"g":255},"engine":"ON","mode":"eco","list":[1,2]}"#).objectValue!
        let reported = json(#"{"color":{"r":255,"g":255,"b":0},"mode":"eco","list":[1],"extra":1}"#).objectValue!
        let delta = TwinDocument.delta(desired: desired, reported: reported)
        #expect(JSONValue.object(delta) == json(#"{"color":{"r":10},"engine":"ON","list":[1,2]}"#))
    }

    @Test("no delta when reported matches desired")
    func none() {
        let state = json(#"{"a":{"b":1},"c":"x"}"#).objectValue!
        #expect(TwinDocument.delta(desired: state, reported: state).isEmpty)
    }
}

@Suite("Twin service")
struct TwinServiceTests {
    let key = TwinKey(tenantID: "t1", deviceID: "d1")
    let operatorActor = AuditActor(kind: .user, id: "u1")
    let deviceActor = AuditActor(kind: .device, id: "d1")

    func service(limits: TwinService.Limits = .init()) -> (TwinService, MemoryTwinStore, ManualMilliseconds) {
        let store = MemoryTwinStore()
        let clock = ManualMilliseconds()
        return (TwinService(store: store, limits: limits, now: { clock.now }), store, clock)
    }

    @Test("a twin never written is empty at version 0")
    func empty() async throws {
        let (twins, _, _) = service()
        let twin = try await twins.twin(key)
        #expect(twin.version == 0 && !twin.exists && twin.desired.isEmpty && twin.reported.isEmpty)
    }

    @Test("each change makes one new version; desired and reported merge; delta and metadata follow")
    func updates() async throws {
        let (twins, _, clock) = service()
        var result = try await twins.update(
            key,
            desired: json(#"{"fan":{"speed":3},"led":"on"}"#),
            actor: operatorActor
        )
        #expect(result.current.version == 1 && result.changed)
        #expect(JSONValue.object(result.current.delta) == json(#"{"fan":{"speed":3},"led":"on"}"#))
        clock.advance(1000)
        result = try await twins.update(key, reported: json(#"{"fan":{"speed":3},"led":"off"}"#), actor: deviceActor)
        #expect(result.current.version == 2)
        #expect(JSONValue.object(result.current.delta) == json(#"{"led":"on"}"#))
        #expect(
            result.current.metadata
                == json(
                    #"{"desired":{"fan":{"speed":{"timestamp":1700000000000}},"led":{"timestamp":1700000000000}},"reported":{"fan":{"speed":{"timestamp":1700000001000}},"led":{"timestamp":1700000001000}}}"#
                )
        )
        // The same values again change nothing: no new version.
        result = try await twins.update(key, reported: json(#"{"led":"off"}"#), actor: deviceActor)
        #expect(!result.changed && result.current.version == 2)
        // null removes a member.
        result = try await twins.update(key, desired: json(#"{"led":null}"#), actor: operatorActor)
        #expect(result.current.version == 3 && result.current.desired["led"] == nil && result.current.delta.isEmpty)
        // null as a whole section clears it.
        result = try await twins.update(key, reported: .null, actor: deviceActor)
        #expect(
            result.current.reported.isEmpty && result.current.reportedMetadata.isEmpty && result.current.version == 4
        )
    }

    @Test("an expected version that is not current is a conflict; the current one is accepted")
    func optimisticConcurrency() async throws {
        let (twins, _, _) = service()
        try await twins.update(key, desired: json(#"{"a":1}"#), expectedVersion: 0, actor: operatorActor)
        await #expect(throws: TwinError.self) {
            try await twins.update(key, desired: json(#"{"a":2}"#), expectedVersion: 0, actor: operatorActor)
        }
        do {
            try await twins.update(key, desired: json(#"{"a":2}"#), expectedVersion: 5, actor: operatorActor)
            Issue.record("a stale version was accepted")
        } catch let error as TwinError {
            #expect(error.code == .versionConflict && error.field == "version")
        }
        let result = try await twins.update(key, desired: json(#"{"a":2}"#), expectedVersion: 1, actor: operatorActor)
        #expect(result.current.version == 2 && result.current.desired["a"] == .number(2))
    }

    @Test("a save that loses a race is retried without an expected version, refused with one")
    func lostRace() async throws {
        let (twins, store, _) = service()
        store.loseNextSaves(3)
        let result = try await twins.update(key, desired: json(#"{"a":1}"#), actor: operatorActor)
        #expect(result.current.version == 1)
        store.loseNextSaves(1)
        await #expect(throws: TwinError.self) {
            try await twins.update(key, desired: json(#"{"a":2}"#), expectedVersion: 1, actor: operatorActor)
        }
    }

    @Test("concurrent updates each get their own version and none is lost")
    func concurrent() async throws {
        let (twins, _, _) = service()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<20 {
                group.addTask {
                    try await twins.update(
                        self.key,
                        desired: .object(["k\(index)": .number(Double(index))]),
                        actor: self.operatorActor
                    )
                }
            }
            try await group.waitForAll()
        }
        let twin = try await twins.twin(key)
        #expect(twin.version == 20 && twin.desired.count == 20)
    }

    @Test("nesting deeper than the limit is refused naming the path and the setting")
    func depthLimit() async throws {
        let (twins, _, _) = service(limits: .init(maximumDepth: 3))
        try await twins.update(key, desired: json(#"{"a":{"b":{"c":1}}}"#), actor: operatorActor)
        do {
            try await twins.update(key, desired: json(#"{"a":{"b":{"c":{"d":1}}}}"#), actor: operatorActor)
            Issue.record("too deep a patch was accepted")
        } catch let error as TwinError {
            #expect(
                error.code == .invalid && error.field == "desired.a.b.c" && error.message.contains("twin.max_depth")
            )
        }
    }

    @Test("a twin over the size limit is refused with tooLarge naming the setting; nothing is stored")
    func sizeLimit() async throws {
        let (twins, _, _) = service(limits: .init(maximumDocumentBytes: 1024))
        try await twins.update(
            key,
            reported: .object(["a": .string(String(repeating: "x", count: 500))]),
            actor: deviceActor
        )
        do {
            try await twins.update(
                key,
                reported: .object(["b": .string(String(repeating: "y", count: 600))]),
                actor: deviceActor
            )
            Issue.record("an oversized twin was accepted")
        } catch let error as TwinError {
            #expect(
                error.code == .tooLarge && error.message.contains("twin.max_document_bytes")
                    && error.field == "reported"
            )
        }
        #expect(try await twins.twin(key).version == 1)
    }

    @Test("sections that are not objects are refused", arguments: [#"[1]"#, #""x""#, #"3"#, #"true"#])
    func notObjects(_ text: String) async throws {
        let (twins, _, _) = service()
        await #expect(throws: TwinError.self) { try await twins.update(key, desired: json(text), actor: operatorActor) }
    }

    @Test("delete empties the twin but keeps its version counter; the next update continues it")
    func deleteKeepsVersion() async throws {
        let (twins, _, _) = service()
        try await twins.update(key, desired: json(#"{"a":1}"#), actor: operatorActor)
        try await twins.update(key, reported: json(#"{"a":1}"#), actor: deviceActor)
        let deleted = try await twins.delete(key, actor: operatorActor)
        #expect(deleted.current.version == 2 && !deleted.current.exists && deleted.current.desired.isEmpty)
        await #expect(throws: TwinError.self) { try await twins.delete(key, actor: operatorActor) }
        let next = try await twins.update(key, reported: json(#"{"b":2}"#), actor: deviceActor)
        #expect(next.current.version == 3 && next.current.reported == ["b": .number(2)] && next.current.desired.isEmpty)
    }

    @Test("the twin at a time between versions is the version made before it; history says who")
    func history() async throws {
        let (twins, _, clock) = service()
        let start = clock.now
        try await twins.update(key, desired: json(#"{"a":1}"#), actor: operatorActor)
        clock.advance(1000)
        try await twins.update(key, reported: json(#"{"a":1}"#), actor: deviceActor)
        clock.advance(1000)
        try await twins.update(key, desired: json(#"{"a":2}"#), actor: operatorActor)
        clock.advance(1000)
        try await twins.delete(key, actor: operatorActor)

        await #expect(throws: TwinError.self) { try await twins.twin(key, at: start - 1) }
        #expect(try await twins.twin(key, at: start + 500).desired == ["a": .number(1)])
        #expect(try await twins.twin(key, at: start + 500).reported.isEmpty)
        #expect(try await twins.twin(key, at: start + 1500).reported == ["a": .number(1)])
        #expect(try await twins.twin(key, at: start + 2999).desired == ["a": .number(2)])
        #expect(try await twins.twin(key, at: start + 2999).version == 3)
        #expect(try await !twins.twin(key, at: start + 3000).exists)

        let entries = try await twins.history(key)
        #expect(entries.map(\.version) == [3, 3, 2, 1])
        #expect(entries.map(\.operation) == [.delete, .update, .update, .update])
        #expect(entries.map(\.actor.kind) == [.user, .user, .device, .user])
        #expect(entries[1].patch == json(#"{"desired":{"a":2}}"#))
        let page = try await twins.history(key, before: entries[1].sequence, limit: 1)
        #expect(page.map(\.version) == [2])
    }

    @Test("retention removes old history but keeps each twin's newest entry")
    func retention() async throws {
        let (twins, _, clock) = service(limits: .init(historyRetention: 10))
        try await twins.update(key, desired: json(#"{"a":1}"#), actor: operatorActor)
        try await twins.update(key, desired: json(#"{"a":2}"#), actor: operatorActor)
        clock.advance(60_000)
        #expect(try await twins.sweepHistory() == 1)
        #expect(try await twins.history(key).map(\.version) == [2])
        #expect(try await twins.twin(key, at: clock.now).desired == ["a": .number(2)])
    }

    @Test("observers hear every stored change, with the patch and client token, not no-ops")
    func observers() async throws {
        let (twins, _, _) = service()
        let heard = Mutex<[TwinChange]>([])
        twins.observe { change in heard.withLock { $0.append(change) } }
        try await twins.update(key, desired: json(#"{"a":1}"#), actor: operatorActor, clientToken: "tok")
        try await twins.update(key, desired: json(#"{"a":1}"#), actor: operatorActor)
        try await twins.delete(key, actor: operatorActor)
        let changes = heard.withLock { $0 }
        #expect(changes.count == 2)
        #expect(changes.first?.clientToken == "tok" && changes.first?.desiredChanged == true)
        #expect(changes.last?.operation == .delete)
    }

    @Test("named twins are separate from the default twin", arguments: ["config", "a:b_c-1"])
    func named(_ name: String) async throws {
        let (twins, _, _) = service()
        try TwinKey.validate(name: name)
        let named = TwinKey(tenantID: "t1", deviceID: "d1", name: name)
        try await twins.update(named, desired: json(#"{"x":1}"#), actor: operatorActor)
        #expect(try await twins.twin(key).version == 0)
        #expect(try await twins.twin(named).version == 1)
        #expect(try await twins.twinNames(tenantID: "t1", deviceID: "d1") == [name])
    }

    @Test(
        "bad twin names are refused",
        arguments: ["", "a/b", "with space", String(repeating: "n", count: 65), "+", "#"]
    )
    func badNames(_ name: String) {
        #expect(throws: TwinError.self) { try TwinKey.validate(name: name) }
    }
}

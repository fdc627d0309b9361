import Foundation
import MQTTBroker
import MeridianCore
import Testing

@testable import MeridianServer

private func parse(_ text: String) -> JSONValue {
    JSONValue.parse(Data(text.utf8)) ?? .null
}

@Suite("Twin MQTT messages")
struct TwinMessagesTests {
    @Test("update requests: state, version and clientToken are read; malformed ones are refused with 400")
    func requests() throws {
        let request = try TwinMessages.request(
            Data(#"{"state":{"reported":{"a":1},"desired":null},"version":3,"clientToken":"tok"}"#.utf8)
        ).get()
        #expect(
            request.reported == parse(#"{"a":1}"#) && request.desired == .null && request.version == 3
                && request.clientToken == "tok"
        )
        #expect(try TwinMessages.request(Data()).get().hasState == false)
        for bad in [
            #"{"state":[1]}"#, #"{"state":{"delta":{}}}"#, #"{"version":-1}"#, #"{"version":1.5}"#, #"[]"#, "{x",
            #"{"clientToken":5}"#,
        ] {
            guard case .failure(let refusal) = TwinMessages.request(Data(bad.utf8)) else {
                Issue.record("accepted \(bad)")
                continue
            }
            #expect(refusal.code == 400, "\(bad)")
        }
        // The token comes back in the refusal when it could be read.
        guard case .failure(let refusal) = TwinMessages.request(Data(#"{"clientToken":"c","state":{"x":{}}}"#.utf8))
        else { return }
        #expect(refusal.clientToken == "c")
    }

    @Test("AWS responses use seconds, native ones milliseconds, metadata included")
    func clocks() {
        var document = TwinDocument(version: 4, timestamp: 1_700_000_123_456, exists: true)
        document.desired = ["a": .number(1)]
        document.desiredMetadata = ["a": JSONMergePatch.leafMetadata(1_700_000_123_456)]
        let aws = TwinMessages.delta(document, clock: .seconds, clientToken: "t")
        #expect(
            aws
                == parse(
                    #"{"state":{"a":1},"metadata":{"a":{"timestamp":1700000123}},"version":4,"timestamp":1700000123,"clientToken":"t"}"#
                )
        )
        let native = TwinMessages.delta(document, clock: .milliseconds, clientToken: nil)
        #expect(
            native
                == parse(
                    #"{"state":{"a":1},"metadata":{"a":{"timestamp":1700000123456}},"version":4,"timestamp":1700000123456}"#
                )
        )
    }

    @Test("shared-attribute pushes: changed members, and removed ones as deleted")
    func sharedAttributes() {
        let changes = TwinMessages.sharedAttributeChanges(
            previous: ["a": .number(1), "b": .number(2), "c": .number(3)],
            current: ["a": .number(1), "b": .number(5), "d": .bool(true)]
        )
        #expect(changes.updated == parse(#"{"b":5,"d":true}"#))
        #expect(changes.deleted == parse(#"{"deleted":["c"]}"#))
    }

    @Test("attribute requests pick client (reported) and shared (desired) keys")
    func attributeRequests() {
        let document = TwinDocument(
            desired: ["s1": .number(1), "s2": .number(2)],
            reported: ["c1": .string("x")],
            exists: true
        )
        #expect(
            TwinMessages.attributeResponse(parse(#"{"sharedKeys":"s2,none"}"#), document: document)
                == parse(#"{"shared":{"s2":2}}"#)
        )
        #expect(
            TwinMessages.attributeResponse(parse(#"{"clientKeys":"c1"}"#), document: document)
                == parse(#"{"client":{"c1":"x"}}"#)
        )
        #expect(
            TwinMessages.attributeResponse(nil, document: document)
                == parse(#"{"client":{"c1":"x"},"shared":{"s1":1,"s2":2}}"#)
        )
    }

    @Test("a device's $aws/things/{id or name} is its own subtree; other things are not mapped")
    func awsRewrite() {
        let identity = DeviceIdentity(
            deviceID: "d1",
            tenantID: "t1",
            credentialID: "c1",
            credentialType: .token,
            deviceName: "pump-7"
        )
        let principal = AccessPrincipal.device(identity, clientIdentifier: "x", username: nil)
        guard let mapping = principal.topicMapping else {
            Issue.record("no topic mapping")
            return
        }
        #expect(mapping.toInternal("$aws/things/d1/shadow/update").topic == "$tenants/t1/devices/d1/$aws/shadow/update")
        #expect(
            mapping.toInternal("$aws/things/pump-7/shadow/name/cfg/get").topic
                == "$tenants/t1/devices/d1/$aws/shadow/name/cfg/get"
        )
        #expect(mapping.toInternal("$aws/things/d2/shadow/update").topic == "$aws/things/d2/shadow/update")
        #expect(
            RegistryAuthorizer.isWithin(
                mapping.toInternal("$aws/things/pump-7/shadow/#").topic,
                "$tenants/t1/devices/d1"
            )
        )
        // A name that is not one topic level is not mapped.
        let odd = DeviceIdentity(
            deviceID: "d1",
            tenantID: "t1",
            credentialID: "c1",
            credentialType: .token,
            deviceName: "a/b"
        )
        #expect(AccessPrincipal.awsRewrites(odd, inside: "$tenants/t1/devices/d1").count == 1)
    }
}

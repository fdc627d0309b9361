import Foundation
import MeridianCore

/// What both twin stores share: the JSON text of the state columns and the key's lock stripe.
enum TwinRows {
    /// The state column's text: `{"desired", "reported", "metadata"}`.
    static func stateText(_ document: TwinDocument) -> String {
        document.stateValue.jsonText
    }

    /// A document from its columns; a damaged state column reads as an empty state.
    static func document(state: String, version: Int64, timestamp: Int64, exists: Bool) -> TwinDocument {
        let value = JSONValue.parse(Data(state.utf8)) ?? .emptyObject
        return TwinDocument(stateValue: value, version: version, timestamp: timestamp, exists: exists)
    }

    static func patch(_ text: String?) -> JSONValue? {
        text.flatMap { JSONValue.parse(Data($0.utf8)) }
    }

    static func actorKind(_ raw: String) -> AuditActor.Kind {
        AuditActor.Kind(rawValue: raw) ?? .system
    }

    /// One of 64 advisory locks for the key (FNV-1a of its parts): writers of one twin
    /// serialize, writers of different twins mostly do not.
    static func lockStripe(_ key: TwinKey) -> Int64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in key.tenantID.utf8 + [0] + key.deviceID.utf8 + [0] + key.name.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return 0x5457_494E_0000_0000 + Int64(hash % 64)  // "TWIN" + stripe
    }
}

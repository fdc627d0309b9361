/// JSON merge patch (RFC 7386) on ``JSONValue``, with the per-leaf metadata that twins keep
/// (AWS IoT's shape: every leaf of the state has `{"timestamp": <ms>}` at the same path).
public enum JSONMergePatch {
    /// `patch` applied to `target`: members set to `null` are removed, objects merge
    /// recursively, anything else (arrays included) replaces the target's value whole. A patch
    /// that is not an object replaces the target.
    public static func apply(_ patch: JSONValue, to target: JSONValue) -> JSONValue {
        guard case .object(let members) = patch else { return patch }
        var result: [String: JSONValue]
        if case .object(let existing) = target { result = existing } else { result = [:] }
        for (key, value) in members {
            if value == .null {
                result.removeValue(forKey: key)
            } else {
                result[key] = apply(value, to: result[key] ?? .null)
            }
        }
        return .object(result)
    }

    /// Applies an object `patch` to `state`, updating `metadata` (the tree of
    /// `{"timestamp": ms}` leaves that mirrors `state`) for every leaf the patch sets; removed
    /// members lose their metadata too.
    public static func apply(
        _ patch: [String: JSONValue],
        to state: inout [String: JSONValue],
        metadata: inout [String: JSONValue],
        timestamp: Int64
    ) {
        for (key, value) in patch {
            if value == .null {
                state.removeValue(forKey: key)
                metadata.removeValue(forKey: key)
                continue
            }
            if case .object(let inner) = value {
                var innerState: [String: JSONValue]
                var innerMetadata: [String: JSONValue]
                if case .object(let existing) = state[key] {
                    innerState = existing
                    if case .object(let existingMetadata) = metadata[key], !isLeafMetadata(existingMetadata) {
                        innerMetadata = existingMetadata
                    } else {
                        innerMetadata = [:]
                    }
                } else {
                    innerState = [:]
                    innerMetadata = [:]
                }
                apply(inner, to: &innerState, metadata: &innerMetadata, timestamp: timestamp)
                state[key] = .object(innerState)
                metadata[key] = innerState.isEmpty && inner.isEmpty ? leafMetadata(timestamp) : .object(innerMetadata)
            } else {
                state[key] = value
                metadata[key] = leafMetadata(timestamp)
            }
        }
    }

    /// `{"timestamp": ms}`.
    public static func leafMetadata(_ timestamp: Int64) -> JSONValue {
        .object(["timestamp": .number(Double(timestamp))])
    }

    private static func isLeafMetadata(_ object: [String: JSONValue]) -> Bool {
        if object.count == 1, case .number = object["timestamp"] { return true }
        return false
    }

    /// How deeply objects and arrays nest in `value` (a scalar is 0, `{"a": 1}` is 1).
    public static func depth(of value: JSONValue) -> Int {
        switch value {
        case .object(let members): 1 + (members.values.map(depth(of:)).max() ?? 0)
        case .array(let items): 1 + (items.map(depth(of:)).max() ?? 0)
        default: 0
        }
    }

    /// The first path (dotted) at which `value` nests deeper than `limit`, or nil.
    public static func pathTooDeep(_ value: JSONValue, limit: Int, path: String) -> String? {
        guard limit >= 0 else { return path }
        switch value {
        case .object(let members):
            if limit == 0 { return path }
            for key in members.keys.sorted() {
                if let found = pathTooDeep(members[key] ?? .null, limit: limit - 1, path: path + "." + key) {
                    return found
                }
            }
            return nil
        case .array(let items):
            if limit == 0 { return path }
            for (index, item) in items.enumerated() {
                if let found = pathTooDeep(item, limit: limit - 1, path: path + "[\(index)]") { return found }
            }
            return nil
        default:
            return nil
        }
    }
}

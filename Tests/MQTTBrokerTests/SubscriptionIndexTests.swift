import MQTTCore
import NIOCore
import Testing

@testable import MQTTBroker

@Suite("Subscription index")
struct SubscriptionIndexTests {
    /// A deterministic generator so failures reproduce.
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static let words = ["a", "b", "c", "", "$SYS", "dev", "x"]

    static func randomTopic(_ rng: inout SplitMix) -> String {
        let topic = (0..<Int.random(in: 1...4, using: &rng)).map { _ in words.randomElement(using: &rng)! }.joined(separator: "/")
        return topic.isEmpty ? "a" : topic
    }

    static func randomFilter(_ rng: inout SplitMix) -> String {
        let count = Int.random(in: 1...4, using: &rng)
        var levels: [String] = []
        for i in 0..<count {
            let roll = Int.random(in: 0..<10, using: &rng)
            if roll < 2 { levels.append("+") } else if roll == 2 && i == count - 1 { levels.append("#") } else { levels.append(words.randomElement(using: &rng)!) }
        }
        let filter = levels.joined(separator: "/")
        return filter.isEmpty ? "a" : filter
    }

    /// The index must agree with the specification's matching rule on every random case.
    @Test func agreesWithBruteForceMatching() async throws {
        let broker = TestBroker()
        let core = broker.broker.core
        try await broker.loop.submit {
            var rng = SplitMix(state: 42)
            let loop = core.loops[0]
            var sessions: [Session] = []
            var filters: [(Int, String)] = []
            for i in 0..<60 {
                sessions.append(Session(clientIdentifier: "c\(i)", principal: MQTTPrincipal(clientIdentifier: "c\(i)"), loop: loop, broker: core))
            }
            for _ in 0..<400 {
                let client = Int.random(in: 0..<60, using: &rng)
                let filter = Self.randomFilter(&rng)
                filters.append((client, filter))
            }
            var index = SubscriptionIndex()
            for (client, filter) in filters {
                index.insert(try TopicFilter(filter), entry: SubscriberEntry(session: sessions[client], options: .init(), identifier: nil))
            }
            for _ in 0..<2000 {
                let topic = Self.randomTopic(&rng)
                let expected = Set(filters.filter { MQTTTopic.matches(filter: $0.1, name: topic) }.map { "c\($0.0)" })
                let actual = Set(index.match(topic).targets.map(\.session.clientIdentifier))
                #expect(actual == expected, "topic \(topic)")
            }
            // Removing every filter leaves nothing behind.
            for (client, filter) in filters { index.remove(try TopicFilter(filter), clientIdentifier: "c\(client)") }
            #expect(index.count == 0)
            #expect(index.match("a/b").isEmpty)
        }.get()
    }

    @Test func hundredThousandSubscriptions() async throws {
        let broker = TestBroker()
        let core = broker.broker.core
        try await broker.loop.submit {
            let loop = core.loops[0]
            var index = SubscriptionIndex()
            var sessions: [Session] = []
            for i in 0..<1000 {
                sessions.append(Session(clientIdentifier: "s\(i)", principal: MQTTPrincipal(clientIdentifier: "s\(i)"), loop: loop, broker: core))
            }
            for i in 0..<100_000 {
                let session = sessions[i % 1000]
                let filter = i % 10 == 0 ? "devices/\(i)/+" : "devices/\(i)/telemetry"
                index.insert(try TopicFilter(filter), entry: SubscriberEntry(session: session, options: .init(), identifier: nil))
            }
            index.insert(try TopicFilter("devices/#"), entry: SubscriberEntry(session: sessions[1], options: .init(), identifier: nil))
            #expect(index.count == 100_001)
            let hit = index.match("devices/12345/telemetry").targets.map(\.session.clientIdentifier)
            #expect(Set(hit) == ["s345", "s1"])
            let wildcard = index.match("devices/500/status").targets.map(\.session.clientIdentifier)
            #expect(Set(wildcard) == ["s500", "s1"])
        }.get()
    }
}

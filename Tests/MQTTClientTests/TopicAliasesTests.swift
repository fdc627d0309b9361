import MQTTCore
import NIOCore
import Testing

@testable import MQTTClient

@Suite("Topic aliases")
struct TopicAliasTests {
    @Test("outbound: a new topic gets the next alias until the maximum; known topics reuse theirs")
    func outbound() {
        var aliases = TopicAliases()
        aliases.reset(outboundMaximum: 2, inboundMaximum: 0)
        #expect(aliases.outboundAlias(for: "a")! == (1, true))
        aliases.commitOutbound(topic: "a", alias: 1)
        #expect(aliases.outboundAlias(for: "a")! == (1, false))
        #expect(aliases.outboundAlias(for: "b")! == (2, true))
        aliases.commitOutbound(topic: "b", alias: 2)
        #expect(aliases.outboundAlias(for: "c") == nil)
        aliases.reset(outboundMaximum: 0, inboundMaximum: 0)
        #expect(aliases.outboundAlias(for: "a") == nil)
    }

    @Test("inbound: an alias is learnt with its topic and resolves later; unknown or out-of-range aliases are invalid")
    func inbound() {
        var aliases = TopicAliases()
        aliases.reset(outboundMaximum: 0, inboundMaximum: 5)
        var first = PublishPacket(topic: "devices/1/telemetry", payload: ByteBuffer(), properties: [.topicAlias(3)])
        let firstResolved = aliases.resolveInbound(&first)
        #expect(firstResolved)
        var second = PublishPacket(topic: "", payload: ByteBuffer(), properties: [.topicAlias(3)])
        let secondResolved = aliases.resolveInbound(&second)
        #expect(secondResolved)
        #expect(second.topic == "devices/1/telemetry")
        var unknown = PublishPacket(topic: "", payload: ByteBuffer(), properties: [.topicAlias(4)])
        let unknownResolved = aliases.resolveInbound(&unknown)
        #expect(!unknownResolved)
        var tooLarge = PublishPacket(topic: "x", payload: ByteBuffer(), properties: [.topicAlias(6)])
        let tooLargeResolved = aliases.resolveInbound(&tooLarge)
        #expect(!tooLargeResolved)
    }
}

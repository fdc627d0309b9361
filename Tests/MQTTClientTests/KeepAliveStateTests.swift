import NIOCore
import Testing

@testable import MQTTClient

@Suite("Keep-alive state machine")
struct KeepAliveStateTests {
    private let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    @Test("no ping while packets go out; a ping after an idle interval")
    func pingsWhenIdle() {
        var keepAlive = KeepAlive(interval: .seconds(10), pingTimeout: .seconds(5), lastSent: start)
        #expect(keepAlive.firstCheck == start + .seconds(10))
        keepAlive.packetSent(at: start + .seconds(4))
        #expect(keepAlive.timerFired(at: start + .seconds(10)) == .check(at: start + .seconds(14)))
        #expect(keepAlive.timerFired(at: start + .seconds(14)) == .sendPing(thenCheckAt: start + .seconds(19)))
    }

    @Test("PINGRESP in time keeps the connection; a missing one times it out")
    func pingTimeout() {
        var keepAlive = KeepAlive(interval: .seconds(10), pingTimeout: .seconds(5), lastSent: start)
        #expect(keepAlive.timerFired(at: start + .seconds(10)) == .sendPing(thenCheckAt: start + .seconds(15)))
        // Other packets going out do not excuse a missing PINGRESP.
        keepAlive.packetSent(at: start + .seconds(12))
        #expect(keepAlive.timerFired(at: start + .seconds(13)) == .check(at: start + .seconds(15)))
        #expect(keepAlive.pingResponseReceived() == start + .seconds(22))
        #expect(keepAlive.timerFired(at: start + .seconds(22)) == .sendPing(thenCheckAt: start + .seconds(27)))
        #expect(keepAlive.timerFired(at: start + .seconds(27)) == .timedOut)
    }
}

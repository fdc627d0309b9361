import NIOCore
import Testing

@testable import MQTTClient

@Suite("Reconnect backoff")
struct ReconnectPolicyTests {
    @Test("delays grow exponentially, are capped, and jitter stays within its band")
    func delays() {
        let policy = MQTTClient.Configuration.ReconnectPolicy.exponentialBackoff(
            initialDelay: .milliseconds(100),
            maximumDelay: .seconds(2),
            multiplier: 2,
            jitter: 0.25
        )
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<100 {
            let first = policy.delay(forAttempt: 1, using: &generator)
            #expect(first >= .milliseconds(75) && first <= .milliseconds(125))
            let third = policy.delay(forAttempt: 3, using: &generator)
            #expect(third >= .milliseconds(300) && third <= .milliseconds(500))
            let late = policy.delay(forAttempt: 40, using: &generator)
            #expect(late >= .milliseconds(1500) && late <= .seconds(2))
        }
        let steady = MQTTClient.Configuration.ReconnectPolicy.exponentialBackoff(initialDelay: .seconds(1), jitter: 0)
        #expect(steady.delay(forAttempt: 1) == .seconds(1))
        #expect(steady.delay(forAttempt: 2) == .seconds(2))
        #expect(MQTTClient.Configuration.ReconnectPolicy.disabled.isEnabled == false)
    }
}

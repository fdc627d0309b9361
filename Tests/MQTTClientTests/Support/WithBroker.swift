/// Runs `body` with a fresh broker and stops the broker afterwards, also when `body` throws.
func withBroker<T>(
    _ options: BrokerOptions = BrokerOptions(),
    _ body: (any TestBrokerFixture) async throws -> T
) async throws -> T {
    let broker = try await TestBrokers.start(options)
    do {
        let result = try await body(broker)
        await broker.stop()
        return result
    } catch {
        await broker.stop()
        throw error
    }
}

/// Runs `body` with a fresh broker of `kind` and stops the broker afterwards, also when `body`
/// throws.
func withBroker<T>(
    _ kind: TestBrokerKind = .mosquitto,
    _ options: BrokerOptions = BrokerOptions(),
    _ body: (any TestBrokerFixture) async throws -> T
) async throws -> T {
    let broker = try await TestBrokers.start(kind, options)
    do {
        let result = try await body(broker)
        await broker.stop()
        return result
    } catch {
        await broker.stop()
        throw error
    }
}

// TEMPORARY: replaced by the configuration branch.
import Logging
import MQTTBroker

public struct MeridianConfiguration: Sendable {
    public struct Network: Sendable {
        public var bind = "0.0.0.0"
        public var mqttPort = 1883
        public var httpPort = 8080
        public var webSocketPath = "/mqtt"
        public init() {}
    }
    public var network = Network()
    public var dataDirectory = "./meridian-data"
    public var logLevel: Logger.Level = .info
    public var broker = BrokerConfiguration()
    public init() {}
}

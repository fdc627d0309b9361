import Metrics
import NIOConcurrencyHelpers
import Prometheus

/// The process-wide Prometheus registry behind swift-metrics.
///
/// swift-metrics can be bootstrapped once per process; the first server started bootstraps it
/// and later ones (tests start several) share the same registry.
public enum MeridianMetrics {
    private static let registryBox = NIOLockedValueBox<PrometheusCollectorRegistry?>(nil)

    /// Bootstraps swift-metrics with Prometheus (once) and returns the registry.
    @discardableResult
    public static func bootstrap() -> PrometheusCollectorRegistry {
        registryBox.withLockedValue { existing in
            if let existing { return existing }
            let registry = PrometheusCollectorRegistry()
            MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
            existing = registry
            return registry
        }
    }
}

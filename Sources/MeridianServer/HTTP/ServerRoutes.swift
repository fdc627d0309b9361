import Atomics
import Hummingbird
import MQTTBroker
import NIOCore
import Prometheus

/// Health, readiness and metrics endpoints.
enum ServerRoutes {
    static func add<Context: RequestContext>(to router: Router<Context>, readiness: ManagedAtomic<Bool>, registry: PrometheusCollectorRegistry, mqttPath: String) {
        router.get("/healthz") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: "ok\n")))
        }
        router.get("/readyz") { _, _ in
            let ready = readiness.load(ordering: .relaxed)
            return Response(
                status: ready ? .ok : .serviceUnavailable,
                headers: [.contentType: "text/plain; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: ready ? "ready\n" : "not ready\n"))
            )
        }
        router.get("/metrics") { _, _ in
            var bytes: [UInt8] = []
            bytes.reserveCapacity(16_384)
            registry.emit(into: &bytes)
            return Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: bytes))
            )
        }
        router.get(RouterPath(mqttPath)) { _, _ -> Response in
            Response(
                status: .badRequest,
                headers: [.contentType: "text/plain; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: "MQTT over WebSocket: upgrade with Sec-WebSocket-Protocol: mqtt\n"))
            )
        }
    }
}

"""Meridian's HTTP endpoints on the http port: /healthz, /readyz, /metrics, refused WebSocket upgrades."""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.error
import urllib.request

import pytest

import contract
from mqttclient import V5, V311

pytestmark = pytest.mark.meridian_only(reason="Meridian's HTTP endpoints and metrics")

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def http_get(broker, path: str) -> tuple[int, str, str]:
    url = f"http://{broker.host}:{broker.http_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=contract.TIMEOUT) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode(errors="replace")


def metrics(broker) -> dict[str, float]:
    """Prometheus text -> {sample name: value summed over label sets}."""
    status, _, body = http_get(broker, contract.METRICS_PATH)
    assert status == 200, f"GET {contract.METRICS_PATH} -> {status}: {body[:500]}"
    out: dict[str, float] = {}
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
    return out


def wait_metric(broker, name: str, at_least: float) -> dict[str, float]:
    deadline = time.monotonic() + contract.TIMEOUT
    while True:
        now = metrics(broker)
        if now.get(name, float("-inf")) >= at_least or time.monotonic() > deadline:
            return now
        time.sleep(0.05)


@pytest.mark.parametrize("path", [contract.HEALTH_PATH, contract.READY_PATH])
def test_health_and_readiness(broker, path):
    status, _, body = http_get(broker, path)
    assert status == 200, f"GET {path} -> {status}: {body[:300]}"


def test_metrics_format_and_names(broker):
    status, ctype, body = http_get(broker, contract.METRICS_PATH)
    assert status == 200
    assert ctype.startswith("text/plain"), f"Content-Type {ctype!r}"
    names = metrics(broker)
    missing = [n for n in contract.REQUIRED_METRICS if n not in names]
    mqtt_names = sorted(n for n in names if n.startswith("mqtt_"))
    assert not missing, f"metrics missing: {missing}; mqtt_ metrics present: {mqtt_names}"


def test_metrics_move_with_traffic(broker, client_factory, topic):
    before = metrics(broker)
    c = client_factory(V5)
    c.subscribe(topic, 1)
    other = client_factory(V311, "ws")
    n = 5
    for i in range(n):
        other.publish(topic, f"{i}", 1)
    c.expect(n)
    after = wait_metric(broker, contract.METRIC_MESSAGES_SENT,
                        before.get(contract.METRIC_MESSAGES_SENT, 0) + n)
    for name in (contract.METRIC_MESSAGES_RECEIVED, contract.METRIC_MESSAGES_SENT):
        assert after.get(name, 0) >= before.get(name, 0) + n, (
            f"{name}: {before.get(name)} -> {after.get(name)} after {n} messages each way")
    assert after.get(contract.METRIC_CONNECTIONS, 0) >= 2, (
        f"{contract.METRIC_CONNECTIONS} = {after.get(contract.METRIC_CONNECTIONS)} with two "
        f"clients connected")


@pytest.mark.parametrize("path, offered", [
    ("/mqtt", None), ("/mqtt", "chat"), ("/other", "mqtt"),
], ids=["mqtt-no-subprotocol", "mqtt-chat", "other-path"])
def test_refused_websocket_upgrade_is_answered(broker, path, offered):
    """A WebSocket upgrade Meridian declines gets a 400 saying why, not a dropped connection."""
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    if offered:
        headers["Sec-WebSocket-Protocol"] = offered
    conn = http.client.HTTPConnection(broker.host, broker.http_port, timeout=contract.TIMEOUT)
    try:
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        body = r.read().decode()
        assert r.status == 400, f"upgrade of {path} offering {offered}: {r.status} {body[:300]}"
        assert r.getheader("Content-Type") == "application/problem+json"
        problem = json.loads(body)
        assert problem["status"] == 400
        assert problem["detail"], problem
    finally:
        conn.close()
    status, _, _ = http_get(broker, contract.HEALTH_PATH)
    assert status == 200


@pytest.mark.parametrize("request_bytes", [
    b"GET /healthz?x=" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # request line over NIO's 80 KiB
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 100_000 + b"\r\n\r\n",  # a header over it
    b"NOT HTTP AT ALL\r\n\r\n",
])
def test_unparseable_first_request_gets_400_not_silence(broker, request_bytes):
    """A connection's first request that cannot be parsed is answered 400 and closed (it used to
    leave the client waiting: the upgrade handler never saw a complete head)."""
    import socket  # noqa: PLC0415

    with socket.create_connection((broker.host, broker.http_port), timeout=contract.TIMEOUT) as s:
        try:
            s.sendall(request_bytes)
        except OSError:
            pass  # the server may answer and close before reading all of it
        answer = b""
        while not answer.endswith(b"\r\n\r\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"application/problem+json" in answer.lower() or b"application/problem+json" in answer, answer[:300]
    # The server is still fine.
    assert http_get(broker, contract.HEALTH_PATH)[0] == 200

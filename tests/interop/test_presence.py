"""Presence (issue 6): paho-mqtt devices connect and disconnect; the REST API says whether each
is online, from where and with which protocol, and keeps the history of connects and
disconnects with their reason (clean, keepalive timeout, takeover, revoked, error).
"""

from __future__ import annotations

import time
import uuid

import pytest

import contract
import mqttpackets as mp
from mqttclient import V5, V311, TestClient

pytestmark = pytest.mark.meridian_only(reason="Meridian's presence and REST API")


def eventually(check, timeout: float = contract.TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def new_device(platform) -> tuple[str, str]:
    device = platform.device()
    return device["id"], platform.token(device["id"])


def presence(platform, device_id) -> dict:
    return platform.ok("GET", f"/api/v1/devices/{device_id}/presence")


def events(platform, device_id, **params) -> list[dict]:
    return platform.ok("GET", f"/api/v1/devices/{device_id}/presence/events", params=params)["items"]


def paho_device(platform, token: str, proto=V5, transport="tcp", client_id=None) -> TestClient:
    c = TestClient(platform.broker, proto, transport, client_id)
    c.paho.username_pw_set(token, None)
    return c


@pytest.mark.parametrize("proto,transport,protocol_name", [
    (V5, "tcp", "mqtt-5.0"), (V311, "tcp", "mqtt-3.1.1"), (V5, "ws", "mqtt-5.0"),
], ids=["mqtt5-tcp", "mqtt311-tcp", "mqtt5-ws"])
def test_connect_online_then_clean_disconnect(platform, proto, transport, protocol_name):
    device_id, token = new_device(platform)
    before = presence(platform, device_id)
    assert before["online"] is False and before["lastSeen"] is None
    client = paho_device(platform, token, proto, transport)
    try:
        client.connect()
        local_port = client.paho.socket().getsockname()[1] if transport == "tcp" else None
        now = presence(platform, device_id)
        assert now["online"] is True, now
        assert now["protocol"] == protocol_name
        assert now["transport"] == transport
        assert now["address"].startswith("127.0.0.1:"), now
        if local_port is not None:
            assert now["address"] == f"127.0.0.1:{local_port}"
        assert abs(now["lastSeen"] - time.time() * 1000) < 5000
        assert now["since"] <= now["lastSeen"]
        client.disconnect()
    finally:
        client.close()
    after = eventually(lambda: _offline(platform, device_id))
    assert after["lastDisconnectReason"] == "clean"
    history = events(platform, device_id)
    assert [e["event"] for e in history] == ["disconnected", "connected"]
    assert history[0]["reason"] == "clean" and history[0]["online"] is False
    assert history[1]["protocol"] == protocol_name and history[1]["online"] is True
    assert history[0]["connection"] == history[1]["connection"]
    # The registry's last-seen time follows presence (written at most a second later).
    def seen():
        device = platform.ok("GET", f"/api/v1/devices/{device_id}")
        assert device["lastSeenAt"] is not None
        return device
    eventually(seen)


def _offline(platform, device_id) -> dict:
    state = presence(platform, device_id)
    assert state["online"] is False, state
    return state


def test_keepalive_timeout_detected_within_one_and_a_half_keepalives(platform):
    device_id, token = new_device(platform)
    keepalive = 2
    client, _, rc, _ = mp.raw_connect(platform.broker.host, platform.broker.mqtt_port,
                                      "ka-" + uuid.uuid4().hex[:8], version=V311,
                                      keepalive=keepalive, username=token)
    assert rc == 0
    connected_at = time.monotonic()
    try:
        assert presence(platform, device_id)["online"] is True
        # Silent from now on: no PINGREQ.
        state = eventually(lambda: _offline(platform, device_id), timeout=keepalive * 1.5 + 5)
        detected = time.monotonic() - connected_at
        # 1.5 × keep-alive, plus the broker's 250 ms sweep, plus slack for this busy machine.
        assert detected <= keepalive * 1.5 + 1.5, f"offline after {detected:.2f}s"
        assert state["lastDisconnectReason"] == "keepalive-timeout"
        assert events(platform, device_id, limit=1)[0]["reason"] == "keepalive-timeout"
    finally:
        client.close()


def test_takeover_keeps_the_device_online(platform):
    device_id, token = new_device(platform)
    client_id = "same-" + uuid.uuid4().hex[:8]
    first = paho_device(platform, token, V5, client_id=client_id)
    second = paho_device(platform, token, V311, client_id=client_id)
    try:
        first.connect()
        second.connect()
        first.wait_disconnected()
        def taken_over():
            history = events(platform, device_id)
            assert any(e.get("reason") == "takeover" for e in history), history
            return history
        history = eventually(taken_over)
        takeover = next(e for e in history if e.get("reason") == "takeover")
        assert takeover["protocol"] == "mqtt-5.0"
        state = presence(platform, device_id)
        assert state["online"] is True and state["protocol"] == "mqtt-3.1.1"
        assert state["connections"] == 1
    finally:
        first.close()
        second.close()


def test_two_connections_online_while_either_is_open(platform):
    device_id, token = new_device(platform)
    a = paho_device(platform, token)
    b = paho_device(platform, token)
    try:
        a.connect()
        b.connect()
        assert presence(platform, device_id)["connections"] == 2
        a.disconnect()
        state = eventually(lambda: _connections(platform, device_id, 1))
        assert state["online"] is True
        b.disconnect()
        eventually(lambda: _offline(platform, device_id))
    finally:
        a.close()
        b.close()


def _connections(platform, device_id, count) -> dict:
    state = presence(platform, device_id)
    assert state["connections"] == count, state
    return state


def test_revoked_credential_is_reported_as_revoked(platform):
    device = platform.device()
    credential = platform.ok("POST", f"/api/v1/devices/{device['id']}/credentials",
                             json={"type": "token"}, status=201)
    client = paho_device(platform, credential["token"])
    try:
        client.connect()
        assert presence(platform, device["id"])["online"] is True
        platform.ok("DELETE", f"/api/v1/devices/{device['id']}/credentials/{credential['id']}", status=204)
        client.wait_disconnected()
        state = eventually(lambda: _offline(platform, device["id"]))
        assert state["lastDisconnectReason"] == "revoked"
    finally:
        client.close()


def test_broken_connection_is_an_error(platform):
    device_id, token = new_device(platform)
    client, _, rc, _ = mp.raw_connect(platform.broker.host, platform.broker.mqtt_port,
                                      "cut-" + uuid.uuid4().hex[:8], version=V311, username=token)
    assert rc == 0
    client.close()  # no DISCONNECT
    state = eventually(lambda: _offline(platform, device_id))
    assert state["lastDisconnectReason"] == "error"


def test_presence_of_unknown_device_is_404(platform):
    r = platform.api("GET", "/api/v1/devices/no-such-device/presence")
    assert r.status_code == 404
    assert r.headers["Content-Type"] == "application/problem+json"

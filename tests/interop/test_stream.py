"""The live stream (issue 5): WebSocket GET /api/v1/stream with a real WebSocket client
(websocket-client). Subscribers receive what devices send over HTTP and MQTT, filtered by key,
only ever of their own tenant; bad tokens are refused; unsubscribe stops messages; a client that
stops reading neither slows ingestion nor the other subscribers.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid

import pytest
import websocket  # websocket-client

import contract
import mqttpackets as mp
from mqttclient import V5
from platform_api import ADMIN_KEY

pytestmark = pytest.mark.meridian_only(reason="Meridian's live stream")

STREAM = "/api/v1/stream"
T0 = 1_700_000_000_000
CLOSE_UNAUTHENTICATED = 4401


def ws_url(platform, query: str = "") -> str:
    return f"ws://{platform.broker.host}:{platform.broker.http_port}{STREAM}{query}"


class Stream:
    """A stream connection that parses JSON messages; next(match) skips the ones that do not match."""

    def __init__(self, platform, key: str | None = ADMIN_KEY, query: str = "", **kwargs):
        header = [f"Authorization: Bearer {key}"] if key else []
        self.ws = websocket.create_connection(ws_url(platform, query), header=header,
                                              timeout=contract.TIMEOUT, **kwargs)
        self.seen: list[dict] = []

    def send(self, message: dict) -> None:
        self.ws.send(json.dumps(message))

    def next(self, match=lambda m: True, timeout: float = contract.TIMEOUT) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            opcode, data = self.ws.recv_data()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                raise AssertionError(f"closed: {close_code(data)} while waiting")
            message = json.loads(data)
            self.seen.append(message)
            if match(message):
                return message
        raise AssertionError(f"no matching message within {timeout} s; seen {self.seen[-5:]}")

    def subscribe(self, sub_id: str, devices, keys=None) -> dict:
        message = {"type": "subscribe", "id": sub_id, "topic": "telemetry", "devices": devices}
        if keys is not None:
            message["keys"] = keys
        self.send(message)
        return self.next(lambda m: m.get("id") == sub_id and m["type"] in ("subscribed", "error"))

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001 - cleanup
            pass


def close_code(data: bytes) -> int:
    return int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005


def telemetry(sub_id: str, device: str | None = None):
    return lambda m: m["type"] == "telemetry" and m["subscription"] == sub_id and \
        (device is None or m["device"] == device)


def new_device(platform, key: str = ADMIN_KEY) -> tuple[str, str]:
    device = platform.ok("POST", "/api/v1/devices", json={"name": f"dev-{uuid.uuid4().hex[:10]}"},
                         key=key, status=201)
    return device["id"], platform.token(device["id"], key=key)


def post(platform, device_id: str, token: str, body) -> None:
    r = platform.api("POST", f"/api/v1/devices/{device_id}/telemetry", key=token,
                     data=json.dumps(body), headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text


def second_tenant_owner(platform) -> str:
    """An owner access token of a new tenant."""
    name = f"owner-{uuid.uuid4().hex[:8]}"
    platform.ok("POST", "/api/v1/users", json={"username": name, "password": "correct horse battery",
                                               "role": "viewer"}, status=201)
    login = platform.ok("POST", "/api/v1/auth/login", key=None,
                        json={"username": name, "password": "correct horse battery"})
    tenant = platform.ok("POST", "/api/v1/tenants", key=login["accessToken"],
                         json={"name": f"tenant-{uuid.uuid4().hex[:8]}"}, status=201)
    owner = platform.ok("POST", "/api/v1/auth/login", key=None,
                        json={"username": name, "password": "correct horse battery", "tenant": tenant["id"]})
    return owner["accessToken"]


def test_http_and_mqtt_samples_reach_subscribers_with_key_filter(platform):
    device_id, token = new_device(platform)
    stream = Stream(platform, subprotocols=["meridian.v1"])
    try:
        assert stream.ws.getsubprotocol() == "meridian.v1"
        hello = stream.next()
        assert hello["type"] == "authenticated" and hello["role"] == "owner"
        assert stream.subscribe("all", [device_id])["type"] == "subscribed"
        assert stream.subscribe("temp", [device_id], keys=["temp"])["type"] == "subscribed"

        post(platform, device_id, token, {"ts": T0, "values": {"temp": 21.5, "mode": "eco"}})
        got = stream.next(telemetry("all"))
        assert got["device"] == device_id
        assert got["samples"] == {"temp": [{"ts": T0, "value": 21.5}], "mode": [{"ts": T0, "value": "eco"}]}
        assert stream.next(telemetry("temp"))["samples"] == {"temp": [{"ts": T0, "value": 21.5}]}

        # Over MQTT (MQTT 5, QoS 1: acknowledged once durable).
        client, _, rc, _ = mp.raw_connect(platform.broker.host, platform.broker.mqtt_port,
                                          "st-" + uuid.uuid4().hex[:8], version=V5, username=token)
        assert rc == 0
        try:
            client.send(mp.publish(f"devices/{device_id}/telemetry",
                                   json.dumps({"ts": T0 + 1000, "values": {"temp": 22, "on": True}}).encode(),
                                   qos=1, packet_id=1, version=V5))
            client.expect(mp.PUBACK)
        finally:
            client.sock.close()
        got = stream.next(telemetry("all"))
        assert got["samples"] == {"temp": [{"ts": T0 + 1000, "value": 22}], "on": [{"ts": T0 + 1000, "value": True}]}
        assert stream.next(telemetry("temp"))["samples"] == {"temp": [{"ts": T0 + 1000, "value": 22}]}
    finally:
        stream.close()


def test_wildcard_and_tenant_isolation(platform):
    owner = second_tenant_owner(platform)
    foreign_id, foreign_token = new_device(platform, key=owner)
    viewer = platform.api_key("viewer")
    mine = Stream(platform, key=viewer)
    theirs = Stream(platform, key=owner)
    try:
        assert mine.subscribe("fleet", "*")["type"] == "subscribed"
        assert theirs.subscribe("fleet", "*")["type"] == "subscribed"
        refused = mine.subscribe("spy", [foreign_id, "no-such-device"])
        assert refused["type"] == "error" and refused["code"] == "unknown-devices"
        assert refused["field"] == "devices"
        assert sorted(refused["devices"]) == sorted([foreign_id, "no-such-device"])

        post(platform, foreign_id, foreign_token, {"secret": 1})
        assert theirs.next(telemetry("fleet"))["device"] == foreign_id
        # A device created after the subscription is followed too.
        later_id, later_token = new_device(platform)
        post(platform, later_id, later_token, {"temp": 1})
        assert mine.next(telemetry("fleet"))["device"] == later_id
        assert all(m.get("device") != foreign_id for m in mine.seen)
    finally:
        mine.close()
        theirs.close()


def test_bad_tokens_are_refused(platform):
    device_id, device_token = new_device(platform)
    for header in (["Authorization: Bearer mk_nope_0123456789"], [f"Authorization: Bearer {device_token}"]):
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(ws_url(platform), header=header, timeout=contract.TIMEOUT)
        assert refused.value.status_code == 401
        problem = json.loads(refused.value.resp_body)
        assert problem["type"] == "urn:meridian:problem:unauthenticated"
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(ws_url(platform, "?token=nope"), timeout=contract.TIMEOUT)
    assert refused.value.status_code == 401

    # A token in the query, as browsers send it.
    via_query = Stream(platform, key=None, query=f"?token={ADMIN_KEY}")
    assert via_query.next()["type"] == "authenticated"
    via_query.close()

    # First-message authentication: a bad token closes with 4401.
    ws = websocket.create_connection(ws_url(platform), timeout=contract.TIMEOUT)
    ws.send(json.dumps({"type": "auth", "token": "mk_wrong_0123456789"}))
    opcode, data = ws.recv_data(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE and close_code(data) == CLOSE_UNAUTHENTICATED
    ws.close()
    # ... and a good one works.
    ws = websocket.create_connection(ws_url(platform), timeout=contract.TIMEOUT)
    ws.send(json.dumps({"type": "auth", "token": ADMIN_KEY}))
    assert json.loads(ws.recv())["type"] == "authenticated"
    ws.close()


def test_unsubscribe_stops_messages(platform):
    first_id, first_token = new_device(platform)
    second_id, second_token = new_device(platform)
    stream = Stream(platform)
    try:
        stream.subscribe("one", [first_id])
        post(platform, first_id, first_token, {"n": 1})
        assert stream.next(telemetry("one"))["samples"]["n"][0]["value"] == 1
        stream.send({"type": "unsubscribe", "id": "one"})
        assert stream.next(lambda m: m["type"] == "unsubscribed")["id"] == "one"
        stream.subscribe("two", [second_id])
        post(platform, first_id, first_token, {"n": 2})
        post(platform, second_id, second_token, {"n": 3})
        assert stream.next(telemetry("two"))["samples"]["n"][0]["value"] == 3
        # The post to the first device was stored (and delivered) before the second's.
        assert sum(1 for m in stream.seen if m["type"] == "telemetry" and m["subscription"] == "one") == 1
        # Errors name the field; ping gets pong.
        stream.send({"type": "subscribe", "id": "x", "topic": "telemetry"})
        error = stream.next(lambda m: m["type"] == "error")
        assert error["field"] == "devices" and error["id"] == "x"
        stream.ws.send("{not json")
        assert stream.next(lambda m: m["type"] == "error")["code"] == "invalid-json"
        stream.send({"type": "ping", "id": "p"})
        assert stream.next(lambda m: m["type"] == "pong")["id"] == "p"
    finally:
        stream.close()


def test_a_client_that_never_reads_does_not_stop_ingestion(platform):
    device_id, token = new_device(platform)
    stalled = Stream(platform, sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),))
    reader = Stream(platform)
    try:
        assert stalled.subscribe("all", "*")["type"] == "subscribed"
        # The reader asks for one key only, so that its Python thread keeps up with the server;
        # the stalled client is sent every key.
        assert reader.subscribe("all", [device_id], keys=["n"])["type"] == "subscribed"
        # From here on `stalled` reads nothing, while `reader` reads in a thread of its own.
        # 30 posts of 10,000 samples: ~13 MB of stream messages per subscriber, far beyond the
        # stalled socket's buffers and its queue.
        count = 30
        received: list[dict] = []
        failure: list[BaseException] = []

        def read_all():
            try:
                for _ in range(count):
                    received.append(reader.next(telemetry("all"), timeout=60))
            except BaseException as e:  # noqa: BLE001 - reported by the test thread
                failure.append(e)

        thread = threading.Thread(target=read_all, daemon=True)
        thread.start()
        keys = {f"k{i}": i for i in range(9_999)}
        started = time.monotonic()
        for n in range(count):
            post(platform, device_id, token, {"ts": T0 + n, "values": {"n": n, **keys}})
        thread.join(timeout=90)
        assert not thread.is_alive() and not failure, failure
        assert time.monotonic() - started < 90
        assert [m["samples"] for m in received] == [{"n": [{"ts": T0 + n, "value": n}]} for n in range(count)]
        r = platform.api("GET", f"/api/v1/devices/{device_id}/telemetry",
                         params={"keys": "n", "from": T0, "to": T0 + 1000})
        assert len(r.json()["n"]) == count

        # Reading again, the stalled client is told how many messages it lost, then gets the newest.
        dropped = stalled.next(lambda m: m["type"] == "dropped", timeout=60)
        assert dropped["count"] > 0
        last = stalled.next(lambda m: m["type"] == "telemetry" and m["samples"]["n"][0]["value"] == count - 1,
                            timeout=60)
        assert len(last["samples"]) == 10_000
        received = [m["samples"]["n"][0]["value"] for m in stalled.seen if m["type"] == "telemetry"]
        lost = sum(m["count"] for m in stalled.seen if m["type"] == "dropped")
        assert len(received) + lost == count
        assert received == sorted(received)
    finally:
        stalled.close()
        reader.close()


def test_revoked_api_key_closes_the_stream(platform):
    created = platform.ok("POST", "/api/v1/api-keys",
                          json={"name": f"v-{uuid.uuid4().hex[:6]}", "role": "viewer"}, status=201)
    stream = Stream(platform, key=created["key"])
    try:
        assert stream.next()["type"] == "authenticated"
        platform.ok("DELETE", f"/api/v1/api-keys/{created['id']}", status=204)
        stream.ws.settimeout(contract.TIMEOUT)
        opcode, data = stream.ws.recv_data(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE and close_code(data) == CLOSE_UNAUTHENTICATED
        assert b"revoked" in data[2:]
    finally:
        stream.close()


def test_silent_clients_are_pinged_and_gone_ones_closed(broker_factory):
    """With api.stream_ping_interval = 1 s: a client that reads (and so answers pings, as
    websocket-client does) stays connected; one that stops reading is closed within about 2.5 s."""
    import platform_api  # noqa: PLC0415

    b = broker_factory(settings={"api.stream_ping_interval": "1"}, env={platform_api.BOOTSTRAP_ENV: ADMIN_KEY})
    platform = platform_api.Platform(b)
    live = Stream(platform)
    gone = Stream(platform)
    try:
        # The live client sees pings and answers them (websocket-client pongs on receipt).
        pings = 0
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            live.ws.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                opcode, _ = live.ws.recv_data(control_frame=True)
            except websocket.WebSocketTimeoutException:
                break
            assert opcode != websocket.ABNF.OPCODE_CLOSE, "a client answering pings was closed"
            if opcode == websocket.ABNF.OPCODE_PING:
                pings += 1
        assert pings >= 2, f"expected pings every second or so, got {pings}"
        live.send({"type": "ping", "id": "still-there"})
        assert live.next(lambda m: m.get("id") == "still-there")["type"] == "pong"

        # The silent one (it read nothing for 4 s) has been closed by the server.
        closed = False
        gone.ws.settimeout(contract.TIMEOUT)
        deadline = time.monotonic() + contract.TIMEOUT
        while time.monotonic() < deadline and not closed:
            try:
                opcode, _ = gone.ws.recv_data(control_frame=True)
                closed = opcode == websocket.ABNF.OPCODE_CLOSE
            except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
                closed = True
        assert closed, "the server kept a client that never answered its pings"
    finally:
        live.close()
        gone.close()

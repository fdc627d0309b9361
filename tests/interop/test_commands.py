"""Commands (RPC) to devices (issue 6): an operator sends a command through the REST API and
the device, a paho-mqtt client, receives it by the convention it subscribed to — MQTT 5
request/response (response topic + correlation data), MQTT 3.1.1 request/response topics, or
ThingsBoard server-side RPC — and answers; persistent commands wait for an offline device and
survive a restart; expiry, timeouts, rate limits, roles, and a device answering another
device's request id (refused with PUBACK 0x87, nothing recorded).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

import contract
import platform_api
from mqttclient import V5, V311, TestClient

pytestmark = pytest.mark.meridian_only(reason="Meridian's command service and REST API")

NOT_AUTHORIZED = 0x87
IMPLEMENTATION_SPECIFIC = 0x83
_pool = ThreadPoolExecutor(max_workers=8)


@pytest.fixture
def clients():
    made: list[TestClient] = []
    yield made
    for c in made:
        c.close()


class Device:
    """A device of the platform with its token, and a paho client acting as it."""

    def __init__(self, platform, clients, proto: int = V5, device: dict | None = None, token: str | None = None):
        self.platform = platform
        self.info = device or platform.device()
        self.id = self.info["id"]
        self.token = token or platform.token(self.id)
        self.proto = proto
        self.clients = clients
        self.client: TestClient | None = None
        self.acks: dict[int, int] = {}
        self._acked = threading.Condition()

    def connect(self, subscribe: str | None = None, proto: int | None = None, client_id: str | None = None,
                clean: bool = True) -> TestClient:
        c = TestClient(self.platform.broker, proto or self.proto, client_id=client_id, clean_session=clean)
        self.clients.append(c)
        c.paho.username_pw_set(self.token)
        recorded = c.paho.on_publish

        def on_publish(client, userdata, mid, reason_code, properties):
            with self._acked:
                self.acks[mid] = reason_code.value if hasattr(reason_code, "value") else int(reason_code)
                self._acked.notify_all()
            if recorded:
                recorded(client, userdata, mid, reason_code, properties)

        c.paho.on_publish = on_publish
        c.connect()
        if subscribe:
            c.subscribe(subscribe, qos=1)
        self.client = c
        return c

    def answer(self, topic: str, body, **props) -> int:
        """Publishes an answer at QoS 1; returns the PUBACK reason code (0 for MQTT 3.1.1)."""
        assert self.client is not None
        payload = body if isinstance(body, (bytes, str)) else json.dumps(body)
        info = self.client.publish(topic, payload, qos=1, **props)
        deadline = time.monotonic() + contract.TIMEOUT
        with self._acked:
            while info.mid not in self.acks and time.monotonic() < deadline:
                self._acked.wait(0.1)
            return self.acks.get(info.mid, 0)

    def disconnect(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client = None


def post_command(platform, device_id: str, body: dict, key: str = platform_api.ADMIN_KEY):
    return platform.api("POST", f"/api/v1/devices/{device_id}/commands", json=body, key=key)


def post_later(platform, device_id: str, body: dict) -> Future:
    """POST in the background (a two-way command waits for the device)."""
    return _pool.submit(post_command, platform, device_id, body)


def get_command(platform, device_id: str, command_id: str) -> dict:
    return platform.ok("GET", f"/api/v1/devices/{device_id}/commands/{command_id}")


def eventually(check, timeout: float = contract.TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# ---------------------------------------------------------------- the three conventions

def test_mqtt5_request_response(platform, clients):
    device = Device(platform, clients, V5)
    c = device.connect(subscribe=f"devices/{device.id}/commands/#")
    pending = post_later(platform, device.id, {"method": "setLevel", "params": {"level": 3}, "timeoutMs": 15000})
    request = c.expect_one(what="the command")
    assert request.topic == f"devices/{device.id}/commands/setLevel"
    assert json.loads(request.payload) == {"level": 3}
    response_topic = request.props["ResponseTopic"]
    correlation = request.props["CorrelationData"]
    assert response_topic.startswith(f"devices/{device.id}/commands/response/")
    assert device.answer(response_topic, {"level": 3, "ok": True}, CorrelationData=correlation) == 0
    response = pending.result(timeout=20)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "succeeded"
    assert body["response"] == {"level": 3, "ok": True}
    assert body["convention"] == "mqtt5"
    assert response_topic.endswith("/" + body["id"])
    stored = get_command(platform, device.id, body["id"])
    assert stored["status"] == "succeeded"
    assert {"queued", "sent", "succeeded"} <= set(stored["timestamps"])
    # The answer was consumed: nobody subscribed to the device's topics saw it as a message.
    assert [m for m in c.drain() if "/response/" in m.topic] == []


def test_mqtt311_request_response(platform, clients):
    device = Device(platform, clients, V311)
    c = device.connect(subscribe=f"devices/{device.id}/commands/request/+")
    pending = post_later(platform, device.id, {"method": "getConfig", "params": {"section": "net"}, "timeoutMs": 15000})
    request = c.expect_one(what="the command")
    prefix = f"devices/{device.id}/commands/request/"
    assert request.topic.startswith(prefix)
    request_id = request.topic[len(prefix):]
    assert json.loads(request.payload) == {"id": request_id, "method": "getConfig", "params": {"section": "net"}}
    device.answer(f"devices/{device.id}/commands/response/{request_id}", {"dhcp": True})
    body = pending.result(timeout=20).json()
    assert body == body | {"id": request_id, "status": "succeeded", "response": {"dhcp": True}, "convention": "mqtt3"}


def test_thingsboard_rpc_request_response(platform, clients):
    device = Device(platform, clients, V311)
    c = device.connect(subscribe="v1/devices/me/rpc/request/+")
    pending = post_later(platform, device.id, {"method": "setGpio", "params": {"pin": 4, "value": 1}, "timeoutMs": 15000})
    request = c.expect_one(what="the RPC request")
    prefix = "v1/devices/me/rpc/request/"
    assert request.topic.startswith(prefix)
    request_id = request.topic[len(prefix):]
    # ThingsBoard's SDKs parse the request id as an integer (tb-mqtt-client: int(topic[...])).
    assert request_id.isdigit() and 0 < int(request_id) < 2**31, request_id
    assert json.loads(request.payload) == {"method": "setGpio", "params": {"pin": 4, "value": 1}}
    device.answer(f"v1/devices/me/rpc/response/{int(request_id)}", {"pin": 4, "value": 1})
    body = pending.result(timeout=20).json()
    assert body["status"] == "succeeded"
    assert body["response"] == {"pin": 4, "value": 1}
    assert body["convention"] == "thingsboard"


def test_device_error_answer_fails_the_command(platform, clients):
    device = Device(platform, clients, V5)
    c = device.connect(subscribe=f"devices/{device.id}/commands/+")
    pending = post_later(platform, device.id, {"method": "open", "timeoutMs": 15000})
    request = c.expect_one()
    device.answer(request.props["ResponseTopic"], {"error": "valve stuck"}, CorrelationData=request.props["CorrelationData"])
    response = pending.result(timeout=20)
    assert response.status_code == 200
    assert response.json()["status"] == "failed"
    assert response.json()["error"] == "valve stuck"


def test_one_way_command_succeeds_when_delivered(platform, clients):
    device = Device(platform, clients, V5)
    c = device.connect(subscribe=f"devices/{device.id}/commands/#")
    response = post_command(platform, device.id, {"method": "blink", "params": {"times": 2}, "oneWay": True})
    assert response.status_code == 202, response.text
    assert response.headers["Location"].endswith("/" + response.json()["id"])
    request = c.expect_one()
    assert request.topic == f"devices/{device.id}/commands/blink"
    command_id = response.json()["id"]

    def delivered():
        stored = get_command(platform, device.id, command_id)
        assert stored["status"] == "succeeded", stored
        assert "delivered" in stored["timestamps"]

    eventually(delivered)


# ---------------------------------------------------------------- offline devices, expiry, timeouts

def test_persistent_command_to_offline_device_delivered_on_reconnect(platform, clients):
    device = Device(platform, clients, V5)
    c = device.connect(subscribe=f"devices/{device.id}/commands/#")
    device.disconnect()
    first = post_command(platform, device.id, {"method": "first", "persistent": True, "timeoutMs": 15000})
    second = post_command(platform, device.id, {"method": "second", "persistent": True, "timeoutMs": 15000})
    assert first.status_code == 202, first.text
    assert first.json()["status"] == "queued"
    assert get_command(platform, device.id, first.json()["id"])["status"] == "queued"
    c = device.connect(subscribe=f"devices/{device.id}/commands/#")
    requests_ = c.expect(2, what="the queued commands")
    assert [m.topic.rsplit("/", 1)[1] for m in requests_] == ["first", "second"]
    for m in requests_:
        device.answer(m.props["ResponseTopic"], {"done": m.topic.rsplit("/", 1)[1]}, CorrelationData=m.props["CorrelationData"])

    def finished():
        stored = get_command(platform, device.id, first.json()["id"])
        assert stored["status"] == "succeeded", stored
        assert stored["response"] == {"done": "first"}
        assert stored["timestamps"]["queued"] <= stored["timestamps"]["sent"]

    eventually(finished)
    listed = platform.ok("GET", f"/api/v1/devices/{device.id}/commands", params={"limit": 1})
    assert [item["id"] for item in listed["items"]] == [second.json()["id"]]
    assert listed["nextCursor"]
    older = platform.ok("GET", f"/api/v1/devices/{device.id}/commands", params={"limit": 1, "cursor": listed["nextCursor"]})
    assert [item["id"] for item in older["items"]] == [first.json()["id"]]


def test_persistent_command_survives_a_restart(broker_factory, clients):
    broker = broker_factory(env={platform_api.BOOTSTRAP_ENV: platform_api.ADMIN_KEY})
    platform = platform_api.Platform(broker)
    device = Device(platform, clients, V311)
    queued = post_command(platform, device.id, {"method": "update", "persistent": True, "oneWay": True})
    assert queued.status_code == 202 and queued.json()["status"] == "queued", queued.text
    broker.restart()
    c = device.connect(subscribe=f"devices/{device.id}/commands/request/+")
    request = c.expect_one(what="the command queued before the restart")
    assert json.loads(request.payload)["method"] == "update"
    eventually(lambda: _assert_status(platform, device.id, queued.json()["id"], "succeeded"))


def test_resumed_session_gets_queued_commands_without_subscribing_again(broker_factory, clients):
    """A 3.1.1 device with a persistent session subscribed before the server restarted; it
    reconnects, resumes the session (its subscription kept) and does not subscribe again."""
    broker = broker_factory(env={platform_api.BOOTSTRAP_ENV: platform_api.ADMIN_KEY})
    platform = platform_api.Platform(broker)
    device = Device(platform, clients, V311)
    client_id = "persistent-" + uuid.uuid4().hex[:8]
    device.connect(subscribe=f"devices/{device.id}/commands/request/+", client_id=client_id, clean=False)
    device.disconnect()
    broker.restart()
    queued = post_command(platform, device.id, {"method": "resume", "persistent": True, "timeoutMs": 15000})
    assert queued.status_code == 202 and queued.json()["status"] == "queued", queued.text
    c = device.connect(client_id=client_id, clean=False)
    assert c.connack["session_present"]
    request = c.expect_one(what="the queued command, by the resumed session's subscription")
    assert request.topic == f"devices/{device.id}/commands/request/{queued.json()['id']}"
    device.answer(f"devices/{device.id}/commands/response/{queued.json()['id']}", {"resumed": True})
    stored = eventually(lambda: _assert_status(platform, device.id, queued.json()["id"], "succeeded"))
    assert stored["convention"] == "mqtt3"


def _assert_status(platform, device_id, command_id, status):
    stored = get_command(platform, device_id, command_id)
    assert stored["status"] == status, stored
    return stored


def test_queued_command_expires(platform, clients):
    device = Device(platform, clients, V5)
    response = post_command(platform, device.id, {"method": "late", "persistent": True, "expiresInMs": 300})
    assert response.status_code == 202
    command_id = response.json()["id"]
    stored = eventually(lambda: _assert_status(platform, device.id, command_id, "expired"))
    assert "expired" in stored["timestamps"]
    c = device.connect(subscribe=f"devices/{device.id}/commands/#")
    c.expect_none(what="an expired command")


def test_unanswered_command_times_out_and_late_answer_is_refused(platform, clients):
    device = Device(platform, clients, V5)
    c = device.connect(subscribe=f"devices/{device.id}/commands/#")
    started = time.monotonic()
    response = post_command(platform, device.id, {"method": "slow", "timeoutMs": 500})
    assert response.status_code == 504, response.text
    assert response.json()["status"] == "timed_out"
    assert time.monotonic() - started >= 0.5
    request = c.expect_one()
    code = device.answer(request.props["ResponseTopic"], {"late": True}, CorrelationData=request.props["CorrelationData"])
    assert code == IMPLEMENTATION_SPECIFIC
    assert get_command(platform, device.id, response.json()["id"])["status"] == "timed_out"


def test_device_answering_another_devices_request_is_refused(platform, clients):
    target = Device(platform, clients, V5)
    intruder = Device(platform, clients, V5)
    c = target.connect(subscribe=f"devices/{target.id}/commands/#")
    intruder.connect()
    pending = post_later(platform, target.id, {"method": "unlock", "timeoutMs": 15000})
    request = c.expect_one()
    command_id = request.topic and request.props["ResponseTopic"].rsplit("/", 1)[1]
    # Through its own subtree with the other device's id: refused, not recorded.
    code = intruder.answer(f"devices/{intruder.id}/commands/response/{command_id}", {"forged": True},
                           CorrelationData=request.props["CorrelationData"])
    assert code == NOT_AUTHORIZED
    code = intruder.answer(f"v1/devices/me/rpc/response/{command_id}", {"forged": True})
    assert code == NOT_AUTHORIZED
    # An unknown id is refused alike (ids of other devices are not revealed).
    assert intruder.answer(f"devices/{intruder.id}/commands/response/{uuid.uuid4().hex}", {}) == NOT_AUTHORIZED
    assert get_command(platform, target.id, command_id)["status"] in ("sent", "delivered")
    target.answer(request.props["ResponseTopic"], {"genuine": True}, CorrelationData=request.props["CorrelationData"])
    body = pending.result(timeout=20).json()
    assert body["response"] == {"genuine": True}


def test_thingsboard_request_id_of_another_device_is_refused(platform, clients):
    target = Device(platform, clients, V311)
    intruder = Device(platform, clients, V5)
    c = target.connect(subscribe="v1/devices/me/rpc/request/+")
    intruder.connect()
    pending = post_later(platform, target.id, {"method": "unlock", "timeoutMs": 15000})
    request = c.expect_one(what="the RPC request")
    number = request.topic.rsplit("/", 1)[1]
    assert intruder.answer(f"v1/devices/me/rpc/response/{number}", {"forged": True}) == NOT_AUTHORIZED
    target.answer(f"v1/devices/me/rpc/response/{number}", {"genuine": True})
    body = pending.result(timeout=20).json()
    assert body["status"] == "succeeded" and body["response"] == {"genuine": True}


# ---------------------------------------------------------------- API contract

def test_non_persistent_command_to_offline_device_is_409(platform):
    device = platform.device()
    response = post_command(platform, device["id"], {"method": "reboot"})
    assert response.status_code == 409
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert response.json()["type"].endswith("device-offline")


def test_bad_requests_name_the_field(platform):
    device = platform.device()
    for body, field in [({"method": "a/b"}, "method"), ({"method": "x", "timeoutMs": 0}, "timeoutMs"),
                        ({"method": "x", "persistent": True, "expiresInMs": 10**12}, "expiresInMs"),
                        ({"params": {}}, "method"), ({"method": 5}, "method")]:
        response = post_command(platform, device["id"], body)
        assert response.status_code in (400, 422), (body, response.text)
        assert response.json()["field"] == field, (body, response.text)
    assert post_command(platform, "no-such-device", {"method": "x"}).status_code == 404


def test_roles_operators_send_viewers_read(platform):
    device = platform.device()
    viewer = platform.api_key("viewer")
    operator = platform.api_key("operator")
    assert post_command(platform, device["id"], {"method": "x", "persistent": True}, key=viewer).status_code == 403
    sent = post_command(platform, device["id"], {"method": "x", "persistent": True}, key=operator)
    assert sent.status_code == 202
    assert platform.ok("GET", f"/api/v1/devices/{device['id']}/commands/{sent.json()['id']}", key=viewer)["status"] == "queued"
    assert platform.ok("GET", f"/api/v1/devices/{device['id']}/commands", key=viewer)["items"][0]["id"] == sent.json()["id"]


def test_rate_limit_per_device_is_429_with_retry_after(broker_factory):
    broker = broker_factory({"commands.rate_per_device": "2"}, env={platform_api.BOOTSTRAP_ENV: platform_api.ADMIN_KEY})
    platform = platform_api.Platform(broker)
    device = platform.device()
    other = platform.device()
    for _ in range(2):
        assert post_command(platform, device["id"], {"method": "x", "persistent": True}).status_code == 202
    refused = post_command(platform, device["id"], {"method": "x", "persistent": True})
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["type"].endswith("rate-limited")
    assert post_command(platform, other["id"], {"method": "x", "persistent": True}).status_code == 202

"""Device twins (issue 6): paho-mqtt as an AWS IoT-style device on the shadow topics, as a
ThingsBoard device on the attribute topics, and on the native topics; operators over REST
(If-Match conflicts, ?at= history). Everything maps onto the same twin.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

import contract
from mqttclient import V5, V311, TestClient

pytestmark = pytest.mark.meridian_only(reason="Meridian's twin service")


def new_device(platform) -> tuple[str, str, str]:
    name = f"thing-{uuid.uuid4().hex[:8]}"
    device = platform.device(name)
    return device["id"], name, platform.token(device["id"])


def connect(platform, token: str, proto=V5) -> TestClient:
    client = TestClient(platform.broker, proto, client_id=f"it-twin-{uuid.uuid4().hex[:8]}")
    client.paho.username_pw_set(token)
    assert client.connect()["reason_code"] == 0
    return client


def payload(message) -> dict:
    return json.loads(message.payload)


def next_on(client: TestClient, topic: str, timeout: float = contract.TIMEOUT) -> dict:
    """The next message on `topic`; messages on other topics that arrive first are kept for
    later calls (pushes on different topics have no order between them)."""
    held = client.__dict__.setdefault("held", [])
    for index, message in enumerate(held):
        if message.topic == topic:
            return payload(held.pop(index))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            message = client.expect_one(timeout=max(0.05, deadline - time.monotonic()))
        except AssertionError:
            break
        if message.topic == topic:
            return payload(message)
        held.append(message)
    raise AssertionError(f"no message on {topic} within {timeout}s; held {[m.topic for m in held]}")


def twin(platform, device_id, **params):
    return platform.ok("GET", f"/api/v1/devices/{device_id}/twin", params=params or None)


def patch_desired(platform, device_id, desired, if_match=None, status=200):
    headers = {"If-Match": f'"{if_match}"'} if if_match is not None else None
    return platform.api("PATCH", f"/api/v1/devices/{device_id}/twin", json={"desired": desired}, headers=headers)


# ---------------------------------------------------------------- AWS IoT shadow

@pytest.mark.parametrize("proto", [V311, V5], ids=["mqtt311", "mqtt5"])
def test_aws_shadow_update_delta_documents_and_client_token(platform, proto):
    device_id, name, token = new_device(platform)
    device = connect(platform, token, proto)
    shadow = f"$aws/things/{name}/shadow"  # the device addresses its shadow by its name
    device.subscribe(f"{shadow}/#", qos=1)

    device.publish(f"{shadow}/update", json.dumps(
        {"state": {"reported": {"color": {"r": 255, "g": 255, "b": 0}}}, "clientToken": "t-1"}), qos=1)
    accepted = next_on(device, f"{shadow}/update/accepted")
    assert accepted["clientToken"] == "t-1"
    assert accepted["version"] == 1
    assert accepted["state"] == {"reported": {"color": {"r": 255, "g": 255, "b": 0}}}
    assert isinstance(accepted["metadata"]["reported"]["color"]["r"]["timestamp"], int)
    assert abs(accepted["timestamp"] - time.time()) < 120, "AWS timestamps are in seconds"
    documents = next_on(device, f"{shadow}/update/documents")
    assert documents["previous"]["version"] == 0 and documents["current"]["version"] == 1
    assert documents["current"]["state"]["reported"]["color"]["g"] == 255
    assert documents["clientToken"] == "t-1"

    # An operator sets desired state: the device gets the delta (nested objects compared
    # member by member, new members included) and the documents before and after.
    response = patch_desired(platform, device_id, {"color": {"r": 10}, "engine": "ON"})
    assert response.status_code == 200, response.text
    announced = next_on(device, f"{shadow}/update/accepted")
    assert announced["state"] == {"desired": {"color": {"r": 10}, "engine": "ON"}} and announced["version"] == 2
    delta = next_on(device, f"{shadow}/update/delta")
    assert delta["state"] == {"color": {"r": 10}, "engine": "ON"}
    assert delta["version"] == 2
    assert set(delta["metadata"]) == {"color", "engine"}
    documents = next_on(device, f"{shadow}/update/documents")
    assert documents["previous"]["state"]["desired"] == {}
    assert documents["current"]["state"]["desired"] == {"color": {"r": 10}, "engine": "ON"}
    assert documents["previous"]["version"] == 1 and documents["current"]["version"] == 2

    # get: state with desired, reported and delta.
    device.publish(f"{shadow}/get", json.dumps({"clientToken": "g-1"}), qos=1)
    got = next_on(device, f"{shadow}/get/accepted")
    assert got["clientToken"] == "g-1" and got["version"] == 2
    assert got["state"]["delta"] == {"color": {"r": 10}, "engine": "ON"}
    assert got["state"]["reported"]["color"]["b"] == 0

    # The device catches up: the delta is gone in the REST view too.
    device.publish(f"{shadow}/update", json.dumps({"state": {"reported": {"color": {"r": 10}, "engine": "ON"}}}), qos=1)
    assert next_on(device, f"{shadow}/update/accepted")["version"] == 3
    current = twin(platform, device_id)
    assert current["delta"] == {} and current["version"] == 3
    assert current["reported"] == {"color": {"r": 10, "g": 255, "b": 0}, "engine": "ON"}
    device.close()


def test_aws_shadow_version_conflict_and_bad_requests_are_rejected(platform):
    device_id, _, token = new_device(platform)
    device = connect(platform, token)
    shadow = f"$aws/things/{device_id}/shadow"  # ... or by its id
    device.subscribe(f"{shadow}/update/+", qos=1)
    device.publish(f"{shadow}/update", json.dumps({"state": {"reported": {"a": 1}}}), qos=1)
    assert next_on(device, f"{shadow}/update/accepted")["version"] == 1

    device.publish(f"{shadow}/update", json.dumps({"state": {"reported": {"a": 2}}, "version": 7, "clientToken": "c-9"}), qos=1)
    rejected = next_on(device, f"{shadow}/update/rejected")
    assert rejected["code"] == 409 and rejected["clientToken"] == "c-9"
    assert "version" in rejected["message"].lower()

    device.publish(f"{shadow}/update", json.dumps({"state": {"reported": {"a": 2}}, "version": 1}), qos=1)
    assert next_on(device, f"{shadow}/update/accepted")["version"] == 2

    for bad in [b"{not json", json.dumps({"state": [1]}).encode(), json.dumps({"state": {"bogus": {}}}).encode(),
                json.dumps({"clientToken": "x"}).encode(),
                json.dumps({"state": {"reported": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}}}).encode()]:
        device.publish(f"{shadow}/update", bad, qos=1)
        assert next_on(device, f"{shadow}/update/rejected")["code"] == 400, bad
    device.publish(f"{shadow}/update", json.dumps({"state": {"reported": {"big": "x" * 70_000}}}), qos=1)
    assert next_on(device, f"{shadow}/update/rejected")["code"] == 413
    assert twin(platform, device_id)["version"] == 2
    device.close()


def test_aws_shadow_delete_keeps_the_version_counter(platform):
    device_id, name, token = new_device(platform)
    device = connect(platform, token)
    shadow = f"$aws/things/{name}/shadow"
    device.subscribe(f"{shadow}/+/+", qos=1)
    for value in (1, 2, 3):
        device.publish(f"{shadow}/update", json.dumps({"state": {"reported": {"n": value}}}), qos=1)
        assert next_on(device, f"{shadow}/update/accepted")["version"] == value

    device.publish(f"{shadow}/delete", json.dumps({"clientToken": "d-1"}), qos=1)
    deleted = next_on(device, f"{shadow}/delete/accepted")
    assert deleted["version"] == 3 and deleted["clientToken"] == "d-1"
    device.publish(f"{shadow}/get", b"", qos=1)
    assert next_on(device, f"{shadow}/get/rejected")["code"] == 404
    device.publish(f"{shadow}/delete", b"", qos=1)
    assert next_on(device, f"{shadow}/delete/rejected")["code"] == 404

    device.publish(f"{shadow}/update", json.dumps({"state": {"reported": {"fresh": True}}}), qos=1)
    accepted = next_on(device, f"{shadow}/update/accepted")
    assert accepted["version"] == 4, "the version counter survives the delete"
    assert twin(platform, device_id)["reported"] == {"fresh": True}
    device.close()


def test_aws_named_shadows_and_other_things_are_out_of_reach(platform):
    device_id, name, token = new_device(platform)
    other_id, other_name, _ = new_device(platform)
    device = connect(platform, token)
    named = f"$aws/things/{name}/shadow/name/config"
    device.subscribe(f"{named}/#", qos=1)
    device.publish(f"{named}/update", json.dumps({"state": {"reported": {"rate": 5}}}), qos=1)
    assert next_on(device, f"{named}/update/accepted")["version"] == 1
    assert platform.ok("GET", f"/api/v1/devices/{device_id}/twins/config")["reported"] == {"rate": 5}
    assert twin(platform, device_id)["version"] == 0, "the classic shadow is a separate twin"

    # Another thing's shadow: the subscription is refused, the publish changes nothing.
    codes = device.subscribe(f"$aws/things/{other_name}/shadow/#", qos=1, check=False)
    assert all(code >= 0x80 for code in codes)
    device.publish(f"$aws/things/{other_id}/shadow/update", json.dumps({"state": {"reported": {"x": 1}}}), qos=1, wait=False)
    time.sleep(0.3)
    assert twin(platform, other_id)["version"] == 0
    device.close()


# ---------------------------------------------------------------- native topics

def test_native_topics_update_get_delta_and_documents(platform):
    device_id, _, token = new_device(platform)
    device = connect(platform, token, V311)
    base = f"devices/{device_id}/twin"
    device.subscribe(f"{base}/#", qos=1)
    device.publish(f"{base}/update", json.dumps({"state": {"reported": {"fw": "1.0"}}, "clientToken": "n1"}), qos=1)
    accepted = next_on(device, f"{base}/update/accepted")
    assert accepted["version"] == 1 and accepted["clientToken"] == "n1"
    assert accepted["timestamp"] > 1_000_000_000_000, "native times are milliseconds"
    assert next_on(device, f"{base}/documents")["current"]["version"] == 1

    assert patch_desired(platform, device_id, {"fw": "2.0"}).status_code == 200
    delta = next_on(device, f"{base}/delta")
    assert delta["state"] == {"fw": "2.0"} and delta["version"] == 2
    documents = next_on(device, f"{base}/documents")
    assert documents["previous"]["state"]["reported"] == {"fw": "1.0"}
    assert documents["current"]["state"]["desired"] == {"fw": "2.0"}

    device.publish(f"{base}/get", b"", qos=1)
    got = next_on(device, f"{base}/get/accepted")
    assert got["state"]["delta"] == {"fw": "2.0"} and got["version"] == 2

    device.publish(f"{base}/update", json.dumps({"state": {"reported": {"fw": "2.0"}}, "version": 1}), qos=1)
    assert next_on(device, f"{base}/update/rejected")["code"] == 409
    device.close()


# ---------------------------------------------------------------- ThingsBoard attributes

def test_thingsboard_attributes_request_response_and_shared_push(platform):
    device_id, _, token = new_device(platform)
    device = connect(platform, token, V311)
    device.subscribe("v1/devices/me/attributes", qos=1)
    device.subscribe("v1/devices/me/attributes/response/+", qos=1)

    # Telemetry on the same connection goes to the telemetry store, not the twin.
    device.publish("v1/devices/me/telemetry", json.dumps({"temperature": 21.5}), qos=1)
    latest = platform.ok("GET", f"/api/v1/devices/{device_id}/telemetry/latest")
    assert latest["temperature"]["value"] == 21.5

    # Client attributes are the reported state.
    device.publish("v1/devices/me/attributes", json.dumps({"firmware": "1.2", "model": "X"}), qos=1)
    deadline = time.monotonic() + contract.TIMEOUT
    while twin(platform, device_id)["reported"] != {"firmware": "1.2", "model": "X"}:
        assert time.monotonic() < deadline, twin(platform, device_id)
        time.sleep(0.05)

    # Shared attributes are the desired state, pushed when an operator changes them.
    assert patch_desired(platform, device_id, {"interval": 30, "mode": "eco"}).status_code == 200
    assert next_on(device, "v1/devices/me/attributes") == {"interval": 30, "mode": "eco"}
    assert patch_desired(platform, device_id, {"mode": None, "interval": 60}).status_code == 200
    pushes = [next_on(device, "v1/devices/me/attributes"), next_on(device, "v1/devices/me/attributes")]
    assert {"interval": 60} in pushes and {"deleted": ["mode"]} in pushes

    device.publish("v1/devices/me/attributes/request/1", json.dumps({"clientKeys": "firmware", "sharedKeys": "interval,nope"}), qos=1)
    assert next_on(device, "v1/devices/me/attributes/response/1") == {"client": {"firmware": "1.2"}, "shared": {"interval": 60}}
    device.publish("v1/devices/me/attributes/request/2", b"{}", qos=1)
    assert next_on(device, "v1/devices/me/attributes/response/2") == {
        "client": {"firmware": "1.2", "model": "X"}, "shared": {"interval": 60}}
    device.close()


# ---------------------------------------------------------------- REST

def test_rest_if_match_conflicts_and_history_at_a_time(platform):
    device_id, _, _ = new_device(platform)
    first = patch_desired(platform, device_id, {"v": 1}, if_match=0)
    assert first.status_code == 200 and first.headers["ETag"] == '"1"'
    stale = patch_desired(platform, device_id, {"v": 2}, if_match=0)
    assert stale.status_code == 409
    assert stale.headers["Content-Type"].startswith("application/problem+json")
    assert stale.json()["field"] == "If-Match"
    time.sleep(0.05)
    between = int(time.time() * 1000)
    time.sleep(0.05)
    assert patch_desired(platform, device_id, {"v": 2}, if_match=1).status_code == 200

    assert twin(platform, device_id, at=between)["desired"] == {"v": 1}
    at_rfc3339 = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(between / 1000)) + f".{between % 1000:03d}Z"
    assert twin(platform, device_id, at=at_rfc3339)["version"] == 1
    assert twin(platform, device_id)["desired"] == {"v": 2}
    history = platform.ok("GET", f"/api/v1/devices/{device_id}/twin/history")
    assert [item["version"] for item in history["items"]] == [2, 1]
    assert history["items"][0]["actor"]["kind"] == "api-key"

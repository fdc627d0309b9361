"""Fleet queries over the REST API (issue 6): `GET /api/v1/devices?q=...` finds devices by labels,
status, profile, presence and latest telemetry; errors are 400 problem+json with the position.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

import contract
from mqttclient import V5, TestClient

pytestmark = pytest.mark.meridian_only(reason="Meridian's fleet query API")


def query(platform, q: str, **params):
    return platform.api("GET", "/api/v1/devices", params={"q": q, **params})


def ids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [d["id"] for d in response.json()["items"]]


def test_labels_status_profile_and_paging(platform):
    tag = uuid.uuid4().hex[:8]
    profile = platform.ok("POST", "/api/v1/profiles", json={"name": f"thermo-{tag}"}, status=201)
    made = []
    for i in range(7):
        fields = {"labels": {"run": tag, "site": "plant-3" if i % 2 == 0 else "plant-1"}}
        if i < 3:
            fields["profile"] = profile["name"]
        made.append(platform.device(f"fq-{tag}-{i}", **fields))
    platform.ok("PATCH", f"/api/v1/devices/{made[0]['id']}", json={"status": "disabled"})
    by_index = [d["id"] for d in made]

    assert ids(query(platform, f'labels.run = "{tag}" AND labels.site = "plant-3"')) == \
        sorted(by_index[i] for i in (0, 2, 4, 6))
    assert ids(query(platform, f'labels.run = "{tag}" AND labels.site = "plant-3" AND status = "active"')) == \
        sorted(by_index[i] for i in (2, 4, 6))
    assert ids(query(platform, f'labels.run = "{tag}" AND profile = "thermo-{tag}"')) == sorted(by_index[:3])
    assert ids(query(platform, f'labels.run = "{tag}" AND NOT profile IN ["thermo-{tag}"]')) == sorted(by_index[3:])

    # Paging: the same cursors as the plain list.
    seen, cursor = [], None
    for _ in range(10):
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        r = query(platform, f'labels.run = "{tag}"', **params)
        seen += ids(r)
        cursor = r.json()["nextCursor"]
        if cursor is None:
            break
    assert seen == sorted(by_index)


def test_online_and_latest_telemetry(platform):
    tag = uuid.uuid4().hex[:8]
    a = platform.device(f"fq-a-{tag}", labels={"run": tag})
    b = platform.device(f"fq-b-{tag}", labels={"run": tag})
    token_a = platform.token(a["id"])
    token_b = platform.token(b["id"])
    for device, token, temp in ((a, token_a, 85.5), (b, token_b, 20)):
        r = platform.api("POST", f"/api/v1/devices/{device['id']}/telemetry", key=token,
                         data=json.dumps({"temp": temp, "mode": "eco"}),
                         headers={"Content-Type": "application/json"})
        assert r.status_code == 200, r.text
    assert ids(query(platform, f'labels.run = "{tag}" AND telemetry.temp >= 80')) == [a["id"]]
    assert ids(query(platform, f'labels.run = "{tag}" AND telemetry.mode = "eco"')) == sorted([a["id"], b["id"]])

    client = TestClient(platform.broker, V5)
    client.paho.username_pw_set(token_b, None)
    try:
        client.connect()
        assert ids(query(platform, f'labels.run = "{tag}" AND online')) == [b["id"]]
        assert ids(query(platform, f'labels.run = "{tag}" AND NOT online')) == [a["id"]]
        # lastSeenAt is written at most a second after the connect.
        deadline = time.monotonic() + contract.TIMEOUT
        while b["id"] not in ids(query(platform, f'labels.run = "{tag}" AND lastSeen > now - 1h')):
            assert time.monotonic() < deadline, "lastSeen never caught up"
            time.sleep(0.1)
        assert ids(query(platform, f'labels.run = "{tag}" AND lastSeen < now - 1h')) == []
    finally:
        client.close()


def test_twin_fields(platform):
    """reported.* and desired.* read the devices' twins: reported by the device over MQTT (the
    AWS request shape on the native topic), desired set by an operator over REST."""
    tag = uuid.uuid4().hex[:8]
    old = platform.device(f"fq-old-{tag}", labels={"run": tag})
    new = platform.device(f"fq-new-{tag}", labels={"run": tag})
    bare = platform.device(f"fq-bare-{tag}", labels={"run": tag})
    for device, version in ((old, "1.9.3"), (new, "2.1.0")):
        client = TestClient(platform.broker, V5)
        client.paho.username_pw_set(platform.token(device["id"]), None)
        try:
            client.connect()
            client.publish(f"devices/{device['id']}/twin/update",
                           json.dumps({"state": {"reported": {"firmware": {"version": version}}}}), qos=1)
        finally:
            client.close()
    platform.ok("PATCH", f"/api/v1/devices/{new['id']}/twin", json={"desired": {"mode": "eco"}})
    # The device's update is acknowledged once handled; poll briefly all the same.
    deadline = time.monotonic() + contract.TIMEOUT
    while ids(query(platform, f'labels.run = "{tag}" AND reported.firmware.version < "2.0"')) != [old["id"]]:
        assert time.monotonic() < deadline, "reported twin fields never matched"
        time.sleep(0.1)
    assert ids(query(platform, f'labels.run = "{tag}" AND reported.firmware.version >= "2.0"')) == [new["id"]]
    assert ids(query(platform, f'labels.run = "{tag}" AND desired.mode = "eco"')) == [new["id"]]
    assert ids(query(platform, f'labels.run = "{tag}" AND NOT EXISTS reported.firmware')) == [bare["id"]]


@pytest.mark.parametrize("q,kind,offset,message", [
    ('labels.site = ', "invalid-query", 14, "expected a value after '='"),
    ('online > 3', "query-type-error", 0, "online is a boolean"),
    ('labels.site < 5', "query-type-error", 14, "labels.site is a string"),
    ('(online', "invalid-query", 7, "expected ')'"),
    ('colour = "red"', "query-type-error", 0, "unknown field"),
])
def test_errors_point_at_the_position(platform, q, kind, offset, message):
    r = query(platform, q)
    assert r.status_code == 400, r.text
    assert r.headers["Content-Type"] == "application/problem+json"
    body = r.json()
    assert body["type"] == f"urn:meridian:problem:{kind}"
    assert body["field"] == "q"
    assert body["position"]["offset"] == offset
    assert body["position"]["line"] == 1 and body["position"]["column"] == offset + 1
    assert message in body["detail"]


def test_query_text_never_reaches_sql(platform):
    tag = uuid.uuid4().hex[:8]
    platform.device(f"fq-inj-{tag}", labels={"run": tag})
    for q in ['labels.run = "x\' OR \'1\'=\'1"', "labels.run = \"\" ; DROP TABLE devices; --\"",
              'name = "a\\" OR 1=1 --"']:
        r = query(platform, q)
        assert r.status_code in (200, 400), r.text
        if r.status_code == 200:
            assert r.json()["items"] == []
    assert len(ids(query(platform, f'labels.run = "{tag}"'))) == 1

"""Telemetry in and out (issue 5): devices send over MQTT (native and ThingsBoard topics,
MQTT 3.1.1 and 5) and HTTP, operators read latest values, raw ranges, aggregates and CSV
through the REST API; bad payloads are refused with a reason the device sees; acknowledged
samples survive kill -9.
"""

from __future__ import annotations

import csv
import io
import json
import signal
import struct
import time
import uuid

import pytest

import contract
import mqttpackets as mp
from mqttclient import V5, V311

pytestmark = pytest.mark.meridian_only(reason="Meridian's telemetry store and REST API")

PAYLOAD_FORMAT_INVALID = 0x99
T0 = 1_700_000_000_000  # a fixed time, ms


def new_device(platform) -> tuple[str, str]:
    device = platform.device()
    return device["id"], platform.token(device["id"])


def post(platform, device_id, token, body, raw: bytes | None = None):
    return platform.api("POST", f"/api/v1/devices/{device_id}/telemetry", key=token,
                        data=raw if raw is not None else json.dumps(body),
                        headers={"Content-Type": "application/json"})


def read(platform, device_id, **params):
    return platform.ok("GET", f"/api/v1/devices/{device_id}/telemetry", params=params)


def latest(platform, device_id):
    return platform.ok("GET", f"/api/v1/devices/{device_id}/telemetry/latest")


def eventually(check, timeout: float = contract.TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def mqtt_device(platform, token: str, version: int):
    client, _, rc, _ = mp.raw_connect(platform.broker.host, platform.broker.mqtt_port,
                                      "tel-" + uuid.uuid4().hex[:8], version=version, username=token)
    assert rc == 0
    return client


def puback(client, version: int) -> tuple[int, int, dict]:
    """(packet id, reason code, properties) of the next PUBACK."""
    p = client.expect(mp.PUBACK)
    packet_id = struct.unpack_from("!H", p.body, 0)[0]
    if version == V5 and len(p.body) > 2:
        reason = p.body[2]
        props = mp.parse_properties(p.body, 3)[0] if len(p.body) > 3 else {}
        return packet_id, reason, props
    return packet_id, 0, {}


# ---------------------------------------------------------------- HTTP ingest and queries

def test_http_ingest_all_formats_and_read_back(platform):
    device_id, token = new_device(platform)
    r = post(platform, device_id, token, {"ts": T0, "values": {"temp": 21.5, "on": True, "mode": "eco"}})
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 3}
    r = post(platform, device_id, token, [{"ts": T0 + 1000, "values": {"temp": 21.75}},
                                          {"ts": T0 + 2000, "values": {"temp": -0.125, "mode": "boost"}}])
    assert r.status_code == 200, r.text
    got = read(platform, device_id, **{"from": T0, "to": T0 + 10_000})
    assert got["temp"] == [{"ts": T0, "value": 21.5}, {"ts": T0 + 1000, "value": 21.75},
                           {"ts": T0 + 2000, "value": -0.125}]
    assert got["on"] == [{"ts": T0, "value": True}]
    assert got["mode"] == [{"ts": T0, "value": "eco"}, {"ts": T0 + 2000, "value": "boost"}]
    assert latest(platform, device_id) == {
        "mode": {"ts": T0 + 2000, "value": "boost"},
        "on": {"ts": T0, "value": True},
        "temp": {"ts": T0 + 2000, "value": -0.125},
    }
    only = read(platform, device_id, keys="on", **{"from": T0, "to": T0 + 10_000})
    assert list(only) == ["on"]
    # Without "ts", the server's clock stamps the sample.
    before = int(time.time() * 1000)
    assert post(platform, device_id, token, {"humidity": 40}).status_code == 200
    stamped = latest(platform, device_id)["humidity"]
    assert stamped["value"] == 40 and before - 1000 <= stamped["ts"] <= int(time.time() * 1000) + 1000


def test_aggregates_paging_and_csv(platform):
    device_id, token = new_device(platform)
    points = [{"ts": T0 + i * 10_000, "values": {"v": i, "s": f"x{i % 3}"}} for i in range(360)]  # one hour, every 10 s
    assert post(platform, device_id, token, points).status_code == 200
    window = {"from": T0, "to": T0 + 3_600_000}
    # 1-minute buckets: 60 buckets of 6 samples.
    avg = read(platform, device_id, keys="v", interval="1m", agg="avg", **window)["v"]
    minute0 = T0 - T0 % 60_000
    assert len(avg) in (60, 61)
    expected = {}
    for i in range(360):
        ts = T0 + i * 10_000
        expected.setdefault(ts - ts % 60_000, []).append(i)
    assert avg == [{"ts": start, "value": sum(v) / len(v)} for start, v in sorted(expected.items())]
    assert avg[0]["ts"] == minute0
    for agg, fn in [("min", min), ("max", max), ("sum", sum), ("count", len),
                    ("first", lambda v: v[0]), ("last", lambda v: v[-1])]:
        got = read(platform, device_id, keys="v", interval="15m", agg=agg, **window)["v"]
        buckets = {}
        for i in range(360):
            ts = T0 + i * 10_000
            buckets.setdefault(ts - ts % 900_000, []).append(i)
        assert got == [{"ts": k, "value": fn(v)} for k, v in sorted(buckets.items())], agg
    # count works on string series too; avg does not apply to them.
    counts = read(platform, device_id, keys="s", interval="1h", agg="count", **window)["s"]
    assert sum(p["value"] for p in counts) == 360
    assert read(platform, device_id, keys="s", interval="1h", agg="avg", **window) == {}
    # Paging: 100 per page, the cursor walks all 360 without repeats.
    seen, cursor, pages = [], None, 0
    while True:
        params = {"keys": "v", "limit": 100, **window}
        if cursor:
            params["cursor"] = cursor
        r = platform.api("GET", f"/api/v1/devices/{device_id}/telemetry", params=params)
        assert r.status_code == 200
        seen += [p["ts"] for p in r.json()["v"]]
        pages += 1
        cursor = r.headers.get("Next-Cursor")
        if not cursor:
            break
        assert 'rel="next"' in r.headers["Link"]
    assert pages == 4 and seen == [T0 + i * 10_000 for i in range(360)]
    # CSV of the whole range.
    r = platform.api("GET", f"/api/v1/devices/{device_id}/telemetry",
                     params={"format": "csv", **window})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["ts", "key", "value"] and len(rows) == 1 + 720
    assert ["%d" % T0, "v", "0"] in rows and ["%d" % (T0 + 10_000), "s", "x1"] in rows


def test_fleet_queries_stay_inside_the_tenant(platform):
    a, token_a = new_device(platform)
    b, token_b = new_device(platform)
    assert post(platform, a, token_a, {"ts": T0, "values": {"t": 1}}).status_code == 200
    assert post(platform, b, token_b, {"ts": T0, "values": {"t": 2}}).status_code == 200
    got = platform.ok("GET", "/api/v1/telemetry/latest", params={"devices": f"{a},{b},nonexistent"})
    assert got == {a: {"t": {"ts": T0, "value": 1}}, b: {"t": {"ts": T0, "value": 2}}}
    ranges = platform.ok("GET", "/api/v1/telemetry",
                         params={"devices": f"{a},{b}", "from": T0, "to": T0, "keys": "t"})
    assert ranges == {a: {"t": [{"ts": T0, "value": 1}]}, b: {"t": [{"ts": T0, "value": 2}]}}
    # A viewer reads; no key, no telemetry.
    viewer = platform.api_key("viewer")
    assert platform.ok("GET", f"/api/v1/devices/{a}/telemetry/latest", key=viewer) == {"t": {"ts": T0, "value": 1}}
    assert platform.api("GET", f"/api/v1/devices/{a}/telemetry/latest", key="mk_not_a_key").status_code == 401
    assert platform.api("GET", f"/api/v1/devices/{a}/telemetry/latest", key=None).status_code == 401


def test_http_refusals(platform):
    device_id, token = new_device(platform)
    other_id, other_token = new_device(platform)
    cases = [
        (b"not json", None),
        (b'{"temp": [1, 2]}', "temp"),
        (b'{"ts": "yesterday", "values": {"a": 1}}', None),
        (b"{}", None),
        (b'{"temp": 1e999}', "temp"),
    ]
    for raw, key in cases:
        r = post(platform, device_id, token, None, raw=raw)
        assert r.status_code == 400, (raw, r.text)
        problem = r.json()
        assert r.headers["Content-Type"].startswith("application/problem+json")
        assert problem["detail"], raw
        if key is not None:
            assert key in problem["detail"], (raw, problem)
    # Nothing of a refused payload was stored.
    assert latest(platform, device_id) == {}
    r = post(platform, device_id, "wrong-token", {"a": 1})
    assert r.status_code == 401
    r = post(platform, device_id, other_token, {"a": 1})
    assert r.status_code == 403
    r = platform.api("GET", "/api/v1/devices/nonexistent/telemetry/latest")
    assert r.status_code == 404
    r = platform.api("GET", f"/api/v1/devices/{device_id}/telemetry", params={"interval": "fortnight"})
    assert r.status_code == 400 and r.json()["field"] == "interval"
    r = platform.api("GET", f"/api/v1/devices/{device_id}/telemetry", params={"from": 10, "to": 5})
    assert r.status_code == 400 and r.json()["field"] == "from"
    assert latest(platform, other_id) == {}


# ---------------------------------------------------------------- MQTT ingest

@pytest.mark.parametrize("version", [V311, V5], ids=["3.1.1", "5"])
@pytest.mark.parametrize("topic_style", ["native", "thingsboard"])
def test_mqtt_telemetry_is_stored(platform, version, topic_style):
    device_id, token = new_device(platform)
    topic = f"devices/{device_id}/telemetry" if topic_style == "native" else "v1/devices/me/telemetry"
    client = mqtt_device(platform, token, version)
    try:
        for i in range(20):
            body = json.dumps({"ts": T0 + i, "values": {"temp": 20 + i / 4, "door": "open" if i % 2 else "closed"}})
            client.send(mp.publish(topic, body.encode(), qos=1, packet_id=i + 1, version=version))
        acks = [puback(client, version) for _ in range(20)]
        assert [a[0] for a in acks] == list(range(1, 21)) and all(a[1] == 0 for a in acks)
        # Acknowledged means stored: readable at once.
        got = read(platform, device_id, **{"from": T0, "to": T0 + 100})
        assert [p["value"] for p in got["temp"]] == [20 + i / 4 for i in range(20)]
        assert got["door"][1] == {"ts": T0 + 1, "value": "open"}
    finally:
        client.close()


def test_mqtt5_bad_payload_gets_puback_0x99_with_the_reason(platform):
    device_id, token = new_device(platform)
    client = mqtt_device(platform, token, V5)
    try:
        client.send(mp.publish(f"devices/{device_id}/telemetry", b'{"temp": {"x": [1]}}', qos=1, packet_id=7, version=V5))
        packet_id, reason, props = puback(client, V5)
        assert (packet_id, reason) == (7, PAYLOAD_FORMAT_INVALID)
        assert "temp" in props.get("ReasonString", ""), props
        # The connection stays usable, and nothing was stored.
        client.send(mp.publish(f"devices/{device_id}/telemetry", b'{"temp": 1}', qos=1, packet_id=8, version=V5))
        assert puback(client, V5)[:2] == (8, 0)
        assert [k for k in latest(platform, device_id)] == ["temp"]
    finally:
        client.close()


def test_mqtt311_bad_payload_is_reported_on_the_errors_topic(platform):
    device_id, token = new_device(platform)
    client = mqtt_device(platform, token, V311)
    try:
        client.send(mp.subscribe([(f"devices/{device_id}/errors", 1)], packet_id=1))
        client.expect(mp.SUBACK)
        client.send(mp.publish(f"devices/{device_id}/telemetry", b"[1, 2, 3]", qos=1, packet_id=2))
        seen = []
        deadline = time.monotonic() + contract.TIMEOUT
        error = None
        while error is None and time.monotonic() < deadline:
            p = client.read_packet(timeout=1.0)
            if p is None:
                continue
            seen.append(p)
            if p.type == mp.PUBLISH:
                error = mp.parse_publish(p, V311)
        assert error is not None, f"no message on the errors topic; saw {seen}"
        assert error["topic"] == f"devices/{device_id}/errors"
        report = json.loads(error["payload"])
        assert report["topic"] == f"devices/{device_id}/telemetry" and report["error"]
        assert latest(platform, device_id) == {}
    finally:
        client.close()


def test_acknowledged_samples_survive_kill_9(broker_factory):
    import platform_api  # noqa: PLC0415

    b = broker_factory(env={platform_api.BOOTSTRAP_ENV: platform_api.ADMIN_KEY})
    p = platform_api.Platform(b)
    device_id, token = new_device(p)
    client = mqtt_device(p, token, V5)
    acked = 0
    for batch in range(10):
        for i in range(50):
            n = batch * 50 + i
            client.send(mp.publish(f"devices/{device_id}/telemetry",
                                   json.dumps({"ts": T0 + n, "values": {"n": n}}).encode(),
                                   qos=1, packet_id=i + 1, version=V5))
        for _ in range(50):
            assert puback(client, V5)[1] == 0
            acked += 1
    b.proc.send_signal(signal.SIGKILL)
    b.proc.wait()
    b.proc = None
    client.close()
    b.start()
    got = read(p, device_id, keys="n", limit=1000, **{"from": T0, "to": T0 + 10_000})
    assert [pt["value"] for pt in got["n"]] == list(range(acked))


def test_retention_settings(platform):
    got = platform.ok("GET", "/api/v1/telemetry/retention")
    assert got["source"] == "default" and got["raw"] == 30 * 86_400_000 and got["hour"] is None
    week = 7 * 86_400_000
    got = platform.ok("PUT", "/api/v1/telemetry/retention", json={"raw": week, "minute": 4 * week, "hour": None})
    assert got == {"raw": week, "minute": 4 * week, "hour": None, "source": "tenant"}
    profile = platform.ok("POST", "/api/v1/profiles", json={"name": "p-" + uuid.uuid4().hex[:6]}, status=201)
    assert platform.ok("GET", f"/api/v1/profiles/{profile['id']}/retention")["source"] == "tenant"
    got = platform.ok("PUT", f"/api/v1/profiles/{profile['id']}/retention", json={"raw": 86_400_000})
    assert got["source"] == "profile" and got["raw"] == 86_400_000
    r = platform.api("PUT", "/api/v1/telemetry/retention", json={"raw": 5})
    assert r.status_code == 400 and r.json()["field"] == "raw"
    assert platform.ok("PUT", "/api/v1/telemetry/retention", json={"inherit": True})["source"] == "default"


def test_deleting_or_purging_a_device_deletes_its_telemetry(platform):
    for how in ("delete", "purge"):
        device_id, token = new_device(platform)
        assert post(platform, device_id, token, {"ts": T0, "values": {"t": 1}}).status_code == 200
        if how == "delete":
            platform.ok("DELETE", f"/api/v1/devices/{device_id}", status=204)
        else:
            platform.ok("POST", f"/api/v1/devices/{device_id}/decommission", json={"purge": True}, status=204)
        assert platform.ok("GET", "/api/v1/telemetry/latest", params={"devices": device_id}) == {}, how

"""Publish/subscribe at QoS 0, 1, 2 over MQTT 3.1.1 / 5.0, TCP / WebSocket."""

import pytest

import contract
import mqttpackets as mp
from mqttclient import V5, V311

N = 20


def other(transport):
    return "ws" if transport == "tcp" else "tcp"


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_delivery_count_and_order(client_factory, proto, transport, qos, topic):
    """N messages from one publisher arrive once each, in order, at the subscribed QoS.

    The publisher uses the other transport, so TCP<->WebSocket is crossed both ways."""
    sub = client_factory(proto, transport)
    sub.subscribe(f"{topic}/#", qos)
    pub = client_factory(proto, other(transport))
    for i in range(N):
        pub.publish(f"{topic}/data", f"m{i}".encode(), qos, wait=(qos > 0 or i == N - 1))
    got = sub.expect(N, what=f"at QoS {qos}")
    assert [m.payload for m in got] == [f"m{i}".encode() for i in range(N)], \
        "messages lost, duplicated or reordered"
    assert {m.qos for m in got} == {qos}, f"delivered at QoS {[m.qos for m in got]}"
    assert {m.topic for m in got} == {f"{topic}/data"}
    assert not any(m.retain for m in got), "live message delivered with the retain flag"
    if qos == 2:
        sub.expect_none(what="after the last QoS 2 message (a QoS 2 duplicate)")


def test_order_per_publisher(client_factory, proto, topic):
    """Two publishers interleave; each publisher's order is kept."""
    sub = client_factory(proto)
    sub.subscribe(f"{topic}/+", 1)
    a, b = client_factory(proto), client_factory(proto, "ws")
    for i in range(30):
        a.publish(f"{topic}/a", f"a{i}", 1, wait=False)
        b.publish(f"{topic}/b", f"b{i}", 1, wait=False)
    got = sub.expect(60)
    for name in ("a", "b"):
        seq = [m.payload.decode() for m in got if m.topic.endswith("/" + name)]
        assert seq == [f"{name}{i}" for i in range(30)], f"publisher {name}: {seq}"


@pytest.mark.parametrize("pub_qos,sub_qos", [(2, 1), (2, 0), (1, 0), (0, 2), (1, 2)])
def test_delivered_at_minimum_qos(client_factory, proto, pub_qos, sub_qos, topic):
    sub = client_factory(proto)
    granted = sub.subscribe(topic, sub_qos)
    assert granted == [sub_qos]
    pub = client_factory(proto)
    pub.publish(topic, b"x", pub_qos)
    msg = sub.expect_one()
    assert msg.qos == min(pub_qos, sub_qos)


def test_wildcards(client_factory, proto, topic):
    sub = client_factory(proto)
    sub.subscribe(f"{topic}/+/temp", 1)
    sub.subscribe(f"{topic}/room/#", 1)
    pub = client_factory(proto)
    for t in (f"{topic}/a/temp", f"{topic}/a/b/temp", f"{topic}/room", f"{topic}/room/x/y",
              f"{topic}/other"):
        pub.publish(t, t, 1)
    got = sorted(m.topic for m in sub.expect(3))
    assert got == sorted([f"{topic}/a/temp", f"{topic}/room", f"{topic}/room/x/y"])
    sub.expect_none(what=f"for {topic}/a/b/temp or {topic}/other")


def test_unsubscribe_stops_delivery(client_factory, proto, transport, topic):
    sub = client_factory(proto, transport)
    sub.subscribe(topic, 1)
    pub = client_factory(proto)
    pub.publish(topic, b"before", 1)
    assert sub.expect_one().payload == b"before"
    sub.unsubscribe(topic)
    pub.publish(topic, b"after", 1)
    sub.expect_none(what="after UNSUBSCRIBE")


@pytest.mark.parametrize("version", [mp.V311, mp.V5], ids=["mqtt311", "mqtt5"])
def test_qos2_resent_publish_is_delivered_once(broker, client_factory, version, topic):
    """A QoS 2 PUBLISH re-sent with DUP before PUBREL must not be delivered twice."""
    sub = client_factory(V5 if version == mp.V5 else V311)
    sub.subscribe(topic, 2)
    raw, _, rc, _ = mp.raw_connect(broker.host, broker.mqtt_port, f"it-raw-{topic[-8:]}",
                                   version)
    assert rc == 0
    try:
        raw.send(mp.publish(topic, b"once", qos=2, packet_id=7, version=version))
        assert mp.PUBREC == raw.expect(mp.PUBREC).type
        raw.send(mp.publish(topic, b"once", qos=2, packet_id=7, version=version, dup=True))
        raw.expect(mp.PUBREC)
        raw.send(mp.ack(mp.PUBREL, 7, version))
        raw.expect(mp.PUBCOMP)
        # A second, different message proves the flow goes on and bounds the wait.
        raw.send(mp.publish(topic, b"next", qos=1, packet_id=8, version=version))
        raw.expect(mp.PUBACK)
        got = sub.expect(2)  # (QoS 1 may overtake QoS 2: order is per topic and QoS)
        assert sorted(m.payload for m in got) == [b"next", b"once"], f"got {got}"
        sub.expect_none(what="(a second copy of the QoS 2 message)")
    finally:
        raw.send(mp.disconnect(version))
        raw.close()


def test_large_payload(client_factory, proto, transport, topic):
    """A 100 kB payload (64-bit WebSocket frame length) crosses intact.

    Sent over `transport`, received over TCP: paho's WebSocket receive path needs seconds
    for 100 kB, which would only measure paho."""
    payload = bytes(range(250)) * 400
    sub = client_factory(proto, "tcp")
    sub.subscribe(topic, 1)
    pub = client_factory(proto, transport)
    pub.publish(topic, payload, 1)
    assert sub.expect_one(timeout=contract.TIMEOUT * 2).payload == payload

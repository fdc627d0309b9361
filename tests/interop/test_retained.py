"""Retained messages: set, replace, delete, delivery on subscribe, the retain flag."""

import pytest

from mqttclient import V311


def test_set_replace_delete(client_factory, proto, transport, topic):
    pub = client_factory(proto)
    pub.publish(f"{topic}/a", b"a1", 1, retain=True)
    pub.publish(f"{topic}/b", b"b1", 1, retain=True)

    first = client_factory(proto, transport)
    first.subscribe(f"{topic}/#", 1)
    got = {m.topic: m for m in first.expect(2, what="(the two retained messages)")}
    assert {t: m.payload for t, m in got.items()} == {f"{topic}/a": b"a1", f"{topic}/b": b"b1"}
    assert all(m.retain for m in got.values()), f"retain flag not set on subscribe: {got}"

    pub.publish(f"{topic}/a", b"a2", 1, retain=True)  # replace
    pub.publish(f"{topic}/b", b"", 1, retain=True)  # delete
    live = first.expect(2, what="(the replacement and the deletion, live)")
    assert sorted((m.topic, m.payload) for m in live) == [(f"{topic}/a", b"a2"),
                                                          (f"{topic}/b", b"")], \
        "an empty retained PUBLISH must still reach existing subscribers"

    second = client_factory(proto, transport)
    second.subscribe(f"{topic}/#", 1)
    msg = second.expect_one(what="(the replaced retained message)")
    assert (msg.topic, msg.payload, msg.retain) == (f"{topic}/a", b"a2", True)
    second.expect_none(what=f"(old value of {topic}/a, or deleted {topic}/b)")


def test_live_delivery_clears_retain_flag(client_factory, proto, topic):
    """3.1.1 [MQTT-3.3.1-9], and MQTT 5 with retain-as-published 0 (the default): a
    retained message matching an established subscription goes out with RETAIN 0."""
    sub = client_factory(proto)
    sub.subscribe(topic, 1)
    client_factory(proto).publish(topic, b"live", 1, retain=True)
    msg = sub.expect_one()
    assert msg.payload == b"live"
    assert msg.retain is False, "retain flag set on delivery to an existing subscription"
    late = client_factory(proto)
    late.subscribe(topic, 1)
    assert late.expect_one().retain is True, "retain flag not set for a new subscription"


@pytest.mark.parametrize("sub_qos", [0, 1, 2])
def test_retained_delivered_at_minimum_qos(client_factory, proto, sub_qos, topic):
    client_factory(proto).publish(topic, b"r", 1, retain=True)
    sub = client_factory(proto)
    sub.subscribe(topic, sub_qos)
    msg = sub.expect_one()
    assert (msg.payload, msg.retain, msg.qos) == (b"r", True, min(1, sub_qos))


def test_many_retained_on_wildcard(client_factory, proto, topic):
    pub = client_factory(proto)
    for i in range(50):
        pub.publish(f"{topic}/{i}", f"v{i}", 1, retain=True, wait=(i == 49))
    sub = client_factory(proto)
    sub.subscribe(f"{topic}/+", 1)
    got = {m.topic: m.payload for m in sub.expect(50)}
    assert got == {f"{topic}/{i}": f"v{i}".encode() for i in range(50)}


def test_resubscribe_resends_retained_in_311(client_factory, topic):
    """3.1.1: a repeated SUBSCRIBE replaces the subscription and re-sends retained messages
    [MQTT-3.8.4-3]."""
    client_factory(V311).publish(topic, b"r", 1, retain=True)
    sub = client_factory(V311)
    sub.subscribe(topic, 1)
    assert sub.expect_one().retain
    sub.subscribe(topic, 1)
    again = sub.expect_one(what="(retained message again after re-SUBSCRIBE)")
    assert (again.payload, again.retain) == (b"r", True)

"""Will messages. The client holding the will is a raw socket, so that "ungraceful" is
exactly a TCP close (or reset) without DISCONNECT."""

import time

import pytest

import contract
import mqttpackets as mp
from mqttclient import V5, V311, new_client_id

RAW = {V311: mp.V311, V5: mp.V5}


def will_holder(broker, proto, will, **kwargs):
    raw, _, rc, _ = mp.raw_connect(broker.host, broker.mqtt_port, new_client_id("will"),
                                   RAW[proto], will=will, **kwargs)
    assert rc == 0, f"CONNACK {rc:#x}"
    return raw


@pytest.mark.parametrize("how", ["close", "reset"])
def test_will_published_on_ungraceful_close(broker, client_factory, proto, transport, topic,
                                            how):
    sub = client_factory(proto, transport)
    sub.subscribe(f"{topic}/will", 1)
    raw = will_holder(broker, proto, mp.Will(f"{topic}/will", b"gone", qos=1))
    raw.close() if how == "close" else raw.abort()
    msg = sub.expect_one(what="(the will)")
    assert (msg.topic, msg.payload, msg.qos, msg.retain) == (f"{topic}/will", b"gone", 1, False)


def test_no_will_on_clean_disconnect(broker, client_factory, proto, topic):
    sub = client_factory(proto)
    sub.subscribe(f"{topic}/will", 1)
    raw = will_holder(broker, proto, mp.Will(f"{topic}/will", b"gone", qos=1))
    raw.send(mp.disconnect(RAW[proto]))
    raw.wait_closed()  # the broker closes after DISCONNECT
    sub.expect_none(what="(a will after a clean DISCONNECT)")


def test_retained_will(broker, client_factory, proto, topic):
    raw = will_holder(broker, proto, mp.Will(f"{topic}/status", b"offline", qos=1, retain=True))
    watcher = client_factory(proto)
    watcher.subscribe(f"{topic}/status", 1)
    raw.abort()
    assert watcher.expect_one().payload == b"offline"
    late = client_factory(proto)
    late.subscribe(f"{topic}/status", 1)
    msg = late.expect_one(what="(the retained will)")
    assert (msg.payload, msg.retain) == (b"offline", True)


def test_will_on_keepalive_timeout(broker, client_factory, proto, topic):
    """A client silent for 1.5 x keep alive is cut off and its will published."""
    sub = client_factory(proto)
    sub.subscribe(f"{topic}/will", 1)
    raw = will_holder(broker, proto, mp.Will(f"{topic}/will", b"timeout", qos=1), keepalive=1)
    start = time.monotonic()
    try:
        # 1.5 x keep alive is the limit [MQTT-3.1.2-24]; the slack is for brokers that check
        # keep alive on a coarse timer (Mosquitto 2.0.11 takes about 5 s here).
        msg = sub.expect_one(timeout=1.5 + 2 * contract.TIMEOUT,
                             what="(will after keep-alive expiry)")
        assert msg.payload == b"timeout"
        assert time.monotonic() - start >= 0.9, "will published before the keep alive ran out"
    finally:
        raw.close()


# ------------------------------------------------------------------------- MQTT 5 only

def test_will_properties_pass_through(broker, client_factory, topic):
    sub = client_factory(V5)
    sub.subscribe(f"{topic}/will", 1)
    will = mp.Will(f"{topic}/will", b'{"state":"lost"}', qos=1, props={
        "ContentType": "application/json", "PayloadFormatIndicator": 1,
        "ResponseTopic": f"{topic}/reply", "CorrelationData": b"\x00\x01corr",
        "UserProperty": [("k", "v1"), ("k", "v2")]})
    will_holder(broker, V5, will).abort()
    msg = sub.expect_one()
    assert msg.payload == b'{"state":"lost"}'
    assert msg.props.get("ContentType") == "application/json"
    assert msg.props.get("PayloadFormatIndicator") == 1
    assert msg.props.get("ResponseTopic") == f"{topic}/reply"
    assert msg.props.get("CorrelationData") == b"\x00\x01corr"
    assert msg.props.get("UserProperty") == [("k", "v1"), ("k", "v2")]


def test_will_delay(broker, client_factory, topic):
    """Not published before the Will Delay Interval, published after it."""
    delay = 2
    sub = client_factory(V5)
    sub.subscribe(f"{topic}/will", 1)
    raw = will_holder(broker, V5, mp.Will(f"{topic}/will", b"late", qos=1,
                                          props={"WillDelayInterval": delay}),
                      clean=True, props={"SessionExpiryInterval": 60})
    raw.abort()
    start = time.monotonic()
    sub.expect_none(timeout=delay - 0.6, what=f"(the will before its {delay}s delay)")
    msg = sub.expect_one(timeout=delay + contract.TIMEOUT, what="(the delayed will)")
    elapsed = time.monotonic() - start
    assert msg.payload == b"late"
    assert elapsed >= delay - 0.5, f"will published after {elapsed:.2f}s, delay is {delay}s"


def test_will_delay_cancelled_by_reconnect(broker, client_factory, topic):
    """A reconnection to the session before the delay runs out cancels the will."""
    delay = 2
    client_id = new_client_id("will")
    sub = client_factory(V5)
    sub.subscribe(f"{topic}/will", 1)
    will = mp.Will(f"{topic}/will", b"late", qos=1, props={"WillDelayInterval": delay})
    raw, _, rc, _ = mp.raw_connect(broker.host, broker.mqtt_port, client_id, mp.V5, will=will,
                                   props={"SessionExpiryInterval": 60})
    assert rc == 0
    raw.abort()
    back, present, rc, _ = mp.raw_connect(broker.host, broker.mqtt_port, client_id, mp.V5,
                                          clean=False, props={"SessionExpiryInterval": 60})
    assert rc == 0 and present, "session not resumed"
    sub.expect_none(timeout=delay + 1.5, what="(a will cancelled by the reconnection)")
    back.send(mp.disconnect(mp.V5, props={"SessionExpiryInterval": 0}))
    back.close()


def test_session_end_before_will_delay_publishes_will(broker, client_factory, topic):
    """The will goes out when the session ends, if that is before the will delay."""
    sub = client_factory(V5)
    sub.subscribe(f"{topic}/will", 1)
    raw = will_holder(broker, V5, mp.Will(f"{topic}/will", b"session-ended", qos=1,
                                          props={"WillDelayInterval": 3600}),
                      props={"SessionExpiryInterval": 1})
    raw.abort()
    msg = sub.expect_one(timeout=1 + contract.TIMEOUT, what="(will at session expiry)")
    assert msg.payload == b"session-ended"


def test_disconnect_with_will_message_reason(broker, client_factory, transport, topic):
    """DISCONNECT with reason 0x04 (Disconnect with Will Message) publishes the will."""
    sub = client_factory(V5, transport)
    sub.subscribe(f"{topic}/will", 1)
    raw = will_holder(broker, V5, mp.Will(f"{topic}/will", b"asked", qos=1))
    raw.send(mp.disconnect(mp.V5, reason=contract.RC_DISCONNECT_WITH_WILL))
    raw.wait_closed()
    assert sub.expect_one(what="(will after DISCONNECT 0x04)").payload == b"asked"


def test_paho_will_and_disconnect_0x04(client_factory, transport, topic):
    """The same through paho (will_set + disconnect(reasoncode=4)), over TCP and WS."""
    sub = client_factory(V5)
    sub.subscribe(f"{topic}/will", 1)
    holder = client_factory(V5, transport, connect=False)
    holder.will_set(f"{topic}/will", b"paho-will", qos=1)
    holder.connect()
    holder.disconnect(reason_code=contract.RC_DISCONNECT_WITH_WILL)
    assert sub.expect_one().payload == b"paho-will"

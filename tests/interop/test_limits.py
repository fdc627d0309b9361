"""Refusals and limits: invalid subscription filter, maximum packet size, bounded queue."""

import pytest

import contract
import mqttpackets as mp
from mqttclient import V5, V311, new_client_id

RAW = {V311: mp.V311, V5: mp.V5}


# Mosquitto 2.0.11 treats an invalid filter as a malformed packet and disconnects
# (DISCONNECT 0x81 / close) instead of refusing that one filter in the SUBACK.
@pytest.mark.meridian_only(reason="Mosquitto 2.0.11 disconnects on an invalid filter "
                                  "instead of answering SUBACK 0x8F/0x80")
def test_invalid_filter_refused_in_suback(broker, client_factory, proto, topic):
    version = RAW[proto]
    raw, _, rc, _ = mp.raw_connect(broker.host, broker.mqtt_port, new_client_id("badsub"),
                                   version)
    try:
        raw.send(mp.subscribe([(f"{topic}/ok", 1), ("a/#/b", 1), (f"{topic}/+/x", 2)],
                              packet_id=9, version=version))
        p = raw.read_packet(contract.TIMEOUT)
        assert p is not None and p.type == mp.SUBACK, (
            f"expected SUBACK, got {p!r}{' (connection closed)' if raw.closed_by_peer else ''}")
        packet_id, codes = mp.parse_suback(p, version)
        failure = (contract.RC_TOPIC_FILTER_INVALID if version == mp.V5
                   else contract.RC_SUBACK_FAILURE_311)
        assert packet_id == 9
        assert codes == [1, failure, 2], f"SUBACK codes {[hex(c) for c in codes]}"
        # The connection stays usable and the valid subscriptions work.
        raw.send(mp.publish(f"{topic}/ok", b"still-here", qos=1, packet_id=10,
                            version=version))
        seen = [raw.read_packet(contract.TIMEOUT), raw.read_packet(contract.TIMEOUT)]
        assert sorted(p.type for p in seen if p) == [mp.PUBLISH, mp.PUBACK], f"got {seen}"
    finally:
        raw.close()


def test_oversize_packet_disconnects(broker_factory, proto, topic):
    """A packet above broker.limits.maximum_packet_size: MQTT 5 gets DISCONNECT 0x95,
    3.1.1 a closed connection. A packet under the limit still passes."""
    limit = 1024
    b = broker_factory({contract.SETTING_MAX_PACKET_SIZE: str(limit)})
    version = RAW[proto]
    raw, _, rc, props = mp.raw_connect(b.host, b.mqtt_port, new_client_id("big"), version)
    try:
        if version == mp.V5:
            assert props.get("MaximumPacketSize") == limit, (
                f"CONNACK must advertise the limit it enforces: {props}")
        raw.send(mp.publish(f"{topic}/small", b"s" * (limit - 100), 1, packet_id=1,
                            version=version))
        raw.expect(mp.PUBACK)
        raw.send(mp.publish(f"{topic}/big", b"b" * (limit * 2), 1, packet_id=2,
                            version=version))
        seen = raw.wait_closed(contract.TIMEOUT)
        if version == mp.V5:
            assert seen and seen[-1].type == mp.DISCONNECT, f"expected DISCONNECT, got {seen}"
            reason, _ = mp.parse_disconnect(seen[-1], version)
            assert reason == contract.RC_PACKET_TOO_LARGE, f"DISCONNECT reason {reason:#x}"
        else:
            assert not any(p.type == mp.DISCONNECT for p in seen), \
                "a 3.1.1 server never sends DISCONNECT"
        assert not any(p.type == mp.PUBACK for p in seen), "oversize PUBLISH acknowledged"
    finally:
        raw.close()
    assert b.alive()


def test_client_maximum_packet_size_respected(client_factory, topic):
    """MQTT 5: the broker never sends a client a packet above the client's Maximum Packet
    Size; such a message is dropped for that client only."""
    small = client_factory(V5, MaximumPacketSize=256)
    small.subscribe(f"{topic}/#", 1)
    big = client_factory(V5)
    big.subscribe(f"{topic}/#", 1)
    pub = client_factory(V5)
    pub.publish(f"{topic}/x", b"L" * 1000, 1)
    pub.publish(f"{topic}/x", b"small", 1)
    assert [m.payload for m in big.expect(2)] == [b"L" * 1000, b"small"]
    assert small.expect_one().payload == b"small", "the small client did not get the small one"
    assert small.connected.is_set(), "client disconnected instead of the message dropped"


def _fill_offline_queue(broker_factory, client_factory, proto, topic, limit, sent):
    b = broker_factory({contract.SETTING_MAX_QUEUED: str(limit)})
    client_id = new_client_id("queue")
    kwargs = ({"clean_session": False} if proto == V311
              else {"clean_start": False, "session_expiry": 60})
    sub = client_factory(proto, client_id=client_id, target=b, **kwargs)
    sub.subscribe(topic, 1)
    sub.disconnect()
    pub = client_factory(proto, target=b)
    for i in range(sent):
        pub.publish(topic, f"{i}", 1)
    back = client_factory(proto, client_id=client_id, target=b, **kwargs)
    assert back.connack["session_present"]
    got = []
    while True:
        try:
            got.append(int(back.expect_one(timeout=contract.QUIET * 1.5).payload))
        except AssertionError:
            return got


def test_offline_queue_is_bounded(broker_factory, client_factory, proto, topic):
    """With broker.limits.maximum_queued_messages small, an offline session does not keep
    everything; what it keeps is delivered once each, in order."""
    limit, sent = 10, 60
    got = _fill_offline_queue(broker_factory, client_factory, proto, topic, limit, sent)
    assert got, "nothing was queued at all"
    assert len(got) < sent, f"all {sent} messages kept with a queue limit of {limit}"
    assert got == sorted(set(got)), f"duplicates or reordering: {got}"


@pytest.mark.meridian_only(reason="Mosquitto 2.0.11 drops the newest message when the queue "
                                  "is full; Meridian's contract drops the oldest")
def test_offline_queue_drops_oldest(broker_factory, client_factory, proto, topic):
    """Meridian keeps at most `maximum_queued_messages` for an offline session (in-flight
    included) and drops the oldest: what is delivered is the newest, contiguous tail."""
    limit, sent = 10, 60
    got = _fill_offline_queue(broker_factory, client_factory, proto, topic, limit, sent)
    assert 1 <= len(got) <= limit, f"{len(got)} delivered with a limit of {limit}: {got}"
    assert got == list(range(sent - len(got), sent)), f"not the newest messages: {got}"

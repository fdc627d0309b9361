"""$SYS topics: present, retained, refreshed; not matched by `#`; not writable by clients."""

import re
import time

import contract
from mqttclient import V5, gather


def _first(client, topics, timeout):
    """Collect messages until every topic in `topics` has been seen; -> {topic: first
    Message on it}."""
    seen = {}
    deadline = time.monotonic() + timeout
    while set(topics) - set(seen):
        remaining = deadline - time.monotonic()
        assert remaining > 0, (f"$SYS topics never published within {timeout}s: "
                               f"{sorted(set(topics) - set(seen))}")
        for m in client.drain():
            seen.setdefault(m.topic, m)
        time.sleep(0.02)
    return seen


def test_sys_topics_present(client_factory, proto):
    # First make sure one $SYS cycle has gone by (the broker may have just started) ...
    warm = client_factory(proto)
    warm.subscribe("$SYS/broker/#", 0)
    _first(warm, contract.SYS_TOPICS, timeout=3 + contract.TIMEOUT)
    # ... then a new subscriber must get every one at once, as retained messages.
    c = client_factory(proto)
    c.subscribe("$SYS/broker/#", 0)
    seen = _first(c, contract.SYS_TOPICS, timeout=contract.TIMEOUT)
    not_retained = [t for t in contract.SYS_TOPICS if not seen[t].retain]
    assert not not_retained, f"not delivered as retained on subscribe: {not_retained}"
    connected = seen["$SYS/broker/clients/connected"].payload.decode()
    deadline = time.monotonic() + 3 + contract.TIMEOUT
    while connected.isdigit() and int(connected) < 1:  # the retained value may predate us
        assert time.monotonic() < deadline, "clients/connected never counted this client"
        m = c.expect_one(timeout=max(0.1, deadline - time.monotonic()))
        if m.topic == "$SYS/broker/clients/connected":
            connected = m.payload.decode()
    assert connected.isdigit() and int(connected) >= 1, f"clients/connected = {connected!r}"
    for name in ("messages/received", "messages/sent", "bytes/received", "bytes/sent"):
        value = seen[f"$SYS/broker/{name}"].payload.decode()
        assert value.isdigit(), f"$SYS/broker/{name} = {value!r}, expected an integer"
    uptime = seen["$SYS/broker/uptime"].payload.decode()
    assert re.match(r"^\d+", uptime), f"uptime = {uptime!r}"
    assert seen["$SYS/broker/version"].payload, "empty version"


def test_sys_counters_refresh(client_factory, topic):
    c = client_factory(V5)
    c.subscribe("$SYS/broker/messages/received", 0)
    start = int(c.expect_one(what="($SYS/broker/messages/received)").payload)
    for i in range(10):
        c.publish(topic, f"{i}", 1)
    deadline = time.monotonic() + 3 + contract.TIMEOUT
    value = start
    while value < start + 10:
        assert time.monotonic() < deadline, (
            f"$SYS/broker/messages/received stayed at {value} (was {start}, +10 published)")
        value = int(c.expect_one(timeout=max(0.1, deadline - time.monotonic())).payload)


def test_hash_does_not_match_sys(client_factory, proto, topic):
    """A filter starting with a wildcard does not match $-topics [MQTT-4.7.2-1]."""
    everything = client_factory(proto)
    everything.subscribe("#", 0)
    sys_watcher = client_factory(proto)
    sys_watcher.subscribe("$SYS/broker/uptime", 0)
    sys_watcher.expect(2, timeout=3 + contract.TIMEOUT,
                       what="(retained uptime and one refresh)")  # a refresh went by
    client_factory(proto).publish(f"{topic}/marker", b"marker", 1)
    seen = []
    while b"marker" not in [m.payload for m in seen]:
        seen += everything.expect(1, what="(the marker, via '#')")
    leaked = [m.topic for m in seen if m.topic.startswith("$")]
    assert not leaked, f"'#' matched $-topics: {leaked[:5]}"


def test_client_publish_to_sys_not_delivered(client_factory, proto, topic):
    sys_topic = f"$SYS/{topic}/fake"
    watcher = client_factory(proto)
    watcher.subscribe(f"$SYS/{topic}/#", 1)
    watcher.subscribe(f"{topic}/control", 1)
    publisher = client_factory(proto)
    publisher.publish(sys_topic, b"forged", 1, wait=False)
    publisher.publish(sys_topic, b"forged-retained", 1, retain=True, wait=False)
    publisher.publish(f"{topic}/control", b"control", 1)
    got = gather([watcher], 1)[0]
    assert got == [b"control"], f"a client's $SYS publish was delivered: {got}"
    watcher.expect_none(what=f"(client publish to {sys_topic})")
    late = client_factory(proto)
    late.subscribe(f"$SYS/{topic}/#", 1)
    late.expect_none(what="(a retained $SYS message forged by a client)")

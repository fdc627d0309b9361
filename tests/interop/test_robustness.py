"""Robustness: 10,000 random and mutated packets over 200 connections against a live broker,
while a well-behaved client keeps publishing and receiving every 100 ms.

Seeded (MERIDIAN_FUZZ_SEED) so a failure can be replayed. The bytes only ever go to the
broker under test on 127.0.0.1; counts and time are bounded.

Memory bound: RSS may grow by at most RSS_GROWTH_LIMIT_MIB between the start (broker up,
one client connected) and the end (all fuzz connections closed). At most MAX_OPEN (100) fuzz
connections are open at once and each can legitimately make the broker hold one partial
packet plus its connection state; after they close, what remains is allocator high-water
and the small sessions/retained messages the valid packets created. 200 MiB is several
times that, yet it is broken by the failures this test is after: a leak of ~20 KiB per
packet (10,000 packets), or a broker that allocates the remaining length a corrupted
header claims (up to 256 MiB) before the bytes arrive.
"""

from __future__ import annotations

import errno
import os
import random
import selectors
import socket
import threading
import time

import mqttpackets as mp
from mqttclient import V5, V311, TestClient

SEED = int(os.environ.get("MERIDIAN_FUZZ_SEED", "20251121"))
CONNECTIONS = 200
PACKETS_PER_CONNECTION = 50  # 200 x 50 = 10,000 packets
MAX_OPEN = 100  # fuzz sockets open at once (well under ~500)
WAVE = 25  # connections opened per wave
LINGER = 0.3  # seconds a fuzz connection stays open after its burst (reading replies)
CONNECTION_DEADLINE = 5.0  # give up on a connection the broker neither reads nor closes
HEARTBEAT_PERIOD = 0.1
RSS_GROWTH_LIMIT_MIB = 200
TIME_LIMIT = 100.0  # the fuzzing itself; the whole test must stay under ~2 minutes


# --------------------------------------------------------------------------- corpus

def valid_packets(rng: random.Random, n: int) -> dict[str, list[bytes]]:
    """Valid CONNECT, PUBLISH and SUBSCRIBE byte strings (both protocol versions)."""
    connects, publishes, subscribes, others = [], [], [], []
    for i in range(n):
        version = rng.choice([mp.V311, mp.V5])
        will = None
        if rng.random() < 0.3:
            will = mp.Will(f"fuzz/will/{i}", rng.randbytes(rng.randint(0, 20)), rng.randint(0, 2),
                           rng.random() < 0.2,
                           {"WillDelayInterval": rng.randint(0, 2)} if version == mp.V5 else {})
        props = {}
        if version == mp.V5 and rng.random() < 0.5:
            props = {"SessionExpiryInterval": rng.choice([0, 5]), "ReceiveMaximum": 10,
                     "TopicAliasMaximum": 5, "UserProperty": [("k", "v")]}
        username = rng.choice([None, "u"])
        connects.append(mp.connect(f"fz-{i}", version, clean=rng.random() < 0.8,
                                   keepalive=rng.choice([0, 5, 60]), will=will,
                                   username=username,
                                   password=b"p" if username and rng.random() < 0.5 else None,
                                   props=props))
        qos = rng.randint(0, 2)
        pprops = {}
        if version == mp.V5 and rng.random() < 0.5:
            pprops = {"MessageExpiryInterval": 5, "ContentType": "x/y",
                      "CorrelationData": b"c", "UserProperty": [("a", "b")],
                      "TopicAlias": rng.randint(1, 5)}
        publishes.append(mp.publish(f"fuzz/t/{rng.randint(0, 20)}",
                                    rng.randbytes(rng.randint(0, 200)), qos,
                                    retain=rng.random() < 0.1, packet_id=rng.randint(1, 65535),
                                    version=version, props=pprops))
        filters = [(rng.choice(["fuzz/#", "fuzz/+/1", "fuzz/t/3", "$share/g/fuzz/t/+"]),
                    rng.randint(0, 2)) for _ in range(rng.randint(1, 3))]
        subscribes.append(mp.subscribe(filters, packet_id=rng.randint(1, 65535),
                                       version=version,
                                       props={"SubscriptionIdentifier": rng.randint(1, 1000)}
                                       if version == mp.V5 else None))
        others.append(rng.choice([mp.pingreq(), mp.ack(mp.PUBREL, rng.randint(1, 9)),
                                  mp.ack(mp.PUBACK, rng.randint(1, 9)),
                                  mp.unsubscribe(["fuzz/#"], rng.randint(1, 9), version)]))
    return {"connect": connects, "publish": publishes, "subscribe": subscribes,
            "other": others}


def corrupt_length(rng: random.Random, data: bytes) -> bytes:
    """Replace the remaining-length field with a wrong (or malformed) one."""
    _, pos = mp.read_varint(data, 1)
    choice = rng.random()
    if choice < 0.25:
        new = b"\xff\xff\xff\xff\x7f"  # five bytes: malformed variable byte integer
    elif choice < 0.5:
        new = mp.varint(rng.randint(2 ** 21, 2 ** 28 - 1))  # claims up to 256 MiB
    else:
        true_len = len(data) - pos
        new = mp.varint(max(0, true_len + rng.choice([-3, -2, -1, 1, 2, 3, 100])))
    return data[:1] + new + data[pos:]


def mutate(rng: random.Random, data: bytes) -> bytes:
    kind = rng.random()
    if kind < 0.35:  # bit flips
        out = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            bit = rng.randrange(len(out) * 8)
            out[bit // 8] ^= 1 << (bit % 8)
        return bytes(out)
    if kind < 0.55:  # truncation
        return data[:rng.randrange(1, len(data))] if len(data) > 1 else b""
    if kind < 0.75:
        return corrupt_length(rng, data)
    if kind < 0.85:  # first byte (type and flags) replaced
        return bytes([rng.randrange(256)]) + data[1:]
    if kind < 0.95:  # bytes inserted or deleted in the middle
        i = rng.randrange(len(data))
        if rng.random() < 0.5:
            return data[:i] + rng.randbytes(rng.randint(1, 8)) + data[i:]
        return data[:i] + data[i + rng.randint(1, 8):]
    return data + rng.randbytes(rng.randint(1, 64))  # trailing garbage


def burst(rng: random.Random, corpus: dict[str, list[bytes]]) -> tuple[str, list[bytes]]:
    """One connection's PACKETS_PER_CONNECTION packets."""
    def any_valid():
        return rng.choice(corpus[rng.choice(["publish", "publish", "subscribe", "other"])])

    style = rng.choices(["connect+garbage", "mutated-connect", "random", "mostly-valid"],
                        weights=[40, 25, 15, 20])[0]
    n = PACKETS_PER_CONNECTION
    if style == "connect+garbage":
        return style, [rng.choice(corpus["connect"])] + [
            mutate(rng, any_valid()) if rng.random() < 0.7 else rng.randbytes(rng.randint(1, 100))
            for _ in range(n - 1)]
    if style == "mutated-connect":
        return style, [mutate(rng, rng.choice(corpus["connect"]))] + [
            mutate(rng, any_valid()) for _ in range(n - 1)]
    if style == "random":
        return style, [rng.randbytes(rng.randint(1, 300)) for _ in range(n)]
    return style, [rng.choice(corpus["connect"])] + [
        any_valid() if rng.random() < 0.7 else mutate(rng, any_valid()) for _ in range(n - 1)]


# --------------------------------------------------------------------------- fuzzer

class FuzzConnection:
    def __init__(self, host, port, payload: bytes):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.data = memoryview(payload)
        self.sent = 0
        self.opened = time.monotonic()
        self.linger_until = None
        self.connected = False
        rc = self.sock.connect_ex((host, port))
        if rc not in (0, errno.EINPROGRESS):
            raise OSError(rc, os.strerror(rc))


def fuzz(host: str, port: int, bursts: list[bytes]) -> dict:
    stats = {"connections": 0, "refused": 0, "bytes_sent": 0, "closed_by_broker": 0,
             "max_open": 0, "gave_up": 0}
    sel = selectors.DefaultSelector()
    pending = list(bursts)
    open_conns: set[FuzzConnection] = set()
    deadline = time.monotonic() + TIME_LIMIT

    def finish(c: FuzzConnection, by_broker: bool):
        sel.unregister(c.sock)
        c.sock.close()
        open_conns.discard(c)
        stats["closed_by_broker"] += by_broker

    while pending or open_conns:
        assert time.monotonic() < deadline, f"fuzzing took over {TIME_LIMIT}s: {stats}"
        # Open the next wave if there is room.
        if pending and len(open_conns) + WAVE <= MAX_OPEN:
            for payload in pending[:WAVE]:
                try:
                    c = FuzzConnection(host, port, payload)
                except OSError:
                    stats["refused"] += 1
                    continue
                sel.register(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
                open_conns.add(c)
                stats["connections"] += 1
            del pending[:WAVE]
            stats["max_open"] = max(stats["max_open"], len(open_conns))
        now = time.monotonic()
        for c in list(open_conns):
            if (c.linger_until and now > c.linger_until) or now - c.opened > CONNECTION_DEADLINE:
                stats["gave_up"] += c.linger_until is None
                finish(c, False)
        for key, events in sel.select(timeout=0.05):
            c: FuzzConnection = key.data
            if c not in open_conns:
                continue
            if events & selectors.EVENT_WRITE:
                if not c.connected:
                    err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        stats["refused"] += 1
                        finish(c, False)
                        continue
                    c.connected = True
                try:
                    n = c.sock.send(c.data[c.sent:c.sent + 16384])
                    c.sent += n
                    stats["bytes_sent"] += n
                except BlockingIOError:
                    pass
                except OSError:  # reset or broken pipe: the broker closed it
                    finish(c, True)
                    continue
                if c.sent >= len(c.data):
                    sel.modify(c.sock, selectors.EVENT_READ, c)
                    c.linger_until = time.monotonic() + LINGER
            if events & selectors.EVENT_READ:
                try:
                    chunk = c.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    finish(c, True)
    sel.close()
    return stats


class Heartbeat:
    """Publishes to its own subscription every 100 ms; remembers what came back."""

    def __init__(self, broker, topic):
        self.client = TestClient(broker, V5, "tcp")
        self.client.connect()
        self.topic = f"{topic}/hb"
        self.client.subscribe(self.topic, 1)
        self.sent = 0
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="heartbeat")

    def _run(self):
        next_at = time.monotonic()
        while not self.stop_flag.is_set():
            self.client.publish(self.topic, str(self.sent).encode(), 1, wait=False)
            self.sent += 1
            next_at += HEARTBEAT_PERIOD
            self.stop_flag.wait(max(0.0, next_at - time.monotonic()))

    def start(self):
        self.thread.start()

    def stop(self):
        self.stop_flag.set()
        self.thread.join()


def test_fuzzed_packets_do_not_hurt_the_broker(broker_factory, topic):
    b = broker_factory()
    rng = random.Random(SEED)
    corpus = valid_packets(rng, 200)
    bursts, styles = [], {}
    for _ in range(CONNECTIONS):
        style, packets = burst(rng, corpus)
        styles[style] = styles.get(style, 0) + 1
        bursts.append(b"".join(packets))
    total_packets = CONNECTIONS * PACKETS_PER_CONNECTION
    assert total_packets == 10_000

    hb = Heartbeat(b, topic)
    rss_start = b.rss_kib()
    hb.start()
    started = time.monotonic()
    try:
        stats = fuzz(b.host, b.mqtt_port, bursts)
        # Keep the heartbeat going for a little while after the storm, too.
        hb.stop_flag.wait(max(0.0, 1.0 - (time.monotonic() - started)) + 0.5)
    finally:
        hb.stop()
    fuzz_seconds = time.monotonic() - started
    summary = (f"seed {SEED}: {total_packets} packets in {stats['connections']} connections "
               f"({styles}), {stats['bytes_sent']} bytes written, {fuzz_seconds:.1f}s, {stats}")
    print(summary)

    assert b.alive(), f"broker died during fuzzing ({summary})\n{b.stderr_text()}"
    assert stats["refused"] == 0, f"broker refused fuzz connections: {summary}"

    # Every heartbeat came back, in order, and the client was never disconnected.
    got = hb.client.expect(hb.sent, what="(heartbeats sent during fuzzing)")
    assert [int(m.payload) for m in got] == list(range(hb.sent)), "heartbeats lost or reordered"
    assert hb.sent >= 10, f"only {hb.sent} heartbeats: the run was too short to mean much"
    assert not hb.client.disconnected.is_set(), (
        f"well-behaved client disconnected: {hb.client.disconnection}")
    hb.client.close()

    # A fresh client of each version still gets full service.
    for proto in (V311, V5):
        c = TestClient(b, proto, "tcp")
        try:
            c.connect()
            c.subscribe(f"{topic}/after", 2)
            c.publish(f"{topic}/after", b"alive", 2)
            assert c.expect_one().payload == b"alive"
        finally:
            c.close()

    rss_end = b.rss_kib()
    growth_mib = (rss_end - rss_start) / 1024
    print(f"RSS {rss_start / 1024:.1f} MiB -> {rss_end / 1024:.1f} MiB "
          f"(+{growth_mib:.1f} MiB, limit +{RSS_GROWTH_LIMIT_MIB} MiB)")
    assert growth_mib < RSS_GROWTH_LIMIT_MIB, (
        f"broker RSS grew {growth_mib:.1f} MiB ({rss_start} -> {rss_end} KiB) "
        f"under fuzzing; limit {RSS_GROWTH_LIMIT_MIB} MiB. {summary}")

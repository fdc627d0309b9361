"""Crash durability (Meridian only): what the broker acknowledged survives `kill -9`.

Each test gets a broker of its own, kills it with SIGKILL at a point chosen by a seeded random
generator while clients are mid-stream, starts it again on the same data directory and checks
what the clients were promised:

- QoS 1 (`--durability strict`, and `batch`, which only promises to survive a process crash):
  every message a publisher got a PUBACK for reaches the persistent subscriber, offline or
  online, before the crash or after the restart (duplicates allowed, losses not).
- QoS 2: a persistent publisher, two crashes; after each it resumes its session and re-sends
  what was not acknowledged (PUBLISH with DUP, PUBREL), as a real client does. Every message
  whose PUBREC it got arrives exactly once, and in the end every message does.
- Delivery interrupted: killed while delivering queued QoS 1/2 messages; the subscriber
  resumes: nothing lost, and QoS 2 exactly once.
- Retained messages: the last acknowledged value of every topic survives, and so does an
  acknowledged delete.
- Subscriptions (and an unsubscribe) acknowledged by SUBACK (UNSUBACK) survive.
- The will of a persistent client connected at the crash is published after the restart.
- `--durability strict` syncs before acknowledging (fsync/fdatasync counted with strace: a
  kill -9 cannot tell a sync from a write the OS still holds).
- `--durability none` keeps nothing (documents the mode).
- A corrupt `broker.sqlite`, or one written by a newer version, stops start-up with exit code 1
  and a message naming the file, and the file is left as it was.

Mosquitto is not checked: it keeps state only in periodic snapshots, so it loses acknowledged
messages on a crash by design. MERIDIAN_DURABILITY_SEED (default 20261121) changes every kill
point; failures print the seed (`pytest -rP` prints each crash test's counts when it passes).
"""

from __future__ import annotations

import os
import random
import re
import select
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import threading
import time
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

import brokers
import contract
import mqttpackets as mp
from mqttclient import new_client_id

pytestmark = pytest.mark.meridian_only(
    reason="crash durability; Mosquitto persists only periodic snapshots and loses "
           "acknowledged messages on kill -9 by design")

SEED = int(os.environ.get("MERIDIAN_DURABILITY_SEED", "20261121"))
MESSAGES = 10_000  # per crash test
WINDOW = 100  # unacknowledged QoS 1/2 PUBLISHes per publisher
SESSION_EXPIRY = 3600  # MQTT 5 persistent sessions
# Room for everything queued for the offline subscriber (the default bound drops the oldest).
SETTINGS = {contract.SETTING_MAX_QUEUED: str(4 * MESSAGES)}
# Waiting for acknowledgements and deliveries: the broker fsyncs (and may be a debug build).
SLOW = 30.0 * contract.TIME_SCALE
# The kill comes this long (at most; seeded) after the chosen acknowledgement or delivery.
MAX_KILL_DELAY = 0.005
# After the last expected message, how long to keep listening for duplicates or extras.
SETTLE = 1.0 * contract.TIME_SCALE


def rng_for(name: str) -> random.Random:
    """The test's own generator: same seed, same kill points."""
    return random.Random(SEED * 1_000_003 + zlib.crc32(name.encode()))


def payload_of(seq: int) -> bytes:
    return b"%08d|durability-test-payload" % seq


def seq_of(payload: bytes) -> int:
    return int(payload[:8])


def connect_props(version: int, persistent: bool) -> dict | None:
    if version == mp.V5 and persistent:
        return {"SessionExpiryInterval": SESSION_EXPIRY}
    return None


def summary(numbers, limit: int = 10) -> str:
    numbers = sorted(numbers)
    text = ", ".join(map(str, numbers[:limit]))
    return f"[{text}{', ...' if len(numbers) > limit else ''}]"


class Connection:
    """A raw MQTT connection read packet by packet (mqttpackets framing), tolerant of the
    broker dying under it."""

    def __init__(self, broker, client_id: str, version: int, clean: bool,
                 persistent: bool = True):
        self.version = version
        self.client_id = client_id
        self.sock = socket.create_connection((broker.host, broker.mqtt_port), timeout=SLOW)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.lost = False
        self.send(mp.connect(client_id, version=version, clean=clean,
                             props=connect_props(version, persistent)))
        p = self.next(SLOW)
        assert p is not None, f"{client_id}: no CONNACK within {SLOW}s"
        self.session_present, rc, _ = mp.parse_connack(p, version)
        assert rc == 0, f"{client_id}: CONNACK refused with {rc:#x}"

    def send(self, data: bytes) -> None:
        if self.lost:
            return
        try:
            self.sock.sendall(data)
        except OSError:  # the broker was killed
            self.lost = True

    def _frame(self) -> mp.Packet | None:
        buf = self.buf
        if len(buf) < 2:
            return None
        try:
            length, pos = mp.read_varint(buf, 1)
        except IndexError:
            return None
        if len(buf) < pos + length:
            return None
        first = buf[0]
        body = bytes(buf[pos:pos + length])
        del buf[:pos + length]
        return mp.Packet(first >> 4, first & 0x0F, body)

    def next(self, timeout: float) -> mp.Packet | None:
        """The next packet; None on timeout or once the connection is gone (see `lost`)."""
        deadline = time.monotonic() + timeout
        while True:
            p = self._frame()
            if p is not None or self.lost:
                return p
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(262144)
            except socket.timeout:
                return None
            except OSError:
                chunk = b""
            if not chunk:
                self.lost = True
            self.buf += chunk

    def available(self) -> list[mp.Packet]:
        """Every complete packet already received, without waiting."""
        out = []
        while (p := self._frame()) is not None:
            out.append(p)
        return out

    def subscribe(self, filters: list[tuple[str, int]], packet_id: int = 1) -> list[int]:
        self.send(mp.subscribe(filters, packet_id=packet_id, version=self.version))
        p = self.next(SLOW)
        assert p is not None, f"{self.client_id}: no SUBACK within {SLOW}s"
        pid, codes = mp.parse_suback(p, self.version)
        assert pid == packet_id and all(c < 0x80 for c in codes), f"SUBACK {pid} {codes}"
        return codes

    def disconnect(self) -> None:
        self.send(mp.disconnect(self.version))
        self.close()

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # also wakes a thread blocked reading
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


@dataclass
class Publisher:
    """Publishes numbered messages over raw connections with up to WINDOW unacknowledged and
    records every acknowledgement read. Its state (what is in flight under which packet id)
    outlives a connection, so that a persistent publisher resumes like a real client: after a
    reconnection with clean start 0 it re-sends, in the original order, each PUBLISH not yet
    acknowledged (DUP set, same packet id) and each PUBREL not yet completed."""

    qos: int
    version: int = mp.V311
    client_id: str = field(default_factory=lambda: new_client_id("dur-pub"))
    persistent: bool = False
    window: int = WINDOW
    sent: list[int] = field(default_factory=list)  # seqs in the order first sent
    acked: set[int] = field(default_factory=set)  # PUBACK (QoS 1) or PUBREC (QoS 2) read
    completed: set[int] = field(default_factory=set)  # QoS 2: PUBCOMP read
    resent: int = 0  # PUBLISHes re-sent with DUP after a reconnection
    refused: list[tuple[int, int]] = field(default_factory=list)  # (seq, reason code >= 0x80)

    def __post_init__(self):
        self.conn: Connection | None = None
        # packet id -> [seq, "publish" | "pubrel"], in the order first sent
        self.outstanding: dict[int, list] = {}
        self.messages: dict[int, tuple[str, bytes, bool]] = {}
        self._next_pid = 0

    def connect(self, broker) -> bool:
        """Connect (clean start 0 when persistent); re-send what is unacknowledged.
        Returns the CONNACK's session present flag."""
        self.conn = Connection(broker, self.client_id, self.version, clean=not self.persistent,
                               persistent=self.persistent)
        out = []
        for pid, (seq, state) in self.outstanding.items():
            if state == "publish":
                topic, payload, retain = self.messages[seq]
                out.append(mp.publish(topic, payload, self.qos, retain, pid, self.version,
                                      dup=True))
                self.resent += 1
            else:
                out.append(mp.ack(mp.PUBREL, pid, self.version))
        if out:
            self.conn.send(b"".join(out))
        return self.conn.session_present

    def _pid(self) -> int:
        while True:
            self._next_pid = self._next_pid % 65535 + 1
            if self._next_pid not in self.outstanding:
                return self._next_pid

    def publish(self, items, on_progress=None) -> None:
        """Send `items` ((seq, topic, payload, retain), ...) and then wait until nothing is
        outstanding, or the connection is lost. `on_progress(self)` runs after every batch of
        acknowledgements read (it may kill the broker)."""
        conn = self.conn
        items = iter(items)
        more = True
        while not conn.lost:
            out = []
            while more and len(self.outstanding) < self.window:
                item = next(items, None)
                if item is None:
                    more = False
                    break
                seq, topic, payload, retain = item
                pid = self._pid()
                self.messages[seq] = (topic, payload, retain)
                self.outstanding[pid] = [seq, "publish"]
                self.sent.append(seq)
                out.append(mp.publish(topic, payload, self.qos, retain, pid, self.version))
            if out:
                conn.send(b"".join(out))
            if not more and not self.outstanding:
                return
            p = conn.next(SLOW)
            if p is None:
                if conn.lost:
                    return
                raise AssertionError(
                    f"{self.client_id}: no acknowledgement within {SLOW}s; "
                    f"{len(self.outstanding)} outstanding, {len(self.acked)} acknowledged")
            replies = []
            for p in [p] + conn.available():
                self._on_ack(p, replies)
            if replies:
                conn.send(b"".join(replies))
            if on_progress is not None:
                on_progress(self)

    def _on_ack(self, p: mp.Packet, replies: list) -> None:
        pid = struct.unpack_from("!H", p.body)[0]
        reason = p.body[2] if self.version == mp.V5 and len(p.body) > 2 else 0
        entry = self.outstanding.get(pid)
        if p.type in (mp.PUBACK, mp.PUBREC) and entry is not None and entry[1] == "publish":
            seq = entry[0]
            if reason >= 0x80:
                self.refused.append((seq, reason))
                del self.outstanding[pid]
            elif p.type == mp.PUBACK:
                self.acked.add(seq)
                del self.outstanding[pid]
            else:
                self.acked.add(seq)
                entry[1] = "pubrel"
                replies.append(mp.ack(mp.PUBREL, pid, self.version))
        elif p.type == mp.PUBCOMP and entry is not None and entry[1] == "pubrel":
            self.completed.add(entry[0])
            del self.outstanding[pid]
        elif p.type not in (mp.PUBREC, mp.PUBCOMP, mp.PUBACK):
            raise AssertionError(f"{self.client_id}: unexpected {p!r}")
        # else: an acknowledgement for a packet id no longer outstanding (a re-sent PUBLISH
        # or PUBREL answered twice); nothing to record

    def progress(self) -> int:
        return len(self.acked)

    def describe(self) -> str:
        return (f"sent {len(self.sent):,}, acknowledged {len(self.acked):,}"
                + (f", completed {len(self.completed):,}" if self.qos == 2 else "")
                + (f", re-sent with DUP {self.resent:,}" if self.resent else ""))


class KillAfter:
    """An on_progress callback: once a client has `count` messages acknowledged (a Publisher)
    or received (a Subscriber), SIGKILL the broker after a short random delay, from another
    thread, so that the kill lands at any point of the client's and the broker's work."""

    def __init__(self, broker, count: int, rng: random.Random):
        self.broker, self.count = broker, count
        self.delay = rng.uniform(0, MAX_KILL_DELAY)
        self.at: int | None = None  # the client's count when the threshold was reached
        self.timer: threading.Timer | None = None

    def __call__(self, client) -> None:
        if self.at is None and client.progress() >= self.count:
            self.at = client.progress()
            self.timer = threading.Timer(self.delay, os.kill, (self.broker.pid, signal.SIGKILL))
            self.timer.start()

    def __str__(self) -> str:
        return f"SIGKILL {self.delay * 1000:.1f} ms after {self.at}"

    def wait(self) -> None:
        if self.timer is not None:
            self.timer.join()


class Subscriber:
    """Receives over raw connections and acknowledges (QoS 1: PUBACK; QoS 2: PUBREC, then
    PUBCOMP for each PUBREL). Like a real client it keeps, across connections, the QoS 2 packet
    ids it has PUBRECed and not seen released: a PUBLISH with one of those is acknowledged again
    but not handed to the application twice (MQTT 5 §4.3.3)."""

    def __init__(self, version: int, persistent: bool = True):
        self.version, self.persistent = version, persistent
        self.client_id = new_client_id("dur-sub")
        self.conn: Connection | None = None
        self.messages: list[dict] = []  # parsed PUBLISHes handed to the application
        self.seen: set[int] = set()
        self.protocol_duplicates = 0  # QoS 2 PUBLISHes again for an id awaiting PUBREL
        self.dup_flagged = 0  # PUBLISHes received with DUP set
        self.awaiting_release: set[int] = set()

    def connect(self, broker) -> bool:
        """-> the CONNACK's session present flag."""
        self.conn = Connection(broker, self.client_id, self.version, clean=not self.persistent,
                               persistent=self.persistent)
        return self.conn.session_present

    def progress(self) -> int:
        return len(self.messages)

    def counts(self) -> Counter:
        return Counter(seq_of(m["payload"]) for m in self.messages)

    def receive(self, until_seen: set[int] | None, on_progress=None,
                deadline_s: float = 60.0 * contract.TIME_SCALE) -> None:
        """Receive until every seq in `until_seen` arrived and nothing more came for SETTLE
        seconds (None: until the connection is lost), the connection is lost, or the deadline
        passes."""
        conn = self.conn
        deadline = time.monotonic() + deadline_s
        while not conn.lost and time.monotonic() < deadline:
            missing = True if until_seen is None else until_seen - self.seen
            p = conn.next(SETTLE if not missing else min(SLOW, deadline - time.monotonic()))
            if p is None:
                if not missing:
                    return
                continue
            replies = []
            for p in [p] + conn.available():
                self._handle(p, replies)
            conn.send(b"".join(replies))
            if on_progress is not None:
                on_progress(self)

    def _handle(self, p: mp.Packet, replies: list) -> None:
        if p.type == mp.PUBLISH:
            msg = mp.parse_publish(p, self.version)
            self.dup_flagged += msg["dup"]
            if msg["qos"] == 2:
                replies.append(mp.ack(mp.PUBREC, msg["packet_id"], self.version))
                if msg["packet_id"] in self.awaiting_release:
                    self.protocol_duplicates += 1
                    return
                self.awaiting_release.add(msg["packet_id"])
            elif msg["qos"] == 1:
                replies.append(mp.ack(mp.PUBACK, msg["packet_id"], self.version))
            self.messages.append(msg)
            self.seen.add(seq_of(msg["payload"]))
        elif p.type == mp.PUBREL:
            pid = struct.unpack_from("!H", p.body)[0]
            self.awaiting_release.discard(pid)
            replies.append(mp.ack(mp.PUBCOMP, pid, self.version))
        else:
            raise AssertionError(f"{self.client_id}: unexpected {p!r}")

    def describe(self) -> str:
        counts = self.counts()
        return (f"received {len(self.messages):,} messages, {len(counts):,} distinct, "
                f"{sum(n - 1 for n in counts.values()):,} duplicates, "
                f"{self.dup_flagged:,} with DUP set"
                + (f" (and {self.protocol_duplicates} QoS 2 re-sends for ids awaiting PUBREL, "
                   f"not handed over)" if self.protocol_duplicates else ""))


def restart_after_crash(broker) -> dict:
    """Reap the killed broker, start it on the same data dir; -> its recovery counts."""
    broker.crash()
    broker.start()
    recovered = broker.recovered_state()
    assert recovered is not None, (
        f"no `{contract.RECOVERED_LOG}` line at start-up\n{broker.stderr_text()}")
    return recovered


def numbered(topic: str, count: int, start: int = 0):
    return ((seq, topic, payload_of(seq), False) for seq in range(start, start + count))


def kill_point(rng: random.Random, total: int) -> int:
    return rng.randint(total // 5, total * 4 // 5)


# --------------------------------------------------------------------------- QoS 1

@pytest.mark.parametrize("durability,subscriber,version", [
    ("strict", "offline", mp.V5),
    ("strict", "online", mp.V311),
    ("batch", "offline", mp.V311),
], ids=["strict-offline-mqtt5", "strict-online-mqtt311", "batch-offline-mqtt311"])
def test_qos1_acknowledged_messages_survive_kill(broker_factory, request, durability,
                                                 subscriber, version):
    """Every PUBACKed message reaches the persistent subscriber after kill -9 (before the crash
    or after the restart): duplicates allowed, losses not. The subscriber is either offline
    (everything queued) or online, acknowledging as it receives (its acknowledged deliveries
    need never reach the disk). batch acknowledges once the OS has the write, so a process
    crash loses nothing either."""
    rng = rng_for(request.node.name)
    b = broker_factory(settings=SETTINGS, extra_args=[contract.DURABILITY_FLAG, durability])
    topic = f"dur/qos1/{durability}"
    sub = Subscriber(version)
    sub.connect(b)
    sub.conn.subscribe([(topic, 1)])
    online = None
    if subscriber == "offline":
        sub.conn.disconnect()
    else:
        online = ThreadPoolExecutor(1).submit(sub.receive, None)  # until the broker dies

    pub = Publisher(qos=1, version=version)
    pub.connect(b)
    kill = KillAfter(b, kill_point(rng, MESSAGES), rng)
    try:
        pub.publish(numbered(topic, MESSAGES), on_progress=kill)
        kill.wait()
    finally:
        if online is not None:
            if kill.at is None:
                sub.conn.close()
            online.result(timeout=SLOW)
    before = len(sub.messages)
    context = (f"seed {SEED}, --durability {durability}, {subscriber} subscriber: publisher "
               f"{pub.describe()} of {MESSAGES:,}; {kill} PUBACKs; "
               f"{before:,} messages received before the crash")
    assert kill.at is not None and len(pub.sent) < MESSAGES, (
        f"the broker was not killed mid-stream ({context})")
    assert not pub.refused, f"PUBACK with an error reason code: {pub.refused[:5]} ({context})"

    recovered = restart_after_crash(b)
    try:
        assert sub.connect(b), f"subscriber's session lost ({context}; {recovered})"
        sub.receive(until_seen=set(pub.acked))
    finally:
        sub.conn.close()
    counts = sub.counts()
    missing = pub.acked - counts.keys()
    unknown = counts.keys() - set(pub.sent)
    report = f"{context}; after the restart ({recovered}) the subscriber {sub.describe()}"
    assert not missing, f"{len(missing):,} acknowledged messages lost {summary(missing)}: {report}"
    assert not unknown, f"messages never sent arrived {summary(unknown)}: {report}"
    assert {m["qos"] for m in sub.messages} == {1}, report
    print(report)  # shown with pytest -rP


@pytest.mark.parametrize("qos", [1, 2])
def test_delivery_interrupted_by_kill(broker_factory, request, qos):
    """Messages queued for a persistent subscriber (all acknowledged to the publisher); the
    broker is killed while it delivers them, the subscriber reconnects after the restart and
    carries on: every message arrives, and with QoS 2 exactly once (the broker re-sends
    in-flight PUBLISHes with their packet ids, or PUBREL where the PUBREC had been recorded)."""
    rng = rng_for(request.node.name)
    count = MESSAGES // 2
    b = broker_factory(settings=SETTINGS)
    topic = f"dur/deliver/{qos}"
    sub = Subscriber(mp.V5)
    sub.connect(b)
    assert sub.conn.subscribe([(topic, qos)]) == [qos]
    sub.conn.disconnect()
    pub = Publisher(qos=qos, version=mp.V5)
    pub.connect(b)
    pub.publish(numbered(topic, count))
    pub.conn.disconnect()
    assert pub.acked == set(range(count)), pub.describe()

    assert sub.connect(b)
    kill = KillAfter(b, kill_point(rng, count), rng)
    sub.receive(until_seen=set(range(count)), on_progress=kill)
    kill.wait()
    context = (f"seed {SEED}, QoS {qos}: {count:,} messages queued; {kill} received by the "
               f"subscriber; before the crash it {sub.describe()}")
    assert kill.at is not None and len(sub.seen) < count, (
        f"the broker was not killed mid-delivery ({context})")

    recovered = restart_after_crash(b)
    try:
        assert sub.connect(b), f"subscriber's session lost ({context}; {recovered})"
        sub.receive(until_seen=set(range(count)))
    finally:
        sub.conn.close()
    counts = sub.counts()
    missing = set(range(count)) - counts.keys()
    twice = {seq for seq, n in counts.items() if n > 1}
    report = f"{context}; after the restart ({recovered}) it {sub.describe()}"
    assert not missing, f"{len(missing):,} queued messages lost {summary(missing)}: {report}"
    assert counts.keys() == set(range(count)), report
    if qos == 2:
        assert not twice, f"delivered more than once {summary(twice)}: {report}"
    print(report)


# --------------------------------------------------------------------------- strict = fsync

class SyscallCounter:
    """strace attached to a running process (all its threads), counting some system calls."""

    def __init__(self, pid: int, calls: list[str], out_path):
        self.calls, self.out_path = calls, out_path
        self.proc = subprocess.Popen(
            [shutil.which("strace"), "-f", "-p", str(pid), "-e", "trace=" + ",".join(calls),
             "-o", str(out_path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # "strace: Process N attached with T threads" (or one "attached" line per thread)
        threads = len(os.listdir(f"/proc/{pid}/task"))
        attached, lines = 0, []
        deadline = time.monotonic() + contract.TIMEOUT
        while attached < threads and time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stderr], [], [], 0.1)
            if not ready:
                continue
            line = self.proc.stderr.readline().decode(errors="replace")
            if not line:
                break
            lines.append(line.strip())
            m = re.search(r"attached(?: with (\d+) threads)?", line)
            if m:
                attached += int(m.group(1) or 1)
        if attached < threads:
            self.proc.kill()
            self.proc.wait()
            pytest.skip(f"strace could not attach to the broker's {threads} threads: {lines}")

    def stop(self) -> Counter:
        self.proc.send_signal(signal.SIGINT)  # detaches; the broker runs on
        self.proc.wait(contract.TIMEOUT)
        self.proc.stderr.close()
        text = self.out_path.read_text()
        return Counter({call: text.count(f" {call}(") for call in self.calls})


@pytest.mark.skipif(shutil.which("strace") is None,
                    reason="needs strace (apt-get install strace) to count fsync calls")
def test_strict_acknowledges_after_fsync(broker_factory, tmp_path):
    """--durability strict (the default) promises that a PUBACK follows an fsync of the
    message: a kill -9 cannot tell that apart from a write the OS still holds, so count the
    broker's fsync/fdatasync calls (strace) while QoS 1 messages for an offline persistent
    subscriber are published one at a time. Each needs its own commit, so at least one sync
    each."""
    count = 50
    b = broker_factory(settings=SETTINGS, extra_args=[contract.DURABILITY_FLAG, "strict"])
    sub = Connection(b, new_client_id("dur-sub"), mp.V311, clean=False)
    sub.subscribe([("dur/fsync", 1)])
    sub.disconnect()
    pub = Publisher(qos=1, window=1)  # the next PUBLISH only after the PUBACK
    pub.connect(b)
    strace = SyscallCounter(b.pid, ["fsync", "fdatasync"], tmp_path / "strace.txt")
    try:
        pub.publish(numbered("dur/fsync", count))
    finally:
        syncs = strace.stop()
    assert pub.acked == set(range(count)), pub.describe()
    assert sum(syncs.values()) >= count, (
        f"--durability strict: {count} QoS 1 messages for a persistent subscriber, published "
        f"one at a time, were all acknowledged, but the broker synced to disk only "
        f"{sum(syncs.values())} times ({dict(syncs)}): a PUBACK went out before its message "
        f"was on stable storage, so a power loss or kernel crash would lose it")


# --------------------------------------------------------------------------- QoS 2

def test_qos2_exactly_once_across_kill(broker_factory, request):
    """QoS 2 from a persistent publisher to an offline persistent subscriber; the broker is
    killed twice mid-stream. Each time the publisher resumes its session (session present 1)
    and re-sends what was not acknowledged (PUBLISH with DUP, PUBREL), then carries on. Every
    message whose PUBREC the publisher got before a crash, and in the end every message, arrives
    exactly once."""
    rng = rng_for(request.node.name)
    version = mp.V5
    b = broker_factory(settings=SETTINGS)
    topic = "dur/qos2"
    sub = Subscriber(version)
    sub.connect(b)
    assert sub.conn.subscribe([(topic, 2)]) == [2]
    sub.conn.disconnect()

    pub = Publisher(qos=2, version=version, persistent=True)
    pub.connect(b)
    stream = numbered(topic, MESSAGES)
    acked_before_a_crash: set[int] = set()
    history = []
    for point in sorted(rng.sample(range(MESSAGES // 5, MESSAGES * 4 // 5), 2)):
        kill = KillAfter(b, point, rng)
        pub.publish(stream, on_progress=kill)
        kill.wait()
        acked_before_a_crash |= pub.acked
        outstanding = Counter(state for _, state in pub.outstanding.values())
        history.append(f"{pub.describe()}, {kill} PUBRECs, leaving {outstanding['publish']} "
                       f"PUBLISH and {outstanding['pubrel']} PUBREL unacknowledged")
        assert kill.at is not None and len(pub.sent) < MESSAGES, (
            f"the broker was not killed mid-stream (seed {SEED}: {'; '.join(history)})")
        recovered = restart_after_crash(b)
        history.append(f"restart: {recovered}")
        assert pub.connect(b), f"publisher's session lost (seed {SEED}: {'; '.join(history)})"
    pub.publish(stream)  # what it re-sends, and the rest
    pub.conn.disconnect()
    context = f"seed {SEED}: {'; '.join(history)}; in the end {pub.describe()}"
    assert not pub.refused, f"PUBREC with an error reason code: {pub.refused[:5]} ({context})"
    assert pub.completed == set(range(MESSAGES)), (
        f"{MESSAGES - len(pub.completed)} messages never completed ({context})")

    try:
        assert sub.connect(b), f"subscriber's session lost ({context})"
        sub.receive(until_seen=set(range(MESSAGES)))
    finally:
        sub.conn.close()
    counts = sub.counts()
    twice = {seq for seq, n in counts.items() if n > 1}
    report = f"{context}; the subscriber {sub.describe()}"
    missing_acked = acked_before_a_crash - counts.keys()
    assert not missing_acked, (
        f"{len(missing_acked):,} messages PUBRECed before a crash lost "
        f"{summary(missing_acked)}: {report}")
    assert not twice, f"delivered more than once {summary(twice)}: {report}"
    missing = set(range(MESSAGES)) - counts.keys()
    assert not missing, f"{len(missing):,} completed messages lost {summary(missing)}: {report}"
    assert counts.keys() == set(range(MESSAGES)), report
    assert {m["qos"] for m in sub.messages} == {2}, report
    print(report)


# --------------------------------------------------------------------------- retained

def test_retained_messages_survive_kill(broker_factory, request):
    """Retained values set and deleted with QoS 1 (PUBACK read), then kill -9 mid-stream: a new
    subscriber gets each topic's last acknowledged value (or a later one that was sent), and a
    topic whose acknowledged delete was the last word on it has no retained message."""
    rng = rng_for(request.node.name)
    topics = [f"dur/retained/{i:04d}" for i in range(1000)]
    b = broker_factory()
    # seq -> (topic, payload); the empty payload deletes the topic's retained message
    ops: list[tuple[str, bytes]] = [(t, payload_of(i)) for i, t in enumerate(topics)]
    for seq in range(len(topics), 4 * len(topics)):
        t = rng.choice(topics)
        ops.append((t, b"" if rng.random() < 0.3 else payload_of(seq)))
    first = len(topics)  # everything before this is acknowledged before the killing stream

    pub = Publisher(qos=1)
    pub.connect(b)
    pub.publish((seq, t, payload, True) for seq, (t, payload) in enumerate(ops[:first]))
    assert pub.acked == set(range(first)), pub.describe()
    kill = KillAfter(b, first + kill_point(rng, len(ops) - first), rng)
    pub.publish(((seq, t, payload, True) for seq, (t, payload) in enumerate(ops)
                 if seq >= first), on_progress=kill)
    kill.wait()
    context = (f"seed {SEED}: {len(ops):,} retained publishes to {len(topics):,} topics, "
               f"{pub.describe()}; {kill} PUBACKs")
    assert kill.at is not None and len(pub.sent) < len(ops), (
        f"the broker was not killed mid-stream ({context})")

    # What each topic may hold: the value of its last acknowledged publish, or of any publish
    # to it sent after that one (it may have been stored without its PUBACK reaching us).
    sent = set(pub.sent)
    allowed: dict[str, set[bytes]] = {}
    for seq, (t, payload) in enumerate(ops):
        if seq in pub.acked:
            allowed[t] = {payload}
        elif seq in sent:
            allowed[t].add(payload)
    must_be_deleted = {t for t, values in allowed.items() if values == {b""}}
    must_have_value = {t for t, values in allowed.items() if b"" not in values}
    assert must_be_deleted, f"the seeded stream left no acknowledged delete to check ({context})"

    recovered = restart_after_crash(b)
    reader = Subscriber(mp.V311, persistent=False)
    reader.connect(b)
    try:
        reader.conn.subscribe([("dur/retained/#", 1)])
        reader.receive(until_seen={seq_of(v) for t in must_have_value if len(allowed[t]) == 1
                                   for v in allowed[t]})
    finally:
        reader.conn.close()
    state: dict[str, bytes] = {}
    for m in reader.messages:
        assert m["retain"], f"non-retained message {m} ({context})"
        assert m["topic"] not in state, f"two retained messages for {m['topic']} ({context})"
        state[m["topic"]] = m["payload"]
    report = (f"{context}; after the restart ({recovered}) {len(state):,} retained messages; "
              f"{len(must_have_value):,} topics must have one, {len(must_be_deleted):,} must "
              f"have none")
    wrong = {t: (state.get(t, b""), sorted(allowed[t])) for t in topics
             if state.get(t, b"") not in allowed[t]}
    resurrected = must_be_deleted & state.keys()
    assert not resurrected, (
        f"{len(resurrected)} acknowledged deletes undone, e.g. "
        f"{ {t: state[t] for t in sorted(resurrected)[:3]} }: {report}")
    assert not wrong, (f"{len(wrong)} topics hold a value that is not their last acknowledged "
                       f"one (nor sent after it), e.g. {dict(sorted(wrong.items())[:3])}: {report}")
    print(report)


# --------------------------------------------------------------------------- subscriptions

@pytest.mark.parametrize("version", [mp.V311, mp.V5], ids=["mqtt311", "mqtt5"])
def test_subscriptions_survive_kill(broker_factory, version):
    """SUBACK and UNSUBACK mean durable: kill -9 right after them; the resumed session
    (session present 1) receives on its subscriptions, with their QoS, without subscribing
    again, and nothing on the filter it unsubscribed."""
    b = broker_factory()
    t = "dur/subs"
    sub = Subscriber(version)
    sub.connect(b)
    assert sub.conn.subscribe([(f"{t}/a", 1), (f"{t}/+/b", 2), (f"{t}/gone", 1)]) == [1, 2, 1]
    sub.conn.send(mp.unsubscribe([f"{t}/gone"], packet_id=2, version=version))
    p = sub.conn.next(SLOW)
    assert p is not None and p.type == mp.UNSUBACK, f"expected UNSUBACK, got {p!r}"
    os.kill(b.pid, signal.SIGKILL)  # the client is still connected
    sub.conn.close()
    recovered = restart_after_crash(b)

    pub = Publisher(qos=1, version=version)
    pub.connect(b)
    pub.publish([(0, f"{t}/a", payload_of(0), False)])  # queued for the offline session
    pub2 = Publisher(qos=2, version=version)
    pub2.connect(b)
    try:
        assert sub.connect(b), f"session lost in the crash ({recovered})"
        pub.publish([(1, f"{t}/gone", payload_of(1), False), (2, f"{t}/a", payload_of(2), False)])
        pub2.publish([(3, f"{t}/x/b", payload_of(3), False)])
        sub.receive(until_seen={0, 2, 3})
    finally:
        sub.conn.close()
        pub.conn.close()
        pub2.conn.close()
    delivered = [(m["topic"], seq_of(m["payload"]), m["qos"]) for m in sub.messages]
    expected = [(f"{t}/a", 0, 1), (f"{t}/a", 2, 1), (f"{t}/x/b", 3, 2)]
    assert sorted(delivered, key=lambda d: d[1]) == expected and len(delivered) == 3, (
        f"after kill -9 and restart ({recovered}) expected the queued message and the live "
        f"ones on the kept subscriptions, with their QoS (1 and 2), and nothing on the "
        f"unsubscribed filter; got {delivered}")


# --------------------------------------------------------------------------- wills

def test_will_of_client_connected_at_kill_is_published(broker_factory):
    """A persistent client with a will is connected when the broker is killed: its connection
    ended without DISCONNECT, so after the restart its will is published, once, and reaches a
    persistent subscriber that was offline (and whose session was created after the client's,
    so it is recovered after it)."""
    b = broker_factory()
    will = mp.Will("dur/will", payload_of(7), qos=1)
    w = Connection.__new__(Connection)  # connect by hand: Connection has no will parameter
    w.version, w.client_id, w.buf, w.lost = mp.V311, new_client_id("dur-will"), bytearray(), False
    w.sock = socket.create_connection((b.host, b.mqtt_port), timeout=SLOW)
    w.send(mp.connect(w.client_id, version=mp.V311, clean=False, will=will))
    p = w.next(SLOW)
    assert p is not None and mp.parse_connack(p, mp.V311)[1] == 0, f"CONNACK {p!r}"
    sub = Subscriber(mp.V311)
    sub.connect(b)
    sub.conn.subscribe([("dur/will", 1)])
    sub.conn.disconnect()
    os.kill(b.pid, signal.SIGKILL)
    w.close()
    recovered = restart_after_crash(b)
    try:
        assert sub.connect(b), f"subscriber's session lost ({recovered})"
        sub.receive(until_seen={7})
    finally:
        sub.conn.close()
    got = [(m["topic"], m["payload"]) for m in sub.messages]
    assert got == [("dur/will", payload_of(7))], (
        f"expected the will of the client connected at the crash, once; got {got} "
        f"(recovered: {recovered})")


# --------------------------------------------------------------------------- none

def test_durability_none_keeps_nothing(broker_factory):
    """--durability none is memory only (like Mosquitto without persistence): no state file,
    and even a clean restart ends persistent sessions and retained messages."""
    b = broker_factory(extra_args=[contract.DURABILITY_FLAG, "none"])
    sub = Subscriber(mp.V5)
    sub.connect(b)
    sub.conn.subscribe([("dur/none", 1)])
    sub.conn.disconnect()
    pub = Publisher(qos=1)
    pub.connect(b)
    pub.publish([(0, "dur/none", payload_of(0), True)])
    assert pub.acked == {0}
    pub.conn.disconnect()
    b.restart()  # SIGTERM (exit 0 asserted), same data dir

    assert not (b.data_dir / contract.BROKER_STATE_FILE).exists(), (
        f"--durability none wrote {contract.BROKER_STATE_FILE}: {sorted(os.listdir(b.data_dir))}")
    try:
        assert not sub.connect(b), "session survived a restart with --durability none"
        sub.conn.subscribe([("dur/none", 1)])
        pub = Publisher(qos=1)
        pub.connect(b)
        pub.publish([(1, "dur/none", payload_of(1), False)])
        sub.receive(until_seen={1})
    finally:
        sub.conn.close()
    # A retained message would have come right after SUBACK, before the live one.
    assert [seq_of(m["payload"]) for m in sub.messages] == [1], (
        f"expected only the live message, got {sub.messages}")


# --------------------------------------------------------------------------- refusals

def _corrupt_header(path):
    with open(path, "r+b") as f:
        f.write(b"not a database, overwritten by the test")


def _corrupt_pages(path):
    page_size = struct.unpack(">H", path.read_bytes()[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    pages = path.stat().st_size // page_size
    with open(path, "r+b") as f:
        for page in range(1, pages):  # every b-tree page but the first (the file header)
            f.seek(page * page_size)
            f.write(b"\xff" * 64)


def _newer_schema(path):
    db = sqlite3.connect(path)
    try:
        db.execute(f"INSERT INTO {contract.MIGRATIONS_TABLE} (identifier) VALUES ('broker-v999')")
        db.commit()
    finally:
        db.close()


def _undo_newer_schema(path):
    db = sqlite3.connect(path)
    try:
        db.execute(f"DELETE FROM {contract.MIGRATIONS_TABLE} WHERE identifier = 'broker-v999'")
        db.commit()
    finally:
        db.close()


def _files(directory) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in sorted(os.listdir(directory))
            if (directory / name).is_file()}


@pytest.mark.parametrize("damage,words", [
    ("corrupt-header", ["not a database", "corrupt", "integrity", "cannot be opened"]),
    ("corrupt-pages", ["not a database", "corrupt", "integrity", "cannot be opened"]),
    ("newer-version", ["newer version"]),
], ids=["corrupt-header", "corrupt-pages", "newer-version"])
def test_unusable_state_file_stops_startup_untouched(broker_factory, damage, words):
    """A broker.sqlite that is corrupt, or from a newer Meridian (a migration it does not
    know), stops start-up: exit code 1, a message naming the file, no listener, and the file
    left byte for byte as it was. Once repaired, the broker starts with the state in it."""
    b = broker_factory()
    client_id = new_client_id("dur-keep")
    sub = Connection(b, client_id, mp.V311, clean=False)
    sub.subscribe([("dur/keep", 1)])
    sub.disconnect()
    b.stop()
    path = b.data_dir / contract.BROKER_STATE_FILE
    assert path.exists(), f"no {path} after a clean stop: {sorted(os.listdir(b.data_dir))}"
    original = path.read_bytes()
    {"corrupt-header": _corrupt_header, "corrupt-pages": _corrupt_pages,
     "newer-version": _newer_schema}[damage](path)
    before = _files(b.data_dir)
    assert before[contract.BROKER_STATE_FILE] != original

    argv = [str(brokers.meridian_binary()), *contract.SERVE_ARGS, "--data-dir", str(b.data_dir)]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                           timeout=contract.READY_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"still running {contract.READY_TIMEOUT:.0f}s after starting on a "
                             f"{damage} {path.name}; stdout: {e.stdout!r}") from None
    after = _files(b.data_dir)
    assert r.returncode == contract.STARTUP_FAILURE_EXIT, (
        f"exit code {r.returncode} with a {damage} {path.name} (expected "
        f"{contract.STARTUP_FAILURE_EXIT})\nstdout: {r.stdout}\nstderr: {r.stderr}")
    assert contract.READY_PREFIX + " " not in r.stdout, f"it started serving: {r.stdout!r}"
    assert path.name in r.stderr and any(w in r.stderr.lower() for w in words), (
        f"the message should name {path.name} and say why (one of {words}):\n{r.stderr}")
    assert after[path.name] == before[path.name], f"{path.name} was modified"
    changed = {name for name in before.keys() | after.keys()
               if before.get(name) != after.get(name) and not
               (name.endswith(("-shm", "-wal")) and not after.get(name))}
    assert not changed, f"files in the data dir changed: {sorted(changed)}"

    if damage == "newer-version":
        _undo_newer_schema(path)
    else:
        path.write_bytes(original)
    b.start()
    sub = Connection(b, client_id, mp.V311, clean=False)
    sub.close()
    assert sub.session_present, "the repaired file does not hold the session any more"

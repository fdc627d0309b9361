#!/usr/bin/env python3
"""Fill a broker with persistent sessions and queued messages, or drain them after a restart.

    restart_sessions.py fill  --port P [--sessions 1000] [--per-session 100] [--payload-size 64]
    restart_sessions.py drain --port P [--sessions 1000] [--expect N]

fill: SESSIONS clients connect with clean session 0 (MQTT 3.1.1, client ids
  bench-restart-0000, ...), each subscribes to its own topic bench/restart/0000, ... with QoS 1
  and disconnects; then PUBLISHERS clean-session clients publish PER_SESSION QoS 1 messages to
  every one of those topics (round robin over the topics, WINDOW unacknowledged each) and wait
  for every PUBACK. So SESSIONS x PER_SESSION messages are queued for offline persistent
  sessions.
drain: the same client ids reconnect with clean session 0 and receive (PUBACK each) until
  EXPECT messages arrived or nothing came for --idle seconds. It reports how many sessions were
  still there (CONNACK session present) and how many messages arrived.

Prints one JSON object on stdout; exits 1 if something went wrong (a refused CONNECT or SUBSCRIBE,
a PUBACK missing, a connection lost). Python standard library only, raw MQTT 3.1.1, so the same
bytes go to any broker. Used by scripts/bench-broker's restart scenarios.
"""
import argparse
import json
import selectors
import socket
import struct
import sys
import time

CLIENT_ID = "bench-restart-%04d"
MODE = ["fill"]  # for the JSON of a failure
TOPIC = "bench/restart/%04d"


def varint(n):
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mqtt_str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def packet(first, body):
    return bytes([first]) + varint(len(body)) + body


def connect(client_id, clean):
    return packet(0x10, mqtt_str("MQTT") + bytes([4, 0x02 if clean else 0x00]) + struct.pack("!H", 300)
                  + mqtt_str(client_id))


def subscribe(pid, topic, qos):
    return packet(0x82, struct.pack("!H", pid) + mqtt_str(topic) + bytes([qos]))


def publish(topic, payload, pid):
    return packet(0x32, mqtt_str(topic) + struct.pack("!H", pid) + payload)


def puback(pid):
    return b"\x40\x02" + struct.pack("!H", pid)


DISCONNECT = b"\xe0\x00"


class Conn:
    """A non-blocking socket with an input buffer split into MQTT packets."""

    def __init__(self, host, port, index):
        self.index = index
        self.sock = socket.create_connection((host, port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.pending = []  # packets split off but not yet handled
        self.closed = False

    def packets(self):
        """Every complete packet received so far, as (first byte, body)."""
        out, self.pending = self.pending, []
        buf = self.buf
        while len(buf) >= 2:
            n, mult, i = 0, 1, 1
            while True:
                if i >= len(buf):
                    return out
                b = buf[i]
                n += (b & 0x7F) * mult
                mult *= 128
                i += 1
                if not b & 0x80:
                    break
            if len(buf) < i + n:
                return out
            out.append((buf[0], bytes(buf[i:i + n])))
            del buf[:i + n]
        return out

    def read_some(self):
        try:
            chunk = self.sock.recv(262144)
        except BlockingIOError:
            return True
        except OSError:
            chunk = b""
        if not chunk:
            self.closed = True
            return False
        self.buf += chunk
        return True


def fail(msg, **result):
    result["error"] = msg
    result.setdefault("scenario", "restart-" + MODE[0])
    print(json.dumps(result), flush=True)
    sys.exit(1)


def wait_each(conns, want_type, what, timeout):
    """One packet of `want_type` (high nibble) from every connection; -> {index: (first, body)}."""
    sel = selectors.DefaultSelector()
    for c in conns:
        c.sock.setblocking(False)
        sel.register(c.sock, selectors.EVENT_READ, c)
    got = {}
    deadline = time.monotonic() + timeout
    while len(got) < len(conns):
        if time.monotonic() > deadline:
            fail("%d of %d %s missing after %.0f s" % (len(conns) - len(got), len(conns), what, timeout))
        for key, _ in sel.select(0.5):
            c = key.data
            if not c.read_some():
                fail("connection %d closed while waiting for %s" % (c.index, what))
            packets = c.packets()
            for i, (first, body) in enumerate(packets):
                if first >> 4 == want_type:
                    got[c.index] = (first, body)
                    c.pending = packets[i + 1:]  # what came right after it
                    sel.unregister(c.sock)
                    break
    sel.close()
    for c in conns:
        c.sock.setblocking(True)
    return got


def connect_all(a, clean):
    conns = [Conn(a.host, a.port, i) for i in range(a.sessions)]
    for c in conns:
        c.sock.sendall(connect(CLIENT_ID % c.index, clean))
    acks = wait_each(conns, 2, "CONNACK", a.timeout)
    refused = [i for i, (_, body) in acks.items() if body[1] != 0]
    if refused:
        fail("CONNECT refused for %d sessions (e.g. %s)" % (len(refused), CLIENT_ID % refused[0]))
    present = sum(1 for _, body in acks.values() if body[0] & 1)
    return conns, present


def run_fill(a):
    t0 = time.monotonic()
    conns, present = connect_all(a, clean=False)
    if present:
        fail("%d sessions already existed: fill needs a fresh broker" % present)
    for c in conns:
        c.sock.sendall(subscribe(1, TOPIC % c.index, 1))
    subacks = wait_each(conns, 9, "SUBACK", a.timeout)
    bad = [i for i, (_, body) in subacks.items() if body[2] != 1]
    if bad:
        fail("SUBACK did not grant QoS 1 for %d sessions" % len(bad))
    for c in conns:
        c.sock.sendall(DISCONNECT)
        c.sock.close()
    t_sessions = time.monotonic() - t0

    # publishers: each takes its share of the (round, session) sequence, windowed QoS 1
    total = a.sessions * a.per_session
    payload = b"x" * a.payload_size
    pubs = [Conn(a.host, a.port, i) for i in range(a.publishers)]
    for p in pubs:
        p.sock.sendall(connect("bench-restart-pub-%d" % p.index, True))
    wait_each(pubs, 2, "publisher CONNACK", a.timeout)
    sel = selectors.DefaultSelector()
    state = {}
    for p in pubs:
        p.sock.setblocking(False)
        sel.register(p.sock, selectors.EVENT_READ, p)
        # this publisher's messages: every PUBLISHERS-th of the round-robin sequence
        state[p.index] = {"next": p.index, "inflight": {}, "pid": 0}
    acked = 0
    t1 = time.monotonic()
    deadline = t1 + a.timeout

    def fill_window(p):
        st = state[p.index]
        out = []
        while len(st["inflight"]) < a.window and st["next"] < total:
            k = st["next"]
            st["next"] += a.publishers
            st["pid"] = st["pid"] % 65535 + 1
            st["inflight"][st["pid"]] = k
            out.append(publish(TOPIC % (k % a.sessions), payload, st["pid"]))
        if out:
            p.sock.setblocking(True)
            p.sock.sendall(b"".join(out))
            p.sock.setblocking(False)

    for p in pubs:
        fill_window(p)
    while acked < total:
        if time.monotonic() > deadline:
            fail("%d of %d PUBACKs missing after %.0f s" % (total - acked, total, a.timeout),
                 acked=acked)
        for key, _ in sel.select(0.5):
            p = key.data
            if not p.read_some():
                fail("publisher %d lost its connection" % p.index, acked=acked)
            st = state[p.index]
            for first, body in p.packets():
                if first >> 4 == 4:
                    if st["inflight"].pop(struct.unpack_from("!H", body)[0], None) is not None:
                        acked += 1
            fill_window(p)
    t_publish = time.monotonic() - t1
    for p in pubs:
        p.sock.setblocking(True)
        p.sock.sendall(DISCONNECT)
        p.sock.close()
    return {"scenario": "restart-fill", "sessions": a.sessions, "per_session": a.per_session, "published": total,
            "acked": acked, "sessions_s": round(t_sessions, 3), "publish_s": round(t_publish, 3),
            "publish_rate": round(total / t_publish, 1) if t_publish else None}


def run_drain(a):
    t0 = time.monotonic()
    conns, present = connect_all(a, clean=False)
    t_connected = time.monotonic() - t0
    sel = selectors.DefaultSelector()
    for c in conns:
        c.sock.setblocking(False)
        sel.register(c.sock, selectors.EVENT_READ, c)
        c.count = 0
    received = 0

    def handle(c):  # count and acknowledge every complete PUBLISH in c's buffer
        nonlocal received
        acks = []
        for first, body in c.packets():
            if first >> 4 == 3:
                c.count += 1
                received += 1
                if (first >> 1) & 3:
                    n = struct.unpack_from("!H", body)[0]
                    acks.append(puback(struct.unpack_from("!H", body, 2 + n)[0]))
        if acks:
            c.sock.setblocking(True)
            c.sock.sendall(b"".join(acks))
            c.sock.setblocking(False)

    for c in conns:  # what came in with the CONNACK
        handle(c)
    last = time.monotonic()
    deadline = t0 + a.timeout
    lost = 0
    while True:
        now = time.monotonic()
        if (a.expect and received >= a.expect) or now - last > a.idle or now > deadline:
            break
        for key, _ in sel.select(0.2):
            c = key.data
            if not c.read_some():
                sel.unregister(c.sock)
                lost += 1
                continue
            handle(c)
            last = time.monotonic()
    t_drain = last - t0
    for c in conns:
        try:
            c.sock.setblocking(True)
            c.sock.sendall(DISCONNECT)
        except OSError:
            pass
        c.sock.close()
    counts = [c.count for c in conns]
    out = {"scenario": "restart-drain", "sessions": a.sessions, "sessions_present": present, "received": received,
           "per_session_min": min(counts), "per_session_max": max(counts),
           "connect_s": round(t_connected, 3), "drain_s": round(t_drain, 3)}
    if lost:
        fail("%d connections closed by the broker while draining" % lost, **out)
    return out


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("mode", choices=("fill", "drain"))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--sessions", type=int, default=1000)
    ap.add_argument("--per-session", type=int, default=100, help="fill: messages queued per session")
    ap.add_argument("--payload-size", type=int, default=64)
    ap.add_argument("--publishers", type=int, default=10, help="fill: publishing connections")
    ap.add_argument("--window", type=int, default=100, help="fill: unacknowledged QoS 1 per publisher")
    ap.add_argument("--expect", type=int, default=0, help="drain: stop once this many arrived")
    ap.add_argument("--idle", type=float, default=2.0, help="drain: stop after this long without a message")
    ap.add_argument("--timeout", type=float, default=300.0, help="give up after this long, s")
    a = ap.parse_args(argv)
    MODE[0] = a.mode
    result = run_fill(a) if a.mode == "fill" else run_drain(a)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

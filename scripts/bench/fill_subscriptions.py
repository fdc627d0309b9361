#!/usr/bin/env python3
"""Fill an MQTT broker with many subscriptions on idle connections and hold them open.

    fill_subscriptions.py --port P [--connections 1000] [--per-connection 100] [--wildcard-every 10]

CONNECTIONS clean-session clients (MQTT 3.1.1, client ids PREFIX-0000, ...) connect, wait for their
CONNACK, then send PER_CONNECTION SUBSCRIBE packets back to back (one filter each, QoS 0 by default;
--filters-per-subscribe groups them) and wait for every SUBACK; --concurrency of them are being set
up at any moment. Every filter is distinct and lies under the topic root `filler` (or `+/filler`),
so none matches anything else's traffic, e.g. mqttload.py's `bench/...` topics. Of the
PER_CONNECTION filters of connection c, filter i is

    filler/<c>/<i>/telemetry      exact (all but every WILDCARD_EVERY-th)
    filler/<c>/+/status/<i>       \\
    filler/<c>/<i>/#               > every WILDCARD_EVERY-th filter, one of these three in turn
    +/filler/<c>/<i>              /

(1,000 x 100 with the defaults: 100,000 subscriptions, 90,000 exact and 10,000 with wildcards.)

Once every SUBACK is in (all granted), it prints one line on stdout and flushes it:

    ready connections=1000 subscriptions=100000 exact=90000 wildcard=10000 setup_s=... subscribe_rate=...

and then holds the connections open, idle (a PINGREQ on each every KEEPALIVE/2 s; 600 s by
default, so none in a short run), reading whatever arrives, until SIGTERM or SIGINT (or --hold S
elapsed). Then it sends DISCONNECT on each connection, closes them and prints one JSON object on
stdout: the setup figures, how many connections were still open at the end (`open_at_end`; the
broker closed `closed_by_broker`), and how many PUBLISH packets arrived on them (`stray_publishes`,
which must be 0: no filter matches the traffic). Exit status 0; 1 if the setup failed (a refused
CONNECT or SUBSCRIBE, a lost connection, --setup-timeout): then no ready line, and the JSON has
`error`. Python standard library only, raw MQTT 3.1.1 bytes, so the same load hits any broker.
Used by scripts/bench-broker's subs100k group.
"""
import argparse
import errno
import json
import os
import resource
import selectors
import signal
import socket
import struct
import sys
import time

STOP = []  # set by SIGTERM / SIGINT


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


def connect_packet(client_id, keepalive):
    return packet(0x10, mqtt_str("MQTT") + bytes([4, 0x02]) + struct.pack("!H", keepalive)
                  + mqtt_str(client_id))


def subscribe_packet(pid, filters, qos):
    return packet(0x82, struct.pack("!H", pid) + b"".join(mqtt_str(f) + bytes([qos]) for f in filters))


PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"


def filters_of(c, n, wildcard_every):
    """The n distinct filters of connection c; (filters, wildcard count)."""
    out, wild = [], 0
    for i in range(n):
        if wildcard_every and i % wildcard_every == wildcard_every - 1:
            kind = (i // wildcard_every) % 3
            out.append(("filler/%04d/+/status/%03d", "filler/%04d/%03d/#", "+/filler/%04d/%03d")[kind] % (c, i))
            wild += 1
        else:
            out.append("filler/%04d/%03d/telemetry" % (c, i))
    return out, wild


class Conn:
    __slots__ = ("idx", "sock", "state", "inbuf", "outbuf", "subacks_due", "granted", "t0")

    def __init__(self, idx):
        self.idx = idx
        self.sock = None
        self.state = "new"      # new -> connecting -> connack -> subscribing -> held | closed
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.subacks_due = {}   # packet id -> number of filters in that SUBSCRIBE
        self.granted = 0
        self.t0 = 0.0


class SetupError(Exception):
    pass


class Filler:
    def __init__(self, a):
        self.a = a
        self.sel = selectors.DefaultSelector()
        self.conns = [Conn(i) for i in range(a.connections)]
        self.stats = {"stray_publishes": 0, "pingresp": 0, "closed_by_broker": 0, "refused_filters": 0}
        self.held = 0
        self.connacked = 0

    # -- I/O -------------------------------------------------------------------------------------
    def _events(self, c):
        return selectors.EVENT_READ | (selectors.EVENT_WRITE if c.outbuf or c.state == "connecting" else 0)

    def _update(self, c):
        self.sel.modify(c.sock, self._events(c), c)

    def _send(self, c, data):
        c.outbuf += data
        self._flush(c)

    def _flush(self, c):
        while c.outbuf:
            try:
                n = c.sock.send(c.outbuf)
            except (BlockingIOError, InterruptedError):
                break
            del c.outbuf[:n]
        self._update(c)

    def _close(self, c, by_broker):
        if c.state == "closed":
            return
        if c.state == "held":
            self.held -= 1
        c.state = "closed"
        if by_broker:
            self.stats["closed_by_broker"] += 1
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()

    def start(self, c):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        rc = s.connect_ex((self.a.host, self.a.port))
        if rc not in (0, errno.EINPROGRESS):
            s.close()
            raise SetupError("connection %d: connect: %s" % (c.idx, os.strerror(rc)))
        c.sock, c.state, c.t0 = s, "connecting", time.monotonic()
        self.sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, c)

    def on_writable(self, c):
        if c.state == "connecting":
            err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise SetupError("connection %d: connect: %s" % (c.idx, os.strerror(err)))
            c.state = "connack"
            self._send(c, connect_packet("%s-%04d" % (self.a.client_id_prefix, c.idx), self.a.keepalive))
        else:
            self._flush(c)

    def on_readable(self, c):
        try:
            data = c.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            data, err = b"", e
        else:
            err = None
        if not data:
            was = c.state
            self._close(c, by_broker=True)
            if was == "connecting":
                raise SetupError("connection %d: connect failed%s" % (c.idx, ": %s" % err if err else ""))
            if was != "held":
                raise SetupError("connection %d closed by the broker while %s%s"
                                 % (c.idx, {"connack": "waiting for CONNACK", "subscribing": "subscribing"}
                                    .get(was, was), ": %s" % err if err else ""))
            return
        c.inbuf += data
        self.parse(c)

    def parse(self, c):
        buf, i, n = c.inbuf, 0, len(c.inbuf)
        while i + 2 <= n:
            rl, mult, j = 0, 1, i + 1
            while j < n:
                b = buf[j]
                rl += (b & 0x7F) * mult
                mult *= 128
                j += 1
                if b < 0x80:
                    break
            else:
                break  # remaining length incomplete
            if buf[j - 1] >= 0x80 or j + rl > n:
                break
            self.on_packet(c, buf[i], bytes(buf[j:j + rl]))
            i = j + rl
        del buf[:i]

    def on_packet(self, c, b0, body):
        t = b0 >> 4
        if t == 2:  # CONNACK
            if c.state != "connack" or len(body) < 2:
                raise SetupError("connection %d: unexpected CONNACK" % c.idx)
            if body[1] != 0:
                raise SetupError("connection %d: CONNECT refused, return code %d" % (c.idx, body[1]))
            c.state = "subscribing"
            self.connacked += 1
            flts, _ = filters_of(c.idx, self.a.per_connection, self.a.wildcard_every)
            k, pid, out = self.a.filters_per_subscribe, 0, bytearray()
            for start in range(0, len(flts), k):
                pid += 1
                chunk = flts[start:start + k]
                c.subacks_due[pid] = len(chunk)
                out += subscribe_packet(pid, chunk, self.a.qos)
            self._send(c, out)
        elif t == 9:  # SUBACK
            if len(body) < 3:
                raise SetupError("connection %d: short SUBACK" % c.idx)
            pid = struct.unpack_from("!H", body)[0]
            due = c.subacks_due.pop(pid, None)
            codes = body[2:]
            if due is None or len(codes) != due:
                raise SetupError("connection %d: SUBACK for packet id %d unexpected (%d codes)"
                                 % (c.idx, pid, len(codes)))
            bad = sum(1 for x in codes if x >= 0x80)
            if bad:
                self.stats["refused_filters"] += bad
                raise SetupError("connection %d: %d filter(s) refused in SUBACK (return code 0x80)" % (c.idx, bad))
            c.granted += due
            if not c.subacks_due and c.state == "subscribing":
                c.state = "held"
                self.held += 1
        elif t == 3:  # PUBLISH: nothing should match these filters
            self.stats["stray_publishes"] += 1
            qos = (b0 >> 1) & 3
            if qos == 1 and len(body) >= 2:
                tl = struct.unpack_from("!H", body)[0]
                if len(body) >= 4 + tl:
                    self._send(c, b"\x40\x02" + body[2 + tl:4 + tl])
        elif t == 13:  # PINGRESP
            self.stats["pingresp"] += 1
        else:
            raise SetupError("connection %d: unexpected packet type %d" % (c.idx, t))

    def poll(self, timeout):
        for key, ev in self.sel.select(timeout):
            c = key.data
            if ev & selectors.EVENT_READ and c.state != "closed":
                self.on_readable(c)
            if ev & selectors.EVENT_WRITE and c.state != "closed":
                self.on_writable(c)

    # -- phases ----------------------------------------------------------------------------------
    def setup(self):
        a = self.a
        t0 = time.monotonic()
        deadline = t0 + a.setup_timeout
        nxt, t_connected = 0, None
        while self.held < len(self.conns):
            if STOP:
                raise SetupError("interrupted during the setup")
            if time.monotonic() > deadline:
                raise SetupError("setup not finished after %.0f s (%d of %d connections done)"
                                 % (a.setup_timeout, self.held, len(self.conns)))
            in_setup = nxt - self.held  # a connection closed during the setup has raised already
            while nxt < len(self.conns) and in_setup < a.concurrency:
                self.start(self.conns[nxt])
                nxt += 1
                in_setup += 1
            self.poll(0.5)
            if t_connected is None and self.connacked == len(self.conns):
                t_connected = time.monotonic()
        t1 = time.monotonic()
        subs = sum(c.granted for c in self.conns)
        _, wild1 = filters_of(0, a.per_connection, a.wildcard_every)
        wild = wild1 * len(self.conns)
        return {"connections": len(self.conns), "subscriptions": subs, "exact": subs - wild, "wildcard": wild,
                "setup_s": round(t1 - t0, 3), "last_connack_s": round((t_connected or t1) - t0, 3),
                "subscribe_rate": round(subs / (t1 - t0)) if t1 > t0 else None}

    def hold(self):
        a = self.a
        t_end = time.monotonic() + a.hold if a.hold else None
        ping_every = a.keepalive / 2 if a.keepalive else None
        next_ping = time.monotonic() + ping_every if ping_every else None
        while not STOP and (t_end is None or time.monotonic() < t_end):
            self.poll(0.25)
            if next_ping and time.monotonic() >= next_ping:
                for c in self.conns:
                    if c.state == "held":
                        self._send(c, PINGREQ)
                next_ping += ping_every

    def finish(self):
        open_at_end = sum(1 for c in self.conns if c.state == "held")
        for c in self.conns:
            if c.state in ("closed", "new"):
                continue
            try:
                c.sock.setblocking(True)
                c.sock.settimeout(1.0)
                c.sock.sendall(bytes(c.outbuf) + DISCONNECT)
            except OSError:
                pass
            self._close(c, by_broker=False)
        return open_at_end


def on_signal(_signum, _frame):
    STOP.append(1)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--per-connection", type=int, default=100, help="filters per connection (default 100)")
    ap.add_argument("--wildcard-every", type=int, default=10,
                    help="every Nth filter has a wildcard (default 10: 10%%); 0: none")
    ap.add_argument("--filters-per-subscribe", type=int, default=1,
                    help="filters per SUBSCRIBE packet (default 1)")
    ap.add_argument("--qos", type=int, default=0, choices=(0, 1, 2), help="requested QoS (default 0)")
    ap.add_argument("--keepalive", type=int, default=600, help="CONNECT keep alive, s (default 600; 0: none)")
    ap.add_argument("--concurrency", type=int, default=100, help="connections being set up at once (default 100)")
    ap.add_argument("--client-id-prefix", default="fill%d" % os.getpid())
    ap.add_argument("--setup-timeout", type=float, default=300.0, metavar="S")
    ap.add_argument("--hold", type=float, default=0.0, metavar="S", help="hold this long (default: until a signal)")
    a = ap.parse_args(argv)
    if a.connections < 1 or a.per_connection < 1 or a.filters_per_subscribe < 1 or a.concurrency < 1:
        ap.error("--connections, --per-connection, --filters-per-subscribe and --concurrency must be >= 1")
    if a.per_connection > 1000 or a.connections > 10000:
        ap.error("at most 10,000 connections and 1,000 filters per connection (the names are 4 and 3 digits)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < a.connections + 64:
        want = a.connections + 64 if hard == resource.RLIM_INFINITY else min(hard, a.connections + 64)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            pass
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)

    f = Filler(a)
    result = {"tool": "fill_subscriptions", "host": a.host, "port": a.port,
              "per_connection": a.per_connection, "wildcard_every": a.wildcard_every,
              "filters_per_subscribe": a.filters_per_subscribe, "qos": a.qos, "keepalive": a.keepalive}
    code = 0
    try:
        result.update(f.setup())
        print("ready " + " ".join("%s=%s" % (k, result[k]) for k in
                                  ("connections", "subscriptions", "exact", "wildcard", "setup_s",
                                   "subscribe_rate")), flush=True)
        t_hold = time.monotonic()
        f.hold()
        result["held_s"] = round(time.monotonic() - t_hold, 3)
    except (SetupError, OSError) as e:
        result["error"] = str(e)
        code = 1
    result["open_at_end"] = f.finish()
    result.update(f.stats)
    print(json.dumps(result), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""telemetry_load - MQTT telemetry ingest load for scripts/bench-telemetry (Python 3 standard library only).

Modelled on ../shared/bench/mqttload.py (byte-level MQTT 3.1.1, pre-encoded packets, large
non-blocking send() calls, PUBACKs counted by bytes), but every device sends its own telemetry:

  * one connection per device, authenticated with the device's access token as user name;
  * QoS 1 PUBLISH to devices/{id}/telemetry with an in-flight window per device: Meridian acknowledges
    a telemetry PUBLISH once its samples are durable, so acknowledged samples/s = durable samples/s;
  * every payload is realistic JSON telemetry: an array of --entries {"ts":..,"values":{...}} objects
    with --keys keys each (values printed with 2 decimals, as sensors do), with distinct, increasing
    timestamps per device (--ts-step ms apart), so no sample overwrites another and the store must
    hold every acknowledged one;
  * all packets are encoded before the clock starts (enough for --budget-rate samples/s over the
    whole run); a device that runs out stops early and the output says so.

Input: --devices FILE, a JSON list of {"id": ..., "token": ...}. Output: one JSON object on stdout
(rates over the measurement window, totals after draining every PUBACK, per device the messages
acknowledged and their timestamp range), and a readable line on stderr.
"""
import argparse
import json
import math
import os
import random
import resource
import selectors
import socket
import struct
import sys
import time

mono = time.monotonic
EV_R = selectors.EVENT_READ
EV_W = selectors.EVENT_WRITE


class ProtocolError(Exception):
    pass


def enc_varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def dec_varint(data, i, n):
    val = 0
    shift = 0
    j = i
    while j < n:
        b = data[j]
        val |= (b & 0x7F) << shift
        j += 1
        if b < 0x80:
            return val, j
        shift += 7
        if shift > 21:
            raise ProtocolError("malformed variable byte integer")
    return None, i


def enc_str(s):
    if isinstance(s, str):
        s = s.encode()
    return struct.pack("!H", len(s)) + s


def pkt_connect(client_id, keepalive, username):
    flags = 0x02 | 0x80  # clean session, user name
    vh = enc_str(b"MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive)
    body = vh + enc_str(client_id) + enc_str(username)
    return b"\x10" + enc_varint(len(body)) + body


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by the server")
        buf += chunk
    return bytes(buf)


def read_packet(sock):
    b0 = recv_exact(sock, 1)[0]
    rl = 0
    shift = 0
    while True:
        b = recv_exact(sock, 1)[0]
        rl |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift > 21:
            raise ProtocolError("bad remaining length")
    return b0, recv_exact(sock, rl) if rl else b""


DISCONNECT = b"\xe0\x00"


# ----------------------------------------------------------------------------------------
# payloads
# ----------------------------------------------------------------------------------------
def value_pool(n, base, amplitude, noise, seed):
    """Printed sensor readings (2 decimals): a slow sine with gaussian noise."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        v = base + amplitude * math.sin(i / n * 6.283185307179586) + rnd.gauss(0, noise)
        out.append(b"%.2f" % v)
    return out


KEY_MODELS = [(b"temperature", 21.0, 2.0, 0.05), (b"humidity", 45.0, 5.0, 0.2), (b"pressure", 1013.0, 3.0, 0.05),
              (b"co2", 600.0, 80.0, 2.0), (b"voltage", 3.6, 0.1, 0.005), (b"current", 0.5, 0.1, 0.01),
              (b"power", 120.0, 20.0, 1.0), (b"rssi", -70.0, 5.0, 1.0), (b"battery", 80.0, 10.0, 0.1),
              (b"lux", 300.0, 200.0, 5.0)]


class Device:
    __slots__ = ("id", "token", "sock", "blob", "offsets", "count", "sent_b", "acked", "rx", "dead",
                 "writing", "w_acked", "e_acked", "first_ts", "ts_step_msg", "exhausted")

    def __init__(self, spec):
        self.id = spec["id"]
        self.token = spec["token"]
        self.sock = None
        self.sent_b = 0
        self.acked = 0
        self.rx = b""
        self.dead = None
        self.writing = False
        self.w_acked = self.e_acked = 0
        self.exhausted = False


def encode_template(a, keys, pools, ts0, count, id_len):
    """`count` QoS 1 PUBLISH packets (packet ids 1..65535 in turn) to devices/<placeholder>/telemetry,
    concatenated, with their end offsets; the placeholder (`~` × id_len) is replaced by each device's
    id (every device sends the same timestamps and values: its own series)."""
    placeholder = b"~" * id_len
    topic = enc_str(b"devices/" + placeholder + b"/telemetry")
    n_pool = len(pools[0])
    values = [b",".join(b'"%s":%s' % (k, pools[j][i]) for j, k in enumerate(keys)) for i in range(n_pool)]
    n_entries = count * a.entries
    values = (values * (n_entries // n_pool + 1))[:n_entries]
    step = a.ts_step
    entries = [b'{"ts":%d,"values":{%s}}' % tv for tv in zip(range(ts0, ts0 + n_entries * step, step), values)]
    e = a.entries
    parts = []
    offsets = [0]
    total = 0
    for i in range(count):
        body = topic + struct.pack("!H", i % 65535 + 1) + b"[" + b",".join(entries[i * e:(i + 1) * e]) + b"]"
        pkt = b"\x32" + enc_varint(len(body)) + body
        parts.append(pkt)
        total += len(pkt)
        offsets.append(total)
    return placeholder, b"".join(parts), offsets


def count_pubacks(dev, data):
    """PUBACKs in data (a partial packet at the end is kept for the next read)."""
    if dev.rx:
        data = dev.rx + data
        dev.rx = b""
    n = len(data)
    if n % 4 == 0 and data[0::4] == b"\x40" * (n // 4) and data[1::4] == b"\x02" * (n // 4):
        return n // 4
    acks = 0
    i = 0
    while i < n:
        b0 = data[i]
        rl, j = dec_varint(data, i + 1, n)
        if rl is None or j + rl > n:
            dev.rx = bytes(data[i:])
            break
        t = b0 >> 4
        if t == 4:
            acks += 1
        elif t == 14:
            dev.dead = "DISCONNECT from the server"
        i = j + rl
    return acks


def proc_cpu_s(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
        fields = st[st.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def self_cpu_s():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def bisect_right(offsets, x):
    lo, hi = 0, len(offsets)
    while lo < hi:
        mid = (lo + hi) // 2
        if offsets[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo


def run(a):
    with open(a.devices) as f:
        specs = json.load(f)
    if not specs:
        raise SystemExit("telemetry_load: no devices in %s" % a.devices)
    if a.cpus:
        os.sched_setaffinity(0, {int(c) for c in a.cpus.split(",")})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < len(specs) + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, len(specs) + 1024), hard))
    keys = [m[0] for m in KEY_MODELS[:a.keys]]
    pools = [value_pool(4096, m[1], m[2], m[3], seed=i) for i, m in enumerate(KEY_MODELS[:a.keys])]
    samples_per_msg = a.entries * a.keys
    devs = [Device(s) for s in specs]
    span = a.warmup + a.duration
    per_dev = int(a.budget_rate * span * 1.2 / samples_per_msg / len(devs)) + a.window + 1
    t_enc = mono()
    ts0 = a.ts_start
    templates = {}
    for d in devs:
        n = len(d.id.encode())
        if n not in templates:
            templates[n] = encode_template(a, keys, pools, ts0, per_dev, n)
        placeholder, blob, offsets = templates[n]
        d.blob = memoryview(blob.replace(placeholder, d.id.encode()))
        d.offsets = offsets
        d.count = per_dev
        d.first_ts = ts0
    templates.clear()
    encode_s = mono() - t_enc
    blob_bytes = sum(len(d.blob) for d in devs)

    # connect every device (its token as user name)
    t_conn = mono()
    for i, d in enumerate(devs):
        s = socket.create_connection((a.host, a.port), timeout=a.setup_timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(pkt_connect("bench-%s" % d.id[:40], a.keepalive, d.token))
        b0, body = read_packet(s)
        if b0 >> 4 != 2 or len(body) < 2:
            raise SystemExit("telemetry_load: expected CONNACK for device %s, got 0x%02x" % (d.id, b0))
        if body[1] != 0:
            raise SystemExit("telemetry_load: CONNACK refused device %s with code %d" % (d.id, body[1]))
        s.setblocking(False)
        d.sock = s
    connect_s = mono() - t_conn

    sel = selectors.DefaultSelector()
    window = a.window
    for d in devs:
        d.writing = True
        sel.register(d.sock, EV_R | EV_W, d)
    nap_below = max(8, window * len(devs) // 8)
    t0 = mono()
    t_ws = t0 + a.warmup
    t_end = t_ws + a.duration
    in_window = False
    cpu_ws = srv_ws = None
    errors = []
    select = sel.select
    while True:
        now = mono()
        if now >= t_end:
            break
        if not in_window and now >= t_ws:
            in_window = True
            cpu_ws = self_cpu_s()
            srv_ws = proc_cpu_s(a.server_pid) if a.server_pid else None
            t_ws = now
            for d in devs:
                d.w_acked = d.acked
        round_acks = 0
        for key, mask in select(min(0.05, t_end - now)):
            d = key.data
            if mask & EV_R:
                try:
                    data = d.sock.recv(262144)
                except BlockingIOError:
                    data = None
                except OSError as e:
                    data = b""
                    d.dead = str(e)
                if data == b"":
                    d.dead = d.dead or "closed by the server"
                    sel.unregister(d.sock)
                    errors.append("device %s: %s" % (d.id, d.dead))
                    continue
                if data:
                    n = count_pubacks(d, data)
                    if n:
                        round_acks += n
                        d.acked += n
                        if not d.writing and d.sent_b < d.offsets[min(d.acked + window, d.count)]:
                            d.writing = True
                            sel.modify(d.sock, EV_R | EV_W, d)
            if mask & EV_W and not d.dead:
                limit = d.offsets[min(d.acked + window, d.count)]
                if d.sent_b >= limit:
                    if d.sent_b >= d.offsets[-1]:
                        d.exhausted = True
                    d.writing = False
                    sel.modify(d.sock, EV_R, d)
                    continue
                try:
                    n = d.sock.send(d.blob[d.sent_b:limit])
                except BlockingIOError:
                    continue
                except OSError as e:
                    d.dead = str(e)
                    errors.append("device %s: %s" % (d.id, e))
                    sel.unregister(d.sock)
                    continue
                d.sent_b += n
        if round_acks < nap_below:
            time.sleep(a.poll_ms / 1000.0)
    t_we = mono()
    cpu_we = self_cpu_s()
    srv_we = proc_cpu_s(a.server_pid) if a.server_pid else None
    if not in_window:
        cpu_ws, t_ws = cpu_we, t_we
    for d in devs:
        d.e_acked = d.acked
    # finish a partly written packet, then collect every outstanding PUBACK (bounded)
    for d in devs:
        if d.dead:
            continue
        end = d.offsets[bisect_right(d.offsets, d.sent_b - 1)] if d.sent_b else 0
        if end > d.sent_b:
            try:
                d.sock.setblocking(True)
                d.sock.settimeout(5.0)
                d.sock.sendall(d.blob[d.sent_b:end])
                d.sent_b = end
                d.sock.setblocking(False)
            except OSError as e:
                d.dead = str(e)
                errors.append("device %s finish: %s" % (d.id, e))
        if d.writing and not d.dead:
            d.writing = False
            sel.modify(d.sock, EV_R, d)
    t_drain = mono()
    deadline = t_drain + a.drain_max
    while mono() < deadline:
        pending = [d for d in devs if not d.dead and d.acked < bisect_right(d.offsets, d.sent_b) - 1]
        if not pending:
            break
        for key, mask in sel.select(0.1):
            d = key.data
            try:
                data = d.sock.recv(262144)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                d.dead = "closed while draining"
                sel.unregister(d.sock)
                continue
            d.acked += count_pubacks(d, data)
    drain_s = mono() - t_drain
    per_device = []
    for d in devs:
        sent = bisect_right(d.offsets, d.sent_b) - 1
        if not d.dead:
            try:
                d.sock.setblocking(True)
                d.sock.settimeout(2.0)
                d.sock.sendall(DISCONNECT)
            except OSError:
                pass
        try:
            d.sock.close()
        except OSError:
            pass
        per_device.append({"id": d.id, "sent": sent, "acked": d.acked, "first_ts": d.first_ts,
                           "last_ts": d.first_ts + max(0, sent * a.entries - 1) * a.ts_step})
    sel.close()
    window_s = t_we - t_ws
    acked_window = sum(d.e_acked - d.w_acked for d in devs)
    out = {
        "protocol": "mqtt", "devices": len(devs), "window": window, "entries": a.entries, "keys": a.keys,
        "samples_per_message": samples_per_msg, "payload_bytes_avg": round(blob_bytes / sum(d.count for d in devs)),
        "duration_s": round(window_s, 3), "warmup_s": a.warmup,
        "acked_messages_window": acked_window,
        "messages_per_s": round(acked_window / window_s, 1) if window_s > 0 else 0,
        "samples_per_s": round(acked_window * samples_per_msg / window_s, 1) if window_s > 0 else 0,
        "sent_messages_total": sum(p["sent"] for p in per_device),
        "acked_messages_total": sum(p["acked"] for p in per_device),
        "acked_samples_total": sum(p["acked"] for p in per_device) * samples_per_msg,
        "unacked_after_drain": sum(p["sent"] - p["acked"] for p in per_device),
        "drain_s": round(drain_s, 3), "encode_s": round(encode_s, 3), "connect_s": round(connect_s, 3),
        "exhausted_devices": sum(1 for d in devs if d.exhausted),
        "generator_cpu_pct": round(100 * (cpu_we - cpu_ws) / window_s, 1) if window_s > 0 else None,
        "server_cpu_pct": round(100 * (srv_we - srv_ws) / window_s, 1)
        if window_s > 0 and srv_ws is not None and srv_we is not None else None,
        "errors": errors[:20], "per_device": per_device,
    }
    return out


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True, help="MQTT port")
    ap.add_argument("--devices", required=True, metavar="FILE", help='JSON list of {"id","token"}')
    ap.add_argument("--window", type=int, default=100, help="QoS 1 messages in flight per device (default 100)")
    ap.add_argument("--entries", type=int, default=10, help="timestamped entries per message (default 10)")
    ap.add_argument("--keys", type=int, default=2, help="keys per entry, 1..10 (default 2: temperature, humidity)")
    ap.add_argument("--ts-start", type=int, required=True, metavar="MS", help="first timestamp of every device")
    ap.add_argument("--ts-step", type=int, default=1000, metavar="MS", help="between a device's entries (default 1000)")
    ap.add_argument("--duration", type=float, default=10.0, help="measurement window, s (default 10)")
    ap.add_argument("--warmup", type=float, default=1.0, help="traffic before the window, s (default 1)")
    ap.add_argument("--budget-rate", type=float, default=1_500_000, metavar="SAMPLES_PER_S",
                    help="packets are encoded for this rate over the whole run (default 1500000; about 700 MB of packets)")
    ap.add_argument("--drain-max", type=float, default=30.0, help="most seconds to wait for PUBACKs after the window")
    ap.add_argument("--poll-ms", type=float, default=0.5, help="nap when a round brought few PUBACKs (default 0.5)")
    ap.add_argument("--keepalive", type=int, default=600)
    ap.add_argument("--setup-timeout", type=float, default=10.0)
    ap.add_argument("--server-pid", type=int, help="report this process's CPU during the window")
    ap.add_argument("--cpus", help="pin the generator to these CPUs, e.g. 1")
    a = ap.parse_args(argv)
    if not 1 <= a.keys <= len(KEY_MODELS):
        ap.error("--keys must be in 1..%d" % len(KEY_MODELS))
    if not 1 <= a.window <= 32767 or a.entries < 1 or a.duration <= 0 or a.warmup < 0:
        ap.error("--window must be in 1..32767, --entries and --duration positive")
    out = run(a)
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stderr.write("telemetry_load: %d devices, %.0f samples/s acked (%.0f msg/s of %d samples) over %.1f s; "
                     "%d samples acked in all, %d messages unacked after draining; generator CPU %s%%%s\n" % (
                         out["devices"], out["samples_per_s"], out["messages_per_s"], out["samples_per_message"],
                         out["duration_s"], out["acked_samples_total"], out["unacked_after_drain"],
                         out["generator_cpu_pct"],
                         "; %d devices ran out of pre-encoded packets" % out["exhausted_devices"]
                         if out["exhausted_devices"] else ""))
    return 0 if not out["errors"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

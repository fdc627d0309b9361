#!/usr/bin/env python3
"""tls_load - a small MQTT-over-TLS load generator (Python 3 standard library only).

Speaks MQTT 3.1.1 at the byte level over TLS (Python's ssl module: the system OpenSSL), so the
same load hits any broker's TLS listener. Clients do not verify the server certificate unless
--cafile is given (then they verify it, and the host name against --server-name, default --host).

Scenarios (first positional argument):
  handshakes  C worker processes, each in a loop for the whole run: TCP connect, full TLS
              handshake (a fresh session every time: nothing is ever resumed), MQTT CONNECT,
              CONNACK, DISCONNECT, close. --no-mqtt: TCP connect, TLS handshake, close.
              Reports completed connections/s in the measurement window, failures (by reason),
              and per-connection times: connect() → handshake done, and → CONNACK.
  fanin       P QoS 0 publishers (each its own topic <prefix>/00000.., all of equal length) send
              pre-encoded batches of identical PUBLISH packets (--batch-bytes per write) as fast
              as the broker takes them; one subscriber on <prefix>/# counts what it receives by
              bytes (all delivered packets have the same size). Publishers run in --workers
              processes (threads inside when P > workers; SSL_write releases the GIL), the
              subscriber in its own process. Reports delivered msg/s in the window.
  sink        a trivial TLS fake broker (--certfile/--keyfile; --workers pre-forked processes, one
              connection each at a time): CONNACK to every CONNECT, discards publishes, answers a
              SUBSCRIBE with SUBACK and then floods the subscriber with equal-size PUBLISH
              packets. Only to measure this generator's own ceiling; never a broker benchmark.

Every run prints one JSON object on stdout and a readable line on stderr. With --broker-pid the
broker's CPU use over the window is measured (broker_cpu_pct; for handshakes also
broker_cpu_us_per_conn, the broker's CPU time per completed connection, which does not depend on
whether the broker or the generator was the bottleneck). gen_cpu_pct is the generator's own CPU use
(all its processes); gen_cpu_us_per_conn (handshakes) and sub_cpu_ns_per_msg + pub_cpu_ns_per_msg
(fanin) are its own cost per unit of work, and gen_ceiling_per_core the most one core of it could
drive at that cost. The broker's CPU includes its child processes (the pre-forked sink's). --cpus pins the generator (sched_setaffinity).
"""
import argparse
import json
import multiprocessing as mp
import os
import signal
import socket
import ssl
import struct
import sys
import threading
import time

mono = time.monotonic
CLK_TCK = os.sysconf("SC_CLK_TCK")


class ProtocolError(Exception):
    pass


# ----------------------------------------------------------------------------------------------
# MQTT 3.1.1 encoding
# ----------------------------------------------------------------------------------------------
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


def enc_str(s):
    if isinstance(s, str):
        s = s.encode()
    return struct.pack("!H", len(s)) + s


def pkt_connect(client_id, keepalive=60):
    body = enc_str(b"MQTT") + bytes([4, 0x02]) + struct.pack("!H", keepalive) + enc_str(client_id)
    return b"\x10" + enc_varint(len(body)) + body


def pkt_subscribe(pid, topic_filter, qos=0):
    body = struct.pack("!H", pid) + enc_str(topic_filter) + bytes([qos])
    return b"\x82" + enc_varint(len(body)) + body


def pkt_publish(topic, payload):
    body = enc_str(topic) + payload
    return b"\x30" + enc_varint(len(body)) + body


CONNACK_OK = b"\x20\x02\x00\x00"
DISCONNECT = b"\xe0\x00"


def topic_for(prefix, i):
    return "%s/%05d" % (prefix, i)


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        buf += chunk
    return bytes(buf)


def read_packet(sock):
    """Exactly one MQTT packet: (first byte, body)."""
    b0 = recv_exact(sock, 1)[0]
    rl, shift = 0, 0
    while True:
        b = recv_exact(sock, 1)[0]
        rl |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift > 21:
            raise ProtocolError("bad remaining length")
    return b0, (recv_exact(sock, rl) if rl else b"")


def read_connack(ss):
    """CONNACK is exactly 4 bytes; read them in as few SSL reads as possible."""
    buf = ss.recv(4)
    if not buf:
        raise ConnectionError("closed by the broker before CONNACK")
    if len(buf) < 4:
        buf += recv_exact(ss, 4 - len(buf))
    if buf != CONNACK_OK:
        if buf[0] >> 4 != 2:
            raise ProtocolError("expected CONNACK, got 0x%02x" % buf[0])
        raise ProtocolError("CONNACK refused, code %d" % buf[3])


# ----------------------------------------------------------------------------------------------
# TLS and sockets
# ----------------------------------------------------------------------------------------------
def client_context(a):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if a.cafile:
        ctx.load_verify_locations(a.cafile)
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if a.tls_version in ("1.2", "1.3"):
        v = ssl.TLSVersion.TLSv1_2 if a.tls_version == "1.2" else ssl.TLSVersion.TLSv1_3
        ctx.minimum_version = ctx.maximum_version = v
    return ctx


def server_name(a):
    if a.cafile:
        return a.server_name or a.host
    return a.server_name or None


def tls_connect(a, ctx, timeout):
    """TCP connect + full TLS handshake; returns (ssl socket, seconds for TCP, seconds for TLS)."""
    t0 = mono()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(timeout)
        s.connect((a.host, a.port))
        t1 = mono()
        ss = ctx.wrap_socket(s, server_hostname=server_name(a), do_handshake_on_connect=True)
    except BaseException:
        s.close()
        raise
    return ss, t1 - t0, mono() - t1


def close_notify(ss):
    """Send a TLS close_notify without waiting for the peer's (a clean TLS close, so the broker does
    not log an unexpected EOF); the caller then closes the socket."""
    try:
        ss.setblocking(False)
        ss.unwrap()
    except (ssl.SSLError, OSError, ValueError):
        pass


class BioTLS:
    """TLS over a plain socket through memory BIOs: one recv() of up to 1 MiB feeds many TLS records,
    where an SSLSocket makes two read syscalls per record (what counts with a broker that sends
    every message in its own record)."""

    def __init__(self, sock, ctx, sni):
        self.sock = sock
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname=sni)
        self._io(self.obj.do_handshake)

    def _flush(self):
        if self.out.pending:
            self.sock.sendall(self.out.read())

    def fill(self, mv):
        """One recv() from the socket into the incoming BIO (mv: scratch buffer); returns its size."""
        n = self.sock.recv_into(mv)
        if n == 0:
            raise ConnectionError("connection closed by the broker")
        self.inc.write(mv[:n])
        return n

    def _io(self, fn, *args):
        scratch = None
        while True:
            try:
                r = fn(*args)
                self._flush()
                return r
            except ssl.SSLWantReadError:
                self._flush()
                if scratch is None:
                    scratch = memoryview(bytearray(1 << 16))
                self.fill(scratch)

    def sendall(self, data):
        self._io(self.obj.write, data)

    def recv(self, n):
        return self._io(self.obj.read, n)

    def version(self):
        return self.obj.version()

    def cipher(self):
        return self.obj.cipher()

    def settimeout(self, t):
        self.sock.settimeout(t)

    def close(self):
        self.sock.close()


def mqtt_tls_connect(a, ctx, client_id, timeout=10.0):
    ss, _, _ = tls_connect(a, ctx, timeout)
    try:
        ss.sendall(pkt_connect(client_id, a.keepalive))
        read_connack(ss)
    except BaseException:
        ss.close()
        raise
    return ss


def fail_reason(e):
    if isinstance(e, ssl.SSLError):
        return "ssl: %s" % (e.reason or type(e).__name__)
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(e, OSError) and e.errno:
        return "%s (errno %d)" % (os.strerror(e.errno), e.errno)
    return "%s: %s" % (type(e).__name__, e)


# ----------------------------------------------------------------------------------------------
# /proc helpers
# ----------------------------------------------------------------------------------------------
class Monitor:
    """CPU snapshots (one pass over /proc): the broker's process and its children (a pre-forked
    sink), the generator's (this process and its children) and everything else."""

    def __init__(self, broker_pid, only=None):
        self.broker_pid = broker_pid or -1
        self.only = set(only) if only else None   # count just these pids as the generator

    def snap(self):
        me = os.getpid()
        broker = gen = other = 0
        found_broker = False
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            pid = int(d)
            try:
                with open("/proc/%s/stat" % d) as f:
                    st = f.read()
                fl = st[st.rindex(")") + 2:].split()
                ppid, own = int(fl[1]), int(fl[11]) + int(fl[12])
                reaped = int(fl[13]) + int(fl[14])
            except (OSError, ValueError, IndexError):
                continue
            if pid == self.broker_pid or ppid == self.broker_pid:
                broker += own
                found_broker = found_broker or pid == self.broker_pid
            elif self.only is not None:
                if pid in self.only:
                    gen += own
            elif pid == me or ppid == me:
                gen += own
            else:
                other += own + reaped
        return {"t": mono(), "broker": broker / CLK_TCK if found_broker else None, "gen": gen / CLK_TCK,
                "other": other / CLK_TCK}

    @staticmethod
    def diff(s0, s1):
        dt = s1["t"] - s0["t"]
        out = {"gen_cpu_s": round(s1["gen"] - s0["gen"], 3)}
        if dt > 0:
            out["gen_cpu_pct"] = round(100.0 * (s1["gen"] - s0["gen"]) / dt, 1)
            # clamped: a process that exits in the window without being reaped by a live parent takes
            # its CPU time out of the sum
            out["other_procs_cpu_pct"] = round(max(0.0, 100.0 * (s1["other"] - s0["other"]) / dt), 1)
            if s0["broker"] is not None and s1["broker"] is not None:
                out["broker_cpu_s"] = round(s1["broker"] - s0["broker"], 3)
                out["broker_cpu_pct"] = round(100.0 * (s1["broker"] - s0["broker"]) / dt, 1)
        return out


def sleep_until(t):
    while True:
        d = t - mono()
        if d <= 0:
            return
        time.sleep(min(d, 0.05))


def pct(sorted_vals, q):
    if not sorted_vals:
        return None
    k = (len(sorted_vals) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def dist_us(vals):
    vals = sorted(vals)
    if not vals:
        return None
    f = lambda x: round(x * 1e6, 1)
    return {"p50": f(pct(vals, 0.5)), "p90": f(pct(vals, 0.9)), "p99": f(pct(vals, 0.99)), "max": f(vals[-1]),
            "n": len(vals)}


def collect(res_q, n, procs, timeout):
    """n results from the workers (a dead worker's missing result is reported, not waited for)."""
    out = []
    deadline = mono() + timeout
    while len(out) < n:
        try:
            out.append(res_q.get(timeout=0.5))
        except Exception:
            if mono() > deadline:
                out.append({"error": "timed out waiting for %d worker result(s)" % (n - len(out))})
                break
            if all(p.exitcode is not None for p in procs):
                try:  # the last results may still be in the pipe
                    while len(out) < n:
                        out.append(res_q.get(timeout=0.5))
                except Exception:
                    out.append({"error": "%d worker(s) ended without a result (exit codes %s)" % (
                        n - len(out), [p.exitcode for p in procs])})
                break
    return out


def reap(procs):
    for p in procs:
        p.join(timeout=5)
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join(timeout=2)


# ----------------------------------------------------------------------------------------------
# handshakes
# ----------------------------------------------------------------------------------------------
def hs_worker(a, wid, go, t0v, res_q):
    try:
        res = _hs_worker(a, wid, go, t0v)
    except Exception as e:
        res = {"wid": wid, "error": "%s: %s" % (type(e).__name__, e)}
    res_q.put(res)


def _hs_worker(a, wid, go, t0v):
    ctx = client_context(a)
    connect_pkt_prefix = "%s-h%d-" % (a.run_id, wid)
    if not go.wait(a.setup_timeout):
        raise RuntimeError("no start signal")
    t0 = t0v.value
    t_ws, t_end = t0 + a.warmup, t0 + a.warmup + a.duration
    tcp_t, tls_t, conn_t = [], [], []
    fails = {}
    ok = failed = attempts = resumed = 0
    first_tls = None
    n = 0
    sleep_until(t0)
    while True:
        ts = mono()
        if ts >= t_end:
            break
        n += 1
        ss = None
        err = None
        try:
            ss, d_tcp, d_tls = tls_connect(a, ctx, a.timeout)
            if first_tls is None:
                first_tls = {"version": ss.version(), "cipher": ss.cipher()[0]}
            if ss.session_reused:
                resumed += 1
            if not a.no_mqtt:
                ss.sendall(pkt_connect(connect_pkt_prefix + str(n), a.keepalive))
                read_connack(ss)
                d_conn = mono() - ts
                ss.sendall(DISCONNECT)
            else:
                d_conn = None
                close_notify(ss)
        except Exception as e:
            err = e
        finally:
            if ss is not None:
                try:
                    ss.close()
                except OSError:
                    pass
        te = mono()
        if not (t_ws <= te < t_end):
            continue
        attempts += 1
        if err is None:
            ok += 1
            tcp_t.append(d_tcp)
            tls_t.append(d_tls)
            if d_conn is not None:
                conn_t.append(d_conn)
        else:
            failed += 1
            r = fail_reason(err)
            fails[r] = fails.get(r, 0) + 1
            time.sleep(0.001)  # do not spin on a refusing broker
    return {"wid": wid, "ok": ok, "failed": failed, "attempts": attempts, "fails": fails, "resumed": resumed,
            "tcp": tcp_t, "tls": tls_t, "conn": conn_t, "tls_info": first_tls}


def run_handshakes(a):
    mpc = mp.get_context("fork")
    go = mpc.Event()
    t0v = mpc.Value("d", 0.0)
    res_q = mpc.Queue()
    procs = [mpc.Process(target=hs_worker, args=(a, w, go, t0v, res_q), daemon=True) for w in range(a.concurrency)]
    for p in procs:
        p.start()
    mon = Monitor(a.broker_pid)
    t0 = mono() + 0.3
    t0v.value = t0
    go.set()
    sleep_until(t0 + a.warmup)
    s0 = mon.snap()
    sleep_until(t0 + a.warmup + a.duration)
    s1 = mon.snap()
    results = collect(res_q, len(procs), procs, a.timeout + 30)
    reap(procs)
    errors = [r["error"] for r in results if r.get("error")]
    good = [r for r in results if not r.get("error")]
    ok = sum(r["ok"] for r in good)
    failed = sum(r["failed"] for r in good)
    fails = {}
    for r in good:
        for k, v in r["fails"].items():
            fails[k] = fails.get(k, 0) + v
    out = {"scenario": "handshakes", "label": a.label, "host": a.host, "port": a.port,
           "mqtt": not a.no_mqtt, "concurrency": a.concurrency, "duration": a.duration, "warmup": a.warmup,
           "verify": bool(a.cafile), "tls_version_asked": a.tls_version,
           "tls": next((r["tls_info"] for r in good if r.get("tls_info")), None),
           "connections": ok, "failures": failed, "fail_reasons": fails,
           "resumed": sum(r["resumed"] for r in good),
           "rate": round(ok / a.duration, 1),
           "tcp_connect_us": dist_us([x for r in good for x in r["tcp"]]),
           "tls_handshake_us": dist_us([x for r in good for x in r["tls"]]),
           "connack_us": dist_us([x for r in good for x in r["conn"]]) if not a.no_mqtt else None}
    cpu = Monitor.diff(s0, s1)
    out.update(cpu)
    if ok:
        if "broker_cpu_s" in cpu:
            out["broker_cpu_us_per_conn"] = round(cpu["broker_cpu_s"] / ok * 1e6, 1)
        out["gen_cpu_us_per_conn"] = round(cpu["gen_cpu_s"] / ok * 1e6, 1)
        if cpu["gen_cpu_s"] > 0:
            out["gen_ceiling_per_core"] = round(ok / cpu["gen_cpu_s"])
    if ok == 0 and not errors:
        errors.append("no connection completed in the window (%s)" % (fails or "no attempts"))
    out["errors"] = errors
    return out


# ----------------------------------------------------------------------------------------------
# fan-in
# ----------------------------------------------------------------------------------------------
def pub_thread(a, ctx, idx, ready, go, t0v, res):
    """One publisher connection: publishes until the end of the window (res: its figures)."""
    try:
        ss = mqtt_tls_connect(a, ctx, "%s-p%d" % (a.run_id, idx))
    except Exception as e:
        res.update(error="publisher %d connect: %s" % (idx, fail_reason(e)))
        ready.release()
        return
    pkt = pkt_publish(topic_for(a.topic_prefix, idx), b"\x00" * a.payload_size)
    k = max(1, a.batch_bytes // len(pkt))
    batch = pkt * k
    ss.settimeout(a.timeout)
    ready.release()
    if not go.wait(a.setup_timeout):
        res.update(error="publisher %d: no start signal" % idx)
        ss.close()
        return
    t0 = t0v.value
    t_ws, t_end = t0 + a.warmup, t0 + a.warmup + a.duration
    sent = sent_ws = sent_we = 0
    in_window = False
    sleep_until(t0)
    try:
        while True:
            now = mono()
            if now >= t_end:
                break
            if not in_window and now >= t_ws:
                in_window, sent_ws = True, sent
            ss.sendall(batch)
            sent += k
        sent_we = sent
        ss.sendall(DISCONNECT)
    except Exception as e:
        res.update(error="publisher %d: %s" % (idx, fail_reason(e)))
        sent_we = sent
    finally:
        try:
            ss.close()
        except OSError:
            pass
    res.update(sent=sent, sent_window=sent_we - sent_ws if in_window else 0)


def pub_proc(a, wid, indices, ready_q, go, t0v, res_q):
    try:
        ctx = client_context(a)
        sem = threading.Semaphore(0)
        results = [{"idx": i} for i in indices]
        threads = [threading.Thread(target=pub_thread, args=(a, ctx, i, sem, go, t0v, r), daemon=True)
                   for i, r in zip(indices, results)]
        for t in threads:
            t.start()
        for _ in threads:
            sem.acquire()
        errs = [r["error"] for r in results if r.get("error")]
        ready_q.put(("error", wid, errs[0]) if errs else ("ready", wid, None))
        for t in threads:
            t.join()
        res = {"role": "pub", "wid": wid, "sent": sum(r.get("sent", 0) for r in results),
               "sent_window": sum(r.get("sent_window", 0) for r in results),
               "errors": [r["error"] for r in results if r.get("error")]}
    except Exception as e:
        res = {"role": "pub", "wid": wid, "error": "%s: %s" % (type(e).__name__, e)}
        ready_q.put(("error", wid, res["error"]))
    res_q.put(res)


def sub_proc(a, ready_q, go, t0v, res_q):
    try:
        res = _sub_proc(a, ready_q, go, t0v)
    except Exception as e:
        res = {"role": "sub", "error": "%s: %s" % (type(e).__name__, e)}
        ready_q.put(("error", "sub", res["error"]))
    res_q.put(res)


def _sub_proc(a, ready_q, go, t0v):
    ctx = client_context(a)
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    raw.settimeout(a.timeout)
    raw.connect((a.host, a.port))
    ss = BioTLS(raw, ctx, server_name(a))
    ss.sendall(pkt_connect("%s-s" % a.run_id, a.keepalive))
    read_connack(ss)
    ss.sendall(pkt_subscribe(1, a.topic_prefix + "/#", 0))
    b0, body = read_packet(ss)
    if b0 >> 4 != 9 or len(body) < 3 or body[2] >= 0x80:
        raise ProtocolError("SUBSCRIBE refused or no SUBACK (0x%02x %r)" % (b0, body))
    plen = len(pkt_publish(topic_for(a.topic_prefix, 0), b"\x00" * a.payload_size))
    tls_info = {"version": ss.version(), "cipher": ss.cipher()[0]}
    ready_q.put(("ready", "sub", None))
    if not go.wait(a.setup_timeout):
        raise RuntimeError("no start signal")
    t0 = t0v.value
    t_ws, t_end = t0 + a.warmup, t0 + a.warmup + a.duration
    raw.settimeout(0.05)
    rawmv = memoryview(bytearray(1 << 20))
    buf = bytearray(1 << 17)
    mv = memoryview(buf)
    obj_read = ss.obj.read
    total = 0            # plaintext bytes received since the start
    records = 0          # TLS reads that returned data (one record each)
    w_bytes = w_records = None
    t_w0 = None
    bad = None           # first chunk that is not a run of equal-size PUBLISH packets
    marks_ok = b"\x30" * (len(buf) // plen + 2)
    while True:
        # everything already received: one TLS record per read
        while True:
            try:
                n = obj_read(len(buf), buf)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                raise ConnectionError("subscriber connection closed by the broker (close_notify)")
            if n == 0:
                raise ConnectionError("subscriber connection closed by the broker")
            if bad is None:
                # every plen-th byte from the next packet start must be a QoS 0 PUBLISH header
                first = (-total) % plen
                if first < n:
                    marks = mv[first:n:plen]
                    if marks != marks_ok[:len(marks)]:
                        bad = "at byte %d: 0x%02x where a PUBLISH header was expected" % (
                            total + first, next(x for x in marks if x != 0x30))
            total += n
            records += 1
        now = mono()
        if now >= t_end:
            break
        if w_bytes is None and now >= t_ws:
            w_bytes, w_records, t_w0 = total, records, now
        try:
            ss.fill(rawmv)
        except (socket.timeout, TimeoutError):
            continue
    t_w1 = mono()
    if w_bytes is None:
        w_bytes, w_records, t_w0 = total, records, t_w1
    try:
        raw.settimeout(2.0)
        ss.sendall(DISCONNECT)
    except OSError:
        pass
    ss.close()
    msgs = (total - w_bytes) // plen
    return {"role": "sub", "received_total": total // plen, "received_window": msgs,
            "window_s": t_w1 - t_w0, "records_window": records - w_records, "packet_bytes": plen,
            "bytes_window": total - w_bytes, "tls_info": tls_info, "bad": bad}


def run_fanin(a):
    mpc = mp.get_context("fork")
    go = mpc.Event()
    t0v = mpc.Value("d", 0.0)
    ready_q, res_q = mpc.Queue(), mpc.Queue()
    sub = mpc.Process(target=sub_proc, args=(a, ready_q, go, t0v, res_q), daemon=True)
    sub.start()
    procs = [sub]
    errors = []

    def wait_ready(n):
        deadline = mono() + a.setup_timeout
        got = 0
        while got < n:
            try:
                kind, who, err = ready_q.get(timeout=0.5)
            except Exception:
                if mono() > deadline:
                    raise RuntimeError("setup timed out (%d of %d ready)" % (got, n))
                if any(p.exitcode not in (None, 0) for p in procs):
                    raise RuntimeError("a worker died during setup")
                continue
            if kind == "error":
                raise RuntimeError("setup failed (%s): %s" % (who, err))
            got += 1

    workers = max(1, min(a.workers, a.publishers))
    split = [list(range(a.publishers))[w::workers] for w in range(workers)]
    try:
        wait_ready(1)  # subscribed before anyone publishes
        for w, idx in enumerate(split):
            p = mpc.Process(target=pub_proc, args=(a, w, idx, ready_q, go, t0v, res_q), daemon=True)
            p.start()
            procs.append(p)
        wait_ready(workers)
    except RuntimeError as e:
        for p in procs:
            if p.is_alive():
                p.kill()
        reap(procs)
        return {"scenario": "fanin", "label": a.label, "errors": [str(e)]}
    mon = Monitor(a.broker_pid)
    sub_mon = Monitor(-1, only=[sub.pid])
    t0 = mono() + 0.2
    t0v.value = t0
    go.set()
    sleep_until(t0 + a.warmup)
    s0, q0 = mon.snap(), sub_mon.snap()
    sleep_until(t0 + a.warmup + a.duration)
    s1, q1 = mon.snap(), sub_mon.snap()
    results = collect(res_q, len(procs), procs, a.timeout + 30)
    reap(procs)
    errors += [r["error"] for r in results if r.get("error")]
    subr = next((r for r in results if r.get("role") == "sub" and not r.get("error")), None)
    pubs = [r for r in results if r.get("role") == "pub" and not r.get("error")]
    for r in pubs:
        errors += r["errors"]
    out = {"scenario": "fanin", "label": a.label, "host": a.host, "port": a.port, "publishers": a.publishers,
           "workers": workers, "payload_size": a.payload_size, "batch_bytes": a.batch_bytes,
           "duration": a.duration, "warmup": a.warmup, "verify": bool(a.cafile), "tls_version_asked": a.tls_version}
    if subr:
        if subr["bad"]:
            errors.append("subscriber stream is not all equal-size PUBLISH packets (%s); counts are wrong" % subr["bad"])
        out.update(tls=subr["tls_info"], packet_bytes=subr["packet_bytes"], delivered=subr["received_window"],
                   rate=round(subr["received_window"] / max(subr["window_s"], 1e-9), 1),
                   sub_records_window=subr["records_window"],
                   sub_bytes_per_record=round(subr["bytes_window"] / max(1, subr["records_window"]), 1))
    sent_window = sum(r["sent_window"] for r in pubs)
    out["published"] = sent_window
    out["pub_rate"] = round(sent_window / a.duration, 1)
    cpu = Monitor.diff(s0, s1)
    out.update(cpu)
    sub_cpu = Monitor.diff(q0, q1)
    out["sub_cpu_pct"] = sub_cpu.get("gen_cpu_pct")
    if subr and subr["received_window"] and sent_window:
        # the generator's own cost per message: receiving it (subscriber) plus publishing it (the rest);
        # one core doing both could drive at most gen_ceiling_per_core msg/s
        sub_ns = sub_cpu["gen_cpu_s"] / subr["received_window"] * 1e9
        pub_ns = max(0.0, cpu["gen_cpu_s"] - sub_cpu["gen_cpu_s"]) / sent_window * 1e9
        out["sub_cpu_ns_per_msg"] = round(sub_ns, 1)
        out["pub_cpu_ns_per_msg"] = round(pub_ns, 1)
        if sub_ns + pub_ns > 0:
            out["gen_ceiling_per_core"] = round(1e9 / (sub_ns + pub_ns))
    out["errors"] = errors
    return out


# ----------------------------------------------------------------------------------------------
# sink: a trivial TLS fake broker, only to measure the generator's own ceiling
# ----------------------------------------------------------------------------------------------
def sink_serve(a, lsock, sctx):
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    buf = bytearray(1 << 18)
    while True:
        try:
            conn, _ = lsock.accept()
        except OSError:
            continue
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(30)
            ss = sctx.wrap_socket(conn, server_side=True)
            sink_conn(a, ss, buf)
        except Exception:
            pass
        finally:
            conn.close()


def sink_conn(a, ss, buf):
    while True:
        b0, body = read_packet(ss)
        t = b0 >> 4
        if t == 1:
            ss.sendall(CONNACK_OK)
        elif t == 8:
            pid = body[:2]
            flen = struct.unpack("!H", body[2:4])[0]
            filt = body[4:4 + flen].decode()
            ss.sendall(b"\x90\x03" + pid + b"\x00")
            prefix = filt[:-2] if filt.endswith("/#") else filt
            pkt = pkt_publish(topic_for(prefix, 0), b"\x00" * a.payload_size)
            batch = pkt * max(1, a.batch_bytes // len(pkt))
            while True:  # flood until the subscriber goes away
                ss.sendall(batch)
        elif t == 3:
            while ss.recv_into(buf):  # a publisher: discard everything
                pass
            return
        elif t == 14:
            return
        elif t == 12:
            ss.sendall(b"\xd0\x00")


def run_sink(a):
    if not (a.certfile and a.keyfile):
        raise SystemExit("tls_load sink: --certfile and --keyfile are required")
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(a.certfile, a.keyfile)
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((a.host, a.port))
    lsock.listen(1024)
    port = lsock.getsockname()[1]
    kids = []
    for _ in range(a.workers):
        pid = os.fork()
        if pid == 0:
            try:
                sink_serve(a, lsock, sctx)
            finally:
                os._exit(0)
        kids.append(pid)

    def stop(*_):
        for k in kids:
            try:
                os.kill(k, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for k in kids:
            try:
                os.waitpid(k, 0)
            except ChildProcessError:
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("listening sink=%d workers=%d" % (port, a.workers), flush=True)
    while True:
        signal.pause()


# ----------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------
def readable(o):
    if o.get("errors") and "rate" not in o:
        return "[%s] %s: FAILED: %s" % (o.get("label") or "-", o["scenario"], "; ".join(o["errors"][:3]))
    cpu = "cpu%% broker %s gen %s other-procs %s" % (o.get("broker_cpu_pct"), o.get("gen_cpu_pct"),
                                                     o.get("other_procs_cpu_pct"))
    tls = o.get("tls") or {}
    if o["scenario"] == "handshakes":
        lat = o.get("connack_us") or o.get("tls_handshake_us") or {}
        s = "[%s] handshakes%s C=%d: %s conn/s, %d failures, %s p50 %s us p99 %s us; broker %s us/conn, gen %s us/conn; %s %s; %s" % (
            o.get("label") or "-", "" if o["mqtt"] else " (no MQTT)", o["concurrency"],
            "{:,.0f}".format(o["rate"]), o["failures"], "connect→CONNACK" if o["mqtt"] else "connect→handshake",
            lat.get("p50"), lat.get("p99"), o.get("broker_cpu_us_per_conn"), o.get("gen_cpu_us_per_conn"),
            tls.get("version"), tls.get("cipher"), cpu)
    else:
        s = "[%s] fanin P=%d %d B: delivered %s msg/s (published %s msg/s), %s B per TLS record to the subscriber; %s %s; %s (sub %s)" % (
            o.get("label") or "-", o["publishers"], o["payload_size"], "{:,.0f}".format(o.get("rate") or 0),
            "{:,.0f}".format(o.get("pub_rate") or 0), o.get("sub_bytes_per_record"), tls.get("version"),
            tls.get("cipher"), cpu, o.get("sub_cpu_pct"))
    if o.get("errors"):
        s += "; ERRORS: " + "; ".join(map(str, o["errors"][:3]))
    return s


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="tls_load.py", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario", choices=("handshakes", "fanin", "sink"))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8883)
    ap.add_argument("--duration", type=float, default=10.0, help="measurement window, s")
    ap.add_argument("--warmup", type=float, default=1.0, help="load before the window, s")
    ap.add_argument("-C", "--concurrency", type=int, default=8, help="handshakes: worker processes (default 8)")
    ap.add_argument("--no-mqtt", action="store_true", help="handshakes: TLS handshake only, no MQTT CONNECT")
    ap.add_argument("-P", "--publishers", type=int, default=10, help="fanin: publishers (default 10)")
    ap.add_argument("--workers", type=int, default=10,
                    help="fanin: publisher processes (default 10; threads inside when fewer than -P); "
                         "sink: server processes (default 10)")
    ap.add_argument("--payload-size", type=int, default=64)
    ap.add_argument("--batch-bytes", type=int, default=65536, help="bytes of PUBLISH packets per write")
    ap.add_argument("--topic-prefix", default=None, help="default: tlsload<random>")
    ap.add_argument("--keepalive", type=int, default=60)
    ap.add_argument("--cafile", help="verify the server certificate against this PEM (default: no verification)")
    ap.add_argument("--server-name", help="SNI / name to verify (with --cafile default: --host)")
    ap.add_argument("--tls-version", choices=("auto", "1.2", "1.3"), default="auto",
                    help="pin the TLS version (default: whatever the two sides negotiate)")
    ap.add_argument("--certfile", help="sink: server certificate (PEM)")
    ap.add_argument("--keyfile", help="sink: server key (PEM)")
    ap.add_argument("--timeout", type=float, default=10.0, help="socket timeout, s")
    ap.add_argument("--setup-timeout", type=float, default=30.0)
    ap.add_argument("--broker-pid", type=int, help="measure this process's CPU use over the window")
    ap.add_argument("--cpus", help="pin the generator to these CPUs, e.g. '1' or '0,1'")
    ap.add_argument("--label", default="")
    a = ap.parse_args(argv)
    a.run_id = "tl%d%04x" % (os.getpid() % 100000, int(time.time() * 1000) & 0xFFFF)
    if a.topic_prefix is None:
        a.topic_prefix = "tlsload" + a.run_id
    if a.duration <= 0 or a.warmup < 0 or a.concurrency < 1 or a.publishers < 1 or a.workers < 1:
        ap.error("--duration must be positive; -C, -P, --workers at least 1")
    if a.scenario == "sink" and a.port == 8883:
        a.port = 0
    return a


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    if a.cpus:
        os.sched_setaffinity(0, {int(x) for x in a.cpus.split(",")})
    if a.scenario == "sink":
        run_sink(a)
        return 0
    o = run_handshakes(a) if a.scenario == "handshakes" else run_fanin(a)
    o["cpus"] = a.cpus or "all"
    print(json.dumps(o), flush=True)
    print(readable(o), file=sys.stderr, flush=True)
    return 1 if o.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())

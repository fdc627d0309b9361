#!/usr/bin/env python3
"""mqttload.py with persistent subscribers.

Runs the neutral load generator (../shared/bench/mqttload.py) unchanged, except for one thing:
its subscribers connect with clean session 0 (MQTT 3.1.1; with --mqtt5: clean start 0 and a
session expiry interval of one hour) under a client id of their own, so that the broker keeps
their sessions. A broker with durability must then store each QoS 1 message for such a
subscriber before it acknowledges the PUBLISH (Meridian `--durability strict|batch`), where it
would not for mqttload's usual clean-session subscribers. Publishers stay clean sessions.

mqttload.py has no option for this, so this wrapper loads it as a module and replaces its
`mqtt_connect` for subscriber connections before mqttload forks its worker processes (it uses the
"fork" start method, so they inherit the replacement). Everything else — the traffic, the
counting, the JSON output — is mqttload's own.

    python3 scripts/bench/mqttload_persistent.py --mqttload ../shared/bench/mqttload.py -- \\
        qos1 -P 10 --window 100 --payload-size 64 --sub-qos 1 --duration 10 --port PORT

The broker must be fresh (or the client ids unused): each subscriber expects to create its
session (CONNACK session present 0) and fails otherwise.
"""
import argparse
import importlib.util
import os
import struct
import sys

SESSION_EXPIRY_S = 3600  # MQTT 5 only; MQTT 3.1.1 persistent sessions have no expiry


def load_mqttload(path):
    spec = importlib.util.spec_from_file_location("mqttload", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def persistent_connect_packet(ml, client_id, keepalive, proto):
    """CONNECT with clean session / clean start 0 (MQTT 5: Session Expiry Interval set)."""
    vh = ml.enc_str(b"MQTT") + bytes([proto, 0x00]) + struct.pack("!H", keepalive)
    if proto == 5:
        props = b"\x11" + struct.pack("!I", SESSION_EXPIRY_S)
        vh += ml.enc_varint(len(props)) + props
    body = vh + ml.enc_str(client_id)
    return b"\x10" + ml.enc_varint(len(body)) + body


def install(ml, client_id_prefix):
    original = ml.mqtt_connect

    def mqtt_connect(a, client_id, sndbuf=0, timeout=10.0):
        prefix = a.run_id + "-s"
        if not client_id.startswith(prefix):  # a publisher: unchanged
            return original(a, client_id, sndbuf=sndbuf, timeout=timeout)
        # a subscriber: "<run id>-s<k>" -> "<prefix>-s<k>", clean session 0
        sub_id = "%s-s%s" % (client_id_prefix, client_id[len(prefix):])
        s = ml.socket.socket(ml.socket.AF_INET, ml.socket.SOCK_STREAM)
        ml.tune_socket(s, sndbuf)
        s.settimeout(timeout)
        s.connect((a.host, a.port))
        s.sendall(persistent_connect_packet(ml, sub_id, a.keepalive, a.proto))
        b0, body = ml.read_packet(s)
        if b0 >> 4 != 2 or len(body) < 2:
            raise ml.ProtocolError("expected CONNACK, got 0x%02x" % b0)
        if body[1] != 0:
            raise ml.ProtocolError("CONNACK refused, code %d" % body[1])
        if body[0] & 1:
            raise ml.ProtocolError("session %r already existed (CONNACK session present 1): "
                                   "use a fresh broker" % sub_id)
        return s

    ml.mqtt_connect = mqtt_connect


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mqttload", required=True, help="path to mqttload.py")
    ap.add_argument("--client-id-prefix", default="bench-persistent",
                    help="subscriber client ids: PREFIX-s0, PREFIX-s1, ...")
    ap.add_argument("args", nargs=argparse.REMAINDER, help="-- then mqttload.py's arguments")
    a = ap.parse_args(argv)
    args = a.args[1:] if a.args[:1] == ["--"] else a.args
    if not args or args[0] in ("connections", "sink"):
        ap.error("give a traffic scenario for mqttload.py after --")
    ml = load_mqttload(os.path.abspath(a.mqttload))
    install(ml, a.client_id_prefix)
    return ml.main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

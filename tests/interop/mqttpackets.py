"""Hand-made MQTT 3.1.1 / 5.0 packets and a tiny blocking raw-socket client.

paho-mqtt refuses to send some packets the tests need (a subscription filter such as
``a/#/b``, a connection closed without DISCONNECT, malformed bytes), so those tests build
the bytes here.  Only what the tests need is implemented; nothing here validates input.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

# Packet types (high nibble of the first byte).
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = (
    8, 9, 10, 11, 12, 13, 14, 15)

PACKET_NAMES = {
    1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL",
    7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK",
    12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT", 15: "AUTH",
}

V311, V5 = 4, 5

# MQTT 5 property identifiers -> (name, wire type).
PROPERTIES = {
    0x01: ("PayloadFormatIndicator", "byte"),
    0x02: ("MessageExpiryInterval", "u32"),
    0x03: ("ContentType", "str"),
    0x08: ("ResponseTopic", "str"),
    0x09: ("CorrelationData", "bin"),
    0x0B: ("SubscriptionIdentifier", "varint"),
    0x11: ("SessionExpiryInterval", "u32"),
    0x12: ("AssignedClientIdentifier", "str"),
    0x13: ("ServerKeepAlive", "u16"),
    0x15: ("AuthenticationMethod", "str"),
    0x16: ("AuthenticationData", "bin"),
    0x17: ("RequestProblemInformation", "byte"),
    0x18: ("WillDelayInterval", "u32"),
    0x19: ("RequestResponseInformation", "byte"),
    0x1A: ("ResponseInformation", "str"),
    0x1C: ("ServerReference", "str"),
    0x1F: ("ReasonString", "str"),
    0x21: ("ReceiveMaximum", "u16"),
    0x22: ("TopicAliasMaximum", "u16"),
    0x23: ("TopicAlias", "u16"),
    0x24: ("MaximumQoS", "byte"),
    0x25: ("RetainAvailable", "byte"),
    0x26: ("UserProperty", "pair"),
    0x27: ("MaximumPacketSize", "u32"),
    0x28: ("WildcardSubscriptionAvailable", "byte"),
    0x29: ("SubscriptionIdentifierAvailable", "byte"),
    0x2A: ("SharedSubscriptionAvailable", "byte"),
}
PROPERTY_IDS = {name: (pid, kind) for pid, (name, kind) in PROPERTIES.items()}


# --------------------------------------------------------------------------- encoding

def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        if n:
            byte |= 0x80
        out.append(byte)
        if not n:
            return bytes(out)


def u16(n: int) -> bytes:
    return struct.pack("!H", n)


def mqtt_str(s: str | bytes) -> bytes:
    data = s.encode() if isinstance(s, str) else s
    return u16(len(data)) + data


def _prop_value(kind: str, value) -> bytes:
    if kind == "byte":
        return bytes([value])
    if kind == "u16":
        return u16(value)
    if kind == "u32":
        return struct.pack("!I", value)
    if kind == "varint":
        return varint(value)
    if kind in ("str", "bin"):
        return mqtt_str(value)
    if kind == "pair":
        return mqtt_str(value[0]) + mqtt_str(value[1])
    raise ValueError(kind)


def properties(props: dict | None) -> bytes:
    """Encode an MQTT 5 property block. ``UserProperty`` takes a list of pairs."""
    body = bytearray()
    for name, value in (props or {}).items():
        pid, kind = PROPERTY_IDS[name]
        values = value if name == "UserProperty" else [value]
        for v in values:
            body += varint(pid) + _prop_value(kind, v)
    return varint(len(body)) + bytes(body)


def packet(ptype: int, flags: int, body: bytes) -> bytes:
    return bytes([(ptype << 4) | flags]) + varint(len(body)) + body


@dataclass
class Will:
    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    props: dict = field(default_factory=dict)  # MQTT 5 will properties


def connect(client_id: str, version: int = V311, clean: bool = True, keepalive: int = 60,
            will: Will | None = None, username: str | None = None, password: bytes | None = None,
            props: dict | None = None) -> bytes:
    flags = 0x02 if clean else 0
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    body = mqtt_str("MQTT") + bytes([version, flags]) + u16(keepalive)
    if version == V5:
        body += properties(props)
    body += mqtt_str(client_id)
    if will is not None:
        if version == V5:
            body += properties(will.props)
        body += mqtt_str(will.topic) + mqtt_str(will.payload)
    if username is not None:
        body += mqtt_str(username)
    if password is not None:
        body += mqtt_str(password)
    return packet(CONNECT, 0, body)


def publish(topic: str | bytes, payload: bytes = b"", qos: int = 0, retain: bool = False,
            packet_id: int = 1, version: int = V311, props: dict | None = None,
            dup: bool = False) -> bytes:
    flags = (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = mqtt_str(topic)
    if qos:
        body += u16(packet_id)
    if version == V5:
        body += properties(props)
    return packet(PUBLISH, flags, body + payload)


def subscribe(filters: list[tuple[str, int]], packet_id: int = 1, version: int = V311,
              props: dict | None = None) -> bytes:
    """``filters`` are (filter, options byte); for 3.1.1 the options byte is the QoS."""
    body = u16(packet_id)
    if version == V5:
        body += properties(props)
    for topic_filter, options in filters:
        body += mqtt_str(topic_filter) + bytes([options])
    return packet(SUBSCRIBE, 0x02, body)


def unsubscribe(filters: list[str], packet_id: int = 1, version: int = V311) -> bytes:
    body = u16(packet_id) + (properties(None) if version == V5 else b"")
    for topic_filter in filters:
        body += mqtt_str(topic_filter)
    return packet(UNSUBSCRIBE, 0x02, body)


def ack(ptype: int, packet_id: int, version: int = V311, reason: int = 0) -> bytes:
    """PUBACK / PUBREC / PUBREL / PUBCOMP."""
    body = u16(packet_id)
    if version == V5 and reason:
        body += bytes([reason])
    return packet(ptype, 0x02 if ptype == PUBREL else 0, body)


def pingreq() -> bytes:
    return packet(PINGREQ, 0, b"")


def disconnect(version: int = V311, reason: int = 0, props: dict | None = None) -> bytes:
    if version == V5 and (reason or props):
        return packet(DISCONNECT, 0, bytes([reason]) + properties(props))
    return packet(DISCONNECT, 0, b"")


# --------------------------------------------------------------------------- decoding

@dataclass
class Packet:
    type: int
    flags: int
    body: bytes

    @property
    def name(self) -> str:
        return PACKET_NAMES.get(self.type, f"type{self.type}")

    def __repr__(self) -> str:
        return f"<{self.name} flags={self.flags:#x} body={self.body[:40]!r}>"


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value, mult = 0, 1
    for _ in range(4):
        byte = data[pos]
        pos += 1
        value += (byte & 0x7F) * mult
        if not byte & 0x80:
            return value, pos
        mult *= 128
    raise ValueError("malformed variable byte integer")


def parse_properties(data: bytes, pos: int) -> tuple[dict, int]:
    length, pos = read_varint(data, pos)
    end = pos + length
    props: dict = {}
    while pos < end:
        pid, pos = read_varint(data, pos)
        name, kind = PROPERTIES[pid]
        if kind == "byte":
            value, pos = data[pos], pos + 1
        elif kind == "u16":
            value, pos = struct.unpack_from("!H", data, pos)[0], pos + 2
        elif kind == "u32":
            value, pos = struct.unpack_from("!I", data, pos)[0], pos + 4
        elif kind == "varint":
            value, pos = read_varint(data, pos)
        else:
            n = struct.unpack_from("!H", data, pos)[0]
            value, pos = data[pos + 2:pos + 2 + n], pos + 2 + n
            if kind == "str":
                value = value.decode()
            elif kind == "pair":
                m = struct.unpack_from("!H", data, pos)[0]
                value = (value.decode(), data[pos + 2:pos + 2 + m].decode())
                pos += 2 + m
        if name in ("UserProperty", "SubscriptionIdentifier"):
            props.setdefault(name, []).append(value)
        else:
            props[name] = value
    return props, end


def parse_connack(p: Packet, version: int) -> tuple[bool, int, dict]:
    """-> (session present, reason/return code, properties)."""
    assert p.type == CONNACK, f"expected CONNACK, got {p!r}"
    props: dict = {}
    if version == V5 and len(p.body) > 2:
        props, _ = parse_properties(p.body, 2)
    return bool(p.body[0] & 1), p.body[1], props


def parse_suback(p: Packet, version: int) -> tuple[int, list[int]]:
    assert p.type == SUBACK, f"expected SUBACK, got {p!r}"
    pos = 2
    if version == V5:
        _, pos = parse_properties(p.body, pos)
    return struct.unpack_from("!H", p.body)[0], list(p.body[pos:])


def parse_disconnect(p: Packet, version: int) -> tuple[int, dict]:
    assert p.type == DISCONNECT, f"expected DISCONNECT, got {p!r}"
    if not p.body:
        return 0, {}
    props: dict = {}
    if version == V5 and len(p.body) > 1:
        props, _ = parse_properties(p.body, 1)
    return p.body[0], props


def parse_publish(p: Packet, version: int) -> dict:
    assert p.type == PUBLISH, f"expected PUBLISH, got {p!r}"
    qos = (p.flags >> 1) & 3
    n = struct.unpack_from("!H", p.body)[0]
    topic = p.body[2:2 + n].decode()
    pos = 2 + n
    packet_id = None
    if qos:
        packet_id = struct.unpack_from("!H", p.body, pos)[0]
        pos += 2
    props: dict = {}
    if version == V5:
        props, pos = parse_properties(p.body, pos)
    return {"topic": topic, "payload": p.body[pos:], "qos": qos, "retain": bool(p.flags & 1),
            "dup": bool(p.flags & 8), "packet_id": packet_id, "props": props}


# --------------------------------------------------------------------------- raw client

class RawClient:
    """A blocking MQTT connection that sends exactly the bytes it is given."""

    def __init__(self, host: str, port: int, timeout: float = 5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.closed_by_peer = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            self.closed_by_peer = True
            return False
        self.buf += chunk
        return True

    def read_packet(self, timeout: float = 5.0) -> Packet | None:
        """The next packet, or None on timeout or when the peer closed the connection."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 2:
                try:
                    length, pos = read_varint(self.buf, 1)
                except IndexError:
                    pos = None
                if pos is not None and len(self.buf) >= pos + length:
                    first = self.buf[0]
                    body = self.buf[pos:pos + length]
                    self.buf = self.buf[pos + length:]
                    return Packet(first >> 4, first & 0x0F, body)
            if self.closed_by_peer or not self._fill(deadline):
                return None

    def expect(self, ptype: int, timeout: float = 5.0) -> Packet:
        p = self.read_packet(timeout)
        assert p is not None, (f"expected {PACKET_NAMES[ptype]} within {timeout}s, got "
                               f"{'connection closed' if self.closed_by_peer else 'nothing'}")
        assert p.type == ptype, f"expected {PACKET_NAMES[ptype]}, got {p!r}"
        return p

    def wait_closed(self, timeout: float = 5.0) -> list[Packet]:
        """Read until the peer closes; returns the packets seen. Fails on timeout."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            p = self.read_packet(max(0.0, deadline - time.monotonic()))
            if p is not None:
                seen.append(p)
                continue
            assert self.closed_by_peer, (
                f"connection still open {timeout}s later; packets seen: {seen}")
            return seen

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self) -> None:
        """Close with a TCP reset: an ungraceful disconnect (no DISCONNECT packet)."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()


def raw_connect(host: str, port: int, client_id: str, version: int = V311,
                timeout: float = 5.0, **kwargs) -> tuple[RawClient, bool, int, dict]:
    """Open a connection, send CONNECT and read CONNACK.

    -> (client, session present, reason code, CONNACK properties)."""
    client = RawClient(host, port, timeout)
    client.send(connect(client_id, version=version, **kwargs))
    p = client.expect(CONNACK, timeout)
    present, rc, props = parse_connack(p, version)
    return client, present, rc, props

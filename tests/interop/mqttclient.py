"""A paho-mqtt 2.x client wrapped for tests: every wait is an awaited event with a timeout."""

from __future__ import annotations

import queue
import threading
import time
import uuid
from dataclasses import dataclass, field

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

import contract

V311 = paho.MQTTv311
V5 = paho.MQTTv5
PROTO_NAMES = {V311: "MQTT 3.1.1", V5: "MQTT 5.0"}

# Every paho property name the tests may read from a received message.
MESSAGE_PROPERTIES = [
    "PayloadFormatIndicator", "MessageExpiryInterval", "ContentType", "ResponseTopic",
    "CorrelationData", "SubscriptionIdentifier", "TopicAlias", "UserProperty",
]


def new_client_id(tag: str = "c") -> str:
    return f"it-{tag}-{uuid.uuid4().hex[:12]}"


def props(packet_type: int, **values) -> Properties:
    """paho Properties, e.g. props(PacketTypes.PUBLISH, MessageExpiryInterval=5)."""
    p = Properties(packet_type)
    for name, value in values.items():
        setattr(p, name, value)
    return p


def _props_dict(p: Properties | None) -> dict:
    if p is None:
        return {}
    out = {}
    for name in p.names:
        compact = name.replace(" ", "")
        if hasattr(p, compact):
            out[compact] = getattr(p, compact)
    return out


def _rc(reason) -> int:
    if isinstance(reason, ReasonCode):
        return reason.value
    return int(reason)


@dataclass
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    props: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"<Message {self.topic} {self.payload[:40]!r} qos={self.qos} "
                f"retain={self.retain} {self.props or ''}>")


@dataclass
class Disconnection:
    reason_code: int
    from_server: bool  # True when the broker sent a DISCONNECT packet
    props: dict


class TestClient:
    """One paho client on its own network thread. Never reconnects by itself."""

    __test__ = False  # not a pytest test class

    def __init__(self, broker, proto: int = V5, transport: str = "tcp",
                 client_id: str | None = None, clean_session: bool = True):
        self.broker = broker
        self.proto = proto
        self.transport = transport
        self.client_id = new_client_id() if client_id is None else client_id
        kwargs = {}
        if proto == V311:
            kwargs["clean_session"] = clean_session
        self.paho = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=proto,
            transport="websockets" if transport == "ws" else "tcp",
            reconnect_on_failure=False, **kwargs)
        if transport == "ws":
            self.paho.ws_set_options(path=contract.WS_PATH)
        self.paho.max_inflight_messages_set(100)
        self.paho.max_queued_messages_set(0)
        self.messages: queue.Queue[Message] = queue.Queue()
        self.connected = threading.Event()
        # Set when CONNACK arrives and never cleared by a disconnection: a refused CONNECT is
        # answered and closed at once, and paho may run both callbacks before connect() waits.
        self.connack_received = threading.Event()
        self.disconnected = threading.Event()
        self.connack: dict = {}
        self.disconnection: Disconnection | None = None
        self._acks: dict[int, threading.Event] = {}
        self._ack_results: dict[int, object] = {}
        self._lock = threading.Lock()
        self.paho.on_connect = self._on_connect
        self.paho.on_disconnect = self._on_disconnect
        self.paho.on_message = self._on_message
        self.paho.on_subscribe = self._on_subscribe
        self.paho.on_unsubscribe = self._on_unsubscribe
        self._loop_started = False

    # ------------------------------------------------------------------ callbacks
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.connack = {"reason_code": _rc(reason_code),
                        "session_present": bool(flags.session_present),
                        "props": _props_dict(properties)}
        # paho ignores the broker's Receive Maximum, and its public setter refuses to
        # change the window once connected; nothing is in flight yet, so set it here.
        receive_maximum = self.connack["props"].get("ReceiveMaximum")
        if receive_maximum:
            self.paho._max_inflight_messages = min(100, receive_maximum)
        self.connack_received.set()
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.disconnection = Disconnection(_rc(reason_code),
                                           bool(flags.is_disconnect_packet_from_server),
                                           _props_dict(properties))
        self.disconnected.set()
        self.connected.clear()

    def _on_message(self, client, userdata, msg):
        message_props = {}
        if self.proto == V5 and msg.properties is not None:
            for name in MESSAGE_PROPERTIES:
                if hasattr(msg.properties, name):
                    message_props[name] = getattr(msg.properties, name)
        self.messages.put(Message(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain),
                                  message_props))

    def _complete(self, mid, result):
        with self._lock:
            self._ack_results[mid] = result
            event = self._acks.setdefault(mid, threading.Event())
        event.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        self._complete(mid, [_rc(rc) for rc in reason_codes])

    def _on_unsubscribe(self, client, userdata, mid, reason_codes, properties):
        self._complete(mid, [_rc(rc) for rc in (reason_codes or [])])

    def _wait_ack(self, mid: int, what: str, timeout: float):
        with self._lock:
            event = self._acks.setdefault(mid, threading.Event())
        if not event.wait(timeout):
            raise AssertionError(f"{self}: no {what} within {timeout}s"
                                 + self._disconnect_note())
        with self._lock:
            return self._ack_results.pop(mid)

    def _disconnect_note(self) -> str:
        if self.disconnection:
            d = self.disconnection
            return (f" (disconnected: reason {d.reason_code:#04x}, "
                    f"{'DISCONNECT from broker' if d.from_server else 'connection lost'})")
        return ""

    def __repr__(self) -> str:
        return f"<TestClient {self.client_id} {PROTO_NAMES[self.proto]}/{self.transport}>"

    # ------------------------------------------------------------------ actions
    def will_set(self, topic: str, payload: bytes = b"", qos: int = 0, retain: bool = False,
                 **will_props) -> None:
        properties = props(PacketTypes.WILLMESSAGE, **will_props) if will_props else None
        self.paho.will_set(topic, payload, qos, retain, properties)

    def connect(self, clean_start: bool = True, session_expiry: int | None = None,
                timeout: float = contract.TIMEOUT, expect_success: bool = True,
                **connect_props) -> dict:
        """Connect and wait for CONNACK; returns {reason_code, session_present, props}."""
        assert not self._loop_started, "paho cannot reconnect here: use a new TestClient"
        port = self.broker.ws_port if self.transport == "ws" else self.broker.mqtt_port
        kwargs = {}
        if self.proto == V5:
            kwargs["clean_start"] = clean_start
            if session_expiry is not None:
                connect_props["SessionExpiryInterval"] = session_expiry
            if connect_props:
                kwargs["properties"] = props(PacketTypes.CONNECT, **connect_props)
        self.connected.clear()
        self.connack_received.clear()
        self.disconnected.clear()
        self.disconnection = None
        self.paho.connect(self.broker.host, port, keepalive=30, **kwargs)
        self.paho.loop_start()
        self._loop_started = True
        if not self.connack_received.wait(timeout):
            raise AssertionError(f"{self}: no CONNACK within {timeout}s"
                                 + self._disconnect_note())
        if expect_success:
            assert self.connack["reason_code"] == 0, f"{self}: CONNACK {self.connack}"
        return self.connack

    def subscribe(self, topic_filter, qos: int = 0, timeout: float = contract.TIMEOUT,
                  options: SubscribeOptions | None = None,
                  subscription_id: int | None = None, check: bool = True) -> list[int]:
        """Subscribe and wait for SUBACK; returns the reason codes (granted QoS)."""
        properties = None
        if subscription_id is not None:
            properties = props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=subscription_id)
        if options is not None:
            rc, mid = self.paho.subscribe(topic_filter, options=options, properties=properties)
        else:
            rc, mid = self.paho.subscribe(topic_filter, qos, properties=properties)
        assert rc == paho.MQTT_ERR_SUCCESS, f"{self}: subscribe({topic_filter!r}) -> {rc}"
        codes = self._wait_ack(mid, f"SUBACK for {topic_filter!r}", timeout)
        if check:
            assert all(code < 0x80 for code in codes), (
                f"{self}: SUBACK for {topic_filter!r} refused: {[hex(c) for c in codes]}")
        return codes

    def unsubscribe(self, topic_filter: str, timeout: float = contract.TIMEOUT) -> None:
        rc, mid = self.paho.unsubscribe(topic_filter)
        assert rc == paho.MQTT_ERR_SUCCESS
        self._wait_ack(mid, f"UNSUBACK for {topic_filter!r}", timeout)

    def publish(self, topic: str, payload: bytes | str = b"", qos: int = 0,
                retain: bool = False, wait: bool = True, timeout: float = contract.TIMEOUT,
                **publish_props) -> paho.MQTTMessageInfo:
        """Publish; with wait=True returns after PUBACK (QoS 1), PUBCOMP (QoS 2) or the
        write (QoS 0)."""
        properties = props(PacketTypes.PUBLISH, **publish_props) if publish_props else None
        info = self.paho.publish(topic, payload, qos, retain, properties)
        assert info.rc == paho.MQTT_ERR_SUCCESS, f"{self}: publish to {topic!r} -> {info.rc}"
        if wait:
            info.wait_for_publish(timeout)
            assert info.is_published(), (
                f"{self}: QoS {qos} publish to {topic!r} not acknowledged within {timeout}s"
                + self._disconnect_note())
        return info

    def expect(self, count: int = 1, timeout: float = contract.TIMEOUT,
               what: str = "") -> list[Message]:
        """Wait for `count` messages (failing with what arrived if they do not)."""
        got: list[Message] = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            remaining = deadline - time.monotonic()
            try:
                got.append(self.messages.get(timeout=max(0.0, remaining)))
            except queue.Empty:
                raise AssertionError(
                    f"{self}: expected {count} message(s){' ' + what if what else ''} within "
                    f"{timeout}s, got {len(got)}: {got}" + self._disconnect_note()) from None
        return got

    def expect_one(self, timeout: float = contract.TIMEOUT, what: str = "") -> Message:
        return self.expect(1, timeout, what)[0]

    def expect_none(self, timeout: float = contract.QUIET, what: str = "") -> None:
        """Assert that no message arrives within `timeout`."""
        try:
            msg = self.messages.get(timeout=timeout)
        except queue.Empty:
            return
        raise AssertionError(f"{self}: expected no message{' ' + what if what else ''}, "
                             f"got {msg}")

    def drain(self) -> list[Message]:
        out = []
        while True:
            try:
                out.append(self.messages.get_nowait())
            except queue.Empty:
                return out

    def wait_disconnected(self, timeout: float = contract.TIMEOUT) -> Disconnection:
        assert self.disconnected.wait(timeout), f"{self}: still connected after {timeout}s"
        return self.disconnection

    def disconnect(self, reason_code: int | None = None, timeout: float = contract.TIMEOUT,
                   **disconnect_props) -> None:
        """A clean DISCONNECT (MQTT 5: with `reason_code`)."""
        kwargs = {}
        if reason_code is not None:
            kwargs["reasoncode"] = ReasonCode(PacketTypes.DISCONNECT, identifier=reason_code)
        if disconnect_props:
            kwargs["properties"] = props(PacketTypes.DISCONNECT, **disconnect_props)
        self.paho.disconnect(**kwargs)
        assert self.disconnected.wait(timeout), f"{self}: DISCONNECT did not complete"

    def close(self) -> None:
        """Idempotent cleanup."""
        try:
            if self.connected.is_set():
                self.paho.disconnect()
                self.disconnected.wait(2)
        finally:
            if self._loop_started:
                self.paho.loop_stop()


def gather(clients: list[TestClient], total: int,
           timeout: float = contract.TIMEOUT) -> list[list[bytes]]:
    """Wait until `total` messages arrived across `clients`; -> payloads per client."""
    received: list[list[bytes]] = [[] for _ in clients]
    deadline = time.monotonic() + timeout
    while True:
        for got, c in zip(received, clients):
            got += [m.payload for m in c.drain()]
        if sum(map(len, received)) >= total or time.monotonic() > deadline:
            return received
        time.sleep(0.01)

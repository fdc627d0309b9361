"""Interop with Mosquitto's command-line clients (mosquitto_pub / mosquitto_sub, TCP only:
they do not speak WebSocket)."""

from __future__ import annotations

import queue
import shutil
import subprocess
import threading

import pytest

import contract
from mqttclient import V5, V311, new_client_id

CLI_VERSION = {V311: "mqttv311", V5: "mqttv5"}
FORMAT = "MSG|%t|%q|%r|%C|%P|%p"

pytestmark = pytest.mark.skipif(
    not (shutil.which("mosquitto_pub") and shutil.which("mosquitto_sub")),
    reason="mosquitto_pub/mosquitto_sub not installed (apt-get install mosquitto-clients)")


def line_buffered(argv):
    # mosquitto_sub block-buffers a pipe; stdbuf (coreutils) makes it line-buffered.
    return (["stdbuf", "-oL"] if shutil.which("stdbuf") else []) + argv


class MosquittoSub:
    """mosquitto_sub in the background; knows when its SUBACK arrived."""

    def __init__(self, broker, topic, qos, proto, count, extra=()):
        self.argv = line_buffered([
            "mosquitto_sub", "-h", broker.host, "-p", str(broker.mqtt_port), "-t", topic,
            "-q", str(qos), "-V", CLI_VERSION[proto], "-i", new_client_id("msub"), "-d",
            "-F", FORMAT, "-C", str(count), "-W", str(int(contract.TIMEOUT * 4)), *extra])
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        self.subscribed = threading.Event()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.output.append(line)
            if "received SUBACK" in line:
                self.subscribed.set()
            if line.startswith("MSG|"):
                self.lines.put(line)
        self.lines.put(None)

    def wait_subscribed(self):
        assert self.subscribed.wait(contract.TIMEOUT), (
            f"mosquitto_sub did not get a SUBACK: {self.output}")

    def messages(self, count) -> list[dict]:
        """Wait for `count` messages; mosquitto_sub exits after them (-C)."""
        got = []
        while len(got) < count:
            try:
                line = self.lines.get(timeout=contract.TIMEOUT * 2)
            except queue.Empty:
                line = None
            if line is None:
                break
            _, topic, qos, retain, ctype, uprops, payload = line.split("|", 6)
            got.append({"topic": topic, "qos": int(qos), "retain": retain == "1",
                        "content_type": ctype, "user_props": uprops, "payload": payload})
        assert len(got) == count, f"mosquitto_sub got {len(got)} of {count}: {self.output}"
        code = self.proc.wait(contract.TIMEOUT)
        assert code == 0, f"mosquitto_sub exited {code}: {self.output}"
        return got

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def mosquitto_subs():
    started = []
    yield lambda *a, **kw: started.append(MosquittoSub(*a, **kw)) or started[-1]
    for s in started:
        s.kill()


def mosquitto_pub(broker, proto, topic, *args, stdin=None):
    argv = ["mosquitto_pub", "-h", broker.host, "-p", str(broker.mqtt_port), "-t", topic,
            "-V", CLI_VERSION[proto], "-i", new_client_id("mpub"), *args]
    r = subprocess.run(argv, input=stdin, capture_output=True, text=True,
                       timeout=contract.TIMEOUT * 2)
    assert r.returncode == 0, f"{' '.join(argv)} exited {r.returncode}: {r.stderr}{r.stdout}"


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_mosquitto_pub_to_paho(broker, client_factory, proto, qos, topic):
    sub = client_factory(proto)
    sub.subscribe(topic, 2)
    lines = [f"line{i}" for i in range(10)]
    mosquitto_pub(broker, proto, topic, "-q", str(qos), "-l", stdin="\n".join(lines) + "\n")
    got = sub.expect(10)
    assert [m.payload.decode() for m in got] == lines
    assert {m.qos for m in got} == {qos}


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_paho_to_mosquitto_sub(broker, client_factory, mosquitto_subs, proto, qos, topic):
    msub = mosquitto_subs(broker, f"{topic}/#", qos, proto, 10)
    msub.wait_subscribed()
    pub = client_factory(proto)
    for i in range(10):
        pub.publish(f"{topic}/t", f"p{i}", 2, wait=False)
    got = msub.messages(10)
    assert [m["payload"] for m in got] == [f"p{i}" for i in range(10)]
    assert {m["qos"] for m in got} == {qos}
    assert {m["topic"] for m in got} == {f"{topic}/t"}


def test_mosquitto_pub_retained(broker, client_factory, mosquitto_subs, proto, topic):
    mosquitto_pub(broker, proto, topic, "-q", "1", "-r", "-m", "kept")
    msub = mosquitto_subs(broker, topic, 1, proto, 1)
    (m,) = msub.messages(1)
    assert (m["payload"], m["retain"]) == ("kept", True)
    paho_sub = client_factory(proto)
    paho_sub.subscribe(topic, 1)
    msg = paho_sub.expect_one()
    assert (msg.payload, msg.retain) == (b"kept", True)

    mosquitto_pub(broker, proto, topic, "-q", "1", "-r", "-n")  # -n: null message, deletes
    assert paho_sub.expect_one().payload == b""
    fresh = client_factory(proto)
    fresh.subscribe(topic, 1)
    fresh.expect_none(what="(retained message deleted by mosquitto_pub -r -n)")


def test_mqtt5_properties_with_cli(broker, client_factory, mosquitto_subs, topic):
    """mosquitto_pub -V mqttv5 properties reach paho; paho's reach mosquitto_sub -V mqttv5."""
    sub = client_factory(V5)
    sub.subscribe(f"{topic}/in", 1)
    mosquitto_pub(broker, V5, f"{topic}/in", "-q", "1", "-m", "{}",
                  "-D", "publish", "user-property", "origin", "cli",
                  "-D", "publish", "content-type", "application/json",
                  "-D", "publish", "response-topic", f"{topic}/reply",
                  "-D", "publish", "message-expiry-interval", "300")
    msg = sub.expect_one()
    assert msg.props.get("UserProperty") == [("origin", "cli")]
    assert msg.props.get("ContentType") == "application/json"
    assert msg.props.get("ResponseTopic") == f"{topic}/reply"
    assert 0 < msg.props.get("MessageExpiryInterval", 0) <= 300

    msub = mosquitto_subs(broker, f"{topic}/out", 1, V5, 1)
    msub.wait_subscribed()
    client_factory(V5).publish(f"{topic}/out", b"hello", 1, ContentType="text/plain",
                               UserProperty=[("origin", "paho")])
    (m,) = msub.messages(1)
    assert (m["payload"], m["content_type"]) == ("hello", "text/plain")
    assert "origin:paho" in m["user_props"], f"user properties seen: {m['user_props']!r}"

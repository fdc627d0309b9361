"""TLS: MQTT over TLS (the mqtts port) and over secure WebSocket (the https port), with the
broker's certificate pinned from the data dir; client certificates checked against a client
CA; plaintext clients on the TLS port; reload of the certificate (SIGHUP, admin endpoint)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

import brokers
import contract
import mqttpackets as mp
import pki
from mqttclient import V5, V311, TestClient, new_client_id

HAVE_MOSQUITTO_CLIENTS = bool(shutil.which("mosquitto_pub") and shutil.which("mosquitto_sub"))
CLI_VERSION = {V311: "mqttv311", V5: "mqttv5"}


# ----------------------------------------------------------------------------- helpers
def tls_client(broker, proto=V5, transport="tcp", cafile=None, certfile=None, keyfile=None,
               client_id=None) -> TestClient:
    """A paho TestClient for the broker's TLS listener (`transport` "ws": secure WebSocket on
    the https port), trusting `cafile` (default: the broker's own certificate)."""
    assert broker.mqtts_port and broker.https_port, (
        f"the broker has no TLS listeners (readiness line: {broker.ready_line!r})")
    target = SimpleNamespace(host=broker.host, mqtt_port=broker.mqtts_port,
                             ws_port=broker.https_port)
    client = TestClient(target, proto, transport, client_id)
    client.paho.tls_set(ca_certs=str(cafile or broker.server_certificate),
                        certfile=str(certfile) if certfile else None,
                        keyfile=str(keyfile) if keyfile else None)
    return client


@pytest.fixture
def tls_clients():
    """tls_clients(broker, ...) -> a TLS TestClient, closed after the test."""
    made: list[TestClient] = []

    def make(broker, **kwargs) -> TestClient:
        client = tls_client(broker, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        try:
            client.close()
        except Exception:  # noqa: BLE001 - cleanup must not mask the test's result
            pass


def connect_refused(client: TestClient) -> str:
    """Connect, expecting no successful CONNACK; returns how it failed."""
    try:
        client.connect(timeout=contract.TIMEOUT)
    except (AssertionError, OSError, ssl.SSLError) as e:
        return f"{type(e).__name__}: {e}"
    raise AssertionError(f"{client} connected (CONNACK {client.connack}) but should be refused")


def round_trip(publisher: TestClient, subscriber: TestClient, topic: str, payload=b"tls") -> None:
    subscriber.subscribe(topic, 1)
    publisher.publish(topic, payload, 1)
    got = subscriber.expect(1, what=f"on {topic}")
    assert got[0].topic == topic and got[0].payload == payload, got


def stderr_lines(broker, message: str) -> list[str]:
    return [line for line in broker.stderr_text(limit=10**7).splitlines() if message in line]


def wait_for(condition, what: str, timeout: float = contract.TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def http(method: str, url: str, cafile: Path | None = None) -> tuple[int, str, dict]:
    """(status, content type, JSON body) of a bodiless request."""
    context = ssl.create_default_context(cafile=str(cafile)) if cafile else None
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=contract.TIMEOUT, context=context) as r:
            return r.status, r.headers.get("Content-Type", ""), json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), json.loads(e.read() or b"{}")


def mosquitto_tls_args(broker, cafile=None, certfile=None, keyfile=None) -> list[str]:
    args = ["-h", broker.host, "-p", str(broker.mqtts_port),
            "--cafile", str(cafile or broker.server_certificate)]
    if certfile:
        args += ["--cert", str(certfile), "--key", str(keyfile)]
    return args


# ----------------------------------------------------------------------------- listeners
@pytest.mark.meridian_only(reason="Meridian's readiness line and flags")
def test_listening_line_lists_tls_ports_after_mqtt_and_http(broker):
    keys = [item.split("=", 1)[0] for item in broker.ready_line.split()[1:]]
    assert keys[:2] == ["mqtt", "http"], broker.ready_line
    assert contract.READY_KEY_MQTTS in keys and contract.READY_KEY_HTTPS in keys, broker.ready_line
    ports = {broker.mqtt_port, broker.http_port, broker.mqtts_port, broker.https_port}
    assert len(ports) == 4, broker.ready_line


@pytest.mark.parametrize("transport", ["tcp", "ws"], ids=["mqtts", "wss"])
def test_paho_over_tls(broker, tls_clients, client_factory, proto, transport, topic):
    """paho over TLS trusting the broker's certificate; messages flow to and from plain
    clients of the same broker."""
    secure = tls_clients(broker, proto=proto, transport=transport)
    assert secure.connect()["reason_code"] == contract.RC_SUCCESS
    plain = client_factory(proto)
    round_trip(secure, plain, f"{topic}/to-plain")
    round_trip(plain, secure, f"{topic}/to-secure")
    tls_socket = secure.paho.socket()
    if hasattr(tls_socket, "version"):  # paho's WebSocket wrapper hides the SSL socket
        assert tls_socket.version() in ("TLSv1.2", "TLSv1.3"), tls_socket.version()


def test_certificate_names_localhost_and_loopback(broker):
    """The certificate is valid for 127.0.0.1 and localhost: a client checking the host name
    accepts it under both."""
    context = ssl.create_default_context(cafile=str(broker.server_certificate))
    for name in ("127.0.0.1", "localhost"):
        with socket.create_connection((broker.host, broker.mqtts_port), timeout=contract.TIMEOUT) \
                as raw, context.wrap_socket(raw, server_hostname=name) as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


@pytest.mark.skipif(not HAVE_MOSQUITTO_CLIENTS, reason="mosquitto_pub/mosquitto_sub not installed")
@pytest.mark.parametrize("proto", [V311, V5], ids=["mqtt311", "mqtt5"])
def test_mosquitto_clients_over_tls(broker, proto, topic):
    # mosquitto_sub block-buffers a pipe; stdbuf (coreutils) makes it line-buffered.
    line_buffered = ["stdbuf", "-oL"] if shutil.which("stdbuf") else []
    sub = subprocess.Popen(
        [*line_buffered, "mosquitto_sub", *mosquitto_tls_args(broker), "-t", topic, "-q", "1", "-C", "1",
         "-V", CLI_VERSION[proto], "-i", new_client_id("msub"), "-d",
         "-W", str(int(contract.TIMEOUT * 4))],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    try:
        output = []
        for line in sub.stdout:
            output.append(line.rstrip("\n"))
            if "received SUBACK" in line:
                break
        assert any("received SUBACK" in line for line in output), output
        pub = subprocess.run(
            ["mosquitto_pub", *mosquitto_tls_args(broker), "-t", topic, "-q", "1",
             "-m", "hello over tls", "-V", CLI_VERSION[proto], "-i", new_client_id("mpub")],
            capture_output=True, text=True, timeout=contract.TIMEOUT * 2)
        assert pub.returncode == 0, f"mosquitto_pub exited {pub.returncode}: {pub.stderr}"
        rest, _ = sub.communicate(timeout=contract.TIMEOUT * 2)
        output += rest.splitlines()
        assert "hello over tls" in output, output
        assert sub.returncode == 0, output
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()


@pytest.mark.skipif(not HAVE_MOSQUITTO_CLIENTS, reason="mosquitto_pub/mosquitto_sub not installed")
def test_mosquitto_pub_refuses_an_untrusted_broker(broker, tmp_path):
    stranger = pki.Authority(tmp_path, "Stranger CA")
    pub = subprocess.run(
        ["mosquitto_pub", *mosquitto_tls_args(broker, cafile=stranger.cert), "-t", "x",
         "-m", "never", "-i", new_client_id("mpub")],
        capture_output=True, text=True, timeout=contract.TIMEOUT * 2)
    assert pub.returncode != 0, f"mosquitto_pub trusted an unknown certificate: {pub.stdout}"


def test_plaintext_client_on_tls_port_is_closed_and_broker_keeps_serving(broker, tls_clients,
                                                                         topic):
    with socket.create_connection((broker.host, broker.mqtts_port),
                                  timeout=contract.TIMEOUT) as raw:
        address = "%s:%d" % raw.getsockname()[:2]
        raw.sendall(mp.connect(new_client_id("plain"), mp.V5))
        received = b""
        while True:
            try:
                chunk = raw.recv(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    # Whatever came back (a TLS alert at most) is not a CONNACK.
    assert not received.startswith(b"\x20"), f"plaintext client got a CONNACK: {received!r}"
    a, b = tls_clients(broker), tls_clients(broker, transport="ws")
    a.connect()
    b.connect()
    round_trip(a, b, topic)
    if broker.kind == "meridian":
        def ours():
            return [line for line in stderr_lines(broker, contract.LOG_TLS_HANDSHAKE_FAILED)
                    if f"{address} " in line or line.endswith(address)]

        wait_for(ours, f"the handshake failure log line for {address}")
        time.sleep(contract.QUIET)
        lines = ours()
        assert len(lines) == 1, lines
        assert "plaintext" in lines[0], lines[0]
        metrics = urllib.request.urlopen(
            f"http://{broker.host}:{broker.http_port}{contract.METRICS_PATH}",
            timeout=contract.TIMEOUT).read().decode()
        refused = re.search(r'^mqtt_connections_refused_total\{reason="tls"\} (\d+)', metrics, re.M)
        assert refused and int(refused.group(1)) >= 1, "no refused TLS connection counted"


@pytest.mark.meridian_only(reason="Meridian's TLS versions")
@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")  # TLS 1.1 on purpose
def test_tls_1_1_is_refused(broker):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    before = len(stderr_lines(broker, contract.LOG_TLS_HANDSHAKE_FAILED))
    with socket.create_connection((broker.host, broker.mqtts_port), timeout=contract.TIMEOUT) as raw:
        with pytest.raises(ssl.SSLError):
            context.wrap_socket(raw).close()
    lines = wait_for(lambda: stderr_lines(broker, contract.LOG_TLS_HANDSHAKE_FAILED)[before:],
                     "the handshake failure log line")
    assert "TLS 1.2 or 1.3" in lines[0], lines[0]


# ----------------------------------------------------------------------------- client certificates
@pytest.fixture
def client_pki(tmp_path):
    ca = pki.Authority(tmp_path, "Devices CA")
    stranger = pki.Authority(tmp_path, "Stranger CA")
    return SimpleNamespace(
        ca=ca,
        good=ca.issue("device-7", dns=["device-7.example"]),
        stranger=stranger.issue("device-7", dns=["device-7.example"], file_stem="impostor"),
    )


def test_required_client_certificate(broker_factory, tls_clients, client_pki, topic):
    b = broker_factory(settings={contract.SETTING_TLS_CLIENT_CA: str(client_pki.ca.cert),
                                 contract.SETTING_TLS_CLIENT_AUTH: "required"})
    good = tls_clients(b, certfile=client_pki.good.cert, keyfile=client_pki.good.key)
    assert good.connect()["reason_code"] == contract.RC_SUCCESS
    good_ws = tls_clients(b, transport="ws", certfile=client_pki.good.cert,
                          keyfile=client_pki.good.key)
    assert good_ws.connect()["reason_code"] == contract.RC_SUCCESS

    impostor = tls_clients(b, certfile=client_pki.stranger.cert, keyfile=client_pki.stranger.key)
    connect_refused(impostor)
    anonymous = tls_clients(b)
    connect_refused(anonymous)

    round_trip(good, good_ws, topic)  # still serving
    if b.kind == "meridian":
        lines = wait_for(lambda: len(stderr_lines(b, contract.LOG_TLS_HANDSHAKE_FAILED)) >= 2
                         and stderr_lines(b, contract.LOG_TLS_HANDSHAKE_FAILED),
                         "two handshake failure lines")
        assert any("not trusted" in line for line in lines), lines
        assert any("none presented" in line for line in lines), lines


@pytest.mark.skipif(not HAVE_MOSQUITTO_CLIENTS, reason="mosquitto_pub/mosquitto_sub not installed")
def test_mosquitto_pub_with_client_certificate(broker_factory, client_pki):
    b = broker_factory(settings={contract.SETTING_TLS_CLIENT_CA: str(client_pki.ca.cert),
                                 contract.SETTING_TLS_CLIENT_AUTH: "required"})
    ok = subprocess.run(
        ["mosquitto_pub", *mosquitto_tls_args(b, certfile=client_pki.good.cert,
                                              keyfile=client_pki.good.key),
         "-t", "x/y", "-m", "with cert", "-q", "1", "-i", new_client_id("mpub")],
        capture_output=True, text=True, timeout=contract.TIMEOUT * 2)
    assert ok.returncode == 0, f"mosquitto_pub with a good certificate: {ok.stderr}"
    refused = subprocess.run(
        ["mosquitto_pub", *mosquitto_tls_args(b, certfile=client_pki.stranger.cert,
                                              keyfile=client_pki.stranger.key),
         "-t", "x/y", "-m", "impostor", "-q", "1", "-i", new_client_id("mpub")],
        capture_output=True, text=True, timeout=contract.TIMEOUT * 2)
    assert refused.returncode != 0, "mosquitto_pub with another CA's certificate got through"


@pytest.mark.meridian_only(reason="tls.client_auth = optional has no Mosquitto equivalent")
def test_optional_client_certificate(broker_factory, tls_clients, client_pki, topic):
    b = broker_factory(settings={contract.SETTING_TLS_CLIENT_CA: str(client_pki.ca.cert),
                                 contract.SETTING_TLS_CLIENT_AUTH: "optional"})
    with_cert = tls_clients(b, certfile=client_pki.good.cert, keyfile=client_pki.good.key)
    without = tls_clients(b)
    with_cert.connect()
    without.connect()
    round_trip(with_cert, without, topic)
    connect_refused(tls_clients(b, certfile=client_pki.stranger.cert,
                                keyfile=client_pki.stranger.key))


# ----------------------------------------------------------------------------- certificates
@pytest.mark.meridian_only(reason="Meridian's self-signed certificate")
def test_self_signed_certificate_is_kept_across_restarts(broker_factory, tls_clients, topic):
    b = broker_factory()
    certificate = b.data_dir / contract.GENERATED_CERTIFICATE
    key = b.data_dir / contract.GENERATED_KEY
    assert certificate.is_file() and key.is_file()
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600, oct(os.stat(key).st_mode)
    pinned = certificate.read_bytes()
    fingerprint = pki.pem_fingerprint(certificate)
    assert pki.served_fingerprint(b.host, b.mqtts_port) == fingerprint
    assert pki.served_fingerprint(b.host, b.https_port) == fingerprint
    assert fingerprint in b.stderr_text(), "the certificate's fingerprint is not logged"

    b.restart()
    assert certificate.read_bytes() == pinned
    client = tls_clients(b, cafile=certificate)
    client.connect()
    round_trip(client, client, topic)
    assert pki.served_fingerprint(b.host, b.mqtts_port) == fingerprint


@pytest.mark.meridian_only(reason="Meridian's tls.enabled")
def test_tls_disabled(broker_factory):
    b = broker_factory(settings={contract.SETTING_TLS_ENABLED: "false"})
    assert b.mqtts_port is None and b.https_port is None, b.ready_line
    assert not (b.data_dir / "tls").exists()
    status, _, body = http("POST", f"http://{b.host}:{b.http_port}{contract.TLS_RELOAD_PATH}")
    assert status == 409 and body.get("field") == contract.SETTING_TLS_ENABLED, (status, body)
    os.kill(b.pid, signal.SIGHUP)  # nothing to reload, and no reason to die
    time.sleep(contract.QUIET)
    assert b.alive()


@pytest.mark.meridian_only(reason="Meridian's start-up errors")
@pytest.mark.parametrize("which", ["certificate", "private_key", "client_ca"])
def test_missing_certificate_file_stops_startup_naming_the_key(tmp_path, which):
    identity = pki.self_signed_server(tmp_path / "cert.pem", tmp_path / "key.pem")
    files = {"certificate": str(identity.cert), "private_key": str(identity.key),
             "client_ca": str(identity.cert)}
    missing = str(tmp_path / "nowhere" / f"{which}.pem")
    files[which] = missing
    args = [str(brokers.meridian_binary()), *contract.SERVE_ARGS, "--data-dir", str(tmp_path / "data"),
            "--set", f"{contract.SETTING_TLS_CERTIFICATE}={files['certificate']}",
            "--set", f"{contract.SETTING_TLS_PRIVATE_KEY}={files['private_key']}",
            "--set", f"{contract.SETTING_TLS_CLIENT_CA}={files['client_ca']}",
            "--set", f"{contract.SETTING_TLS_CLIENT_AUTH}=required"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 1, f"exit code {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    assert f"meridian: cannot start: tls.{which}: {missing} does not exist" in r.stderr, r.stderr
    assert contract.READY_PREFIX + " " not in r.stdout, "it started serving anyway"


# ----------------------------------------------------------------------------- reload
@pytest.fixture
def configured_certificate(tmp_path):
    """A broker certificate at fixed paths, and a second one to replace it with."""
    live = SimpleNamespace(cert=tmp_path / "live" / "server.crt", key=tmp_path / "live" / "server.key")
    first = pki.self_signed_server(tmp_path / "first" / "server.crt", tmp_path / "first" / "server.key")
    second = pki.self_signed_server(tmp_path / "second" / "server.crt",
                                    tmp_path / "second" / "server.key")
    live.cert.parent.mkdir()
    shutil.copy(first.cert, live.cert)
    shutil.copy(first.key, live.key)
    return SimpleNamespace(live=live, first=first, second=second)


def replace_certificate(live, new: pki.Identity) -> None:
    shutil.copy(new.key, live.key)
    shutil.copy(new.cert, live.cert)


@pytest.mark.meridian_only(reason="Meridian's reload on SIGHUP")
def test_sighup_reloads_a_replaced_certificate(broker_factory, tls_clients, configured_certificate,
                                               topic):
    pair = configured_certificate
    b = broker_factory(settings={contract.SETTING_TLS_CERTIFICATE: str(pair.live.cert),
                                 contract.SETTING_TLS_PRIVATE_KEY: str(pair.live.key)})
    established = tls_clients(b, cafile=pair.first.cert)
    established.connect()
    assert pki.served_fingerprint(b.host, b.mqtts_port) == pair.first.fingerprint

    replace_certificate(pair.live, pair.second)
    os.kill(b.pid, signal.SIGHUP)
    wait_for(lambda: any(pair.second.fingerprint in line
                         for line in stderr_lines(b, contract.LOG_TLS_RELOADED)),
             "the reload log line with the new fingerprint")
    assert b.alive(), "SIGHUP ended the process"
    assert pki.served_fingerprint(b.host, b.mqtts_port) == pair.second.fingerprint
    assert pki.served_fingerprint(b.host, b.https_port) == pair.second.fingerprint
    newcomer = tls_clients(b, cafile=pair.second.cert)
    newcomer.connect()
    newcomer_ws = tls_clients(b, cafile=pair.second.cert, transport="ws")
    newcomer_ws.connect()
    connect_refused(tls_clients(b, cafile=pair.first.cert))
    round_trip(established, newcomer, topic)  # the connection from before the reload goes on

    # A broken certificate: logged, and the current one stays.
    pair.live.cert.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    os.kill(b.pid, signal.SIGHUP)
    wait_for(lambda: stderr_lines(b, contract.LOG_TLS_RELOAD_FAILED), "the reload failure line")
    assert "tls.certificate" in stderr_lines(b, contract.LOG_TLS_RELOAD_FAILED)[0]
    assert pki.served_fingerprint(b.host, b.mqtts_port) == pair.second.fingerprint
    assert b.alive()


@pytest.mark.meridian_only(reason="Meridian's admin endpoint")
def test_reload_endpoint(broker_factory, configured_certificate):
    pair = configured_certificate
    b = broker_factory(settings={contract.SETTING_TLS_CERTIFICATE: str(pair.live.cert),
                                 contract.SETTING_TLS_PRIVATE_KEY: str(pair.live.key)})
    url = f"http://{b.host}:{b.http_port}{contract.TLS_RELOAD_PATH}"
    replace_certificate(pair.live, pair.second)
    status, _, body = http("POST", url)
    assert status == 200 and body.get("fingerprint") == pair.second.fingerprint, (status, body)
    assert pki.served_fingerprint(b.host, b.mqtts_port) == pair.second.fingerprint

    # Over HTTPS too (trusting the certificate it serves now).
    secure_url = f"https://127.0.0.1:{b.https_port}{contract.TLS_RELOAD_PATH}"
    status, _, body = http("POST", secure_url, cafile=pair.second.cert)
    assert status == 200 and body.get("fingerprint") == pair.second.fingerprint, (status, body)

    # The first key with the second certificate: refused, problem+json names the key.
    shutil.copy(pair.first.key, pair.live.key)
    status, content_type, body = http("POST", url)
    assert status == 500, (status, body)
    assert content_type.startswith("application/problem+json"), content_type
    assert body.get("field") == contract.SETTING_TLS_PRIVATE_KEY, body
    assert body.get("type") and body.get("title") and str(pair.live.key) in body.get("detail", ""), body
    assert pki.served_fingerprint(b.host, b.mqtts_port) == pair.second.fingerprint

    status, _, _ = http("GET", url)
    assert status in (404, 405), f"GET {contract.TLS_RELOAD_PATH} answered {status}"
    assert re.search(r"TLS reload failed", b.stderr_text())

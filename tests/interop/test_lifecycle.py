"""The `meridian` command line, configuration errors, restart, graceful shutdown."""

from __future__ import annotations

import re
import signal
import subprocess

import pytest

import brokers
import contract
import mqttpackets as mp
from mqttclient import V5, V311, TestClient


def run_meridian(*args, timeout=30.0) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([str(brokers.meridian_binary()), *args], capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"`meridian {' '.join(args)}` still running after {timeout}s "
                             f"(it should have exited); stdout: {e.stdout!r}") from None


def squash(text: str) -> str:
    """Lower case without - _ . so 'mqtt-port', 'mqtt_port', 'mqttPort' all match."""
    return re.sub(r"[-_.]", "", text.lower())


@pytest.mark.meridian_only(reason="Meridian's command line")
def test_serve_help_lists_options():
    r = run_meridian("serve", "--help")
    assert r.returncode == 0, f"`meridian serve --help` exited {r.returncode}: {r.stderr}"
    text = r.stdout + r.stderr
    missing = [opt for opt in contract.HELP_OPTIONS if opt not in text]
    assert not missing, f"`meridian serve --help` does not list {missing}:\n{text}"


@pytest.mark.meridian_only(reason="Meridian's configuration validation")
@pytest.mark.parametrize("args,key", [
    (["--mqtt-port", "70000"], "mqtt-port"),
    (["--set", f"{contract.SETTING_MAX_CONNECTIONS}=-5"], "maximum_connections"),
], ids=["mqtt-port-70000", "maximum_connections-negative"])
def test_invalid_configuration_exits_1_naming_the_key(tmp_path, args, key):
    r = run_meridian("serve", "--bind", "127.0.0.1", "--mqtt-port", "0", "--http-port", "0",
                     "--data-dir", str(tmp_path), *args)
    assert r.returncode == 1, (f"exit code {r.returncode} for {args} (expected 1)\n"
                               f"stdout: {r.stdout}\nstderr: {r.stderr}")
    assert squash(key) in squash(r.stderr), f"stderr does not name {key!r}: {r.stderr!r}"
    assert contract.READY_PREFIX + " " not in r.stdout, "it started serving anyway"


def test_restart_with_new_settings(broker_factory):
    """The fixture's restart: stop (exit 0), start with more settings, new ports."""
    b = broker_factory()
    raw, _, rc, props = mp.raw_connect(b.host, b.mqtt_port, "it-restart-1", mp.V5)
    raw.close()
    assert props.get("MaximumPacketSize") != 2048
    b.restart(settings={contract.SETTING_MAX_PACKET_SIZE: "2048"})
    raw, _, rc, props = mp.raw_connect(b.host, b.mqtt_port, "it-restart-2", mp.V5)
    raw.close()
    assert rc == 0 and props.get("MaximumPacketSize") == 2048, props


@pytest.mark.meridian_only(reason="Meridian's shutdown contract (DISCONNECT 0x8B, exit 0)")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_graceful_shutdown(broker_factory, sig):
    b = broker_factory()
    v5_tcp = TestClient(b, V5, "tcp")
    v5_ws = TestClient(b, V5, "ws")
    v311 = TestClient(b, V311, "tcp")
    clients = [v5_tcp, v5_ws, v311]
    try:
        for c in clients:
            c.connect()
        b.stop(sig)  # asserts exit code 0 within 10 s
        for c in (v5_tcp, v5_ws):
            gone = c.wait_disconnected()
            assert gone.from_server and gone.reason_code == contract.RC_SERVER_SHUTTING_DOWN, (
                f"{c}: expected DISCONNECT 0x8B (server shutting down), got {gone}")
        assert v311.wait_disconnected() is not None
    finally:
        for c in clients:
            c.close()

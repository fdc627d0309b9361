"""The fleet simulator (issue 7): `meridian simulate` against a running server, and
`meridian serve --demo` with its in-process fleet — checked through the REST API, as an operator
would see the devices.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest

import brokers
import contract
import platform_api

pytestmark = pytest.mark.meridian_only(reason="Meridian's simulator and REST API")


def simulate(platform, *args, timeout=120.0) -> subprocess.CompletedProcess:
    argv = [str(brokers.meridian_binary()), "simulate", "--host", "127.0.0.1",
            "--mqtt-port", str(platform.broker.mqtt_port), "--progress-interval", "1", *args]
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"`meridian simulate` still running after {timeout}s; stderr: {e.stderr!r}") from None


def profile(platform) -> tuple[str, str]:
    key = f"sim-key-{uuid.uuid4().hex[:8]}"
    created = platform.ok("POST", "/api/v1/profiles", status=201, json={
        "name": f"sim-{uuid.uuid4().hex[:8]}", "provisioningMode": "allow-create", "provisioningKey": key})
    return key, created["provisioningSecret"]


def devices_named(platform, prefix: str) -> list[dict]:
    found, cursor = [], None
    while True:
        params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        page = platform.ok("GET", "/api/v1/devices", params=params)
        found += [d for d in page["items"] if d["name"].startswith(prefix + "-")]
        cursor = page.get("nextCursor")
        if not cursor:
            return found


def latest(platform, device_id: str) -> dict:
    return platform.ok("GET", f"/api/v1/devices/{device_id}/telemetry/latest")


def test_simulate_provisions_devices_that_send_telemetry_then_reuses_saved_tokens(platform, tmp_path):
    key, secret = profile(platform)
    prefix = f"fleet{uuid.uuid4().hex[:6]}"
    tokens = tmp_path / "tokens.txt"
    run = simulate(platform, "--devices", "10", "--rate", "4", "--duration", "4s", "--seed", "7",
                   "--provision-key", key, "--provision-secret", secret, "--name-prefix", prefix,
                   "--save-tokens", str(tokens), "--json")
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["devices"] == 10 and summary["errors"] == 0, summary
    assert summary["sent"] > 0 and summary["acknowledged"] == summary["sent"], summary
    assert "connected" in run.stderr  # progress lines
    made = devices_named(platform, prefix)
    assert len(made) == 10
    # Every profile's keys arrived, e.g. the thermostat's (device 0) and the meter's (device 4).
    by_name = {d["name"]: d for d in made}
    assert "temperature" in latest(platform, by_name[f"{prefix}-0"]["id"])
    assert "energy" in latest(platform, by_name[f"{prefix}-4"]["id"])
    assert len(tokens.read_text().split()) == 10

    # A second run of the same fleet: provisioning the names again is refused, and says so...
    again = simulate(platform, "--devices", "2", "--duration", "2s", "--provision-key", key,
                     "--provision-secret", secret, "--name-prefix", prefix)
    assert again.returncode != 0 and "already provisioned" in again.stdout, again.stdout
    # ...while the saved tokens run the same devices.
    reuse = simulate(platform, "--devices", "10", "--rate", "4", "--duration", "3s",
                     "--tokens-file", str(tokens), "--json")
    assert reuse.returncode == 0, reuse.stderr
    assert json.loads(reuse.stdout)["acknowledged"] > 0
    assert len(devices_named(platform, prefix)) == 10


def test_simulated_devices_follow_desired_settings_and_answer_commands(platform):
    key, secret = profile(platform)
    prefix = f"ctl{uuid.uuid4().hex[:6]}"
    argv = [str(brokers.meridian_binary()), "simulate", "--host", "127.0.0.1",
            "--mqtt-port", str(platform.broker.mqtt_port), "--devices", "5", "--rate", "2",
            "--duration", "40s", "--provision-key", key, "--provision-secret", secret,
            "--name-prefix", prefix, "--profile", "thermostat"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while len(devices_named(platform, prefix)) < 5:
            assert time.monotonic() < deadline, "the simulated devices were not provisioned"
            time.sleep(0.2)
        device = {d["name"]: d for d in devices_named(platform, prefix)}[f"{prefix}-0"]["id"]
        while not latest(platform, device):
            assert time.monotonic() < deadline, "no telemetry from the simulated thermostat"
            time.sleep(0.2)
        platform.ok("PATCH", f"/api/v1/devices/{device}/twin", json={"desired": {"setpoint": 24.5}})
        while True:
            twin = platform.ok("GET", f"/api/v1/devices/{device}/twin")
            if twin["reported"].get("setpoint") == 24.5 and not twin["delta"]:
                break
            assert time.monotonic() < deadline, f"the setpoint was not applied: {twin}"
            time.sleep(0.2)
        answered = platform.ok("POST", f"/api/v1/devices/{device}/commands",
                               json={"method": "setSetpoint", "params": {"value": 22}, "timeoutMs": 10000})
        assert answered["status"] == "succeeded", answered
        refused = platform.ok("POST", f"/api/v1/devices/{device}/commands",
                              json={"method": "setSetpoint", "params": {"value": 99}, "timeoutMs": 10000})
        assert refused["status"] == "failed" and refused.get("error"), refused
    finally:
        proc.terminate()  # SIGTERM
        proc.wait(30)


def test_simulate_injects_the_faults_it_is_given(platform):
    key, secret = profile(platform)
    run = simulate(platform, "--devices", "6", "--rate", "10", "--duration", "4s",
                   "--provision-key", key, "--provision-secret", secret,
                   "--name-prefix", f"flt{uuid.uuid4().hex[:6]}", "--fault", "spikes:20%",
                   "--fault", "dropouts:20%", "--fault", "packet-loss:10%", "--json")
    assert run.returncode == 0, run.stderr
    faults = json.loads(run.stdout)["faults"]
    assert faults["spikes"] > 0 and faults["dropouts"] > 0 and faults["lostMessages"] > 0, faults


@pytest.mark.parametrize("args,named", [
    (["--fault", "spikes:200%"], "200%"),
    (["--fault", "meteor:5%"], "meteor"),
    (["--profile", "toaster"], "toaster"),
    (["--duration", "soon"], "--duration"),
    (["--mqtt-version", "7"], "--mqtt-version"),
    (["--devices", "0"], "devices"),
], ids=["percent", "kind", "profile", "duration", "version", "devices"])
def test_simulate_bad_arguments_name_the_option(platform, args, named):
    run = simulate(platform, "--provision-key", "k", "--provision-secret", "s", *args, timeout=30)
    assert run.returncode != 0
    assert named in run.stderr, run.stderr


def test_simulate_without_credentials_says_what_to_give(platform):
    run = simulate(platform, "--devices", "1", timeout=30)
    assert run.returncode != 0 and "--provision-key" in run.stderr and "--tokens-file" in run.stderr


def test_serve_demo_lists_live_devices_within_30_seconds_and_keeps_them_across_a_restart(tmp_path):
    started = time.monotonic()
    b = brokers.Broker(tmp_path, extra_args=["--demo"], env={platform_api.BOOTSTRAP_ENV: platform_api.ADMIN_KEY})
    try:
        demo = platform_api.Platform(b)

        def live_devices() -> list[str]:
            page = demo.ok("GET", "/api/v1/devices", params={"q": 'labels.demo = "true"', "limit": 100})
            now_ms = time.time() * 1000
            alive = []
            for d in page["items"]:
                values = latest(demo, d["id"])
                if values and max(v["ts"] for v in values.values()) > now_ms - 15_000:
                    alive.append(d["id"])
            return alive

        while len(alive := live_devices()) < 20:
            assert time.monotonic() - started < 30, f"only {len(alive)} demo devices with live telemetry after 30 s"
            time.sleep(0.5)
        first = demo.ok("GET", "/api/v1/devices", params={"q": 'labels.demo = "true"', "limit": 100})["items"]
        assert len(first) == 50
        assert {d["labels"]["profile"] for d in first} == {
            "thermostat", "cold-chain-truck", "factory-motor", "wearable", "smart-meter"}

        b.stop()
        b.start()
        restarted = time.monotonic()
        while len(live_devices()) < 20:
            assert time.monotonic() - restarted < 30, "the demo fleet did not come back after a restart"
            time.sleep(0.5)
        again = demo.ok("GET", "/api/v1/devices", params={"q": 'labels.demo = "true"', "limit": 100})["items"]
        assert sorted(d["id"] for d in again) == sorted(d["id"] for d in first)
    finally:
        b.stop()


def test_bench_reports_throughput_latency_and_resources():
    argv = [str(brokers.meridian_binary()), "bench", "--devices", "20", "--rate", "5",
            "--warmup", "3s", "--duration", "4s", "--json"]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["devices"] == 20 and result["errors"] == 0, result
    # 100 samples/s offered; what was accepted is of that order (timing is not asserted).
    assert result["acceptedPerSecond"] > 0 and result["latencySamples"] > 0, result
    latency = result["latencyMicroseconds"]
    assert 0 < latency["p50"] <= latency["p99"] <= latency["p99.9"] <= latency["max"], latency
    assert result["server"]["rssMiB"] > 0 and result["simulator"]["rssMiB"] > 0, result
    assert "server pid" in run.stderr

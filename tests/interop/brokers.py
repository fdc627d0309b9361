"""Start and stop the broker under test: `meridian serve`, or Mosquitto for validation.

MERIDIAN_TEST_BROKER=meridian (default) runs MERIDIAN_BIN (default .build/debug/meridian);
MERIDIAN_TEST_BROKER=mosquitto runs the `mosquitto` broker with an equivalent config.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

import contract
import pki

REPO_ROOT = Path(__file__).resolve().parents[2]
KIND = os.environ.get("MERIDIAN_TEST_BROKER", "meridian").strip().lower() or "meridian"


def meridian_binary() -> Path:
    return Path(os.environ.get("MERIDIAN_BIN") or REPO_ROOT / ".build" / "debug" / "meridian")


def mosquitto_binary() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def check_broker_available() -> str | None:
    """None when the broker under test can be started, else why not."""
    if KIND == "mosquitto":
        if mosquitto_binary() is None:
            return "MERIDIAN_TEST_BROKER=mosquitto but no `mosquitto` binary was found " \
                   "(apt-get install mosquitto)"
        return None
    if KIND != "meridian":
        return f"MERIDIAN_TEST_BROKER={KIND!r}: expected 'meridian' or 'mosquitto'"
    binary = meridian_binary()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        return (f"meridian binary not found at {binary} - build it with `swift build` "
                f"(or `bash scripts/test`), or point MERIDIAN_BIN at one")
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


class BrokerStartError(AssertionError):
    pass


# Set when the broker failed to start with the default configuration: later starts fail
# at once with a one-line pointer to that first, detailed error.
_default_start_failure: str | None = None


class Broker:
    """A running broker process. Tests use host, mqtt_port, http_port, pid, proc."""

    host = "127.0.0.1"

    def __init__(self, workdir: Path, settings: dict | None = None,
                 extra_args: list[str] | None = None, env: dict | None = None):
        self.kind = KIND
        self.env = dict(env or {})  # extra environment variables for the process
        self.workdir = workdir
        self.settings = {**contract.DEFAULT_SETTINGS, **(settings or {})}
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen | None = None
        self.ports: dict[str, int] = {}
        self.ready_line = ""
        self.generation = 0
        self.stderr_path: Path | None = None
        self.start()

    # -- what tests read
    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def mqtt_port(self) -> int:
        return self.ports["mqtt"]

    @property
    def http_port(self) -> int:
        """Meridian's HTTP port; MQTT over WebSocket is served there at /mqtt."""
        return self.ports["http"]

    @property
    def ws_port(self) -> int:
        return self.ports["http"]

    @property
    def mqtts_port(self) -> int | None:
        """MQTT over TLS; None when the broker runs without TLS."""
        return self.ports.get(contract.READY_KEY_MQTTS)

    @property
    def https_port(self) -> int | None:
        """HTTPS, with MQTT over secure WebSocket at /mqtt; None without TLS."""
        return self.ports.get(contract.READY_KEY_HTTPS)

    @property
    def server_certificate(self) -> Path:
        """The PEM file a client trusts to reach the TLS listeners: the configured
        certificate, or the self-signed one in the data dir."""
        configured = self.settings.get(contract.SETTING_TLS_CERTIFICATE)
        return Path(configured) if configured else self.data_dir / contract.GENERATED_CERTIFICATE

    @property
    def data_dir(self) -> Path:
        """Meridian's --data-dir, kept across restarts (and crashes) of this broker."""
        return self.workdir / "data"

    def recovered_state(self) -> dict[str, int] | None:
        """The key=value counts of this start's `recovered broker state` log line (Meridian),
        or None when there is no such line."""
        for line in self.stderr_text(limit=1_000_000).splitlines():
            if contract.RECOVERED_LOG in line:
                pairs = (item.split("=", 1) for item in line.split() if "=" in item)
                return {k: int(v) for k, v in pairs if v.isdigit()}
        return None

    def stderr_text(self, limit: int = 20000) -> str:
        if self.stderr_path is None or not self.stderr_path.exists():
            return ""
        data = self.stderr_path.read_bytes()
        return data[-limit:].decode(errors="replace")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    # -- lifecycle
    def _is_default_config(self) -> bool:
        return self.settings == contract.DEFAULT_SETTINGS and not self.extra_args

    def start(self) -> None:
        if _default_start_failure is not None:
            raise BrokerStartError(f"{self.kind} not started again: it failed to start "
                                   f"earlier in this run ({_default_start_failure}); "
                                   f"see the first error for its stderr")
        self.generation += 1
        run_dir = self.workdir / f"run{self.generation}"
        run_dir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = run_dir / "stderr.log"
        if self.kind == "mosquitto":
            self._start_mosquitto(run_dir)
        else:
            self._start_meridian(run_dir)

    def _spawn(self, argv: list[str]) -> None:
        self.argv = argv
        self._stderr_file = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._stderr_file, preexec_fn=_die_with_parent,
                                     env={**os.environ, **self.env})

    def _fail_start(self, why: str) -> None:
        global _default_start_failure
        if self.alive():
            self.proc.kill()
            self.proc.wait()
        if self._is_default_config():
            _default_start_failure = why.splitlines()[0][:300]
        raise BrokerStartError(
            f"{self.kind} did not start: {why}\n  command: {' '.join(self.argv)}\n"
            f"  --- stderr ---\n{self.stderr_text()}")

    def _start_meridian(self, run_dir: Path) -> None:
        data_dir = self.data_dir  # kept across restarts of this broker
        data_dir.mkdir(exist_ok=True)
        argv = [str(meridian_binary()), *contract.SERVE_ARGS, "--data-dir", str(data_dir)]
        for key, value in self.settings.items():
            argv += ["--set", f"{key}={value}"]
        self._spawn(argv + self.extra_args)

        lines: list[str] = []
        ready = threading.Event()

        def pump() -> None:  # keeps reading stdout so the broker never blocks on it
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace").strip()
                lines.append(line)
                if line.startswith(contract.READY_PREFIX + " "):
                    ready.set()
            ready.set()  # EOF: the process is gone (or closed stdout)

        threading.Thread(target=pump, daemon=True, name="meridian-stdout").start()
        if not ready.wait(contract.READY_TIMEOUT):
            self._fail_start(f"no `{contract.READY_PREFIX} ...` line on stdout within "
                             f"{contract.READY_TIMEOUT:.0f}s; stdout so far: {lines!r}")
        ready_lines = [line for line in lines if line.startswith(contract.READY_PREFIX + " ")]
        if not ready_lines:
            self.proc.wait(5)
            self._fail_start(f"it exited with code {self.proc.returncode} before printing "
                             f"`{contract.READY_PREFIX} mqtt=<port> http=<port>`; "
                             f"stdout: {lines!r}")
        self.ready_line = ready_lines[0]
        pairs = dict(item.split("=", 1) for item in ready_lines[0].split()[1:] if "=" in item)
        try:
            self.ports = {key: int(value) for key, value in pairs.items()}
        except ValueError:
            self._fail_start(f"unparsable readiness line {ready_lines[0]!r}")
        for key in ("mqtt", "http"):
            if not self.ports.get(key):
                self._fail_start(f"readiness line {ready_lines[0]!r} has no {key}=<port>")

    def _mosquitto_tls(self) -> tuple[bool, list[str]]:
        """Meridian's tls.* settings as Mosquitto listener options (certificate files, client
        CA, require_certificate); a self-signed certificate in the data dir like Meridian's
        when none is configured. Returns (enabled, options)."""
        settings = self.settings
        if settings.get(contract.SETTING_TLS_ENABLED, "true").lower() == "false":
            return False, []
        certificate = settings.get(contract.SETTING_TLS_CERTIFICATE)
        key = settings.get(contract.SETTING_TLS_PRIVATE_KEY)
        if not certificate:
            certificate = str(self.data_dir / contract.GENERATED_CERTIFICATE)
            key = str(self.data_dir / contract.GENERATED_KEY)
            if not Path(certificate).exists():
                pki.self_signed_server(Path(certificate), Path(key))
        options = [f"certfile {certificate}", f"keyfile {key}", "tls_version tlsv1.2"]
        client_auth = settings.get(contract.SETTING_TLS_CLIENT_AUTH, "none")
        if client_auth == "optional":
            pytest.skip("tls.client_auth = optional has no Mosquitto equivalent")
        if client_auth == "required":
            options += [f"cafile {settings[contract.SETTING_TLS_CLIENT_CA]}",
                        "require_certificate true"]
        return True, options

    def _start_mosquitto(self, run_dir: Path) -> None:
        self.data_dir.mkdir(exist_ok=True)
        tls_enabled, tls_options = self._mosquitto_tls()
        options = {}
        for key, value in self.settings.items():
            if key.startswith("tls.") or key.startswith("auth."):
                continue  # TLS is configured below; Mosquitto allows anonymous clients anyway
            option = contract.MOSQUITTO_EQUIVALENTS.get(key)
            if option is None:
                pytest.skip(f"setting {key} has no Mosquitto equivalent")
            options[option] = value
        if self.extra_args:
            pytest.skip(f"Meridian command-line flags {self.extra_args} do not apply to "
                        f"Mosquitto")
        last_error = ""
        for _attempt in range(5):  # a free port can be taken between probe and bind
            mqtt_port, ws_port = free_port(), free_port()
            mqtts_port, https_port = free_port(), free_port()
            conf = run_dir / "mosquitto.conf"
            lines = [
                "per_listener_settings false",
                "allow_anonymous true",
                "persistence false",
                "log_dest stderr",
                "log_type error",
                "log_type warning",
                "log_type notice",
                "log_type information",
                "set_tcp_nodelay true",
                *(f"{k} {v}" for k, v in options.items()),
                f"listener {mqtt_port} 127.0.0.1",
                "protocol mqtt",
                f"listener {ws_port} 127.0.0.1",
                "protocol websockets",
            ]
            if tls_enabled:
                lines += [f"listener {mqtts_port} 127.0.0.1", "protocol mqtt", *tls_options,
                          f"listener {https_port} 127.0.0.1", "protocol websockets",
                          *tls_options]
            if os.geteuid() == 0:
                lines.insert(0, "user root")  # else mosquitto switches to user `mosquitto`
            conf.write_text("\n".join(lines) + "\n")
            self._spawn([mosquitto_binary(), "-c", str(conf)])
            deadline = time.monotonic() + contract.READY_TIMEOUT
            waiting = [mqtt_port, ws_port] + ([mqtts_port, https_port] if tls_enabled else [])
            while time.monotonic() < deadline and self.proc.poll() is None:
                waiting = [p for p in waiting if not _accepts(self.host, p)]
                if not waiting:
                    self.ports = {"mqtt": mqtt_port, "http": ws_port}
                    if tls_enabled:
                        self.ports[contract.READY_KEY_MQTTS] = mqtts_port
                        self.ports[contract.READY_KEY_HTTPS] = https_port
                    return
                time.sleep(0.02)
            last_error = self.stderr_text()
            if self.proc.poll() is None:
                self._fail_start("its listeners did not accept connections in time")
            self.proc.wait()
            self._stderr_file.close()
            self.stderr_path.write_text(last_error)  # keep it for the next attempt's report
        self._fail_start(f"exited at start five times; last stderr:\n{last_error}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = contract.STOP_TIMEOUT) -> int:
        """Signal the process and wait; fails unless it exits 0 within `timeout`."""
        if self.proc is None:
            return 0
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            self.proc = proc
            raise AssertionError(
                f"{self.kind} (pid {proc.pid}) still running {timeout:.0f}s after "
                f"{signal.Signals(sig).name}; killed it.\n--- stderr ---\n{self.stderr_text()}")
        finally:
            self._stderr_file.close()
        self.proc = proc
        assert code == 0, (f"{self.kind} exited with code {code} after "
                           f"{signal.Signals(sig).name} (expected 0)\n"
                           f"--- stderr ---\n{self.stderr_text()}")
        return code

    def crash(self) -> None:
        """Kill the process with SIGKILL (unless a test already sent it) and reap it: a crash,
        nothing flushed or closed. The data dir is kept; start() runs the broker on it again.
        Fails if the process had exited by itself before."""
        if self.proc is None:
            return
        proc = self.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        try:
            proc.wait(contract.STOP_TIMEOUT)
        finally:
            self._stderr_file.close()
        assert proc.returncode == -signal.SIGKILL, (
            f"{self.kind} (pid {proc.pid}) had exited with code {proc.returncode} before "
            f"SIGKILL\n--- stderr ---\n{self.stderr_text()}")

    def kill(self) -> None:
        """Last-resort cleanup; no assertion."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self, settings: dict | None = None, extra_args: list[str] | None = None,
                keep_settings: bool = True) -> None:
        """Stop (SIGTERM, exit 0 asserted) and start again with more settings or flags,
        on the same data dir. Ports change on restart; read them again from this object."""
        self.stop()
        base = self.settings if keep_settings else dict(contract.DEFAULT_SETTINGS)
        self.settings = {**base, **(settings or {})}
        if extra_args is not None:
            self.extra_args = list(extra_args)
        self.start()


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False

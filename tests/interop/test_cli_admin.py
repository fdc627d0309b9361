"""The admin CLI (`meridian device|credentials|cert|apikey|audit ...`) against a running server:
what an operator types, what they read back, and exit codes scripts rely on."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import time
import uuid

import pytest

import brokers
from mqttclient import V5, TestClient
from platform_api import ADMIN_KEY, BOOTSTRAP_ENV, Platform

pytestmark = pytest.mark.meridian_only(reason="Meridian's own admin CLI and REST API")


def cli(platform, *args, key: str | None = ADMIN_KEY, check: bool = True):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MERIDIAN_")}
    if key is not None:
        env["MERIDIAN_API_KEY"] = key
    result = subprocess.run([str(brokers.meridian_binary()), *args, "--server", platform.base_url],
                            capture_output=True, text=True, timeout=60, env=env)
    if check:
        assert result.returncode == 0, f"meridian {' '.join(args)}: {result.returncode}\n" \
                                       f"{result.stdout}\n{result.stderr}"
    return result


def cli_json(platform, *args, **kwargs):
    return json.loads(cli(platform, *args, "--json", **kwargs).stdout)


def test_device_lifecycle_from_the_cli(platform):
    name = f"boiler-{uuid.uuid4().hex[:8]}"
    site = f"site-{uuid.uuid4().hex[:6]}"
    created = cli_json(platform, "device", "create", "--name", name, "--label", f"site={site}")
    device_id = created["id"]
    assert created["name"] == name and created["labels"] == {"site": site}

    table = cli(platform, "device", "list", "--label", f"site={site}").stdout
    header, *rows = table.strip().splitlines()
    assert header.split()[:3] == ["ID", "NAME", "STATUS"]
    assert len(rows) == 1 and rows[0].split()[:3] == [device_id, name, "active"]

    shown = cli(platform, "device", "show", device_id).stdout
    assert f"name" in shown and name in shown

    assert cli_json(platform, "device", "disable", device_id)["status"] == "disabled"
    assert cli_json(platform, "device", "enable", device_id)["status"] == "active"

    cli(platform, "device", "delete", device_id)
    missing = cli(platform, "device", "show", device_id, check=False)
    assert missing.returncode != 0
    assert "HTTP 404" in missing.stderr


def test_token_from_the_cli_connects_and_revoking_it_refuses_the_device(platform):
    device_id = cli_json(platform, "device", "create", "--name", f"meter-{uuid.uuid4().hex[:8]}")["id"]
    created = cli(platform, "credentials", "create", device_id).stdout
    assert "shown only now" in created
    token = next(line.split()[-1] for line in created.splitlines() if line.startswith("token"))
    credential_id = next(line.split()[-1] for line in created.splitlines() if line.startswith("id"))

    device = TestClient(platform.broker, V5, client_id=f"it-cli-{uuid.uuid4().hex[:8]}")
    device.paho.username_pw_set(token)
    assert device.connect()["reason_code"] == 0
    # The connect is recorded as the device's last-seen time (written in batches, within ~1 s).
    deadline = time.monotonic() + 15
    while cli_json(platform, "device", "show", device_id).get("lastSeenAt") is None:
        assert time.monotonic() < deadline, "lastSeenAt was not recorded"
        time.sleep(0.2)
    listed = cli_json(platform, "credentials", "list", device_id)
    items = listed["items"] if isinstance(listed, dict) else listed
    assert [item["id"] for item in items] == [credential_id]
    assert all("token" not in item for item in items), "a listing never shows the secret"

    cli(platform, "credentials", "revoke", device_id, credential_id)
    device.wait_disconnected()
    again = TestClient(platform.broker, V5, client_id=f"it-cli-{uuid.uuid4().hex[:8]}")
    again.paho.username_pw_set(token)
    assert again.connect(expect_success=False)["reason_code"] == 0x86
    device.close()
    again.close()


def test_api_keys_are_scoped_by_role(platform):
    created = cli_json(platform, "apikey", "create", "--name", "ci-viewer", "--role", "viewer")
    viewer_key = created["key"]
    assert cli(platform, "device", "list", key=viewer_key).returncode == 0
    refused = cli(platform, "device", "create", "--name", "nope", key=viewer_key, check=False)
    assert refused.returncode != 0 and "HTTP 403" in refused.stderr
    keys = cli(platform, "apikey", "list").stdout
    assert "ci-viewer" in keys and viewer_key not in keys
    cli(platform, "apikey", "revoke", created["id"])
    revoked = cli(platform, "device", "list", key=viewer_key, check=False)
    assert revoked.returncode != 0 and "HTTP 401" in revoked.stderr


def test_bad_input_gets_a_message_naming_what_is_wrong(platform):
    no_key = cli(platform, "device", "list", key=None, check=False)
    assert no_key.returncode != 0 and "MERIDIAN_API_KEY" in no_key.stderr
    bad_label = cli(platform, "device", "create", "--name", "x", "--label", "novalue", check=False)
    assert bad_label.returncode != 0 and "--label" in bad_label.stderr
    bad_role = cli(platform, "apikey", "create", "--name", "x", "--role", "god", check=False)
    assert bad_role.returncode != 0 and "--role" in bad_role.stderr


def test_import_reports_every_bad_row_and_creates_nothing(platform, tmp_path):
    prefix = f"imp-{uuid.uuid4().hex[:6]}"
    bad = tmp_path / "devices.csv"
    bad.write_text(f"name,label.site\n{prefix}-1,a\n,b\n{prefix}-1,c\n")
    result = cli(platform, "device", "import", str(bad), check=False)
    assert result.returncode != 0
    assert "line 3" in result.stderr and "line 4" in result.stderr, result.stderr
    assert cli_json(platform, "device", "list", "--name-prefix", prefix)["items"] == []

    good = tmp_path / "good.csv"
    good.write_text("name,label.site\n" + "".join(f"{prefix}-{i},a\n" for i in range(25)))
    assert "imported 25 devices" in cli(platform, "device", "import", str(good)).stdout
    listed = cli_json(platform, "device", "list", "--name-prefix", prefix, "--limit", "10", "--all")
    assert len(listed["items"]) == 25


def test_cert_issue_writes_the_certificate_the_ca_and_a_private_key(platform, tmp_path):
    device_id = cli_json(platform, "device", "create", "--name", f"cam-{uuid.uuid4().hex[:8]}")["id"]
    out = tmp_path / "certs"
    cli(platform, "cert", "issue", device_id, "--out", str(out))
    certificate = (out / f"{device_id}.crt").read_text()
    assert certificate.startswith("-----BEGIN CERTIFICATE-----")
    assert (out / "ca.crt").read_text().startswith("-----BEGIN CERTIFICATE-----")
    key = out / f"{device_id}.key"
    assert "PRIVATE KEY" in key.read_text()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_audit_verify_detects_an_edited_entry(broker_factory):
    # A server of its own: this test edits the database behind the server's back.
    platform = Platform(broker_factory(env={BOOTSTRAP_ENV: ADMIN_KEY}))
    cli(platform, "device", "create", "--name", f"audited-{uuid.uuid4().hex[:8]}")
    intact = cli(platform, "audit", "verify")
    assert "intact" in intact.stdout
    offline = cli(platform, "audit", "verify", "--data-dir", str(platform.broker.data_dir))
    assert "intact" in offline.stdout

    with sqlite3.connect(platform.broker.data_dir / "meridian.sqlite", timeout=10) as db:
        db.execute("UPDATE audit_log SET actor_id = 'someone-else' WHERE sequence = 2")
    broken = cli(platform, "audit", "verify", check=False)
    assert broken.returncode == 1
    assert "BROKEN at entry 2" in broken.stdout
    assert cli(platform, "audit", "verify", "--data-dir", str(platform.broker.data_dir),
               check=False).returncode == 1

"""The rules and alarms CLI (`meridian rule ...`, `meridian alarm ...`) against a running server:
rules kept in a YAML file and applied by name, errors that point at the file's line, and the
loop an operator follows: telemetry fires a rule, the alarm is listed, acknowledged, explained."""

from __future__ import annotations

import json
import time
import uuid

import pytest

import contract
from platform_api import ADMIN_KEY
from test_cli_admin import cli, cli_json

pytestmark = pytest.mark.meridian_only(reason="Meridian's own rules CLI and REST API")


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line containing `needle`."""
    return next(number for number, line in enumerate(text.splitlines(), 1) if needle in line)


def rule_names(platform) -> set[str]:
    return {rule["name"] for rule in cli_json(platform, "rule", "list")["items"]}


def eventually(check, timeout: float = contract.TIMEOUT * 2):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_apply_creates_then_leaves_alone_then_updates_then_prunes(platform, tmp_path):
    a, b = f"hot-{uuid.uuid4().hex[:6]}", f"silent-{uuid.uuid4().hex[:6]}"
    rules = f"""\
# two rules, in two YAML documents
- name: {a}
  description: too hot
  condition:
    threshold: {{key: temp, op: ">", value: 80, for: 5m, clear: {{op: "<", value: 75, for: 1m}}}}
  alarm: {{severity: major, message: "{{{{device.name}}}} is hot"}}
  actions:
    - type: telemetry
      key: overheated
      value: yes
---
rules:
  - name: {b}
    enabled: false
    condition:
      noData: {{key: temp, for: 10m}}
    alarm:
      severity: warning
"""
    path = write(tmp_path, "rules.yaml", rules)
    first = cli(platform, "rule", "apply", "-f", str(path))
    assert f"created    {a}" in first.stdout and f"created    {b}" in first.stdout, first.stdout
    assert "2 created, 0 updated, 0 unchanged, 0 deleted" in first.stdout

    saved = cli_json(platform, "rule", "get", a)
    assert saved["version"] == 1
    threshold = saved["condition"]["threshold"]
    assert (threshold["key"], threshold["op"], threshold["value"], threshold["for"]) == ("temp", ">", 80, "5m")
    # YAML 1.2 scalars: `yes` is the string "yes", not true; `5m` stays a duration string.
    assert saved["actions"][0]["value"] == "yes"
    assert cli_json(platform, "rule", "get", b)["enabled"] is False

    again = cli_json(platform, "rule", "apply", "-f", str(path))
    assert sorted(again["unchanged"]) == sorted([a, b]) and again["created"] == again["updated"] == []

    write(tmp_path, "rules.yaml", rules.replace("value: 80", "value: 90"))
    changed = cli(platform, "rule", "apply", "-f", str(path)).stdout
    assert f"updated    {a}" in changed and f"unchanged  {b}" in changed, changed
    assert cli_json(platform, "rule", "get", a)["version"] == 2
    versions = cli_json(platform, "rule", "versions", a)["items"]
    assert [v["version"] for v in versions] == [2, 1]
    assert [v["condition"]["threshold"]["value"] for v in versions] == [90, 80]

    table = cli(platform, "rule", "list").stdout
    header, *rows = table.strip().splitlines()
    assert header.split() == ["NAME", "ENABLED", "VERSION", "SCOPE", "CONDITION", "SEVERITY", "ACTIONS"]
    row = next(r.split() for r in rows if r.startswith(a + " "))
    assert row == [a, "true", "2", "tenant", "threshold", "major", "telemetry"]

    only_b = write(tmp_path, "only-b.yaml", rules.split("---\n", 1)[1])
    pruned = cli(platform, "rule", "apply", "-f", str(only_b), "--prune").stdout
    assert f"deleted    {a}" in pruned and "1 deleted" in pruned, pruned
    assert a not in rule_names(platform) and b in rule_names(platform)


def test_a_bad_rule_is_reported_with_its_name_field_and_line_and_nothing_changes(platform, tmp_path):
    good, bad = f"fine-{uuid.uuid4().hex[:6]}", f"overheat-{uuid.uuid4().hex[:6]}"
    text = f"""\
rules:
  - name: {good}
    condition: {{presence: {{for: 5m}}}}
    alarm: {{severity: info}}
  - name: {bad}
    condition:
      threshold:
        key: temp
        op: "=>"
        value: 80
    alarm: {{severity: critical}}
"""
    path = write(tmp_path, "bad.yaml", text)
    where = f'{path}:{line_of(text, "op:")}: rule "{bad}": condition.threshold.op:'
    result = cli(platform, "rule", "apply", "-f", str(path), check=False)
    assert result.returncode != 0
    assert where in result.stderr, result.stderr
    assert "must be one of" in result.stderr
    assert good not in rule_names(platform), "a file with a bad rule changes nothing"

    # --dry-run checks locally with the same parser and says the same; it sends nothing.
    dry = cli(platform, "rule", "apply", "-f", str(path), "--dry-run", check=False)
    assert dry.returncode != 0 and where in dry.stderr, dry.stderr

    # Testing a rule of the file: the server's error, worded the same way.
    tested = cli(platform, "rule", "test", "-f", str(path), "--rule", bad, check=False)
    assert tested.returncode != 0 and where in tested.stderr, tested.stderr

    # A missing required field is reported at the line of the object that lacks it.
    missing = write(tmp_path, "missing.yaml", text.replace('        op: "=>"\n', ""))
    result = cli(platform, "rule", "apply", "-f", str(missing), check=False)
    assert result.returncode != 0
    assert f'{missing}:{line_of(text, "threshold:")}: rule "{bad}": condition.threshold.op: is required' in result.stderr, \
        result.stderr

    ok = cli(platform, "rule", "apply", "-f", str(write(tmp_path, "ok.yaml", text.replace('"=>"', '">="'))), "--dry-run")
    assert "2 valid rules" in ok.stdout and good not in rule_names(platform)


def test_file_errors_name_the_file_and_line(platform, tmp_path):
    broken = write(tmp_path, "broken.yaml", "rules:\n  - name: x\n    condition: {threshold: {key: temp\n  - name: y\n")
    result = cli(platform, "rule", "apply", "-f", str(broken), check=False)
    assert result.returncode != 0
    assert f"{broken}:" in result.stderr and "YAML syntax error" in result.stderr, result.stderr
    line = int(result.stderr.split(f"{broken}:", 1)[1].split(":", 1)[0])
    assert 3 <= line <= 4, result.stderr

    scalar = write(tmp_path, "scalar.yaml", "just some text\n")
    result = cli(platform, "rule", "apply", "-f", str(scalar), check=False)
    assert result.returncode != 0 and f"{scalar}:1:1: the top level" in result.stderr, result.stderr

    keys = write(tmp_path, "keys.yaml", "- name: k\n  condition:\n    1: oops\n")
    result = cli(platform, "rule", "apply", "-f", str(keys), check=False)
    assert result.returncode != 0 and f"{keys}:3:5: keys must be strings" in result.stderr, result.stderr

    missing = cli(platform, "rule", "apply", "-f", str(tmp_path / "nope.yaml"), check=False)
    assert missing.returncode != 0 and "nope.yaml: no such file" in missing.stderr


def test_telemetry_fires_a_rule_and_the_alarm_is_listed_acknowledged_and_explained(platform, tmp_path):
    device = platform.device()
    device_id, token = device["id"], platform.token(device["id"])
    name = f"boiler-hot-{uuid.uuid4().hex[:6]}"
    path = write(tmp_path, "alarm.yaml", f"""\
name: {name}
scope: {{device: {device_id}}}
condition:
  threshold: {{key: temp, op: ">", value: 80}}
alarm:
  severity: critical
  message: "{{{{device.id}}}} too hot"
""")
    cli(platform, "rule", "apply", "-f", str(path))

    for temp in (70, 85):
        r = platform.api("POST", f"/api/v1/devices/{device_id}/telemetry", key=token,
                         data=json.dumps({"temp": temp}), headers={"Content-Type": "application/json"})
        assert r.status_code == 200, r.text

    alarms = eventually(lambda: cli_json(platform, "alarm", "list", "--device", device_id, "--status", "open")["items"])
    assert len(alarms) == 1
    alarm = alarms[0]
    assert alarm["severity"] == "critical" and alarm["status"] == "active"
    assert alarm["message"] == f"{device_id} too hot"

    table = cli(platform, "alarm", "list", "--rule", name).stdout
    header, *rows = table.strip().splitlines()
    assert header.split()[:6] == ["ID", "SEVERITY", "STATUS", "RULE", "DEVICE", "COUNT"]
    assert [r.split()[:5] for r in rows] == [[alarm["id"], "critical", "active", name, device_id]]

    acked = cli_json(platform, "alarm", "ack", alarm["id"])
    assert acked["status"] == "acknowledged"
    cli(platform, "alarm", "comment", alarm["id"], "fan replaced")
    shown = cli_json(platform, "alarm", "get", alarm["id"])
    assert shown["alarm"]["status"] == "acknowledged"
    changes = [entry["change"] for entry in shown["history"]]
    assert sorted(changes) == ["acknowledged", "commented", "raised"], shown["history"]
    text = cli(platform, "alarm", "get", alarm["id"]).stdout
    assert "history:" in text and "acknowledged" in text and "fan replaced" in text and f"api_key:" in text

    firings = cli_json(platform, "rule", "firings", name)["items"]
    assert [(f["device"], f["event"]) for f in firings] == [(device_id, "raise")]
    assert firings[0]["values"].get("temp") == 85
    assert "raise" in cli(platform, "rule", "firings", name, "--device", device_id).stdout

    # The same rule over the stored history, without touching anything.
    tested = cli_json(platform, "rule", "test", name, "--from", "1h")
    assert [(f["device"], f["event"]) for f in tested["firings"]] == [(device_id, "raise")]
    assert tested["samples"] >= 2
    out = cli(platform, "rule", "test", "-f", str(path), "--from", "1h", "--device", device_id).stdout
    assert "raise" in out and "1 firing" in out, out

    cleared = cli_json(platform, "alarm", "clear", alarm["id"])
    assert cleared["status"] == "cleared"
    assert cli_json(platform, "alarm", "list", "--device", device_id, "--status", "open")["items"] == []


def test_disable_enable_delete(platform, tmp_path):
    name = f"toggle-{uuid.uuid4().hex[:6]}"
    cli(platform, "rule", "apply", "-f", str(write(tmp_path, "t.yaml", f"""\
- name: {name}
  condition: {{presence: {{for: 10m}}}}
  alarm: {{severity: minor}}
""")))
    assert "disabled" in cli(platform, "rule", "disable", name).stdout
    assert cli_json(platform, "rule", "get", name)["enabled"] is False
    assert cli_json(platform, "rule", "enable", name)["enabled"] is True
    assert "deleted" in cli(platform, "rule", "delete", name).stdout
    gone = cli(platform, "rule", "get", name, check=False)
    assert gone.returncode != 0 and "HTTP 404" in gone.stderr

    bad_status = cli(platform, "alarm", "list", "--status", "sleeping", check=False)
    assert bad_status.returncode != 0 and "--status" in bad_status.stderr
    assert "rules.yaml" in cli(platform, "rule", "apply", "--help").stdout

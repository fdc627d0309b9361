"""API fuzzing: schemathesis against the served OpenAPI document with an admin API key.

Starts `meridian serve` with MERIDIAN_BOOTSTRAP_API_KEY and runs scripts/api-fuzz, which fails
on any 5xx answer and on any answer that does not match the documented schema.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from brokers import REPO_ROOT

FUZZ_KEY = "mk_fuzz_bootstrap_key_0123456789abcdef"
FUZZ_TIMEOUT = 900  # seconds; a bounded run takes a few minutes


@pytest.mark.meridian_only("the REST API is Meridian's")
def test_schemathesis_finds_no_server_error_and_no_schema_violation(broker_factory, tmp_path):
    server = broker_factory(env={"MERIDIAN_BOOTSTRAP_API_KEY": FUZZ_KEY})
    url = f"http://{server.host}:{server.http_port}"
    env = {**os.environ, "API_FUZZ_REPORT_DIR": str(tmp_path / "report")}
    try:
        run = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "api-fuzz"), url, FUZZ_KEY],
                             capture_output=True, text=True, timeout=FUZZ_TIMEOUT, env=env)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"api-fuzz did not finish within {FUZZ_TIMEOUT}s\n{(e.stdout or '')[-5000:]}")
    output = run.stdout + run.stderr
    assert run.returncode == 0, f"api-fuzz failed (exit {run.returncode}):\n{output[-15000:]}\n" \
                                f"--- server stderr ---\n{server.stderr_text()}"
    assert server.alive(), f"the server died during fuzzing:\n{server.stderr_text()}"

"""Fixtures for the interop suite.

`broker`           one broker per test module (fresh ports, fresh temp data dir)
`broker_factory`   brokers of a test's own (for restarts, settings, shutdown)
`proto`            paho protocol: MQTT 3.1.1 and 5.0
`transport`        "tcp" (mqtt port) and "ws" (http port, /mqtt)
`client_factory`   connected paho TestClients, closed after the test
`topic`            a topic prefix unique to the test

MERIDIAN_TEST_BROKER=mosquitto runs the suite against Mosquitto; tests marked
`meridian_only` are skipped there, with the reason.
"""

from __future__ import annotations

import itertools
import os
import uuid

import pytest

import brokers
from mqttclient import V5, V311, TestClient

MERIDIAN_ONLY_REASON = "Meridian-only behaviour; not checked against Mosquitto"



def pytest_report_header(config):
    target = brokers.meridian_binary() if brokers.KIND == "meridian" else \
        brokers.mosquitto_binary()
    return f"broker under test: {brokers.KIND} ({target})"


def pytest_sessionstart(session):
    if session.config.option.collectonly:
        return
    problem = brokers.check_broker_available()
    if problem:
        pytest.exit(f"interop suite cannot run: {problem}", returncode=3)


def pytest_collection_modifyitems(config, items):
    # MERIDIAN_TEST_RUN_MERIDIAN_ONLY=1 runs them against Mosquitto anyway: for working on
    # the suite itself, to watch those tests fail the way they should.
    if brokers.KIND != "mosquitto" or os.environ.get("MERIDIAN_TEST_RUN_MERIDIAN_ONLY") == "1":
        return
    for item in items:
        marker = item.get_closest_marker("meridian_only")
        if marker is not None:
            why = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
            reason = MERIDIAN_ONLY_REASON + (f": {why}" if why else "")
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = brokers.Broker(tmp_path_factory.mktemp("broker"))
    yield b
    b.stop()  # SIGTERM; asserts exit code 0 within 10 s


@pytest.fixture(autouse=True)
def _module_broker_watch(request):
    """Fail the test during which the module's broker died (with its stderr), and start a
    new one for the next test so that one crash does not fail the rest of the module."""
    if "broker" not in request.fixturenames:
        yield
        return
    b = request.getfixturevalue("broker")
    if b.proc is not None and not b.alive():
        b.start()
    yield
    if b.proc is not None and not b.alive():
        pytest.fail(f"the broker died during this test (exit code {b.proc.returncode})\n"
                    f"--- stderr ---\n{b.stderr_text()}", pytrace=False)


@pytest.fixture
def broker_factory(tmp_path_factory):
    """broker_factory(settings={...}, extra_args=[...], env={...}) -> a broker of the test's own."""
    started: list[brokers.Broker] = []

    def make(settings: dict | None = None, extra_args: list[str] | None = None,
             env: dict | None = None):
        b = brokers.Broker(tmp_path_factory.mktemp("own-broker"), settings, extra_args, env)
        started.append(b)
        return b

    yield make
    errors = []
    for b in started:
        try:
            if b.alive():
                b.stop()
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "\n".join(errors)


@pytest.fixture(params=[V311, V5], ids=["mqtt311", "mqtt5"])
def proto(request):
    return request.param


@pytest.fixture(params=["tcp", "ws"])
def transport(request):
    return request.param


@pytest.fixture
def client_factory(broker):
    """client_factory(proto, transport="tcp", connect=True, client_id=None, target=broker,
    clean_session=True, **connect_kwargs) -> TestClient (connected unless connect=False)."""
    made: list[TestClient] = []

    def make(proto=V5, transport="tcp", connect=True, client_id=None, target=None,
             clean_session=True, **connect_kwargs) -> TestClient:
        c = TestClient(target or broker, proto, transport, client_id, clean_session)
        made.append(c)
        if connect:
            c.connect(**connect_kwargs)
        return c

    yield make
    for c in made:
        try:
            c.close()
        except Exception:  # noqa: BLE001 - cleanup must not mask the test's result
            pass


_counter = itertools.count()


@pytest.fixture
def topic(request):
    """A topic prefix no other test (or run) uses."""
    name = request.node.name.replace("[", "-").replace("]", "").replace("/", "_")
    return f"it/{name[:60]}/{next(_counter)}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """A Meridian server of the module's own, bootstrapped with the owner API key
    platform_api.ADMIN_KEY, as a platform_api.Platform (REST API helpers + .broker)."""
    import platform_api  # noqa: PLC0415 - only the platform tests need requests

    b = brokers.Broker(tmp_path_factory.mktemp("platform"),
                       env={platform_api.BOOTSTRAP_ENV: platform_api.ADMIN_KEY})
    yield platform_api.Platform(b)
    b.stop()

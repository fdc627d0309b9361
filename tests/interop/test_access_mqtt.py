"""Devices authenticate against the registry and reach only their own topics (issue 4):
token, user name/password and mTLS credentials with paho-mqtt as the device, revocation,
ACL refusals, the ThingsBoard topic mapping, provisioning and claiming over MQTT.

Each module's broker starts with MERIDIAN_BOOTSTRAP_API_KEY, so the tests create devices and
credentials through the REST API with that admin key, and without `auth.allow_anonymous`.
"""

from __future__ import annotations

import json
import queue
import ssl
import time
import urllib.error
import urllib.request
import uuid
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import brokers
import contract
import mqttpackets as mp
from mqttclient import V5, V311, TestClient

pytestmark = pytest.mark.meridian_only(reason="Meridian's registry, credentials and ACL")

ADMIN_KEY = "mk_interop_admin_" + uuid.uuid4().hex
NOT_AUTHORIZED_V5 = 0x87
BAD_CREDENTIALS_V5 = 0x86
ADMINISTRATIVE_ACTION = 0x98
SUBACK_FAILURE_V311 = 0x80


@pytest.fixture(scope="module")
def registry_broker(tmp_path_factory):
    """A broker of this module's own: bootstrap API key set, anonymous clients refused."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MERIDIAN_BOOTSTRAP_API_KEY", ADMIN_KEY)
    try:
        b = brokers.Broker(tmp_path_factory.mktemp("access-broker"), {"auth.allow_anonymous": "false"})
    finally:
        mp.undo()
    yield b
    b.stop()


@pytest.fixture
def clients():
    made: list[TestClient] = []
    yield made
    for c in made:
        try:
            c.close()
        except Exception:  # noqa: BLE001 - cleanup must not mask the test's result
            pass


# ---------------------------------------------------------------------------- REST API

def api(broker, method: str, path: str, body: dict | None = None, key: str = ADMIN_KEY) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://{broker.host}:{broker.http_port}/api/v1{path}", data=data, method=method)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=contract.TIMEOUT) as r:
            text = r.read().decode()
            return r.status, (json.loads(text) if text else {})
    except urllib.error.HTTPError as e:
        text = e.read().decode(errors="replace")
        try:
            return e.code, json.loads(text)
        except ValueError:
            return e.code, {"body": text}


def create_device(broker, name: str | None = None) -> str:
    status, device = api(broker, "POST", "/devices", {"name": name or f"dev-{uuid.uuid4().hex[:10]}", "labels": {}})
    assert status == 201, f"POST /devices -> {status} {device}"
    return device["id"]


def create_credential(broker, device_id: str, body: dict) -> dict:
    status, credential = api(broker, "POST", f"/devices/{device_id}/credentials", body)
    assert status == 201, f"POST /devices/{device_id}/credentials -> {status} {credential}"
    return credential


def token_device(broker) -> tuple[str, str, str]:
    """(device id, credential id, token) of a new device with a token."""
    device_id = create_device(broker)
    credential = create_credential(broker, device_id, {"type": "token"})
    return device_id, credential["id"], credential["token"]


def first_pem(value, label: str = "CERTIFICATE") -> str | None:
    """The first string holding a PEM block with this label anywhere in a JSON value."""
    if isinstance(value, str) and f"-----BEGIN {label}-----" in value:
        return value
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            found = first_pem(item, label)
            if found:
                return found
    return None


# ---------------------------------------------------------------------------- MQTT

def device_client(broker, clients, username=None, password=None, proto=V5, port=None, tls=None) -> TestClient:
    target = broker if port is None else SimpleNamespace(host=broker.host, mqtt_port=port, ws_port=broker.ws_port)
    c = TestClient(target, proto)
    clients.append(c)
    if username is not None or password is not None:
        c.paho.username_pw_set(username, password)
    if tls is not None:
        c.paho.tls_set_context(tls)
    return c


def refused_code(broker, clients, proto=V5, **kwargs) -> int:
    """The CONNACK reason code of a refused paho connection.

    MQTT 3.1.1: the return code as sent on the wire (paho reports 3.1.1 return codes as MQTT 5
    reason codes), so with a raw CONNECT; user name only, which is how tokens are sent.
    MQTT 5: the CONNACK is recorded by its own callback, because TestClient.connect can miss a
    refusal: its `connected` event is cleared again when the broker closes the connection right
    after the CONNACK, before connect() starts waiting."""
    if proto == V311:
        assert not kwargs.get("password"), "raw_refusal sends a user name only"
        return raw_refusal(broker, username=kwargs.get("username"))
    c = device_client(broker, clients, proto=proto, **kwargs)
    connacks: queue.Queue[int] = queue.Queue()
    recorded = c.paho.on_connect

    def on_connect(client, userdata, flags, reason_code, properties):
        recorded(client, userdata, flags, reason_code, properties)
        connacks.put(c.connack["reason_code"])

    c.paho.on_connect = on_connect
    c.paho.connect(c.broker.host, c.broker.mqtt_port, keepalive=30)
    c.paho.loop_start()
    c._loop_started = True  # so that the `clients` fixture stops the loop
    try:
        return connacks.get(timeout=contract.TIMEOUT)
    except queue.Empty:
        raise AssertionError(f"{c}: no CONNACK within {contract.TIMEOUT}s" + c._disconnect_note()) from None


def raw_refusal(broker, username: str | None = None) -> int:
    """The CONNACK return code an MQTT 3.1.1 CONNECT gets, as sent."""
    raw, _, rc, _ = mp.raw_connect(broker.host, broker.mqtt_port, f"it-raw-{uuid.uuid4().hex[:10]}",
                                   mp.V311, username=username)
    raw.close()
    return rc


def verifying_context(broker) -> ssl.SSLContext:
    """A TLS client context that trusts the broker's server certificate (and checks the name)."""
    return ssl.create_default_context(cafile=str(broker.server_certificate))


def wait_until(what: str, condition, timeout: float = contract.TIMEOUT):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout}s"
        time.sleep(0.01)


# ---------------------------------------------------------------------------- credentials

@pytest.mark.parametrize("proto", [V311, V5], ids=["mqtt311", "mqtt5"])
def test_token_connects_with_any_or_no_password(registry_broker, clients, proto):
    device_id, _, token = token_device(registry_broker)
    for password in (None, "", "anything"):
        c = device_client(registry_broker, clients, username=token, password=password, proto=proto)
        assert c.connect()["reason_code"] == 0
        assert c.subscribe(f"devices/{device_id}/rpc/request/+", qos=1) == [1]
        c.disconnect()


def test_unknown_and_missing_credentials_are_refused(registry_broker, clients):
    assert refused_code(registry_broker, clients, username="no-such-token-" + uuid.uuid4().hex) == BAD_CREDENTIALS_V5
    assert refused_code(registry_broker, clients, username="nobody", password="wrong-password") == BAD_CREDENTIALS_V5
    assert refused_code(registry_broker, clients) == NOT_AUTHORIZED_V5  # auth.allow_anonymous is off
    # MQTT 3.1.1 return codes, read from the wire (paho reports them as MQTT 5 reason codes).
    assert raw_refusal(registry_broker, username="no-such-token-" + uuid.uuid4().hex) == 4
    assert raw_refusal(registry_broker) == 5


def test_username_and_password_credential(registry_broker, clients):
    device_id = create_device(registry_broker)
    username = f"user-{uuid.uuid4().hex[:12]}"
    create_credential(registry_broker, device_id, {"type": "password", "username": username, "password": "correct horse battery"})
    c = device_client(registry_broker, clients, username=username, password="correct horse battery")
    c.connect()
    assert c.subscribe(f"devices/{device_id}/#", qos=1) == [1]
    c.disconnect()
    assert refused_code(registry_broker, clients, username=username, password="wrong horse battery") == BAD_CREDENTIALS_V5


def test_mtls_with_a_certificate_issued_by_the_tenant_ca(registry_broker, clients, tmp_path):
    device_id = create_device(registry_broker)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
           .sign(key, hashes.SHA256()))
    issued = create_credential(registry_broker, device_id,
                               {"type": "certificate", "csr": csr.public_bytes(serialization.Encoding.PEM).decode()})
    assert issued["type"] == "certificate" and "privateKey" not in issued, issued
    assert first_pem(issued["certificate"]) and first_pem(issued["caCertificate"]), issued
    assert "PRIVATE KEY" not in json.dumps(issued), "the server must not return a key for a CSR"
    certificate = x509.load_pem_x509_certificate(issued["certificate"].encode())
    authority = x509.load_pem_x509_certificate(issued["caCertificate"].encode())
    # Issued by the tenant CA, for this device, for the key of the CSR.
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == device_id
    assert certificate.issuer == authority.subject
    certificate.verify_directly_issued_by(authority)
    assert certificate.public_key().public_numbers() == key.public_key().public_numbers()
    cert_path, key_path = tmp_path / "device.crt", tmp_path / "device.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = verifying_context(registry_broker)
    context.load_cert_chain(str(cert_path), str(key_path))
    c = device_client(registry_broker, clients, port=registry_broker.mqtts_port, tls=context)
    assert c.connect()["reason_code"] == 0
    assert c.subscribe(f"devices/{device_id}/#", qos=1) == [1]
    assert c.subscribe("#", check=False) == [NOT_AUTHORIZED_V5]
    c.disconnect()
    # A token device needs no client certificate on the TLS port.
    _, _, token = token_device(registry_broker)
    t = device_client(registry_broker, clients, username=token, port=registry_broker.mqtts_port,
                      tls=verifying_context(registry_broker))
    assert t.connect()["reason_code"] == 0
    t.disconnect()


@pytest.mark.parametrize("proto", [V311, V5], ids=["mqtt311", "mqtt5"])
def test_revoked_credential_is_disconnected_and_refused(registry_broker, clients, proto):
    device_id, credential_id, token = token_device(registry_broker)
    c = device_client(registry_broker, clients, username=token, proto=proto)
    c.connect()
    status, body = api(registry_broker, "DELETE", f"/devices/{device_id}/credentials/{credential_id}")
    assert status in (200, 204), f"revoke -> {status} {body}"
    # The server closes it (the client keeps alive every 30 s and sends nothing): how fast is
    # for benchmarks, not tests.
    d = c.wait_disconnected()
    if proto == V5:
        assert d.from_server and d.reason_code == ADMINISTRATIVE_ACTION, d
    expected = BAD_CREDENTIALS_V5 if proto == V5 else 4
    assert refused_code(registry_broker, clients, username=token, proto=proto) == expected


# ---------------------------------------------------------------------------- ACL

@pytest.mark.parametrize("proto", [V311, V5], ids=["mqtt311", "mqtt5"])
def test_device_is_refused_outside_its_subtree(registry_broker, clients, proto):
    device_id, _, token = token_device(registry_broker)
    other_id, _, other_token = token_device(registry_broker)
    c = device_client(registry_broker, clients, username=token, proto=proto)
    c.connect()
    refused = NOT_AUTHORIZED_V5 if proto == V5 else SUBACK_FAILURE_V311
    for topic_filter in ["#", "+/+/telemetry", "+/#", "$SYS/#", f"devices/{other_id}/#", "devices/+/telemetry",
                         "$tenants/#", "$tenants/+/devices/+/telemetry", "v1/devices/+/telemetry"]:
        assert c.subscribe(topic_filter, qos=1, check=False) == [refused], topic_filter
    assert c.subscribe(f"devices/{device_id}/#", qos=1) == [1]
    # The other device listens to its own topics: nothing this device publishes elsewhere reaches it.
    victim = device_client(registry_broker, clients, username=other_token)
    victim.connect()
    assert victim.subscribe(f"devices/{other_id}/#", qos=1) == [1]
    assert victim.subscribe("v1/devices/me/#", qos=1) == [1]
    for topic in [f"devices/{other_id}/telemetry", f"$tenants/default/devices/{other_id}/telemetry", "$SYS/broker/x"]:
        c.publish(topic, b"intrusion", qos=1)
    # ThingsBoard's topic names the connected device, whatever else the client claims.
    c.publish("v1/devices/me/telemetry", b'{"mine": 1}', qos=1)
    own = c.expect_one(what="its own ThingsBoard telemetry under its native name")
    assert own.topic == f"devices/{device_id}/telemetry" and own.payload == b'{"mine": 1}'
    victim.expect_none(what="messages published outside the publisher's subtree")
    c.disconnect()
    victim.disconnect()


def test_thingsboard_telemetry_maps_to_the_native_topic_for_an_api_key_subscriber(registry_broker, clients):
    device_id, _, token = token_device(registry_broker)
    watcher = device_client(registry_broker, clients, username="api", password=ADMIN_KEY)
    watcher.connect()
    assert watcher.subscribe("devices/+/telemetry", qos=1) == [1]
    assert watcher.subscribe("#", qos=1, check=False) == [NOT_AUTHORIZED_V5]
    device = device_client(registry_broker, clients, username=token, proto=V311)
    device.connect()
    device.publish("v1/devices/me/telemetry", b'{"temperature":21.5}', qos=1)
    message = watcher.expect_one(what="the device's ThingsBoard telemetry")
    assert message.topic == f"devices/{device_id}/telemetry"
    assert json.loads(message.payload) == {"temperature": 21.5}
    # Commands go the other way: the device sees them under the form it subscribed with.
    assert device.subscribe("v1/devices/me/rpc/request/+", qos=1) == [1]
    watcher.publish(f"devices/{device_id}/rpc/request/7", b'{"method":"reboot"}', qos=1)
    command = device.expect_one(what="the RPC request")
    assert command.topic == "v1/devices/me/rpc/request/7"
    device.disconnect()
    watcher.disconnect()


# ---------------------------------------------------------------------------- provisioning and claiming

def create_profile(broker, mode: str) -> tuple[str, str]:
    key, secret = f"pk-{uuid.uuid4().hex[:10]}", f"ps-{uuid.uuid4().hex}"
    status, body = api(broker, "POST", "/profiles", {"name": f"profile-{uuid.uuid4().hex[:8]}", "provisioningMode": mode,
                                                     "provisioningKey": key, "provisioningSecret": secret})
    assert status == 201, f"POST /profiles -> {status} {body}"
    return key, secret, body.get("id")


def provision(broker, clients, request: dict) -> dict:
    c = device_client(broker, clients, username="provision")
    c.connect()
    assert c.subscribe("/provision/response", qos=1) == [1]
    assert c.subscribe("#", check=False) == [NOT_AUTHORIZED_V5]
    c.publish("/provision/request", json.dumps(request).encode(), qos=1)
    answer = c.expect_one(what="the provisioning response")
    assert answer.topic == "/provision/response"
    c.disconnect()
    return json.loads(answer.payload)


def test_provisioning_over_mqtt_allow_create(registry_broker, clients):
    key, secret, _ = create_profile(registry_broker, "allow-create")
    bystander = device_client(registry_broker, clients, username="provision")
    bystander.connect()
    assert bystander.subscribe("/provision/response", qos=1) == [1]
    answer = provision(registry_broker, clients, {"provisionDeviceKey": key, "provisionDeviceSecret": secret,
                                                  "deviceName": f"auto-{uuid.uuid4().hex[:8]}"})
    assert answer["status"] == "SUCCESS", answer
    assert answer["credentialsType"] == "ACCESS_TOKEN"
    device = device_client(registry_broker, clients, username=answer["credentialsValue"])
    assert device.connect()["reason_code"] == 0
    device.disconnect()
    bystander.expect_none(what="another provisioning client's response")
    wrong = provision(registry_broker, clients, {"provisionDeviceKey": key, "provisionDeviceSecret": "wrong"})
    assert wrong["status"] == "FAILURE" and wrong.get("errorMsg"), wrong


def test_provisioning_over_mqtt_pre_registered_only(registry_broker, clients):
    key, secret, profile_id = create_profile(registry_broker, "pre-registered-only")
    name = f"known-{uuid.uuid4().hex[:8]}"
    status, body = api(registry_broker, "POST", "/devices", {"name": name, "labels": {}, "profile": profile_id})
    assert status == 201, body
    unknown = provision(registry_broker, clients, {"provisionDeviceKey": key, "provisionDeviceSecret": secret,
                                                   "deviceName": f"stranger-{uuid.uuid4().hex[:8]}"})
    assert unknown["status"] == "FAILURE", unknown
    known = provision(registry_broker, clients, {"provisionDeviceKey": key, "provisionDeviceSecret": secret, "deviceName": name})
    assert known["status"] == "SUCCESS", known
    device = device_client(registry_broker, clients, username=known["credentialsValue"])
    assert device.connect()["reason_code"] == 0
    device.disconnect()


def test_provisioning_over_http_then_connecting_with_paho(registry_broker, clients):
    key, secret, _ = create_profile(registry_broker, "allow-create")
    name = f"http-{uuid.uuid4().hex[:8]}"
    request = {"provisionDeviceKey": key, "provisionDeviceSecret": secret, "deviceName": name}
    # No API key: the device knows only the profile's key and secret.
    status, answer = api(registry_broker, "POST", "/provision", request, key="")
    assert status == 200 and answer["status"] == "SUCCESS", answer
    device = device_client(registry_broker, clients, username=answer["credentialsValue"])
    assert device.connect()["reason_code"] == 0
    assert device.subscribe(f"devices/{answer['deviceId']}/#", qos=1) == [1]
    device.publish(f"devices/{answer['deviceId']}/telemetry", b'{"t":1}', qos=1)
    assert device.expect_one(what="its own telemetry").payload == b'{"t":1}'
    device.disconnect()
    status, wrong = api(registry_broker, "POST", "/provision", {**request, "provisionDeviceSecret": "nope"}, key="")
    assert 400 <= status < 500 and wrong["status"] == "FAILURE", wrong


def test_decommissioning_disconnects_and_refuses_the_device(registry_broker, clients):
    device_id, _, token = token_device(registry_broker)
    device = device_client(registry_broker, clients, username=token)
    device.connect()
    status, body = api(registry_broker, "POST", f"/devices/{device_id}/decommission", {"purge": False})
    assert status == 200, body
    assert device.wait_disconnected().reason_code == 0x98
    assert refused_code(registry_broker, clients, username=token) == BAD_CREDENTIALS_V5
    status, kept = api(registry_broker, "GET", f"/devices/{device_id}")
    assert status == 200 and kept["status"] == "decommissioned"
    status, audit = api(registry_broker, "GET", "/audit?limit=50")
    assert any(entry["target"] == f"device:{device_id}" and "decommission" in entry["action"]
               for entry in audit["items"]), audit


def other_tenant_operator_key(broker) -> str:
    """An operator API key of a new tenant: a user of the default tenant logs in, creates the
    tenant (API keys cannot), logs in to it as its owner and creates the key."""
    username, password = f"claimer-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    status, body = api(broker, "POST", "/users", {"username": username, "password": password, "role": "viewer"})
    assert status == 201, f"POST /users -> {status} {body}"
    status, login = api(broker, "POST", "/auth/login", {"username": username, "password": password})
    assert status == 200, f"POST /auth/login -> {status} {login}"
    status, tenant = api(broker, "POST", "/tenants", {"name": f"buyer-{uuid.uuid4().hex[:8]}"}, key=login["accessToken"])
    assert status == 201, f"POST /tenants -> {status} {tenant}"
    status, owner = api(broker, "POST", "/auth/login", {"username": username, "password": password, "tenant": tenant["id"]})
    assert status == 200 and owner["tenant"] == tenant["id"] and owner["role"] == "owner", f"login to the new tenant -> {status} {owner}"
    status, created = api(broker, "POST", "/api-keys", {"name": "claims", "role": "operator"}, key=owner["accessToken"])
    assert status == 201, f"POST /api-keys -> {status} {created}"
    return created["key"]


def claim_code_set(broker, device_id: str) -> bool:
    """Whether the device's tenant's audit log records a claim code set by the device itself."""
    status, body = api(broker, "GET", "/audit?limit=1000")
    assert status == 200, f"GET /audit -> {status} {body}"
    return any(entry["action"] == "device.claim-code" and entry["target"] == f"device:{device_id}"
               and entry["actor"]["kind"] == "device" for entry in body["items"])


def test_claiming_over_mqtt(registry_broker, clients):
    device_id, _, token = token_device(registry_broker)
    buyer = other_tenant_operator_key(registry_broker)
    watcher = device_client(registry_broker, clients, username="api", password=ADMIN_KEY)
    watcher.connect()
    assert watcher.subscribe(f"devices/{device_id}/#", qos=1) == [1]
    device = device_client(registry_broker, clients, username=token)
    device.connect()
    device.publish("v1/devices/me/claim", json.dumps({"secretKey": "s3cr3t", "durationMs": 60000}), qos=1)
    watcher.expect_none(what="the claim request (it is consumed, not routed)")
    wait_until("the claim code is stored", lambda: claim_code_set(registry_broker, device_id))
    # The claim code now lets an operator of another tenant take the device; a wrong one does not.
    status, body = api(registry_broker, "POST", "/claims", {"deviceId": device_id, "code": "wrong-code"}, key=buyer)
    assert status == 404, body
    status, body = api(registry_broker, "GET", f"/devices/{device_id}", key=buyer)
    assert status == 404, f"the device is not the buyer's before the claim: {status} {body}"
    status, body = api(registry_broker, "POST", "/claims", {"deviceId": device_id, "code": "s3cr3t"}, key=buyer)
    assert status == 200 and body["id"] == device_id, body
    # The device moved: the buyer sees it, its old tenant does not, and its old token is revoked.
    status, body = api(registry_broker, "GET", f"/devices/{device_id}", key=buyer)
    assert status == 200, body
    status, body = api(registry_broker, "GET", f"/devices/{device_id}")
    assert status == 404, f"the old tenant still sees the claimed device: {status} {body}"
    d = device.wait_disconnected()
    assert d.from_server and d.reason_code == ADMINISTRATIVE_ACTION, d
    assert refused_code(registry_broker, clients, username=token) == BAD_CREDENTIALS_V5
    # The code is used up.
    status, body = api(registry_broker, "POST", "/claims", {"deviceId": device_id, "code": "s3cr3t"}, key=buyer)
    assert status in (404, 409), body
    watcher.disconnect()

"""A Meridian server with the platform's REST API, for the identity/access/CLI tests.

`Platform(broker)` wraps a broker started with MERIDIAN_BOOTSTRAP_API_KEY=ADMIN_KEY (see the
`platform` fixture in conftest.py): `api(method, path, json=..., key=...)` calls the REST API
(default key: the bootstrap owner key) and returns the `requests` response;
`device(name)` creates a device and returns its JSON; `token(device_id)` creates a token
credential and returns the token.
"""

from __future__ import annotations

import uuid

import requests

ADMIN_KEY = "mk_test_bootstrap_admin_key_0123456789"
BOOTSTRAP_ENV = "MERIDIAN_BOOTSTRAP_API_KEY"


class Platform:
    def __init__(self, broker):
        self.broker = broker
        self.session = requests.Session()

    @property
    def base_url(self) -> str:
        return f"http://{self.broker.host}:{self.broker.http_port}"

    def api(self, method: str, path: str, json=None, key: str | None = ADMIN_KEY,
            headers: dict | None = None, data=None, params=None) -> requests.Response:
        all_headers = dict(headers or {})
        if key is not None:
            all_headers["Authorization"] = f"Bearer {key}"
        return self.session.request(method, self.base_url + path, json=json, data=data,
                                    params=params, headers=all_headers, timeout=30)

    def ok(self, method: str, path: str, json=None, key: str | None = ADMIN_KEY, status=None,
           **kwargs):
        """api(), asserting a 2xx (or the given status); returns the decoded JSON (or None)."""
        response = self.api(method, path, json=json, key=key, **kwargs)
        expected = status if status is not None else range(200, 300)
        statuses = expected if isinstance(expected, range) else [expected]
        assert response.status_code in statuses, \
            f"{method} {path} -> {response.status_code}: {response.text[:500]}"
        return response.json() if response.content else None

    def device(self, name: str | None = None, **fields) -> dict:
        body = {"name": name or f"dev-{uuid.uuid4().hex[:10]}", **fields}
        return self.ok("POST", "/api/v1/devices", json=body, status=201)

    def token(self, device_id: str, key: str | None = ADMIN_KEY) -> str:
        created = self.ok("POST", f"/api/v1/devices/{device_id}/credentials",
                          json={"type": "token"}, key=key, status=201)
        return created["token"]

    def api_key(self, role: str, key: str | None = ADMIN_KEY) -> str:
        created = self.ok("POST", "/api/v1/api-keys",
                          json={"name": f"{role}-{uuid.uuid4().hex[:6]}", "role": role},
                          key=key, status=201)
        return created["key"]

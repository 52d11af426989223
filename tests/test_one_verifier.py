"""Non-canonical JWT encodings (issue 18 finding 11, threat model RS04 and watch-list item 10).

The review found the admin API accepting a signature with ``==`` appended while the guard
refused it. Issue 14 made ``resource_demo.guard.verifier`` the one verifier of the server and
the guard; this checks the outcome end to end: the same padded or bit-twiddled copies of real
tokens are refused by a resource server, by the admin API and by introspection alike.
"""

from __future__ import annotations

import pytest
import requests
from conftest import basic_auth
from guard_support import (  # noqa: F401  (fixtures)
    auth_server,
    create_guarded_app,
    credentials,
    guard_config,
    running,
)


def _variants(token: str) -> list[str]:
    """Spellings of ``token`` whose bytes decode the same: padding, set unused bits."""
    head, payload, signature = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    variants = [f"{head}.{payload}.{signature}==", f"{head}.{payload}.{signature}=",
                f"{head}=.{payload}.{signature}", f"{head}.{payload}=.{signature}"]
    unused = {2: 0b1111, 3: 0b11}.get(len(signature) % 4)
    if unused:
        variants.append(f"{head}.{payload}.{signature[:-1]}"
                        f"{alphabet[alphabet.index(signature[-1]) | unused]}")
    return variants


@pytest.fixture(scope="module")
def guarded(auth_server, credentials):  # noqa: F811
    app = create_guarded_app(guard_config(auth_server, credentials))
    with running(app) as url:
        yield url


def test_RS04_non_canonical_encodings_are_refused_by_guard_admin_api_and_introspection(
        auth_server, credentials, guarded):  # noqa: F811
    token = credentials.jwt("sms:message:send")
    assert requests.get(guarded + "/sms", headers={"Authorization": f"Bearer {token}"},
                        timeout=10).status_code == 200
    client_id, secret = credentials.client("account-management:manage sms:manage")
    admin_token = credentials.token_response(client_id, secret,
                                             resource=auth_server.url).json()["access_token"]
    keys_url = auth_server.url + "/settings/2/api-keys"
    assert requests.get(keys_url, headers={"Authorization": f"Bearer {admin_token}"},
                        timeout=10).status_code == 200
    introspector = basic_auth(*credentials.introspector())
    for variant in _variants(token):
        answer = requests.get(guarded + "/sms", headers={"Authorization": f"Bearer {variant}"},
                              timeout=10)
        assert answer.status_code == 401, variant
        inactive = requests.post(auth_server.url + "/oauth2/introspect",
                                 data={"token": variant}, headers=introspector, timeout=10)
        assert inactive.json() == {"active": False}, variant
    for variant in _variants(admin_token):
        answer = requests.get(keys_url, headers={"Authorization": f"Bearer {variant}"},
                              timeout=10)
        assert answer.status_code == 401, variant

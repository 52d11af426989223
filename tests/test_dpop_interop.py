"""DPoP with real HTTP clients: the README's Python example, run as written.

threat model DP02 (the token is bound to the client's key), DP05 (the nonce flow).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import jwt
import pytest

from guard_support import create_guarded_app, running

from authserver.credentials import clients
from resource_demo.guard.dpop import jwk_thumbprint

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    """The Python block of the README's DPoP section."""
    text = (ROOT / "README.md").read_text("utf-8")
    section = text.split("### Sender-constrained tokens (DPoP, RFC 9449)", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def bound_client(live_server):
    with live_server.app.app_context():
        record, secret = clients.create_client(name="dpop", scope="message:send", actor="test",
                                               dpop_bound_access_tokens=True)
        return record.client_id, secret


@pytest.fixture
def guarded_api(live_server):
    """A guarded app (Flask) in front of the live server, with its own introspection client."""
    with live_server.app.app_context():
        record, secret = clients.create_client(name="rs", scope="tokens:introspect",
                                               actor="test")
        client_id = record.client_id
    app = create_guarded_app({"GUARD_ISSUER": live_server.url, "GUARD_CLIENT_ID": client_id,
                              "GUARD_CLIENT_SECRET": secret})
    with running(app) as url:
        yield url


@pytest.mark.parametrize("nonces", [False, True])
def test_DP02_DP05_readme_example_gets_and_uses_a_bound_token(live_server, bound_client,
                                                             guarded_api, nonces):
    live_server.app.config["DPOP_NONCES"] = nonces
    live_server.app.extensions.pop("authserver.oauth2.dpop", None)
    namespace = {"ISSUER": live_server.url, "CLIENT_ID": bound_client[0],
                 "CLIENT_SECRET": bound_client[1], "RESOURCE_URL": guarded_api + "/sms",
                 "MESSAGE": {"messages": []}}
    exec(compile(readme_example(), "README.md", "exec"), namespace)  # noqa: S102 (our own docs)
    token = namespace["token"]
    assert token["token_type"] == "DPoP", token
    claims = jwt.decode(token["access_token"], options={"verify_signature": False})
    assert claims["cnf"]["jkt"] == jwk_thumbprint(namespace["public_jwk"])
    result = namespace["result"]
    assert result.status_code == 200, result.text
    assert result.json()["client_id"] == bound_client[0]


# --- a third-party client: Node's openid-client 6 ---------------------------------------------

NODE_CLIENT = ROOT / "tests" / "interop_node"


@pytest.fixture(scope="session")
def node_client():
    """openid-client 6 installed from tests/interop_node's lock file (npm ci when missing)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("Node.js and npm are needed for the openid-client interop tests")
    if not (NODE_CLIENT / "node_modules" / "openid-client").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_CLIENT, check=True,
                       capture_output=True, timeout=300)

    def run(*args: str) -> dict:
        done = subprocess.run([node, str(NODE_CLIENT / "dpop_client.mjs"), *args],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout)

    return run


@pytest.mark.parametrize("nonces", [False, True])
@pytest.mark.parametrize("alg", ["ES256", "PS256", "RS256", "EdDSA"])
def test_DP02_DP05_openid_client_gets_a_bound_token(live_server, bound_client, node_client,
                                                    alg, nonces):
    live_server.app.config["DPOP_NONCES"] = nonces
    live_server.app.extensions.pop("authserver.oauth2.dpop", None)
    result = node_client(live_server.url, *bound_client, alg)
    assert "error" not in result, result
    assert result["token_type"].lower() == "dpop"
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert isinstance(claims["cnf"]["jkt"], str) and len(claims["cnf"]["jkt"]) == 43


@pytest.fixture
def start_guarded(live_server):
    """``start_guarded(**GUARD_settings)``: a guarded app in front of the live server."""
    contexts = []

    def start(**settings):
        with live_server.app.app_context():
            record, secret = clients.create_client(name="rs", scope="tokens:introspect",
                                                   actor="test")
            client_id = record.client_id
        app = create_guarded_app({"GUARD_ISSUER": live_server.url, "GUARD_CLIENT_ID": client_id,
                                  "GUARD_CLIENT_SECRET": secret, **settings})
        contexts.append(running(app))
        return contexts[-1].__enter__()

    yield start
    for context in reversed(contexts):
        context.__exit__(None, None, None)


@pytest.mark.parametrize("nonces", [False, True])
def test_DP01_DP05_openid_client_calls_a_guarded_api(live_server, bound_client, node_client,
                                                     start_guarded, nonces):
    """openid-client's fetchProtectedResource: the DPoP scheme, a proof with ath, and (with
    resource-server nonces) the use_dpop_nonce retry."""
    live_server.app.config["DPOP_NONCES"] = nonces
    live_server.app.extensions.pop("authserver.oauth2.dpop", None)
    settings = {"GUARD_DPOP_NONCES": True, "GUARD_DPOP_NONCE_SECRET": "x" * 32} if nonces else {}
    api = start_guarded(**settings)
    for method in ("GET", "POST"):
        result = node_client(live_server.url, *bound_client, "ES256", api + "/sms", method)
        assert "error" not in result, result
        assert result["resource"]["status"] == 200, result
        assert json.loads(result["resource"]["body"])["client_id"] == bound_client[0]

"""The guard installs alone: a fresh virtual environment gets only the guard distribution and
what a resource server needs (PyJWT, cryptography, httpx, its web framework), from a local
wheelhouse with ``--no-index`` (``.ci/run`` fills it), and the README's examples run in it
against a live authorization server with correct 401/403/200 answers.

The examples are the README's own code blocks, found by their ``<!-- guard-example: NAME -->``
markers, so the README cannot drift from what is tested.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import LiveServer, _empty_tables, _make_app
from guard_support import FORBIDDEN, UNAUTHORIZED, Credentials

ROOT = Path(__file__).resolve().parent.parent
WHEELHOUSE = Path(os.environ.get("GUARD_WHEELHOUSE", ROOT / ".ci" / "wheelhouse"))
#: Distributions of the authorization server that a resource server must never get.
SERVER_ONLY = {"authserver", "authlib", "sqlalchemy", "flask-sqlalchemy", "alembic", "psycopg",
               "psycopg-binary", "gunicorn", "argon2-cffi", "limits", "prometheus-client",
               "requests", "redis", "click-default-group"}

if not WHEELHOUSE.is_dir() and not os.environ.get("CI"):
    pytest.skip(f"no wheelhouse at {WHEELHOUSE} (bash .ci/run fills it)", allow_module_level=True)


def readme_example(name: str) -> str:
    """The Python block after ``<!-- guard-example: name -->`` in README.md."""
    text = (ROOT / "README.md").read_text("utf-8")
    match = re.search(rf"<!-- guard-example: {name} -->\s*```python\n(.*?)```", text, re.S)
    assert match, f"README.md has no guard example {name!r}"
    return match.group(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_venv(tmp: Path, requirement: str, *extra: str) -> Path:
    """A fresh venv with ``pip install --no-index --find-links WHEELHOUSE`` of the guard."""
    assert WHEELHOUSE.is_dir(), f"{WHEELHOUSE} missing: bash .ci/run fills it"
    source = tmp / "src" / "guard"
    # A copy: the build writes build/ and egg-info/ beside the sources.
    shutil.copytree(ROOT / "resource_demo" / "guard", source,
                    ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    venv = tmp / "venv"
    # Without pip of its own (bootstrapping it costs more than the install): this process's
    # pip installs into the venv (--python), which then holds the guard and its needs only.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(WHEELHOUSE),
           "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_CONFIG_FILE": os.devnull}
    # What a resource-server team types, from a checkout: pip install './resource_demo/guard[flask]'
    subprocess.run([*pip(python), "install", "-q", f"{source}[{requirement}]", *extra],
                   check=True, env=env, cwd=tmp, timeout=600)
    return python


def pip(python: Path) -> list[str]:
    """The command line of pip acting on the environment of ``python``."""
    return [sys.executable, "-m", "pip", "--python", str(python)]


@pytest.fixture(scope="module")
def light_venv(tmp_path_factory):
    """``light_venv(requirement, *extra)``: the fresh venv of ``make_venv``, built once per
    module for each requirement (the tests only run programs in it)."""
    built: dict[tuple[str, ...], Path] = {}

    def get(requirement: str, *extra: str) -> Path:
        key = (requirement, *extra)
        if key not in built:
            built[key] = make_venv(tmp_path_factory.mktemp(f"venv-{requirement}"), *key)
        return built[key]

    return get


def installed(python: Path) -> set[str]:
    out = subprocess.run([*pip(python), "list", "--format=freeze"], check=True,
                         capture_output=True, text=True).stdout
    return {line.split("==")[0].lower().replace("_", "-") for line in out.splitlines() if line}


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """A live authorization server on SQLite (storage is not what this module tests)."""
    application = _make_app(f"sqlite:///{tmp_path_factory.mktemp('db') / 'install.sqlite'}",
                            tmp_path_factory.mktemp("auth-server"))
    from authserver.credentials import signing_keys
    from authserver.storage.db import db, upgrade_database

    server = LiveServer(application)
    application.config.update(ISSUER=server.url, DEFAULT_AUDIENCE=server.url + "/api")
    with application.app_context():
        upgrade_database()
        signing_keys.ensure_signing_keys()
        _empty_tables()
    server.app = application
    server.start()
    yield server
    server.stop()
    with application.app_context():
        db.engine.dispose()


def run_example(python: Path, tmp: Path, name: str, command: list[str], server,
                credentials: Credentials):
    """Start the README example ``name`` in the fresh venv; yield its URL; stop it."""
    (tmp / "app.py").write_text(readme_example(name), "utf-8")
    client_id, secret = credentials.introspector()
    env = {"PATH": os.environ.get("PATH", ""), "GUARD_ISSUER": server.url,
           "GUARD_CLIENT_ID": client_id, "GUARD_CLIENT_SECRET": secret}
    port = free_port()
    log = tmp / "example.log"
    with log.open("wb") as output:  # the child keeps its own descriptor
        process = subprocess.Popen([str(python), "-m", *command, "--port", str(port)], cwd=tmp,
                                   env=env, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(url + "/", timeout=1)
            break
        except requests.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait(10)
                pytest.fail(f"example did not start: {log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
    return process, url


def check_answers(url: str, credentials: Credentials) -> None:
    """401 without or with a bad credential, 403 without the scope, 200 with it (JWT and key)."""
    send = url + "/sms/3/messages"
    none = requests.post(send, timeout=10)
    assert (none.status_code, none.text) == (401, UNAUTHORIZED)
    assert none.raw.headers.getlist("WWW-Authenticate")[0] == 'Bearer realm="api"'
    bad = requests.post(send, headers={"Authorization": "Bearer not.a.jwt"}, timeout=10)
    assert (bad.status_code, bad.text) == (401, UNAUTHORIZED)
    other = requests.post(send, headers=credentials.header("jwt", "email:message:send"), timeout=10)
    assert (other.status_code, other.text) == (403, FORBIDDEN)
    assert 'error="insufficient_scope"' in other.headers["WWW-Authenticate"]
    for kind in ("jwt", "api_key"):
        # message:send is an umbrella over sms:message:send: let in.
        ok = requests.post(send, headers=credentials.header(kind, "message:send"), timeout=10)
        assert ok.status_code == 200, ok.text
    key = requests.get(url + "/account/1/balance", timeout=10,
                       headers=credentials.header("api_key", "account-management:manage"))
    assert (key.status_code, key.text) == (403, FORBIDDEN)  # this endpoint takes JWTs only
    jwt_ok = requests.get(url + "/account/1/balance", timeout=10,
                          headers=credentials.header("jwt", "account-management:manage"))
    assert jwt_ok.status_code == 200, jwt_ok.text


EXAMPLES = {
    "flask": ("flask", (), ["flask", "--app", "app", "run"], {"fastapi", "starlette"}),
    "fastapi": ("fastapi", ("uvicorn",), ["uvicorn", "app:app", "--no-proxy-headers"], {"flask"}),
}


@pytest.mark.parametrize("name", EXAMPLES)
def test_guard_alone_runs_the_readme_example(name, tmp_path, auth_server, light_venv):
    extra_name, extra_packages, command, absent = EXAMPLES[name]
    python = light_venv(extra_name, *extra_packages)
    packages = installed(python)
    assert "authserver-guard" in packages
    assert not packages & SERVER_ONLY, packages & SERVER_ONLY
    assert not packages & absent, packages & absent
    credentials = Credentials(auth_server)
    process, url = run_example(python, tmp_path, name, command, auth_server, credentials)
    try:
        check_answers(url, credentials)
    finally:
        process.terminate()
        process.wait(10)


def test_guard_refuses_to_start_without_feed_credentials(auth_server, light_venv):
    """Safe by default, in the light install too: no GUARD_CLIENT_ID -> a message naming it."""
    python = light_venv("flask")
    code = ("from flask import Flask\nfrom resource_demo.guard.flask import ResourceGuard\n"
            "app = Flask('x')\napp.config['GUARD_ISSUER'] = " + repr(auth_server.url) + "\n"
            "ResourceGuard(app)\n")
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "GuardConfigurationError" in result.stderr and "GUARD_CLIENT_ID" in result.stderr
    assert "GUARD_REVOCATION_CHECK=False" in result.stderr


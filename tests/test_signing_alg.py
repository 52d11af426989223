"""SIGNING_ALG and ``init --alg`` give a server whose key in force uses that algorithm
(issue 19; threat model AT01): on a fresh instance at once, on one with keys of another
algorithm after a rotation that publishes the new key first (JW03)."""

from __future__ import annotations

import json
import uuid

import jwt
import psycopg
import pytest
from conftest import ENCRYPTION_KEY, PG_ADMIN_DSN, basic_auth

import authserver.admin.cli
from authserver import config as defaults
from authserver import create_app
from authserver.credentials import clients as client_service
from authserver.storage.db import db

ALGORITHMS = ("RS256", "ES256", "EdDSA")


@pytest.fixture
def fresh_url(backend, tmp_path):
    """An empty database of ``backend``."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.sqlite'}"
        return
    name = f"authserver_alg_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def make_app(fresh_url, tmp_path):
    """An app on the fresh database with extra settings (a new process's configuration)."""
    made = []

    def make(**settings):
        application = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": fresh_url,
                                  "ISSUER": "https://auth.example.test",
                                  "ENCRYPTION_KEY": ENCRYPTION_KEY, "SECRET_KEY": "x",
                                  "TOKEN_RATE_LIMIT": "", "SIGNING_KEY_PUBLISH_DELAY": 0,
                                  **settings}, instance_path=str(tmp_path / "instance"))
        made.append(application)
        return application

    yield make
    for application in made:
        with application.app_context():
            db.session.remove()
            db.engine.dispose()


def init(application, *args: str) -> str:
    result = application.test_cli_runner().invoke(authserver.admin.cli.main, ["init", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def token_alg(application) -> str:
    """The ``alg`` of a token the server issues now, after checking its key is in the JWKS."""
    with application.app_context():
        record, secret = client_service.create_client(name="c", scope="sms:message:send",
                                                      actor="test")
        client_id = record.client_id
    http = application.test_client()
    answer = http.post("/oauth2/token", data={"grant_type": "client_credentials"},
                       headers=basic_auth(client_id, secret))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    header = jwt.get_unverified_header(answer.get_json()["access_token"])
    published = {key["kid"]: key["alg"] for key in http.get("/.well-known/jwks.json").json["keys"]}
    assert published[header["kid"]] == header["alg"]
    return header["alg"]


def test_AT01_default_algorithm_is_es256(make_app):
    """The default chosen with the measurements of docs/benchmarks.md; RS256 is a setting away."""
    assert defaults.SIGNING_ALG == "ES256"
    application = make_app()
    assert "(ES256)" in init(application)
    assert token_alg(application) == "ES256"


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_AT01_signing_alg_setting_gives_a_key_of_that_algorithm(make_app, alg):
    application = make_app(SIGNING_ALG=alg)
    init(application)
    assert token_alg(application) == alg


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_AT01_init_alg_gives_a_key_of_that_algorithm(make_app, alg):
    application = make_app()
    init(application, "--alg", alg)
    assert token_alg(application) == alg


@pytest.mark.parametrize("before, after", [("RS256", "ES256"), ("ES256", "RS256"),
                                           ("EdDSA", "RS256")])
def test_AT01_init_alg_on_keys_of_another_algorithm_switches(make_app, before, after):
    application = make_app()
    init(application, "--alg", before)
    assert token_alg(application) == before
    said = init(application, "--alg", after)
    assert f"the key in force is {before}: an {after} key signs from" in said
    assert token_alg(application) == after
    assert f"signing keys already present ({after})" in init(application, "--alg", after)


def test_AT01_changed_signing_alg_takes_over_at_the_next_rotation(make_app):
    """The next key published for the old algorithm never signed: a rotation withdraws it
    and schedules a key of the configured one."""
    first = make_app(SIGNING_ALG="RS256")
    init(first)
    second = make_app(SIGNING_ALG="ES256")
    assert "SIGNING_ALG is ES256" in init(second)  # keys are not replaced behind one's back
    assert token_alg(second) == "RS256"
    runner = second.test_cli_runner()
    rotated = runner.invoke(authserver.admin.cli.main, ["signing-keys", "rotate", "--json"])
    assert rotated.exit_code == 0, rotated.output
    assert json.loads(rotated.stdout)["alg"] == "ES256"
    assert token_alg(second) == "ES256"
    listing = json.loads(runner.invoke(authserver.admin.cli.main,
                                       ["signing-keys", "list", "--json"]).stdout)
    next_keys = [key for key in listing if key["state"] == "next"]
    assert [key["alg"] for key in next_keys] == ["ES256"]
    published = {key["alg"] for key in second.test_client().get("/.well-known/jwks.json")
                 .json["keys"]}
    assert published == {"RS256", "ES256"}  # the retired RS256 key stays until its tokens expire

"""The per-transaction database deadline (threat model RL1: no unbounded waits on a hung DB)."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa
from conftest import basic_auth
from sqlalchemy.exc import OperationalError

from authserver.storage.db import db

# These tests sever connections and add a request hook: each gets an app and engine of its own.
pytestmark = pytest.mark.own_app


@pytest.fixture
def app_config():
    return {"DB_REQUEST_TIMEOUT": 1}


def test_RL1_a_transaction_held_past_the_deadline_is_severed(app, backend):
    if backend != "postgresql":
        pytest.skip("SQLite is in-process: there is no server that could hang")
    with app.app_context():
        started = time.monotonic()
        with pytest.raises(OperationalError):
            db.session.execute(sa.text("SELECT pg_sleep(20)"))
        elapsed = time.monotonic() - started
        db.session.rollback()
        # The pool replaces the severed connection: the next transaction works.
        assert db.session.execute(sa.text("SELECT 1")).scalar() == 1
    assert elapsed < 3


def test_RL1_a_stuck_request_is_answered_503(app, client, backend, oauth_clients, get_token):
    if backend != "postgresql":
        pytest.skip("SQLite is in-process: there is no server that could hang")
    client_id, secret = oauth_clients.create()

    @app.before_request
    def hang():  # stands in for a database that stops answering mid-request
        from flask import request

        if request.path == "/oauth2/token" and request.headers.get("X-Hang"):
            db.session.execute(sa.text("SELECT pg_sleep(20)"))

    started = time.monotonic()
    answer = client.post("/oauth2/token", data={"grant_type": "client_credentials"},
                         headers={**basic_auth(client_id, secret), "X-Hang": "1"})
    assert answer.status_code == 503 and answer.headers["Retry-After"]
    assert time.monotonic() - started < 3
    assert get_token(client_id, secret).status_code == 200



class LostConnection:
    """What psycopg hands the watchdog for a connection the server dropped."""

    @property
    def pgconn(self):
        import psycopg

        raise psycopg.OperationalError("the connection is lost")


def test_RL1_the_watchdog_outlives_a_connection_that_is_already_lost():
    """Severing a connection the database already dropped is a no-op, not an exception: it
    used to end the watchdog thread (seen when backends were terminated under a held
    connection), and with it every later deadline of the process."""
    from authserver.storage import watchdog as module

    module._sever(LostConnection())  # returns, raises nothing
    guard = module.ConnectionWatchdog()
    before = set(threading.enumerate())
    guard._ensure_thread()
    [thread] = [t for t in threading.enumerate() if t not in before and t.name == "db-watchdog"]
    lost = LostConnection()
    with guard._lock:  # as on_checkout records a checked-out connection, already overdue
        guard._deadlines[id(lost)] = (lost, time.monotonic() - 1)
    time.sleep(module.POLL_SECONDS * 3)
    assert guard._deadlines == {}  # the overdue entry was handled
    assert thread.is_alive()

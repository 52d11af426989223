"""Scheduled rotation: publish-before-sign by time, retirement after the last token expires."""

from __future__ import annotations

import jwt
import pytest

from authserver.credentials import signing_keys as keys


@pytest.fixture
def app_config():
    return {"SIGNING_KEY_PUBLISH_DELAY": 60, "SIGNING_KEY_CACHE_SECONDS": 0,
            "MAX_ACCESS_TOKEN_TTL": 600}


def _kid(get_token, credentials) -> str:
    return jwt.get_unverified_header(get_token(*credentials).json["access_token"])["kid"]


def _published(client) -> set[str]:
    return {key["kid"] for key in client.get("/.well-known/jwks.json").json["keys"]}


def test_JW03_rotation_waits_until_the_next_key_was_published_long_enough(
        app, client, clock, oauth_clients, get_token):
    credentials = oauth_clients.create()
    with app.app_context():
        keys.rotate_signing_keys(immediately=True)  # a fresh, just-published next key
        current = keys.active_signing_key().kid
        scheduled = keys.rotate_signing_keys()
        scheduled_kid = scheduled.kid
    assert scheduled_kid in _published(client) and current in _published(client)
    assert _kid(get_token, credentials) == current  # still the old key: not published 60 s yet
    clock.advance(59)
    assert _kid(get_token, credentials) == current
    clock.advance(2)
    assert _kid(get_token, credentials) == scheduled_kid
    # JW04: the old key stays published until its last token (max TTL + leeway) has expired.
    clock.advance(600 + 30 - 2)
    assert current in _published(client)
    clock.advance(5)
    assert current not in _published(client)


def test_rotation_now_signs_at_once_and_exactly_one_key_is_active(app, get_token,
                                                                  oauth_clients):
    credentials = oauth_clients.create()
    with app.app_context():
        rotated = keys.rotate_signing_keys(immediately=True).kid
        states = [key.state for key in keys.list_signing_keys()]
    assert _kid(get_token, credentials) == rotated
    assert states.count("active") == 1 and states.count("next") == 1

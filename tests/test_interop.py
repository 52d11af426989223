"""Real OAuth client libraries against a real HTTP server (the ``live_server`` fixture).

requests-oauthlib (``BackendApplicationClient``), Authlib's ``OAuth2Session`` with
client_secret_basic, client_secret_post and private_key_jwt, and PyJWT's ``PyJWKClient``.
"""

from __future__ import annotations

import time

import jwt
import pytest
from authlib.integrations.requests_client import OAuth2Session as AuthlibSession
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from oauthlib.oauth2 import BackendApplicationClient
from requests_oauthlib import OAuth2Session as OAuthlibSession

from authserver.credentials import clients as client_service


def register(live_server, scope="message:send", **kwargs) -> tuple[str, str | None]:
    with live_server.app.app_context():
        record, secret = client_service.create_client(name="interop", scope=scope,
                                                      actor="test", **kwargs)
        return record.client_id, secret


def metadata(live_server) -> dict:
    import requests

    return requests.get(live_server.url + "/.well-known/oauth-authorization-server",
                        timeout=5).json()


def verify_with_pyjwkclient(live_server, token: str) -> dict:
    """What a resource server does: keys from the advertised jwks_uri, strict checks."""
    document = metadata(live_server)
    signing_key = jwt.PyJWKClient(document["jwks_uri"]).get_signing_key_from_jwt(token)
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    return jwt.decode(token, signing_key,
                      algorithms=document["access_token_signing_alg_values_supported"],
                      issuer=document["issuer"], audience=live_server.url + "/api",
                      options={"require": ["iss", "sub", "aud", "exp", "iat", "jti",
                                           "client_id"]})


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# --- requests-oauthlib --------------------------------------------------------------------------

@pytest.mark.parametrize(("include_client_id", "auth_method"), [
    (False, "client_secret_basic"),   # Basic header (the library's default)
    (True, "client_secret_post"),     # client_id and client_secret in the body
])
def test_requests_oauthlib_backend_application_client(live_server, monkeypatch,
                                                       include_client_id, auth_method):
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # plain HTTP on the loopback
    client_id, secret = register(live_server, auth_method=auth_method)
    session = OAuthlibSession(client=BackendApplicationClient(client_id=client_id,
                                                               scope=["sms:message:send"]))
    token = session.fetch_token(token_url=live_server.url + "/oauth2/token",
                                client_id=client_id, client_secret=secret,
                                include_client_id=include_client_id)
    assert token["token_type"] == "Bearer" and token["expires_in"] == 3600
    assert token["scope"] == ["sms:message:send"]
    assert "refresh_token" not in token
    claims = verify_with_pyjwkclient(live_server, token["access_token"])
    assert claims["sub"] == claims["client_id"] == client_id
    assert claims["scope"] == "sms:message:send"


def test_requests_oauthlib_basic_auth_with_client_id_in_body(live_server, monkeypatch):
    """An explicit Basic ``auth`` plus ``client_id`` in the body is one method, not two."""
    from requests.auth import HTTPBasicAuth

    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    client_id, secret = register(live_server)
    session = OAuthlibSession(client=BackendApplicationClient(client_id=client_id))
    token = session.fetch_token(token_url=live_server.url + "/oauth2/token",
                                auth=HTTPBasicAuth(client_id, secret), include_client_id=True)
    assert verify_with_pyjwkclient(live_server, token["access_token"])["sub"] == client_id


def test_requests_oauthlib_platform_path(live_server, monkeypatch):
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    client_id, secret = register(live_server)
    session = OAuthlibSession(client=BackendApplicationClient(client_id=client_id))
    token = session.fetch_token(token_url=live_server.url + "/auth/1/oauth2/token",
                                client_id=client_id, client_secret=secret)
    assert verify_with_pyjwkclient(live_server, token["access_token"])["scope"] == "message:send"


# --- Authlib ------------------------------------------------------------------------------------

@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
def test_authlib_client_secret(live_server, auth_method):
    client_id, secret = register(live_server, auth_method=auth_method)
    with AuthlibSession(client_id, secret, token_endpoint_auth_method=auth_method,
                        scope="sms:message:send") as session:
        token = session.fetch_token(metadata(live_server)["token_endpoint"],
                                    grant_type="client_credentials")
    assert token["scope"] == "sms:message:send" and token["token_type"] == "Bearer"
    claims = verify_with_pyjwkclient(live_server, token["access_token"])
    assert claims["sub"] == client_id


def test_authlib_wrong_method_is_invalid_client(live_server):
    from authlib.integrations.base_client.errors import OAuthError

    client_id, secret = register(live_server, auth_method="client_secret_post")
    with AuthlibSession(client_id, secret,
                        token_endpoint_auth_method="client_secret_basic") as session:
        with pytest.raises(OAuthError) as caught:
            session.fetch_token(live_server.url + "/oauth2/token",
                                grant_type="client_credentials")
    assert caught.value.error == "invalid_client"


def _private_key_jwt_client(live_server, rsa_key) -> tuple[str, bytes]:
    jwk = RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True)
    client_id, secret = register(live_server, auth_method="private_key_jwt",
                                 jwks={"keys": [{**jwk, "kid": "interop-1"}]})
    assert secret is None
    pem = rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return client_id, pem


def test_authlib_private_key_jwt_configured_for_rfc7523bis(live_server, rsa_key):
    """Authlib works once told the audience (the issuer) and a short assertion lifetime."""
    client_id, pem = _private_key_jwt_client(live_server, rsa_key)
    document = metadata(live_server)
    # PrivateKeyJWT's token_endpoint argument is used only as the assertion's aud.
    auth = PrivateKeyJWT(token_endpoint=document["issuer"],
                         claims={"exp": int(time.time()) + 120}, headers={"kid": "interop-1"})
    with AuthlibSession(client_id, pem, token_endpoint_auth_method=auth,
                        scope="sms:message:send") as session:
        token = session.fetch_token(document["token_endpoint"], grant_type="client_credentials")
    claims = verify_with_pyjwkclient(live_server, token["access_token"])
    assert claims["sub"] == client_id and claims["scope"] == "sms:message:send"


@pytest.mark.parametrize("configuration", ["defaults", "issuer-audience-only"])
def test_authlib_private_key_jwt_defaults_are_refused(live_server, rsa_key, configuration):
    """Authlib's defaults: aud = the token endpoint URL, which rfc7523bis says MUST NOT be
    used, and exp = iat + 3600 s, beyond CLIENT_ASSERTION_MAX_LIFETIME (300 s). Both refused."""
    from authlib.integrations.base_client.errors import OAuthError

    client_id, pem = _private_key_jwt_client(live_server, rsa_key)
    document = metadata(live_server)
    audience = document["token_endpoint"] if configuration == "defaults" else document["issuer"]
    with AuthlibSession(client_id, pem,
                        token_endpoint_auth_method=PrivateKeyJWT(audience)) as session:
        with pytest.raises(OAuthError) as caught:
            session.fetch_token(document["token_endpoint"], grant_type="client_credentials")
    assert caught.value.error == "invalid_client"


# --- PyJWT's PyJWKClient ---------------------------------------------------------------------

def test_pyjwkclient_resolves_every_published_key(live_server):
    import requests

    client_id, secret = register(live_server)
    response = requests.post(live_server.url + "/oauth2/token",
                             data={"grant_type": "client_credentials"},
                             auth=(client_id, secret), timeout=5)
    token = response.json()["access_token"]
    jwks_client = jwt.PyJWKClient(metadata(live_server)["jwks_uri"])
    kids = {key.key_id for key in jwks_client.get_signing_keys()}
    assert jwt.get_unverified_header(token)["kid"] in kids
    assert verify_with_pyjwkclient(live_server, token)["sub"] == client_id
    with pytest.raises(jwt.InvalidAudienceError):
        signing_key = jwks_client.get_signing_key_from_jwt(token)
        jwt.decode(token, signing_key, algorithms=[signing_key.algorithm_name],
                   audience=client_id)

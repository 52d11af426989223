"""A DPoP client's key pair for the tests: makes RFC 9449 proofs, well-formed or hostile."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from conftest import basic_auth
from oauth_support import DESCRIPTION_RE, LEAK_MARKERS

from resource_demo.guard.dpop import access_token_hash, jwk_thumbprint

#: RFC 9449 §5, §7.1, §8: the error codes DPoP adds to RFC 6749 §5.2 and RFC 6750 §3.1.
DPOP_ERRORS = {"invalid_dpop_proof", "use_dpop_nonce"}
#: PyJWT's signer, taught RFC 9864's name for EdDSA on Ed25519.
_JWS = jwt.PyJWS()
_JWS.register_algorithm("Ed25519", OKPAlgorithm())
GRANT = {"grant_type": "client_credentials"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class DPoPKey:
    """One DPoP key pair (``alg``: ES256, ES384, RS256, PS256, EdDSA or Ed25519) and its JWK."""

    def __init__(self, alg: str = "ES256"):
        self.alg = alg
        if alg == "ES256":
            self.private_key = ec.generate_private_key(ec.SECP256R1())
            self.jwk = ECAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        elif alg == "ES384":
            self.private_key = ec.generate_private_key(ec.SECP384R1())
            self.jwk = ECAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        elif alg in ("RS256", "PS256"):
            self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.jwk = RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        elif alg in ("EdDSA", "Ed25519"):
            self.private_key = ed25519.Ed25519PrivateKey.generate()
            self.jwk = OKPAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        else:
            raise ValueError(alg)

    @property
    def jkt(self) -> str:
        """The RFC 7638 thumbprint a token bound to this key carries in ``cnf.jkt``."""
        return jwk_thumbprint(self.jwk)

    def private_jwk(self) -> dict:
        """The JWK with the private members (what a client must never send)."""
        algorithm = {"ES256": ECAlgorithm, "ES384": ECAlgorithm, "RS256": RSAAlgorithm,
                     "PS256": RSAAlgorithm, "EdDSA": OKPAlgorithm,
                     "Ed25519": OKPAlgorithm}[self.alg]
        return algorithm.to_jwk(self.private_key, as_dict=True)

    def proof(self, method: str, url: str, *, access_token: str | None = None,
              nonce: str | None = None, iat: float | None = None, jti: str | None = None,
              claims: dict | None = None, headers: dict | None = None,
              drop: tuple[str, ...] = ()) -> str:
        """A signed proof for ``method`` ``url``; ``claims``/``headers`` override or add members,
        ``drop`` removes claims."""
        payload = {"jti": jti or secrets.token_urlsafe(16), "htm": method, "htu": url,
                   "iat": int(time.time()) if iat is None else iat}
        if access_token is not None:
            payload["ath"] = access_token_hash(access_token)
        if nonce is not None:
            payload["nonce"] = nonce
        payload.update(claims or {})
        for name in drop:
            payload.pop(name, None)
        header = {"typ": "dpop+jwt", "jwk": self.jwk, **(headers or {})}
        return _JWS.encode(json.dumps(payload).encode(), self.private_key, algorithm=self.alg,
                           headers=header)


def unsigned(header: dict, payload: dict, signature: bytes = b"") -> str:
    """A compact JWS from raw parts (for ``alg: none`` and other forgeries)."""
    return ".".join((b64url(json.dumps(header).encode()), b64url(json.dumps(payload).encode()),
                     b64url(signature)))


def hs256(key: DPoPKey, method: str, url: str, secret: bytes) -> str:
    """A proof MACed with HS256 (a symmetric alg, RFC 9449 §4.2 forbids it), made by hand:
    PyJWT refuses to use a JWK as an HMAC secret, which is one of the forgeries tried."""
    payload = {"jti": secrets.token_urlsafe(16), "htm": method, "htu": url,
               "iat": int(time.time())}
    header = {"typ": "dpop+jwt", "alg": "HS256", "jwk": key.jwk}
    signing_input = ".".join((b64url(json.dumps(header).encode()),
                              b64url(json.dumps(payload).encode())))
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def token_url(app, path: str = "/oauth2/token") -> str:
    """The token endpoint URI as the metadata names it (what a proof's htu holds)."""
    return app.config["ISSUER"] + path


def request_token(test_client, credentials, proof=None, path="/oauth2/token", headers=None,
                  resource: str | None = None, **kwargs):
    """A client_credentials request with Basic auth and, when given, a DPoP header (and an
    RFC 8707 ``resource``, e.g. the admin API's audience)."""
    sent = dict(basic_auth(*credentials))
    if proof is not None:
        sent["DPoP"] = proof
    sent.update(headers or {})
    form = {**GRANT, "resource": resource} if resource else GRANT
    return test_client.post(path, data=form, headers=sent, **kwargs)


def assert_dpop_error(response, error: str = "invalid_dpop_proof", status: int = 400) -> dict:
    """An RFC 6749 §5.2 error with a DPoP error code, no token and nothing leaked (DP06: 4xx)."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["error"] == error and error in DPOP_ERRORS and "access_token" not in body
    assert DESCRIPTION_RE.match(body.get("error_description", "")), body
    assert response.headers["Cache-Control"] == "no-store"
    text = response.get_data(as_text=True)
    assert not any(marker in text for marker in LEAK_MARKERS), text
    return body

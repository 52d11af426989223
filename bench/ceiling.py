"""The benchmark's ceiling and limits: a trivial Flask app served as ``authserver serve`` serves.

``POST /ceiling`` answers a small JSON document and does nothing else: what any Flask
endpoint costs on this machine under the server, worker class and worker count of
``authserver serve`` (``authserver.web.serving.run``, so a change there moves the ceiling
too), with logging off. ``POST /limit/<alg>`` is the same plus one RFC 9068-shaped JWT
signed with a key parsed once at start, through the same PyJWT call the token endpoint
makes: the most a token endpoint signing with that algorithm could do in Flask here.
Benchmark use only.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from flask import Flask, jsonify

from authserver.web.serving import run

ALGORITHMS = ("RS256", "ES256", "EdDSA")
ISSUER = "http://127.0.0.1"
SCOPE = "sms:message:send"


def private_key(alg: str):
    """A key of the size the server generates (``authserver.credentials.signing_keys``)."""
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def create_app() -> Flask:
    """The trivial app: one do-nothing endpoint and one signing endpoint per algorithm."""
    app = Flask("bench_ceiling")
    keys = {alg: (private_key(alg), secrets.token_urlsafe(16)) for alg in ALGORITHMS}

    @app.route("/ceiling", methods=["GET", "POST"])
    def ceiling():
        return jsonify(status="ok")

    @app.post("/limit/<alg>")
    def limit(alg: str):
        key, kid = keys[alg]
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": "bench", "client_id": "bench", "aud": ISSUER + "/api",
                  "exp": now + 3600, "iat": now, "nbf": now, "jti": secrets.token_urlsafe(18),
                  "scope": SCOPE}
        token = jwt.encode(claims, key, algorithm=alg, headers={"typ": "at+jwt", "kid": kid})
        return jsonify(access_token=token, token_type="Bearer", expires_in=3600, scope=SCOPE)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    run(create_app, args.host, args.port, args.workers, access_log=False)


if __name__ == "__main__":
    main()

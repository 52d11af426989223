"""DPoP proofs for the benchmark (RFC 9449): every request needs a fresh one (each ``jti`` is
accepted once, ``iat`` must be recent), so a DPoP case gets a file of proofs written just
before each interval, one per line, that the load generator sends one by one.

Proofs are made the way a client library makes them: an ES256 key pair, the JOSE header
encoded once, a new payload and signature per proof.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from jwt.algorithms import ECAlgorithm

from resource_demo.guard.dpop import access_token_hash


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class ProofMaker:
    """One client's DPoP key; ``make()`` signs a proof for ``method`` ``url``."""

    def __init__(self) -> None:
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        self.jwk = ECAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk}
        self._header = _b64url(json.dumps(header, separators=(",", ":")).encode())

    def make(self, method: str, url: str, access_token: str | None = None) -> str:
        """A fresh proof (new ``jti``, ``iat`` now; ``ath`` when a token is given)."""
        claims = {"jti": secrets.token_urlsafe(16), "htm": method, "htu": url,
                  "iat": int(time.time())}
        if access_token is not None:
            claims["ath"] = access_token_hash(access_token)
        signing_input = f"{self._header}.{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.private_key.sign(signing_input.encode(),
                                                          ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


class ProofFile:
    """Proofs for one case: ``refill(count)`` writes ``count`` fresh ones to ``path``."""

    def __init__(self, path: Path, maker: ProofMaker, method: str, url: str,
                 access_token: str | None = None) -> None:
        self.path = path
        self.maker = maker
        self.method, self.url, self.access_token = method, url, access_token

    def one(self) -> str:
        """A single fresh proof (for the probe request)."""
        return self.maker.make(self.method, self.url, self.access_token)

    def refill(self, count: int) -> str:
        """Write ``count`` fresh proofs; return the file's path."""
        lines = [self.one() for _ in range(count)]
        self.path.write_text("\n".join(lines) + "\n", encoding="ascii")
        return str(self.path)

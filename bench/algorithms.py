"""Both sides of the signing algorithm, per RS256, ES256 and EdDSA: what issuing a token costs
the server, and what checking it costs a resource server, with and without the guard's cache.

    python bench/algorithms.py [--markdown]

In-process CPU time (best of several batches, so other processes on the machine matter
little): the token endpoint's signature (``jwt.encode`` with a key parsed once, as
``authserver.oauth2.tokens`` does), the guard's ``AccessTokenVerifier.verify`` for a token it
has not seen (the signature is checked) and for one it has (its verified-token cache: claims
and key presence only), and a plain PyJWT decode (a verifier without a cache).
"""

from __future__ import annotations

import argparse
import re
import secrets
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jwt

from bench.ceiling import ALGORITHMS, private_key
from resource_demo.guard.keys import KeySet, parse_jwk
from resource_demo.guard.verifier import AccessTokenVerifier

ISSUER = "https://auth.example"
AUDIENCE = ISSUER + "/api"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:algorithms:begin -->", "<!-- bench:algorithms:end -->"


def best_us(function, batch: int, batches: int = 7) -> float:
    """Fewest CPU µs per call over ``batches`` batches of ``batch`` calls."""
    best = float("inf")
    for _ in range(batches):
        started = time.process_time()
        for _ in range(batch):
            function()
        best = min(best, (time.process_time() - started) / batch * 1e6)
    return best


def measure(alg: str) -> dict:
    key = private_key(alg)
    kid = secrets.token_urlsafe(8)
    jwk = jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key(), as_dict=True)
    jwk.update(kid=kid, alg=alg, use="sig")
    keys = KeySet({kid: parse_jwk(jwk)})
    now = int(time.time())

    def claims() -> dict:
        return {"iss": ISSUER, "sub": "c", "client_id": "c", "aud": AUDIENCE, "exp": now + 3600,
                "iat": now, "nbf": now, "jti": secrets.token_urlsafe(18),
                "scope": "sms:message:send"}

    def sign(payload: dict | None = None) -> str:
        return jwt.encode(payload or claims(), key, algorithm=alg,
                          headers={"typ": "at+jwt", "kid": kid})

    verifier = AccessTokenVerifier(ISSUER, AUDIENCE, keys)
    token = sign()
    verifier.verify(token)
    fresh = iter([sign() for _ in range(7 * 200)])
    public = key.public_key()
    return {
        "sign_us": best_us(sign, 200),
        "guard_first_us": best_us(lambda: verifier.verify(next(fresh)), 200),
        "guard_cached_us": best_us(lambda: verifier.verify(token), 2000),
        "pyjwt_us": best_us(lambda: jwt.decode(token, public, algorithms=[alg],
                                               audience=AUDIENCE), 200),
        "token_bytes": len(token),
    }


def markdown(rows: dict[str, dict]) -> str:
    lines = [f"Run of {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC: "
             "`python bench/algorithms.py` (CPU µs per operation, best of 7 batches)", "",
             "| algorithm | sign (token endpoint) | guard, first use (signature) | "
             "guard, cached | PyJWT decode (no cache) | token bytes |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for alg, row in rows.items():
        lines.append(f"| {alg} | {row['sign_us']:.0f} | {row['guard_first_us']:.0f} | "
                     f"{row['guard_cached_us']:.0f} | {row['pyjwt_us']:.0f} | "
                     f"{row['token_bytes']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true",
                        help="rewrite the algorithms table of docs/benchmarks.md")
    args = parser.parse_args(argv)
    rows = {alg: measure(alg) for alg in ALGORITHMS}
    text = markdown(rows)
    print(text)
    if args.markdown:
        page = DOCS.read_text(encoding="utf-8")
        block = f"{BEGIN}\n{text}\n{END}"
        pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
        page = pattern.sub(lambda _: block, page) if pattern.search(page) else (
            page.rstrip() + "\n\n" + block + "\n")
        DOCS.write_text(page, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

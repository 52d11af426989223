"""One path from a request to a principal to a scope decision, for every framework and source.

A request's credentials are read into ``PresentedCredentials`` by the framework adapter; an
``Authenticator`` turns them into a ``Principal`` (a Bearer JWT through the RFC 9068 verifier and
the revocation source, an App key through the API-key source), and ``check_scopes`` is the one
any-of decision. The sources are parameters: a resource guard reads the issuer's JWKS, its
revocation feed and introspection over HTTP; the authorization server's admin API reads its own
keys and revocations from its database. ``AsyncAuthenticator`` is the same path for ASGI apps.

Failures (RFC 6750 §3.1): more than one credential is 400 ``invalid_request``; none is 401
without an error code; a bad one is 401 ``invalid_token``; a good one without an accepted
scope is 403 ``insufficient_scope``; a source that cannot answer is 503 (never 401 for a
credential that may be good).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from resource_demo.guard.addresses import address_allowed, client_address, forwarded_origin
from resource_demo.guard.api_key_format import check_api_key_format
from resource_demo.guard.key_fingerprints import KeyFingerprints
from resource_demo.guard.dpop import InvalidProof, KeyMismatch, ProofChecker, UseNonce
from resource_demo.guard.errors import (
    BadRequest,
    Forbidden,
    ServiceUnavailable,
    SourceUnavailable,
    Unauthorized,
    bearer_challenge,
    dpop_challenge,
)
from resource_demo.guard.keys import UnknownKey
from resource_demo.guard.scopes import ScopeError, has_required_scope, parse_scope
from resource_demo.guard.verifier import AccessTokenVerifier, InvalidToken

log = logging.getLogger(__name__)

JWT, API_KEY = "jwt", "api_key"
#: Where a credential must not be sent (URLs leak into logs); never used, and together with an
#: Authorization header the request is refused (threat model RS14, RS15, AK09).
CREDENTIAL_PARAMETERS = ("access_token", "api_key", "apiKey")


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: one shape for both credential kinds.

    ``account_id`` is the account the credential belongs to (the token's ``account_id`` claim,
    the key's introspection answer); None from a server that predates accounts.
    """

    subject: str
    kind: str  # "jwt" or "api_key"
    client_id: str  # the OAuth client id, or the API key id
    scopes: frozenset[str]
    claims: dict = field(default_factory=dict, compare=False, repr=False)
    account_id: str | None = None
    #: The RFC 7638 thumbprint of the key a DPoP request proved (RFC 9449), else None.
    dpop_jkt: str | None = None


@dataclass(frozen=True)
class PresentedCredentials:
    """What the guard reads of a request, whatever the framework.

    ``credential_elsewhere`` answers whether the query string or a form body carries a credential
    parameter; it is called only when an Authorization header is present too.
    """

    authorization: Sequence[str]
    credential_elsewhere: Callable[[], bool]
    peer: str | None = None
    forwarded_for: str | None = None
    #: For DPoP (RFC 9449 §4.3): the DPoP header fields, the method, and the URI as this
    #: server received it (scheme, Host, percent-encoded path) plus the proxy's
    #: X-Forwarded-Proto/-Host, which count only from a trusted proxy.
    dpop: Sequence[str] = ()
    method: str = "GET"
    scheme: str = "http"
    host: str = ""
    path: str = "/"
    forwarded_proto: str | None = None
    forwarded_host: str | None = None


class InvalidCredential(Exception):
    """The credential is unknown, malformed, expired, revoked or used from a wrong address."""


def scopes_of(value: object) -> frozenset[str]:
    """Scopes of a credential: a space-separated string, or nothing (SC07, SC08, SC09)."""
    if not isinstance(value, str):
        return frozenset()
    return _scope_set(value)


@lru_cache(maxsize=512)
def _scope_set(value: str) -> frozenset[str]:
    """``scopes_of`` a string, parsed once: a credential presents the same string on each of
    its requests, and a few distinct strings cover most callers (the result is immutable)."""
    try:
        return frozenset(parse_scope(value))
    except ScopeError:
        return frozenset(name for name in value.split(" ") if name)


def read_credential(presented: PresentedCredentials, realm: str,
                    dpop_algorithms: Iterable[str] = ()) -> tuple[str, str]:
    """The scheme (lower case) and credential of the one Authorization header; 400 or 401 else.

    A request without credentials is answered with a challenge per accepted scheme: Bearer,
    and DPoP with its algorithms where DPoP proofs are accepted (RFC 9449 §7.1)."""
    headers = list(presented.authorization)
    # HTTP servers fold repeated header lines into one, comma-joined (RFC 9110 §5.3);
    # a single token68 credential never contains a comma.
    folded = len(headers) > 1 or any("," in value for value in headers)
    # RFC 6750 §2 / §3.1: more than one way of sending credentials is invalid_request.
    if folded or (headers and presented.credential_elsewhere()):
        log.info("credential refused: more than one credential was sent")
        raise BadRequest(headers=[bearer_challenge(realm, error="invalid_request")])
    if not headers:
        # RFC 6750 §3.1: no error code when the request carried no credentials (RS11, RS15).
        challenges = [bearer_challenge(realm)]
        if dpop_algorithms:
            challenges.append(dpop_challenge(realm, dpop_algorithms))
        raise Unauthorized(headers=challenges)
    scheme, _, credential = headers[0].strip().partition(" ")
    return scheme.lower(), credential.strip()


def principal_from_claims(claims: dict[str, Any], dpop_jkt: str | None = None) -> Principal:
    """The principal of a verified access token."""
    return Principal(subject=claims["sub"], kind=JWT, client_id=claims["client_id"],
                     scopes=scopes_of(claims.get("scope", "")), claims=claims,
                     account_id=_account_of(claims), dpop_jkt=dpop_jkt)


def _account_of(answer: dict[str, Any]) -> str | None:
    account_id = answer.get("account_id")
    return account_id if isinstance(account_id, str) and account_id else None


def bound_key(claims: dict[str, Any]) -> str | None:
    """The thumbprint a token is bound to (``cnf.jkt``, RFC 9449 §6.1), or None for a bearer
    token; a ``cnf`` we cannot read binds the token to nothing we could check (refused)."""
    cnf = claims.get("cnf")
    if cnf is None:
        return None
    if not isinstance(cnf, dict) or not isinstance(cnf.get("jkt"), str) or not cnf["jkt"]:
        raise InvalidCredential("jwt: a confirmation (cnf) without a usable jkt")
    return cnf["jkt"]


def principal_from_api_key(answer: dict[str, Any], *, now: float, leeway: float,
                           caller: object) -> Principal:
    """The principal of an App key from its introspection answer, checked against our clock
    and the caller's address; ``InvalidCredential`` when it does not authenticate."""
    if not answer.get("active"):
        raise InvalidCredential("api key: inactive")
    exp, nbf = answer.get("exp"), answer.get("nbf")
    # The cached answer may be up to 5 s old: re-check the window against our clock, with
    # the same leeway as JWTs (RL4: a clock 30 s off must not refuse a key the server has
    # just called active).
    if not isinstance(exp, int) or exp + leeway <= now or (
            isinstance(nbf, int) and nbf - leeway > now):
        raise InvalidCredential("api key: outside its validity window")
    allowed = answer.get("allowed_ips") or []
    if not isinstance(allowed, list) or not address_allowed(allowed, caller):
        raise InvalidCredential("api key: address not allowed")
    key_id = str(answer.get("client_id", ""))
    return Principal(subject=str(answer.get("sub", key_id)), kind=API_KEY, client_id=key_id,
                     scopes=scopes_of(answer.get("scope", "")), claims=answer,
                     account_id=_account_of(answer))


def check_scopes(principal: Principal, accepted: Iterable[str], *, realm: str,
                 allow_api_keys: bool = True) -> None:
    """The one any-of check: 403 unless the principal holds one of ``accepted``.

    ``allow_api_keys=False``: an App key gets 403 even when it holds a scope (key management,
    sub-account and balance endpoints refuse API keys).
    """
    accepted = frozenset(accepted)
    refused_kind = principal.kind == API_KEY and not allow_api_keys
    if refused_kind or not has_required_scope(principal.scopes, accepted):
        # RFC 6750 §3.1: 403 with the scopes that would let the caller in.
        raise Forbidden(headers=[bearer_challenge(
            realm, error="insufficient_scope", scope=" ".join(sorted(accepted)))])


@dataclass
class _Sources:
    """What an authenticator consults; see ``Authenticator``."""

    realm: str
    verifier: Callable[[], AccessTokenVerifier]
    is_revoked: Callable[[str], Any]
    account_refuses: Callable[[dict], bool] | None = None
    api_key_answer: Callable[[str], Any] | None = None
    introspect_jwt: Callable[[str], Any] | None = None
    trusted_proxies: tuple[str, ...] = ()
    #: The API's configured public URL (GUARD_PUBLIC_URL): DPoP's htu is built from it alone.
    public_url: str | None = None
    clock: Callable[[], float] | None = None
    leeway: float = 30.0
    prepare_key: Callable[[str], Awaitable[None]] | None = None
    retry_after: int = 5
    #: The followed set of usable API keys (AV01): forged or unknown keys refused locally.
    key_filter: KeyFingerprints | None = None

    def filter_key(self, key: str, caller: object, *, refresh: bool = True) -> str:
        """The key filter's verdict (``listed``/``budget``); refused keys raise."""
        if self.key_filter is None:
            return "listed"
        listing = self.key_filter.check(key, caller or "", refresh=refresh)
        if listing == "refused":
            raise InvalidCredential("api key: not a usable key")
        return listing

    def confirm_key(self, key: str, caller: object, listing: str) -> None:
        """An unknown key the server called active gives its budget back (AV01)."""
        if listing == "budget" and self.key_filter is not None:
            self.key_filter.confirmed(key, caller or "")
    #: The DPoP proof checker (None: the DPoP scheme is not accepted here).
    dpop: ProofChecker | None = None

    def invalid(self, exc: Exception, scheme: str = "bearer") -> Unauthorized:
        log.info("credential refused: %s", exc)
        if scheme == "dpop" and self.dpop is not None:
            return self.dpop_refusal("invalid_token", exc)
        return Unauthorized(headers=[bearer_challenge(self.realm, error="invalid_token")])

    def dpop_refusal(self, error: str, exc: Exception) -> Unauthorized:
        """RFC 9449 §7.1: 401 with a DPoP challenge naming the accepted algorithms (§9: and a
        fresh nonce when the proof lacked a current one)."""
        log.info("DPoP request refused (%s): %s", error, exc)
        params = {"error": error}
        if isinstance(exc, InvalidProof):
            params["error_description"] = exc.reason
        headers = [dpop_challenge(self.realm, self.dpop.algorithms, **params)]
        if isinstance(exc, UseNonce):
            headers.append(("DPoP-Nonce", self.dpop.nonces.current()))
        return Unauthorized(headers=headers)

    def request_uri(self, presented: PresentedCredentials) -> str:
        """The URI the client addressed (§4.3 item 9): the configured public URL plus the
        path; without one, the request's origin, where a trusted proxy's X-Forwarded-Proto
        and X-Forwarded-Host count."""
        if self.public_url is not None:
            return f"{self.public_url}{presented.path}"
        scheme, host = forwarded_origin(presented.scheme, presented.host, presented.peer,
                                        presented.forwarded_proto, presented.forwarded_host,
                                        self.trusted_proxies)
        return f"{scheme}://{host}{presented.path}"

    def verify_proof(self, token: str, claims: dict, presented: PresentedCredentials):
        """The request's DPoP proof, checked against the token (``ath``) and its ``cnf.jkt``;
        not yet recorded (the caller records it, with a blocking or an async store)."""
        jkt = bound_key(claims)
        if jkt is None:
            raise InvalidCredential("jwt: a bearer token sent with the DPoP scheme")
        return self.dpop.verify(presented.dpop, method=presented.method,
                                uri=self.request_uri(presented), access_token=token, jkt=jkt)

    def unavailable(self, exc: Exception) -> ServiceUnavailable:
        log.warning("cannot verify credentials now: %s", exc)
        return ServiceUnavailable(retry_after=self.retry_after)

    def caller(self, presented: PresentedCredentials):
        return client_address(presented.peer, presented.forwarded_for, self.trusted_proxies)

    def now(self) -> float:
        return (self.clock or time.time)()


class Authenticator(_Sources):
    """Request credentials -> ``Principal`` with blocking sources (WSGI apps, the server).

    ``verifier()`` gives the RFC 9068 verifier (its key source may fetch); ``is_revoked(jti)``
    the revocation source; ``account_refuses(claims)`` True when the token's account refuses it
    (disabled, or disabled after the token was issued; optional, in memory, never blocks);
    ``api_key_answer(key)`` an introspection answer for an App key (None:
    App keys are refused with 403, as the admin API does); ``introspect_jwt(token)`` True while
    the issuer still calls a JWT active (optional, stricter servers). A source raising
    ``SourceUnavailable`` gives 503.
    """

    def authenticate(self, presented: PresentedCredentials) -> Principal:
        """The principal of the request's one credential, or raise 400/401/403/503."""
        scheme, credential = read_credential(
            presented, self.realm, self.dpop.algorithms if self.dpop is not None else ())
        if scheme == "app" and self.api_key_answer is None:
            log.info("credential refused: API keys are not accepted here")
            raise Forbidden()
        try:
            if scheme == "bearer" and credential:
                return self._from_jwt(credential)
            if scheme == "dpop" and credential and self.dpop is not None:
                return self._from_dpop(credential, presented)
            if scheme == "app" and credential:
                return self._from_api_key(credential, presented)
            raise InvalidCredential("unsupported authorization scheme")
        except InvalidCredential as exc:
            raise self.invalid(exc, scheme) from None
        except InvalidProof as exc:
            raise self.dpop_refusal("invalid_dpop_proof", exc) from None
        except UseNonce as exc:
            raise self.dpop_refusal("use_dpop_nonce", exc) from None
        except KeyMismatch as exc:  # RFC 9449 §7.1 Figure 16: the binding fails
            raise self.dpop_refusal("invalid_token", exc) from None
        except SourceUnavailable as exc:
            raise self.unavailable(exc) from None

    def _claims(self, token: str) -> dict:
        try:
            claims = self.verifier().verify(token)
        except (InvalidToken, UnknownKey) as exc:
            raise InvalidCredential(f"jwt: {exc}") from None
        if self.is_revoked(claims["jti"]):
            raise InvalidCredential("jwt: revoked")
        if self.account_refuses is not None and self.account_refuses(claims):
            raise InvalidCredential("jwt: its account is disabled")
        if self.introspect_jwt is not None and not self.introspect_jwt(token):
            raise InvalidCredential("jwt: inactive at the authorization server")
        return claims

    def _from_jwt(self, token: str) -> Principal:
        claims = self._claims(token)
        # RFC 9449 §7.2: a DPoP-bound token sent as a bearer token is refused (threat model DP03).
        if bound_key(claims) is not None:
            raise InvalidCredential("jwt: a DPoP-bound token sent as Bearer")
        return principal_from_claims(claims)

    def _from_dpop(self, token: str, presented: PresentedCredentials) -> Principal:
        """RFC 9449 §7.1: a bound token and a proof of its key for this very request."""
        claims = self._claims(token)
        proof = self.verify_proof(token, claims, presented)
        self.dpop.record(proof)  # §11.1: once, across the workers sharing the store
        return principal_from_claims(claims, proof.jkt)

    def _from_api_key(self, key: str, presented: PresentedCredentials) -> Principal:
        # A mistyped or forged key fails its checksum: refused without asking the server.
        if not check_api_key_format(key):
            raise InvalidCredential("api key: malformed")
        caller = self.caller(presented)
        listing = self.filter_key(key, caller)
        principal = principal_from_api_key(self.api_key_answer(key), now=self.now(),
                                           leeway=self.leeway, caller=caller)
        self.confirm_key(key, caller, listing)
        return principal


class AsyncAuthenticator(_Sources):
    """``Authenticator`` for ASGI apps: the same checks, sources awaited (never blocking).

    ``prepare_key(kid)`` is awaited before the (CPU-only) verification so the key source can
    fetch; ``is_revoked``, ``api_key_answer`` and ``introspect_jwt`` are coroutines
    (``account_refuses`` is not: it reads memory).
    """

    async def authenticate(self, presented: PresentedCredentials) -> Principal:
        """The principal of the request's one credential, or raise 400/401/403/503."""
        scheme, credential = read_credential(
            presented, self.realm, self.dpop.algorithms if self.dpop is not None else ())
        if scheme == "app" and self.api_key_answer is None:
            log.info("credential refused: API keys are not accepted here")
            raise Forbidden()
        try:
            if scheme == "bearer" and credential:
                return await self._from_jwt(credential)
            if scheme == "dpop" and credential and self.dpop is not None:
                return await self._from_dpop(credential, presented)
            if scheme == "app" and credential:
                return await self._from_api_key(credential, presented)
            raise InvalidCredential("unsupported authorization scheme")
        except InvalidCredential as exc:
            raise self.invalid(exc, scheme) from None
        except InvalidProof as exc:
            raise self.dpop_refusal("invalid_dpop_proof", exc) from None
        except UseNonce as exc:
            raise self.dpop_refusal("use_dpop_nonce", exc) from None
        except KeyMismatch as exc:
            raise self.dpop_refusal("invalid_token", exc) from None
        except SourceUnavailable as exc:
            raise self.unavailable(exc) from None

    async def _claims(self, token: str) -> dict:
        try:
            verifier = self.verifier()
            if self.prepare_key is not None:
                await self.prepare_key(verifier.kid_of(token))
            claims = verifier.verify(token)
        except (InvalidToken, UnknownKey) as exc:
            raise InvalidCredential(f"jwt: {exc}") from None
        if await self.is_revoked(claims["jti"]):
            raise InvalidCredential("jwt: revoked")
        if self.account_refuses is not None and self.account_refuses(claims):
            raise InvalidCredential("jwt: its account is disabled")
        if self.introspect_jwt is not None and not await self.introspect_jwt(token):
            raise InvalidCredential("jwt: inactive at the authorization server")
        return claims

    async def _from_jwt(self, token: str) -> Principal:
        claims = await self._claims(token)
        # RFC 9449 §7.2: a DPoP-bound token sent as a bearer token is refused (threat model DP03).
        if bound_key(claims) is not None:
            raise InvalidCredential("jwt: a DPoP-bound token sent as Bearer")
        return principal_from_claims(claims)

    async def _from_dpop(self, token: str, presented: PresentedCredentials) -> Principal:
        claims = await self._claims(token)
        proof = self.verify_proof(token, claims, presented)
        await self.dpop.arecord(proof)
        return principal_from_claims(claims, proof.jkt)

    async def _from_api_key(self, key: str, presented: PresentedCredentials) -> Principal:
        if not check_api_key_format(key):
            raise InvalidCredential("api key: malformed")
        caller = self.caller(presented)
        # No refresh on the event loop: the set's own thread keeps it fresh.
        listing = self.filter_key(key, caller, refresh=False)
        principal = principal_from_api_key(await self.api_key_answer(key), now=self.now(),
                                           leeway=self.leeway, caller=caller)
        self.confirm_key(key, caller, listing)
        return principal

"""What the guard asks of the authorization server: metadata, introspection, revocation feed.

Every call has a short timeout; any failure to get an answer raises ``ServerUnavailable``,
which the guard turns into 503 (never 401 for a credential that may be good).
"""

from __future__ import annotations

import logging
import os
import threading
import time

import requests
from requests.auth import HTTPBasicAuth

from .jwks import JWKSUnavailable, MetadataError, discover_metadata

log = logging.getLogger(__name__)
MAX_RESPONSE_BYTES = 1 << 20


class ServerUnavailable(Exception):
    """The authorization server could not be asked (down, slow, misconfigured)."""


class AuthorizationServerClient:
    """Talks to one issuer with this resource server's own client credentials."""

    def __init__(self, issuer: str, client_id: str | None, client_secret: str | None,
                 *, timeout: float = 3.0, session: requests.Session | None = None):
        self.issuer = issuer
        self.timeout = timeout
        self.session = session or requests.Session()
        self.auth = HTTPBasicAuth(client_id, client_secret) if client_id else None
        self._metadata: dict | None = None
        self._lock = threading.Lock()

    def metadata(self) -> dict:
        """RFC 8414 metadata, fetched once (the issuer is checked for exact equality)."""
        if self._metadata is None:
            with self._lock:
                if self._metadata is None:
                    try:
                        self._metadata = discover_metadata(self.issuer, self.session, self.timeout)
                    except (JWKSUnavailable, MetadataError) as exc:
                        raise ServerUnavailable(str(exc)) from exc
        return self._metadata

    def _post(self, endpoint_name: str, form: dict) -> dict:
        if self.auth is None:
            raise ServerUnavailable("the guard has no client credentials for the server")
        url = self.metadata().get(endpoint_name)
        if not isinstance(url, str):
            raise ServerUnavailable(f"the server metadata has no {endpoint_name}")
        try:
            response = self.session.post(url, data=form, auth=self.auth, timeout=self.timeout,
                                         allow_redirects=False)
        except requests.RequestException as exc:
            raise ServerUnavailable(f"{endpoint_name}: {type(exc).__name__}") from exc
        if response.status_code != 200 or len(response.content) > MAX_RESPONSE_BYTES:
            # 401/403 here means our own credentials are wrong: not the caller's fault.
            log.warning("%s answered HTTP %s", endpoint_name, response.status_code)
            raise ServerUnavailable(f"{endpoint_name}: HTTP {response.status_code}")
        try:
            body = response.json()
        except (ValueError, RecursionError) as exc:
            raise ServerUnavailable(f"{endpoint_name}: not JSON") from exc
        if not isinstance(body, dict):
            raise ServerUnavailable(f"{endpoint_name}: not a JSON object")
        return body

    def introspect(self, token: str) -> dict:
        """RFC 7662 introspection of ``token``; the answer's ``active`` is a real boolean."""
        body = self._post("introspection_endpoint", {"token": token})
        if body.get("active") is not True:
            return {"active": False}
        return body

    def revocations(self, after: int) -> dict:
        """One page of the revocation feed after ``after``."""
        return self._post("revocation_feed_endpoint", {"after": str(after)})


class RevocationList:
    """Revoked ``jti``s, kept current by following the server's feed in a background thread.

    Each process polls every ``interval`` seconds (DESIGN.md: revoked JWTs refused within 5 s).
    When the server is unreachable the list keeps what it had.
    """

    def __init__(self, server: AuthorizationServerClient, interval: float = 2.0,
                 clock=time.time):
        self.server = server
        self.interval = interval
        self.clock = clock
        self._revoked: dict[str, int] = {}
        self._cursor = 0
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.last_success: float | None = None

    def __contains__(self, jti: object) -> bool:
        return jti in self._revoked

    def poll(self) -> None:
        """Fetch every page after the cursor; drop entries that have expired."""
        while True:
            page = self.server.revocations(self._cursor)
            entries = page.get("revocations")
            cursor = page.get("cursor")
            if not isinstance(entries, list) or not isinstance(cursor, int):
                raise ServerUnavailable("revocation feed: unexpected answer")
            revoked = dict(self._revoked)
            for entry in entries:
                if isinstance(entry, dict) and isinstance(entry.get("jti"), str) \
                        and isinstance(entry.get("exp"), int):
                    revoked[entry["jti"]] = entry["exp"]
            now = self.clock()
            self._revoked = {jti: exp for jti, exp in revoked.items() if exp > now - 60}
            self._cursor = max(self._cursor, cursor)
            self.last_success = time.monotonic()
            if not page.get("has_more"):
                return

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except ServerUnavailable as exc:
                log.warning("revocation feed unavailable: %s", exc)
            self._stop.wait(self.interval)

    def ensure_started(self) -> None:
        """Start the follower in this process (again after a fork, e.g. in gunicorn workers)."""
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            threading.Thread(target=self._run, name="revocation-feed", daemon=True).start()

    def stop(self) -> None:
        """Stop the follower thread."""
        self._stop.set()

"""The set of usable API keys' fingerprints, followed from the authorization server
(threat model AV01).

A fingerprint is the first 8 bytes of a key's SHA-256. A key whose fingerprint is not in the
set is refused here, without asking the server: forged keys, however many and from however
many addresses, cost the server next to nothing and cannot use up the guard's introspection
budget. A key that passes is still introspected (the set is a filter, not a verdict).

The set is refreshed every ``interval`` seconds in the background. A key that misses may be
one created since: the set is then refreshed on the request path (at most once per
``miss_cooldown``), and between refreshes a miss may still be asked about within a small
budget (``fallback_rate`` a second for the whole process, five a second and twenty at once
per caller address) that only inactive answers spend: an unknown key the server calls active
gives its unit back, so a caller's real new keys never use up its budget (a per-caller
negative budget). A new key therefore works at once, and within about half a second even
while a flood has spent the budget. Until a first answer arrives (or when the
server does not offer the set) nothing is filtered.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import logging
import os
import threading
import time
from array import array
from collections import OrderedDict

log = logging.getLogger(__name__)
FINGERPRINT_BYTES = 8
MAX_CALLERS = 10_000
CALLER_BURST, CALLER_RATE = 20.0, 5.0


def fingerprint(key: str) -> int:
    """The fingerprint of a key, as an unsigned 64-bit integer."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:FINGERPRINT_BYTES], "big")


class KeyFingerprints:
    """Sorted 64-bit fingerprints (8 bytes each: a million keys take 8 MB)."""

    def __init__(self, fetch, interval: float = 2.0, miss_cooldown: float = 0.5,
                 fallback_rate: float = 50.0):
        """``fetch(version)`` returns the server's answer (see authserver's
        ``key_fingerprints``) or raises when the server cannot be asked."""
        self.fetch = fetch
        self.interval = interval
        self.miss_cooldown = miss_cooldown
        self.fallback_rate = fallback_rate
        self._tokens = fallback_rate
        self._tokens_at = time.monotonic()
        self._callers: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._budget_lock = threading.Lock()
        self._values: array | None = None
        self._version = ""
        self._last_fetch = float("-inf")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pid: int | None = None
        self._thread: threading.Thread | None = None

    @property
    def ready(self) -> bool:
        """True once a set has been received."""
        return self._values is not None

    def check(self, key: str, caller: str | None = None, *, refresh: bool = True) -> str:
        """``"listed"`` (in the set, or nothing to filter with yet), ``"budget"`` (unknown,
        may be asked about: call ``confirmed`` if the server calls it active) or
        ``"refused"`` (certainly not usable, or unknown with the budget spent)."""
        if self._values is None:
            return "listed"
        value = fingerprint(key)
        if self._contains(value):
            return "listed"
        # A key created since the last refresh: refresh once (rate-limited) and look again.
        try:
            if refresh and self.refresh(min_age=self.miss_cooldown, wait=False):
                return "listed" if self._contains(value) else "refused"
        except Exception as exc:  # noqa: BLE001 - the last set stands; say why
            log.warning("API-key fingerprints unavailable: %s", exc)
        return "budget" if self._spend(caller or "", -1.0) else "refused"

    def may_exist(self, key: str, caller: str | None = None) -> bool:
        """False when ``key`` is certainly not a usable key, or is unknown and the budget
        for asking about unknown keys is spent."""
        return self.check(key, caller) != "refused"

    def confirmed(self, key: str, caller: str | None = None) -> None:
        """An unknown key turned out active: give its caller's budget back (only inactive
        answers spend it) and list it until the next refresh brings it."""
        self._spend(caller or "", +1.0)
        value, current = fingerprint(key), self._values
        if current is not None and not self._contains(value):
            # Copy and swap (no lock: a refresh that wins the race lists it anyway soon).
            values = array("Q", current)
            values.insert(bisect.bisect_left(values, value), value)
            self._values = values

    def _spend(self, caller: str, amount: float) -> bool:
        """Take (``amount`` -1) or give back (+1) one unit of the process's bucket
        (``fallback_rate`` a second) and of the caller address's (five a second, twenty at
        once); a take fails when either is empty."""
        now = time.monotonic()
        with self._budget_lock:
            tokens, at = self._callers.get(caller, (CALLER_BURST, now))
            tokens = min(CALLER_BURST, tokens + (now - at) * CALLER_RATE)
            self._tokens = min(self.fallback_rate,
                               self._tokens + (now - self._tokens_at) * self.fallback_rate)
            self._tokens_at = now
            allowed = amount > 0 or (tokens >= 1.0 and self._tokens >= 1.0)
            if allowed:
                tokens = min(CALLER_BURST, tokens + amount)
                self._tokens = min(self.fallback_rate, self._tokens + amount)
            self._callers[caller] = (tokens, now)
            self._callers.move_to_end(caller)
            while len(self._callers) > MAX_CALLERS:
                self._callers.popitem(last=False)
            return allowed

    def _contains(self, value: int) -> bool:
        values = self._values
        if values is None:
            return True
        index = bisect.bisect_left(values, value)
        return index < len(values) and values[index] == value

    def refresh(self, min_age: float = 0.0, wait: bool = True) -> bool:
        """Fetch the set if the last fetch is older than ``min_age``; True if fetched.

        With ``wait=False`` a refresh already under way elsewhere is not waited for.
        """
        if not self._lock.acquire(blocking=wait):
            return False
        try:
            if time.monotonic() - self._last_fetch < min_age:
                return False
            self._last_fetch = time.monotonic()
            answer = self.fetch(self._version)
            self._apply(answer)
            return True
        finally:
            self._lock.release()

    def _apply(self, answer: dict) -> None:
        version = answer.get("version")
        if not isinstance(version, str):
            raise ValueError("key fingerprints: no version")
        if answer.get("unchanged") is True and self._values is not None:
            return
        raw = base64.urlsafe_b64decode(answer.get("fingerprints", ""))
        if len(raw) % FINGERPRINT_BYTES:
            raise ValueError("key fingerprints: not a multiple of 8 bytes")
        values = array("Q", sorted(int.from_bytes(raw[i:i + FINGERPRINT_BYTES], "big")
                                   for i in range(0, len(raw), FINGERPRINT_BYTES)))
        self._values, self._version = values, version

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh(min_age=self.interval / 2)
            except Exception as exc:  # noqa: BLE001 - keep the last set; say why
                log.warning("API-key fingerprints unavailable: %s", exc)
            self._stop.wait(self.interval)

    def ensure_started(self) -> None:
        """Follow the set in this process (again after a fork, e.g. in gunicorn workers)."""
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="key-fingerprints",
                                            daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop following; wait (at most ``timeout`` s) for a fetch under way to end."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

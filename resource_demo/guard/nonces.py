"""Server-provided DPoP nonces (RFC 9449 §8, §9) that need no shared storage.

A nonce names a time slot and carries an HMAC of it under a secret every worker and host of
one server shares, so any of them can check a nonce another one issued. A nonce is accepted
while its slot is at most ``lifetime`` old (one slot ahead is allowed for hosts whose clocks
differ a little); clients get the current one in ``DPoP-Nonce`` and must use it (§8.2).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable

SLOT_BYTES = 8
MAC_BYTES = 16


class Nonces:
    """Issues and checks stateless nonces; ``lifetime`` seconds (at least 2) bound their age."""

    def __init__(self, secret: bytes, lifetime: int = 300,
                 clock: Callable[[], float] = time.time) -> None:
        if not isinstance(secret, bytes) or len(secret) < 16:
            raise ValueError("the nonce secret must be at least 16 bytes")
        if lifetime < 2:
            raise ValueError("lifetime must be at least 2 seconds")
        self._key = hmac.new(secret, b"RFC 9449 DPoP-Nonce", hashlib.sha256).digest()
        self.step = lifetime // 2
        self._clock = clock

    def _slot(self) -> int:
        return int(self._clock() // self.step)

    def _mac(self, slot_bytes: bytes) -> bytes:
        return hmac.new(self._key, slot_bytes, hashlib.sha256).digest()[:MAC_BYTES]

    def current(self) -> str:
        """The nonce for the current slot (the same for every request in it, §8: clients keep one)."""
        slot_bytes = self._slot().to_bytes(SLOT_BYTES, "big")
        return base64.urlsafe_b64encode(slot_bytes + self._mac(slot_bytes)).rstrip(b"=").decode()

    def check(self, nonce: object) -> bool:
        """True for a nonce of this secret whose slot is current, the previous one, or the next."""
        if not isinstance(nonce, str) or len(nonce) != 32 or not nonce.isascii():
            return False
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except ValueError:
            return False
        slot_bytes, mac = raw[:SLOT_BYTES], raw[SLOT_BYTES:]
        if len(raw) != SLOT_BYTES + MAC_BYTES or not hmac.compare_digest(mac, self._mac(slot_bytes)):
            return False
        return -1 <= int.from_bytes(slot_bytes, "big") - self._slot() <= 1

"""The API-key format shared by the server (which issues keys) and the guard (which checks them).

``asak_`` + 32 base62 characters (190 random bits) + a 6-character base62 CRC-32 of the random
part. A mistyped or truncated key fails the checksum and is refused without any lookup;
secret scanners find leaked keys by the prefix and the regex ``asak_[0-9A-Za-z]{38}``.
"""

from __future__ import annotations

import re
import secrets
import zlib
from functools import lru_cache

PREFIX = "asak_"
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
RANDOM_LENGTH, CHECKSUM_LENGTH = 32, 6
KEY_RE = re.compile(rf"^{PREFIX}[0-9A-Za-z]{{{RANDOM_LENGTH + CHECKSUM_LENGTH}}}$")


def _base62(number: int, length: int) -> str:
    digits = []
    for _ in range(length):
        number, digit = divmod(number, 62)
        digits.append(ALPHABET[digit])
    return "".join(reversed(digits))


@lru_cache(maxsize=4096)
def _checksum(random_part: str) -> str:
    """The checksum of a random part (remembered: a key is checked on each of its requests,
    by the guard and by the server's introspection; the value is no secret)."""
    return _base62(zlib.crc32(random_part.encode()), CHECKSUM_LENGTH)


def assemble_api_key(random_part: str) -> str:
    """The key for a random part: prefix, the part, its checksum."""
    return PREFIX + random_part + _checksum(random_part)


def generate_api_key() -> str:
    """A new key secret: prefix, 190 random bits in base62, checksum."""
    return assemble_api_key("".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LENGTH)))


def check_api_key_format(key: object) -> bool:
    """True when ``key`` has our prefix, length, alphabet and a matching checksum."""
    if not isinstance(key, str) or KEY_RE.match(key) is None:
        return False
    random_part = key[len(PREFIX):len(PREFIX) + RANDOM_LENGTH]
    return secrets.compare_digest(_checksum(random_part), key[-CHECKSUM_LENGTH:])

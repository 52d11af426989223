"""Settings from the environment, and the check behind ``authserver config check``.

Every setting in ``authserver.config`` can be given as ``AUTHSERVER_<NAME>``, or read from a
file named by ``AUTHSERVER_<NAME>_FILE`` (for secrets mounted as files). Values are parsed by
the type of the setting's default: strings are taken as they are, booleans are
true/false/1/0/yes/no/on/off, numbers are numbers, lists are a JSON array or comma-separated,
mappings are a JSON object. A value that does not parse is an error naming the variable,
never a silently different setting.
"""

from __future__ import annotations

import hashlib
import json
import types
import typing
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

PREFIX = "AUTHSERVER_"
#: Variables that are not settings of ``app.config`` but are still ours.
ENVIRONMENT_ONLY = frozenset({"INSTANCE_PATH"})
#: Settings whose values are never printed (config check shows a fingerprint instead).
SECRET_SETTINGS = frozenset({"SECRET_KEY", "ENCRYPTION_KEY", "ENCRYPTION_KEYS",
                             "DPOP_NONCE_SECRET"})
#: Settings that are URLs which may carry a password (printed with the password masked).
URL_SETTINGS = frozenset({"SQLALCHEMY_DATABASE_URI", "RATELIMIT_STORAGE_URI",
                          "DPOP_REPLAY_STORE"})
#: Settings that only code can set (callables).
CODE_ONLY = frozenset({"CLOCK"})
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


class ConfigurationError(ValueError):
    """A setting is missing, malformed or inconsistent; the message names it."""


def setting_types(config: types.ModuleType) -> dict[str, type]:
    """Each setting of the defaults module ``config`` and the type its value must have."""
    hints = typing.get_type_hints(config)
    found = {}
    for name in dir(config):
        if not name.isupper() or name in CODE_ONLY:
            continue
        hint = hints.get(name)
        if hint is not None:
            found[name] = _base_type(hint)
        else:
            found[name] = type(getattr(config, name))
    return found


def _base_type(hint) -> type:
    """``str | None`` -> str, ``list[str]`` -> list, ``dict`` -> dict."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return typing.get_origin(hint) or hint


def parse_value(name: str, text: str, kind: type):
    """``text`` from the environment as a value of ``kind``; ConfigurationError if it is not."""
    variable = PREFIX + name
    stripped = text.strip()
    if kind is str:
        return text
    if kind is bool:
        if stripped.lower() in TRUE_WORDS:
            return True
        if stripped.lower() in FALSE_WORDS:
            return False
        raise ConfigurationError(f"{variable}: expected true or false, got {_shown(name, text)}")
    if kind in (int, float):
        try:
            return kind(stripped)
        except ValueError:
            raise ConfigurationError(f"{variable}: expected a number, got "
                                     f"{_shown(name, text)}") from None
    if kind is list:
        if stripped.startswith("["):
            value = _json(variable, name, stripped)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigurationError(f"{variable}: expected a JSON array of strings")
            return value
        return [part.strip() for part in stripped.split(",") if part.strip()]
    if kind is dict:
        value = _json(variable, name, stripped)
        if not isinstance(value, dict):
            raise ConfigurationError(f"{variable}: expected a JSON object")
        return value
    return text


def _json(variable: str, name: str, text: str):
    try:
        return json.loads(text)
    except ValueError:
        raise ConfigurationError(f"{variable}: not valid JSON ({_shown(name, text)})") from None


def _shown(name: str, text: str) -> str:
    """A value for an error message: never a secret's."""
    return "a value that is not shown" if name in SECRET_SETTINGS else repr(text[:80])


def read_environment(environ: Mapping[str, str],
                     kinds: Mapping[str, type]) -> tuple[dict, list[str]]:
    """Settings given in ``environ`` (``kinds``: each setting's type), and the names of
    AUTHSERVER_* variables that are none.

    Raises ConfigurationError for a value that does not parse, a file that cannot be read,
    or a setting given both directly and as ``_FILE``.
    """
    values: dict = {}
    unknown = []
    for variable in sorted(environ):
        if not variable.startswith(PREFIX):
            continue
        name = variable[len(PREFIX):]
        if name in ENVIRONMENT_ONLY:
            continue
        if name in kinds:
            if name in values:
                raise ConfigurationError(f"{variable} and {variable}_FILE are both set")
            values[name] = parse_value(name, environ[variable], kinds[name])
        elif name.endswith("_FILE") and name[:-5] in kinds:
            setting = name[:-5]
            if PREFIX + setting in environ:
                raise ConfigurationError(f"{PREFIX}{setting} and {variable} are both set")
            values[setting] = parse_value(setting, _read_file(variable, environ[variable]),
                                          kinds[setting])
        else:
            unknown.append(variable)
    return values, unknown


def _read_file(variable: str, path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            # A trailing line break is how editors and `echo` end a file, never part of a value.
            return handle.read().rstrip("\r\n")
    except OSError as exc:
        raise ConfigurationError(f"{variable}: cannot read {path}: {exc.strerror}") from None


# --- showing the effective configuration -------------------------------------------------

def fingerprint(secret: str) -> str:
    """A short, one-way label of a secret, so hosts' keyrings can be compared safely."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:12]


def masked(name: str, value):
    """``value`` fit to print: secrets as fingerprints, passwords in URLs replaced."""
    if name in SECRET_SETTINGS:
        if not value:
            return value
        if isinstance(value, (list, tuple)):
            return [f"<secret {fingerprint(str(item))}>" for item in value]
        return f"<secret {fingerprint(str(value))}>"
    if name in URL_SETTINGS and isinstance(value, str):
        return mask_url(value)
    return value


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=netloc[0].split(":", 1)[0] + ":***@" + netloc[1]))

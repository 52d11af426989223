"""The scope catalogue and the one home of scope semantics, shared by the server and the guard.

Names, categories and descriptions come from ``scopes.toml`` beside this module (the server
adds an optional operator file, see ``authserver.scopes``). Coverage is fixed by three reviewed umbrella rules, evaluated once per name:

- ``message:send`` covers every ``{ch}:message:send``;
- ``inbound-message:read`` covers every ``{ch}:inbound-message:read``;
- ``{p}:manage`` covers every other ``{p}:...`` scope.

Coverage flows downward only; matching is exact and case-sensitive; a scope string is
split on single spaces; there are no wildcards. ``accepted_by`` is the one function the
token endpoint, introspection and the resource guard use.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

SCOPE_NAME_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*(?::[a-z0-9]+(?:-[a-z0-9]+)*){1,3}$")
CATEGORIES = ("General", "Channels", "Connectivity", "Platform", "Customer Engagement",
              "Web SDK", "AI")
MAX_SCOPES = 200
MAX_EXTENDED = 10_000  # names taken from an issuer's metadata


class ScopeError(ValueError):
    """A scope string or name that is malformed or not in the catalogue."""


@dataclass(frozen=True)
class Scope:
    """One catalogue entry."""

    name: str
    category: str
    group: str
    description: str
    documented: bool = True

    def as_dict(self) -> dict:
        """The entry as a JSON-ready mapping."""
        return {"name": self.name, "category": self.category, "group": self.group,
                "description": self.description, "documented": self.documented}


def check_scope_name(name: object) -> bool:
    """Return True when ``name`` follows the scope name syntax of docs/scopes.md."""
    # fullmatch: "$" alone would also match before a trailing newline (TE16).
    return isinstance(name, str) and len(name) <= 128 and SCOPE_NAME_RE.fullmatch(name) is not None


def _umbrella_candidates(name: str) -> set[str]:
    """Names that would cover ``name`` by the three umbrella rules (one step)."""
    parts = name.split(":")
    found = set()
    if len(parts) == 3 and parts[1:] == ["message", "send"]:
        found.add("message:send")
    if len(parts) == 3 and parts[1:] == ["inbound-message", "read"]:
        found.add("inbound-message:read")
    manage = f"{parts[0]}:manage"
    if name != manage:
        found.add(manage)
    return found


class Catalogue:
    """An immutable set of scopes with the umbrella table computed once."""

    def __init__(self, entries: Iterable[Scope]):
        self.scopes: dict[str, Scope] = {}
        for entry in entries:
            if entry.name in self.scopes:
                raise ScopeError(f"scope {entry.name!r} is defined twice")
            self.scopes[entry.name] = entry
        self._accepted = {name: self._closure(name) for name in self.scopes}

    def _closure(self, name: str) -> frozenset[str]:
        accepted, todo = {name}, [name]
        while todo:
            for umbrella in _umbrella_candidates(todo.pop()):
                if umbrella in self.scopes and umbrella not in accepted:
                    accepted.add(umbrella)
                    todo.append(umbrella)
        return frozenset(accepted)

    def __contains__(self, name: object) -> bool:
        return name in self.scopes

    def accepted_by(self, scope: str) -> frozenset[str]:
        """Every scope that grants ``scope``: itself and each umbrella covering it."""
        accepted = self._accepted.get(scope)
        return accepted if accepted is not None else self._closure(scope)

    def covers(self, held: Iterable[str], scope: str) -> bool:
        """True when one of the ``held`` scopes grants ``scope``."""
        return not self.accepted_by(scope).isdisjoint(held)

    def umbrella_table(self) -> dict[str, list[str]]:
        """Umbrella -> the scopes it covers (for review and ``scopes list``)."""
        table: dict[str, list[str]] = {}
        for name, accepted in self._accepted.items():
            for umbrella in sorted(accepted - {name}):
                table.setdefault(umbrella, []).append(name)
        return table

    @cached_property
    def names(self) -> list[str]:
        """All names in catalogue order."""
        return list(self.scopes)

    def by_category(self) -> dict[str, list[Scope]]:
        """Entries grouped by UI category, in the UI's category order."""
        grouped: dict[str, list[Scope]] = {category: [] for category in CATEGORIES}
        for entry in self.scopes.values():
            grouped[entry.category].append(entry)
        return {category: entries for category, entries in grouped.items() if entries}

    def extended(self, names: object) -> Catalogue:
        """This catalogue plus the well-formed ``names`` it lacks (for a guard: the issuer's
        ``scopes_supported``, which lists the scopes an operator added), so umbrellas over
        them work by name as at the server."""
        if not isinstance(names, list):
            return self
        extra = [Scope(name=name, category="General", group="", description="", documented=False)
                 for name in dict.fromkeys(names[:MAX_EXTENDED])
                 if check_scope_name(name) and name not in self.scopes]
        return Catalogue([*self.scopes.values(), *extra]) if extra else self

    def validate_names(self, names: Iterable[str]) -> list[str]:
        """Return the unknown or malformed names among ``names`` (empty when all are fine)."""
        return [name for name in names if not check_scope_name(name) or name not in self]


def has_required_scope(held: Iterable[str], accepted: Iterable[str]) -> bool:
    """Any-of check: True when one held scope is in the endpoint's ``accepted`` list."""
    return not set(accepted).isdisjoint(held)


def parse_scope(value: str | None) -> list[str]:
    """Split an RFC 6749 §3.3 scope string on single spaces, keeping order, dropping repeats.

    Raises ScopeError on empty tokens (double, leading or trailing spaces), tabs, newlines
    or any name that does not follow the syntax; returns [] for None or "".
    """
    if value is None or value == "":
        return []
    if not isinstance(value, str) or len(value) > MAX_SCOPES * 130:
        raise ScopeError("scope is too long")
    names = value.split(" ")
    if len(names) > MAX_SCOPES:
        raise ScopeError("too many scopes")
    bad = [name for name in names if not check_scope_name(name)]
    if bad:
        raise ScopeError("malformed scope name")
    return list(dict.fromkeys(names))


def format_scope(names: Iterable[str]) -> str:
    """Join scope names into the space-separated string of tokens and responses."""
    return " ".join(names)


def load_file(path: Path | str, text: str | None = None) -> list[Scope]:
    """Read catalogue entries from a TOML file, validating names and categories."""
    try:
        data = tomllib.loads(text if text is not None else Path(path).read_text("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ScopeError(f"{path}: not a UTF-8 TOML file: {exc}") from exc
    raw_entries = data.get("scopes", [])
    if not isinstance(raw_entries, list) or not all(isinstance(raw, dict) for raw in raw_entries):
        raise ScopeError(f"{path}: 'scopes' must be an array of tables ([[scopes]])")
    entries = []
    for raw in raw_entries:
        name = raw.get("name")
        if not check_scope_name(name):
            raise ScopeError(f"{path}: malformed scope name {name!r}")
        if raw.get("category") not in CATEGORIES:
            raise ScopeError(f"{path}: scope {name!r} has unknown category {raw.get('category')!r}")
        entries.append(Scope(name=name, category=raw["category"], group=str(raw.get("group", "")),
                             description=str(raw.get("description", "")),
                             documented=bool(raw.get("documented", True))))
    return entries


def shipped_entries() -> list[Scope]:
    """The catalogue that ships in the package."""
    text = resources.files(__package__).joinpath("scopes.toml").read_text("utf-8")
    return load_file("resource_demo/guard/scopes.toml", text)


_default: Catalogue | None = None


def default_catalogue() -> Catalogue:
    """The shipped catalogue (no operator additions), built once per process."""
    global _default
    if _default is None:
        _default = Catalogue(shipped_entries())
    return _default



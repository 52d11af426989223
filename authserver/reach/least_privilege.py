"""The narrowest scope set that reaches chosen endpoints (least privilege).

Each chosen endpoint accepts any one of its route's scopes (the guard's any-of). A set of
scopes reaches them all when it holds one accepted scope of every endpoint: then a token
requested without ``scope``, or an API key, passes each guard as it is. Among those sets the
narrowest is the one that grants least, then has fewest scopes:

1. fewest scopes granted in all, counting what umbrellas cover (``message:send`` grants every
   channel's ``{ch}:message:send``, so two channel scopes beat it; ``sms:manage`` grants every
   ``sms:`` scope);
2. then the fewest scopes;
3. then the fewest scopes that open the admin API (``ADMIN_SCOPES``: they are worth more than
   their name says);
4. then the first in a fixed search order, so the same endpoints always give the same set.

Hence no scope of the answer can be dropped, nor replaced by one it covers. It is an exact
search (branch and bound over independent groups of related scopes), bounded by ``BUDGET``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from authserver.accounts import registry as accounts
from authserver.credentials.updates import PLATFORM_ONLY_SCOPES
from authserver.reach.endpoints import API_KEY
from authserver.reach.resource_servers import all_resource_servers
from authserver.scopes import ADMIN_SCOPES, Catalogue, current_catalogue
from authserver.web.errors import ValidationError

MAX_ENDPOINTS = 100
#: Search steps per request: far above what real manifests need (tests), a bound on the rest.
BUDGET = 50_000


class SearchTooLarge(ValueError):
    """The exact search would take more than ``BUDGET`` steps."""


def grants_of(catalogue: Catalogue) -> dict[str, frozenset[str]]:
    """Scope -> every scope it grants: itself and what it covers as an umbrella."""
    table = catalogue.umbrella_table()
    return {name: frozenset({name, *table.get(name, ())}) for name in catalogue.names}


def _components(sets: list[frozenset[str]], grants: dict[str, frozenset[str]]):
    """The sets in groups that share no scope and no granted scope: each group is solved
    alone and the answers add up (what one grants never overlaps what another grants)."""
    parent: dict[str, str] = {}

    def find(name: str) -> str:
        while parent.setdefault(name, name) != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    def join(first: str, second: str) -> None:
        parent[find(first)] = find(second)

    owner: dict[str, str] = {}
    for accepted in sets:
        first = min(accepted)
        for name in accepted:
            join(name, first)
            for granted in grants[name]:  # scopes whose grants overlap are related
                if granted in owner:
                    join(name, owner[granted])
                else:
                    owner[granted] = name
    groups: dict[str, list[frozenset[str]]] = {}
    for accepted in sets:
        groups.setdefault(find(min(accepted)), []).append(accepted)
    return [sorted(group, key=sorted) for _, group in sorted(groups.items())]


def _solve(sets: list[frozenset[str]], grants: dict[str, frozenset[str]]) -> list[str]:
    """The narrowest hitting set of ``sets`` by (granted count, scope count, admin scopes),
    exactly."""
    best: list = [None, None]  # (cost, chosen)
    core = {accepted: frozenset.intersection(*(grants[name] for name in accepted))
            for accepted in sets}
    steps = [0]

    def disjoint_count(unhit: list[frozenset[str]], granted: frozenset[str]) -> tuple[int, int]:
        """Lower bounds of what is still to add: (granted scopes, scopes)."""
        used: set[str] = set()
        fresh = count = 0
        for accepted in unhit:
            if used.isdisjoint(accepted):
                used |= accepted
                count += 1
                fresh += granted.isdisjoint(accepted)
        return fresh, count

    def search(chosen: tuple[str, ...], granted: frozenset[str],
               unhit: list[frozenset[str]]) -> None:
        steps[0] += 1
        if steps[0] > BUDGET:
            raise SearchTooLarge("too many endpoints to compute the narrowest scopes")
        if not unhit:
            cost = (len(granted), len(chosen), sum(name in ADMIN_SCOPES for name in chosen))
            if best[0] is None or cost < best[0]:
                best[0], best[1] = cost, chosen
            return
        fresh, count = disjoint_count(unhit, granted)
        # Whatever hits a set grants what all of its scopes grant (sms:message:send for
        # {sms:message:send, message:send, sms:manage}): a bound that sees umbrellas.
        certain = granted.union(*(core[accepted] for accepted in unhit))
        bound = (max(len(granted) + fresh, len(certain)), len(chosen) + count,
                 sum(name in ADMIN_SCOPES for name in chosen))
        if best[0] is not None and bound >= best[0]:
            return
        target = min(unhit, key=lambda accepted: (len(accepted), sorted(accepted)))
        options = sorted(target, key=lambda name: (len(grants[name] - granted),
                                                   -sum(name in a for a in unhit),
                                                   name in ADMIN_SCOPES, name))
        for name in options:
            search(chosen + (name,), granted | grants[name],
                   [accepted for accepted in unhit if name not in accepted])

    search((), frozenset(), sets)
    return sorted(best[1])


def narrowest_scopes(required: Iterable[Iterable[str]],
                     catalogue: Catalogue | None = None) -> list[str]:
    """The narrowest scope set holding one scope of each of ``required`` (the accepted
    scopes of each chosen endpoint), sorted. Every scope must be in the catalogue."""
    catalogue = catalogue or current_catalogue()
    grants = grants_of(catalogue)
    sets = {frozenset(accepted) for accepted in required}
    if any(not accepted for accepted in sets):
        raise ValueError("an endpoint that accepts no scope cannot be reached")
    # An endpoint accepting a superset of another's scopes is reached by whatever reaches it.
    minimal = [accepted for accepted in sets if not any(other < accepted for other in sets)]
    chosen: list[str] = []
    for group in _components(minimal, grants):
        chosen += _solve(group, grants)
    return sorted(chosen)


def _route_index() -> dict[tuple[str, str, str], dict]:
    return {(record.name, route["method"], route["path"]): route
            for record in all_resource_servers() for route in record.manifest["routes"]}


def narrowest_for_endpoints(endpoints: Sequence[dict], *, kind: str,
                            account_id: str | None = None) -> dict:
    """The narrowest scopes reaching ``endpoints`` (``{resourceServer, method, path}`` each)
    for an API key or a client of ``account_id``; ValidationError names each endpoint that
    is not registered, refuses API keys (for keys), or accepts only scopes the account may
    not hold (platform-only scopes outside the platform account)."""
    if not endpoints:
        raise ValidationError({"endpoints": ["choose at least one endpoint"]})
    if len(endpoints) > MAX_ENDPOINTS:
        raise ValidationError({"endpoints": [f"at most {MAX_ENDPOINTS} endpoints"]})
    index = _route_index()
    platform = account_id is None or account_id == accounts.platform_account_id()
    excluded = frozenset() if platform else PLATFORM_ONLY_SCOPES
    errors: dict[str, list[str]] = {}
    required = []
    for number, chosen in enumerate(endpoints):
        label = f"endpoints[{number}]"
        route = index.get((chosen["resourceServer"], chosen["method"], chosen["path"]))
        if route is None:
            errors[label] = ["no such endpoint is registered"]
        elif kind == API_KEY and not route["apiKeys"]:
            errors[label] = ["this endpoint refuses API keys"]
        elif not set(route["scopes"]) - excluded:
            errors[label] = ["only platform-account credentials can reach this endpoint"]
        else:
            required.append(frozenset(route["scopes"]) - excluded)
    if errors:
        raise ValidationError(errors)
    try:
        scopes = narrowest_scopes(required)
    except SearchTooLarge as exc:
        raise ValidationError({"endpoints": [str(exc)]}) from None
    return {"scopes": scopes}

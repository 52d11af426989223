"""The narrowest scope set for chosen endpoints (``authserver.reach.least_privilege``),
checked against the guard's own any-of check and an exhaustive search (Hypothesis)."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authserver.reach.least_privilege import (
    BUDGET,
    SearchTooLarge,
    grants_of,
    narrowest_scopes,
)
from authserver.scopes import ADMIN_SCOPES, default_catalogue
from resource_demo.guard.errors import Forbidden
from resource_demo.guard.principal import Principal, check_scopes

CATALOGUE = default_catalogue()
NAMES = CATALOGUE.names
GRANTS = grants_of(CATALOGUE)
#: A handful of families with umbrellas, so generated endpoints overlap as real ones do.
FAMILY = [name for name in NAMES if name.split(":")[0] in ("sms", "whatsapp", "email",
                                                         "message", "inbound-message",
                                                         "people", "forms", "web")]


def guard_passes(held: list[str], accepted: frozenset[str]) -> bool:
    """The guard's check for a token holding ``held`` at a route accepting ``accepted``."""
    principal = Principal(subject="c", kind="jwt", client_id="c", scopes=frozenset(held))
    try:
        check_scopes(principal, accepted, realm="api")
    except Forbidden:
        return False
    return True


def cost(chosen) -> tuple[int, int, int]:
    granted = frozenset().union(*(GRANTS[name] for name in chosen))
    return len(granted), len(chosen), sum(name in ADMIN_SCOPES for name in chosen)


def brute_force(sets: list[frozenset[str]]) -> tuple[int, int, int]:
    """The best cost over every subset of the candidate scopes."""
    candidates = sorted(frozenset().union(*sets))
    best = None
    for size in range(1, len(candidates) + 1):
        for chosen in itertools.combinations(candidates, size):
            if all(not accepted.isdisjoint(chosen) for accepted in sets):
                best = min(best or cost(chosen), cost(chosen))
    return best


# A route declared with require_scope(s) accepts s and its umbrellas; with
# require_any_scope(...) an explicit list.
declared = st.sampled_from(FAMILY).map(CATALOGUE.accepted_by)
explicit = st.frozensets(st.sampled_from(FAMILY), min_size=1, max_size=3)
endpoint_sets = st.lists(st.one_of(declared, explicit), min_size=1, max_size=6)


@given(sets=endpoint_sets)
@settings(max_examples=300, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_result_reaches_everything_and_nothing_can_go_or_narrow(sets):
    result = narrowest_scopes(sets, CATALOGUE)
    assert result == sorted(set(result))
    for accepted in sets:  # the guard's own check passes each chosen endpoint
        assert guard_passes(result, accepted)
    for name in result:
        rest = [other for other in result if other != name]
        assert not all(guard_passes(rest, accepted) for accepted in sets), ("droppable", name)
        for narrower in GRANTS[name] - {name}:  # every scope the umbrella covers
            assert not all(guard_passes(rest + [narrower], accepted) for accepted in sets), \
                ("replaceable", name, narrower)


@given(sets=endpoint_sets, seed=st.integers(0, 2**32))
@settings(max_examples=200, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_optimal_and_deterministic(sets, seed):
    result = narrowest_scopes(sets, CATALOGUE)
    if len(frozenset().union(*sets)) <= 14:
        assert cost(result) == brute_force(sets)
    shuffled = [frozenset(random.Random(seed).sample(sorted(s), len(s))) for s in sets]
    random.Random(seed).shuffle(shuffled)
    assert narrowest_scopes(shuffled + sets[:1], CATALOGUE) == result


@pytest.mark.parametrize("sets, expected", [
    ([{"sms:message:send", "message:send", "sms:manage"}], ["sms:message:send"]),
    # two channels: two specific scopes grant less than message:send
    ([CATALOGUE.accepted_by("sms:message:send"), CATALOGUE.accepted_by("whatsapp:message:send")],
     ["sms:message:send", "whatsapp:message:send"]),
    # an endpoint that only message:send opens forces it, and it then covers the channel
    ([{"message:send"}, CATALOGUE.accepted_by("sms:message:send")], ["message:send"]),
    # GET /sms/1/bulks lists sms:message:send and sms:manage only
    ([{"sms:message:send", "sms:manage"}, CATALOGUE.accepted_by("sms:logs:read")],
     ["sms:logs:read", "sms:message:send"]),
    ([{"sms:manage"}, CATALOGUE.accepted_by("sms:logs:read")], ["sms:manage"]),
    ([{"accounts:manage", "sms:logs:read"}], ["sms:logs:read"]),  # not the admin scope
])
def test_examples(sets, expected):
    assert narrowest_scopes([frozenset(s) for s in sets], CATALOGUE) == expected


def test_many_unrelated_endpoints_stay_fast():
    sets = [frozenset({name}) | CATALOGUE.accepted_by(name) for name in NAMES
            if CATALOGUE.accepted_by(name) != {name}][:100]
    result = narrowest_scopes(sets, CATALOGUE)
    assert all(guard_passes(result, accepted) for accepted in sets)


def test_search_budget_is_enforced(monkeypatch):
    import authserver.reach.least_privilege as module

    monkeypatch.setattr(module, "BUDGET", 3)
    sets = [frozenset({a, b}) for a, b in zip(FAMILY[::2], FAMILY[1::2])][:8]
    sets = [s | {"message:send"} if i % 2 else s for i, s in enumerate(sets)]
    with pytest.raises(SearchTooLarge):
        narrowest_scopes(sets + [frozenset(FAMILY[:2])], CATALOGUE)
    assert BUDGET > 3


def test_an_endpoint_without_scopes_is_refused():
    with pytest.raises(ValueError):
        narrowest_scopes([frozenset()], CATALOGUE)

"""API keys (issue 3, threat model AK01–AK07): format, storage, validation, validity, CLI,
and the address rules of ``resource_demo.guard.addresses``."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa
from credential_actions import (
    INACTIVE,
    dump_tables,
    introspect,
    iso,
    make_caller,
    row_count,
    sql_statements,
)

import authserver.admin.cli
from authserver.credentials import api_keys
from authserver.storage.db import db
from authserver.storage.models import ApiKey, AuditEvent
from authserver.web.errors import ValidationError
from resource_demo.guard.addresses import address_allowed, client_address, normalize_allowlist

KEY_RE = re.compile(r"asak_[0-9A-Za-z]{38}")
CREATE_FIELDS = {"id", "apiKeySecret", "name", "scopeGuids", "validFrom", "validTo",
                 "allowedIPs", "enabled"}


def cli(runner, *args):
    """Run ``authserver ARGS``; return the result."""
    return runner.invoke(authserver.admin.cli.main, list(args))


def cli_json(runner, *args):
    """Run ``authserver ARGS --json``, expecting success; return the parsed output."""
    result = cli(runner, *args, "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


def create_key(runner, *extra, name="demo", scope="sms:message:send"):
    """``api-keys create`` through the CLI; returns its JSON (with the secret)."""
    return cli_json(runner, "api-keys", "create", "--name", name, "--scope", scope, *extra)


@pytest.fixture
def rs(oauth_clients):
    """A resource server: a client holding ``tokens:introspect``."""
    return make_caller(oauth_clients, "tokens:introspect", name="resource server")


def key_state(client, rs, secret) -> dict:
    """The introspection answer for an API key, asked by the resource server."""
    answer = introspect(client, secret, rs.auth)
    assert answer.status_code == 200
    return answer.get_json()


# -- format, entropy, storage (AK01, AK02) ------------------------------------------------

@pytest.mark.security("AK01")
def test_created_key_has_the_documented_shape(runner):
    created = create_key(runner)
    assert CREATE_FIELDS <= set(created)
    assert KEY_RE.fullmatch(created["apiKeySecret"])
    assert re.fullmatch(r"[0-9A-F]{32}", created["id"])
    assert created["name"] == "demo" and created["scopeGuids"] == ["sms:message:send"]
    assert created["enabled"] is True and created["allowedIPs"] == []


@pytest.mark.security("AK01")
def test_generated_keys_are_unique_and_use_the_whole_alphabet():
    """>= 128 random bits: 32 base62 characters (190 bits), every position varies."""
    generated = [api_keys.generate_api_key() for _ in range(4000)]
    assert len(set(generated)) == len(generated)
    assert all(KEY_RE.fullmatch(key) and api_keys.check_api_key_format(key) for key in generated)
    random_parts = [key[5:5 + 32] for key in generated]
    assert len({part[:11] for part in random_parts}) == len(generated)  # 65 bits alone unique
    assert set("".join(random_parts)) == set(api_keys.ALPHABET)
    for position in range(32):
        assert len({part[position] for part in random_parts}) > 55, position


def test_keys_created_through_the_cli_are_unique(runner):
    secrets = {create_key(runner, name=f"k{n}")["apiKeySecret"] for n in range(12)}
    assert len(secrets) == 12


@pytest.mark.security("AK01")
def test_database_holds_only_a_hash_of_the_key(app, runner):
    created = create_key(runner, "--allowed-ip", "127.0.0.1")
    secret = created["apiKeySecret"]
    dump = dump_tables(app)
    assert created["id"] in dump
    assert secret not in dump and secret[5:] not in dump and secret[5:37] not in dump
    with app.app_context():
        stored = db.session.get(ApiKey, created["id"]).secret_hash
    assert stored == hashlib.sha256(secret.encode()).hexdigest()


@pytest.mark.security("AK01")
def test_secret_is_shown_only_at_creation(app, runner):
    created = create_key(runner)
    other_id = create_key(runner, name="other")["id"]
    secret, key_id = created["apiKeySecret"], created["id"]
    with app.app_context():
        stored_hash = db.session.get(ApiKey, key_id).secret_hash
    outputs = [
        cli(runner, "api-keys", "list", "--json"),
        cli(runner, "api-keys", "list"),
        cli(runner, "api-keys", "show", key_id, "--json"),
        cli(runner, "api-keys", "show", key_id),
        cli(runner, "api-keys", "update", key_id, "--name", "renamed", "--json"),
        cli(runner, "api-keys", "disable", key_id, "--json"),
    ]
    for result in outputs:
        assert result.exit_code == 0, result.output
        for needle in ("apiKeySecret", secret, secret[5:37], stored_hash, "secret_hash"):
            assert needle not in result.output
    listed = json.loads(outputs[0].stdout)
    assert {row["id"] for row in listed} == {key_id, other_id}
    assert all("apiKeySecret" not in row for row in listed)


# -- checksum: malformed keys cost no database lookup (AK02, AK03) ---------------------------

def _flip(key: str, position: int) -> str:
    old = key[position]
    new = "B" if old == "A" else "A"
    return key[:position] + new + key[position + 1:]


def _swap_case(key: str, position: int) -> str:
    char = key[position]
    new = char.swapcase() if char.isalpha() else str((int(char) + 1) % 10)
    return key[:position] + new + key[position + 1:]


MANGLES = [
    pytest.param(lambda key: _flip(key, 5), id="first-random-char"),
    pytest.param(lambda key: _flip(key, 20), id="middle-random-char"),
    pytest.param(lambda key: _flip(key, 36), id="last-random-char"),
    pytest.param(lambda key: _swap_case(key, 12), id="case-of-one-char"),
    pytest.param(lambda key: _flip(key, 38), id="checksum-char"),
    pytest.param(lambda key: _flip(key, len(key) - 1), id="last-checksum-char"),
    pytest.param(lambda key: key[:5] + key[6:] + key[5], id="rotated-random-part"),
    pytest.param(lambda key: key[:-1], id="truncated"),
    pytest.param(lambda key: key + "A", id="extended"),
    pytest.param(lambda key: "asak_", id="prefix-alone"),
    pytest.param(lambda key: "ASAK_" + key[5:], id="upper-case-prefix"),
    pytest.param(lambda key: key + "\n", id="trailing-newline"),
    pytest.param(lambda key: key[:20] + "-" + key[21:], id="foreign-character"),
]


@pytest.mark.security("AK03")
@pytest.mark.parametrize("mangle", MANGLES)
def test_mistyped_key_is_refused_without_a_database_lookup(app, client, runner, rs, mangle):
    secret = create_key(runner)["apiKeySecret"]
    assert key_state(client, rs, secret)["active"] is True
    mangled = mangle(secret)
    assert mangled != secret
    unknown = api_keys.generate_api_key()  # well formed, never stored

    with sql_statements(app) as malformed_sql:
        malformed = introspect(client, mangled, rs.auth)
    with sql_statements(app) as unknown_sql:
        unknown_answer = introspect(client, unknown, rs.auth)

    # Both refused identically (AK03) ...
    assert malformed.status_code == unknown_answer.status_code == 200
    assert malformed.get_json() == unknown_answer.get_json() == INACTIVE
    # ... but only the well-formed key cost a lookup.
    assert not [s for s in malformed_sql if "api_keys" in s], malformed_sql
    assert [s for s in unknown_sql if "api_keys" in s], unknown_sql
    # The caller's own lookup is served from the credential cache or not, depending on when
    # its listener proved its connection (PostgreSQL): leave it out of the comparison.
    def other(statements):
        return [s for s in statements if "FROM clients" not in s]
    assert len(other(malformed_sql)) < len(other(unknown_sql))


@pytest.mark.security("AK03", expected="the same 200 {\"active\": false} as an unknown key")
def test_key_sharing_all_but_its_last_character_with_a_real_key_learns_nothing(app, client,
                                                                               runner, rs):
    """A well-formed key one character away from a real one answers exactly like an unknown
    key, and only its SHA-256 reaches the database: the lookup compares digests, unrelated to
    the real key's, so its timing cannot tell how many characters were right."""
    secret = create_key(runner)["apiKeySecret"]
    random_part = secret[5:37]
    last = api_keys.ALPHABET[(api_keys.ALPHABET.index(random_part[-1]) + 1) % 62]
    near = api_keys.assemble_api_key(random_part[:-1] + last)
    assert near != secret and api_keys.check_api_key_format(near)
    unknown = api_keys.generate_api_key()

    bound: list[str] = []

    def listener(conn, cursor, statement, parameters, context, executemany):
        if "api_keys" in statement:
            bound.append(repr(parameters))

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", listener)
    try:
        near_answer = introspect(client, near, rs.auth)
    finally:
        sa.event.remove(engine, "before_cursor_execute", listener)
    unknown_answer = introspect(client, unknown, rs.auth)
    assert near_answer.status_code == unknown_answer.status_code == 200
    assert near_answer.get_data() == unknown_answer.get_data()
    assert near_answer.get_json() == INACTIVE
    assert key_state(client, rs, secret)["active"] is True
    # The database is asked for the digest only, never for the key or a part of it.
    assert bound and hashlib.sha256(near.encode()).hexdigest() in " ".join(bound)
    assert not [text for text in bound if random_part[:-1] in text]


# -- validation: errors name the field, nothing is written ------------------------------------

def _window(now):
    return now + timedelta(days=2), now + timedelta(days=1)


CREATE_REFUSED = [
    ("unknown-scope", lambda now: ["--scope", "nope:unknown"], "scopeGuids"),
    ("malformed-scope", lambda now: ["--scope", "Sms:Message:Send"], "scopeGuids"),
    ("empty-name", lambda now: ["--name", " "], "name"),
    ("prefix-too-long", lambda now: ["--allowed-ip", "10.0.0.0/33"], "allowedIPs"),
    ("ipv6-prefix-too-long", lambda now: ["--allowed-ip", "2001:db8::/129"], "allowedIPs"),
    ("prefix-leading-zero", lambda now: ["--allowed-ip", "10.0.0.0/08"], "allowedIPs"),
    ("netmask-notation", lambda now: ["--allowed-ip", "10.0.0.0/255.0.0.0"], "allowedIPs"),
    ("empty-prefix", lambda now: ["--allowed-ip", "10.0.0.0/"], "allowedIPs"),
    ("hostname", lambda now: ["--allowed-ip", "example.com"], "allowedIPs"),
    ("octet-leading-zero", lambda now: ["--allowed-ip", "010.0.0.1"], "allowedIPs"),
    ("zone-id", lambda now: ["--allowed-ip", "fe80::1%eth0"], "allowedIPs"),
    ("zone-id-cidr", lambda now: ["--allowed-ip", "fe80::%eth0/64"], "allowedIPs"),
    ("host-bits", lambda now: ["--allowed-ip", "10.0.0.1/8"], "allowedIPs"),
    ("ipv6-host-bits", lambda now: ["--allowed-ip", "2001:db8::1/32"], "allowedIPs"),
    ("one-good-one-bad", lambda now: ["--allowed-ip", "10.0.0.1", "--allowed-ip", "10.0.0.256"],
     "allowedIPs"),
    ("AD04-union-is-any-address",
     lambda now: ["--allowed-ip", "0.0.0.0/1", "--allowed-ip", "128.0.0.0/1"], "allowedIPs"),
    ("valid-to-before-valid-from",
     lambda now: ["--valid-from", iso(_window(now)[0]), "--valid-to", iso(_window(now)[1])],
     "validTo"),
    ("valid-to-equals-valid-from",
     lambda now: ["--valid-from", iso(now + timedelta(hours=1)),
                  "--valid-to", iso(now + timedelta(hours=1))], "validTo"),
    ("valid-to-in-the-past", lambda now: ["--valid-to", iso(now - timedelta(days=1))], "validTo"),
    ("valid-from-before-creation",
     lambda now: ["--valid-from", iso(now - timedelta(days=1))], "validFrom"),
    ("naive-valid-from", lambda now: ["--valid-from", "2031-01-01T00:00:00"], "validFrom"),
    ("naive-valid-to", lambda now: ["--valid-to", "2031-01-01T00:00:00"], "validTo"),
    ("not-a-timestamp", lambda now: ["--valid-to", "next tuesday"], "validTo"),
    ("valid-to-beyond-year-9999", lambda now: ["--valid-to", "9999-12-31T23:59:59-01:00"],
     "validTo"),
    ("valid-from-year-9999", lambda now: ["--valid-from", "9999-06-01T00:00:00Z"], "validFrom"),
]


@pytest.mark.parametrize("args, field", [pytest.param(a, f, id=i) for i, a, f in CREATE_REFUSED])
def test_create_refuses_bad_input_naming_the_field(app, runner, clock, args, field):
    base = {"--name": "demo", "--scope": "sms:message:send"}
    extra = args(clock.now)
    for option in ("--name", "--scope"):
        if option in extra:
            base.pop(option)
    argv = ["api-keys", "create", *[x for pair in base.items() for x in pair], *extra, "--json"]
    result = cli(runner, *argv)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert f"error: {field}:" in result.stderr, result.stderr
    assert result.stdout == ""
    assert row_count(app, "api_keys") == 0
    assert row_count(app, "audit_events") == 0


UPDATE_REFUSED = [
    ("unknown-scope", lambda now: ["--scope", "nope:unknown"], "scopeGuids"),
    ("bad-cidr", lambda now: ["--allowed-ip", "10.0.0.1/8"], "allowedIPs"),
    ("zone-id", lambda now: ["--allowed-ip", "fe80::1%eth0"], "allowedIPs"),
    ("valid-to-before-valid-from", lambda now: ["--valid-to", iso(now - timedelta(hours=1))],
     "validTo"),
    ("valid-from-after-valid-to", lambda now: ["--valid-from", iso(now + timedelta(days=400))],
     "validTo"),
    ("valid-from-before-creation", lambda now: ["--valid-from", iso(now - timedelta(days=1))],
     "validFrom"),
    ("naive-valid-to", lambda now: ["--valid-to", "2031-01-01T00:00:00"], "validTo"),
    ("overflowing-valid-from", lambda now: ["--valid-from", "0001-01-01T00:00:00+01:00"],
     "validFrom"),
]


@pytest.mark.parametrize("args, field", [pytest.param(a, f, id=i) for i, a, f in UPDATE_REFUSED])
def test_update_refuses_bad_input_and_changes_nothing(app, runner, clock, args, field):
    key_id = create_key(runner, "--allowed-ip", "192.0.2.0/24")["id"]
    before = cli_json(runner, "api-keys", "show", key_id)
    audit_rows = row_count(app, "audit_events")

    result = cli(runner, "api-keys", "update", key_id, "--name", "changed", *args(clock.now),
                 "--json")
    assert result.exit_code == 1, result.output
    assert f"error: {field}:" in result.stderr, result.stderr
    assert cli_json(runner, "api-keys", "show", key_id) == before
    assert row_count(app, "audit_events") == audit_rows


def test_naive_datetime_objects_are_refused_by_the_service(app):
    with app.app_context():
        with pytest.raises(ValidationError) as caught:
            api_keys.create_api_key(name="k", scopes=["sms:message:send"], actor="test",
                                    valid_to=api_keys.utcnow().replace(tzinfo=None)
                                    + timedelta(days=1))
    assert set(caught.value.errors) == {"validTo"}
    assert row_count(app, "api_keys") == 0


def test_offsets_are_accepted_and_normalised_to_utc(runner, clock):
    start = clock.now + timedelta(hours=2)
    created = create_key(runner, "--valid-from",
                         (start + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S+02:00"))
    assert created["validFrom"] == iso(start)
    assert created["validTo"] == iso(start + timedelta(days=365))


def test_allowed_ips_are_normalised(client, runner, rs):
    created = create_key(runner, "--allowed-ip", "::ffff:10.0.0.1",
                         "--allowed-ip", "::ffff:192.168.0.0/112", "--allowed-ip", "2001:DB8::/32",
                         "--allowed-ip", "198.51.100.7/32", "--allowed-ip", "10.0.0.1")
    expected = ["10.0.0.1", "192.168.0.0/16", "2001:db8::/32", "198.51.100.7"]
    assert created["allowedIPs"] == expected
    assert key_state(client, rs, created["apiKeySecret"])["allowed_ips"] == expected


# -- validity window (AK04), disabling (AK05), last use ---------------------------------------

def test_default_validity_is_one_year_from_now(client, runner, clock, rs):
    created = create_key(runner)
    assert created["validFrom"] == iso(clock.now)
    assert created["validTo"] == iso(clock.now + timedelta(days=365))
    assert key_state(client, rs, created["apiKeySecret"])["active"] is True


def test_validity_boundaries(client, runner, clock, rs):
    """Inactive before validFrom, active at validFrom, inactive exactly at validTo."""
    start = clock.now + timedelta(minutes=5)
    end = start + timedelta(hours=1)
    secret = create_key(runner, "--valid-from", iso(start), "--valid-to", iso(end))["apiKeySecret"]

    assert key_state(client, rs, secret) == INACTIVE
    clock.advance(299)
    assert key_state(client, rs, secret) == INACTIVE
    clock.advance(1)  # == validFrom
    answer = key_state(client, rs, secret)
    assert answer["active"] is True
    assert answer["nbf"] == int(start.timestamp()) and answer["exp"] == int(end.timestamp())
    clock.advance(3599)  # one second before validTo
    assert key_state(client, rs, secret)["active"] is True
    clock.advance(1)  # == validTo
    assert key_state(client, rs, secret) == INACTIVE
    clock.advance(86400)
    assert key_state(client, rs, secret) == INACTIVE


def test_disabling_is_irreversible(app, client, runner, clock, rs):
    created = create_key(runner)
    key_id, secret = created["id"], created["apiKeySecret"]

    disabled = cli_json(runner, "api-keys", "disable", key_id)
    assert disabled["enabled"] is False
    assert key_state(client, rs, secret) == INACTIVE
    with app.app_context():
        event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.object_id == key_id)
                                   .order_by(AuditEvent.id.desc())).first()
        assert (event.actor, event.action) == ("cli", "disable")
        with pytest.raises(ValidationError) as caught:
            api_keys.update_api_key(key_id, actor="test", changes={"enabled": True})
        assert set(caught.value.errors) == {"enabled"}
    assert cli_json(runner, "api-keys", "show", key_id)["enabled"] is False

    # Other changes neither fail nor bring the key back.
    later = iso(clock.now + timedelta(days=30))
    updated = cli_json(runner, "api-keys", "update", key_id, "--valid-to", later)
    assert updated["enabled"] is False and updated["validTo"] == later
    assert key_state(client, rs, secret) == INACTIVE
    assert cli(runner, "api-keys", "disable", key_id).exit_code == 0  # idempotent


def test_last_used_is_recorded_at_most_once_a_minute(app, client, runner, clock, rs,
                                                    oauth_clients):
    created = create_key(runner)
    key_id, secret = created["id"], created["apiKeySecret"]
    assert created["lastUsedAt"] is None

    plain = make_caller(oauth_clients, "sms:message:send")
    assert introspect(client, secret, plain.auth).get_json() == INACTIVE
    assert cli_json(runner, "api-keys", "show", key_id)["lastUsedAt"] is None

    first_use = clock.now
    assert key_state(client, rs, secret)["active"] is True
    assert cli_json(runner, "api-keys", "show", key_id)["lastUsedAt"] == iso(first_use)

    clock.advance(30)
    with sql_statements(app) as statements:
        assert key_state(client, rs, secret)["active"] is True
    assert not [s for s in statements if s.lstrip().upper().startswith("UPDATE")], statements
    clock.advance(29)
    assert key_state(client, rs, secret)["active"] is True
    assert cli_json(runner, "api-keys", "show", key_id)["lastUsedAt"] == iso(first_use)

    clock.advance(2)  # 61 s after the first use
    assert key_state(client, rs, secret)["active"] is True
    assert cli_json(runner, "api-keys", "show", key_id)["lastUsedAt"] == iso(clock.now)


# -- the CLI -------------------------------------------------------------------------------

def test_done_when_flow(client, runner, rs):
    """Issue 3 "Done when": create with an allowlist, introspect active, disable, inactive."""
    created = create_key(runner, "--allowed-ip", "127.0.0.1")
    assert created["allowedIPs"] == ["127.0.0.1"]
    answer = key_state(client, rs, created["apiKeySecret"])
    assert answer["active"] is True
    assert answer["scope"] == "sms:message:send"
    assert answer["allowed_ips"] == ["127.0.0.1"]
    assert answer["client_id"] == created["id"]

    result = cli(runner, "api-keys", "disable", created["id"])
    assert result.exit_code == 0, result.output
    assert key_state(client, rs, created["apiKeySecret"]) == INACTIVE


def test_list_show_update(runner, clock):
    first = create_key(runner, name="first")
    clock.advance(1)
    second = create_key(runner, "--allowed-ip", "192.0.2.1", name="second",
                        scope="sms:message:send email:message:send")

    listed = cli_json(runner, "api-keys", "list")
    assert [row["id"] for row in listed] == [first["id"], second["id"]]
    shown = cli_json(runner, "api-keys", "show", second["id"])
    expected = {k: v for k, v in second.items() if k != "apiKeySecret"}
    assert shown == expected == listed[1]
    assert shown["scopeGuids"] == ["sms:message:send", "email:message:send"]

    valid_to = iso(clock.now + timedelta(days=10))
    updated = cli_json(runner, "api-keys", "update", second["id"], "--name", "renamed",
                       "--scope", "message:send", "--valid-to", valid_to,
                       "--allowed-ip", "2001:db8::/48", "--allowed-ip", "192.0.2.0/24")
    assert updated["name"] == "renamed" and updated["scopeGuids"] == ["message:send"]
    assert updated["validTo"] == valid_to
    assert updated["allowedIPs"] == ["2001:db8::/48", "192.0.2.0/24"]
    assert cli_json(runner, "api-keys", "show", second["id"]) == updated

    cleared = cli_json(runner, "api-keys", "update", second["id"], "--clear-allowed-ips")
    assert cleared["allowedIPs"] == []
    plain = cli(runner, "api-keys", "show", second["id"])
    assert plain.exit_code == 0 and "renamed" in plain.output


@pytest.mark.parametrize("key_id", ["0" * 32, "not-an-id", "a" * 32, "' OR 1=1 --"])
def test_show_update_disable_of_unknown_key_fail(runner, key_id):
    for args in (["show", key_id], ["update", key_id, "--name", "x"], ["disable", key_id]):
        result = cli(runner, "api-keys", *args, "--json")
        assert result.exit_code == 1
        assert "not found" in result.stderr


# -- resource_demo.guard.addresses -------------------------------------------------------------------

ALLOWLISTS = [
    (["10.0.0.1"], ["10.0.0.1"]),
    (["10.0.0.0/8"], ["10.0.0.0/8"]),
    (["10.0.0.1/32"], ["10.0.0.1"]),
    (["0.0.0.0/0"], ["0.0.0.0/0"]),
    (["::ffff:10.0.0.1"], ["10.0.0.1"]),
    (["::FFFF:a00:1"], ["10.0.0.1"]),
    (["::ffff:10.0.0.0/104"], ["10.0.0.0/8"]),
    (["::ffff:10.0.0.1/128"], ["10.0.0.1"]),
    (["2001:DB8::1"], ["2001:db8::1"]),
    (["2001:db8:0:0::/64"], ["2001:db8::/64"]),
    (["2001:db8::1/128"], ["2001:db8::1"]),
    (["::/0"], ["::/0"]),
    (["fe80::1"], ["fe80::1"]),
    ([" 192.0.2.1 "], ["192.0.2.1"]),
    (["10.0.0.1", "10.0.0.1/32", "::ffff:10.0.0.1"], ["10.0.0.1"]),
    ([], []),
    (None, []),
]


@pytest.mark.security("AK07")
@pytest.mark.parametrize("entries, expected", ALLOWLISTS)
def test_normalize_allowlist(entries, expected):
    assert normalize_allowlist(entries) == expected


BAD_ALLOWLISTS = [
    ["010.0.0.1"], ["10.0.0.01"], ["10.0.0.0/08"], ["fe80::1%eth0"], ["fe80::1%1"],
    ["fe80::/64%eth0"], ["10.0.0.1/8"], ["2001:db8::1/32"], ["10.0.0.0/33"], ["::/129"],
    ["10.0.0.0/-1"], ["10.0.0.0/+8"], ["10.0.0.0/8/8"], ["10.0.0.0/"], ["/8"], [""], ["   "],
    ["10.0.0.256"], ["1.2.3"], ["0x0a.0.0.1"], ["10.0.0.0/255.0.0.0"], ["10.0.0.0 /8"],
    ["::ffff:10.0.0.0/64"], ["::ffff:10.0.0.1/96"], ["::ffff:010.0.0.1"], ["example.com"],
    ["[2001:db8::1]"], ["192.0.2.1:443"], ["10.0.0.0/\u0668"], ["::ffff:10.0.0.1/\u00b2"],
    ["::ffff:10.0.0.0/\u0661\u0660\u0664"], ["\u0661.2.3.4"], ["1" * 100], [None], [10],
    [["10.0.0.1"]], "10.0.0.1", {"10.0.0.1": 1}, ["10.0.0.1"] * 101,
]


@pytest.mark.security("AK07")
@pytest.mark.parametrize("entries", BAD_ALLOWLISTS)
def test_normalize_allowlist_refuses(entries):
    with pytest.raises(ValueError):
        normalize_allowlist(entries)


ADDRESS_CHECKS = [
    ([], "203.0.113.9", True),
    (["10.0.0.0/8"], "10.255.1.2", True),
    (["10.0.0.0/8"], "11.0.0.1", False),
    (["10.0.0.0/8"], "9.255.255.255", False),
    (["127.0.0.1"], "127.0.0.1", True),
    (["127.0.0.1"], "127.0.0.2", False),
    (["10.0.0.1"], "::ffff:10.0.0.1", True),
    (["10.0.0.1"], "::ffff:a00:1", True),
    (["10.0.0.1"], "010.0.0.1", False),
    (["10.0.0.1"], "::10.0.0.1", False),
    (["::1"], "127.0.0.1", False),
    (["127.0.0.1"], "::1", False),
    (["2001:db8::/32"], "2001:db8:ffff::1", True),
    (["2001:db8::/32"], "2001:db9::1", False),
    (["2001:db8::1"], "2001:DB8:0:0:0:0:0:1", True),
    (["fe80::1"], "fe80::1%eth0", False),
    (["0.0.0.0/0"], "198.51.100.1", True),
    (["0.0.0.0/0"], "2001:db8::1", False),
    (["::/0"], "2001:db8::1", True),
    (["0.0.0.0/0", "::/0"], "garbage", False),
    (["0.0.0.0/0", "::/0"], "", False),
    (["0.0.0.0/0", "::/0"], None, False),
    (["0.0.0.0/0", "::/0"], "10.0.0.1, 10.0.0.2", False),
    (["192.0.2.0/24"], "192.0.2.1:443", False),
]


@pytest.mark.security("AK07")
@pytest.mark.parametrize("allowlist, address, allowed", ADDRESS_CHECKS)
def test_address_allowed(allowlist, address, allowed):
    assert address_allowed(allowlist, address) is allowed


PROXIES = ["10.0.0.0/8", "2001:db8:ffff::/48"]
ANY = ["0.0.0.0/0", "::/0"]
CALLERS = [
    # no trusted proxy configured: X-Forwarded-For is never believed
    ("203.0.113.9", "198.51.100.1", [], "203.0.113.9"),
    ("10.0.0.1", "198.51.100.1", [], "10.0.0.1"),
    # spoofed header from a peer that is not a trusted proxy
    ("203.0.113.9", "10.0.0.5", PROXIES, "203.0.113.9"),
    ("203.0.113.9", "198.51.100.1, 10.0.0.5", PROXIES, "203.0.113.9"),
    # one trusted proxy: the hop it appended
    ("10.0.0.1", "198.51.100.1", PROXIES, "198.51.100.1"),
    ("::ffff:10.0.0.1", "198.51.100.1", PROXIES, "198.51.100.1"),
    ("2001:db8:ffff::2", "2001:db8:1::9", PROXIES, "2001:db8:1::9"),
    # the client's own X-Forwarded-For entries, left of the right-most untrusted hop, are ignored
    ("10.0.0.1", "127.0.0.1, 198.51.100.1", PROXIES, "198.51.100.1"),
    ("10.0.0.1", "10.0.0.7,198.51.100.1", PROXIES, "198.51.100.1"),
    # several trusted hops
    ("10.0.0.1", "198.51.100.1, 10.0.0.2, 10.0.0.3", PROXIES, "198.51.100.1"),
    ("10.0.0.1", "6.6.6.6, 198.51.100.1, 2001:db8:ffff::1, 10.0.0.3", PROXIES, "198.51.100.1"),
    # no header
    ("10.0.0.1", None, PROXIES, "10.0.0.1"),
    ("10.0.0.1", "", PROXIES, "10.0.0.1"),
]


@pytest.mark.parametrize("peer, forwarded_for, trusted, expected", CALLERS)
def test_client_address(peer, forwarded_for, trusted, expected):
    assert client_address(peer, forwarded_for, trusted) == expected


GARBAGE_FORWARDED_FOR = [
    "garbage", "198.51.100.1, garbage", "198.51.100.1,", ", ,", "unknown", "198.51.100.1:8080",
    "[2001:db8::1]:443", "010.0.0.1", "fe80::1%eth0", "for=198.51.100.1", "\x00", "1" * 5000,
    ",".join(["10.0.0.9"] * 50) + ", garbage",
]


@pytest.mark.security("AK07")
@pytest.mark.parametrize("forwarded_for", GARBAGE_FORWARDED_FOR)
def test_garbage_forwarded_for_from_a_trusted_proxy_yields_no_usable_address(forwarded_for):
    """The caller is unknown: it must match no allowlist (not even "any address"), and never
    fall back to the trusted proxy's own address."""
    caller = client_address("10.0.0.1", forwarded_for, PROXIES)
    assert caller != "10.0.0.1"
    assert address_allowed(ANY + ["10.0.0.0/8"], caller) is False


def test_forwarded_for_cannot_reach_past_the_trusted_hops():
    """A client behind one trusted proxy cannot name an allowlisted address for itself."""
    allowlist = ["192.0.2.10"]
    caller = client_address("10.0.0.1", "192.0.2.10, 203.0.113.66", PROXIES)
    assert caller == "203.0.113.66" and not address_allowed(allowlist, caller)

"""``authserver config check`` and ``authserver encryption-key``: running it as a team does
(settings from the environment, the keyring and its rollover; docs/operations.md)."""

from __future__ import annotations

import json

import click
from flask import current_app
from flask.cli import with_appcontext

from authserver.admin.cli.group import no_schema_check
from authserver.config import settings, unknown_environment_variables
from authserver.credentials import keyring, second_factor
from authserver.credentials import signing_keys as keys
from authserver.settings import fingerprint, masked


def configuration_problems(config) -> list[str]:
    """Everything inconsistent in ``config`` that can be seen without a database."""
    from limits import parse

    from authserver.web.serving import parse_bind
    from resource_demo.guard.addresses import parse_network

    problems = [f"{name} names no setting (a typo?)" for name in unknown_environment_variables()]
    problems += keyring.keyring_problems(config)
    if not config.get("SECRET_KEY"):
        problems.append("SECRET_KEY is not set (web UI sessions): set AUTHSERVER_SECRET_KEY")
    issuer = config.get("ISSUER") or ""
    from urllib.parse import urlsplit

    parts = urlsplit(issuer)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        problems.append(f"ISSUER {issuer!r} must be an https URL (http only on loopback)")
    if parts.query or parts.fragment:
        problems.append("ISSUER must have no query or fragment (RFC 8414 §2)")
    for entry in config.get("TRUSTED_PROXIES") or []:
        try:
            parse_network(entry)
        except ValueError:
            problems.append(f"TRUSTED_PROXIES entry {entry!r} is not an address or CIDR range")
    for name in ("TOKEN_RATE_LIMIT", "AUTH_FAILURE_RATE_LIMIT", "INTROSPECTION_RATE_LIMIT",
                 "ADMIN_WRITE_RATE_LIMIT", "UI_LOGIN_RATE_LIMIT", "UI_LOGIN_ADDRESS_RATE_LIMIT"):
        if config.get(name):
            try:
                parse(config[name])
            except ValueError:
                problems.append(f"{name} {config[name]!r} is not a rate limit like '10/second'")
    if config.get("SIGNING_ALG") not in keys.ALGORITHMS:
        problems.append(f"SIGNING_ALG must be one of {', '.join(keys.ALGORITHMS)}")
    if int(config.get("RSA_KEY_SIZE") or 0) < 2048:
        problems.append("RSA_KEY_SIZE must be at least 2048")
    if config["ACCESS_TOKEN_TTL"] > config["MAX_ACCESS_TOKEN_TTL"]:
        problems.append("ACCESS_TOKEN_TTL is longer than MAX_ACCESS_TOKEN_TTL")
    if config.get("METRICS_BIND"):
        try:
            parse_bind(config["METRICS_BIND"])
        except ValueError as exc:
            problems.append(f"METRICS_BIND: {exc}")
    if str(config.get("LOG_LEVEL", "")).upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        problems.append("LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
    return problems


@click.group("config")
def config_group():
    """The effective configuration."""


@config_group.command("check")
@click.option("--offline", is_flag=True, help="Do not connect to the database or Redis.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@no_schema_check
@with_appcontext
def config_check(offline, as_json):
    """Print the effective configuration (secrets masked); exit 1 naming each problem.

    Unless --offline, also runs the readiness checks (database, schema, signing key, Redis).
    """
    config = current_app.config
    effective = {name: masked(name, config.get(name)) for name in settings()}
    problems = configuration_problems(config)
    if not offline and not keyring.keyring_problems(config):
        from authserver.observability.readiness import readiness

        _, checks = readiness()
        problems += [f"{name}: {cause}" for name, cause in checks.items() if cause != "ok"]
    if as_json:
        click.echo(json.dumps({"settings": effective, "problems": problems}, indent=2,
                              default=str))
    else:
        for name, value in effective.items():
            click.echo(f"{name} = {json.dumps(value, default=str)}")
    for problem in problems:
        click.echo(f"problem: {problem}", err=True)
    if problems:
        raise SystemExit(1)


@click.group("encryption-key")
def encryption_key_group():
    """The keyring that encrypts signing keys at rest (ENCRYPTION_KEYS)."""


@encryption_key_group.command("generate")
@no_schema_check
def encryption_key_generate():
    """Print a new random key for ENCRYPTION_KEYS (it is not stored anywhere)."""
    click.echo(keyring.generate_encryption_key())


@encryption_key_group.command("rotate")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def encryption_key_rotate(as_json):
    """Re-encrypt every signing key and operator TOTP secret under the first ENCRYPTION_KEYS
    entry, in one transaction.

    Every other key of the ring must still open them; nothing changes if one does not.
    """
    # Operators' TOTP secrets too, committed with the signing keys (or neither).
    totp_secrets = second_factor.reencrypt_secrets()
    rewritten, unchanged = keys.reencrypt_signing_keys()
    first = fingerprint(keyring.configured_keys(current_app.config)[0])
    data = {"reencrypted": rewritten, "already_current": unchanged, "encrypting_key": first,
            "reencryptedTotpSecrets": totp_secrets}
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(f"re-encrypted {rewritten} signing keys under {first} "
                   f"({unchanged} already were) and {totp_secrets} operators' TOTP secrets")

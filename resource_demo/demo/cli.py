"""``resource-demo serve`` (the demo API under gunicorn) and ``resource-demo routes`` (its
route manifest)."""

from __future__ import annotations

import json
from functools import partial

import click

from authserver.web.serving import run
from resource_demo.guard.config import GuardConfigurationError, GuardSettings


@click.group()
def main():
    """The resource_demo API."""


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, type=int, show_default=True)
@click.option("--workers", default=2, type=int, show_default=True)
@click.option("--issuer", required=True, help="The authorization server's issuer URL.")
@click.option("--client-id", required=True, help="A client holding tokens:introspect.")
@click.option("--client-secret", required=True, envvar="RESOURCE_DEMO_CLIENT_SECRET",
              help="Its secret (or RESOURCE_DEMO_CLIENT_SECRET).")
@click.option("--audience", "audiences", multiple=True,
              help="Audience this API accepts (default: the issuer's default, ISSUER/api).")
@click.option("--trusted-proxy", "trusted_proxies", multiple=True,
              help="Proxy address or CIDR whose X-Forwarded-For is believed (repeatable).")
@click.option("--introspect-jwts", is_flag=True, help="Ask the server about every JWT.")
@click.option("--dpop-replay-store", default=None, envvar="RESOURCE_DEMO_DPOP_REPLAY_STORE",
              help="redis:// URL where DPoP proof jtis are kept for every worker (without it "
                   "each worker keeps its own: correct with --workers 1 only).")
def serve(host, port, workers, issuer, client_id, client_secret, audiences, trusted_proxies,
          introspect_jwts, dpop_replay_store):
    """Serve the demo API, protected by the guard."""
    from resource_demo.demo.app import create_app

    config = {"GUARD_ISSUER": issuer, "GUARD_CLIENT_ID": client_id,
              "GUARD_CLIENT_SECRET": client_secret, "GUARD_AUDIENCES": list(audiences) or None,
              "GUARD_TRUSTED_PROXIES": list(trusted_proxies),
              "GUARD_INTROSPECT_JWTS": introspect_jwts,
              "GUARD_DPOP_REPLAY_STORE": dpop_replay_store}
    try:  # a clear message here, not a traceback in every worker
        GuardSettings.from_mapping(config)
    except GuardConfigurationError as exc:
        raise click.UsageError(str(exc)) from None
    run(partial(create_app, config), host, port, workers)


@main.command("routes")
@click.option("--json", "as_json", is_flag=True, help="Print the versioned manifest as JSON.")
@click.option("--issuer", default="http://127.0.0.1:5000", show_default=True,
              help="The issuer whose default audience (ISSUER/api) the API accepts.")
@click.option("--audience", "audiences", multiple=True,
              help="Audience this API accepts (default: the issuer's default audience).")
def routes(as_json, issuer, audiences):
    """The guard's route manifest: each protected route with its any-of scopes."""
    from flask import Flask

    from resource_demo.demo.api import create_blueprint
    from resource_demo.guard.flask import ResourceGuard

    # The routes and their declarations only: no settings checked, nobody contacted.
    guard, app = ResourceGuard(), Flask("resource_demo")
    app.register_blueprint(create_blueprint(guard))
    document = guard.routes(app, audiences=list(audiences) or [issuer.rstrip("/") + "/api"])
    if as_json:
        click.echo(json.dumps(document, indent=2))
        return
    for route in document["routes"]:
        keys = "" if route["apiKeys"] else "  (no API keys)"
        click.echo(f"{route['method']:6} {route['path']:28} {' | '.join(route['scopes'])}{keys}")

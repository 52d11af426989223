"""``resource-demo serve``: the demo API under gunicorn."""

from __future__ import annotations

from functools import partial

import click

from authserver.serving import run


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
def serve(host, port, workers, issuer, client_id, client_secret, audiences, trusted_proxies,
          introspect_jwts):
    """Serve the demo API, protected by the guard."""
    from .app import create_app

    config = {"GUARD_ISSUER": issuer, "GUARD_CLIENT_ID": client_id,
              "GUARD_CLIENT_SECRET": client_secret, "GUARD_AUDIENCES": list(audiences) or None,
              "GUARD_TRUSTED_PROXIES": list(trusted_proxies),
              "GUARD_INTROSPECT_JWTS": introspect_jwts}
    run(partial(create_app, config), host, port, workers)

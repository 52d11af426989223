"""``authserver resource-servers`` (the route manifests guards export) and ``authserver
explain`` (what a key or client can call): thin wrappers over ``authserver.reach``."""

from __future__ import annotations

import json

import click
from flask.cli import with_appcontext

from authserver.admin.cli.output import emit, emit_rows, fail
from authserver.reach import endpoints
from authserver.reach import resource_servers as registry
from authserver.web.errors import NotFoundError, ValidationError

CLI_ACTOR = "cli"
MAX_FILE_BYTES = 1024 * 1024


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    names = [name for name, _ in pairs]
    if len(names) != len(set(names)):
        raise ValueError("duplicate member name")
    return dict(pairs)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def read_manifest(handle) -> object:
    """The JSON document in ``handle`` (strict JSON, at most MAX_FILE_BYTES)."""
    data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ValidationError({"file": [f"larger than {MAX_FILE_BYTES} bytes"]})
    try:
        return json.loads(data, object_pairs_hook=_no_duplicates,
                          parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise ValidationError({"file": ["not a valid JSON document"]}) from None


@click.group("resource-servers")
def resource_servers_group():
    """Resource servers: the route manifests their guards export."""


def _summary_line(row: dict) -> str:
    return f"{row['name']:<24} {row['routeCount']:>4} routes  {' '.join(row['audiences'])}"


@resource_servers_group.command("upload")
@click.argument("name")
@click.argument("manifest_file", metavar="FILE", type=click.File("rb"))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def resource_servers_upload(name, manifest_file, as_json):
    """Register or replace resource server NAME with FILE, the JSON its guard exports
    (``resource-demo routes --json > FILE``; ``-`` reads standard input)."""
    try:
        record, created = registry.register_resource_server(
            name, read_manifest(manifest_file), actor=CLI_ACTOR)
    except ValidationError as exc:
        fail(exc)
    summary = registry.summary(record)
    if as_json:
        emit(summary, True)
    else:
        click.echo(f"{'registered' if created else 'stored'} {_summary_line(summary)}")


@resource_servers_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def resource_servers_list(as_json):
    """List the registered resource servers."""
    rows = [registry.summary(record) for record in registry.all_resource_servers()]
    emit_rows(rows, as_json, _summary_line)


@resource_servers_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def resource_servers_show(name, as_json):
    """Show a resource server's routes and the scopes each accepts."""
    try:
        data = registry.describe(registry.get_resource_server(name))
    except NotFoundError as exc:
        fail(exc)
    emit(data, as_json, lambda data: [
        f"{route['method']:6} {route['path']:32} {' | '.join(route['scopes'])}"
        + ("" if route["apiKeys"] else "  (no API keys)")
        for route in data["manifest"]["routes"]])


@resource_servers_group.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_appcontext
def resource_servers_delete(name, yes):
    """Forget a resource server (its audit events stay)."""
    try:
        registry.get_resource_server(name)
        if not yes:
            click.confirm(f"Forget resource server {name}?", abort=True)
        registry.delete_resource_server(name, actor=CLI_ACTOR)
    except NotFoundError as exc:
        fail(exc)
    click.echo(f"deleted {name}")


def reach_lines(data: dict) -> list[str]:
    """A credential's reach as a table per resource server."""
    credential = data["credential"]
    kind = "API key" if credential["kind"] == endpoints.API_KEY else "OAuth client"
    lines = [f"{kind} {credential['id']} ({credential['name']}): "
             f"{' '.join(credential['scopes']) or '(no scopes)'}"]
    if not credential["active"]:
        lines.append("not active now (disabled, outside its validity window or of a disabled "
                     "account): it reaches nothing until it is")
    if not data["resourceServers"]:
        lines.append("no resource server is registered (authserver resource-servers upload)")
    for group in data["resourceServers"]:
        count = f"{len(group['endpoints'])} of {group['routeCount']} endpoints"
        lines.append("")
        if not group["audienceAccepted"]:
            lines.append(f"{group['name']}: none (its tokens carry no audience it accepts: "
                         f"{' '.join(group['audiences'])})")
            continue
        lines.append(f"{group['name']}: {count}")
        for endpoint in group["endpoints"]:
            note = "" if endpoint["defaultToken"] else "  (ask for this scope)"
            lines.append(f"  {endpoint['method']:6} {endpoint['path']:32} "
                         f"{' | '.join(endpoint['scopes'])}{note}")
    return lines


@click.command("explain")
@click.argument("credential_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def explain_command(credential_id, as_json):
    """What the API key or OAuth client ID can call, by resource server."""
    try:
        data = endpoints.explain(credential_id)
    except NotFoundError:
        fail(NotFoundError(f"no API key or client {credential_id[:64]}"))
    emit(data, as_json, reach_lines)

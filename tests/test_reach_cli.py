"""``authserver resource-servers`` and ``authserver explain``: through Click's runner on both
backends, and end to end as real processes (the demo's real manifest uploaded, a key
explained)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from test_cli import authserver_command, invoke, invoke_json, process_env, run  # noqa: F401
from test_reach import SMS_FOR_MESSAGE_SEND, demo_manifest

from authserver.storage.db import db
from authserver.storage.models import AuditEvent, ResourceServer


@pytest.fixture
def manifest_file(tmp_path) -> Path:
    path = tmp_path / "demo.json"
    path.write_text(json.dumps(demo_manifest()))
    return path


def rows(app) -> tuple[int, int]:
    with app.app_context():
        return (db.session.scalar(sa.select(sa.func.count()).select_from(ResourceServer)),
                db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent).where(
                    AuditEvent.object_type == "resource-server")))


def test_upload_list_show_delete(app, runner, manifest_file):
    uploaded = invoke_json(runner, "resource-servers", "upload", "demo", str(manifest_file))
    assert uploaded["name"] == "demo" and uploaded["routeCount"] == 13
    text = invoke(runner, "resource-servers", "upload", "demo", str(manifest_file))
    assert text.exit_code == 0 and text.stdout.startswith("stored demo")
    assert rows(app) == (1, 1)  # the same manifest again writes nothing
    assert [row["name"] for row in invoke_json(runner, "resource-servers", "list")] == ["demo"]
    shown = invoke(runner, "resource-servers", "show", "demo")
    assert "GET    /account/1/balance" in shown.stdout and "(no API keys)" in shown.stdout
    assert invoke_json(runner, "resource-servers", "show", "demo")["manifest"] == \
        demo_manifest()
    deleted = invoke(runner, "resource-servers", "delete", "demo", "--yes")
    assert deleted.exit_code == 0 and rows(app) == (0, 2)
    missing = invoke(runner, "resource-servers", "delete", "demo", "--yes")
    assert missing.exit_code == 1 and "not found" in missing.stderr
    with app.app_context():
        assert db.session.scalars(sa.select(AuditEvent.actor).where(
            AuditEvent.object_type == "resource-server")).all() == ["cli", "cli"]


@pytest.mark.parametrize("content, message", [
    (b"{not json", "file: not a valid JSON document"),
    (b'{"version": 1, "version": 1}', "file: not a valid JSON document"),
    (b"[]", "error: manifest:"),
    (json.dumps({"version": 1, "audience": "https://a.test/api",
                 "audiences": ["https://a.test/api"],
                 "routes": [{"method": "GET", "path": "/x", "scopes": ["no:such"],
                             "apiKeys": True}]}).encode(),
     "error: routes[0].scopes: unknown scope: no:such"),
    (json.dumps({"version": 1, "audience": "https://a.test/api",
                 "audiences": ["https://a.test/api"],
                 "routes": [{"method": "TRACE", "path": "/x", "scopes": ["sms:manage"],
                             "apiKeys": True}]}).encode(), "error: routes[0].method:"),
    (b" " * (1024 * 1024 + 1), "file: larger than"),
])
def test_upload_refuses_bad_files(app, runner, tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    result = invoke(runner, "resource-servers", "upload", "demo", str(path))
    assert result.exit_code == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert rows(app) == (0, 0)


def test_upload_refuses_a_bad_name(app, runner, manifest_file):
    result = invoke(runner, "resource-servers", "upload", "Not A Name", str(manifest_file))
    assert result.exit_code == 1 and "error: name:" in result.stderr
    assert rows(app) == (0, 0)


def test_explain_key_and_client(app, runner, manifest_file):
    invoke(runner, "resource-servers", "upload", "demo", str(manifest_file))
    key = invoke_json(runner, "api-keys", "create", "--name", "k", "--scope", "message:send")
    answer = invoke_json(runner, "explain", key["id"])
    (group,) = answer["resourceServers"]
    assert {(e["method"], e["path"]) for e in group["endpoints"]} >= SMS_FOR_MESSAGE_SEND
    table = invoke(runner, "explain", key["id"]).stdout
    assert table.splitlines()[0] == f"API key {key['id']} (k): message:send"
    assert "demo: 5 of 13 endpoints" in table and "POST   /sms/3/messages" in table

    client = invoke_json(runner, "clients", "create", "--name", "c", "--scope", "message:send")
    answer = invoke_json(runner, "explain", client["clientId"])
    assert answer["credential"]["kind"] == "oauthClient"
    table = invoke(runner, "explain", client["clientId"]).stdout
    assert "GET    /sms/1/bulks" in table and "(ask for this scope)" in table

    missing = invoke(runner, "explain", "0123456789ABCDEF0123456789ABCDEF")
    assert missing.exit_code == 1 and "no API key or client" in missing.stderr


def test_explain_says_when_nothing_is_registered(app, runner):
    key = invoke_json(runner, "api-keys", "create", "--name", "k", "--scope", "message:send")
    assert "no resource server is registered" in invoke(runner, "explain", key["id"]).stdout


def test_real_processes_demo_manifest_uploaded_then_key_explained(process_env, tmp_path):
    """The issue's end to end: what `resource-demo routes --json` prints, uploaded with the
    real command, then `authserver explain` of a message:send key lists the SMS endpoints."""
    run(process_env, "init")
    demo = Path(sys.executable).with_name("resource-demo")
    printed = subprocess.run([str(demo), "routes", "--json"], env=process_env,
                             capture_output=True, text=True, timeout=60, check=True)
    manifest = tmp_path / "routes.json"
    manifest.write_text(printed.stdout)
    uploaded = json.loads(run(process_env, "resource-servers", "upload", "demo-api",
                              str(manifest), "--json").stdout)
    assert uploaded["routeCount"] == len(json.loads(printed.stdout)["routes"])
    key = json.loads(run(process_env, "api-keys", "create", "--name", "sender", "--scope",
                         "message:send", "--json").stdout)
    answer = json.loads(run(process_env, "explain", key["id"], "--json").stdout)
    (group,) = answer["resourceServers"]
    assert group["name"] == "demo-api" and group["audienceAccepted"]
    listed = {(e["method"], e["path"]) for e in group["endpoints"]}
    assert SMS_FOR_MESSAGE_SEND <= listed
    assert ("GET", "/sms/3/logs") not in listed and ("GET", "/account/1/balance") not in listed
    table = run(process_env, "explain", key["id"]).stdout
    assert "demo-api: 5 of 13 endpoints" in table

"""The route manifest: every protected route, its method, OpenAPI-style path and any-of scopes,
the same for a Flask and a FastAPI app; ``resource-demo routes --json`` for the demo API."""

from __future__ import annotations

import json

from click.testing import CliRunner
from flask import Flask
from guard_support import create_guarded_app

from resource_demo.demo.api import ENDPOINT_SCOPES
from resource_demo.demo.cli import main as demo_cli
from resource_demo.guard.manifest import MANIFEST_VERSION, openapi_path

OFFLINE = {"GUARD_ISSUER": "http://127.0.0.1:9", "GUARD_REVOCATION_CHECK": False,
           "GUARD_HTTP_TIMEOUT": 0.5}
TEST_APP_ROUTES = [
    ("GET", "/any", ["people:read", "sms:logs:read"], True),
    ("GET", "/email", ["email:manage", "email:message:send", "message:send"], True),
    ("GET", "/keys", ["account-management:manage"], False),
    ("GET", "/send", ["message:send"], True),
    ("GET", "/sms", ["message:send", "sms:manage", "sms:message:send"], True),
    ("POST", "/sms", ["message:send", "sms:manage", "sms:message:send"], True),
]


def routes_of(app) -> dict:
    guard = app.guard_state if not isinstance(app, Flask) else \
        app.view_functions["/sms"].guard
    return guard.routes(app)


def test_same_manifest_for_flask_and_fastapi():
    flask_app, fastapi_app = (create_guarded_app(OFFLINE, name) for name in ("flask", "fastapi"))
    documents = [routes_of(flask_app), routes_of(fastapi_app)]
    assert documents[0] == documents[1]
    document = documents[0]
    assert document["version"] == MANIFEST_VERSION == 1
    assert document["audience"] == "http://127.0.0.1:9/api"
    assert [(r["method"], r["path"], r["scopes"], r["apiKeys"]) for r in document["routes"]] \
        == TEST_APP_ROUTES  # /me (authenticate() without scopes) is not a declared route


def test_paths_in_openapi_syntax_whatever_the_framework():
    assert openapi_path("/sms/<int:bulk_id>/x/<name>") == "/sms/{bulk_id}/x/{name}"
    assert openapi_path("/files/<path:rest>") == "/files/{rest}"
    assert openapi_path("/sms/{bulk_id:int}/x/{name}") == "/sms/{bulk_id}/x/{name}"

    from fastapi import FastAPI, Security
    from starlette.routing import Route

    from resource_demo.guard.asgi import ResourceGuard as AsgiGuard

    app = FastAPI()
    guard = AsgiGuard(app, OFFLINE)

    @app.get("/bulks/{bulk_id}")
    async def bulk(bulk_id: int, who=Security(guard.scope("sms:manage"))):
        return {}

    @guard.require_any_scope("sms:manage")
    async def starlette_view(request):
        return None

    app.router.routes.append(Route("/raw/{item:int}", starlette_view, methods=["DELETE"]))
    paths = {(r["method"], r["path"]) for r in guard.routes(app)["routes"]}
    assert paths == {("GET", "/bulks/{bulk_id}"), ("DELETE", "/raw/{item}")}

    flask_app = Flask("params")
    flask_app.config.update(OFFLINE)
    from resource_demo.guard.flask import ResourceGuard

    flask_guard = ResourceGuard(flask_app)

    @flask_app.get("/bulks/<int:bulk_id>")
    @flask_guard.require_scope("sms:manage")
    def flask_bulk(bulk_id):
        return ""

    (route,) = flask_guard.routes(flask_app)["routes"]
    assert (route["method"], route["path"]) == ("GET", "/bulks/{bulk_id}")  # HEAD left out


def test_demo_routes_json_is_the_endpoint_table():
    result = CliRunner().invoke(demo_cli, ["routes", "--json", "--issuer",
                                           "https://auth.example.com"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["version"] == 1
    assert document["audiences"] == ["https://auth.example.com/api"]
    listed = {(r["method"], r["path"]): (r["scopes"], r["apiKeys"]) for r in document["routes"]}
    assert listed == {(e.method, e.path): (sorted(e.scopes), e.api_keys) for e in ENDPOINT_SCOPES}

"""The same small send endpoint on Flask and on FastAPI, with the guard or without it: what
``bench/guard_frameworks.py`` measures (the guard's cost on each adapter, nothing else).

Factories for gunicorn (``bench.guard_apps:flask_app()``) and uvicorn (``--factory``); the
guarded ones read ``GUARD_ISSUER``, ``GUARD_CLIENT_ID`` and ``GUARD_CLIENT_SECRET`` from the
environment. ``POST /sms/3/messages`` parses the JSON body and answers an SmsResponse-shaped
document; ``GET /healthz`` is unprotected (readiness).
"""

# No "from __future__ import annotations": FastAPI reads the endpoints' annotations at runtime.
import os
import uuid

SCOPE = "sms:message:send"


def _settings() -> dict:
    return {name: os.environ[name]
            for name in ("GUARD_ISSUER", "GUARD_CLIENT_ID", "GUARD_CLIENT_SECRET")}


def _answer(body: dict) -> dict:
    messages = body.get("messages") or [{}]
    return {"bulkId": str(uuid.uuid4()),
            "messages": [{"messageId": str(uuid.uuid4()), "status": {"groupName": "PENDING"},
                          "destination": (m.get("destinations") or [{}])[0].get("to")}
                         for m in messages]}


def flask_app(guarded: bool = True):
    """The Flask app: the send endpoint behind ``guard.require_scope`` (or not)."""
    from flask import Flask, request

    from resource_demo.guard.flask import ResourceGuard

    app = Flask("bench-guard-flask")
    protect = (lambda view: view)
    if guarded:
        app.config.update(_settings())
        protect = ResourceGuard(app).require_scope(SCOPE)

    @app.post("/sms/3/messages")
    @protect
    def send():
        return _answer(request.get_json())

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    return app


def fastapi_app(guarded: bool = True):
    """The FastAPI app: the send endpoint with ``Security(guard.scope(...))`` (or not)."""
    from fastapi import FastAPI, Request, Security

    app = FastAPI()
    if guarded:
        from resource_demo.guard.asgi import ResourceGuard

        dependency = Security(ResourceGuard(app, _settings()).scope(SCOPE))

        @app.post("/sms/3/messages")
        async def send(request: Request, principal=dependency):
            return _answer(await request.json())
    else:
        @app.post("/sms/3/messages")
        async def send(request: Request):
            return _answer(await request.json())

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    return app


def fastapi_unguarded():
    """uvicorn --factory entry point of the unguarded FastAPI app."""
    return fastapi_app(guarded=False)

"""The guard is a library of its own: loading it loads nothing of the server, and its core no web
framework (it installs with PyJWT and an HTTP client). The static import rule (no import of
authserver or the demo) is tests/test_architecture.py's."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CORE = ("addresses", "api_key_format", "config", "errors", "jwks", "keys", "lru", "principal",
        "revocation", "scopes", "server_client", "verifier")
SERVER_ONLY = ("authserver", "resource_demo.demo", "sqlalchemy", "flask_sqlalchemy", "alembic",
               "authlib", "psycopg", "gunicorn", "argon2", "limits", "prometheus_client", "requests")
FRAMEWORKS = ("flask", "werkzeug", "starlette", "fastapi")


def _loaded_after(imports: str) -> list[str]:
    code = (f"import sys; {imports}; import json; "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} | "
            "{m for m in sys.modules if m.startswith('resource_demo.')})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_guard_core_loads_no_server_package_and_no_framework():
    loaded = _loaded_after("; ".join(f"import resource_demo.guard.{m}" for m in CORE))
    assert not [m for m in loaded if m.startswith(SERVER_ONLY) or m in FRAMEWORKS]


def test_flask_adapter_loads_flask_but_nothing_of_the_server():
    loaded = _loaded_after("import resource_demo.guard.flask")
    assert "flask" in loaded
    assert not [m for m in loaded if m.startswith(SERVER_ONLY) or m in ("starlette", "fastapi")]

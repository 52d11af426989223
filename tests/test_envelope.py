"""One error vocabulary, one renderer per format: the platform envelope's bytes are the guard
library's, at the server's admin API and at every resource guard (issue: one home per rule)."""

from __future__ import annotations

import pytest
from flask import Flask
from guard_support import BAD_REQUEST, FORBIDDEN, SERVICE_UNAVAILABLE, UNAUTHORIZED

from authserver.web.errors import error_response
from resource_demo.guard.errors import ENVELOPE_IDS, envelope_bytes, error_for_status
from resource_demo.guard.flask import register_error_handlers, render

STATUSES = sorted({*ENVELOPE_IDS, 406, 409, 418, 431, 502})


@pytest.mark.parametrize("status", STATUSES)
def test_server_and_guard_render_the_same_bytes(status):
    app = Flask("envelope")
    with app.test_request_context("/settings/2/api-keys"):
        server = error_response(status, "ignored in the envelope").get_data()
        guard = render(error_for_status(status)).get_data()
    assert server == guard == envelope_bytes(status)


def test_documented_bodies_byte_for_byte():
    assert envelope_bytes(400) == BAD_REQUEST.encode()
    assert envelope_bytes(401) == UNAUTHORIZED.encode()
    assert envelope_bytes(403) == FORBIDDEN.encode()
    assert envelope_bytes(503) == SERVICE_UNAVAILABLE.encode()
    assert envelope_bytes(500) == (b'{"requestError":{"serviceException":{"messageId":'
                                   b'"GENERAL_ERROR","text":"Something went wrong. Please '
                                   b'contact support."}}}')


def test_validation_errors_sorted_and_ascii():
    body = envelope_bytes(400, {"b": ["x"], "a": ["\ud800 lone surrogate", "é"]})
    assert body == (b'{"requestError":{"serviceException":{"messageId":"BAD_REQUEST","text":'
                    b'"Bad request","validationErrors":{"a":["\\ud800 lone surrogate","\\u00e9"],'
                    b'"b":["x"]}}}}')


def test_admin_api_401_is_the_guard_401(client):
    response = client.get("/settings/2/api-keys")
    assert response.status_code == 401 and response.data == UNAUTHORIZED.encode()


def test_framework_errors_through_the_guard_renderer():
    app = Flask("envelope")
    register_error_handlers(app)
    app.add_url_rule("/only-put", "only_put", lambda: "", methods=["PUT"])
    response = app.test_client().get("/only-put")
    assert response.status_code == 405 and response.data == envelope_bytes(405)
    assert "PUT" in response.headers["Allow"]

"""Text that the database or the encoder cannot take (issue 18 finding 6, threat model AD12).

Before the fix a lone surrogate in a name (admin API: keys and clients) or in SMS text (demo
API), ``until=9999-12-31`` and a NUL in the web UI's audit filters were 500s. Every text input
of every surface now goes through one validation (``authserver.web.text``) and gets a 400 in
the surface's own format; property tests throw hostile text at the web UI's forms and query
strings and at the demo API and see no 5xx.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from guard_support import auth_server, credentials, guard_config  # noqa: F401  (fixtures)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ui_support import app_config, csrf_from, UI, ui  # noqa: F401 - fixtures

from authserver.credentials import api_keys, clients
from resource_demo.demo.app import create_app as create_demo_app
from resource_demo.guard.flask import ResourceGuard

HOSTILE = ["\ud800", "a\udfffb", "\x00", "nul\x00inside", "\u202e", "\ufeff", "x" * 5000,
           "%00", "'; DROP TABLE api_keys; --", "\x1b[31m", "9999-12-31", "0000-00-00"]
#: Any text, with the characters that break encoders and databases mixed in.
TEXT = st.one_of(st.sampled_from(HOSTILE),
                 st.text(st.characters(codec=None, exclude_categories=()), max_size=40))
FUZZ = settings(max_examples=30, deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


def _raw_json(client_method, path, body: str, headers: dict):
    """A JSON body sent as written (json.dumps would refuse a lone surrogate the way we
    want to send it: as the escape sequence a real client can send)."""
    return client_method(path, data=body, headers={**headers,
                                                  "Content-Type": "application/json"})


# -- the admin API ----------------------------------------------------------------------------

@pytest.fixture
def admin_headers(app, oauth_clients, get_token):
    client_id, secret = oauth_clients.create(scope="account-management:manage sms:manage")
    token = get_token(client_id, secret, resource=app.config["ISSUER"]).get_json()
    return {"Authorization": f"Bearer {token['access_token']}"}


@pytest.mark.parametrize("path, body", [
    ("/settings/2/api-keys", '{"name": "\\ud800"}'),
    ("/settings/2/api-keys", '{"name": "a\\u0000b"}'),
    ("/settings/2/oauth-clients", '{"name": "\\udfff", "scopes": ["sms:manage"]}'),
    ("/settings/2/oauth-clients", '{"name": "ok", "scopes": ["sms:manage"], '
                                  '"audiences": ["https://a.example/\\ud800"]}'),
])
def test_AD12_admin_api_refuses_text_it_cannot_store(client, admin_headers, path, body):
    response = _raw_json(client.post, path, body, admin_headers)
    assert response.status_code == 400, response.get_data(as_text=True)
    errors = response.get_json()["requestError"]["serviceException"]["validationErrors"]
    assert errors and {field.split("[")[0] for field in errors} <= {"name", "audiences"}


# -- the web UI -------------------------------------------------------------------------------

@pytest.mark.parametrize("query", ["until=9999-12-31", "since=9999-12-31", "actor=%00",
                                   "object_id=a%00b", "object_type=%00", "until=0001-01-01",
                                   "since=%ED%A0%80", "page=99999999999"])
def test_AD12_audit_filters_never_500(ui, query):
    response = ui.client.get(f"/ui/audit?{query}")
    assert response.status_code in (200, 400), response.status_code
    assert "text/html" in response.headers["Content-Type"]


UI_FORMS = {
    "/ui/api-keys/new": ("name", "expiration", "allowed_ips", "scopes"),
    "/ui/clients/new": ("name", "token_ttl", "auth_method", "scopes"),
}
UI_QUERIES = {
    "/ui/audit": ("actor", "object_type", "object_id", "since", "until", "page", "size",
                  "orderDirection"),
    "/ui/api-keys": ("page", "name", "enabled", "search", "orderBy", "orderDirection", "size"),
    "/ui/clients": ("page", "name", "enabled", "search", "orderBy", "orderDirection", "size"),
}


def test_AD12_ui_forms_and_query_strings_never_500(ui):
    """Property: any text in any field of the UI's forms and query strings: no 5xx."""

    @FUZZ
    @given(path=st.sampled_from(sorted(UI_QUERIES)), data=st.data())
    def query_strings(path, data):
        values = {name: data.draw(TEXT) for name in UI_QUERIES[path]}
        query = "&".join(f"{quote(n)}={quote(v, errors='surrogatepass')}"
                         for n, v in values.items())
        response = ui.client.get(f"{path}?{query}")
        assert response.status_code < 500, (path, values)

    @FUZZ
    @given(path=st.sampled_from(sorted(UI_FORMS)), data=st.data())
    def forms(path, data):
        token = csrf_from(ui.client.get(path).get_data(as_text=True))
        values = {name: data.draw(TEXT) for name in UI_FORMS[path]}
        body = "&".join(f"{quote(n)}={quote(v, errors='surrogatepass')}"
                        for n, v in [("csrf_token", token), *values.items()])
        response = ui.client.post(path, data=body,
                                  content_type="application/x-www-form-urlencoded")
        assert response.status_code < 500, (path, values)

    query_strings()
    forms()


def test_AD12_ui_edit_forms_never_500(app, ui):
    """Property: any text in any field of the key and client edit forms: no 5xx."""
    with app.app_context():
        key, _ = api_keys.create_api_key(name="k", scopes="sms:message:send", actor="test")
        client, _ = clients.create_client(name="c", scope="message:send", actor="test")
        edits = {f"/ui/api-keys/{key.id}": ("name", "valid_from", "expiration", "allowed_ips",
                                            "scopes"),
                 f"/ui/clients/{client.client_id}/edit": ("name", "token_ttl", "auth_method",
                                                          "audiences", "scopes",
                                                          "dpop_bound_access_tokens")}

    @FUZZ
    @given(path=st.sampled_from(sorted(edits)), data=st.data())
    def edit_forms(path, data):
        token = csrf_from(ui.client.get(path).get_data(as_text=True))
        values = {name: data.draw(TEXT) for name in edits[path]}
        body = "&".join(f"{quote(n)}={quote(v, errors='surrogatepass')}"
                        for n, v in [("csrf_token", token), *values.items()])
        response = ui.client.post(path, data=body,
                                  content_type="application/x-www-form-urlencoded")
        assert response.status_code < 500, (path, values)

    edit_forms()


# -- the demo API -----------------------------------------------------------------------------

@pytest.fixture
def demo(auth_server, credentials):  # noqa: F811 - fixtures imported above
    app = create_demo_app(guard_config(auth_server, credentials, TESTING=True))
    yield app.test_client(), credentials.header("api_key", "sms:manage message:send "
                                                 "email:manage whatsapp:manage people:read "
                                                 "forms:read")
    ResourceGuard.close(app)  # stop its followers


def test_AD12_demo_sms_text_with_a_lone_surrogate_is_400(demo):
    client, headers = demo
    body = ('{"messages": [{"destinations": [{"to": "41793026727"}], "sender": "demo", '
            '"content": {"text": "hi \\ud800"}}]}')
    response = _raw_json(client.post, "/sms/3/messages", body, headers)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["requestError"]["serviceException"]["messageId"] == "BAD_REQUEST"


DEMO_BODIES = {
    "/sms/3/messages": {"messages": [{"destinations": [{"to": "41793026727"}],
                                      "sender": "S", "content": {"text": "T"}}]},
    "/sms/2/text/advanced": {"messages": [{"destinations": [{"to": "41793026727"}],
                                           "from": "S", "text": "T"}]},
    "/sms/1/preview": {"text": "T"},
    "/whatsapp/1/message/text": {"from": "S", "to": "41793026727", "content": {"text": "T"}},
}
DEMO_QUERIES = {"/sms/3/logs": ("sender", "destination", "bulkId", "messageId", "sentSince"),
                "/sms/3/reports": ("bulkId", "messageId", "limit"),
                "/people/2/persons": ("page", "limit"),
                "/forms/1/forms": ("offset", "limit")}


def _replace_texts(value, text):
    if isinstance(value, dict):
        return {key: _replace_texts(item, text) for key, item in value.items()}
    if isinstance(value, list):
        return [_replace_texts(item, text) for item in value]
    return text if value in ("S", "T") else value


def test_AD12_demo_api_never_500(demo):
    """Property: any text in the demo API's JSON bodies and query strings: no 5xx."""
    client, headers = demo

    @FUZZ
    @given(path=st.sampled_from(sorted(DEMO_BODIES)), text=TEXT)
    def bodies(path, text):
        body = json.dumps(_replace_texts(DEMO_BODIES[path], text), ensure_ascii=True)
        response = _raw_json(client.post, path, body, headers)
        assert response.status_code < 500, (path, text)

    @FUZZ
    @given(path=st.sampled_from(sorted(DEMO_QUERIES)), data=st.data())
    def queries(path, data):
        query = "&".join(f"{name}={quote(data.draw(TEXT), errors='surrogatepass')}"
                         for name in DEMO_QUERIES[path])
        response = client.get(f"{path}?{query}", headers=headers)
        assert response.status_code < 500, (path, query)

    bodies()
    queries()


# -- the CLI ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["\udcff", "a\x00b"])
def test_AD12_cli_refuses_text_it_cannot_store(runner, name):
    import authserver.admin.cli

    result = runner.invoke(authserver.admin.cli.main,
                           ["api-keys", "create", "--name", name, "--scope", "sms:manage"])
    assert result.exit_code == 2 and "argument must" in result.output, result.output
    assert not isinstance(result.exception, UnicodeError)

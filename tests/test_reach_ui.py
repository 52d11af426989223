"""What a credential can reach, in the web UI through Flask's test client (both backends):
the reach list on key and client pages, and "pick endpoints" on the create forms (a GET form,
no JavaScript). The browser side is tests/test_reach_browser.py."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest
from test_reach import demo_manifest
from ui_support import app_config, UI, ui  # noqa: F401 - fixtures

from authserver.credentials import api_keys, clients
from authserver.reach import resource_servers

CHECKED_RE = re.compile(r'<input type="checkbox" name="scopes"[^>]*value="([^"]+)"[^>]*checked')


@pytest.fixture
def demo(app):
    with app.app_context():
        resource_servers.register_resource_server("demo", demo_manifest(), actor="test")


def ticked(html: str) -> list[str]:
    return sorted(CHECKED_RE.findall(html))


def test_key_page_lists_what_it_reaches(app, ui, demo):
    with app.app_context():
        key_id = api_keys.create_api_key(name="sender", scopes=["message:send"],
                                         actor="test")[0].id
    html = ui.client.get(f"/ui/api-keys/{key_id}").text
    assert "What it can reach" in html and "5 of 13 endpoints" in html
    for endpoint in ("POST /sms/3/messages", "POST /sms/2/text/advanced", "GET /sms/3/reports"):
        assert f'data-endpoint="{endpoint}"' in html
    assert 'data-endpoint="GET /sms/1/bulks"' not in html


def test_client_page_lists_what_it_reaches(app, ui, demo):
    with app.app_context():
        client_id = clients.create_client(name="svc", scope="message:send",
                                          actor="test")[0].client_id
    html = ui.client.get(f"/ui/clients/{client_id}").text
    assert 'data-endpoint="GET /sms/1/bulks"' in html
    assert "ask for it in the token request" in html


def test_pages_say_when_nothing_is_registered(app, ui):
    with app.app_context():
        key_id = api_keys.create_api_key(name="k", scopes=["message:send"], actor="test")[0].id
    assert "No resource server has registered" in ui.client.get(f"/ui/api-keys/{key_id}").text


@pytest.mark.parametrize("kind, create", [("api-keys", "/ui/api-keys/new"),
                                          ("clients", "/ui/clients/new")])
def test_pick_endpoints_ticks_the_narrowest_scopes(ui, demo, kind, create):
    pick = ui.client.get(f"/ui/{kind}/new/endpoints")
    assert pick.status_code == 200
    assert f'action="{create}"' in pick.text and 'method="get"' in pick.text
    query = urlencode([("endpoint", "demo POST /sms/3/messages"),
                       ("endpoint", "demo GET /sms/3/logs")])
    form = ui.client.get(f"{create}?{query}")
    assert form.status_code == 200
    assert ticked(form.text) == ["sms:logs:read", "sms:message:send"]
    assert "for the 2 endpoints you picked" in form.text
    assert "Change the endpoints" in form.text


def test_keys_cannot_pick_endpoints_that_refuse_them(ui, demo):
    pick = ui.client.get("/ui/api-keys/new/endpoints").text
    balance = re.search(r'<input[^>]*value="demo GET /account/1/balance"[^>]*>', pick).group(0)
    assert "disabled" in balance
    refused = ui.client.get("/ui/api-keys/new?" + urlencode(
        {"endpoint": "demo GET /account/1/balance"}))
    assert refused.status_code == 400 and "this endpoint refuses API keys" in refused.text
    client_pick = ui.client.get("/ui/clients/new/endpoints").text
    balance = re.search(r'<input[^>]*value="demo GET /account/1/balance"[^>]*>',
                        client_pick).group(0)
    assert "disabled" not in balance


@pytest.mark.parametrize("value", ["nonsense", "demo GET /nope", "other GET /sms/3/logs", ""])
def test_bad_picks_are_a_400_page(ui, demo, value):
    response = ui.client.get("/ui/api-keys/new?" + urlencode({"endpoint": value}))
    assert response.status_code == 400 and "cannot be reached" in response.text


def test_create_form_without_a_pick_is_unchanged(ui, demo):
    form = ui.client.get("/ui/api-keys/new")
    assert form.status_code == 200 and ticked(form.text) == []
    assert "Pick the endpoints it must call" in form.text

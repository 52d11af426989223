"""Smoke: the real guard in front of the demo API, against a live authorization server."""

import infobip_api_client as ib
import pytest
import requests
from conftest import basic_auth
from demo_support import serve
from infobip_api_client.exceptions import ForbiddenException

from authserver.credentials import api_keys
from resource_demo.demo.app import create_app as create_demo_app
from resource_demo.guard.flask import ResourceGuard


@pytest.fixture
def demo(live_server, oauth_clients_live):
    rs_id, rs_secret = oauth_clients_live.create(scope="tokens:introspect")
    app = create_demo_app({"GUARD_ISSUER": live_server.url, "GUARD_CLIENT_ID": rs_id,
                           "GUARD_CLIENT_SECRET": rs_secret})
    with serve(app) as url:
        yield url
    ResourceGuard.close(app)


@pytest.fixture
def oauth_clients_live(live_server):
    from conftest import OAuthClients

    return OAuthClients(live_server.app)


def test_infobip_client_sends_sms_with_token_and_key(live_server, oauth_clients_live, demo):
    client_id, secret = oauth_clients_live.create(scope="message:send")
    token = requests.post(live_server.url + "/oauth2/token", data={"grant_type": "client_credentials"},
                          headers=basic_auth(client_id, secret)).json()["access_token"]
    with live_server.app.app_context():
        _, key = api_keys.create_api_key(name="k", scopes="sms:message:send", actor="t")
    for api_key, prefix in ((token, "Bearer"), (key, "App")):
        config = ib.Configuration(host=demo, api_key=api_key, api_key_prefix=prefix)
        with ib.ApiClient(config) as api_client:
            sms = ib.SmsApi(api_client)
            request = ib.SmsRequest(messages=[ib.SmsMessage(
                destinations=[ib.SmsDestination(to="41793026727")],
                content=ib.SmsMessageContent(actual_instance=ib.SmsTextContent(text="hi")),
                sender="demo")])
            response = sms.send_sms_messages(sms_request=request)
            assert response.messages[0].status.group_name == "PENDING"
            with pytest.raises(ForbiddenException) as forbidden:
                sms.get_outbound_sms_message_logs()
            assert forbidden.value.status == 403

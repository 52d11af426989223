"""Smoke: introspection of a JWT and an API key, revocation, the feed."""

from conftest import basic_auth

from authserver.credentials import api_keys


def test_introspect_revoke_feed(app, client, oauth_clients, get_token):
    rs_id, rs_secret = oauth_clients.create(scope="tokens:introspect")
    svc_id, svc_secret = oauth_clients.create(scope="message:send")
    token = get_token(svc_id, svc_secret).json["access_token"]
    rs = basic_auth(rs_id, rs_secret)
    answer = client.post("/oauth2/introspect", data={"token": token}, headers=rs)
    assert answer.status_code == 200 and answer.json["active"] is True
    assert answer.json["client_id"] == svc_id and answer.json["scope"] == "message:send"
    with app.app_context():
        record, secret = api_keys.create_api_key(name="k", scopes="sms:message:send", actor="t",
                                                 allowed_ips=["127.0.0.1"])
        key_id = record.id
    answer = client.post("/oauth2/introspect", data={"token": secret}, headers=rs)
    assert answer.json["active"] is True and answer.json["allowed_ips"] == ["127.0.0.1"]
    revoked = client.post("/oauth2/revoke", data={"token": token},
                          headers=basic_auth(svc_id, svc_secret))
    assert revoked.status_code == 200
    answer = client.post("/oauth2/introspect", data={"token": token}, headers=rs)
    assert answer.json == {"active": False}
    feed = client.post("/oauth2/revocations", data={"after": "0"}, headers=rs)
    assert feed.status_code == 200 and len(feed.json["revocations"]) == 1
    with app.app_context():
        api_keys.disable_api_key(key_id, actor="t")
    answer = client.post("/oauth2/introspect", data={"token": secret}, headers=rs)
    assert answer.json == {"active": False}

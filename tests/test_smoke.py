"""A first end-to-end pass: register a client, get a token, verify it with PyJWT."""

import jwt


def test_token_verifies_against_jwks(client, oauth_clients, get_token, app):
    client_id, secret = oauth_clients.create(scope="message:send")
    response = get_token(client_id, secret, scope="sms:message:send")
    assert response.status_code == 200, response.json
    body = response.json
    assert body["token_type"] == "Bearer" and body["scope"] == "sms:message:send"
    jwks = client.get("/.well-known/jwks.json").json
    header = jwt.get_unverified_header(body["access_token"])
    assert header["typ"] == "at+jwt"
    key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]]
    claims = jwt.decode(body["access_token"], key, algorithms=[key.algorithm_name],
                        audience=app.config["DEFAULT_AUDIENCE"], issuer=app.config["ISSUER"])
    assert claims["sub"] == claims["client_id"] == client_id

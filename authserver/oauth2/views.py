"""Protocol endpoints: each view is one line into Authlib."""

from flask import Blueprint

from authserver.oauth2.server import authorization

bp = Blueprint("oauth", __name__)


@bp.post("/oauth2/token")
@bp.post("/auth/1/oauth2/token")  # the platform's path
def token():
    """RFC 6749 §3.2 token endpoint (client_credentials)."""
    return authorization.create_token_response()


@bp.post("/oauth2/introspect")
def introspect():
    """RFC 7662 token introspection (JWTs and API keys)."""
    return authorization.create_endpoint_response("introspection")


@bp.post("/oauth2/revoke")
def revoke():
    """RFC 7009 token revocation (JWTs by jti, API keys)."""
    return authorization.create_endpoint_response("revocation")


@bp.post("/oauth2/revocations")
def revocation_feed():
    """Revoked jtis after a cursor, for resource servers holding tokens:introspect."""
    return authorization.create_endpoint_response("revocation_feed")


@bp.post("/oauth2/api-key-fingerprints")
def api_key_fingerprints():
    """Fingerprints of usable API keys, for resource servers holding tokens:introspect."""
    return authorization.create_endpoint_response("api_key_fingerprints")

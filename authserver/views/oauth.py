"""Protocol endpoints: each view is one line into Authlib."""

from flask import Blueprint

from ..oauth2 import authorization

bp = Blueprint("oauth", __name__)


@bp.post("/oauth2/token")
@bp.post("/auth/1/oauth2/token")  # the platform's path
def token():
    """RFC 6749 §3.2 token endpoint (client_credentials)."""
    return authorization.create_token_response()

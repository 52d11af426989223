"""RFC 8414 server metadata and the JWKS."""

from flask import Blueprint, current_app, jsonify

from authserver.credentials.signing_keys import ALGORITHMS, jwks
from authserver.oauth2.client_assertion import ASSERTION_ALGORITHMS
from authserver.oauth2.client_auth import CLIENT_AUTH_METHODS
from authserver.scopes import current_catalogue

bp = Blueprint("well_known", __name__)

JWKS_MAX_AGE = 300


@bp.get("/.well-known/oauth-authorization-server")
def metadata():
    """RFC 8414 §2 metadata; every URL is built from the configured issuer, never Host."""
    issuer = current_app.config["ISSUER"].rstrip("/")
    auth_methods = list(CLIENT_AUTH_METHODS)
    document = {
        "issuer": current_app.config["ISSUER"],
        "token_endpoint": f"{issuer}/oauth2/token",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "scopes_supported": current_catalogue().names,
        "response_types_supported": [],
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
        "introspection_endpoint": f"{issuer}/oauth2/introspect",
        "introspection_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
        "revocation_endpoint": f"{issuer}/oauth2/revoke",
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
        "access_token_signing_alg_values_supported": list(ALGORITHMS),
        "revocation_feed_endpoint": f"{issuer}/oauth2/revocations",
        "dpop_signing_alg_values_supported": list(current_app.config["DPOP_SIGNING_ALGS"]),
        "api_key_fingerprints_endpoint": f"{issuer}/oauth2/api-key-fingerprints",
    }
    response = jsonify(document)
    response.headers["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE}"
    return response


@bp.get("/.well-known/jwks.json")
def jwks_document():
    """The public signing keys (RFC 7517 §5), cacheable for a few minutes (JW07)."""
    response = jsonify(jwks())
    response.headers["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE}"
    return response

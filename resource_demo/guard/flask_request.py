"""The credentials a Flask request carries, read for the guard's ``Authenticator``.

Apart from ``resource_demo.guard.flask`` so that an app that authenticates requests itself
(the authorization server's admin API) reads them the same way without importing the guard's
HTTP side (the JWKS and authorization-server clients, httpx).
"""

from __future__ import annotations

from urllib.parse import quote

from flask import request

from resource_demo.guard.dpop import PATH_SAFE
from resource_demo.guard.principal import CREDENTIAL_PARAMETERS, PresentedCredentials


def presented(req=None) -> PresentedCredentials:
    """The credentials a Flask request carries, for an ``Authenticator``."""
    req = req or request._get_current_object()  # one proxy look-up, not one per attribute
    environ = req.environ

    def elsewhere() -> bool:
        # RFC 6750 §2.2, §2.3: a credential in the query or a form body as well.
        if environ.get("QUERY_STRING") and any(name in req.args for name in CREDENTIAL_PARAMETERS):
            return True
        # A body that is not a form cannot carry one: decided from the raw header before
        # Werkzeug parses it (the common case: JSON bodies).
        if "x-www-form-urlencoded" not in environ.get("CONTENT_TYPE", "").lower():
            return False
        return req.mimetype == "application/x-www-form-urlencoded" and any(
            name in req.form for name in CREDENTIAL_PARAMETERS)

    # WSGI servers fold repeated header lines into one comma-joined value (RFC 9110 §5.3),
    # which read_credential refuses: the environ holds everything there is to see.
    authorization = environ.get("HTTP_AUTHORIZATION")
    dpop = environ.get("HTTP_DPOP")  # folded too: a comma in a proof is refused (§4.3 item 1)
    credentials = [authorization] if authorization is not None else []
    if dpop is None:  # the request's URI counts only for a proof (RFC 9449 §4.3)
        return PresentedCredentials(credentials, elsewhere, req.remote_addr,
                                    environ.get("HTTP_X_FORWARDED_FOR"))
    return PresentedCredentials(
        credentials, elsewhere, req.remote_addr, environ.get("HTTP_X_FORWARDED_FOR"),
        dpop=[dpop], method=req.method, scheme=req.scheme, host=req.host,
        path=quote(req.root_path + req.path, safe=PATH_SAFE),
        forwarded_proto=environ.get("HTTP_X_FORWARDED_PROTO"),
        forwarded_host=environ.get("HTTP_X_FORWARDED_HOST"))

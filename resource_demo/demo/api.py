"""The demo API: platform-shaped endpoints behind the guard, one row of ENDPOINT_SCOPES each.

Bodies follow the platform's public OpenAPI as its official Python client library
(``infobip-api-python-client``) sends and parses them. Errors use the legacy envelope of
``resource_demo.guard.errors``; the app calls ``register_error_handlers(app)`` (guard.flask). Request
validation lives in ``payloads``, SMS parsing and text counting in ``sms``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from operator import attrgetter
from typing import Any, NamedTuple, Protocol

from flask import Blueprint, current_app, request
from werkzeug.exceptions import UnsupportedMediaType

from authserver.web.text import check_request_text
from resource_demo.demo.payloads import Fields, arg_filters, read_json_object
from resource_demo.demo.sms import (
    LANGUAGE_CODES,
    MAX_TEXT,
    TRANSLITERATIONS,
    Outbound,
    parse_sms_v2,
    parse_sms_v3,
    sms_parts,
    transliterate,
)
from resource_demo.demo.storage import (
    BULK_TRANSITIONS,
    FORMS,
    PEOPLE,
    STATUS_ENROUTE,
    STATUS_PENDING,
    AccountStores,
    DemoStore,
    SmsRecord,
    new_id,
)
from resource_demo.guard.errors import BadRequest, NotFound
from resource_demo.guard.flask import current_principal

MAX_BODY_BYTES = 1024 * 1024


class EndpointScopes(NamedTuple):
    """One documented endpoint and the scopes it accepts (any one of them lets a caller in)."""

    method: str
    path: str
    scopes: tuple[str, ...]
    summary: str
    api_keys: bool = True  # False: App keys are refused even when they hold a scope


# docs/scopes.md, "Demo API endpoints", documents this table: the one source for the guard
# decorators and for GET /scopes.
ENDPOINT_SCOPES: tuple[EndpointScopes, ...] = (
    EndpointScopes("POST", "/sms/3/messages",
                   ("message:send", "sms:message:send", "sms:manage"), "Send SMS message"),
    EndpointScopes("POST", "/sms/2/text/advanced",
                   ("message:send", "sms:message:send", "sms:manage"),
                   "Send SMS message (older version)"),
    EndpointScopes("GET", "/sms/3/reports",
                   ("message:send", "sms:message:send", "sms:manage"),
                   "Get outbound SMS message delivery reports"),
    EndpointScopes("GET", "/sms/1/inbox/reports",
                   ("inbound-message:read", "sms:inbound-message:read", "sms:manage"),
                   "Get inbound SMS messages"),
    EndpointScopes("GET", "/sms/3/logs", ("sms:logs:read", "sms:manage"),
                   "Get outbound SMS message logs"),
    EndpointScopes("POST", "/sms/1/preview", ("sms:manage",), "Preview SMS message"),
    EndpointScopes("GET", "/sms/1/bulks", ("sms:message:send", "sms:manage"),
                   "Get scheduled SMS messages"),
    EndpointScopes("PUT", "/sms/1/bulks/status", ("sms:manage",),
                   "Update scheduled SMS messages status"),
    # docs/scopes.md: key management, sub-account and balance endpoints do not accept API keys.
    EndpointScopes("GET", "/account/1/balance", ("account-management:manage",),
                   "Get account balance", api_keys=False),
    EndpointScopes("POST", "/whatsapp/1/message/text",
                   ("message:send", "whatsapp:message:send", "whatsapp:manage"),
                   "Send WhatsApp text message"),
    EndpointScopes("POST", "/email/3/send",
                   ("message:send", "email:message:send", "email:manage"), "Send email"),
    EndpointScopes("GET", "/people/2/persons", ("people:manage", "people:read"), "Get people"),
    EndpointScopes("GET", "/forms/1/forms", ("forms:manage", "forms:read", "web:sdk"),
                   "Get forms"),
)


class Guard(Protocol):
    """What the blueprint needs from ``resource_demo.guard.flask``."""

    def require_any_scope(self, *scopes: str,
                          allow_api_keys: bool = True) -> Callable[[Callable], Callable]: ...


def _accept(store: DemoStore, outbound: Outbound, bulk_id_path: str) -> None:
    try:
        store.add_sms(outbound.records, scheduled_bulk=outbound.bulk)
    except ValueError as exc:  # the bulk id is taken
        raise BadRequest(validation_errors={bulk_id_path: [str(exc)]}) from None


def _bulk_id_arg() -> str:
    f = Fields()
    bulk_id = f.arg("bulkId", required=True)
    f.check()
    return bulk_id


# -- the endpoints ---------------------------------------------------------------------

_VIEW_NAMES: dict[tuple[str, str], str] = {}


def _serves(method: str, path: str) -> Callable[[Callable], Callable]:
    """Mark a DemoApi method as the view of one ENDPOINT_SCOPES row."""
    def mark(view: Callable) -> Callable:
        _VIEW_NAMES[(method, path)] = view.__name__
        return view
    return mark


class DemoApi:
    """The views; they parse input, call the store and return platform-shaped bodies."""

    def __init__(self, stores: AccountStores) -> None:
        self.stores = stores

    def store(self) -> DemoStore:
        """The caller's account's store (AC05: nothing is shared across accounts)."""
        principal = current_principal()  # None only behind a pass-through guard (bench)
        return self.stores.for_account(principal.account_id if principal else None)

    @_serves("POST", "/sms/3/messages")
    def send_sms_messages(self) -> dict:
        """Send SMS (``SmsRequest`` → ``SmsResponse``)."""
        outbound, with_count = parse_sms_v3(read_json_object(), self.store().now())
        _accept(self.store(), outbound, "options.schedule.bulkId")
        messages = [{"messageId": r.message_id, "status": STATUS_PENDING, "destination": r.to,
                     **({"details": {"messageCount": r.message_count}} if with_count else {})}
                    for r in outbound.records]
        return _without_none({"bulkId": outbound.bulk_id, "messages": messages})

    @_serves("POST", "/sms/2/text/advanced")
    def send_sms_advanced(self) -> dict:
        """Send SMS through the older v2 shape (``from``, ``text``)."""
        outbound = parse_sms_v2(read_json_object(), self.store().now())
        _accept(self.store(), outbound, "bulkId")
        messages = [{"to": r.to, "status": STATUS_PENDING, "messageId": r.message_id}
                    for r in outbound.records]
        return _without_none({"bulkId": outbound.bulk_id, "messages": messages})

    @_serves("GET", "/sms/3/reports")
    def get_delivery_reports(self) -> dict:
        """Delivery reports not yet fetched (``SmsDeliveryResult``)."""
        f = Fields()
        limit = f.arg_int("limit", 50, 1, 1000)
        f.check()
        match = arg_filters(_RECORD_FILTERS)
        return {"results": self.store().take_reports(match, limit, consume=_consumes())}

    @_serves("GET", "/sms/1/inbox/reports")
    def get_inbound_messages(self) -> dict:
        """Inbound messages not yet fetched (``SmsInboundMessageResult``)."""
        f = Fields()
        limit = f.arg_int("limit", 50, 1, 1000)
        f.check()
        match = arg_filters({k: (lambda m, k=k: m.get(k)) for k in
                              ("applicationId", "entityId", "campaignReferenceId")})
        results, pending = self.store().take_inbound(match, limit, consume=_consumes())
        return {"results": results, "messageCount": len(results), "pendingMessageCount": pending}

    @_serves("GET", "/sms/3/logs")
    def get_logs(self) -> dict:
        """Outbound logs, newest first (``SmsLogsResponse``)."""
        f = Fields()
        limit = f.arg_int("limit", 50, 1, 1000)
        since, until = f.arg_timestamp("sentSince"), f.arg_timestamp("sentUntil")
        f.arg("generalStatus", choices=("ACCEPTED", "PENDING", "UNDELIVERABLE", "DELIVERED",
                                        "EXPIRED", "REJECTED"))
        use_cursor = f.arg("useCursor", choices=("true", "false")) == "true"
        cursor = f.arg_int("cursor", 0, 1, 999_999_999) if use_cursor else 0
        if request.args.get("mnc") and not request.args.get("mcc"):
            f.fail("mnc", "requires mcc")
        f.check()
        by_args = arg_filters({**_RECORD_FILTERS, "sender": attrgetter("sender"),
                                "destination": attrgetter("to"),
                                "generalStatus": lambda r: r.status["groupName"]})
        by_network = bool(request.args.get("mcc"))

        def match(record: SmsRecord) -> bool:
            if by_network:
                return False  # demo messages carry no network codes
            sent = record.sent_at
            return by_args(record) and (since is None or sent >= since) and (
                until is None or sent <= until)

        results, next_seq = self.store().query_logs(match, limit, before_seq=cursor or None)
        body: dict = {"results": results}
        if use_cursor:
            body["cursor"] = _without_none(
                {"limit": limit, "nextCursor": str(next_seq) if next_seq else None})
        return body

    @_serves("POST", "/sms/1/preview")
    def preview_sms_message(self) -> dict:
        """Parts and characters left, as is and with the asked configuration."""
        body, f = read_json_object(), Fields()
        text = f.get(body, "text", str, required=True, max_len=MAX_TEXT)
        language = f.get(body, "languageCode", str, choices=LANGUAGE_CODES)
        code = f.get(body, "transliteration", str, choices=TRANSLITERATIONS)
        f.check()
        previews = [_preview(text, {})]
        if language or code:
            configuration = _without_none({
                "language": {"languageCode": language} if language else None,
                "transliteration": code})
            previews.append(_preview(transliterate(text, code), configuration))
        return {"originalText": text, "previews": previews}

    @_serves("GET", "/sms/1/bulks")
    def get_scheduled_sms_messages(self) -> dict:
        """A scheduled bulk's send time (``SmsBulkResponse``)."""
        bulk = self.store().get_bulk(_bulk_id_arg())
        if bulk is None:
            raise NotFound()
        return bulk

    @_serves("PUT", "/sms/1/bulks/status")
    def update_scheduled_sms_messages_status(self) -> dict:
        """Pause, resume or cancel a scheduled bulk."""
        bulk_id, body, f = _bulk_id_arg(), read_json_object(), Fields()
        status = f.get(body, "status", str, required=True, choices=tuple(BULK_TRANSITIONS))
        f.check()
        try:
            bulk = self.store().set_bulk_status(bulk_id, status)
        except ValueError as exc:
            raise BadRequest(validation_errors={"status": [str(exc)]}) from None
        if bulk is None:
            raise NotFound()
        return bulk

    @_serves("GET", "/account/1/balance")
    def get_balance(self) -> dict:
        """The demo account balance."""
        return self.store().balance()

    @_serves("POST", "/whatsapp/1/message/text")
    def send_whatsapp_text(self) -> dict:
        """Accept a WhatsApp text message (not stored)."""
        body, f = read_json_object(), Fields()
        f.get(body, "from", str, required=True, max_len=24)
        to = f.get(body, "to", str, required=True, max_len=24)
        message_id = f.get(body, "messageId", str, max_len=50)
        content = f.get(body, "content", dict, required=True)
        f.get(content, "text", str, at="content", required=True, max_len=MAX_TEXT)
        f.get(content, "previewUrl", bool, at="content")
        f.get(body, "callbackData", str, max_len=4000)
        f.get(body, "notifyUrl", str, max_len=2048)
        f.check()
        return {"to": to, "messageCount": 1, "messageId": message_id or new_id(),
                "status": STATUS_ENROUTE}

    @_serves("POST", "/email/3/send")
    def send_email(self) -> dict:
        """Accept an email from a multipart (or urlencoded) form (not stored)."""
        if request.mimetype not in ("multipart/form-data", "application/x-www-form-urlencoded"):
            raise UnsupportedMediaType()
        form, f = request.form, Fields()  # reading the form enforces the body limits (413)
        fields = form.to_dict()
        f.get(fields, "from", str, required=True, max_len=320)
        recipients = form.getlist("to")
        if not recipients:
            f.fail("to", "must not be null")
        for i, address in enumerate(recipients):
            if not _EMAIL.fullmatch(address):
                f.fail(f"to[{i}]", "must be a valid email address")
        if not fields.get("templateId"):
            f.get(fields, "subject", str, required=True, max_len=998)
            if not (fields.get("text") or fields.get("html")):
                f.fail("text", "text, html or templateId is required")
        bulk_id = f.get(fields, "bulkId", str, max_len=100)
        f.check()
        return {"bulkId": bulk_id or new_id(), "messages": [
            {"to": address, "messageCount": 1, "messageId": new_id(), "status": STATUS_PENDING}
            for address in recipients]}

    @_serves("GET", "/people/2/persons")
    def get_persons(self) -> dict:
        """A page of people, or one person by ``type`` and ``identifier``."""
        f = Fields()
        kind = f.arg("type", choices=tuple(_PERSON_KEYS))
        identifier = f.arg("identifier", required=kind is not None)
        limit, page = f.arg_int("limit", 20, 1, 1000), f.arg_int("page", 1, 1, 1_000_000)
        f.check()
        if kind is not None:
            for person in PEOPLE:
                if identifier in _PERSON_KEYS[kind](person):
                    return person
            raise NotFound()
        start = (page - 1) * limit
        return {"persons": PEOPLE[start:start + limit], "limit": limit, "page": page}

    @_serves("GET", "/forms/1/forms")
    def get_forms(self) -> dict:
        """A page of forms (``FormsResponse``)."""
        f = Fields()
        offset, limit = f.arg_int("offset", 0, 0, 1_000_000), f.arg_int("limit", 25, 1, 100)
        form_type = f.arg("formType")
        status = f.arg("formStatus", choices=("ACTIVE", "DISABLED", "DRAFT"))
        f.check()
        forms = [form for form in FORMS if form_type in (None, form["formType"])
                 and status in (None, form["formStatus"])]
        return {"forms": forms[offset:offset + limit], "offset": offset, "limit": limit,
                "total": len(forms)}


_RECORD_FILTERS: dict[str, Callable[[SmsRecord], Any]] = {
    "bulkId": attrgetter("bulk_id"), "messageId": attrgetter("message_id"),
    "entityId": attrgetter("entity_id"), "applicationId": attrgetter("application_id"),
    "campaignReferenceId": attrgetter("campaign_reference_id"),
}
_PERSON_KEYS: dict[str, Callable[[dict], list[str]]] = {
    "ID": lambda p: [str(p["id"])],
    "EXTERNAL_ID": lambda p: [p.get("externalId")],
    "PHONE": lambda p: [c["number"] for c in p["contactInformation"].get("phone", [])],
    "EMAIL": lambda p: [c["address"] for c in p["contactInformation"].get("email", [])],
}
_EMAIL = re.compile(r"[^@\s<>]{1,64}@[^@\s<>]{1,255}\.[^@\s<>.]{2,63}")


def _consumes() -> bool:
    # HEAD must stay safe (RFC 9110 §9.3.2): peek instead of handing reports out.
    return request.method != "HEAD"


def _preview(text: str, configuration: dict) -> dict:
    parts, remaining = sms_parts(text)
    return {"textPreview": text, "messageCount": parts, "charactersRemaining": remaining,
            "configuration": configuration}


def _without_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def _limit_body_size() -> None:
    """Cap request bodies for this API; a lower app-wide MAX_CONTENT_LENGTH still wins."""
    app_limit = current_app.config.get("MAX_CONTENT_LENGTH")
    request.max_content_length = min(app_limit or MAX_BODY_BYTES, MAX_BODY_BYTES)


def list_scopes() -> dict:
    """GET /scopes (no credential): each endpoint, the scopes it accepts (any one of them) and
    whether API keys may call it."""
    return {"endpoints": [
        {"method": e.method, "path": e.path, "summary": e.summary, "scopes": list(e.scopes),
         "apiKeys": e.api_keys}
        for e in ENDPOINT_SCOPES]}


def create_blueprint(guard: Guard, store: AccountStores | None = None) -> Blueprint:
    """The demo API as a blueprint; each view guarded by its ENDPOINT_SCOPES row."""
    if set(_VIEW_NAMES) != {(e.method, e.path) for e in ENDPOINT_SCOPES}:
        raise RuntimeError("ENDPOINT_SCOPES and DemoApi views disagree")
    api = DemoApi(store if store is not None else AccountStores())
    bp = Blueprint("resource_demo", __name__)
    bp.before_request(_limit_body_size)
    bp.before_request(check_request_text)  # the server's one text validation (AD12)
    for endpoint in ENDPOINT_SCOPES:
        name = _VIEW_NAMES[(endpoint.method, endpoint.path)]
        view = guard.require_any_scope(*endpoint.scopes, allow_api_keys=endpoint.api_keys)(
            getattr(api, name))
        bp.add_url_rule(endpoint.path, endpoint=name, view_func=view, methods=[endpoint.method])
    bp.add_url_rule("/scopes", endpoint="scopes", view_func=list_scopes, methods=["GET"])
    return bp

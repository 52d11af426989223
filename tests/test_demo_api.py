"""The demo API over real HTTP, driven by the platform's official client library.

The real guard stands in front of it, against a live authorization server: every request
carries a JWT (``Bearer``) or an API key (``App``) that server issued, minted once per scope
set per module (tests/guard_support.py). API keys are the default credential here; the
credential-kind tests run with both.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from demo_support import FakeClock
from guard_support import (  # noqa: F401  (fixtures)
    BAD_REQUEST,
    FORBIDDEN,
    SCHEMES,
    UNAUTHORIZED,
    auth_server,
    credentials,
    guard_config,
    running,
)
from infobip_api_client import (
    ApiClient,
    Configuration,
    FormsApi,
    SmsApi,
    SmsBulkStatus,
    SmsDestination,
    SmsMessage,
    SmsMessageContent,
    SmsMessageRequestOptions,
    SmsPreviewRequest,
    SmsRequest,
    SmsRequestSchedulingSettings,
    SmsTextContent,
    SmsUpdateStatusRequest,
)
from infobip_api_client.exceptions import (
    ApiException,
    BadRequestException,
    ForbiddenException,
    NotFoundException,
    UnauthorizedException,
)

from authserver.accounts import registry as accounts
from resource_demo.demo.api import ENDPOINT_SCOPES, MAX_BODY_BYTES
from resource_demo.demo.app import create_app as create_demo_app
from resource_demo.demo.storage import AccountStores, DemoStore, seed_inbound
from resource_demo.guard.errors import ServiceUnavailable

GENERAL_ERROR = ('{"requestError":{"serviceException":{"messageId":"GENERAL_ERROR",'
                 '"text":"Something went wrong. Please contact support."}}}')

# docs/scopes.md, "Demo API endpoints", copied by hand on purpose:
# the module's table must not drift from the documented one.
DOCUMENTED_SCOPES = {
    ("POST", "/sms/3/messages"): ("message:send", "sms:message:send", "sms:manage"),
    ("POST", "/sms/2/text/advanced"): ("message:send", "sms:message:send", "sms:manage"),
    ("GET", "/sms/3/reports"): ("message:send", "sms:message:send", "sms:manage"),
    ("GET", "/sms/1/inbox/reports"):
        ("inbound-message:read", "sms:inbound-message:read", "sms:manage"),
    ("GET", "/sms/3/logs"): ("sms:logs:read", "sms:manage"),
    ("POST", "/sms/1/preview"): ("sms:manage",),
    ("GET", "/sms/1/bulks"): ("sms:message:send", "sms:manage"),
    ("PUT", "/sms/1/bulks/status"): ("sms:manage",),
    ("GET", "/account/1/balance"): ("account-management:manage",),
    ("POST", "/whatsapp/1/message/text"):
        ("message:send", "whatsapp:message:send", "whatsapp:manage"),
    ("POST", "/email/3/send"): ("message:send", "email:message:send", "email:manage"),
    ("GET", "/people/2/persons"): ("people:manage", "people:read"),
    ("GET", "/forms/1/forms"): ("forms:manage", "forms:read", "web:sdk"),
}
# docs/scopes.md: key management, sub-account and balance endpoints do not accept API keys.
REFUSE_API_KEYS = {("GET", "/account/1/balance")}


# -- fixtures ----------------------------------------------------------------------------

@pytest.fixture
def demo_clock():
    """The store's clock."""
    return FakeClock()


@pytest.fixture
def demo_store(demo_clock):
    """Fresh demo stores per test (one per account, on the test's clock)."""
    return AccountStores(lambda: DemoStore(clock=demo_clock))


@pytest.fixture
def demo_app(auth_server, credentials, demo_store):
    """The demo API behind the real guard, plus two routes that fail on purpose."""
    app = create_demo_app(guard_config(auth_server, credentials, TESTING=True), store=demo_store)

    @app.get("/test/boom")
    def boom():
        raise RuntimeError("secret internals /etc/passwd")

    @app.get("/test/unavailable")
    def unavailable():
        raise ServiceUnavailable(retry_after=7)

    return app


@pytest.fixture
def demo_url(demo_app):
    """Base URL of the demo app served over real HTTP."""
    with running(demo_app) as url:
        yield url


@pytest.fixture
def api_client(demo_url, credentials):
    """``api_client(scopes, kind="api_key")``: an official ApiClient holding a real credential
    with ``scopes`` (space-separated; None: no credential)."""
    made: list[ApiClient] = []

    def make(scopes: str | None, kind: str = "api_key") -> ApiClient:
        if scopes is None:
            configuration = Configuration(host=demo_url)
        elif kind == "api_key":
            configuration = Configuration(host=demo_url,
                                          api_key=credentials.api_key(scopes))
        else:  # the library's only auth hook is the API-key header; the prefix is free
            configuration = Configuration(host=demo_url, api_key=credentials.jwt(scopes),
                                          api_key_prefix=SCHEMES[kind])
        made.append(ApiClient(configuration))
        return made[-1]

    yield make
    for client in made:
        client.rest_client.pool_manager.clear()


@pytest.fixture
def sms(api_client):
    """An SmsApi holding every SMS scope."""
    return SmsApi(api_client("sms:manage"))


@pytest.fixture
def http(demo_url, credentials):
    """``http(method, path, scopes="sms:manage", kind="api_key", url=demo_url, **kwargs)``: a raw
    request with a real credential (for endpoints the library does not call, broken bodies)."""

    def request(method: str, path: str, scopes: str = "sms:manage", *, kind: str = "api_key",
                url: str = demo_url, **kwargs) -> requests.Response:
        headers = {**credentials.header(kind, scopes), **kwargs.pop("headers", {})}
        return requests.request(method, url + path, headers=headers, timeout=10, **kwargs)

    return request


def text_message(to: str = "41793026727", text: str = "Hello from the demo",
                 **fields) -> SmsMessage:
    """One SmsMessage with text content."""
    return SmsMessage(sender="InfoSMS", destinations=[SmsDestination(to=to)],
                      content=SmsMessageContent(SmsTextContent(text=text)), **fields)


# -- sending, logs and delivery reports --------------------------------------------------

@pytest.mark.parametrize("kind", ["api_key", "jwt"])
def test_sent_sms_shows_in_logs_and_in_reports_once(api_client, kind):
    sms = SmsApi(api_client("sms:message:send sms:logs:read", kind))
    sent = sms.send_sms_messages(SmsRequest(messages=[text_message()]))
    [accepted] = sent.messages
    assert accepted.destination == "41793026727"
    assert accepted.status.group_name == "PENDING" and accepted.status.name == "PENDING_ACCEPTED"

    [log] = sms.get_outbound_sms_message_logs(message_id=[accepted.message_id]).results
    assert log.destination == "41793026727" and log.sender == "InfoSMS"
    assert log.content.actual_instance.text == "Hello from the demo"
    assert log.status.group_name == "DELIVERED" and log.message_count == 1
    assert log.sent_at.utcoffset() == timedelta(0)

    [report] = sms.get_outbound_sms_message_delivery_reports(
        message_id=accepted.message_id).results
    assert report.message_id == accepted.message_id and report.to == "41793026727"
    assert report.status.name == "DELIVERED_TO_HANDSET" and report.error.name == "NO_ERROR"
    assert report.price.currency == "EUR"
    # Reports are handed out once, as on the platform; logs stay.
    assert not sms.get_outbound_sms_message_delivery_reports().results
    assert sms.get_outbound_sms_message_logs().results


def test_send_many_gets_bulk_id_and_counts(sms):
    long_text = "x" * 161  # two GSM-7 parts
    request = SmsRequest(
        messages=[text_message("385911111111"), text_message("385922222222", long_text)],
        options=SmsMessageRequestOptions(include_sms_count_in_response=True))
    sent = sms.send_sms_messages(request)
    assert sent.bulk_id
    assert [m.details.message_count for m in sent.messages] == [1, 2]
    logs = sms.get_outbound_sms_message_logs(bulk_id=[sent.bulk_id]).results
    assert {log.destination for log in logs} == {"385911111111", "385922222222"}


def test_logs_filters_and_cursor(sms, demo_clock):
    since = demo_clock.now
    for n in range(3):
        demo_clock.advance(seconds=1)
        sms.send_sms_messages(SmsRequest(messages=[text_message(f"3859100000{n}")]))
    first = sms.get_outbound_sms_message_logs(limit=2, use_cursor=True)
    assert [log.destination for log in first.results] == ["38591000002", "38591000001"]
    assert first.cursor.limit == 2 and first.cursor.next_cursor
    rest = sms.get_outbound_sms_message_logs(limit=2, use_cursor=True,
                                             cursor=first.cursor.next_cursor)
    assert [log.destination for log in rest.results] == ["38591000000"]
    assert rest.cursor.next_cursor is None
    later = sms.get_outbound_sms_message_logs(sent_since=since + timedelta(seconds=2))
    assert len(later.results) == 2
    assert not sms.get_outbound_sms_message_logs(general_status="REJECTED").results
    assert len(sms.get_outbound_sms_message_logs(destination="38591000001").results) == 1


def test_head_does_not_consume_reports(http, sms):
    sms.send_sms_messages(SmsRequest(messages=[text_message()]))
    assert http("HEAD", "/sms/3/reports").status_code == 200
    assert len(sms.get_outbound_sms_message_delivery_reports().results) == 1


def test_concurrent_sends_are_all_kept(http):
    def send(n: int) -> int:
        body = {"messages": [{"destinations": [{"to": f"4179{n:04d}"}, {"to": f"4178{n:04d}"}],
                              "content": {"text": "x"}}]}
        return http("POST", "/sms/3/messages", json=body).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(send, range(40))) == {200}
    logs = http("GET", "/sms/3/logs?limit=1000").json()["results"]
    reports = http("GET", "/sms/3/reports?limit=1000").json()["results"]
    assert len(logs) == len(reports) == 80
    assert len({log["messageId"] for log in logs}) == 80


def test_older_send_endpoint(http):
    body = {"messages": [{"from": "InfoSMS", "text": "Older API",
                          "destinations": [{"to": "41793026727", "messageId": "my-id-1"}]}]}
    response = http("POST", "/sms/2/text/advanced", "message:send", json=body)
    assert response.status_code == 200
    [message] = response.json()["messages"]
    assert message["to"] == "41793026727" and message["messageId"] == "my-id-1"
    assert message["status"]["groupName"] == "PENDING"
    reports = http("GET", "/sms/3/reports", "message:send").json()["results"]
    assert [r["messageId"] for r in reports] == ["my-id-1"]


def test_store_is_bounded(http, auth_server, credentials):
    small = AccountStores(lambda: DemoStore(max_messages=3))
    app = create_demo_app(guard_config(auth_server, credentials), store=small)
    with running(app) as url:
        for n in range(5):
            body = {"messages": [{"destinations": [{"to": f"4179{n}"}], "content": {"text": "x"}}]}
            assert http("POST", "/sms/3/messages", json=body, url=url).status_code == 200
        logs = http("GET", "/sms/3/logs", url=url).json()["results"]
        assert [log["destination"] for log in logs] == ["41794", "41793", "41792"]


# -- inbound, preview, scheduled bulks ---------------------------------------------------

def test_inbound_messages_are_handed_out_once(api_client, demo_store, auth_server):
    with auth_server.app.app_context():  # the test's credentials are the platform account's
        inbox = demo_store.for_account(accounts.platform_account_id())
    seed_inbound(inbox, sender="385911234567", to="447860099299", text="JOIN demo",
                 keyword="JOIN")
    seed_inbound(inbox, sender="385981112233", to="447860099299", text="Hello")
    sms = SmsApi(api_client("inbound-message:read"))
    first = sms.get_inbound_sms_messages(limit=1)
    assert first.message_count == 1 and first.pending_message_count == 1
    [message] = first.results
    assert message.var_from == "385911234567" and message.keyword == "JOIN"
    assert message.clean_text == "demo" and message.received_at.utcoffset() == timedelta(0)
    assert sms.get_inbound_sms_messages().results[0].text == "Hello"
    assert sms.get_inbound_sms_messages().results == []


def test_preview(sms):
    plain = sms.preview_sms_message(SmsPreviewRequest(text="Hello"))
    assert plain.original_text == "Hello"
    [as_is] = plain.previews
    assert (as_is.message_count, as_is.characters_remaining) == (1, 155)

    accented = sms.preview_sms_message(
        SmsPreviewRequest(text="Čestitamo!", transliteration="CENTRAL_EUROPEAN"))
    unicode_, transliterated = accented.previews
    assert unicode_.characters_remaining == 60  # UCS-2: 70 per SMS
    assert transliterated.text_preview == "Cestitamo!"
    assert transliterated.characters_remaining == 150
    assert transliterated.configuration.transliteration == "CENTRAL_EUROPEAN"


def test_scheduled_bulk_pause_resume_and_release(sms, demo_clock):
    send_at = demo_clock.now + timedelta(hours=1)
    options = SmsMessageRequestOptions(
        schedule=SmsRequestSchedulingSettings(bulk_id="spring-sale", send_at=send_at))
    sent = sms.send_sms_messages(SmsRequest(messages=[text_message()], options=options))
    assert sent.bulk_id == "spring-sale"

    bulk = sms.get_scheduled_sms_messages(bulk_id="spring-sale")
    assert bulk.bulk_id == "spring-sale" and bulk.send_at == send_at
    paused = sms.update_scheduled_sms_messages_status(
        bulk_id="spring-sale", sms_update_status_request=SmsUpdateStatusRequest(
            status=SmsBulkStatus.PAUSED))
    assert paused.status == "PAUSED"

    demo_clock.advance(hours=2)
    assert not sms.get_outbound_sms_message_delivery_reports().results  # paused: not sent
    resumed = sms.update_scheduled_sms_messages_status(
        bulk_id="spring-sale", sms_update_status_request=SmsUpdateStatusRequest(
            status=SmsBulkStatus.PENDING))
    assert resumed.status == "FINISHED"  # due, so released at once
    assert len(sms.get_outbound_sms_message_delivery_reports().results) == 1

    with pytest.raises(BadRequestException) as error:  # finished bulks cannot change
        sms.update_scheduled_sms_messages_status(
            bulk_id="spring-sale", sms_update_status_request=SmsUpdateStatusRequest(
                status=SmsBulkStatus.CANCELED))
    assert "status" in json.loads(error.value.body)["requestError"]["serviceException"][
        "validationErrors"]


def test_canceled_bulk_is_never_sent(sms, demo_clock):
    options = SmsMessageRequestOptions(schedule=SmsRequestSchedulingSettings(
        bulk_id="b-1", send_at=demo_clock.now + timedelta(minutes=5)))
    sms.send_sms_messages(SmsRequest(messages=[text_message()], options=options))
    canceled = sms.update_scheduled_sms_messages_status(
        bulk_id="b-1", sms_update_status_request=SmsUpdateStatusRequest(status="CANCELED"))
    assert canceled.status == "CANCELED"
    demo_clock.advance(hours=1)
    assert not sms.get_outbound_sms_message_delivery_reports().results
    with pytest.raises(BadRequestException) as error:  # the bulk id stays taken
        sms.send_sms_messages(SmsRequest(messages=[text_message()], options=options))
    assert json.loads(error.value.body)["requestError"]["serviceException"][
        "validationErrors"] == {"options.schedule.bulkId": ["bulk already exists"]}


def test_unknown_bulk_is_404(sms):
    with pytest.raises(NotFoundException) as error:
        sms.get_scheduled_sms_messages(bulk_id="nope")
    assert json.loads(error.value.body)["requestError"]["serviceException"]["messageId"] == \
        "NOT_FOUND"


# -- 401 and 403 through the library -----------------------------------------------------

def test_missing_scope_is_forbidden_with_the_exact_body(api_client):
    sms = SmsApi(api_client("sms:logs:read"))
    with pytest.raises(ForbiddenException) as error:
        sms.send_sms_messages(SmsRequest(messages=[text_message()]))
    assert error.value.status == 403 and error.value.body == FORBIDDEN
    # /sms/3/* operations declare the newer error model, so the library leaves .data empty;
    # the /sms/1/* ones declare the legacy envelope and parse it.
    assert error.value.data is None
    with pytest.raises(ForbiddenException) as error:
        sms.get_inbound_sms_messages()
    assert error.value.body == FORBIDDEN
    assert error.value.data.request_error.service_exception.message_id == "FORBIDDEN"


@pytest.mark.parametrize("kind", ["api_key", "jwt"])
def test_forbidden_for_both_credential_kinds(api_client, kind):
    with pytest.raises(ForbiddenException) as error:
        FormsApi(api_client("people:read", kind)).get_forms()
    assert error.value.body == FORBIDDEN


def test_no_credential_is_unauthorized(api_client):
    with pytest.raises(UnauthorizedException) as error:
        SmsApi(api_client(None)).get_outbound_sms_message_logs()
    assert error.value.status == 401 and error.value.body == UNAUTHORIZED


def test_library_ignores_access_token(demo_url, credentials):
    """Configuration(access_token=...) sends nothing: a bearer token must go in api_key."""
    client = ApiClient(Configuration(host=demo_url, access_token=credentials.jwt("sms:manage")))
    try:
        with pytest.raises(UnauthorizedException):
            SmsApi(client).get_outbound_sms_message_logs()
    finally:
        client.rest_client.pool_manager.clear()


# -- the scope table ---------------------------------------------------------------------

def test_table_matches_scopes_md():
    assert {(e.method, e.path): e.scopes for e in ENDPOINT_SCOPES} == DOCUMENTED_SCOPES


def test_scopes_endpoint_lists_the_table(demo_url):
    response = requests.get(demo_url + "/scopes", timeout=10)
    assert response.status_code == 200
    listed = {(e["method"], e["path"]): tuple(e["scopes"]) for e in response.json()["endpoints"]}
    assert listed == DOCUMENTED_SCOPES
    assert all(e["summary"] for e in response.json()["endpoints"])
    refusing = {(e["method"], e["path"]) for e in response.json()["endpoints"] if not e["apiKeys"]}
    assert refusing == REFUSE_API_KEYS


def test_table_refuses_api_keys_where_scopes_md_says():
    assert {(e.method, e.path) for e in ENDPOINT_SCOPES if not e.api_keys} == REFUSE_API_KEYS


ALL_ROWS = [(m, p, s) for (m, p), scopes in DOCUMENTED_SCOPES.items() for s in scopes]


def kind_for(method: str, path: str) -> str:
    """API keys where the endpoint takes them, else a JWT."""
    return "jwt" if (method, path) in REFUSE_API_KEYS else "api_key"


@pytest.mark.parametrize(("method", "path", "scope"), ALL_ROWS)
def test_each_accepted_scope_gets_in(http, method, path, scope):
    response = http(method, path, scope, kind=kind_for(method, path))
    assert response.status_code not in (401, 403), response.text


@pytest.mark.parametrize(("method", "path"), list(DOCUMENTED_SCOPES))
def test_other_scopes_are_forbidden(http, method, path):
    others = {s for scopes in DOCUMENTED_SCOPES.values() for s in scopes}
    others -= set(DOCUMENTED_SCOPES[(method, path)])
    response = http(method, path, " ".join(sorted(others)), kind=kind_for(method, path))
    assert response.status_code == 403 and response.text == FORBIDDEN


def test_balance_refuses_api_keys_even_with_the_scope(http):
    """docs/scopes.md: balance (like key management and sub-accounts) does not accept API keys."""
    refused = http("GET", "/account/1/balance", "account-management:manage")
    assert refused.status_code == 403 and refused.text == FORBIDDEN
    assert refused.headers["WWW-Authenticate"] == (
        'Bearer realm="api", error="insufficient_scope", scope="account-management:manage"')
    allowed = http("GET", "/account/1/balance", "account-management:manage", kind="jwt")
    assert allowed.status_code == 200 and allowed.json()["currency"] == "EUR"
    # A bad key is still 401: the guard authenticates before it looks at the kind.
    bad = http("GET", "/account/1/balance", headers={"Authorization": "App asak_nope"})
    assert bad.status_code == 401 and bad.text == UNAUTHORIZED


def test_bulks_need_an_sms_scope_not_message_send(http):
    assert http("GET", "/sms/1/bulks?bulkId=x", "message:send").status_code == 403


# -- validation and broken requests ------------------------------------------------------

BAD_SENDS = [
    ({}, {"messages": ["must not be null"]}),
    ({"messages": "hi"}, {"messages": ["must be an array"]}),
    ({"messages": []}, {"messages": ["must not be empty"]}),
    ({"messages": [{"destinations": [{"to": ""}], "content": {"text": "x"}}]},
     {"messages[0].destinations[0].to": ["must not be blank"]}),
    ({"messages": [{"destinations": [{"to": 41793026727}], "content": {"text": " "}}]},
     {"messages[0].destinations[0].to": ["must be a string"],
      "messages[0].content.text": ["must not be blank"]}),
    ({"messages": [{"content": {"text": "x"}}]},
     {"messages[0].destinations": ["must not be null"]}),
    ({"messages": [{"destinations": [{"to": "1"}], "content": {"text": "x", "hex": "00"}}]},
     {"messages[0].content": ["must contain either text or hex"]}),
    ({"messages": [{"destinations": [{"to": "1"}], "content": {"hex": "zz"}}]},
     {"messages[0].content.hex": ["must be pairs of hexadecimal digits"]}),
    ({"messages": [{"destinations": [{"to": "1"}], "content": {"text": "x"}}],
      "options": {"schedule": {"sendAt": "tomorrow"}}},
     {"options.schedule.sendAt": ["must be an ISO 8601 date-time with Z or an offset"]}),
    ({"messages": [{"destinations": [{"to": "1"}, "2"], "content": {"text": "x"},
                    "sender": True}]},
     {"messages[0].sender": ["must be a string"],
      "messages[0].destinations[1]": ["must be an object"]}),
]


@pytest.mark.parametrize(("body", "errors"), BAD_SENDS)
def test_send_validation_errors(http, body, errors):
    response = http("POST", "/sms/3/messages", json=body)
    assert response.status_code == 400
    assert response.json() == {"requestError": {"serviceException": {
        "messageId": "BAD_REQUEST", "text": "Bad request", "validationErrors": errors}}}


def test_validation_error_reaches_the_library(sms):
    request = SmsRequest(messages=[SmsMessage(destinations=[SmsDestination(to="")],
                                              content=SmsMessageContent(SmsTextContent(text="x")))])
    with pytest.raises(BadRequestException) as error:
        sms.send_sms_messages(request)
    details = json.loads(error.value.body)["requestError"]["serviceException"]
    assert details["validationErrors"] == {"messages[0].destinations[0].to": ["must not be blank"]}


@pytest.mark.parametrize(("query", "field"), [
    ("limit=0", "limit"), ("limit=1001", "limit"), ("limit=ten", "limit"),
    ("sentSince=yesterday", "sentSince"), ("generalStatus=HAPPY", "generalStatus"),
    ("mnc=01", "mnc"), ("useCursor=true&cursor=abc", "cursor"),
])
def test_log_query_validation(http, query, field):
    response = http("GET", "/sms/3/logs?" + query)
    assert response.status_code == 400
    assert field in response.json()["requestError"]["serviceException"]["validationErrors"]


@pytest.mark.parametrize("data", [b"{not json", b'{"messages": [', b"\xff\xfe\x00",
                                  b"[" * 100_000 + b"]" * 100_000])
def test_malformed_json_is_400(http, data):
    response = http("POST", "/sms/3/messages", data=data,
                    headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.text == BAD_REQUEST


@pytest.mark.parametrize("data", [b"[]", b'"text"', b"null", b"42"])
def test_json_that_is_not_an_object_is_400(http, data):
    response = http("POST", "/sms/3/messages", data=data,
                    headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["requestError"]["serviceException"]["validationErrors"] == {
        "body": ["must be a JSON object"]}


def test_wrong_content_type_is_415(http):
    response = http("POST", "/sms/3/messages", data="messages=1",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415
    assert response.json()["requestError"]["serviceException"]["messageId"] == \
        "UNSUPPORTED_MEDIA_TYPE"


def test_oversized_body_is_413(http):
    text = "x" * (MAX_BODY_BYTES + 1)
    body = {"messages": [{"destinations": [{"to": "1"}], "content": {"text": text}}]}
    response = http("POST", "/sms/3/messages", json=body)
    assert response.status_code == 413
    # One vocabulary with the admin API (resource_demo.guard.errors.ENVELOPE_IDS).
    assert response.json()["requestError"]["serviceException"] == {
        "messageId": "PAYLOAD_TOO_LARGE", "text": "Request body too large"}


def test_oversized_body_through_the_library(sms):
    with pytest.raises(ApiException) as error:
        sms.send_sms_messages(SmsRequest(messages=[text_message(text="x" * MAX_BODY_BYTES)]))
    assert error.value.status == 413


def test_unknown_path_and_wrong_method(http):
    missing = http("GET", "/sms/9/nothing")
    assert missing.status_code == 404
    assert missing.json()["requestError"]["serviceException"]["messageId"] == "NOT_FOUND"
    # The library also calls GET /sms/1/bulks/status; the documented table only has PUT.
    wrong = http("GET", "/sms/1/bulks/status?bulkId=x")
    assert wrong.status_code == 405 and "PUT" in wrong.headers["Allow"]
    assert wrong.json()["requestError"]["serviceException"]["messageId"] == "METHOD_NOT_ALLOWED"


def test_unexpected_error_is_500_without_details(demo_url, caplog):
    with caplog.at_level(logging.ERROR, logger="resource_demo.guard.errors"):
        response = requests.get(demo_url + "/test/boom", timeout=10)
    assert response.status_code == 500 and response.text == GENERAL_ERROR
    assert any(r.exc_info and "secret internals" in str(r.exc_info[1]) for r in caplog.records)


def test_service_unavailable_has_retry_after(demo_url):
    response = requests.get(demo_url + "/test/unavailable", timeout=10)
    assert response.status_code == 503 and response.headers["Retry-After"] == "7"
    assert response.json()["requestError"]["serviceException"] == {
        "messageId": "SERVICE_UNAVAILABLE", "text": "Service temporarily unavailable"}


# -- the other channels and directories --------------------------------------------------

def test_whatsapp_text(http):
    body = {"from": "441134960000", "to": "441134960001", "content": {"text": "Hi!"}}
    response = http("POST", "/whatsapp/1/message/text", "whatsapp:message:send",
                    json=body)
    assert response.status_code == 200
    reply = response.json()
    assert reply["to"] == "441134960001" and reply["messageCount"] == 1
    assert reply["status"]["groupName"] == "PENDING" and reply["messageId"]
    bad = http("POST", "/whatsapp/1/message/text", "whatsapp:manage",
               json={"from": "1", "to": "2", "content": {"text": "x" * 5000}})
    assert bad.json()["requestError"]["serviceException"]["validationErrors"] == {
        "content.text": ["size must be at most 4096"]}


def test_email_is_multipart(http):
    form = {"from": "Demo <demo@example.com>", "to": ["a@example.com", "b@example.com"],
            "subject": "Hello", "text": "Body"}
    response = http("POST", "/email/3/send", "email:message:send", data=form,
                    files={"attachment": ("note.txt", b"hi", "text/plain")})
    assert response.status_code == 200
    assert [m["to"] for m in response.json()["messages"]] == ["a@example.com", "b@example.com"]
    bad = http("POST", "/email/3/send", "email:manage", files={"to": (None, "nope")})
    errors = bad.json()["requestError"]["serviceException"]["validationErrors"]
    assert set(errors) == {"from", "to[0]", "subject", "text"}
    as_json = http("POST", "/email/3/send", "email:manage", json={"to": "a@b.co"})
    assert as_json.status_code == 415


def test_people(http):
    listed = http("GET", "/people/2/persons?limit=1", "people:read").json()
    assert listed["limit"] == 1 and len(listed["persons"]) == 1
    one = http("GET", "/people/2/persons?type=PHONE&identifier=385981112233",
               "people:read").json()
    assert one["firstName"] == "Luka"
    assert http("GET", "/people/2/persons?type=EMAIL&identifier=x@y.z",
                "people:read").status_code == 404


def test_forms_through_the_library(api_client):
    forms = FormsApi(api_client("web:sdk")).get_forms(form_status="ACTIVE")
    assert forms.total == 1 and forms.forms[0].form_type == "OPT_IN"
    assert forms.forms[0].elements[0].component == "TEXT"


def test_balance_goes_down_as_messages_go_out(http, sms):
    before = http("GET", "/account/1/balance", "account-management:manage", kind="jwt").json()
    assert before["currency"] == "EUR"
    sms.send_sms_messages(SmsRequest(messages=[text_message()]))
    after = http("GET", "/account/1/balance", "account-management:manage", kind="jwt").json()
    assert after["balance"] == pytest.approx(before["balance"] - 0.01)

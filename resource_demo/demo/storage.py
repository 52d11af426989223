"""What the demo API remembers: a bounded, thread-safe, in-process store per account.

Every account has its own ``DemoStore`` (``AccountStores``): messages, reports, inbound
messages, bulks and balance are partitioned by the caller's ``account_id``, so one account's
credential never reads another's data, even with a guessed message or bulk id (threat model
AC05). Outbound SMS appear in logs and (once delivered) in delivery reports, which like inbound
messages are handed out once, as on the platform. Scheduled bulks are released lazily
when something reads the store after their ``sendAt``. Nothing here is shared between
processes: the demo is one process by design.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal

Clock = Callable[[], datetime]

PRICE_PER_PART = Decimal("0.01")
CURRENCY = "EUR"

# Status and error objects as the platform documents them (groupId/groupName/id/name).
STATUS_PENDING = {"groupId": 1, "groupName": "PENDING", "id": 26, "name": "PENDING_ACCEPTED",
                  "description": "Message sent to next instance"}
STATUS_ENROUTE = {"groupId": 1, "groupName": "PENDING", "id": 7, "name": "PENDING_ENROUTE",
                  "description": "Message sent to next instance"}
STATUS_DELIVERED = {"groupId": 3, "groupName": "DELIVERED", "id": 5,
                    "name": "DELIVERED_TO_HANDSET", "description": "Message delivered to handset"}
NO_ERROR = {"groupId": 0, "groupName": "OK", "id": 0, "name": "NO_ERROR",
            "description": "No Error", "permanent": False}

# Scheduled-bulk status changes a client may ask for: PUT /sms/1/bulks/status.
BULK_TRANSITIONS = {"PAUSED": {"PENDING"}, "PENDING": {"PAUSED"},
                    "CANCELED": {"PENDING", "PAUSED"}}


def utcnow() -> datetime:
    """Return the current time, timezone-aware, in UTC."""
    return datetime.now(timezone.utc)


def format_timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds: ``2027-01-31T12:00:00.000Z``."""
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def new_id() -> str:
    """A fresh message or bulk id."""
    return str(uuid.uuid4())


def _compact(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


@dataclass(eq=False)
class SmsRecord:
    """One outbound SMS to one destination."""

    message_id: str
    to: str
    content: dict  # {"text": ...} or {"hex": ..., "dataCoding": ..., "esmClass": ...}
    message_count: int
    sender: str | None = None
    bulk_id: str | None = None
    send_at: datetime | None = None  # set for scheduled messages
    entity_id: str | None = None
    application_id: str | None = None
    campaign_reference_id: str | None = None
    callback_data: str | None = None
    seq: int = 0
    sent_at: datetime | None = None
    done_at: datetime | None = None
    status: dict = field(default_factory=lambda: STATUS_PENDING)

    @property
    def price(self) -> dict:
        return {"pricePerMessage": float(PRICE_PER_PART * self.message_count), "currency": CURRENCY}

    @property
    def platform(self) -> dict | None:
        ids = _compact({"entityId": self.entity_id, "applicationId": self.application_id})
        return ids or None

    def _common(self) -> dict:
        return {
            "bulkId": self.bulk_id,
            "messageId": self.message_id,
            "sentAt": format_timestamp(self.sent_at) if self.sent_at else None,
            "doneAt": format_timestamp(self.done_at) if self.done_at else None,
            "messageCount": self.message_count,
            "price": self.price,
            "status": self.status,
            "error": NO_ERROR,
            "platform": self.platform,
            "campaignReferenceId": self.campaign_reference_id,
        }

    def to_report(self) -> dict:
        """Shape of one ``SmsDeliveryReport``."""
        return _compact({**self._common(), "to": self.to, "sender": self.sender,
                         "callbackData": self.callback_data})

    def to_log(self) -> dict:
        """Shape of one ``SmsLog``."""
        return _compact({**self._common(), "sender": self.sender, "destination": self.to,
                         "content": self.content})


@dataclass
class Bulk:
    """A scheduled bulk: its messages wait in ``pending`` until ``send_at``."""

    bulk_id: str
    send_at: datetime
    status: str = "PENDING"
    pending: list[SmsRecord] = field(default_factory=list)


class DemoStore:
    """Bounded in-process storage for the demo API; every method is thread-safe."""

    def __init__(self, *, max_messages: int = 10_000, clock: Clock = utcnow,
                 balance: Decimal = Decimal("100")) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._max = max_messages
        self._seq = itertools.count(1)
        self._messages: deque[SmsRecord] = deque(maxlen=max_messages)
        self._reports: deque[SmsRecord] = deque(maxlen=max_messages)
        self._inbound: deque[dict] = deque(maxlen=max_messages)
        self._bulks: OrderedDict[str, Bulk] = OrderedDict()
        self._balance = balance

    def now(self) -> datetime:
        """The store's clock (injectable for tests)."""
        return self._clock()

    # -- outbound ---------------------------------------------------------------------

    def add_sms(self, records: list[SmsRecord], *, scheduled_bulk: Bulk | None = None) -> None:
        """Accept outbound messages: scheduled ones wait in their bulk, the rest are delivered.

        Raises ValueError if ``scheduled_bulk`` reuses the id of a bulk still known.
        """
        with self._lock:
            now = self._clock()
            if scheduled_bulk is not None:
                if scheduled_bulk.bulk_id in self._bulks:
                    raise ValueError("bulk already exists")
                self._keep_bulk(scheduled_bulk)
            for record in records:
                record.seq = next(self._seq)
                record.sent_at = record.send_at or now
                self._balance -= PRICE_PER_PART * record.message_count
                self._messages.append(record)
                if scheduled_bulk is None:
                    self._deliver(record, now)
            self._release_due(now)

    def query_logs(self, match: Callable[[SmsRecord], bool], limit: int,
                   before_seq: int | None = None) -> tuple[list[dict], int | None]:
        """Newest-first logs matching ``match``; also the seq to continue from, if more remain."""
        with self._lock:
            self._release_due(self._clock())
            found: list[SmsRecord] = []
            for record in reversed(self._messages):
                if before_seq is not None and record.seq >= before_seq:
                    continue
                if match(record):
                    if len(found) == limit:
                        return [r.to_log() for r in found], found[-1].seq
                    found.append(record)
            return [r.to_log() for r in found], None

    def take_reports(self, match: Callable[[SmsRecord], bool], limit: int, *,
                     consume: bool = True) -> list[dict]:
        """Hand out (and forget, if ``consume``) up to ``limit`` delivery reports, oldest first."""
        with self._lock:
            self._release_due(self._clock())
            taken = _take(self._reports, match, limit, consume)
            return [r.to_report() for r in taken]

    # -- scheduled bulks --------------------------------------------------------------

    def get_bulk(self, bulk_id: str) -> dict | None:
        """The scheduled bulk with this id (``SmsBulkResponse`` shape), or None."""
        with self._lock:
            self._release_due(self._clock())
            bulk = self._bulks.get(bulk_id)
            return bulk and {"bulkId": bulk.bulk_id, "sendAt": format_timestamp(bulk.send_at)}

    def set_bulk_status(self, bulk_id: str, status: str) -> dict | None:
        """Pause, resume or cancel a scheduled bulk (``SmsBulkStatusResponse``); None if unknown.

        Raises ValueError when the bulk's current status does not allow the change.
        """
        with self._lock:
            self._release_due(self._clock())
            bulk = self._bulks.get(bulk_id)
            if bulk is None:
                return None
            if bulk.status != status:
                if bulk.status not in BULK_TRANSITIONS.get(status, ()):
                    raise ValueError(f"cannot change status from {bulk.status} to {status}")
                bulk.status = status
                if status == "CANCELED":
                    bulk.pending.clear()
                self._release_due(self._clock())  # a resumed bulk may be due already
            return {"bulkId": bulk.bulk_id, "status": bulk.status}

    # -- inbound ----------------------------------------------------------------------

    def add_inbound(self, message: dict) -> None:
        """Queue one inbound (MO) message in the ``SmsInboundMessage`` shape."""
        with self._lock:
            self._inbound.append(message)

    def take_inbound(self, match: Callable[[dict], bool], limit: int, *,
                     consume: bool = True) -> tuple[list[dict], int]:
        """Hand out (and forget, if ``consume``) up to ``limit`` inbound messages; also how
        many remain."""
        with self._lock:
            taken = _take(self._inbound, match, limit, consume)
            return taken, len(self._inbound)

    # -- account ----------------------------------------------------------------------

    def balance(self) -> dict:
        """The demo account balance."""
        with self._lock:
            return {"balance": float(self._balance), "currency": CURRENCY}

    # -- internals (call with the lock held) ------------------------------------------

    def _deliver(self, record: SmsRecord, now: datetime) -> None:
        record.status = STATUS_DELIVERED
        record.done_at = now
        self._reports.append(record)

    def _keep_bulk(self, bulk: Bulk) -> None:
        # Bound memory: forget the oldest bulks while there are too many or too many
        # messages wait in them.
        waiting = sum(len(b.pending) for b in self._bulks.values()) + len(bulk.pending)
        while self._bulks and (waiting > self._max or len(self._bulks) >= self._max):
            _, oldest = self._bulks.popitem(last=False)
            waiting -= len(oldest.pending)
        self._bulks[bulk.bulk_id] = bulk

    def _release_due(self, now: datetime) -> None:
        for bulk in self._bulks.values():
            if bulk.status != "PENDING" or not bulk.pending:
                continue
            waiting = []
            for record in bulk.pending:
                if record.send_at is None or record.send_at <= now:
                    self._deliver(record, now)
                else:
                    waiting.append(record)
            bulk.pending = waiting
            if not waiting:
                bulk.status = "FINISHED"


class AccountStores:
    """One ``DemoStore`` per account, made by ``make`` on first use; past ``max_accounts`` the
    least recently used account's store is forgotten (the demo's memory stays bounded)."""

    def __init__(self, make: Callable[[], DemoStore] = DemoStore, *, max_accounts: int = 1000):
        self._make = make
        self._max = max_accounts
        self._stores: OrderedDict[str, DemoStore] = OrderedDict()
        self._lock = threading.Lock()

    def for_account(self, account_id: str | None) -> DemoStore:
        """The store of ``account_id`` (credentials of a server without accounts share one)."""
        key = account_id or ""
        with self._lock:
            store = self._stores.get(key)
            if store is None:
                store = self._stores[key] = self._make()
                while len(self._stores) > self._max:
                    self._stores.popitem(last=False)
            self._stores.move_to_end(key)
            return store


def _take(queue: deque, match: Callable, limit: int, consume: bool) -> list:
    if not consume:
        return [item for item in queue if match(item)][:limit]
    taken, kept = [], []
    while queue:
        item = queue.popleft()
        (taken if len(taken) < limit and match(item) else kept).append(item)
    queue.extend(kept)
    return taken


def seed_inbound(store: DemoStore, *, sender: str, to: str, text: str,
                 keyword: str | None = None, received_at: datetime | None = None,
                 application_id: str | None = None, entity_id: str | None = None,
                 campaign_reference_id: str | None = None,
                 callback_data: str | None = None) -> dict:
    """Queue an inbound SMS (as if a handset sent it) and return it as the API will."""
    clean = text
    if keyword and text.upper().startswith(keyword.upper()):
        clean = text[len(keyword):].lstrip()
    message = _compact({
        "applicationId": application_id,
        "messageId": new_id(),
        "from": sender,
        "to": to,
        "text": text,
        "cleanText": clean,
        "keyword": keyword,
        "receivedAt": format_timestamp(received_at or store.now()),
        "smsCount": 1,
        "price": {"pricePerMessage": 0.0, "currency": CURRENCY},
        "callbackData": callback_data,
        "entityId": entity_id,
        "campaignReferenceId": campaign_reference_id,
    })
    store.add_inbound(message)
    return message


# Static directory data for the people and forms endpoints (read-only).
PEOPLE: list[dict] = [
    {"id": 1001, "externalId": "crm-1001", "firstName": "Ana", "lastName": "Horvat",
     "gender": "FEMALE", "birthDate": "1990-04-12", "city": "Zagreb", "country": "Croatia",
     "origin": "API", "modifiedFrom": "API", "tags": ["VIP"], "customAttributes": {},
     "createdAt": "2026-01-05T09:30:00.000Z", "modifiedAt": "2026-02-11T16:02:00.000Z",
     "contactInformation": {"phone": [{"number": "385911234567"}],
                            "email": [{"address": "ana.horvat@example.com"}]}},
    {"id": 1002, "externalId": "crm-1002", "firstName": "Luka", "lastName": "Novak",
     "gender": "MALE", "city": "Split", "country": "Croatia", "origin": "API",
     "modifiedFrom": "API", "tags": [], "customAttributes": {"plan": "basic"},
     "createdAt": "2026-01-06T10:00:00.000Z", "modifiedAt": "2026-01-06T10:00:00.000Z",
     "contactInformation": {"phone": [{"number": "385981112233"}], "email": []}},
]

_CONTACT_FORM_ELEMENTS = [
    {"component": "TEXT", "fieldId": "first_name", "personField": "firstName",
     "label": "First name", "isRequired": True, "isHidden": False},
    {"component": "EMAIL", "fieldId": "email", "personField": "email", "label": "Email",
     "isRequired": True, "isHidden": False},
    {"component": "SUBMIT_BUTTON", "label": "Subscribe", "isRequired": False, "isHidden": False},
]
FORMS: list[dict] = [
    {"id": "5f3e7d0c-9a61-4f4e-a1b4-2d6c1f0e8a11", "name": "Newsletter opt-in",
     "elements": _CONTACT_FORM_ELEMENTS, "createdAt": "2026-01-10T08:00:00.000Z",
     "updatedAt": "2026-01-12T08:00:00.000Z",
     "actionAfterSubmission": {"type": "MESSAGE", "value": "Thank you for subscribing!"},
     "resubmitEnabled": False, "formType": "OPT_IN", "formStatus": "ACTIVE"},
    {"id": "0b9d2f4e-77c1-4c3a-9e55-6a8f2b1d3c22", "name": "Newsletter opt-out",
     "elements": _CONTACT_FORM_ELEMENTS[1:], "createdAt": "2026-01-10T08:05:00.000Z",
     "updatedAt": "2026-01-10T08:05:00.000Z",
     "actionAfterSubmission": {"type": "MESSAGE", "value": "You are unsubscribed."},
     "resubmitEnabled": True, "formType": "OPT_OUT", "formStatus": "DRAFT"},
]

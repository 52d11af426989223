"""SMS requests and text accounting: GSM-7/UCS-2 part counts, transliteration, and the
validation of the v3 (``SmsRequest``) and older v2 (``/sms/2/text/advanced``) send bodies.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from resource_demo.demo.payloads import Fields
from resource_demo.demo.storage import Bulk, SmsRecord, new_id

MAX_DESTINATIONS = 1000  # per request
MAX_TEXT = 4096  # characters; bounds what the store keeps
MAX_SCHEDULE_AHEAD = timedelta(days=180)

# -- SMS text accounting ---------------------------------------------------------------

_GSM7 = frozenset("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
                  "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
_GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")  # two septets each
TRANSLITERATIONS = ("TURKISH", "GREEK", "CYRILLIC", "SERBIAN_CYRILLIC", "BULGARIAN_CYRILLIC",
                    "CENTRAL_EUROPEAN", "BALTIC", "PORTUGUESE", "COLOMBIAN", "NON_UNICODE",
                    "NONE", "ALL")
LANGUAGE_CODES = ("TR", "ES", "PT", "AUTODETECT")


def sms_parts(text: str) -> tuple[int, int]:
    """(SMS parts, characters left in the last part): GSM-7 160/153, else UCS-2 70/67."""
    if all(c in _GSM7 or c in _GSM7_EXTENDED for c in text):
        units, single, multi = sum(2 if c in _GSM7_EXTENDED else 1 for c in text), 160, 153
    else:
        units, single, multi = len(text.encode("utf-16-le")) // 2, 70, 67
    if units <= single:
        return 1, single - units
    parts = -(-units // multi)
    return parts, parts * multi - units


def transliterate(text: str, code: str | None) -> str:
    """Approximate the platform's transliteration: drop diacritics (NFKD) unless NONE."""
    if code in (None, "NONE"):
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


class Outbound(NamedTuple):
    """Validated outbound messages, the scheduled bulk they form (if any) and its id."""

    records: list[SmsRecord]
    bulk: Bulk | None
    bulk_id: str | None


def _v3_content(f: Fields, message: dict, at: str) -> tuple[dict | None, int]:
    content = f.get(message, "content", dict, at=at, required=True)
    if content is None:
        return None, 0
    at = f"{at}.content"
    if ("text" in content) == ("hex" in content):
        f.fail(at, "must contain either text or hex")
        return None, 0
    if "hex" in content:
        data = f.get(content, "hex", str, at=at, required=True, max_len=2 * MAX_TEXT)
        f.get(content, "dataCoding", int, at=at)
        f.get(content, "esmClass", int, at=at)
        digits = re.sub(r"\s", "", data or "")
        if data is not None and not re.fullmatch(r"(?:[0-9a-fA-F]{2})+", digits):
            f.fail(f"{at}.hex", "must be pairs of hexadecimal digits")
            return None, 0
        kept = {k: content[k] for k in ("hex", "dataCoding", "esmClass") if k in content}
        return kept, max(1, -(-len(digits) // 280))  # 140 bytes per part
    text = f.get(content, "text", str, at=at, required=True, max_len=MAX_TEXT)
    code = f.get(content, "transliteration", str, at=at, choices=TRANSLITERATIONS)
    if text is None:
        return None, 0
    text = transliterate(text, code)
    return {"text": text}, sms_parts(text)[0]


def _destinations(f: Fields, message: dict, at: str, **shared: Any) -> list[SmsRecord]:
    records = []
    for j, dest in enumerate(f.get(message, "destinations", list, at=at, required=True) or []):
        path = f"{at}.destinations[{j}]"
        if not isinstance(dest, dict):
            f.fail(path, "must be an object")
            continue
        to = f.get(dest, "to", str, at=path, required=True, max_len=64)
        message_id = f.get(dest, "messageId", str, at=path, max_len=200)
        f.get(dest, "networkId", int, at=path)
        records.append(SmsRecord(message_id=message_id or new_id(), to=to, **shared))
    return records


def _check_batch(f: Fields, records: list[SmsRecord]) -> None:
    if len(records) > MAX_DESTINATIONS:
        f.fail("messages", f"at most {MAX_DESTINATIONS} destinations per request")
    ids = [r.message_id for r in records]
    if len(set(ids)) != len(ids):
        f.fail("messages", "messageId values must be unique")
    f.check()


def _check_send_at(f: Fields, send_at: datetime | None, path: str, now: datetime) -> None:
    if send_at is not None and send_at > now + MAX_SCHEDULE_AHEAD:
        f.fail(path, "must be at most 180 days in the future")


def _schedule(records: list[SmsRecord], bulk_id: str | None) -> Outbound:
    """Assign the bulk id (generated when several destinations) and group scheduled ones."""
    if bulk_id is None and (len(records) > 1 or any(r.send_at for r in records)):
        bulk_id = new_id()
    for record in records:
        record.bulk_id = bulk_id
    times = [r.send_at for r in records if r.send_at is not None]
    bulk = Bulk(bulk_id, min(times), pending=list(records)) if times and bulk_id else None
    return Outbound(records, bulk, bulk_id)


def parse_sms_v3(body: dict, now: datetime) -> tuple[Outbound, bool]:
    """Validate an ``SmsRequest``; also whether the reply includes SMS counts."""
    f = Fields()
    options = f.get(body, "options", dict) or {}
    schedule = f.get(options, "schedule", dict, at="options") or {}
    bulk_id = f.get(schedule, "bulkId", str, at="options.schedule", max_len=100)
    send_at = f.timestamp(schedule, "sendAt", at="options.schedule")
    _check_send_at(f, send_at, "options.schedule.sendAt", now)
    with_count = f.get(options, "includeSmsCountInResponse", bool, at="options") or False
    records: list[SmsRecord] = []
    for i, message in enumerate(f.get(body, "messages", list, required=True) or []):
        at = f"messages[{i}]"
        if not isinstance(message, dict):
            f.fail(at, "must be an object")
            continue
        content, count = _v3_content(f, message, at)
        opts = f.get(message, "options", dict, at=at) or {}
        platform = f.get(opts, "platform", dict, at=f"{at}.options") or {}
        hooks = f.get(message, "webhooks", dict, at=at) or {}
        records += _destinations(
            f, message, at, content=content, message_count=count, send_at=send_at,
            sender=f.get(message, "sender", str, at=at, max_len=64),
            entity_id=f.get(platform, "entityId", str, at=f"{at}.options.platform", max_len=255),
            application_id=f.get(platform, "applicationId", str,
                                 at=f"{at}.options.platform", max_len=255),
            campaign_reference_id=f.get(opts, "campaignReferenceId", str,
                                        at=f"{at}.options", max_len=255),
            callback_data=f.get(hooks, "callbackData", str, at=f"{at}.webhooks", max_len=4000))
    _check_batch(f, records)
    return _schedule(records, bulk_id), with_count


def parse_sms_v2(body: dict, now: datetime) -> Outbound:
    """Validate the older ``/sms/2/text/advanced`` request (``from``, ``text`` per message)."""
    f = Fields()
    bulk_id = f.get(body, "bulkId", str, max_len=100)
    records: list[SmsRecord] = []
    for i, message in enumerate(f.get(body, "messages", list, required=True) or []):
        at = f"messages[{i}]"
        if not isinstance(message, dict):
            f.fail(at, "must be an object")
            continue
        text = f.get(message, "text", str, at=at, required=True, max_len=MAX_TEXT) or ""
        text = transliterate(text, f.get(message, "transliteration", str, at=at,
                                         choices=TRANSLITERATIONS))
        send_at = f.timestamp(message, "sendAt", at=at)
        _check_send_at(f, send_at, f"{at}.sendAt", now)
        records += _destinations(
            f, message, at, content={"text": text}, message_count=sms_parts(text)[0],
            send_at=send_at, sender=f.get(message, "from", str, at=at, max_len=64),
            entity_id=f.get(message, "entityId", str, at=at, max_len=255),
            application_id=f.get(message, "applicationId", str, at=at, max_len=255),
            campaign_reference_id=f.get(message, "campaignReferenceId", str, at=at, max_len=255),
            callback_data=f.get(message, "callbackData", str, at=at, max_len=4000))
    _check_batch(f, records)
    return _schedule(records, bulk_id)


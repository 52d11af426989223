"""The one timestamp rule (authserver.clock.parse_isoformat) and the surfaces that use it."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from authserver.clock import parse_isoformat
from resource_demo.demo.payloads import parse_timestamp

UTC_NOON = datetime(2027, 1, 31, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("text", ["2027-01-31T12:00:00Z", "2027-01-31t12:00:00z",
                                  "2027-01-31T13:00:00+01:00", "2027-01-31T12:00:00.000000Z",
                                  "2027-01-31 12:00:00Z"])
def test_accepted_forms_are_utc(text):
    assert parse_isoformat(text) == UTC_NOON


@pytest.mark.parametrize("text", [
    "2027-01-31T12:00:00",          # no zone: never guessed
    "2027-01-31T12:00Z",            # no seconds
    "2027-01-31",                   # a date is not a timestamp
    "20270131T120000Z",             # basic format
    "2027-01-31T12:00:00+0100",     # offset without a colon (not RFC 3339)
    "2027-13-31T12:00:00Z",         # month 13
    "9999-12-31T23:59:59-01:00",    # beyond year 9999 once in UTC
    " 2027-01-31T12:00:00Z",
    "2027-01-31T12:00:00Z\n",
    "",
    None,
    20270131,
])
def test_refused_forms(text):
    with pytest.raises(ValueError):
        parse_isoformat(text)


def test_demo_takes_the_platform_offset_spelling_but_never_a_missing_zone():
    assert parse_timestamp("2027-01-31T13:00:00.000+0100") == UTC_NOON
    assert parse_timestamp("2027-01-31T12:00:00") is None

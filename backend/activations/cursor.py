"""The opaque keyset cursor of the runs listing: base64url of ``[created_at, request_id]``."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from common.errors import InvalidRequest

MIN_TIME = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(9000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class RunsCursor:
    """The last run of a page: the next page starts strictly after it."""

    created_at: datetime
    request_id: str


def encode(cursor: RunsCursor) -> str:
    raw = orjson.dumps([cursor.created_at.isoformat(), cursor.request_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(text: str) -> RunsCursor:
    """422 ``invalid_cursor`` for anything this API did not issue."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        created, request_id = orjson.loads(raw)
        when = datetime.fromisoformat(created)
        if when.tzinfo is None or not isinstance(request_id, str):
            raise ValueError("bad cursor")
        # In UTC, within what Postgres and asyncpg take (raises OverflowError near year 1/9999).
        when = when.astimezone(UTC)
        if not MIN_TIME <= when <= MAX_TIME:
            raise ValueError("cursor time out of range")
        if len(request_id) > 128 or "\x00" in request_id:
            raise ValueError("bad cursor request_id")
        return RunsCursor(when, request_id)
    except (
        ValueError,
        TypeError,
        OverflowError,
        binascii.Error,
        orjson.JSONDecodeError,
    ) as exc:
        raise InvalidRequest("cursor: not a cursor this API issued", code="invalid_cursor") from exc


@dataclass(frozen=True, slots=True)
class FeatureRunsCursor:
    """The last run of a page of the runs listing filtered by a feature (ordered by that
    feature's max activation, then request_id)."""

    max_act: float
    request_id: str


def encode_feature(cursor: FeatureRunsCursor) -> str:
    raw = orjson.dumps(["f", cursor.max_act, cursor.request_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_feature(text: str) -> FeatureRunsCursor:
    """422 ``invalid_cursor`` for anything this API did not issue (a plain listing's included)."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        kind, max_act, request_id = orjson.loads(raw)
        if kind != "f" or not isinstance(request_id, str) or isinstance(max_act, bool):
            raise ValueError("bad cursor")
        return FeatureRunsCursor(float(max_act), request_id)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise InvalidRequest("cursor: not a cursor this API issued", code="invalid_cursor") from exc

"""Reading admin API input through the pydantic models of ``admin.schemas``.

Policy (threat model AD03, AD05): a body is one JSON object (no duplicate member names, no
NaN/Infinity) that its operation's model accepts without coercion; query parameters are known
and given once. Anything else is 400 BAD_REQUEST whose ``validationErrors`` names each bad
field, never a 500. Read-only fields are refused with "is read-only", other unknown ones
with "unknown field".
"""

from __future__ import annotations

import json
from typing import TypeVar

import pydantic
from flask import request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import UnsupportedMediaType

from authserver.web.errors import ValidationError

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
#: Fields the server sets; naming them in a body is refused with "is read-only".
READ_ONLY = frozenset({
    "id", "apiKeySecret", "secret", "secretHash", "secret_hash", "keyHash", "key_hash",
    "prefix", "createdAt", "created_at", "updatedAt", "updated_at", "lastUsedAt",
    "last_used_at", "createdBy", "created_by", "owner", "ownerId", "owner_id", "clientId",
    "client_id", "clientSecret", "client_secret", "previousSecretExpiresAt", "revoked",
    "revokedAt", "revoked_at", "isAdmin", "is_admin", "hasSecret", "accountId", "account_id",
})
#: pydantic error type -> our message (the JSON type the field wants).
TYPE_WORDS = {"string_type": "must be a string", "bool_type": "must be true or false",
              "int_type": "must be an integer", "list_type": "must be a list",
              "dict_type": "must be a JSON object", "model_type": "must be a JSON object"}

Model = TypeVar("Model", bound=pydantic.BaseModel)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    names = [name for name, _ in pairs]
    if len(names) != len(set(names)):
        raise ValueError("duplicate member name")
    return dict(pairs)


def _message(error: dict) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "is read-only" if error["loc"][0] in READ_ONLY else "unknown field"
    if kind == "missing":
        return "is required"
    if error.get("input", ...) is None and len(error["loc"]) == 1:
        return "must not be null"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    if len(error["loc"]) > 1 and kind in TYPE_WORDS:
        return "must be a list of strings"  # an item of one of our string lists
    return TYPE_WORDS.get(kind, error["msg"][:1].lower() + error["msg"][1:])


def errors_of(exc: pydantic.ValidationError, where: str = "body") -> dict[str, list[str]]:
    """pydantic's errors as ``validationErrors``: one message per top-level field."""
    errors: dict[str, list[str]] = {}
    for error in exc.errors(include_url=False):
        label = str(error["loc"][0])[:64] if error["loc"] else where
        messages = errors.setdefault(label, [])
        message = _message(error)
        if message not in messages:
            messages.append(message)
    return errors


def read_body(model: type[Model], *, media_type: str = JSON, optional: bool = False) -> Model:
    """The request's JSON body, checked by ``model`` (ValidationError names each bad field).

    With ``optional``, an empty body means ``{}``. Oversized bodies are 413 (MAX_CONTENT_LENGTH).
    """
    if optional and not request.get_data(cache=True).strip():
        return model()
    body = read_json_object(media_type)
    try:
        return model.model_validate(body)
    except pydantic.ValidationError as exc:
        raise ValidationError(errors_of(exc)) from None


def read_json_object(media_type: str = JSON) -> dict:
    """The request's body: one JSON object of ``media_type`` (no duplicate member names, no
    NaN or Infinity), else 400/415."""
    if request.mimetype != media_type:
        raise UnsupportedMediaType(f"The body must be {media_type}.")
    try:
        body = json.loads(request.get_data(cache=True), object_pairs_hook=_no_duplicates,
                          parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # JSONDecodeError, bad UTF-8, huge ints, deep nesting
        raise ValidationError({"body": ["not a valid JSON document"]}) from None
    if not isinstance(body, dict):
        raise ValidationError({"body": ["must be a JSON object"]})
    return body


def read_query(model: type[Model], args: MultiDict | None = None) -> Model:
    """The query parameters (``args``, by default the request's), each given once, checked by
    ``model``."""
    args = request.args if args is None else args
    errors: dict[str, list[str]] = {}
    values: dict[str, str] = {}
    for name in args:
        given = args.getlist(name)
        if len(given) > 1:
            errors[name[:64]] = ["given more than once"]
        else:
            values[name] = given[0]
    try:
        parsed = model.model_validate(values)
    except pydantic.ValidationError as exc:
        for field, messages in errors_of(exc, "query").items():
            errors.setdefault(field, [m.replace("unknown field", "unknown query parameter")
                                      .replace("is read-only", "unknown query parameter")
                                      for m in messages])
        parsed = None
    if errors:
        raise ValidationError(errors)
    return parsed


def changes_of(body: pydantic.BaseModel) -> dict:
    """The members a body named (omitted ones are not changes), as plain JSON values."""
    return body.model_dump(include=body.model_fields_set, by_alias=True)

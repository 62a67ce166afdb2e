"""Books: strict parsing, validation, the genre-to-bucket choice and the S3 key rule. Pure.

The body must be one JSON object by RFC 8259, read strictly: ``NaN``, ``Infinity``,
duplicate keys and a leading byte-order mark are refused (a BOM is allowed to be
refused by the RFC, and a stored book is the body as received, so it must be plain
JSON for whoever reads it next), and so is nesting deeper than ``MAX_DEPTH``.

The key rule: a title becomes ``<title>.json`` unchanged, except that characters
that would make an unsafe key are percent-encoded as their UTF-8 bytes (``%XX``):
``/``, ``\\``, ``%`` itself (so that the rule stays one-to-one), control characters
(U+0000-U+001F, U+007F-U+009F) and U+FFFE/U+FFFF (not allowed in S3's XML
listings). A title that is exactly ``.`` or ``..`` is written ``%2E`` or ``%2E%2E``.
A key longer than S3's 1,024 bytes, or a title that is not valid Unicode text (a
lone surrogate), is rejected. So ``Dune Messiah`` stays ``Dune Messiah.json`` and
``AC/DC`` becomes ``AC%2FDC.json``: never a pseudo-folder.

The book's ``id`` travels in S3 metadata, which carries only printable ASCII: it is
percent-encoded there (``metadata_value``), losslessly, and refused when longer
than ``MAX_ID_BYTES``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from bookd.core.errors import InvalidBook
from bookd.core.reasons import (  # noqa: F401 - the reasons of a wrong book, named here too
    EMPTY_FIELD,
    FIELD_TOO_LONG,
    INVALID_JSON,
    INVALID_REASONS,
    INVALID_TEXT,
    MISSING_FIELD,
    NOT_AN_OBJECT,
    UNKNOWN_GENRE,
    UNSAFE_TITLE,
    WRONG_TYPE,
)

REQUIRED_FIELDS = ("id", "title", "genre")
OPTIONAL_TEXT_FIELDS = ("author", "year", "summary")
MAX_KEY_BYTES = 1024
MAX_ID_BYTES = 512
"""Longest id, in UTF-8 bytes: percent-encoded it still fits S3's 2 KB of metadata."""
MAX_DEPTH = 32
"""Deepest nesting of arrays and objects a body may have."""
KEY_SUFFIX = ".json"
BOM = "\ufeff"


@dataclass(frozen=True)
class Book:
    """A validated book and where it is to be stored."""

    id: str
    title: str
    genre: str
    bucket: str
    key: str


def _escape_char(char: str) -> str:
    code = ord(char)
    if char in "/\\%" or code < 0x20 or 0x7F <= code <= 0x9F or code in (0xFFFE, 0xFFFF):
        return "".join(f"%{byte:02X}" for byte in char.encode("utf-8"))
    return char


def key_for_title(title: str) -> str:
    """The S3 key for a title by the module's rule; raise InvalidBook(unsafe-title) if none."""
    stem = "%2E" * len(title) if title in (".", "..") else "".join(_escape_char(c) for c in title)
    key = stem + KEY_SUFFIX
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidBook(UNSAFE_TITLE, "title holds a lone surrogate, not Unicode text") from None
    if size > MAX_KEY_BYTES:
        raise InvalidBook(
            UNSAFE_TITLE, f"key would be {size} bytes; S3 allows at most {MAX_KEY_BYTES}"
        )
    return key


def metadata_value(text: str) -> str:
    """``text`` percent-encoded as UTF-8: printable ASCII that S3 metadata carries as is."""
    return quote(text, safe="")


def from_metadata(value: str) -> str:
    """The inverse of metadata_value."""
    return unquote(value, errors="strict")


def bucket_for_genre(genre: str, buckets: Mapping[str, str]) -> str:
    """The bucket of a genre, ignoring case and surrounding spaces."""
    try:
        return buckets[genre.strip().lower()]
    except KeyError:
        known = ", ".join(sorted(buckets))
        raise InvalidBook(UNKNOWN_GENRE, f"genre {genre!r} is not one of: {known}") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise InvalidBook(INVALID_JSON, f"key {key!r} appears twice in one object")
        data[key] = value
    return data


def _no_constants(name: str) -> Any:
    raise InvalidBook(INVALID_JSON, f"{name} is not JSON (RFC 8259 has no NaN or Infinity)")


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest in ``value``, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def strict_json(body: str) -> Any:
    """The JSON value ``body`` holds, read strictly (no BOM, NaN, Infinity or duplicate
    keys); InvalidBook(invalid-json) otherwise. Its depth is the caller's to judge."""
    if body.startswith(BOM):
        raise InvalidBook(
            INVALID_JSON, "body starts with a byte-order mark (U+FEFF); send plain JSON"
        )
    try:
        return json.loads(body, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except RecursionError:
        raise InvalidBook(INVALID_JSON, f"body nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, and Python's limit on huge integers
        raise InvalidBook(INVALID_JSON, f"body is not JSON ({exc})") from None


def _decode(body: str) -> dict[str, Any]:
    data = strict_json(body)
    if not isinstance(data, dict):
        raise InvalidBook(NOT_AN_OBJECT, f"body is a JSON {type(data).__name__}, not an object")
    if _depth(data) > MAX_DEPTH:
        raise InvalidBook(INVALID_JSON, f"body nests deeper than {MAX_DEPTH} levels")
    return data


def _check_text(name: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidBook(
            INVALID_TEXT, f"field {name!r} holds a lone surrogate, not Unicode text"
        ) from None


def parse_book(body: str, buckets: Mapping[str, str]) -> Book:
    """Validate a message body and decide its bucket and key; raise InvalidBook if it can't be.

    InvalidBook is the only error this raises, whatever the body.
    """
    data = _decode(body)
    for name in REQUIRED_FIELDS:
        if name not in data:
            raise InvalidBook(MISSING_FIELD, f"field {name!r} is missing")
        if not isinstance(data[name], str):
            kind = type(data[name]).__name__
            raise InvalidBook(WRONG_TYPE, f"field {name!r} is {kind}, not a string")
        if not data[name].strip():
            raise InvalidBook(EMPTY_FIELD, f"field {name!r} is empty")
    for name in OPTIONAL_TEXT_FIELDS:
        if name not in data:
            continue
        # ``year`` is a string in the example; a whole JSON number is accepted as well.
        allowed = (str, int) if name == "year" else (str,)
        if isinstance(data[name], bool) or not isinstance(data[name], allowed):
            kind = type(data[name]).__name__
            raise InvalidBook(WRONG_TYPE, f"field {name!r} is {kind}, not a string")
    # The title's text is the key rule's to judge (unsafe-title); the id's is judged here.
    _check_text("id", data["id"])
    size = len(data["id"].encode("utf-8"))
    if size > MAX_ID_BYTES:
        raise InvalidBook(
            FIELD_TOO_LONG, f"field 'id' is {size} bytes; at most {MAX_ID_BYTES} are allowed"
        )
    return Book(
        id=data["id"],
        title=data["title"],
        genre=data["genre"],
        bucket=bucket_for_genre(data["genre"], buckets),
        key=key_for_title(data["title"]),
    )

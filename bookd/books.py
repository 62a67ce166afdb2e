"""Books: validation, the genre-to-bucket choice and the S3 key rule. Pure, no I/O.

The key rule: a title becomes ``<title>.json`` unchanged, except that characters
that would make an unsafe key are percent-encoded as their UTF-8 bytes (``%XX``):
``/``, ``\\``, ``%`` itself (so that the rule stays one-to-one), and control
characters (U+0000-U+001F, U+007F-U+009F). A title that is exactly ``.`` or
``..`` is written ``%2E`` or ``%2E%2E``. A key longer than S3's 1,024 bytes, or a
title that is not valid Unicode text, is rejected. So ``Dune Messiah`` stays
``Dune Messiah.json`` and ``AC/DC`` becomes ``AC%2FDC.json``: never a pseudo-folder.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bookd.errors import InvalidBook

REQUIRED_FIELDS = ("id", "title", "genre")
OPTIONAL_TEXT_FIELDS = ("author", "year", "summary")
MAX_KEY_BYTES = 1024
KEY_SUFFIX = ".json"

# Reasons a message goes to the dead-letter queue; each is a metric label value too.
INVALID_JSON = "invalid-json"
NOT_AN_OBJECT = "not-an-object"
MISSING_FIELD = "missing-field"
EMPTY_FIELD = "empty-field"
WRONG_TYPE = "wrong-type"
UNKNOWN_GENRE = "unknown-genre"
UNSAFE_TITLE = "unsafe-title"
INVALID_REASONS = (
    INVALID_JSON,
    NOT_AN_OBJECT,
    MISSING_FIELD,
    EMPTY_FIELD,
    WRONG_TYPE,
    UNKNOWN_GENRE,
    UNSAFE_TITLE,
)


@dataclass(frozen=True)
class Book:
    """A validated book and where it is to be stored."""

    id: str
    title: str
    genre: str
    bucket: str
    key: str


def _escape_char(char: str) -> str:
    if char in "/\\%" or ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F:
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


def bucket_for_genre(genre: str, buckets: Mapping[str, str]) -> str:
    """The bucket of a genre, ignoring case and surrounding spaces."""
    try:
        return buckets[genre.strip().lower()]
    except KeyError:
        known = ", ".join(sorted(buckets))
        raise InvalidBook(UNKNOWN_GENRE, f"genre {genre!r} is not one of: {known}") from None


def _decode(body: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise InvalidBook(INVALID_JSON, f"body is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidBook(NOT_AN_OBJECT, f"body is a JSON {type(data).__name__}, not an object")
    return data


def parse_book(body: str, buckets: Mapping[str, str]) -> Book:
    """Validate a message body and decide its bucket and key; raise InvalidBook if it can't be."""
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
    return Book(
        id=data["id"],
        title=data["title"],
        genre=data["genre"],
        bucket=bucket_for_genre(data["genre"], buckets),
        key=key_for_title(data["title"]),
    )

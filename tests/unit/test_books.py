"""Validation, genre mapping and the key rule: pure logic, no network."""

import json

import pytest

from bookd import books
from bookd.books import key_for_title, parse_book
from bookd.errors import InvalidBook

BUCKETS = {"scifi": "scifi-bucket", "romance": "romance-bucket"}
VALID = {
    "id": "12345",
    "title": "LoremIpsum",
    "author": "John Doe",
    "year": "1960",
    "genre": "romance",
    "summary": "Lorem ipsum ...",
}


def body(**changes):
    data = {**VALID, **changes}
    return json.dumps({k: v for k, v in data.items() if v is not ...})


def reason_of(text):
    with pytest.raises(InvalidBook) as caught:
        parse_book(text, BUCKETS)
    return caught.value.reason


def test_a_valid_book_is_stored_under_its_title_in_its_genres_bucket():
    book = parse_book(body(), BUCKETS)
    assert (book.id, book.bucket, book.key) == ("12345", "romance-bucket", "LoremIpsum.json")


def test_genre_ignores_case_and_surrounding_spaces():
    assert parse_book(body(genre="  SciFi "), BUCKETS).bucket == "scifi-bucket"


def test_extra_fields_and_a_numeric_year_are_accepted():
    assert parse_book(body(year=1960, isbn="x"), BUCKETS).title == "LoremIpsum"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json", books.INVALID_JSON),
        ("", books.INVALID_JSON),
        ('["a list"]', books.NOT_AN_OBJECT),
        ('"a string"', books.NOT_AN_OBJECT),
        (body(id=...), books.MISSING_FIELD),
        (body(title=...), books.MISSING_FIELD),
        (body(genre=...), books.MISSING_FIELD),
        (body(title=""), books.EMPTY_FIELD),
        (body(id="   "), books.EMPTY_FIELD),
        (body(id=12345), books.WRONG_TYPE),
        (body(title=None), books.WRONG_TYPE),
        (body(genre=["romance"]), books.WRONG_TYPE),
        (body(author=7), books.WRONG_TYPE),
        (body(year=True), books.WRONG_TYPE),
        (body(genre="horror"), books.UNKNOWN_GENRE),
        (body(title="x" * 1100), books.UNSAFE_TITLE),
        ('{"id": "1", "title": "\\ud800", "genre": "scifi"}', books.UNSAFE_TITLE),
    ],
)
def test_bad_input_is_rejected_with_its_reason(text, reason):
    assert reason_of(text) == reason


@pytest.mark.parametrize(
    ("title", "key"),
    [
        ("LoremIpsum", "LoremIpsum.json"),
        ("Dune Messiah", "Dune Messiah.json"),
        ("Les Misérables", "Les Misérables.json"),
        ("AC/DC", "AC%2FDC.json"),
        ("../../etc/passwd", "..%2F..%2Fetc%2Fpasswd.json"),
        ("back\\slash", "back%5Cslash.json"),
        ("100%", "100%25.json"),
        ("tab\there", "tab%09here.json"),
        ("\x7f", "%7F.json"),
        (".", "%2E.json"),
        ("..", "%2E%2E.json"),
    ],
)
def test_the_key_rule_keeps_ordinary_titles_and_escapes_unsafe_ones(title, key):
    assert key_for_title(title) == key


def test_no_key_ever_contains_a_slash_or_a_control_character():
    titles = ["/", "a/b/c", "\\", "\n", "\x00", "x/../y", "%2F"]
    keys = [key_for_title(t) for t in titles]
    assert all("/" not in k and not any(ord(c) < 0x20 for c in k) for k in keys)
    assert len(set(keys)) == len(titles), "the rule must map different titles to different keys"


def test_a_key_of_exactly_1024_bytes_is_accepted_and_one_more_is_rejected():
    longest = "é" * ((1024 - len(".json")) // 2) + "x" * ((1024 - len(".json")) % 2)
    assert len(key_for_title(longest).encode()) == 1024
    with pytest.raises(InvalidBook):
        key_for_title(longest + "x")

"""Validation, genre mapping and the key rule: pure logic, no network."""

import contextlib
import json
import urllib.parse
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bookd.core import books
from bookd.core.books import from_metadata, key_for_title, metadata_value, parse_book
from bookd.core.errors import InvalidBook

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


# --- the hostile corpus (tests/corpus/hostile.jsonl) and properties ------------------

CORPUS_FILE = Path(__file__).resolve().parents[1] / "corpus" / "hostile.jsonl"
CORPUS = [json.loads(line) for line in CORPUS_FILE.read_text().splitlines()]
CORPUS_BUCKETS = {"scifi": "scifi", "romance": "romance"}


def test_the_corpus_holds_at_least_forty_cases_of_both_outcomes():
    assert len(CORPUS) >= 40
    assert {c["outcome"] for c in CORPUS} == {"stored", "dead-letter"}
    assert len({c["name"] for c in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("case", CORPUS, ids=[c["name"] for c in CORPUS])
def test_each_corpus_message_gets_its_expected_outcome(case):
    if case["outcome"] == "dead-letter":
        assert reason_of(case["body"]) == case["reason"]
    else:
        book = parse_book(case["body"], CORPUS_BUCKETS)
        assert (book.bucket, book.key) == (case["bucket"], case["key"])


def test_duplicate_keys_nan_and_a_byte_order_mark_are_refused_with_a_clear_detail():
    details = {}
    for name, text in {
        "duplicate": '{"id": "1", "id": "2", "title": "t", "genre": "scifi"}',
        "nan": '{"id": "1", "title": "t", "genre": "scifi", "x": NaN}',
        "bom": '\ufeff{"id": "1", "title": "t", "genre": "scifi"}',
    }.items():
        with pytest.raises(InvalidBook) as caught:
            parse_book(text, BUCKETS)
        details[name] = caught.value.detail
    assert "'id' appears twice" in details["duplicate"]
    assert "NaN" in details["nan"]
    assert "byte-order mark" in details["bom"]


@settings(max_examples=400, deadline=None)
@given(st.text())
def test_any_text_is_a_book_or_a_validation_error_never_anything_else(text):
    with contextlib.suppress(InvalidBook):  # anything else fails the test
        parse_book(text, BUCKETS)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["id", "title", "genre", "year", "author", "summary", "x"]), JSONISH
    )
)
def test_any_json_object_is_a_book_or_a_validation_error(data):
    try:
        book = parse_book(json.dumps(data), BUCKETS)
    except InvalidBook:
        return
    assert_safe_key(book.key)


def assert_safe_key(key: str) -> None:
    assert key.endswith(".json")
    assert "/" not in key and "\\" not in key
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in "\ufffe\uffff" for c in key)
    assert len(key.encode("utf-8")) <= 1024
    assert key not in (".json", "..json")


@settings(max_examples=600, deadline=None)
@given(st.text(min_size=1))
def test_the_key_rule_yields_only_safe_keys_and_is_one_to_one(title):
    try:
        key = key_for_title(title)
    except InvalidBook as exc:
        assert exc.reason == books.UNSAFE_TITLE
        return
    assert_safe_key(key)
    stem = key[: -len(".json")]
    decoded = urllib.parse.unquote(stem, errors="strict")
    assert decoded == title or (title in (".", "..") and decoded == "." * len(title))


@settings(max_examples=600, deadline=None)
@given(st.text())
def test_metadata_encoding_is_printable_ascii_and_lossless(text):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return  # lone surrogates never reach it: the validator refuses them first
    value = metadata_value(text)
    assert value.isascii() and (value == "" or value.isprintable())
    assert from_metadata(value) == text

"""S3 pointers of the SQS extended client, and their settings: pure logic, no network."""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bookd.core.config import Settings
from bookd.core.errors import ConfigError, InvalidBook
from bookd.core.pointers import POINTER_CLASSES, Pointer, parse_pointer, payload_text
from bookd.core.reasons import (
    INVALID_JSON,
    INVALID_POINTER,
    INVALID_REASONS,
    POINTER_REASONS,
    POINTER_REFUSED,
)

CLASS = "software.amazon.payloadoffloading.PayloadS3Pointer"
ALLOWED = ("payloads", "more-payloads")


def pointer(bucket: object = "payloads", key: object = "k1", *, cls: str = CLASS) -> str:
    return json.dumps([cls, {"s3BucketName": bucket, "s3Key": key}])


def reason_of(body: str, allowed=ALLOWED) -> str:
    with pytest.raises(InvalidBook) as caught:
        parse_pointer(body, allowed)
    return caught.value.reason


@pytest.mark.parametrize("cls", POINTER_CLASSES)
def test_a_pointer_of_either_class_names_its_bucket_and_key(cls):
    found = parse_pointer(pointer("more-payloads", "a/b c.json", cls=cls), ALLOWED)
    assert found == Pointer("more-payloads", "a/b c.json")
    assert str(found) == "s3://more-payloads/a/b c.json"


def test_the_extended_client_s_own_spelling_is_a_pointer():
    # As the Java library (Jackson) writes it: no spaces, leading whitespace allowed.
    body = f'\n ["{CLASS}",{{"s3BucketName":"payloads","s3Key":"8f1e-uuid"}}]'
    assert parse_pointer(body, ALLOWED) == Pointer("payloads", "8f1e-uuid")


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"id": "1", "title": "t", "genre": "scifi"}),  # a book
        json.dumps(["something else", {"s3BucketName": "payloads", "s3Key": "k"}]),
        json.dumps([]),
        json.dumps([{"s3BucketName": "payloads", "s3Key": "k"}, CLASS]),
        "not json",
    ],
)
def test_any_other_body_is_no_pointer_and_is_left_to_the_book_rules(body):
    assert parse_pointer(body, ALLOWED) is None


@pytest.mark.parametrize(
    "body",
    [
        json.dumps([CLASS]),
        json.dumps([CLASS, {"s3BucketName": "payloads", "s3Key": "k"}, "extra"]),
        json.dumps([CLASS, "s3://payloads/k"]),
        json.dumps([CLASS, {"s3BucketName": "payloads"}]),
        json.dumps([CLASS, {"s3BucketName": "payloads", "s3Key": "k", "s3VersionId": "v"}]),
        pointer(key=""),
        pointer(key="   "),
        pointer(key=7),
        pointer(bucket=None),
        pointer(key="k" * 1025),
        pointer(key="\ud800"),
    ],
)
def test_a_pointer_of_the_wrong_shape_is_invalid(body):
    assert reason_of(body) == INVALID_POINTER


def test_a_pointer_that_is_not_strict_json_is_invalid_json():
    body = f'["{CLASS}", {{"s3BucketName": "payloads", "s3Key": "a", "s3Key": "b"}}]'
    assert reason_of(body) == INVALID_JSON


def test_a_pointer_to_a_bucket_not_allowed_is_refused_and_says_what_is():
    with pytest.raises(InvalidBook) as caught:
        parse_pointer(pointer("elsewhere"), ALLOWED)
    assert caught.value.reason == POINTER_REFUSED
    assert "'elsewhere'" in caught.value.detail
    assert "payloads, more-payloads" in caught.value.detail


def test_with_no_payload_bucket_every_pointer_is_refused():
    with pytest.raises(InvalidBook) as caught:
        parse_pointer(pointer(), ())
    assert caught.value.reason == POINTER_REFUSED
    assert "bookd reads no payloads" in caught.value.detail


FIELDS = st.dictionaries(
    st.sampled_from(["s3BucketName", "s3Key", "other"]),
    st.one_of(st.sampled_from(ALLOWED), st.text(max_size=20), st.integers(), st.none()),
)
NEAR_POINTERS = st.lists(st.one_of(st.just(CLASS), st.text(max_size=20), FIELDS), max_size=3).map(
    json.dumps
)


@given(st.one_of(st.text(max_size=300), NEAR_POINTERS))
@settings(max_examples=300)
def test_any_body_is_a_pointer_none_or_invalid_book_and_nothing_else(body):
    try:
        found = parse_pointer(body, ALLOWED)
    except InvalidBook:
        return
    assert found is None or (found.bucket in ALLOWED and found.key.strip())


def test_a_payload_must_be_utf8():
    assert payload_text("Łódź".encode()) == "Łódź"
    with pytest.raises(InvalidBook) as caught:
        payload_text(b'{"title": "\xff"}')
    assert caught.value.reason == INVALID_JSON
    assert "UTF-8" in caught.value.detail


# --- the settings -----------------------------------------------------------------


def test_by_default_no_payload_bucket_is_read_nor_any_payload_deleted():
    s = Settings.from_env({})
    assert s.payload_buckets == ()
    assert s.payload_max_bytes == 16 * 1024 * 1024
    assert s.payload_delete is False


def test_payload_settings_are_read_and_survive_another_process_environment():
    s = Settings.from_env(
        {
            "BOOKD_PAYLOAD_BUCKETS": " big-books , more.books,big-books",
            "BOOKD_PAYLOAD_MAX_BYTES": "1048576",
            "BOOKD_PAYLOAD_DELETE": "True",
        }
    )
    assert s.payload_buckets == ("big-books", "more.books")
    assert (s.payload_max_bytes, s.payload_delete) == (1048576, True)
    assert Settings.from_env(s.to_env()) == s
    assert Settings.from_env(Settings.from_env({}).to_env()).payload_buckets == ()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"BOOKD_PAYLOAD_BUCKETS": "Big_Books"}, "BOOKD_PAYLOAD_BUCKETS"),
        ({"BOOKD_PAYLOAD_BUCKETS": "ok-bucket,s3://x"}, "BOOKD_PAYLOAD_BUCKETS"),
        ({"BOOKD_PAYLOAD_MAX_BYTES": "0"}, "BOOKD_PAYLOAD_MAX_BYTES"),
        ({"BOOKD_PAYLOAD_MAX_BYTES": "64MiB"}, "BOOKD_PAYLOAD_MAX_BYTES"),
        ({"BOOKD_PAYLOAD_DELETE": "maybe"}, "BOOKD_PAYLOAD_DELETE"),
    ],
)
def test_a_bad_payload_setting_is_refused_with_its_name(env, named):
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(env)


def test_every_reason_of_bad_input_is_in_the_readme_s_list():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    listed = readme.split("**Bad input** (", 1)[1].split(")", 1)[0]
    assert [r for r in INVALID_REASONS + POINTER_REASONS if f"`{r}`" not in listed] == []

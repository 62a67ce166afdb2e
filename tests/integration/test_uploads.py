"""The listener's uploads through the CRT (bookd.aws.uploads), against the real LocalStack:
what S3 stores, and each failure reported as botocore reports it."""

from __future__ import annotations

import base64
import json
import socket
import zlib

import pytest
from botocore.credentials import RefreshableCredentials

from bookd.aws import uploads
from bookd.aws.clients import make_client
from bookd.aws.s3 import BookStore
from bookd.aws.uploads import SINGLE_PUT_BYTES, CrtUploads, listener_store
from bookd.core.errors import AwsFault, FaultKind
from harness.proxy import Fault


def crt_store(settings) -> BookStore:
    """The listener's BookStore: its puts go through the CRT."""
    return listener_store(settings, pool=4, purpose="other")


def test_a_put_stores_the_bytes_the_metadata_and_a_checked_crc32(settings):
    s3 = make_client(settings, "s3")
    bucket = settings.buckets["scifi"]
    # A title that must be percent-encoded in the path, as botocore encodes it.
    key = "Dune: a/b ?#&+%é~.json"
    body = json.dumps({"id": "1", "title": key[:-5], "summary": "ü" * 300}).encode()

    version = crt_store(settings).put(bucket, key, body, metadata={"message-id": "m-1"})

    head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert version and head["VersionId"] == version
    assert head["Metadata"] == {"message-id": "m-1"}
    assert head["ContentType"] == "application/json"
    # The CRC32 of the body: a client-side checksum, sent by the CRT, checked and kept by S3.
    assert head["ChecksumCRC32"] == base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body


@pytest.mark.parametrize("size", [SINGLE_PUT_BYTES, SINGLE_PUT_BYTES + 1])
def test_a_large_book_is_one_put_on_either_side_of_the_crt_s_limit(settings, size):
    # Past the CRT's part size it would make a multipart upload; botocore puts those.
    s3 = make_client(settings, "s3")
    bucket = settings.buckets["romance"]
    body = b"x" * size
    version = crt_store(settings).put(bucket, "large.json", body, metadata={"message-id": "m"})
    head = s3.head_object(Bucket=bucket, Key="large.json", VersionId=version)
    assert head["ContentLength"] == size
    assert "-" not in head["ETag"], "a multipart upload's ETag"


def test_s3_s_codes_come_through_as_botocore_s(settings):
    with pytest.raises(AwsFault) as raised:
        crt_store(settings).put("bookd-no-such-bucket", "a.json", b"{}", metadata={})
    assert (raised.value.kind, raised.value.code) == (FaultKind.MISCONFIGURED, "NoSuchBucket")


@pytest.mark.parametrize(
    ("fault", "kind", "code"),
    [
        (Fault("unavailable", service="s3"), FaultKind.UNAVAILABLE, "ServiceUnavailable"),
        (
            Fault("slowdown", service="s3", operation="PutObject", limit=0, seconds=0),
            FaultKind.THROTTLED,
            "SlowDown",
        ),
        (
            Fault("error", service="s3", operation="PutObject", status=500, code="InternalError"),
            FaultKind.UNAVAILABLE,
            "InternalError",
        ),
    ],
    ids=["503-outage", "503-slowdown", "500"],
)
def test_a_500_or_503_is_asked_again_through_botocore_for_s3_s_code(
    settings, proxy, fault, kind, code
):
    # The CRT drops the code of a 500 or 503: an outage must not pass for a throttle.
    proxy.inject(fault)
    with pytest.raises(AwsFault) as raised:
        crt_store(settings.replace(endpoint_url=proxy.url)).put(
            settings.buckets["romance"], "x.json", b"{}", metadata={}
        )
    assert (raised.value.kind, raised.value.code) == (kind, code)
    assert sum(n for (_, op, _), n in proxy.seen.items() if op == "PutObject") >= 2


def test_an_endpoint_that_refuses_is_unavailable(settings):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(AwsFault) as raised:
            crt_store(settings.replace(endpoint_url=f"http://127.0.0.1:{port}")).put(
                settings.buckets["romance"], "x.json", b"{}", metadata={}
            )
    assert raised.value.kind is FaultKind.UNAVAILABLE
    assert raised.value.code in {"EndpointConnectionError", "ConnectionClosedError"}


def test_fixed_keys_go_to_the_crt_once_and_a_role_s_are_asked_for_at_each_put(
    settings, monkeypatch
):
    # Each ask is a call into Python from the CRT's thread; a role's keys are refreshed.
    asked = []
    original = CrtUploads._crt_credentials
    monkeypatch.setattr(
        CrtUploads, "_crt_credentials", lambda self: asked.append(1) or original(self)
    )
    bucket = settings.buckets["scifi"]
    crt_store(settings).put(bucket, "fixed.json", b"{}", metadata={})
    assert asked == []

    role = RefreshableCredentials.create_from_metadata(
        {
            "access_key": "test",
            "secret_key": "test",
            "token": "t",
            "expiry_time": "2999-01-01T00:00:00Z",
        },
        refresh_using=lambda: {},
        method="test-role",
    )
    monkeypatch.setattr(uploads, "credentials", lambda _: role)
    store = crt_store(settings)
    for n in range(3):
        assert store.put(bucket, f"role-{n}.json", b"{}", metadata={})
    assert len(asked) >= 3

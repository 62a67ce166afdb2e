"""bookd over https, against the real LocalStack's TLS (on its one port): its certificate,
self-signed, is trusted through AWS_CA_BUNDLE, as a private CA's would be in front of S3
and SQS. The same file must reach every client: botocore's, the CRT's uploads and the
health check's; one that missed it would fail each of its calls."""

from __future__ import annotations

import ssl
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bookd.aws.clients import make_client
from bookd.aws.uploads import CrtUploads, listener_store
from bookd.core.config import Settings
from bookd.core.errors import AwsFault, FaultKind
from bookd.web.checks import Checks


@pytest.fixture
def tls_settings(settings: Settings, tmp_path: Path) -> Settings:
    """``settings`` over https (by a name LocalStack's certificate covers), trusting it."""
    parts = urlsplit(settings.endpoint_url)
    bundle = tmp_path / "localstack.pem"
    bundle.write_text(ssl.get_server_certificate((parts.hostname, parts.port)))
    return settings.replace(endpoint_url=f"https://localhost:{parts.port}", ca_bundle=bundle)


def test_the_crt_puts_over_tls_to_the_certificate_of_the_bundle(tls_settings, monkeypatch):
    def no_botocore_put(*_, **__):
        raise AssertionError("the put went through botocore, not the CRT")

    monkeypatch.setattr(CrtUploads, "_botocore_put", no_botocore_put)
    bucket = tls_settings.buckets["scifi"]
    store = listener_store(tls_settings, pool=2, purpose="other")

    version = store.put(bucket, "Over TLS.json", b'{"id": "t"}', metadata={"message-id": "m"})

    head = make_client(tls_settings, "s3").head_object(Bucket=bucket, Key="Over TLS.json")
    assert head["VersionId"] == version and head["Metadata"] == {"message-id": "m"}


def test_without_the_bundle_no_call_trusts_the_certificate(tls_settings):
    untrusting = tls_settings.replace(ca_bundle=None)
    sqs = make_client(untrusting, "sqs", attempts=1)
    with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
        sqs.get_queue_url(QueueName=tls_settings.input_queue)

    with pytest.raises(AwsFault) as raised:
        listener_store(untrusting, pool=2, purpose="other").put(
            tls_settings.buckets["scifi"], "untrusted.json", b"{}", metadata={}
        )
    # An outage to bookd (retried, never held against a book), not a stored book. The CRT
    # delays its report of a failed handshake by 10-30 s (s2n's blinding), so the put may
    # time out first.
    assert raised.value.kind is FaultKind.UNAVAILABLE
    assert raised.value.code in {"SSLError", "ReadTimeoutError"}
    objects = make_client(tls_settings, "s3").list_objects_v2(Bucket=tls_settings.buckets["scifi"])
    assert objects.get("KeyCount") == 0


def test_the_health_check_trusts_the_bundle_too(tls_settings):
    assert Checks(tls_settings).services.get()["ok"] is True

    untrusted = Checks(tls_settings.replace(ca_bundle=None)).services.get()
    assert untrusted["ok"] is False
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted["error"]


def test_the_health_check_loads_certificates_once_and_only_for_https(tls_settings, monkeypatch):
    # Loading a bundle costs 20-30 ms of CPU; a refresh each second would pay it each time.
    loaded = []
    make_context = ssl.create_default_context
    monkeypatch.setattr(
        ssl, "create_default_context", lambda **kw: loaded.append(kw) or make_context(**kw)
    )
    over_https = Checks(tls_settings)
    for _ in range(3):
        assert over_https._localstack_health()["ok"] is True
    assert loaded == [{"cafile": str(tls_settings.ca_bundle)}]

    plain = tls_settings.replace(
        endpoint_url=f"http://localhost:{urlsplit(tls_settings.endpoint_url).port}"
    )
    assert Checks(plain)._localstack_health()["ok"] is True
    assert len(loaded) == 1


def test_a_book_goes_through_the_listener_over_tls(tls_settings, queues, start_listener):
    start_listener(tls_settings)
    queues.send(
        {"id": "tls-1", "title": "Secure", "author": "A", "year": 2001, "genre": "romance"},
        group="g",
    )
    [announced] = queues.outputs(1, timeout=30)
    bucket = tls_settings.buckets["romance"]
    assert (announced["id"], announced["bucket"], announced["file"]) == (
        "tls-1",
        bucket,
        "Secure.json",
    )
    s3 = make_client(tls_settings, "s3")
    assert s3.head_object(Bucket=bucket, Key="Secure.json")["VersionId"] == announced["version_id"]

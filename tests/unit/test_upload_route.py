"""Which client puts the listener's books (bookd.aws.uploads.listener_store): the CRT,
unless tracing is on or a proxy applies to S3. Making the clients sends nothing."""

from __future__ import annotations

import pytest

from bookd.aws.uploads import CrtUploads, listener_store
from bookd.core.config import Settings

LOCAL = Settings.from_env({"BOOKD_ENDPOINT_URL": "http://127.0.0.1:4566"})


def puts_through_crt(settings: Settings, **kwargs: bool) -> bool:
    return isinstance(listener_store(settings, pool=2, **kwargs)._uploads, CrtUploads)


@pytest.fixture(autouse=True)
def no_proxy_variables(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_books_go_through_the_crt_by_default():
    assert puts_through_crt(LOCAL)


def test_with_tracing_on_books_go_through_botocore_whose_puts_are_spans():
    assert not puts_through_crt(LOCAL, traced=True)


def test_a_proxy_for_s3_sends_books_through_botocore_which_reads_it(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    assert not puts_through_crt(LOCAL)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # the proxy does not apply to S3 here
    assert puts_through_crt(LOCAL)

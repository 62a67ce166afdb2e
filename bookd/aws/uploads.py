"""The listener's uploads of books, through AWS's Common Runtime (awscrt) S3 client.

A PutObject through botocore costs about 1.3 ms of Python per book (its events and
endpoint rules, SigV4, http.client); through the CRT, about 0.3 ms: the request is
signed, checksummed (CRC32, which S3 checks against the bytes it stores, as with
botocore's default) and sent in C, on the CRT's own event-loop thread, while the
upload thread waits without the GIL.

What stays botocore's: where a bucket is (its endpoint rules, resolved once per bucket
by presigning a PutObject: region, addressing style, FIPS, dual-stack) and the
credentials (the chain every client of these settings uses, refreshed as they are).
Each put is tried once, so that a SlowDown reaches bookd's limiter of uploads
(bookd.rules.limiter) at once, and every failure becomes the botocore error that the
table (bookd.aws.codes) knows: an upload fails exactly as botocore's would. The CRT
reports a 500 or a 503 without S3's code (it cannot tell SlowDown from
ServiceUnavailable, a throttle from an outage): that one put is tried again through
botocore, whose answer, S3's code included, is the put's. Each put is timed and
counted like every other call (bookd_aws_request_*) and written to BOOKD_AWS_CALL_LOG.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from xml.etree import ElementTree

from awscrt.auth import AwsCredentials, AwsCredentialsProvider
from awscrt.exceptions import AwsCrtError
from awscrt.http import HttpHeaders, HttpRequest
from awscrt.io import (
    ClientBootstrap,
    ClientTlsContext,
    DefaultHostResolver,
    EventLoopGroup,
    TlsConnectionOptions,
    TlsContextOptions,
)
from awscrt.s3 import (
    S3ChecksumAlgorithm,
    S3ChecksumConfig,
    S3ChecksumLocation,
    S3Client,
    S3RequestTlsMode,
    S3RequestType,
    S3ResponseError,
    S3RetryConfig,
    S3RetryMode,
)
from botocore.credentials import RefreshableCredentials
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
    SSLError,
)
from botocore.utils import get_environ_proxies, percent_encode

from bookd.aws.clients import credentials, log_call, make_client, observe_call
from bookd.aws.s3 import BookStore
from bookd.core.config import Settings

CODELESS = {"AWS_ERROR_S3_INTERNAL_ERROR": "500", "AWS_ERROR_S3_SLOW_DOWN": "503"}
"""The CRT's errors for S3 answers whose code it drops, and their HTTP status: asked
again through botocore."""

REFUSED = frozenset({"AWS_IO_SOCKET_CONNECTION_REFUSED", "AWS_IO_DNS_INVALID_NAME"})
"""CRT errors of an endpoint that cannot be reached at all (botocore's
EndpointConnectionError); any other failure without an answer is a closed connection."""

SINGLE_PUT_BYTES = 8 * 1024 * 1024
"""The largest body the CRT puts, in one PutObject. Past its part size the CRT would make
a multipart upload (more calls, more permissions, another answer), so a larger book (one
that came as an S3 pointer, up to BOOKD_PAYLOAD_MAX_BYTES) goes through botocore, in one
PutObject like every other."""

_PLACEHOLDER = "bookd-placeholder"


def listener_store(
    settings: Settings,
    *,
    pool: int,
    at_once: int | None = None,
    traced: bool = False,
    purpose: str = "listener",
) -> BookStore:
    """The BookStore the listener puts books with; the bench's floor and ceiling use it
    too, to pay bookd's own client costs.

    Its reads go through a botocore client of ``pool`` connections. Its puts, at most
    ``at_once`` at a time (default BOOKD_CONCURRENCY, the upload threads), are tried
    once, so that a SlowDown goes to the limiter of uploads at once: through the CRT,
    or through botocore with tracing on (``traced``: its instrumentation makes each put
    a span of its message) or when HTTP(S)_PROXY applies to S3 (the CRT's client does
    not read those variables; botocore does).
    """
    at_once = at_once or settings.concurrency
    once = make_client(settings, "s3", pool=at_once, attempts=1, purpose=purpose)
    botocore_puts = traced or bool(get_environ_proxies(once.meta.endpoint_url))
    uploads = (
        once if botocore_puts else CrtUploads(settings, once, connections=at_once, purpose=purpose)
    )
    return BookStore(
        make_client(settings, "s3", pool=pool, purpose=purpose),
        bucket_owner=settings.bucket_owner,
        uploads=uploads,
    )


class CrtUploads:
    """``put_object`` as botocore's, for the keyword arguments BookStore passes, on the CRT."""

    def __init__(
        self, settings: Settings, client: Any, *, connections: int, purpose: str = "listener"
    ) -> None:
        """``client``: a botocore S3 client of these settings that tries each call once:
        where each bucket is, and the put of a 500 or 503 (CODELESS). ``connections``: at
        most this many uploads at once."""
        self._settings = settings
        self._client = client
        self._purpose = purpose
        # As long as botocore would wait for a put: to connect, then for the answer.
        self._connect_timeout = client.meta.config.connect_timeout
        self._timeout = self._connect_timeout + client.meta.config.read_timeout
        self._bases: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()
        self._credentials = credentials(settings)
        self._connections = connections
        self._crt: S3Client | None = None

    def put_object(
        self,
        *,
        Bucket: str,  # noqa: N803 - botocore's names: BookStore calls either alike
        Key: str,  # noqa: N803
        Body: bytes,  # noqa: N803
        ContentType: str,  # noqa: N803
        Metadata: Mapping[str, str],  # noqa: N803
        ExpectedBucketOwner: str | None = None,  # noqa: N803
    ) -> dict[str, Any]:
        """Store ``Body`` at ``Key``: ``{"VersionId": ...}`` (none if versioning is off),
        or the botocore error of the failure."""
        if self._credentials is None:
            raise NoCredentialsError()
        if len(Body) > SINGLE_PUT_BYTES:
            return self._botocore_put(Bucket, Key, Body, ContentType, Metadata, ExpectedBucketOwner)
        headers = [("Content-Type", ContentType)]
        for name, value in Metadata.items():
            if not value.isascii():  # as botocore checks: S3 headers are ASCII
                raise ParamValidationError(report=f"metadata {name} is not ASCII")
            headers.append((f"x-amz-meta-{name}", value))
        if ExpectedBucketOwner:
            headers.append(("x-amz-expected-bucket-owner", ExpectedBucketOwner))
        if self._settings.aws_call_log is not None:
            log_call(self._settings.aws_call_log, self._purpose, "s3", "PutObject", Bucket)
        started, error = time.monotonic(), None
        try:
            return self._put(Bucket, Key, Body, headers)
        except CodelessAnswer as answer:
            error = answer.status
        except ClientError as exc:
            error = str(exc.response["Error"]["Code"])
            raise
        except BotoCoreError as exc:
            error = type(exc).__name__
            raise
        finally:
            observe_call("s3", "PutObject", time.monotonic() - started, error)
        return self._botocore_put(Bucket, Key, Body, ContentType, Metadata, ExpectedBucketOwner)

    def _botocore_put(
        self,
        bucket: str,
        key: str,
        body: bytes,
        content_type: str,
        metadata: Mapping[str, str],
        owner: str | None,
    ) -> dict[str, Any]:
        return self._client.put_object(  # type: ignore[no-any-return]
            Bucket=bucket,
            Key=key,
            Body=body,
            ContentType=content_type,
            Metadata=dict(metadata),
            **({"ExpectedBucketOwner": owner} if owner else {}),
        )

    def _put(
        self, bucket: str, key: str, body: bytes, headers: list[tuple[str, str]]
    ) -> dict[str, Any]:
        host, path = self._base(bucket)
        url = f"{path}/{percent_encode(key, safe='/~')}"
        headers = [("Host", host), ("Content-Length", str(len(body))), *headers]
        request = HttpRequest("PUT", url, HttpHeaders(headers), io.BytesIO(body))
        answer: dict[str, Any] = {}

        def on_headers(status_code: int, headers: list[tuple[str, str]], **_: Any) -> None:
            for name, value in headers:
                if name.lower() == "x-amz-version-id":
                    answer["VersionId"] = value

        upload = self._s3().make_request(
            type=S3RequestType.PUT_OBJECT,
            request=request,
            checksum_config=S3ChecksumConfig(
                algorithm=S3ChecksumAlgorithm.CRC32, location=S3ChecksumLocation.HEADER
            ),
            on_headers=on_headers,
        )
        try:
            upload.finished_future.result(timeout=self._timeout)
        except FutureTimeout:
            upload.cancel()
            raise ReadTimeoutError(endpoint_url=f"{host}{url}") from None
        except S3ResponseError as exc:
            raise _client_error(exc) from exc
        except AwsCrtError as exc:
            if exc.name in CODELESS:
                raise CodelessAnswer(CODELESS[exc.name]) from exc
            if exc.name.startswith("AWS_IO_TLS"):
                # An untrusted certificate, or a name it does not cover: as botocore says it.
                raise SSLError(endpoint_url=f"https://{host}{url}", error=exc) from exc
            failure = EndpointConnectionError if exc.name in REFUSED else ConnectionClosedError
            raise failure(endpoint_url=f"{host}{url}", error=exc.name) from exc
        return answer

    def _s3(self) -> S3Client:
        """The CRT's client, made at the first put. Its event-loop thread is then made by an
        upload thread, whose CPU priority it takes: the listener lowers its own once
        connected (BOOKD_LISTENER_NICE), and a thread made before would keep the higher
        one, competing with the web workers."""
        with self._lock:
            if self._crt is None:
                loops = EventLoopGroup(1)  # one C thread sends and receives every upload
                tls, bundle = self._settings.over_tls, self._settings.ca_bundle
                # None: the system's certificates, as botocore's clients use then.
                trust = _trusting(bundle) if bundle and tls else None
                self._crt = S3Client(
                    bootstrap=ClientBootstrap(loops, DefaultHostResolver(loops)),
                    region=self._settings.region,
                    tls_mode=S3RequestTlsMode.ENABLED if tls else S3RequestTlsMode.DISABLED,
                    tls_connection_options=trust,
                    credential_provider=self._credential_provider(),
                    max_active_connections_override=self._connections,
                    part_size=SINGLE_PUT_BYTES,
                    multipart_upload_threshold=SINGLE_PUT_BYTES,
                    retry_config=S3RetryConfig(retry_mode=S3RetryMode.NONE),
                    connect_timeout_ms=int(self._connect_timeout * 1000),
                )
            return self._crt

    def _credential_provider(self) -> AwsCredentialsProvider:
        """Keys that never change are handed to the CRT once. Those that botocore
        refreshes (a role's) are asked of it at each put: a call into Python from the
        CRT's thread, for the GIL, that the fixed keys spare each put."""
        if isinstance(self._credentials, RefreshableCredentials):
            return AwsCredentialsProvider.new_delegate(self._crt_credentials)
        return AwsCredentialsProvider.new_static(*self._frozen())

    def _crt_credentials(self) -> AwsCredentials:
        return AwsCredentials(*self._frozen())

    def _frozen(self) -> tuple[str, str, str | None]:
        assert self._credentials is not None  # put_object checks
        frozen = self._credentials.get_frozen_credentials()
        return frozen.access_key, frozen.secret_key, frozen.token

    def _base(self, bucket: str) -> tuple[str, str]:
        """The bucket's host and path prefix, as botocore's endpoint rules place it."""
        with self._lock:
            if bucket not in self._bases:
                url = urlsplit(
                    self._client.generate_presigned_url(
                        "put_object", Params={"Bucket": bucket, "Key": _PLACEHOLDER}
                    )
                )
                self._bases[bucket] = (url.netloc, url.path.removesuffix(f"/{_PLACEHOLDER}"))
            return self._bases[bucket]


def _trusting(ca_bundle: Path) -> TlsConnectionOptions:
    """TLS that checks S3's certificate against ``ca_bundle`` (AWS_CA_BUNDLE), as every
    botocore client of these settings does, instead of against the system's."""
    options = TlsContextOptions()
    options.override_default_trust_store_from_path(None, str(ca_bundle))
    return ClientTlsContext(options).new_connection_options()


class CodelessAnswer(Exception):
    """S3 answered 500 or 503 and the CRT dropped its code."""

    def __init__(self, status: str) -> None:
        super().__init__(f"S3 answered {status}")
        self.status = status


def _client_error(exc: S3ResponseError) -> ClientError:
    """S3's error answer as botocore reports it: its Code and Message, or the status."""
    code, message = str(exc.status_code), ""
    if exc.body:
        try:
            root = ElementTree.fromstring(exc.body)
            code = root.findtext("Code") or code
            message = root.findtext("Message") or ""
        except ElementTree.ParseError:
            pass
    response = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": exc.status_code},
    }
    return ClientError(response, "PutObject")  # type: ignore[arg-type]

"""The S3 side: bookd.core.ports' Store on boto3 (put a book, find an earlier copy, read and
delete a pointer's payload, probe).

No business logic: each method turns a boto3 failure into an AwsFault
(bookd.aws.codes names its kind, and the bucket it was on).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from bookd.aws.codes import MISSING_CODES, call
from bookd.core.errors import AwsFault, FaultKind
from bookd.core.ports import MESSAGE_ID_METADATA, Payload, StoredVersion

VERSION_SCAN_LIMIT = 20
"""Versions of one key read, newest first, when looking for a redelivered book's copy."""


class BookStore:
    """The S3 side: put a book's JSON, find the copy an earlier delivery stored, probe."""

    def __init__(
        self, client: Any, *, bucket_owner: str | None = None, uploads: Any = None
    ) -> None:
        """``uploads``: what puts books, with botocore's ``put_object`` (default
        ``client``). The listener's (bookd.aws.uploads) tries each put once, so that each
        SlowDown reaches bookd's limiter of uploads (bookd.rules.limiter) at once, rather
        than being retried in the place it holds."""
        self.client = client
        self._uploads = uploads if uploads is not None else client
        # ExpectedBucketOwner makes S3 refuse a bucket of the same name in another account.
        self._owner = {"ExpectedBucketOwner": bucket_owner} if bucket_owner else {}

    def put(self, bucket: str, key: str, body: bytes, *, metadata: Mapping[str, str]) -> str:
        """Store the body and return the new version id ('' if versioning is off)."""
        response = call(
            "s3",
            "PutObject",
            lambda: self._uploads.put_object(
                Bucket=bucket,
                Key=key,
                Body=body,
                ContentType="application/json",
                Metadata=dict(metadata),
                **self._owner,
            ),
            resource=f"bucket {bucket}",
        )
        return response.get("VersionId", "")

    def find(self, bucket: str, key: str, *, message_id: str) -> str | None:
        """The version id of ``key`` that ``message_id`` stored, if one did.

        The latest version first (one call, the usual answer); then, since a later
        book of the same title may have been stored on top of it, older versions.
        """
        head = self._head(bucket, key, None)
        if head is None:
            return None
        if head.get("Metadata", {}).get(MESSAGE_ID_METADATA) == message_id:
            return head.get("VersionId", "")
        listing = call(
            "s3",
            "ListObjectVersions",
            lambda: self.client.list_object_versions(
                Bucket=bucket, Prefix=key, MaxKeys=VERSION_SCAN_LIMIT, **self._owner
            ),
            resource=f"bucket {bucket}",
        )
        for version in listing.get("Versions", []):
            if version["Key"] != key or version.get("IsLatest"):
                continue
            older = self._head(bucket, key, version["VersionId"])
            if older and older.get("Metadata", {}).get(MESSAGE_ID_METADATA) == message_id:
                return version["VersionId"]
        return None

    def _head(self, bucket: str, key: str, version_id: str | None) -> dict[str, Any] | None:
        """The key's (or version's) metadata; None if it is not there."""
        version = {"VersionId": version_id} if version_id else {}
        try:
            return call(
                "s3",
                "HeadObject",
                lambda: self.client.head_object(Bucket=bucket, Key=key, **version, **self._owner),
                resource=f"bucket {bucket}",
            )
        except AwsFault as fault:
            if fault.code in MISSING_CODES:
                return None
            raise

    def payload(self, bucket: str, key: str, *, max_bytes: int) -> Payload:
        """The object an S3 pointer names; one larger than ``max_bytes`` is left unread.

        One GetObject: its length comes before its bytes, so a payload too large is
        refused on the length alone and its connection dropped unread. The read is
        bounded by ``max_bytes`` even if S3 gave no length.
        """

        def get() -> Payload:
            response = self.client.get_object(Bucket=bucket, Key=key, **self._owner)
            body, size = response["Body"], response.get("ContentLength")
            if size is not None and size > max_bytes:
                body.close()
                return Payload(found=True, size=size)
            content = body.read(max_bytes + 1)
            # A read that finds the end (it should, by now) is where botocore checks the
            # length and the checksum it was given; one that does not is past the limit.
            if len(content) > max_bytes or body.read(1):
                body.close()
                return Payload(found=True, size=size)
            return Payload(found=True, size=len(content), content=content)

        try:
            return call("s3", "GetObject", get, resource=f"bucket {bucket}")
        except AwsFault as fault:
            if fault.code in MISSING_CODES:
                return Payload(found=False)
            raise

    def delete_payload(self, bucket: str, key: str) -> None:
        """Delete a pointer's object (S3 answers a key already gone the same way)."""
        call(
            "s3",
            "DeleteObject",
            lambda: self.client.delete_object(Bucket=bucket, Key=key, **self._owner),
            resource=f"bucket {bucket}",
        )

    def probe(self, bucket: str) -> None:
        """A cheap call that fails when S3 (or this bucket) does."""
        call(
            "s3",
            "HeadBucket",
            lambda: self.client.head_bucket(Bucket=bucket, **self._owner),
            resource=f"bucket {bucket}",
        )

    def check_versioning(self, bucket: str) -> None:
        """AwsFault (misconfigured) unless the bucket keeps every version of a key."""
        status = call(
            "s3",
            "GetBucketVersioning",
            lambda: self.client.get_bucket_versioning(Bucket=bucket, **self._owner),
            resource=f"bucket {bucket}",
        ).get("Status")
        if status != "Enabled":
            raise AwsFault(
                FaultKind.MISCONFIGURED,
                service="s3",
                operation="GetBucketVersioning",
                code="BucketNotVersioned",
                resource=f"bucket {bucket}",
                detail=f"bucket {bucket} has versioning {status or 'off'}: a second book with "
                "the same title would replace the first; run `bookd provision`",
            )

    def list_versions(self, bucket: str, *, prefix: str = "") -> Iterator[StoredVersion]:
        """Every version of every key under ``prefix``, page by page (delete markers left out)."""
        pages = self.client.get_paginator("list_object_versions").paginate(
            Bucket=bucket, Prefix=prefix, **self._owner
        )
        listing = iter(pages)
        while True:
            page = call(
                "s3", "ListObjectVersions", lambda: next(listing, None), resource=f"bucket {bucket}"
            )
            if page is None:
                return
            for v in page.get("Versions", []):
                yield StoredVersion(v["Key"], v["VersionId"], v["LastModified"].timestamp())

    def metadata(self, bucket: str, key: str, version_id: str) -> Mapping[str, str]:
        """The user metadata of one version (HeadObject)."""
        head = call(
            "s3",
            "HeadObject",
            lambda: self.client.head_object(
                Bucket=bucket, Key=key, VersionId=version_id, **self._owner
            ),
            resource=f"bucket {bucket}",
        )
        return head.get("Metadata", {})

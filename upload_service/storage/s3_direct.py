"""Direct uploads on S3: presigned POSTs and part URLs, and the calls that check what arrived.

Signing runs in process (an HMAC, no request) with a client of its own: always SigV4, since
boto3 may otherwise sign a custom endpoint's URL with SigV2, where a header like the content
length is not signed at all; and on the endpoint clients reach, which may not be the one the
service talks to (`S3_PUBLIC_ENDPOINT_URL`). Every other call goes through the storage's own
client and thread pool.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

import boto3
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, NoCredentialsError

from upload_service.storage.direct import HeldPart, PartsRefused, PresignedPost, StoredHead
from upload_service.storage.s3 import S3Storage

if TYPE_CHECKING:
    from botocore.config import _S3Dict
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

# Signatures need a region even where the endpoint has none of its own (MinIO, moto).
DEFAULT_SIGNING_REGION = "us-east-1"
_GONE_UPLOAD_CODES = frozenset({"NoSuchUpload", "404"})
_MISSING_OBJECT_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_REFUSED_PARTS_CODES = frozenset({"InvalidPart", "InvalidPartOrder", "EntityTooSmall"})


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def signing_client(
    endpoint_url: str | None, region: str | None, session: boto3.session.Session | None = None
) -> S3Client:
    """A client that signs SigV4 URLs for `endpoint_url` (path-style when it is custom)."""
    s3_options: _S3Dict | None = {"addressing_style": "path"} if endpoint_url else None
    client: S3Client = (session or boto3.session.Session()).client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region or DEFAULT_SIGNING_REGION,
        config=Config(signature_version="s3v4", s3=s3_options),
    )
    return client


class S3DirectUploads:
    """Direct uploads into the bucket of `storage`, signed for `public_endpoint_url`."""

    def __init__(
        self, storage: S3Storage, public_endpoint_url: str | None, region: str | None
    ) -> None:
        self._storage = storage
        self._bucket = storage.bucket
        self._client = storage.client
        self._session = boto3.session.Session()
        self._region = region or DEFAULT_SIGNING_REGION
        self._signer = signing_client(public_endpoint_url, region, self._session)

    def presign_post(
        self, key: str, *, max_size: int, content_type: str, sha256_b64: str | None, ttl_s: int
    ) -> PresignedPost:
        """A POST for exactly `key` (boto3 adds the exact `key` and `bucket` conditions)."""
        fields: dict[str, str] = {"Content-Type": content_type}
        if sha256_b64 is not None:
            # Every form field must match a condition: S3 then checks the bytes against it.
            fields["x-amz-checksum-algorithm"] = "SHA256"
            fields["x-amz-checksum-sha256"] = sha256_b64
        conditions: list[Any] = [["content-length-range", 1, max_size]]
        conditions += [{name: value} for name, value in fields.items()]
        signed = self._signer.generate_presigned_post(
            Bucket=self._bucket, Key=key, Fields=fields, Conditions=conditions, ExpiresIn=ttl_s
        )
        return PresignedPost(url=signed["url"], fields=dict(signed["fields"]))

    def presign_parts(
        self, key: str, multipart_id: str, sizes: dict[int, int], ttl_s: int
    ) -> dict[int, str]:
        """UploadPart URLs with `content-length` among their signed headers.

        The first comes from boto3 (which knows the endpoint, addressing style and key
        quoting); the others reuse its address and are signed by botocore's own SigV4 query
        signer directly, skipping the ~1 ms of request building boto3 spends on each: a part
        every 8 MiB makes that the largest CPU cost of a direct upload to the service.
        """
        numbers = sorted(sizes)
        if not numbers:
            return {}
        first = numbers[0]
        urls = {first: self._presign_part_by_boto3(key, multipart_id, first, sizes[first], ttl_s)}
        address = urlunsplit(urlsplit(urls[first])._replace(query="", fragment=""))
        credentials = self._frozen_credentials()
        for number in numbers[1:]:
            request = AWSRequest(
                method="PUT",
                url=f"{address}?uploadId={quote(multipart_id, safe='')}&partNumber={number}",
                headers={"Content-Length": str(sizes[number])},
            )
            S3SigV4QueryAuth(credentials, "s3", self._region, expires=ttl_s).add_auth(request)
            assert request.url is not None  # the signer wrote it
            urls[number] = request.url
        return urls

    def _presign_part_by_boto3(
        self, key: str, multipart_id: str, part_number: int, size: int, ttl_s: int
    ) -> str:
        return self._signer.generate_presigned_url(
            "upload_part",
            Params={
                "Bucket": self._bucket,
                "Key": key,
                "UploadId": multipart_id,
                "PartNumber": part_number,
                "ContentLength": size,
            },
            ExpiresIn=ttl_s,
        )

    def _frozen_credentials(self) -> Credentials:
        # Refreshable credentials (a role, STS) are read afresh each time, as boto3 does.
        credentials = self._session.get_credentials()
        if credentials is None:
            raise NoCredentialsError()
        frozen = credentials.get_frozen_credentials()
        if frozen.access_key is None or frozen.secret_key is None:
            raise NoCredentialsError()
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token)

    async def start_multipart(self, key: str, content_type: str) -> str:
        """Begin a multipart upload of `key`."""
        started = await self._storage._run(
            self._client.create_multipart_upload,
            Bucket=self._bucket,
            Key=key,
            ContentType=content_type,
        )
        return started["UploadId"]

    async def held_parts(self, key: str, multipart_id: str) -> list[HeldPart] | None:
        """Every held part (all `ListParts` pages), or None once the upload is closed."""

        def list_all() -> list[HeldPart]:
            paginator = self._client.get_paginator("list_parts")
            parts: list[HeldPart] = []
            for page in paginator.paginate(Bucket=self._bucket, Key=key, UploadId=multipart_id):
                for part in page.get("Parts", []):
                    parts.append(HeldPart(part["PartNumber"], part["Size"], part["ETag"]))
            return sorted(parts, key=lambda part: part.part_number)

        try:
            return await self._storage._run(list_all)
        except ClientError as exc:
            if _code(exc) in _GONE_UPLOAD_CODES:
                return None
            raise

    async def finish_multipart(
        self, key: str, multipart_id: str, parts: list[HeldPart], size: int
    ) -> bool:
        """Complete the upload from the parts S3 listed, never from what a client said."""
        completed: list[CompletedPartTypeDef] = [
            {"PartNumber": part.part_number, "ETag": part.etag} for part in parts
        ]
        try:
            await self._storage._run(
                self._client.complete_multipart_upload,
                Bucket=self._bucket,
                Key=key,
                UploadId=multipart_id,
                MultipartUpload={"Parts": completed},
                # S3 refuses the assembly (400) if the parts do not add up to this.
                MpuObjectSize=size,
            )
        except ClientError as exc:
            code = _code(exc)
            if code in _GONE_UPLOAD_CODES:
                return False
            if code in _REFUSED_PARTS_CODES or code == "InvalidRequest":
                raise PartsRefused(code) from exc
            raise
        return True

    async def abort_multipart(self, key: str, multipart_id: str) -> None:
        """Discard the upload; NoSuchUpload means it is gone already."""
        try:
            await self._storage._run(
                self._client.abort_multipart_upload,
                Bucket=self._bucket,
                Key=key,
                UploadId=multipart_id,
            )
        except ClientError as exc:
            if _code(exc) not in _GONE_UPLOAD_CODES:
                raise

    async def read_head(self, key: str, length: int) -> StoredHead | None:
        """One ranged GET: the first bytes, and the size from its `Content-Range` (no HEAD)."""

        def get() -> StoredHead | None:
            try:
                response = self._client.get_object(
                    Bucket=self._bucket, Key=key, Range=f"bytes=0-{length - 1}"
                )
            except ClientError as exc:
                if _code(exc) in _MISSING_OBJECT_CODES:
                    return None
                if _code(exc) == "InvalidRange":
                    return StoredHead(size=0, head=b"")  # An empty object has no byte 0.
                raise
            with response["Body"] as body:
                head = body.read()
            # "bytes 0-8191/123456"; a server that ignores Range sends the whole object.
            content_range = response.get("ContentRange", "")
            size = int(content_range.rsplit("/", 1)[1]) if "/" in content_range else len(head)
            return StoredHead(size=size, head=head)

        return await self._storage._run(get)

    async def read_span(self, key: str, start: int, end: int) -> bytes:
        """A ranged GET, read whole (callers ask for a few KiB)."""

        def get() -> bytes:
            response = self._client.get_object(
                Bucket=self._bucket, Key=key, Range=f"bytes={start}-{end}"
            )
            with response["Body"] as body:
                return body.read()

        return await self._storage._run(get)

    async def copy_hashed(self, source: str, target: str) -> str | None:
        """CopyObject asking S3 for a SHA-256 of the copy: S3 reads the bytes, we do not.

        A copy (up to 5 GB) is one object, not a multipart one, so its SHA-256 is the whole
        file's. The metadata is replaced: the client's declared Content-Type stays behind.
        """
        copied = await self._storage._run(
            self._client.copy_object,
            Bucket=self._bucket,
            Key=target,
            CopySource={"Bucket": self._bucket, "Key": source},
            MetadataDirective="REPLACE",
            ContentType="application/octet-stream",
            ChecksumAlgorithm="SHA256",
        )
        checksum = copied.get("CopyObjectResult", {}).get("ChecksumSHA256")
        if not checksum or "-" in checksum:
            return None  # None, or a composite checksum of parts: not the whole file's
        return base64.b64decode(checksum).hex()

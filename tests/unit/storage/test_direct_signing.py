"""What the presigned POST policy and part URLs say, decoded: what S3 (not moto) will enforce.

moto checks none of it, so these read the signed artefacts themselves: the policy's exact key,
size range, expiry and checksum; the part URLs' SigV4, signed headers and lifetime.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from upload_service.storage.budget import BufferBudget
from upload_service.storage.s3 import S3Storage
from upload_service.storage.s3_direct import S3DirectUploads

KEY = "staging/0123abcd/dup_01HN3K8V2NKDQ7HTXJFR9CPWK0"
PUBLIC = "https://s3.public.example"


@pytest.fixture
async def direct(aws_credentials: None) -> AsyncIterator[S3DirectUploads]:
    # The service's own endpoint is internal; clients are signed for the public one. No
    # request is sent: signing is local.
    storage = S3Storage("docs", "http://127.0.0.1:9", "eu-west-1", BufferBudget(64 * 2**20))
    yield S3DirectUploads(storage, PUBLIC, "eu-west-1")
    await storage.aclose()


def conditions(policy_b64: str) -> tuple[list[object], datetime]:
    policy = json.loads(base64.b64decode(policy_b64))
    expiration = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
    return policy["conditions"], expiration


def test_post_policy_pins_the_key_the_size_range_and_a_short_expiry(
    direct: S3DirectUploads,
) -> None:
    before = datetime.now(UTC)
    post = direct.presign_post(
        KEY, max_size=1234, content_type="application/pdf", sha256_b64=None, ttl_s=900
    )
    assert post.url == f"{PUBLIC}/docs"
    assert post.fields["key"] == KEY
    assert post.fields["x-amz-algorithm"] == "AWS4-HMAC-SHA256"
    assert "/eu-west-1/s3/aws4_request" in post.fields["x-amz-credential"]
    found, expiration = conditions(post.fields["policy"])
    assert ["content-length-range", 1, 1234] in found
    assert {"key": KEY} in found  # Exact: no starts-with a client could extend.
    assert {"bucket": "docs"} in found
    assert {"Content-Type": "application/pdf"} in found
    assert not any(isinstance(c, list) and c[0] == "starts-with" for c in found)
    assert before + timedelta(seconds=890) <= expiration <= before + timedelta(seconds=910)


def test_post_policy_binds_a_declared_sha256(direct: S3DirectUploads) -> None:
    digest = base64.b64encode(bytes(range(32))).decode()
    post = direct.presign_post(
        KEY, max_size=10, content_type="image/png", sha256_b64=digest, ttl_s=60
    )
    found, _ = conditions(post.fields["policy"])
    assert {"x-amz-checksum-algorithm": "SHA256"} in found
    assert {"x-amz-checksum-sha256": digest} in found
    assert post.fields["x-amz-checksum-sha256"] == digest


def test_part_url_is_sigv4_with_its_exact_length_signed(direct: S3DirectUploads) -> None:
    url = direct.presign_parts(KEY, "mpu-123", {3: 8 * 2**20}, 900)[3]
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == PUBLIC
    assert parts.path == f"/docs/{KEY}"
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert query["X-Amz-SignedHeaders"] == "content-length;host"
    assert query["X-Amz-Expires"] == "900"
    assert query["partNumber"] == "3"
    assert query["uploadId"] == "mpu-123"
    assert "Signature" not in query  # no SigV2 (where headers are not signed)
    assert len(query["X-Amz-Signature"]) == 64


def test_part_urls_of_different_lengths_have_different_signatures(
    direct: S3DirectUploads,
) -> None:
    # The length is inside the signature: a client cannot reuse a URL for a bigger body.
    urls = direct.presign_parts(KEY, "mpu-123", {1: 100, 2: 100, 3: 101}, 900)
    one = direct.presign_parts(KEY, "mpu-123", {1: 100}, 900)[1]
    other = direct.presign_parts(KEY, "mpu-123", {1: 101}, 900)[1]
    signature = "X-Amz-Signature"
    assert parse_qs(urlsplit(one).query)[signature] != parse_qs(urlsplit(other).query)[signature]
    query = parse_qs(urlsplit(urls[3]).query)
    assert query["X-Amz-SignedHeaders"] == ["content-length;host"]


def test_the_fast_part_urls_are_the_ones_boto3_would_sign(direct: S3DirectUploads) -> None:
    # Parts after the first are signed without boto3's request building: byte for byte the
    # same URL as boto3's, when both are made within the same second (X-Amz-Date).
    sizes = {1: 8 * 2**20, 2: 8 * 2**20, 7: 12345}
    for _ in range(5):
        fast = direct.presign_parts(KEY, "mpu/with+odd=chars", sizes, 600)
        slow = {
            number: direct._presign_part_by_boto3(KEY, "mpu/with+odd=chars", number, size, 600)
            for number, size in sizes.items()
        }
        dates = {
            parse_qs(urlsplit(url).query)["X-Amz-Date"][0]
            for url in [*fast.values(), *slow.values()]
        }
        if len(dates) == 1:
            break
    assert fast == slow

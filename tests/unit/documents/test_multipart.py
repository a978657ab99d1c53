"""The streaming multipart reader: one file out, as it arrives; anything malformed is a 400."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterable

import pytest

from upload_service.documents.multipart import FilePart, MultipartFileStream
from upload_service.errors import MalformedUpload

BOUNDARY = "----upload7MA4YWxkTrZu0gW"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
# File bytes that look like the start of a boundary without being one, at every offset.
TRICKY = (
    b"\r\n--" + BOUNDARY[:-1].encode() + b"X\r\n-\r\n--\r\r\n\n--" + BOUNDARY.encode()[:5] + b"\r"
)


def part(
    name: str,
    data: bytes,
    *,
    filename: str | None = None,
    content_type: str | None = None,
    disposition: str | None = None,
    extra_headers: Iterable[str] = (),
) -> bytes:
    if disposition is None:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
    headers = [f"Content-Disposition: {disposition}"]
    if content_type is not None:
        headers.append(f"Content-Type: {content_type}")
    headers.extend(extra_headers)
    return "".join(f"{h}\r\n" for h in headers).encode() + b"\r\n" + data


def multipart_body(*parts: bytes, close: bool = True) -> bytes:
    delimiter = f"--{BOUNDARY}".encode()
    body = b"".join(delimiter + b"\r\n" + p + b"\r\n" for p in parts)
    return body + (delimiter + b"--\r\n" if close else b"")


def file_part(data: bytes, filename: str = "report.pdf") -> bytes:
    return part("file", data, filename=filename, content_type="application/pdf")


async def chunked(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def randomly_chunked(body: bytes, seed: int) -> AsyncIterator[bytes]:
    rng = random.Random(seed)
    start = 0
    while start < len(body):
        size = rng.choice([1, 2, 3, 17, 100, 4096, 70_000])
        yield body[start : start + size]
        start += size


async def read_upload(
    body: bytes | AsyncIterator[bytes],
    content_type: str = CONTENT_TYPE,
    *,
    max_header_bytes: int = 16 * 1024,
    max_other_field_bytes: int = 64 * 1024,
) -> tuple[FilePart, bytes]:
    stream = body if not isinstance(body, bytes) else chunked(body, 65536)
    reader = MultipartFileStream(
        content_type,
        stream,
        max_header_bytes=max_header_bytes,
        max_other_field_bytes=max_other_field_bytes,
    )
    file = await reader.open()
    data = b"".join([chunk async for chunk in reader.chunks()])
    return file, data


# The file comes out whole and unchanged, however the body is cut.


@pytest.mark.parametrize("chunk_size", [1, 2, 7, 64, 1000, 65536, 1 << 30])
async def test_file_bytes_are_identical_whatever_the_chunk_size(chunk_size: int) -> None:
    content = (TRICKY + bytes(range(256))) * 40
    body = multipart_body(part("note", b"hello"), file_part(content), part("after", b"x"))
    file, data = await read_upload(chunked(body, chunk_size))
    assert data == content
    assert file == FilePart("file", "report.pdf", "application/pdf")


@pytest.mark.parametrize("seed", range(8))
async def test_file_bytes_are_identical_under_random_cuts(seed: int) -> None:
    content = random.Random(seed).randbytes(300_000) + TRICKY * 50
    body = multipart_body(file_part(content))
    _, data = await read_upload(randomly_chunked(body, seed))
    assert data == content


async def test_a_large_file_is_identical_in_big_chunks() -> None:
    content = random.Random(1).randbytes(5 * 1024 * 1024 + 3)
    _, data = await read_upload(chunked(multipart_body(file_part(content)), 256 * 1024))
    assert data == content


async def test_no_chunk_is_larger_than_64_kib_even_from_one_huge_body_chunk() -> None:
    content = random.Random(2).randbytes(1024 * 1024)
    reader = MultipartFileStream(CONTENT_TYPE, chunked(multipart_body(file_part(content)), 1 << 30))
    await reader.open()
    sizes = [len(chunk) async for chunk in reader.chunks()]
    assert sum(sizes) == len(content)
    assert max(sizes) <= 64 * 1024


async def test_tiny_network_reads_are_coalesced() -> None:
    content = b"a" * 100_000
    reader = MultipartFileStream(CONTENT_TYPE, chunked(multipart_body(file_part(content)), 10))
    await reader.open()
    sizes = [len(chunk) async for chunk in reader.chunks()]
    assert sum(sizes) == len(content)
    assert len(sizes) < 10  # not 10 000 ten-byte chunks


async def test_an_empty_file_yields_no_bytes() -> None:
    file, data = await read_upload(multipart_body(file_part(b"")))
    assert (file.filename, data) == ("report.pdf", b"")


async def test_chunks_arrive_before_the_body_has_ended() -> None:
    content = b"%PDF-" + bytes(2 * 1024 * 1024)
    body = multipart_body(file_part(content))
    sent = 0

    async def client() -> AsyncIterator[bytes]:
        nonlocal sent
        for start in range(0, len(body), 65536):
            sent += 1
            yield body[start : start + 65536]

    reader = MultipartFileStream(CONTENT_TYPE, client())
    await reader.open()
    chunks = reader.chunks()
    first = await anext(chunks)
    assert first.startswith(b"%PDF-")
    assert sent <= 2 < len(body) // 65536  # the rest of the body has not even been sent yet
    rest = b"".join([chunk async for chunk in chunks])
    assert first + rest == content


async def test_memory_does_not_grow_with_the_file() -> None:
    # The reader holds at most about one body chunk: the client is never more than that ahead.
    body_chunks = 0
    read_chunks = 0
    lead = 0

    async def client() -> AsyncIterator[bytes]:
        nonlocal body_chunks
        yield multipart_body(file_part(b""), close=False)[: -len(b"\r\n")]
        for _ in range(300):
            body_chunks += 1
            yield bytes(65536)
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    reader = MultipartFileStream(CONTENT_TYPE, client())
    await reader.open()
    async for _chunk in reader.chunks():
        read_chunks += 1
        lead = max(lead, body_chunks - read_chunks)
    assert lead <= 1


# Fields around the file are ignored, within bounds.


async def test_fields_before_and_after_the_file_are_ignored() -> None:
    body = multipart_body(
        part("title", b"Q1 invoice"),
        part("meta", b"{}", content_type="application/json"),
        file_part(b"%PDF-1.7"),
        part("comment", b"thanks"),
    )
    file, data = await read_upload(body)
    assert (file.field_name, file.filename, data) == ("file", "report.pdf", b"%PDF-1.7")


async def test_a_file_part_without_content_type_reports_none() -> None:
    file, _ = await read_upload(multipart_body(part("file", b"x", filename="a.png")))
    assert file.content_type is None


async def test_the_file_field_name_is_configurable() -> None:
    body = multipart_body(part("document", b"x", filename="a.pdf"))
    reader = MultipartFileStream(CONTENT_TYPE, chunked(body, 100), file_field="document")
    assert (await reader.open()).field_name == "document"


async def test_an_epilogue_after_the_closing_boundary_is_ignored() -> None:
    _, data = await read_upload(multipart_body(file_part(b"abc")) + b"epilogue\r\n")
    assert data == b"abc"


async def test_quoted_boundaries_and_header_case_are_accepted() -> None:
    content_type = f'Multipart/Form-Data; charset=utf-8; boundary="{BOUNDARY}"'
    body = multipart_body(
        part("file", b"x", disposition='FORM-DATA; NAME="file"; FileName="a.pdf"')
    )
    file, data = await read_upload(body, content_type)
    assert (file.filename, data) == ("a.pdf", b"x")


# Filenames as clients send them.


@pytest.mark.parametrize(
    ("disposition", "filename"),
    [
        ("form-data; name=\"file\"; filename*=UTF-8''%E2%82%AC%20rates.pdf", "€ rates.pdf"),
        (
            'form-data; name="file"; filename="EUR rates.pdf"; filename*=utf-8\'en\'%E2%82%AC.pdf',
            "€.pdf",
        ),
        ("form-data; name=\"file\"; filename*=ISO-8859-1''caf%E9.pdf", "café.pdf"),
        ('form-data; name="file"; filename="plain.pdf"; filename*=KOI8-R\'\'%C1.pdf', "plain.pdf"),
        ('form-data; name="file"; filename="plain.pdf"; filename*=UTF-8\'\'%FF.pdf', "plain.pdf"),
        ('form-data; name="file"; filename="say \\"hi\\".pdf"', 'say "hi".pdf'),
        ('form-data; name="file"; filename="back\\\\slash.pdf"', "back\\slash.pdf"),
        ('form-data; name="file"; filename="C:\\Users\\me\\a.pdf"', "C:\\Users\\me\\a.pdf"),
        ('form-data; name="file"; filename="semi;colon.pdf"', "semi;colon.pdf"),
        ("form-data; name=file; filename=token.pdf", "token.pdf"),
        ('form-data;name="file";filename="tight.pdf"', "tight.pdf"),
    ],
)
async def test_filenames_are_decoded(disposition: str, filename: str) -> None:
    file, _ = await read_upload(multipart_body(part("file", b"x", disposition=disposition)))
    assert file.filename == filename


async def test_raw_utf8_filenames_from_browsers_are_decoded() -> None:
    head = 'Content-Disposition: form-data; name="file"; filename="résumé.pdf"\r\n\r\n'
    body = multipart_body(head.encode("utf-8") + b"x")
    file, _ = await read_upload(body)
    assert file.filename == "résumé.pdf"


async def drain(chunks: AsyncIterator[bytes]) -> None:
    async for _chunk in chunks:
        pass


# Everything malformed is MalformedUpload.


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "multipart/mixed; boundary=abc",
        "multipart/form-data",
        "multipart/form-data; boundary=",
        'multipart/form-data; boundary=""',
        "multipart/form-data; boundary=" + "a" * 71,
        'multipart/form-data; boundary="ends-in-space "',
        'multipart/form-data; boundary="bad\\"quote"',
        "multipart/form-data; boundary=a; boundary=b",
        "",
    ],
)
def test_a_content_type_that_is_not_form_data_with_a_boundary_is_refused(
    content_type: str,
) -> None:
    with pytest.raises(MalformedUpload):
        MultipartFileStream(content_type, chunked(b"", 1))


async def expect_malformed(
    body: bytes | AsyncIterator[bytes],
    *,
    max_header_bytes: int = 16 * 1024,
    max_other_field_bytes: int = 64 * 1024,
) -> str:
    with pytest.raises(MalformedUpload) as caught:
        await read_upload(
            body, max_header_bytes=max_header_bytes, max_other_field_bytes=max_other_field_bytes
        )
    return caught.value.message


async def test_a_body_without_a_file_part_is_refused() -> None:
    message = await expect_malformed(multipart_body(part("title", b"x")))
    assert "no 'file' part" in message


async def test_an_empty_multipart_body_is_refused() -> None:
    await expect_malformed(f"--{BOUNDARY}--\r\n".encode())


async def test_a_file_part_without_a_filename_is_refused() -> None:
    message = await expect_malformed(multipart_body(part("file", b"%PDF-")))
    assert "no filename" in message


async def test_a_file_part_with_an_empty_filename_is_refused() -> None:
    await expect_malformed(multipart_body(part("file", b"", filename="")))


async def test_a_second_file_after_the_first_is_refused_while_draining() -> None:
    body = multipart_body(file_part(b"one"), part("other", b"two", filename="b.pdf"))
    message = await expect_malformed(chunked(body, 1))
    assert "more than one file" in message


async def test_a_second_part_named_file_is_refused() -> None:
    await expect_malformed(multipart_body(file_part(b"one"), part("file", b"two")))


async def test_a_file_in_another_field_is_refused() -> None:
    body = multipart_body(part("attachment", b"x", filename="a.pdf"), file_part(b"y"))
    assert "'file' field" in await expect_malformed(body)


async def test_a_body_that_ends_mid_file_is_refused_after_streaming_what_came() -> None:
    body = multipart_body(file_part(b"%PDF-" + bytes(200_000)))[:150_000]
    reader = MultipartFileStream(CONTENT_TYPE, chunked(body, 65536))
    await reader.open()
    chunks = reader.chunks()
    received = len(await anext(chunks)) + len(await anext(chunks))
    assert received > 0  # what came was streamed on before the end was known to be missing
    with pytest.raises(MalformedUpload, match="ended before the closing boundary"):
        await drain(chunks)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        f"--{BOUNDARY}\r\nContent-Disp".encode(),
        multipart_body(file_part(b"whole file"), close=False),
        multipart_body(file_part(b"whole file"))[: -len("--\r\n")],
    ],
    ids=["empty", "in-headers", "no-closing-boundary", "closing-boundary-cut"],
)
async def test_a_body_that_ends_early_is_refused(body: bytes) -> None:
    await expect_malformed(body)


async def test_a_body_that_is_not_multipart_is_refused() -> None:
    await expect_malformed(b'{"file": "not multipart"}')


async def test_a_part_without_content_disposition_is_refused() -> None:
    body = f"--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nx\r\n--{BOUNDARY}--\r\n"
    await expect_malformed(body.encode())


async def test_a_header_over_the_limit_is_refused() -> None:
    body = multipart_body(part("file", b"x", filename="a" * 20_000 + ".pdf"))
    assert "headers are too large" in await expect_malformed(chunked(body, 1000))


async def test_headers_over_the_total_limit_are_refused() -> None:
    headers = [f"X-Padding-{i}: {'v' * 1000}" for i in range(12)]
    body = multipart_body(part("file", b"x", filename="a.pdf", extra_headers=headers))
    await expect_malformed(body, max_header_bytes=8 * 1024)


async def test_too_many_headers_are_refused() -> None:
    headers = [f"X-H{i}: v" for i in range(40)]
    body = multipart_body(part("file", b"x", filename="a.pdf", extra_headers=headers))
    assert "too many headers" in await expect_malformed(body)


async def test_a_header_line_over_8_kib_is_refused() -> None:
    body = multipart_body(
        part("file", b"x", filename="a.pdf", extra_headers=["X-L: " + "v" * 9000])
    )
    assert "headers are too large" in await expect_malformed(body)


async def test_a_header_line_without_a_colon_is_refused() -> None:
    body = multipart_body(part("file", b"x", filename="a.pdf", extra_headers=["garbage"]))
    await expect_malformed(body)


@pytest.mark.parametrize("position", ["before", "after"])
async def test_a_field_over_the_limit_is_refused(position: str) -> None:
    big = part("notes", b"n" * 70_000)
    parts = (big, file_part(b"x")) if position == "before" else (file_part(b"x"), big)
    await expect_malformed(multipart_body(*parts))


async def test_a_field_limit_can_be_lowered() -> None:
    body = multipart_body(part("notes", b"n" * 200), file_part(b"x"))
    await expect_malformed(body, max_other_field_bytes=100)


async def test_endless_small_fields_after_the_file_are_cut_off() -> None:
    fields = [part(f"f{i}", b"v" * 1000) for i in range(2000)]
    assert "too much" in await expect_malformed(multipart_body(file_part(b"x"), *fields))


async def test_a_duplicated_disposition_parameter_is_refused() -> None:
    disposition = 'form-data; name="file"; filename="a.pdf"; filename="b.exe"'
    await expect_malformed(multipart_body(part("file", b"x", disposition=disposition)))


async def test_a_disposition_that_is_not_form_data_is_refused() -> None:
    disposition = 'attachment; name="file"; filename="a.pdf"'
    await expect_malformed(multipart_body(part("file", b"x", disposition=disposition)))


async def test_chunks_before_open_is_a_programming_error() -> None:
    reader = MultipartFileStream(CONTENT_TYPE, chunked(multipart_body(file_part(b"x")), 10))
    with pytest.raises(RuntimeError):
        await anext(reader.chunks())

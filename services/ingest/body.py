"""Reading request bodies within the limits: size (413) before memory is spent, gzip bombs too."""

from __future__ import annotations

import zlib

from fastapi import Request

from services.fhir.validation import BOM, InvalidSubmission, Issue


def _too_large(limit: int, what: str = "request") -> InvalidSubmission:
    return InvalidSubmission([Issue(f"{what} exceeds {limit} bytes", "body", "too-costly")], status=413)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it (or its gzip expansion) passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    gzipped = request.headers.get("content-encoding", "").lower() == "gzip"
    inflate = zlib.decompressobj(wbits=31) if gzipped else None
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        if inflate is not None:
            try:
                chunk = inflate.decompress(chunk, limit + 1 - size)
            except zlib.error as exc:
                raise InvalidSubmission([Issue("body is not valid gzip", "body", "structure")]) from exc
            if inflate.unconsumed_tail:
                raise _too_large(limit, "decompressed request")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        parts.append(chunk)
    return b"".join(parts)


def split_lines(body: bytes, max_lines: int) -> list[bytes]:
    """NDJSON lines (blank ones kept, so line numbers match the sender's file); a leading UTF-8 BOM is dropped."""
    lines = body.removeprefix(BOM).split(b"\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise InvalidSubmission([Issue("the NDJSON body is empty", "body", "required")])
    if len(lines) > max_lines:
        raise InvalidSubmission([Issue(f"{len(lines)} lines; the limit is {max_lines}", "body", "too-costly")],
                                status=413)
    return [ln.rstrip(b"\r") for ln in lines]

"""An MLLP listener for HL7 v2 (the framing hospital interface engines speak), over mutual TLS.

MLLP itself carries no credentials, so this listener only runs with TLS and a
client certificate: the certificate must chain to the configured client CA,
and its subject common name must be a registered, non-suspended organisation
(IHE ATNA style node authentication). Each framed message (``0x0B`` message
``0x1C 0x0D``) goes through exactly the HTTP route's path and is answered
with the framed ACK. Without certificate settings the listener is off.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from services.adapters.auth import Caller

log = logging.getLogger(__name__)

START, END = b"\x0b", b"\x1c\x0d"
MAX_FRAME = 4 * 1024 * 1024

Handle = Callable[[Caller, bytes], Awaitable[tuple[int, str, dict[str, str]]]]


def tls_context(cert: str, key: str, client_ca: str) -> ssl.SSLContext:
    """Server side of mutual TLS: a client certificate signed by ``client_ca`` is required."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(client_ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def caller_from_cert(peer: dict[str, Any] | None, registry: dict[str, Any]) -> Caller | None:
    """The organisation a verified client certificate names (subject CN), if registered and active."""
    if not peer:
        return None
    cn = next((v for rdn in peer.get("subject", ()) for k, v in rdn if k == "commonName"), None)
    org = registry.get("orgs", {}).get(cn) if cn else None
    if org is None or org.get("suspended", True):
        return None
    return Caller(id=f"mllp:{cn}", org=cn, org_type=str(org["type"]), role="integration")


def frames(buffer: bytearray) -> list[bytes]:
    """Complete MLLP frames taken off the front of ``buffer`` (a partial frame stays)."""
    out: list[bytes] = []
    while True:
        start = buffer.find(START)
        if start < 0:
            buffer.clear()
            return out
        end = buffer.find(END, start)
        if end < 0:
            del buffer[:start]
            if len(buffer) > MAX_FRAME:
                raise ValueError("MLLP frame too large")
            return out
        out.append(bytes(buffer[start + 1:end]))
        del buffer[:end + 2]


class MllpServer:
    def __init__(self, *, host: str, port: int, context: ssl.SSLContext, registry: dict[str, Any],
                 handle: Handle) -> None:
        self.host, self.port, self.context, self.registry, self.handle = host, port, context, registry, handle
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, ssl=self.context)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        caller = caller_from_cert(ssl_object.getpeercert() if ssl_object else None, self.registry)
        try:
            if caller is None:
                log.warning("MLLP connection refused: client certificate names no active organisation")
                return
            buffer = bytearray()
            while chunk := await reader.read(65536):
                buffer.extend(chunk)
                for message in frames(buffer):
                    _status, ack, _headers = await self.handle(caller, message)
                    writer.write(START + ack.encode() + END)
                    await writer.drain()
        except (ValueError, ConnectionError, ssl.SSLError) as exc:
            log.warning("MLLP connection closed: %r", exc)
        finally:
            writer.close()

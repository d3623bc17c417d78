"""An HTTP client of the audit service, for those who check it from outside: verifiers and witnesses.

It implements ``verify.LogSource`` and ``witness.LogClient``. Calls that name
people (the raw entries) carry a bearer token from ``token``, a callable so a
fresh single-use token can be minted per request.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator

import httpx

from services.tlog import wire


class AuditClient:
    def __init__(self, base_url: str, *, token: Callable[[], str] | None = None,
                 http: httpx.Client | None = None, timeout_s: float = 60) -> None:
        self.http = http or httpx.Client(base_url=base_url, timeout=timeout_s)
        self.token = token

    def close(self) -> None:
        self.http.close()

    def _auth(self) -> dict[str, str]:
        if self.token is None:
            raise PermissionError("reading the entries needs a regulator's token (--token or --as-org)")
        return {"Authorization": f"Bearer {self.token()}"}

    # --- public ---------------------------------------------------------------------

    def verifier_key(self) -> str:
        return self.http.get("/verifier-key").raise_for_status().text.strip()

    def checkpoint(self) -> str:
        return self.http.get("/checkpoint").raise_for_status().text

    def checkpoints(self) -> list[str]:
        return [c["note"] for c in self.http.get("/checkpoints").raise_for_status().json()]

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        r = self.http.get("/proofs/consistency", params={"first": first, "second": second}).raise_for_status()
        return [base64.b64decode(h) for h in r.json()["proof"]]

    def leaf_hashes(self, size: int) -> Iterator[bytes]:
        with self.http.stream("GET", "/leaves", params={"start": 0, "end": size}) as r:
            r.raise_for_status()
            yield from wire.decode_hashes(r.iter_bytes())

    def submit(self, cosigned: str) -> None:
        self.http.post("/cosignatures", content=cosigned.encode(),
                       headers={"Content-Type": "text/plain; charset=utf-8"}).raise_for_status()

    # --- authenticated ----------------------------------------------------------------

    def entries(self) -> Iterator[tuple[int, bytes]]:
        with self.http.stream("GET", "/entries/raw", headers=self._auth()) as r:
            r.raise_for_status()
            yield from wire.decode_entries(r.iter_bytes())

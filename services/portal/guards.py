"""The two guards ``app.py`` hands every page module, so each checks a visitor the same way.

``SignedIn(sid, role)`` is who holds session ``sid`` in ``role``, or None.
``Poster(request, sid, role)`` is who posts a state-changing form: same
origin, signed in as ``role``, with the session's synchroniser token; else the
Response to send (a redirect to sign in, or 403 for a forged request).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from services.portal.accounts import Principal

SignedIn = Callable[[str | None, str], Principal | None]
Poster = Callable[[Request, str | None, str], Awaitable[Principal | Response]]


class Refusal(Exception):
    """A page cannot be shown; ``response`` is what the visitor gets instead (a redirect to sign in, a 404).

    Raised by a route's dependency, so the route itself only runs for a visitor it serves;
    ``install`` turns it back into its response.
    """

    def __init__(self, response: Response) -> None:
        super().__init__("refused")
        self.response = response


def install(app: Starlette) -> None:
    async def refused(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refusal)
        return exc.response

    app.add_exception_handler(Refusal, refused)

"""One :class:`starlette.routing.Route` per path, whatever its methods.

Starlette matches the first route whose path fits; with one route per
method on the same path, a 405's ``Allow`` header would name only the first
route's methods. :func:`route` puts every method of a path in one route.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.routing import Match, Route

Handler = Callable[[Request], Awaitable[Any]]


class _Route(Route):
    """A route that also claims ``shadows`` methods for its path (answering
    them 405 through Starlette's own check), so a later parameterised route
    cannot take them: ``DELETE /peers/allowed`` is not a disconnect from a
    peer named "allowed"."""

    def __init__(self, path: str, endpoint: Handler, *, methods: list[str], shadows: tuple[str, ...]) -> None:
        super().__init__(path, endpoint, methods=methods)
        self.shadows = frozenset(m.upper() for m in shadows)

    def matches(self, scope: Any) -> tuple[Match, Any]:
        match, child = super().matches(scope)
        if match is Match.PARTIAL and scope.get("method") in self.shadows:
            return Match.FULL, child
        return match, child


def route(path: str, *, shadows: tuple[str, ...] = (), **handlers: Handler) -> Route:
    """``route("/peers", GET=list_peers, POST=connect)``; ``shadows``: methods
    a later ``/peers/{peer_id}`` would otherwise take for this literal path."""
    table = {method.upper(): fn for method, fn in handlers.items()}

    async def dispatch(request: Request) -> Any:
        method = "GET" if request.method == "HEAD" else request.method
        return await table[method](request)

    dispatch.__name__ = "_".join(fn.__name__ for fn in table.values())
    return _Route(path, dispatch, methods=list(table), shadows=shadows)

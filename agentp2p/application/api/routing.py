"""One :class:`starlette.routing.Route` per path, whatever its methods.

Starlette matches the first route whose path fits; with one route per
method on the same path, a 405's ``Allow`` header would name only the first
route's methods. :func:`route` puts every method of a path in one route.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

Handler = Callable[[Request], Awaitable[Any]]


def route(path: str, **handlers: Handler) -> Route:
    """``route("/peers", GET=list_peers, POST=connect)``."""
    table = {method.upper(): fn for method, fn in handlers.items()}

    async def dispatch(request: Request) -> Any:
        method = "GET" if request.method == "HEAD" else request.method
        return await table[method](request)

    dispatch.__name__ = "_".join(fn.__name__ for fn in table.values())
    return Route(path, dispatch, methods=list(table))

"""What every route handler reaches through ``request.app.state``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import Request

if TYPE_CHECKING:
    from agentp2p.node import Node


@dataclass(frozen=True)
class ApiLimits:
    """Bounds on what one client can make the daemon hold.

    ``max_body`` of None means "enough for the largest pub/sub message the
    node accepts, base64-encoded, plus envelope".
    """

    max_body: int | None = None
    max_streams: int = 256  # concurrent event streams (subscriptions...)
    heartbeat: float = 15.0  # seconds between SSE keepalives on an idle stream


@dataclass
class ApiContext:
    node: Node
    limits: ApiLimits
    max_body: int
    open_streams: int = 0
    extra: dict[str, object] = field(default_factory=dict)


def context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.api
    return ctx

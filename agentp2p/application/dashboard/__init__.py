"""The live dashboard (issue #16): a web page the daemon serves about itself.

``agentp2p daemon --dashboard`` (``[api] dashboard = true``) adds it to the
control API; ``agentp2p dashboard`` prints (``--open``: opens) a one-time
login link. The page shows the node's peers, SWIM members, topics and their
meshes, message rates, records and capabilities, and a live graph of the
network as this node sees it — plain HTML, JavaScript and CSS shipped in
``static/`` (no build step, nothing fetched from the internet), fed by the
``/v1`` JSON endpoints and the membership event stream. See
``docs/dashboard.md``.

Parts: :mod:`.sessions` (login codes and browser sessions, sans-IO),
:mod:`.gate` (what a session cookie may reach), :mod:`.routes`.

Nothing here is imported unless the dashboard is served: the API imports
this package only when asked to (``build_app(..., dashboard=True)``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.routing import BaseRoute

from agentp2p.application.dashboard.gate import DashboardGate
from agentp2p.application.dashboard.routes import dashboard_routes
from agentp2p.application.dashboard.sessions import DashboardLimits, Sessions

__all__ = ["DashboardGate", "DashboardLimits", "Sessions", "dashboard"]


def dashboard(
    limits: DashboardLimits | None = None, *, clock: Callable[[], float] = time.monotonic
) -> tuple[list[BaseRoute], DashboardGate]:
    """The dashboard's routes, and the gate that lets its browser sessions in."""
    sessions = Sessions(limits)
    return dashboard_routes(sessions, clock=clock), DashboardGate(sessions, clock=clock)

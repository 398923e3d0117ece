"""What a dashboard session cookie lets a browser do, checked before any route runs.

The API's :class:`~agentp2p.application.api.auth.BearerAuth` asks this gate
about every request that lacks the bearer token. The gate lets through:

* ``GET /dashboard/login`` — a page with a form that posts the one-time
  code back — and ``POST /dashboard/login`` from the page's own origin,
  which redeems it (the code is the credential; the handler checks it), and
  the page's static files (HTML, JavaScript, CSS shipped with the package:
  nothing secret);
* requests carrying a valid session cookie, if they are **reads of what the
  dashboard shows** (:data:`COOKIE_READS`, ``GET``/``HEAD``, or a WebSocket
  on a read-only event stream) or the dashboard's own logout, and they come
  **from the dashboard's own origin**.

Why so narrow. ``SameSite=Strict`` stops other *sites* from making the
browser send the cookie, but every page served from 127.0.0.1 — on any
port, say a development server showing untrusted content — is the *same
site* as the daemon. So the cookie never reaches anything that changes the
node (publish, send, connect, subscribe: a subscription joins a mesh), and
a request is refused when the browser says it came from another origin:
``Sec-Fetch-Site`` other than ``same-origin``/``none``, or an ``Origin``
that is not the daemon's own (browsers always send ``Origin`` on
WebSockets, which the same-origin policy does not cover). A request with
neither header — an old browser, or one that sends ``Sec-Fetch-*`` only to
trustworthy origins and is not on one — proves nothing about its origin,
so the cookie admits it only to the page itself (a top-level navigation:
``GET /dashboard/``) or with the header the page's own scripts add to their
requests (:data:`PAGE_HEADER`), which another origin cannot add without a
CORS preflight that this daemon never approves, and a tag (``img``,
``script``) cannot add at all.

The cookie's name ends with the port the browser reached the daemon on
(:func:`cookie_name`): browsers keep cookies per host, not per port, so two
daemons' dashboards on 127.0.0.1 with one name would overwrite each other's
session.

Everything else without the token gets the usual 401 — for a browser on a
dashboard page, an HTML page saying how to log in.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from typing import Any

from agentp2p.application.dashboard.sessions import Sessions

__all__ = ["COOKIE_PREFIX", "COOKIE_READS", "LOGIN_PATH", "LOGOUT_PATH", "PAGE_HEADER", "DashboardGate", "cookie_name"]

COOKIE_PREFIX = "agentp2p_dashboard_"
#: Added by the page's scripts to every request they make (see the module docstring).
PAGE_HEADER = b"x-agentp2p-dashboard"
#: The page itself: what a top-level navigation without Sec-Fetch-*/Origin may load.
PAGE_PATHS = ("/dashboard/", "/dashboard")
DASHBOARD_PREFIX = "/dashboard"
LOGIN_PATH = "/dashboard/login"
LOGOUT_PATH = "/dashboard/logout"
STATIC_PREFIX = "/dashboard/static/"
#: Paths a session cookie may read (exact paths; plus everything under the
#: dashboard's own pages but its login-code route, which needs the token).
COOKIE_READS = frozenset(
    {
        "/v1/node",
        "/v1/node/stats",
        "/v1/peers",
        "/v1/members",
        "/v1/members/events",
        "/v1/pubsub/topics",
        "/v1/pubsub/peers",
        "/v1/records/self",
    }
)
#: Only the token may mint login codes (else a session could renew itself forever).
TOKEN_ONLY = frozenset({"/dashboard/login-code"})
_SAFE_METHODS = ("GET", "HEAD")
_SAME_ORIGIN_FETCH = (b"same-origin", b"none")


def _headers(scope: dict[str, Any]) -> dict[bytes, bytes]:
    # Later duplicates lose: only the first of each header is considered.
    out: dict[bytes, bytes] = {}
    for name, value in scope.get("headers", ()):
        out.setdefault(name, value)
    return out


def _port(scope: dict[str, Any], headers: dict[bytes, bytes]) -> int:
    """The port the client reached us on: the ``Host`` header's (what the
    browser keys its origin on), else the socket's; 80 for a bare host."""
    host = headers.get(b"host")
    if host:
        _, sep, tail = host.rpartition(b":")
        if sep and tail.isdigit() and not host.endswith(b"]"):
            return int(tail)
        return 80
    server = scope.get("server")
    return int(server[1]) if server and server[1] else 80


def cookie_name(scope: dict[str, Any]) -> str:
    """The session cookie's name for this daemon: ``agentp2p_dashboard_<port>``."""
    return f"{COOKIE_PREFIX}{_port(scope, _headers(scope))}"


def session_cookie(scope: dict[str, Any]) -> str | None:
    """This daemon's session cookie's value from the ``Cookie`` header, if any."""
    raw = _headers(scope).get(b"cookie")
    if raw is None:
        return None
    want = cookie_name(scope)
    for part in raw.decode("latin-1").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name == want and value:
            return value
    return None


def _own_origin(headers: dict[bytes, bytes]) -> bytes | None:
    host = headers.get(b"host")
    return b"http://" + host if host else None


def says_origin(headers: dict[bytes, bytes]) -> bool:
    """Whether the request says where it comes from (``Sec-Fetch-Site`` or ``Origin``)."""
    return b"sec-fetch-site" in headers or b"origin" in headers


def from_own_origin(headers: dict[bytes, bytes]) -> bool:
    """False if the browser says another origin made this request."""
    site = headers.get(b"sec-fetch-site")
    if site is not None and site not in _SAME_ORIGIN_FETCH:
        return False
    origin = headers.get(b"origin")
    if origin is not None and origin != _own_origin(headers):
        return False
    return True


def login_post_from_own_page(headers: dict[bytes, bytes]) -> bool:
    """Whether a ``POST /dashboard/login`` may come from the login form's own page.

    Like :func:`from_own_origin`, except that ``Origin: null`` passes with
    ``Sec-Fetch-Site: same-origin``: our pages say ``Referrer-Policy:
    no-referrer`` (the login URL holds the code), and under it a browser
    sends a form post's ``Origin`` as ``null``.
    """
    site = headers.get(b"sec-fetch-site")
    if site == b"same-origin" and headers.get(b"origin") == b"null":
        return True
    return from_own_origin(headers)


def readable_by_cookie(scope: dict[str, Any]) -> bool:
    path: str = scope.get("path", "")
    if path in TOKEN_ONLY:
        return False
    if scope["type"] == "websocket":
        return path == "/v1/members/events"
    method = scope.get("method", "GET")
    if path == LOGOUT_PATH:
        return method == "POST"
    if method not in _SAFE_METHODS:
        return False
    return path in COOKIE_READS or path == DASHBOARD_PREFIX or path.startswith(DASHBOARD_PREFIX + "/")


class DashboardGate:
    """The :class:`~agentp2p.application.api.auth.BearerAuth` gate of a daemon serving the dashboard."""

    def __init__(self, sessions: Sessions, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.sessions = sessions
        self.clock = clock
        self.refused_cross_origin = 0
        #: cookie requests refused for saying nothing of their origin (see the module docstring)
        self.refused_no_origin = 0

    def admits(self, scope: dict[str, Any]) -> bool:
        path = scope.get("path", "")
        headers = _headers(scope)
        if scope["type"] == "http":
            method = scope.get("method")
            if method in _SAFE_METHODS:
                if path == LOGIN_PATH:
                    return True  # only a form that posts the code back: spends nothing
                if path.startswith(STATIC_PREFIX):
                    return True  # the page's own code and style: public, and the login page needs them
            elif method == "POST" and path == LOGIN_PATH:
                # The posted code is checked by the handler; from another origin it is refused.
                return login_post_from_own_page(headers)
        session = session_cookie(scope)
        if session is None or not readable_by_cookie(scope):
            return False
        if not from_own_origin(headers):
            self.refused_cross_origin += 1
            return False
        if not says_origin(headers) and PAGE_HEADER not in headers and not (
            scope["type"] == "http" and path in PAGE_PATHS
        ):
            self.refused_no_origin += 1
            return False
        return self.sessions.valid(session, self.clock())

    def refusal(self, scope: dict[str, Any]) -> tuple[dict[str, Any], bytes] | None:
        """An HTML 401 for a browser asking for a dashboard page without a
        session (None: the API's JSON 401 is right)."""
        path = scope.get("path", "")
        accept = _headers(scope).get(b"accept", b"")
        if scope["type"] != "http" or not path.startswith(DASHBOARD_PREFIX) or b"text/html" not in accept:
            return None
        body = LOGIN_NEEDED_PAGE.encode()
        start = {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                *SECURITY_HEADERS,
            ],
        }
        return start, body


#: Sent with every dashboard page: scripts and data only from the daemon
#: itself (the machine may have no internet, and nothing else should run
#: there), no framing, no referrer (a login URL must not leak).
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
]


def message_page(title: str, text: str, extra: str = "") -> str:
    """A small page: ``title``, a paragraph of ``text`` (HTML), then ``extra`` (HTML, e.g. a form)."""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title><link rel=icon href=\"data:,\"><link rel=stylesheet href=/dashboard/static/style.css></head>"
        f"<body class=message><main><h1>{html.escape(title)}</h1><p>{text}</p>{extra}</main></body></html>"
    )


LOGIN_NEEDED_PAGE = message_page(
    "agentp2p dashboard: log in",
    "This browser has no dashboard session for this daemon (or it expired). "
    "On the machine running the daemon, run <code>agentp2p dashboard</code> and open the link it prints "
    "(<code>agentp2p dashboard --open</code> opens it for you).",
)

"""Who gets into the dashboard, and how far a browser session reaches.

In-process nodes serving the API with the dashboard, on 127.0.0.1: without
the token or a session cookie everything is refused; a login code is minted
with the token only, shown as a form by GET (a prefetch spends nothing) and
redeemed once by a POST from the page's origin; the cookie it leads to is
named after the daemon's port (two dashboards on one host keep their own),
HttpOnly and SameSite=Strict, lasts an hour, reads what the page shows and
nothing that changes the node, only for requests from the dashboard's own
origin, and without Sec-Fetch-Site/Origin only the page itself or the
page's own scripts (their header); the bearer token keeps working for
everything. Daemon subprocesses check the user's
paths: a daemon without ``--dashboard`` has none (and never imports it),
and ``agentp2p dashboard`` says so.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import trio

from agentp2p.application.api import ApiService
from agentp2p.application.dashboard.gate import COOKIE_PREFIX, COOKIE_READS, LOGIN_PATH
from agentp2p.node import Node
from agentp2p.testing import DaemonProcess, cli_env, local_config

ROOT = Path(__file__).resolve().parents[2]


#: What the page's scripts add to their requests (app.js), as a browser's client here.
PAGE = {"X-Agentp2p-Dashboard": "1"}


@contextlib.asynccontextmanager
async def dashboard_node() -> AsyncIterator[tuple[ApiService, httpx.AsyncClient]]:
    """A node serving the API with the dashboard, and an HTTP client for it
    (no token) that sends what the page's scripts send."""
    api = ApiService("127.0.0.1:0", dashboard=True)
    async with Node(local_config(), services=[api]):
        with trio.fail_after(10):
            await api.ready.wait()
        async with httpx.AsyncClient(base_url=api.base_url, timeout=10, headers=PAGE) as http:
            yield api, http


def cookie_of(api: ApiService) -> str:
    """The daemon's session cookie name: one per port."""
    return f"{COOKIE_PREFIX}{api.address.port}"


def bearer(api: ApiService) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.token}"}


def code_of(answer: dict[str, Any]) -> str:
    return str(answer["path"].split("code=", 1)[1])


async def log_in(api: ApiService, http: httpx.AsyncClient) -> str:
    """Log ``http`` in as a browser would (the link's form, then its button); returns the session cookie."""
    r = await http.post(f"{api.base_url}/dashboard/login-code", headers=bearer(api))
    assert r.status_code == 200, r.text
    answer = r.json()
    r = await http.get(answer["url"])
    assert r.status_code == 200 and "set-cookie" not in r.headers, r.text
    r = await http.post(f"{api.base_url}{LOGIN_PATH}", data={"code": code_of(answer)})
    assert r.status_code == 303 and r.headers["location"] == "/dashboard/", r.text
    return http.cookies[cookie_of(api)]


async def test_without_the_token_or_a_session_everything_is_refused() -> None:
    async with dashboard_node() as (api, http):
        for path in ["/dashboard/", "/dashboard/api/network", "/dashboard/api/records", *sorted(COOKIE_READS)]:
            r = await http.get(path)
            assert r.status_code == 401, path
            assert r.json()["error"] == "unauthorized"
        assert (await http.post("/dashboard/login-code")).status_code == 401
        assert (await http.post("/dashboard/logout")).status_code == 401
        # A browser asking for the page is told how to log in.
        r = await http.get("/dashboard/", headers={"Accept": "text/html"})
        assert r.status_code == 401 and "agentp2p dashboard" in r.text
        assert r.headers["content-type"].startswith("text/html")
        # A made-up or empty code opens nothing.
        for path in ["/dashboard/login?code=nope", "/dashboard/login"]:
            r = await http.get(path)
            assert r.status_code == 401 and "set-cookie" not in r.headers
        for form in ({"code": "nope"}, {}):
            r = await http.post(LOGIN_PATH, data=form)
            assert r.status_code == 401 and "set-cookie" not in r.headers
        # The page's own files are public (the login page needs its style).
        r = await http.get("/dashboard/static/app.js")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
        assert (await http.get("/dashboard/static/../routes.py")).status_code in (401, 404)
        assert (await http.get("/dashboard/static/openapi.json")).status_code == 404


async def test_a_login_code_needs_the_token_works_once_and_sets_a_strict_httponly_cookie() -> None:
    async with dashboard_node() as (api, http):
        r = await http.post("/dashboard/login-code", headers=bearer(api))
        assert r.status_code == 200
        answer = r.json()
        assert answer["url"] == f"{api.base_url}{answer['path']}" and answer["expires_s"] == 60
        assert api.token not in answer["url"]
        r = await http.post(LOGIN_PATH, data={"code": code_of(answer)})
        assert r.status_code == 303 and r.headers["location"] == "/dashboard/"
        cookie = r.headers["set-cookie"]
        assert cookie.startswith(f"{cookie_of(api)}=")
        attributes = {part.strip().split("=")[0].lower(): part for part in cookie.split(";")}
        assert {"httponly", "samesite", "path", "max-age"} <= attributes.keys()
        assert attributes["samesite"].strip().lower() == "samesite=strict" and attributes["path"].strip() == "Path=/"
        assert attributes["max-age"].strip() == "Max-Age=3600"  # an hour: a stolen cookie is not good for long
        assert r.headers["referrer-policy"] == "no-referrer" and r.headers["cache-control"] == "no-store"
        # Used once: a second browser with the same link gets nothing.
        async with httpx.AsyncClient(base_url=api.base_url) as other:
            again = await other.get(answer["path"])
            assert again.status_code == 401 and "set-cookie" not in again.headers
            again = await other.post(LOGIN_PATH, data={"code": code_of(answer)})
            assert again.status_code == 401 and "set-cookie" not in again.headers
        # A session cannot mint codes for itself (it would never have to expire).
        assert (await http.post("/dashboard/login-code")).status_code == 401


async def test_opening_the_link_spends_nothing_only_its_form_post_does() -> None:
    # Browsers and chat clients prefetch links, and HEAD is routed as GET.
    async with dashboard_node() as (api, http):
        answer = (await http.post("/dashboard/login-code", headers=bearer(api))).json()
        for _ in range(2):
            r = await http.get(answer["path"])
            assert r.status_code == 200 and "set-cookie" not in r.headers
            assert '<form method="post" action="/dashboard/login">' in r.text and code_of(answer) in r.text
            assert "form-action 'self'" in r.headers["content-security-policy"]
            assert r.headers["cache-control"] == "no-store"
        assert (await http.head(answer["path"])).status_code == 200
        # A form on another origin cannot post it (and spends nothing trying).
        r = await http.post(LOGIN_PATH, data={"code": code_of(answer)}, headers={"Origin": "http://127.0.0.1:3000"})
        assert r.status_code == 401 and "set-cookie" not in r.headers
        r = await http.post(LOGIN_PATH, data={"code": code_of(answer)}, headers={"Origin": "null"})
        assert r.status_code == 401  # null (a sandboxed frame, a data: URL) without Sec-Fetch-Site saying ours
        # What Chromium sends from the form under our Referrer-Policy: no-referrer.
        r = await http.post(
            LOGIN_PATH, data={"code": code_of(answer)}, headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"}
        )
        assert r.status_code == 303 and cookie_of(api) in http.cookies
        assert (await http.get("/v1/node")).status_code == 200


async def test_two_dashboards_on_one_host_keep_their_own_sessions() -> None:
    # Browsers keep cookies per host, not per port: one name for both would
    # let the second login overwrite the first.
    async with dashboard_node() as (api1, _), dashboard_node() as (api2, _):
        async with httpx.AsyncClient(timeout=10, headers=PAGE) as browser:
            await log_in(api1, browser)
            await log_in(api2, browser)
            assert cookie_of(api1) != cookie_of(api2)
            for api in (api1, api2):
                r = await browser.get(f"{api.base_url}/v1/node")
                assert r.status_code == 200 and r.json()["peer_id"], api.base_url


async def test_without_origin_headers_a_cookie_opens_the_page_and_the_pages_own_requests_only() -> None:
    async with dashboard_node() as (api, http):
        session = await log_in(api, http)
        jar = {cookie_of(api): session}
        async with httpx.AsyncClient(base_url=api.base_url, cookies=jar) as bare:  # no Sec-Fetch-Site, no Origin
            assert (await bare.get("/dashboard/")).status_code == 200  # a top-level navigation to the page
            for path in ("/v1/peers", "/v1/node", "/dashboard/api/network"):
                assert (await bare.get(path)).status_code == 401, path
                assert (await bare.get(path, headers=PAGE)).status_code == 200, path  # the page's script
                assert (await bare.get(path, headers={"Sec-Fetch-Site": "same-origin"})).status_code == 200, path


async def test_a_session_reads_what_the_page_shows_and_changes_nothing() -> None:
    async with dashboard_node() as (api, http):
        await log_in(api, http)
        for path in ["/dashboard/", "/dashboard", "/dashboard/api/network", "/dashboard/api/records", *sorted(COOKIE_READS)]:
            if path in ("/v1/members/events", "/v1/records/self", "/v1/pubsub/peers"):
                continue  # a stream, a 503 (no record), a query parameter: below
            r = await http.get(path, follow_redirects=True)
            assert r.status_code == 200, (path, r.text)
        assert (await http.get("/v1/pubsub/peers", params={"topic": "t"})).status_code == 200
        assert (await http.get("/v1/records/self")).status_code == 503  # admitted; this node publishes no record
        async with http.stream("GET", "/v1/members/events") as stream:
            assert stream.status_code == 200
        page = await http.get("/dashboard/")
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        # Everything that acts, or is not on the page, still needs the token.
        refused = [
            ("POST", "/v1/pubsub/publish", {"topic": "t", "data": "x"}),
            ("GET", "/v1/pubsub/subscribe?topic=t", None),  # subscribing joins a mesh
            ("GET", "/v1/messages/incoming", None),  # reading takes messages from the agent
            ("GET", "/v1/messages/handle?type=x", None),
            ("POST", "/v1/peers", {"addr": "/ip4/127.0.0.1/tcp/1"}),
            ("PUT", "/v1/records/self", {"name": "x"}),
            ("PUT", "/v1/dht/value", {"key": "k", "value": "v"}),
            ("GET", "/v1/dht/value?key=k", None),
            ("POST", "/dashboard/login-code", None),
        ]
        for method, path, body in refused:
            r = await http.request(method, path, json=body)
            assert r.status_code == 401, (method, path, r.status_code)
        # The token still works for everything, cookie or not.
        r = await http.post("/v1/pubsub/publish", json={"topic": "t", "data": "x"}, headers=bearer(api))
        assert r.status_code == 200
        assert (await http.get("/dashboard/", headers=bearer(api))).status_code == 200


async def test_the_cookie_counts_only_from_the_dashboards_own_origin() -> None:
    async with dashboard_node() as (api, http):
        await log_in(api, http)
        own = api.base_url
        assert (await http.get("/v1/peers", headers={"Origin": own, "Sec-Fetch-Site": "same-origin"})).status_code == 200
        assert (await http.get("/v1/peers", headers={"Sec-Fetch-Site": "none"})).status_code == 200
        # Another port on 127.0.0.1 is the same *site* (SameSite lets the cookie
        # go), but not the same origin: refused.
        for headers in (
            {"Origin": "http://127.0.0.1:3000"},
            {"Origin": "null"},
            {"Sec-Fetch-Site": "same-site"},
            {"Sec-Fetch-Site": "cross-site"},
        ):
            assert (await http.get("/v1/peers", headers=headers)).status_code == 401, headers


async def test_logout_and_a_wrong_token_end_what_the_cookie_could_do() -> None:
    async with dashboard_node() as (api, http):
        await log_in(api, http)
        # A wrong token is an error even with a good cookie beside it.
        assert (await http.get("/v1/node", headers={"Authorization": "Bearer wrong"})).status_code == 401
        r = await http.post("/dashboard/logout", headers={"Origin": api.base_url})
        assert r.status_code == 200 and r.json() == {"logged_out": True}
        assert (await http.get("/v1/node")).status_code == 401


async def test_forged_and_foreign_cookies_are_refused() -> None:
    async with dashboard_node() as (api, http):
        await log_in(api, http)
        async with dashboard_node() as (api2, http2):
            # A session of one daemon is nothing to another.
            r = await http2.get("/v1/node", headers={"Cookie": f"{cookie_of(api2)}={http.cookies[cookie_of(api)]}"})
            assert r.status_code == 401
            r = await http2.get("/v1/node", headers={"Cookie": f"{cookie_of(api2)}={api2.token}"})
            assert r.status_code == 401  # the token is not a session
            # Nor does one daemon's cookie name work at another's port.
            r = await http2.get("/v1/node", headers={"Cookie": f"{cookie_of(api)}={http.cookies[cookie_of(api)]}"})
            assert r.status_code == 401


# -- daemons ------------------------------------------------------------------------------

_PROBE = textwrap.dedent(
    """
    import json, sys
    from agentp2p import cli

    real_run = cli._run_daemon
    result = {}

    async def run(config, services):
        import trio
        api = next(s for s in services if s.name == "api")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(real_run, config, services)
            with trio.fail_after(60):
                await api.ready.wait()
            host, port = api.address.host, api.address.port
            stream = await trio.open_tcp_stream(host, port)
            request = f"GET /dashboard/ HTTP/1.0\\r\\nHost: {host}\\r\\nAuthorization: Bearer {api.token}\\r\\n\\r\\n"
            await stream.send_all(request.encode())
            answer = b""
            while chunk := await stream.receive_some(65536):
                answer += chunk
            result["status"] = int(answer.split(b" ", 2)[1])
            result["imported"] = sorted(m for m in sys.modules if m.startswith("agentp2p.application.dashboard"))
            nursery.cancel_scope.cancel()

    cli._run_daemon = run
    code = cli.main(sys.argv[1:])
    print(json.dumps({"exit": code, **result}))
    """
)


def _probe_daemon(home: Path, *flags: str) -> dict[str, Any]:
    args = ["daemon", "--identity", str(home / "id.key"), "--listen", "/ip4/127.0.0.1/tcp/0",
            "--api", "127.0.0.1:0", "--log-level", "warning", *flags]
    proc = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=120,
                          env=cli_env(home), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def test_a_daemon_without_the_dashboard_has_none_and_never_imports_it(tmp_path: Path) -> None:
    assert _probe_daemon(tmp_path / "off") == {"exit": 0, "status": 404, "imported": []}
    on = _probe_daemon(tmp_path / "on", "--dashboard")
    assert on["status"] == 200 and "agentp2p.application.dashboard" in on["imported"]


def test_the_dashboard_command_says_when_a_daemon_does_not_serve_it(tmp_path: Path) -> None:
    with DaemonProcess(tmp_path, "--log-level", "warning") as d:
        out = d.run_cli("dashboard")
        assert out.returncode == 1
        assert "does not serve the dashboard" in out.stderr and "--dashboard" in out.stderr
    refused = subprocess.run(
        [sys.executable, "-m", "agentp2p", "daemon", "--api", "off", "--dashboard", "--identity", str(tmp_path / "x.key")],
        capture_output=True, text=True, timeout=60, env=cli_env(tmp_path), cwd=ROOT,
    )  # fmt: skip
    assert refused.returncode == 2 and "--api off and the dashboard" in refused.stderr

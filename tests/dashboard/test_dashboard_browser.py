"""The dashboard in a real headless Chromium, on a network of three daemons.

The user's path, end to end: ``agentp2p daemon --dashboard``, then
``agentp2p dashboard`` prints a one-time link, the browser opens it, and the
page shows the daemon's peers, its SWIM members, its own record and the
graph — and follows a node leaving. Screenshots of both moments are kept
(``$TEST_ARTIFACTS/dashboard``, else the test's tmp directory; the path is
printed).
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from agentp2p.testing import DaemonProcess, started_together
from tests.dashboard.browser import artifacts_dir, chromium, console_errors, full_page_screenshot

pytestmark = pytest.mark.slow  # three daemons and a browser: well over 10 s

WAIT = 60.0  # seconds; a loaded CI machine runs SWIM rounds late


def _wait(browser: Any, what: str, condition: Any) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT, poll_frequency=0.2).until(condition, message=f"waiting for {what}")


def _rows(browser: Any, table: str) -> dict[str, Any]:
    """The rows of a table by their ``data-peer``."""
    from selenium.webdriver.common.by import By

    return {r.get_attribute("data-peer"): r for r in browser.find_elements(By.CSS_SELECTOR, f"#{table} tbody tr")}


def _member_state(browser: Any, peer: str) -> str | None:
    from selenium.webdriver.common.by import By

    row = _rows(browser, "members").get(peer)
    return row.find_element(By.CSS_SELECTOR, "td.state").text if row is not None else None


def _graph_nodes(browser: Any) -> dict[str, str]:
    from selenium.webdriver.common.by import By

    return {
        g.get_attribute("data-peer"): g.get_attribute("class")
        for g in browser.find_elements(By.CSS_SELECTOR, "#graph g.node")
    }


def test_the_dashboard_shows_a_three_node_network_and_follows_a_node_leaving(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shots = artifacts_dir(tmp_path / "screenshots")
    with DaemonProcess(tmp_path / "a", "--dashboard", "--agent-name", "alpha", "--capability", "translate:fr,en", name="a") as a:
        b_proc = DaemonProcess(tmp_path / "b", "--bootstrap", a.addr, name="b")
        c_proc = DaemonProcess(tmp_path / "c", "--bootstrap", a.addr, name="c")
        with started_together(b_proc, c_proc) as (b, c):
            login = a.run_cli("dashboard", "--json")
            assert login.returncode == 0, login.stderr
            url = json.loads(login.stdout)["url"]
            assert url.startswith(f"http://{a.api_addr}/dashboard/login?code=")
            assert a.token not in login.stdout + login.stderr

            with chromium(tmp_path / "profile") as browser:
                browser.get(url)
                _wait(browser, "the dashboard page", lambda d: d.current_url.endswith("/dashboard/"))
                _wait(browser, "b and c in the peers table", lambda d: {b.peer_id, c.peer_id} <= _rows(d, "peers").keys())
                _wait(
                    browser,
                    "b and c alive among the SWIM members",
                    lambda d: _member_state(d, b.peer_id) == "alive" and _member_state(d, c.peer_id) == "alive",
                )
                _wait(browser, "all three in the graph", lambda d: {a.peer_id, b.peer_id, c.peer_id} <= _graph_nodes(d).keys())
                _wait(browser, "the live badge", lambda d: d.find_element("id", "live").text == "live")
                _wait(browser, "rates (two samples)", lambda d: d.find_element("id", "m-published").text != "–")
                assert browser.find_element("id", "self-name").text == "alpha"
                records = browser.find_element("id", "records").text
                assert "alpha" in records and "translate [fr, en]" in records
                assert "self" in _graph_nodes(browser)[a.peer_id]
                full_page_screenshot(browser, shots / "three-nodes.png")

                c.stop(signal.SIGTERM)  # a clean leave: SWIM says goodbye
                _wait(browser, "c gone from the peers table", lambda d: c.peer_id not in _rows(d, "peers"))
                _wait(browser, "c left (or failed) in SWIM", lambda d: _member_state(d, c.peer_id) in ("left", "dead"))
                _wait(browser, "c drawn as gone", lambda d: "dead" in _graph_nodes(d).get(c.peer_id, "dead"))
                assert b.peer_id in _rows(browser, "peers")
                full_page_screenshot(browser, shots / "after-c-left.png")

                assert console_errors(browser) == []
    # The token never reaches a log; the login link only reaches whoever asked.
    assert a.token not in a.log_text() and "code=" not in a.log_text()
    assert (shots / "three-nodes.png").stat().st_size > 10_000
    with capsys.disabled():
        print(f"\ndashboard screenshots: {shots}")

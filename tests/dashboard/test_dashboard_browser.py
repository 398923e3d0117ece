"""The dashboard in a real headless Chromium, on a network of three daemons.

The user's path, end to end: ``agentp2p daemon --dashboard``, then
``agentp2p dashboard`` prints a one-time link, the browser opens it and
presses *Log in*, and the page shows the daemon's peers, its SWIM members, its own record and the
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
from tests.dashboard.browser import artifacts_dir, chromium, console_errors, full_page_screenshot, log_in

pytestmark = pytest.mark.slow  # three daemons and a browser: well over 10 s

WAIT = 60.0  # seconds; a loaded CI machine runs SWIM rounds late


def _wait(browser: Any, what: str, condition: Any) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT, poll_frequency=0.2).until(condition, message=f"waiting for {what}")


def _table(browser: Any, table: str) -> list[dict[str, Any]]:
    """A table's rows, read in one script (the page rebuilds its tables every
    round: element references would go stale between two reads)."""
    rows: list[dict[str, Any]] = browser.execute_script(
        "return [...document.querySelectorAll(`#${arguments[0]} tbody tr`)].map(r => "
        "({peer: r.dataset.peer, cells: [...r.cells].map(c => c.textContent)}))",
        table,
    )
    return rows


def _rows(browser: Any, table: str) -> dict[str, list[str]]:
    """A table's cells by their row's ``data-peer``."""
    return {r["peer"]: r["cells"] for r in _table(browser, table)}


def _member_state(browser: Any, peer: str) -> str | None:
    cells = _rows(browser, "members").get(peer)
    return cells[1] if cells is not None else None


def _graph_nodes(browser: Any) -> dict[str, str]:
    """The graph's nodes: peer ID -> class."""
    nodes: dict[str, str] = browser.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#graph g.node')]"
        ".map(g => [g.dataset.peer, g.getAttribute('class')]))"
    )
    return nodes


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
                log_in(browser, url)
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
                assert _rows(browser, "peers")[b.peer_id][-1] == "normal"  # the trust column
                records = _table(browser, "records")
                assert [(r["cells"][0], r["cells"][2].strip()) for r in records] == [("alpha", "translate [fr, en]")]
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


def _devnet_nodes(browser: Any) -> dict[str, tuple[str, str]]:
    """The devnet's nodes table: label (n0...) -> (peer ID, state)."""
    return {r["cells"][0]: (r["peer"], r["cells"][2]) for r in _table(browser, "nodes")}


def _edges(browser: Any) -> set[frozenset[str]]:
    pairs: list[list[str]] = browser.execute_script(
        "return [...document.querySelectorAll('#graph line.edge')].map(e => [e.dataset.a, e.dataset.b])"
    )
    return {frozenset(p) for p in pairs}


def test_the_devnet_dashboard_shows_the_whole_network_a_kill_and_a_partition(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agentp2p.testing import DevnetProcess

    shots = artifacts_dir(tmp_path / "screenshots")
    flags = ["--dashboard", "--interval", "0", "--rate", "0", "--seeds", "1", "--bootstraps", "1"]
    with DevnetProcess(tmp_path / "devnet", nodes=5, procs=1, flags=flags) as devnet:
        url = devnet.event("dashboard")["url"]
        assert url.startswith("http://127.0.0.1:") and "/dashboard/login?code=" in url
        with chromium(tmp_path / "profile") as browser:
            log_in(browser, url)
            _wait(browser, "five nodes up", lambda d: [s for _, s in _devnet_nodes(d).values()] == ["up"] * 5)
            nodes = _devnet_nodes(browser)
            peer = {label: pid for label, (pid, _) in nodes.items()}
            assert set(peer) == {"n0", "n1", "n2", "n3", "n4"}
            # Everyone joined through n0: the graph has the whole network, not one node's view.
            _wait(browser, "every node linked", lambda d: {p for e in _edges(d) for p in e} == set(peer.values()))
            assert browser.find_element("id", "peers-section").is_displayed() is False  # one node's tables: not here
            full_page_screenshot(browser, shots / "devnet-five-nodes.png")

            assert devnet.command("kill 4")["ok"]
            _wait(browser, "n4 killed", lambda d: _devnet_nodes(d)["n4"][1] == "killed")
            _wait(browser, "n4's links gone", lambda d: not any(peer["n4"] in e for e in _edges(d)))
            assert "dead" in _graph_nodes(browser)[peer["n4"]]

            assert devnet.command("partition 0-1 2-3")["ok"]
            crossing = {frozenset((peer[a], peer[b])) for a in ("n0", "n1") for b in ("n2", "n3")}
            _wait(browser, "no link across the partition", lambda d: not (_edges(d) & crossing))
            full_page_screenshot(browser, shots / "devnet-killed-and-partitioned.png")

            again = devnet.command("dashboard")
            assert again["ok"] and again["url"] != url  # a fresh one-time link
            assert console_errors(browser) == []
        devnet.command("quit")
    with capsys.disabled():
        print(f"\ndevnet dashboard screenshots: {shots}")

"""pytest configuration shared by the whole suite.

``tests`` is a package (every directory has an ``__init__.py``): helpers
next to the tests are imported by their full name, e.g.
``from tests.api.api_fixtures import api_node``, so test file names need not
be unique. Generic helpers — in-process nodes, ``wait_until``, and the daemon
as a subprocess (:class:`agentp2p.testing.DaemonProcess`) — live in
:mod:`agentp2p.testing`, shared with the benchmarks.

Tiers: tests that routinely run for more than about ten seconds (real-time
SWIM failures, long pub/sub and messaging runs, floods, fuzzing a daemon)
are marked ``slow``, with ``@pytest.mark.slow`` or a module's ``pytestmark``.
``pytest -m "not slow"`` is the fast tier, ``pytest -m slow`` the rest;
plain ``pytest`` (CI) runs both.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from agentp2p.testing import children_since

_STARTED = pytest.StashKey[float]()

#: Slow tests in files this conftest's owners do not edit (tests/messaging is
#: another team's); a decorator in the file itself is better, when next edited.
SLOW_ELSEWHERE = {
    "tests/messaging/test_msg_real_flow.py::test_ten_thousand_messages_exactly_once_in_order_while_connections_die",
}


@pytest.hookimpl(tryfirst=True)  # before -m selects on the marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid in SLOW_ELSEWHERE:
            item.add_marker(pytest.mark.slow)
    if not hasattr(config, "workerinput"):  # a worker's error would not reach the user: checked below
        _refuse_shared_ids([item.nodeid for item in items])


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: object, ids: list[str]) -> None:
    """The controller of a parallel run (pytest-xdist) checks what each worker collected."""
    _refuse_shared_ids(ids)


def _refuse_shared_ids(ids: list[str]) -> None:
    """pytest-xdist schedules a file's tests by node id: of tests sharing an
    id, all but one would silently not run. Refuse the run instead."""
    shared = sorted(i for i, n in Counter(ids).items() if n > 1)
    if shared:
        raise pytest.UsageError(f"tests sharing a node id (all but one would not run): {shared[:5]}")


@pytest.fixture(scope="session", autouse=True)
def _without_agentp2p_settings() -> Iterator[None]:
    """The suite ignores the ``AGENTP2P_*`` settings of the shell it runs in
    (a user's own daemon may need them): in-process config reads the
    environment too. (agentp2p.testing.cli_env drops them for subprocesses.)"""
    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in os.environ if n.startswith("AGENTP2P_")]:
            mp.delenv(name)
        yield


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_STARTED] = time.monotonic()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test's report carries the log of every subprocess (daemon,
    helper program) it started or that was running meanwhile, e.g. a
    module fixture's daemons."""
    report = yield
    if report.failed and call.when in ("setup", "call"):
        for child in children_since(item.stash.get(_STARTED, time.monotonic())):
            report.sections.append((f"subprocess {child.name}", child.describe()))
    return report

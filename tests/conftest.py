"""pytest configuration shared by the whole suite.

``tests`` is a package (every directory has an ``__init__.py``): helpers
next to the tests are imported by their full name, e.g.
``from tests.api.api_fixtures import api_node``, so test file names need not
be unique. Generic helpers — in-process nodes, ``wait_until``, and the daemon
as a subprocess (:class:`agentp2p.testing.DaemonProcess`) — live in
:mod:`agentp2p.testing`, shared with the benchmarks.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from agentp2p.testing import children_since

_STARTED = pytest.StashKey[float]()


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

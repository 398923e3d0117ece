"""Fixtures for tests that drive the go-libp2p reference peer (interop/go-peer).

Without a Go toolchain these tests skip, with the reason in the report;
under CI (CI=true) a missing toolchain is a failure instead, so the interop
suite can never silently stop running there.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.interop.gopeer import GoBuildError, build_go_peer, find_go


@pytest.fixture(scope="session")
def go_peer_binary() -> Path:
    """Path to an up-to-date interop/go-peer binary, built if needed."""
    go = find_go()
    if go is None:
        if os.environ.get("CI") == "true":
            pytest.fail(
                "CI=true but `go` is not on PATH: the go-libp2p interop peer cannot be built",
                pytrace=False,
            )
        pytest.skip("`go` is not on PATH: cannot build the go-libp2p interop peer (needs Go >= 1.26.6)")
    try:
        return build_go_peer(go)
    except GoBuildError as exc:
        pytest.fail(str(exc), pytrace=False)

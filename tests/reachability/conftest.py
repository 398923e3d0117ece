"""The NAT lab as a fixture: a fresh little internet per test, deleted after it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.reachability.natlab import NatLab


@pytest.fixture
def lab() -> Iterator[NatLab]:
    with NatLab() as lab:
        yield lab

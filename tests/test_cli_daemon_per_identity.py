"""One set of API files per identity, and a CLI that says which daemon it
talks to (issue #11: two daemons sharing ~/.agentp2p both wrote api.addr and
the CLI silently talked to whichever wrote last)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentp2p.client.discovery import api_files, running_daemons
from agentp2p.testing import DaemonProcess, run_cli_async, wait_until


def test_api_files_are_named_after_the_identity(tmp_path: Path) -> None:
    assert api_files(tmp_path / "identity.key") == (tmp_path / "api.addr", tmp_path / "api.token")
    assert api_files(tmp_path / "alice.key") == (tmp_path / "alice.api.addr", tmp_path / "alice.api.token")


@contextlib.asynccontextmanager
async def _daemon(home: Path, name: str) -> AsyncIterator[str]:
    """A daemon on ``~/.agentp2p/<name>.key`` (HOME=home), API on any port; yields its peer ID."""
    key = home / ".agentp2p" / f"{name}.key"
    async with DaemonProcess(home, identity=key, name=name) as daemon:
        addr_file, _ = api_files(key)
        await wait_until(lambda: any(d.addr_file == addr_file for d in running_daemons(home / ".agentp2p")),
                         timeout=30, what=f"{name}'s API")  # fmt: skip
        yield daemon.peer_id


async def _status(home: Path, *flags: str) -> tuple[int, str, str]:
    r = await run_cli_async(home, "status", "--json", *flags)
    out = json.loads(r.stdout)["node"]["peer_id"] if r.returncode == 0 else ""
    return r.returncode, out, r.stderr


@pytest.mark.slow
async def test_two_daemons_in_one_directory_are_told_apart(tmp_path: Path) -> None:
    agentp2p_dir = tmp_path / ".agentp2p"
    async with _daemon(tmp_path, "identity") as default_id, _daemon(tmp_path, "alice") as alice_id:
        assert (agentp2p_dir / "api.addr").read_text() != (agentp2p_dir / "alice.api.addr").read_text()
        # --identity picks the daemon.
        r = await _status(tmp_path, "--identity", str(agentp2p_dir / "alice.key"))
        assert r[:2] == (0, alice_id), r[2]
        assert (await _status(tmp_path, "--identity", str(agentp2p_dir / "identity.key")))[:2] == (0, default_id)
        # No flag: the default identity's daemon, and the CLI says others run.
        code, peer, err = await _status(tmp_path)
        assert (code, peer) == (0, default_id)
        assert "talking to the daemon of" in err and "identity.key" in err and "also running: alice" in err
    async with _daemon(tmp_path, "alice") as alice_id:
        # Only a non-default daemon: used, and named.
        code, peer, err = await _status(tmp_path)
        assert (code, peer) == (0, alice_id) and "alice.key" in err
        async with _daemon(tmp_path, "bob"):
            # Two, neither the default: the user must choose.
            code, _, err = await _status(tmp_path)
            assert code == 1 and "choose one with --identity" in err and "alice" in err and "bob" in err

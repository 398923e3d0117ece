"""The daemon's SWIM honours the swim_* settings (issue #11: --swim used to
build SwimService() with defaults, ignoring TOML and AGENTP2P_* values)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentp2p.cli import _daemon_config, build_parser
from agentp2p.cli_client import daemon_services
from agentp2p.node import Node


@pytest.mark.parametrize("flags", [["--swim"], []])
def test_daemon_swim_uses_env_and_toml_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: list[str]) -> None:
    for name in [n for n in os.environ if n.startswith("AGENTP2P_")]:
        monkeypatch.delenv(name)
    toml = tmp_path / "agentp2p.toml"
    toml.write_text("swim_probe_timeout = 0.7\nswim_indirect_checks = 5\n")
    monkeypatch.setenv("AGENTP2P_SWIM_PROBE_INTERVAL", "2.5")
    args = build_parser().parse_args(
        ["daemon", *flags, "--api", "off", "--config", str(toml), "--identity", str(tmp_path / "id.key"),
         "--listen", "/ip4/127.0.0.1/tcp/0"]
    )
    config = _daemon_config(args)
    node = Node(config, services=daemon_services(args, config))
    swim = node.services["swim"]
    assert (swim.config.probe_interval, swim.config.probe_timeout, swim.config.indirect_checks) == (2.5, 0.7, 5)


def test_swim_flag_overrides_swim_off_in_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTP2P_SWIM", "false")
    base = ["daemon", "--api", "off", "--identity", str(tmp_path / "id.key"), "--listen", "/ip4/127.0.0.1/tcp/0"]
    off = build_parser().parse_args(base)
    on = build_parser().parse_args([*base, "--swim"])
    cfg_off, cfg_on = _daemon_config(off), _daemon_config(on)
    assert "swim" not in Node(cfg_off, services=daemon_services(off, cfg_off)).services
    assert "swim" in Node(cfg_on, services=daemon_services(on, cfg_on)).services

"""The daemon's SWIM honours the ``[swim]`` settings (issue #11: --swim used to
build SwimService() with defaults, ignoring TOML and AGENTP2P_* values; the
settings were then flattened ``swim_*`` keys, now one nested section like
every other service's)."""

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
    toml.write_text("[swim]\nprobe_timeout = 0.7\nindirect_checks = 5\n")
    monkeypatch.setenv("AGENTP2P_SWIM__PROBE_INTERVAL", "2.5")
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


def test_old_flat_swim_keys_are_refused_by_name(tmp_path: Path) -> None:
    from agentp2p.config import build_config
    from agentp2p.errors import ConfigError

    toml = tmp_path / "old.toml"
    toml.write_text("swim_probe_timeout = 0.7\n")
    with pytest.raises(ConfigError, match="unknown config key 'swim_probe_timeout'"):
        build_config(toml, environ={})


def test_bad_swim_values_are_config_errors_naming_the_section(tmp_path: Path) -> None:
    from agentp2p.config import build_config
    from agentp2p.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\[swim\].*probe_timeout"):
        build_config(environ={"AGENTP2P_SWIM__PROBE_TIMEOUT": "5"})
    with pytest.raises(ConfigError, match="'swim.probe_interval': invalid value 'fast'"):
        build_config(environ={"AGENTP2P_SWIM__PROBE_INTERVAL": "fast"})


def test_messaging_section_reaches_the_service_from_toml_and_env(tmp_path: Path) -> None:
    from agentp2p.config import build_config

    toml = tmp_path / "m.toml"
    toml.write_text(f"[messaging]\nstore = '{tmp_path / 'm.db'}'\n[messaging.session]\nreceive_window = 128\n")
    cfg = build_config(toml, environ={"AGENTP2P_MESSAGING__INBOX_MAX_MESSAGES": "99"})
    node = Node(cfg)
    svc = node.services["messaging"]
    assert svc.store_path == tmp_path / "m.db"  # type: ignore[attr-defined]
    assert svc.config.inbox_max_messages == 99  # type: ignore[attr-defined]
    assert svc.config.session.receive_window == 128  # type: ignore[attr-defined]

"""Configuration precedence and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentp2p.config import NodeConfig, PubSubConfig, build_config, env_overrides
from agentp2p.errors import AddressError, ConfigError


def test_precedence_defaults_file_env_flags(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text(
        'listen = ["/ip4/127.0.0.1/tcp/4100"]\nmax_connections = 50\n'
        '[pubsub]\nheartbeat_interval = 0.5\n[dht]\nmode = "client"\n'
    )
    env = {"AGENTP2P_MAX_CONNECTIONS": "60", "AGENTP2P_DHT__MODE": "server", "OTHER": "x"}
    cfg = build_config(f, environ=env, overrides={"listen": ["/ip4/127.0.0.1/tcp/4200"]})
    assert cfg.listen == ["/ip4/127.0.0.1/tcp/4200"]  # flag beats file
    assert cfg.max_connections == 60  # env beats file
    assert cfg.dht.mode == "server"  # env beats file, nested
    assert cfg.pubsub.heartbeat_interval == 0.5  # file beats default
    assert cfg.pubsub.degree == NodeConfig().pubsub.degree  # default


def test_env_lists_and_bools() -> None:
    cfg = build_config(environ={"AGENTP2P_BOOTSTRAP": "", "AGENTP2P_MDNS": "true"})
    assert cfg.bootstrap == [] and cfg.mdns is True
    assert env_overrides({"AGENTP2P_A__B__C": "1"}) == {"a": {"b": {"c": "1"}}}


@pytest.mark.parametrize(
    "toml, message",
    [
        ("listn = []", "unknown config key 'listn'"),
        ("[pubsub]\ndegre = 3", "unknown config key 'pubsub.degre'"),
        ("max_connections = 'many'", "invalid value"),
        ("mdns = 1", "invalid value"),
        ("pubsub = 3", "must be a table"),
        ('[dht]\nmode = "both"', "dht.mode"),
        ("[dht]\nslow_after = -1.0", "dht.slow_after"),
        ('[dht]\nslow_after = "fast"', "dht.slow_after"),
        ("[dht]\nslow_after = inf", "dht.slow_after"),
        ("[dht]\nslow_after = nan", "dht.slow_after"),
        ("[dht]\nreconnect_interval = -1.0", "dht.reconnect_interval"),
        ("[pubsub]\ndegree_near = 7", "degree_near"),
        ("[pubsub]\ndegree_near = 6", "below degree"),  # a mesh keeps a long link
        ("[pubsub]\ngossip_factor = 1.5", "pubsub.gossip_factor"),
        ("[pubsub]\ngossip_factor = -0.1", "pubsub.gossip_factor"),
        ("this is not toml", "c.toml"),
    ],
)
def test_bad_config_files(tmp_path: Path, toml: str, message: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text(toml)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_config(f, environ={})


def test_bad_addresses() -> None:
    with pytest.raises(AddressError, match="invalid multiaddr"):
        build_config(environ={}, overrides={"listen": ["/ip4/1.2.3/tcp/1"]})
    with pytest.raises(AddressError, match="/p2p/"):
        build_config(environ={}, overrides={"bootstrap": ["/ip4/127.0.0.1/tcp/1"]})
    with pytest.raises(AddressError, match="QmNotAPeer"):
        build_config(environ={}, overrides={"bootstrap": ["/ip4/127.0.0.1/tcp/1/p2p/QmNotAPeer"]})
    with pytest.raises(ConfigError, match="does not exist"):
        build_config(Path("/nonexistent/agentp2p.toml"), environ={})


def test_degree_near_reaches_the_router() -> None:
    from agentp2p.protocol.pubsub import router_params

    cfg = build_config(environ={"AGENTP2P_PUBSUB__DEGREE": "8", "AGENTP2P_PUBSUB__DEGREE_NEAR": "7"})
    assert cfg.pubsub.degree_near == 7
    assert (router_params(cfg.pubsub).d_near, router_params(cfg.pubsub).d_out) == (7, 2)
    assert PubSubConfig(degree=8, degree_low=2).degree_out == 1  # D_out below D_lo
    assert router_params(NodeConfig().pubsub).d_near == 0  # the spec's random meshes by default


def test_dht_slow_after_auto_seconds_or_off(tmp_path: Path) -> None:
    """0 (off) is the default; "auto" reaches the Kademlia core as None
    (learned); seconds from a file or the environment as seconds."""
    from agentp2p.protocol.dht import kademlia_config

    assert kademlia_config(build_config(environ={}).dht).slow_after == 0.0
    f = tmp_path / "c.toml"
    f.write_text('[dht]\nslow_after = "auto"')
    assert kademlia_config(build_config(f, environ={}).dht).slow_after is None
    f.write_text("[dht]\nslow_after = 2")
    assert kademlia_config(build_config(f, environ={}).dht).slow_after == 2.0
    assert kademlia_config(build_config(environ={"AGENTP2P_DHT__SLOW_AFTER": "auto"}).dht).slow_after is None
    env = {"AGENTP2P_DHT__SLOW_AFTER": "1.5"}
    assert kademlia_config(build_config(environ=env).dht).slow_after == 1.5


def test_gossip_factor_reaches_the_router() -> None:
    from agentp2p.protocol.pubsub import router_params

    cfg = build_config(environ={"AGENTP2P_PUBSUB__GOSSIP_FACTOR": "0.1"})
    assert router_params(cfg.pubsub).gossip_factor == 0.1

"""The container image and the compose network (#16): built from this
checkout, run as a 3-node network on the host's network, 127.0.0.1 only.

Skips, saying why, where Docker cannot run: no engine, no compose, or no
base image on a machine that cannot pull one (``.ci/run`` makes one with
``deploy/build-base.sh``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentp2p.testing import poll_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "deploy" / "compose.yaml"
HOST_OVERRIDE = Path(__file__).with_name("compose.host.yaml")
BASE_IMAGE = "agentp2p-base:bookworm"


def _run(*cmd: str, timeout: float = 60, env: dict[str, str] | None = None, check: bool = True) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _docker_ready() -> str | None:
    """Why Docker cannot be used here, or None."""
    if shutil.which("docker") is None:
        return "the docker client is not installed"
    if subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode != 0:
        return "no Docker engine answers (start dockerd; .ci/run does)"
    if subprocess.run(["docker", "image", "inspect", BASE_IMAGE], capture_output=True, timeout=30).returncode != 0:
        return f"no base image {BASE_IMAGE} (make it with deploy/build-base.sh; no registry is assumed)"
    return None


def _compose_command() -> list[str] | None:
    if subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    why = _docker_ready()
    if why:
        pytest.skip(why)
    tag = f"agentp2p:test-{uuid.uuid4().hex[:8]}"
    _run(str(ROOT / "deploy" / "build-image.sh"), "--base", BASE_IMAGE, "--tag", tag, timeout=600)
    try:
        yield tag
    finally:
        _run("docker", "image", "rm", "-f", tag, check=False)


class Network:
    """One compose project of deploy/compose.yaml on the host's network."""

    def __init__(self, compose: list[str], image: str, tmp: Path) -> None:
        self.project = f"agentp2p-test-{uuid.uuid4().hex[:8]}"
        self.bootstrap_port = _free_port()
        # Host networking cannot publish ports, and compose v1 cannot reset a
        # list from an override file (v2's !reset), so the bootstrap node's
        # published API port is dropped from a copy of the file; nothing else
        # is changed.
        text = COMPOSE_FILE.read_text()
        stripped = re.sub(r"\n    ports:\n      - [^\n]+", "", text)
        assert stripped != text, "compose.yaml no longer publishes the bootstrap's API port"
        self.file = tmp / "compose.yaml"
        self.file.write_text(stripped)
        self.base = [*compose, "-p", self.project, "-f", str(self.file), "-f", str(HOST_OVERRIDE)]
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AGENTP2P_")},
            "AGENTP2P_IMAGE": image,
            "AGENTS": "2",
            "BOOTSTRAP_LISTEN": f"/ip4/127.0.0.1/tcp/{self.bootstrap_port}",
            "BOOTSTRAP_API": "127.0.0.1:0",
            "BOOTSTRAP_ADDR": f"/ip4/127.0.0.1/tcp/{self.bootstrap_port}",
            "AGENT_LISTEN": "/ip4/127.0.0.1/tcp/0",
        }

    def compose(self, *args: str, timeout: float = 120) -> str:
        return _run(*self.base, *args, timeout=timeout, env=self.env)

    def containers(self) -> list[str]:
        return [c for c in self.compose("ps", "-q").split() if c]

    def cli(self, container: str, *args: str) -> Any:
        return json.loads(_run("docker", "exec", container, "agentp2p", *args, "--json", "--timeout", "5"))

    def health(self, container: str) -> str:
        return _run("docker", "inspect", "--format", "{{.State.Health.Status}}", container).strip()


@pytest.fixture
def network(image: str, tmp_path: Path) -> Iterator[Network]:
    compose = _compose_command()
    if compose is None:
        pytest.skip("neither 'docker compose' nor docker-compose is installed")
    net = Network(compose, image, tmp_path)
    try:
        net.compose("up", "-d", timeout=180)
        yield net
    finally:
        net.compose("down", "-v", "--timeout", "10", timeout=120)


def test_a_compose_network_forms_runs_as_non_root_and_sees_a_node_leave(network: Network) -> None:
    poll_until(lambda: len(network.containers()) == 3, timeout=60, what="3 containers")
    containers = network.containers()
    poll_until(
        lambda: all(network.health(c) == "healthy" for c in containers),
        timeout=90,
        what="every container healthy (the image's health check asks the control API)",
    )
    ids = {c: network.cli(c, "status")["node"]["peer_id"] for c in containers}
    assert len(set(ids.values())) == 3, "each container has its own identity"

    def everyone_sees_everyone() -> bool:
        for c in containers:
            alive = {m["peer_id"] for m in network.cli(c, "members") if m["state"] == "alive"}
            if alive != set(ids.values()) - {ids[c]}:
                return False
        return True

    poll_until(everyone_sees_everyone, timeout=90, what="each node's SWIM members are the other two, alive")

    for c in containers:
        assert _run("docker", "exec", c, "id", "-u").strip() == "10001"
        mode = _run("docker", "exec", c, "stat", "-c", "%a", "/data/.agentp2p/identity.key").strip()
        assert mode == "600"

    # One agent leaves (docker stop: SIGTERM, a graceful leave); the others notice.
    bootstrap = next(c for c in containers if "bootstrap" in _run("docker", "inspect", "--format", "{{.Name}}", c))
    leaver = next(c for c in containers if c != bootstrap)
    _run("docker", "stop", "--time", "10", leaver, timeout=60)
    gone = ids[leaver]

    def leaver_not_alive() -> bool:
        states = {m["peer_id"]: m["state"] for m in network.cli(bootstrap, "members", "--all")}
        return states.get(gone) in ("left", "dead")

    poll_until(leaver_not_alive, timeout=60, what="the bootstrap node to see the stopped agent leave")

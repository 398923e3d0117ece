"""Authorization through the daemon, as operators drive it: a policy from a
file, a certificate issued with the CLI and presented by another daemon,
refusals reaching the caller as 403 forbidden, changes at run time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentp2p.client import ApiError

from agentp2p.testing import DaemonProcess, run_cli, started_together


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, DaemonProcess, str, Path]]:
    tmp = tmp_path_factory.mktemp("policy")
    issuer_key = tmp / "issuer.key"
    made = run_cli(tmp, "id", "--identity", str(issuer_key))
    assert made.returncode == 0, made.stderr
    issuer = made.stdout.strip()
    policy = tmp / "policy.toml"
    policy.write_text(
        f'[policy]\n[policy.groups]\nops = "{issuer}"\n'
        '[[policy.rules]]\naction = "call"\nresource = "deploy"\npeers = ["group:ops"]\neffect = "allow"\n'
        '[[policy.rules]]\naction = "call"\nresource = "deploy"\npeers = ["*"]\neffect = "deny"\n'
        '[[policy.rules]]\naction = "send"\nresource = "secret.*"\npeers = ["*"]\neffect = "deny"\n'
    )
    with started_together(DaemonProcess(tmp / "a"), DaemonProcess(tmp / "b", "--policy", str(policy))) as (a, b):
        yield a, b, issuer, issuer_key


def test_cert_issue_add_and_the_policy_decides_with_the_group(pair) -> None:  # type: ignore[no-untyped-def]
    a, b, issuer, issuer_key = pair
    cert = a.home / "ops.cert"
    usage = a.run_cli("cert", "issue", "--group", "ops")
    assert usage.returncode == 2 and "--issuer-key, --peer" in usage.stderr
    issued = a.run_cli("cert", "issue", "--issuer-key", str(issuer_key), "--group", "ops", "--peer", a.peer_id,
                       "--hours", "1", "--out", str(cert))
    assert issued.returncode == 0, issued.stderr
    assert "no certificates" in a.run_cli("cert", "list").stdout
    added = a.run_cli("cert", "add", str(cert), "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["certificates"][0] == {**json.loads(added.stdout)["certificates"][0],
                                                           "group": "ops", "issuer": issuer, "subject": a.peer_id}
    assert "group ops by " + issuer in a.run_cli("cert", "list").stdout
    # b's certificate for itself cannot be loaded by a.
    other = b.home / "b.cert"
    assert b.run_cli("cert", "issue", "--issuer-key", str(issuer_key), "--group", "ops", "--peer", b.peer_id,
                     "--out", str(other)).returncode == 0
    refused = a.run_cli("cert", "add", str(other))
    assert refused.returncode == 1 and "not for this node" in refused.stderr and "400" in refused.stderr

    assert a.run_cli("connect", b.addrs[0]).returncode == 0
    # b answers 'deploy' requests through its API handler stream: none here, so the
    # allowed call is refused by b's *handler*, not its policy (502, not 403).
    allowed = a.run_cli("request", b.peer_id, "go", "--type", "deploy")
    assert allowed.returncode == 1 and "403" not in allowed.stderr, allowed.stderr
    secret = a.run_cli("send", b.peer_id, "psst", "--type", "secret.plans")
    assert secret.returncode == 1 and "HTTP 403 forbidden" in secret.stderr and "secret.plans" in secret.stderr

    groups = json.loads(b.run_cli("policy", "groups", a.peer_id, "--json").stdout)
    assert groups["groups"] == ["ops"] and groups["certificates"][0]["subject"] == a.peer_id
    shown = b.run_cli("policy")
    assert f"group ops: issuer {issuer}" in shown.stdout and "rule 2: deny send secret.* for *" in shown.stdout


def test_policy_set_and_clear_take_effect_at_once(pair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, b, _, _ = pair
    assert a.run_cli("connect", b.addrs[0]).returncode == 0
    closed = tmp_path / "closed.json"
    closed.write_text(json.dumps({"rules": [{"action": "send", "resource": "*", "peers": [a.peer_id], "effect": "deny"}]}))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rules": [{"action": "send", "peers": ["*"], "effect": "sometimes"}]}))
    before = json.loads(b.run_cli("policy", "--json").stdout)
    # The pair is shared by this module's tests: count from here.
    counted = json.loads(b.run_cli("status", "--json").stdout)["stats"]["policy"]
    # Checked offline first, as an operator would before deploying it.
    checked = run_cli(tmp_path, "policy", "check", str(closed))
    assert checked.returncode == 0 and "a valid policy: 1 rules, 0 groups, default allow" in checked.stdout
    refused = run_cli(tmp_path, "policy", "check", str(bad))
    assert refused.returncode == 2 and "effect must be 'allow' or 'deny'" in refused.stderr
    wrong = b.run_cli("policy", "set", str(bad))
    assert wrong.returncode == 2 and "effect must be 'allow' or 'deny'" in wrong.stderr
    # Also refused by the API itself (a client that skips the CLI's check), old policy kept.
    with b.sync_client() as client, pytest.raises(ApiError, match="effect") as err:
        client.set_policy(json.loads(bad.read_text()))
    assert err.value.status == 400
    assert json.loads(b.run_cli("policy", "--json").stdout) == before

    assert b.run_cli("policy", "set", str(closed)).returncode == 0
    refused = a.run_cli("send", b.peer_id, "hello", "--type", "chat")
    assert refused.returncode == 1 and "HTTP 403 forbidden" in refused.stderr
    cleared = b.run_cli("policy", "clear")
    assert cleared.returncode == 0 and "every peer may do everything" in cleared.stdout
    delivered = a.run_cli("send", b.peer_id, "hello again", "--type", "chat")
    assert delivered.returncode == 0, delivered.stderr
    stats = json.loads(b.run_cli("status", "--json").stdout)["stats"]["policy"]
    assert stats["denied"]["send"] == counted["denied"].get("send", 0) + 1
    assert stats["policy_changes"] == counted.get("policy_changes", 0) + 2
    status = b.run_cli("status").stdout
    assert "policy:        0 rules, default allow; refused: " in status and "send " in status
    assert "trust:         no peer below normal; cut off 0 time(s)" in status


def test_cli_trust_shows_scores_and_pins(pair) -> None:  # type: ignore[no-untyped-def]
    a, b, _, _ = pair
    assert a.run_cli("connect", b.addrs[0]).returncode == 0
    usage = a.run_cli("trust", "--pin", "trusted")
    assert usage.returncode == 2 and "--pin needs a PEER_ID" in usage.stderr
    pinned = a.run_cli("trust", b.peer_id, "--pin", "trusted")
    assert pinned.returncode == 0 and f"{b.peer_id}  0 trusted, pinned trusted: no offences" in pinned.stdout
    listed = json.loads(a.run_cli("trust", "--json").stdout)["peers"]
    assert [(t["peer_id"], t["pin"]) for t in listed] == [(b.peer_id, "trusted")]
    peers = a.run_cli("peers")
    assert f"{b.peer_id}  outbound" in peers.stdout and "trust 0 trusted" in peers.stdout
    assert json.loads(a.run_cli("peers", "--json").stdout)["peers"][0]["trust"] == {"score": 0.0, "level": "trusted"}
    bad = a.run_cli("trust", "not-a-peer")
    assert bad.returncode == 1 and "400" in bad.stderr
    unpinned = json.loads(a.run_cli("trust", b.peer_id, "--pin", "none", "--json").stdout)
    assert unpinned["pin"] is None and unpinned["level"] == "normal"


def test_daemon_flags_for_certificates_and_a_bad_policy_is_one_line(pair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, _, issuer, issuer_key = pair
    key = tmp_path / "c.key"
    peer = run_cli(tmp_path, "id", "--identity", str(key)).stdout.strip()
    cert = tmp_path / "c.cert"
    assert run_cli(tmp_path, "cert", "issue", "--issuer-key", str(issuer_key), "--group", "ops", "--peer", peer,
                   "--out", str(cert)).returncode == 0
    with DaemonProcess(tmp_path, "--certificate", str(cert), identity=key) as c:
        listed = json.loads(c.run_cli("cert", "list", "--json").stdout)["certificates"]
        assert [(x["group"], x["issuer"], x["subject"]) for x in listed] == [("ops", issuer, peer)]
    bad = tmp_path / "bad.toml"
    bad.write_text('[policy]\ndefault = "perhaps"\n')
    result = run_cli(tmp_path / "d", "daemon", "--listen", "/ip4/127.0.0.1/tcp/0", "--identity",
                     str(tmp_path / "d" / "d.key"), "--api", "off", "--policy", str(bad))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and "policy.default must be 'allow' or 'deny'" in lines[0], \
        result.stderr

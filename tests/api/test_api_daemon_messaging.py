"""Two daemon subprocesses with SWIM and capability records, driven by the CLI:
send/incoming round trip, members, find, record show/set, and the daemon flags."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentp2p.client import SyncClient
from agentp2p.testing import CLI, DaemonProcess, cli_env, poll_until, started_together


@pytest.fixture(scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, DaemonProcess]]:
    tmp = tmp_path_factory.mktemp("agents")
    with started_together(
        DaemonProcess(tmp / "a", "--swim", "--agent-name", "alpha", "--capability", "translate:fr,en"),
        DaemonProcess(tmp / "b", "--swim", "--agent-name", "beta", "--agent-description", "second"),
    ) as (a, b):
        yield a, b


def test_cli_send_reaches_cli_incoming_on_another_daemon(agents: tuple[DaemonProcess, DaemonProcess]) -> None:
    a, b = agents
    assert a.run_cli("connect", b.addrs[0]).returncode == 0
    reader = subprocess.Popen([*CLI, "incoming", "--count", "2", *b.client_args()], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=cli_env(b.home))  # fmt: skip
    try:
        assert reader.stderr is not None and "waiting for messages" in reader.stderr.readline()
        sent = a.run_cli("send", b.peer_id, "hello beta", "--type", "greeting", "--seal", "--wait", "consumed", "--receipt")
        assert sent.returncode == 0, sent.stderr
        msg_id, receipt, times = sent.stdout.rstrip("\n").split("\t")
        # Returned once b's reader took it, showing both receipts.
        assert len(msg_id) == 32 and receipt == "consumed"
        assert times.startswith("stored after ") and ", consumed after " in times
        piped = a.run_cli("send", b.peer_id, "-", "--json", input="line two")
        assert piped.returncode == 0, piped.stderr
        shown = json.loads(piped.stdout)
        assert len(shown["id"]) == 32 and shown["peer_id"] == b.peer_id and shown["receipt"] in ("stored", "consumed")
        assert shown["stored_after"] is not None
        out, err = reader.communicate(timeout=30)
    finally:
        if reader.poll() is None:
            reader.kill()
    assert reader.returncode == 0, err
    assert out.splitlines() == [f"{a.peer_id}\tgreeting\thello beta", f"{a.peer_id}\tmessage\tline two"]


def test_cli_send_with_nobody_reading_is_stored_and_waiting_for_consumed_times_out_with_one_line(
    agents: tuple[DaemonProcess, DaemonProcess],
) -> None:
    a, b = agents
    assert a.run_cli("connect", b.addrs[0]).returncode == 0
    stored = a.run_cli("send", b.peer_id, "unread", "--receipt")  # nobody reads at b: its inbox keeps it
    assert stored.returncode == 0, stored.stderr
    msg_id, receipt, times = stored.stdout.rstrip("\n").split("\t")
    assert receipt == "stored" and times.startswith("stored after ") and "consumed" not in times
    plain = a.run_cli("send", b.peer_id, "unread, plain")  # without --receipt: the ID alone, as always
    assert plain.returncode == 0, plain.stderr
    plain_id = plain.stdout.rstrip("\n")
    assert len(plain_id) == 32 and "\t" not in plain_id
    late = a.run_cli("send", b.peer_id, "unread too", "--wait", "consumed", "--timeout", "0.5")
    assert late.returncode == 1
    assert late.stderr.startswith("agentp2p: error: ") and "504 delivery_timeout" in late.stderr
    assert len(late.stderr.strip().splitlines()) == 1
    with SyncClient(home=b.home) as client, client.incoming() as inbox:
        first = inbox.receive()
        assert (first.id, first.text) == (msg_id, "unread")  # it waited at b for a reader
        second = inbox.receive()
        assert (second.id, second.text) == (plain_id, "unread, plain")
        assert inbox.receive().text == "unread too"  # so did the one whose sender gave up waiting


def test_cli_members_find_and_record(agents: tuple[DaemonProcess, DaemonProcess]) -> None:
    a, b = agents
    assert a.run_cli("connect", b.addrs[0]).returncode == 0
    with SyncClient(home=a.home) as client:
        poll_until(lambda: [m.state for m in client.members()] == ["alive"], 30, "b alive in a's members", 0.1)
    members = a.run_cli("members")
    assert members.returncode == 0 and b.peer_id in members.stdout and "alive" in members.stdout

    record = a.run_cli("record", "--json")
    assert record.returncode == 0, record.stderr
    shown = json.loads(record.stdout)
    assert shown["name"] == "alpha" and shown["capabilities"][0]["tags"] == ["fr", "en"]

    with SyncClient(home=b.home) as client:
        poll_until(lambda: [x.peer_id for x in client.find_agents("translate")] == [a.peer_id], 30, "b finds a", 0.1)
    found = b.run_cli("find", "--capability", "translate", "--tag", "fr")
    assert found.returncode == 0 and found.stdout.startswith(f"{a.peer_id}  alpha  alive")
    assert b.run_cli("record", "show", a.peer_id).stdout.splitlines()[1] == "name:         alpha"

    changed = b.run_cli("record", "set", "--capability", "summarize:short", "--metadata", "owner=tests")
    assert changed.returncode == 0, changed.stderr
    assert "capability:   summarize [short]" in changed.stdout and "metadata:     owner=tests" in changed.stdout
    bad = b.run_cli("record", "set", "--name", " padded ")
    assert bad.returncode == 1 and "invalid record" in bad.stderr


def test_daemon_record_flags_are_checked_before_it_starts(tmp_path: Path) -> None:
    cases = [
        (["--capability", "x"], "need --agent-name"),
        (["--agent-name", "a", "--capability", ":tag"], "name is empty"),
        (["--agent-card", str(tmp_path / "missing.json")], "--agent-card"),
        (["--agent-name", " a "], "would be invalid"),
    ]
    for extra, needle in cases:
        d = DaemonProcess(tmp_path / "d", *extra)
        result = subprocess.run(d.args, capture_output=True, text=True, timeout=60, env=d.env)
        assert result.returncode == 2, (extra, result.stderr)
        assert needle in result.stderr and result.stderr.startswith("agentp2p: error:"), result.stderr


def test_cli_request_answered_by_a_sync_program_on_the_other_daemon(agents: tuple[DaemonProcess, DaemonProcess]) -> None:
    import threading

    a, b = agents
    assert a.run_cli("connect", b.addrs[0]).returncode == 0
    ready = threading.Event()
    failures: list[BaseException] = []

    def answer_one() -> None:
        try:
            with SyncClient(home=b.home) as client, client.handle("reverse") as requests:
                ready.set()
                req = requests.receive()
                assert req.request_id is not None
                client.reply(req.request_id, req.text[::-1])
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            failures.append(exc)
            ready.set()

    worker = threading.Thread(target=answer_one)
    worker.start()
    try:
        assert ready.wait(30) and not failures, failures
        answered = a.run_cli("request", b.peer_id, "stressed", "--type", "reverse")
    finally:
        worker.join(30)
    assert not failures, failures
    assert answered.returncode == 0 and answered.stdout == "desserts\n", answered.stderr
    unanswered = a.run_cli("request", b.peer_id, "x", "--type", "reverse")  # the program left
    assert unanswered.returncode == 1 and "no handler" in unanswered.stderr

"""benchmarks/scale.py's command line at 20 nodes: each subcommand runs to its
JSON line and records the options it was given. The figures are benchmarks;
this catches a command that no longer starts or drops an option (an argument passed to the
wrong scenario did once: ``whole`` stopped with a TypeError)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--nodes", "20", "--join-rate", "20"]


def _bench(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    # This checkout's package, whichever one the interpreter's environment installed.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _scale(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return _bench("scale.py", *args, timeout=timeout)


def _run(*args: str, script: str = "scale.py") -> dict:
    """The last JSON line ``script`` prints (it must exit 0)."""
    done = _bench(script, *args)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [x for x in done.stdout.splitlines() if x.startswith("{")]
    assert lines, done.stdout[-2000:]
    return json.loads(lines[-1])


@pytest.mark.parametrize("args, check", [
    (["whole", *SMALL, "--settle", "5", "--crash-wait", "10", "--heal-wait", "5", "--publish-s", "2", "--idle", "12"],
     lambda r: r["config"]["n"] == 20 and r["config"]["settle_s"] == 5.0 and r["config"]["crash_wait_s"] == 10.0
     and r["config"]["publish_s"] == 2.0 and r["config"]["idle_s"] == 12.0
     and {"probe_closes", "graced", "graced_acked", "redialed_ahead"} <= set(r["idle"]["swim_stats"])),
    (["churn", *SMALL, "--duration", "10", "--churn", "6", "--rate", "0.5", "--swim", "off"],
     lambda r: r["config"]["rate"] == 0.5 and r["config"]["churn_per_hour"] == 6.0),
    (["join", *SMALL, "--swim", "off"], lambda r: r["build"]["joined"] == 20),
    (["merge", *SMALL, "--probe-connected", "0"],
     lambda r: r["config"]["n"] == 20 and r["merged_s"] is not None and r["config"]["probe_connected_min"] == 0),
    (["merge", *SMALL, "--roster-every", "4"],  # the node's default minimum, the roster's turn as given
     lambda r: r["config"]["probe_connected_min"] == 8 and r["config"]["roster_probe_every"] == 4),
    (["topology", "--nodes", "30", "--json"], lambda r: r["nodes"] == 30 and r["connections"]["reachable"] == 1.0),
    (["whole", *SMALL, "--swim-start", "warm", "--settle", "5", "--crash-wait", "10", "--publish-s", "2",
      "--partition-s", "0", "--newcomers", "3", "--crash-share", "0.1"],
     lambda r: r["config"]["swim_start"] == "warm" and r["build"]["swim_started_at"] > 0
     and r["crash"]["crashed"] == 3 and r["crash"]["all_seen"] == 3 and r["newcomer"]["newcomers"] == 3
     and r["partition"] is None and r["idle"]["dials_by_ps"] is not None
     # every SWIM byte is counted by what carried it, and none of the 3 crashes was missed
     and abs(sum(r["idle"]["swim_Bps_by"].values()) - r["idle"]["swim_Bps"]) < 0.01
     and r["crash"]["missed_by"] == 0 and set(r["idle"]["swim_stats"]) >= {"suspected", "refutations"}),
    (["merge", *SMALL, "--swim-start", "warm"],
     lambda r: r["config"]["swim_start"] == "warm" and r["merged_s"] is not None),
])
def test_each_subcommand_runs_at_20_nodes(args: list[str], check) -> None:
    r = _run(*args)
    assert check(r)
    if "config" in r and _in_work_tree():  # which code made the figures
        assert r["config"]["commit"] != "?", r["config"]


def _in_work_tree() -> bool:
    """A git checkout git accepts (an archive copy, or one git refuses as of
    dubious ownership, has no commit to record)."""
    done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--is-inside-work-tree"],
                          capture_output=True, text=True)
    return done.returncode == 0 and done.stdout.strip() == "true"


def test_a_publish_rate_of_zero_is_refused_with_a_clear_error() -> None:
    done = _scale("churn", "--rate", "0", timeout=60)
    assert done.returncode == 2 and "a finite number above 0" in done.stderr
    done = _scale("whole", "--idle", "inf", timeout=60)  # an idle window that never ends
    assert done.returncode == 2 and "a finite number above 0" in done.stderr


def test_newcomer_cost_runs_at_30_nodes() -> None:
    """benchmarks/newcomer_cost.py: the windows before and after, every dial by its cause."""
    r = _run("--nodes", "30", "--windows", "2", "--newcomers", "2", script="newcomer_cost.py")
    after = [row for row in r["rows"] if row["phase"] == "after"]
    assert len(after) == 2 and sum(after[-1]["by"].values()) == after[-1]["dials"] and after[-1]["by"]["boot"] >= 2
    assert after[-1]["newcomer_view_min"] > 0 and after[-1]["held_by_min"] > 0


def test_swim_two_networks_runs_at_40_members() -> None:
    """benchmarks/swim_two_networks.py: two clusters apart, then one contact; every view whole."""
    r = _run("--members", "40", "--seeds", "1", script="swim_two_networks.py")
    assert r["each_whole_before"] and r["whole_after_s"] is not None and r["push_pulls"] > 0

"""The work-hours bench harness runs end to end at a tiny size: every contender finishes, ratios print.

It runs ``bench/workhours.py`` as a user would (its own process, which starts the fake Severa, the
contenders and the connector as processes of their own on fresh vhosts of the real broker) with 50
events at one latency on SQLite. It asserts what the harness reports and that it cleaned up, never
how fast anything was: the machine is shared, and speed is the bench's business, not the suite's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "workhours.py"
#: The harness at this size takes about half a minute; past this something hangs.
TIMEOUT_SECONDS = 150
#: With the ladder's five rungs, nine contenders instead of four.
LADDER_TIMEOUT_SECONDS = 360


def vhosts() -> set[str]:
    listed = subprocess.run(
        ["rabbitmqctl", "list_vhosts", "-q", "name"], capture_output=True, text=True, check=True, timeout=60
    )
    return {line.strip() for line in listed.stdout.splitlines() if line.strip()}


def run_bench(tmp_path: Path, *options: str, timeout: float) -> str:
    """``bench/workhours.py`` at one latency on SQLite, as a user runs it; its stdout once it passed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEVERA_CONNECTOR_")}
    run = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            *("--latency-ms", "0", "--state", "sqlite", *options),
            *("--paced-seconds", "1", "--results-dir", str(tmp_path)),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    out = run.stdout
    assert run.returncode == 0, f"exit {run.returncode}\nstdout:\n{out}\nstderr:\n{run.stderr[-3000:]}"
    return out


@pytest.mark.integration
@pytest.mark.slow
def test_the_bench_runs_every_contender_and_prints_ratios(tmp_path: Path) -> None:
    out = run_bench(tmp_path, "--events", "50", timeout=TIMEOUT_SECONDS)

    rows = {line.split()[2] for line in out.splitlines() if line.strip().startswith("0 ms")}
    assert rows == {"fake-alone", "script", "connector-sqlite"}, out
    assert "ceiling (ack only)" in out
    assert "x script" in out, out
    assert "ceiling / script" in out, out
    assert "PROBLEM" not in out

    (saved,) = tmp_path.glob("workhours-*.json")
    figures = {f["contender"]: f for f in json.loads(saved.read_text())["figures"]}
    assert set(figures) == {"ceiling", "fake-alone", "script", "connector-sqlite"}
    for name in ("script", "connector-sqlite"):
        figure = figures[name]
        handled = figure["events"] + figure["paced_events"]
        assert figure["entries"] == handled, f"{name}: every event one hour entry in the fake"
        assert figure["failed"] == 0
        assert figure["exit_code"] == 0
        assert figure["p99_ms"] is not None
        assert figure["cpu_ms_per_event"] > 0
    (run_prefix,) = {line.split()[-1] for line in out.splitlines() if line.startswith("vhosts: ")}
    assert not {v for v in vhosts() if v.startswith(run_prefix)}, "the bench deletes the vhosts it made"


@pytest.mark.integration
@pytest.mark.slow
def test_the_ladder_runs_every_rung_on_the_ledger_it_is_given(tmp_path: Path) -> None:
    """``--ladder``: each rung of the script with guarantees added handles every event once."""
    out = run_bench(tmp_path, "--events", "30", "--ladder", timeout=LADDER_TIMEOUT_SECONDS)
    assert "PROBLEM" not in out
    rungs = [
        "ladder-confirms",
        "ladder-validated",
        "ladder-logged",
        "ladder-ledger:sqlite",
        "ladder-adapter:sqlite",
    ]
    rows = [line.split()[2] for line in out.splitlines() if line.strip().startswith("0 ms")]
    assert rows == ["fake-alone", "script", *rungs, "connector-sqlite"], out
    (saved,) = tmp_path.glob("workhours-*.json")
    figures = {f["contender"]: f for f in json.loads(saved.read_text())["figures"]}
    for name in rungs:
        figure = figures[name]
        assert figure["entries"] == figure["events"] + figure["paced_events"], name
        assert figure["failed"] == 0, name
        assert figure["exit_code"] == 0, name

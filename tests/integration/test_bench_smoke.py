"""Every bench runs end to end at a tiny size, as a user runs it, and cleans up after itself.

``bench/workhours.py`` is run with 50 events at one latency on SQLite (its own process, which starts
the fake Severa, the contenders and the connector as processes of their own on fresh vhosts of the
real broker), and with ``--ladder``; every other bench once at a size that takes seconds. They
assert what each bench reports, that it checked its own work (one entry per event, every dead
letter replayed, every invoice once in Netvisor), and that it left nothing on the broker or in
PostgreSQL -- never how fast anything was: the machine is shared, and speed is the bench's
business, not the suite's. The figures the README keeps come from these same scripts, so a bench
that no longer runs is a broken deliverable, not a stale tool.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "workhours.py"
#: The harness at this size takes about half a minute; past this something hangs.
TIMEOUT_SECONDS = 150
#: With the ladder's five rungs, nine contenders instead of four.
LADDER_TIMEOUT_SECONDS = 360


#: Where the benches find PostgreSQL by default, as the suite's other PostgreSQL tests do.
POSTGRES_DSN = os.environ.get("LEDGER_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
#: The quick benches take a few seconds each here; past this something hangs.
QUICK_TIMEOUT_SECONDS = 120


def rabbitmqctl(*args: str) -> set[str]:
    listed = subprocess.run(
        ["rabbitmqctl", *args, "--silent"], capture_output=True, text=True, check=True, timeout=60
    )
    return {line.strip() for line in listed.stdout.splitlines() if line.strip()}


def vhosts() -> set[str]:
    return rabbitmqctl("list_vhosts", "name")


def broker_and_database_objects() -> set[str]:
    """Every vhost, queue and exchange of the default vhost, and every PostgreSQL schema and table:
    what a bench could leave behind. Server-named exclusive queues and PostgreSQL's per-session
    temporary schemas are left out: the servers remove or reuse them, so they are not a bench's."""

    async def database() -> set[str]:
        connection = await asyncpg.connect(POSTGRES_DSN)
        try:
            rows = await connection.fetch(
                "SELECT table_schema || '.' || table_name AS name FROM information_schema.tables"
                " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
                " AND table_schema !~ '^pg_(toast_)?temp_'"
                " UNION SELECT nspname FROM pg_namespace WHERE nspname !~ '^pg_(toast_)?temp_'"
            )
        finally:
            await connection.close()
        return {f"pg:{row['name']}" for row in rows}

    broker = {f"vhost:{name}" for name in vhosts()}
    queues = {name for name in rabbitmqctl("list_queues", "name") if not name.startswith("amq.gen-")}
    broker |= {f"queue:{name}" for name in queues}
    broker |= {f"exchange:{name}" for name in rabbitmqctl("list_exchanges", "name")}
    return broker | asyncio.run(database())


def run_script(script: str, *options: str, timeout: float) -> str:
    """``bench/<script>`` as a user runs it, without the suite's connector settings; its stdout once
    it exited 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEVERA_CONNECTOR_")}
    env["BENCH_POSTGRES_DSN"] = POSTGRES_DSN
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *options],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert run.returncode == 0, f"exit {run.returncode}\nstdout:\n{run.stdout}\nstderr:\n{run.stderr[-3000:]}"
    return run.stdout


def run_bench(tmp_path: Path, *options: str, timeout: float) -> str:
    """``bench/workhours.py`` at one latency on SQLite, as a user runs it; its stdout once it passed."""
    return run_script(
        "workhours.py",
        *("--latency-ms", "0", "--state", "sqlite", *options),
        *("--paced-seconds", "1", "--results-dir", str(tmp_path)),
        timeout=timeout,
    )


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


REPLAYED = ("baseline (raw confirmed publish)", "target replay", "200 replayed, failed: none")

#: Each quick bench at a size that takes seconds, and lines its output must hold: the contenders'
#: rows and the bench's own check of its work.
QUICK_BENCHES = {
    "replay-sqlite": (
        ("dlq_replay.py", "--messages", "200", "--store", "sqlite"),
        REPLAYED,
    ),
    "replay-postgres": (
        ("dlq_replay.py", "--messages", "200", "--store", "postgres"),
        REPLAYED,
    ),
    "outbound": (
        ("outbound.py", "--invoices", "12", "--customers", "3", "--latency-ms", "0"),
        ("baseline (signed adds, serial)", "connector (run --role all)", "refusals in the whole run: 0"),
    ),
    "ledger": (
        ("ledger.py", "--cycles", "40", "--concurrency", "1", "8"),
        ("memory             8", "sqlite FULL        8", "postgres           8", "mean latency of one"),
    ),
    "dlq-store": (
        ("dlq_store.py", "--letters", "60", "--batch", "20", "--repeat", "1"),
        ("sqlite             20", "postgres           20"),
    ),
    "severa-client": (
        ("severa_client.py", "--calls", "40", "--rounds", "1"),
        ("concurrency  baseline/s  client/s  ratio", "parse reply (lxml, fault/quota headers)"),
    ),
    "profile": (
        ("profile_workhours.py", "--events", "30", "--state", "sqlite", "postgres"),
        ("{'created': 30}", "calls/event"),
    ),
}


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("bench", sorted(QUICK_BENCHES))
def test_each_quick_bench_prints_its_figures_and_leaves_nothing_behind(bench: str) -> None:
    (script, *options), wanted = QUICK_BENCHES[bench]
    before = broker_and_database_objects()

    out = run_script(script, *options, timeout=QUICK_TIMEOUT_SECONDS)

    missing = [line for line in wanted if line not in out]
    assert not missing, f"{bench}: {missing} not in:\n{out}"
    if bench == "profile":
        assert out.count("{'created': 30}") == 2, out  # one line per ledger, every event synced
    left = broker_and_database_objects() - before
    assert not left, f"{bench} left behind: {sorted(left)}"

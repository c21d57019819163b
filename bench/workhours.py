"""Work hours into Severa: the connector against a hand-written script and the broker, side by side.

    python bench/workhours.py [--events 3000] [--latency-ms 0 50] [--state sqlite postgres] [--rounds 1]
    python bench/workhours.py --soak 200000 [--state sqlite] [--latency-ms 0]
    python bench/workhours.py --ladder --latency-ms 0 --state sqlite --rounds 3

Every party is its own OS process: the fake Severa (``severa-connector fake-severa``, latency
injected through its admin API as a ``latency`` fault on every operation, and reset to its seed
before each contender), and each contender:

* **ceiling** -- raw consume + ack of the same events (``bench/contenders/ceiling.py``): the broker's
  limit on this machine;
* **fake-alone** -- the script's AddNewHourEntry over HTTP only, 32 at a time, no broker
  (``bench/contenders/fake_ceiling.py``): the fake's own limit at each latency, which on a small
  machine can bound every other contender;
* **script** -- ``bench/contenders/handwritten.py``: aio-pika with prefetch 32, an f-string
  AddNewHourEntry with known GUIDs over aiohttp, a result published, the ack; no guarantees;
* **connector** -- ``severa-connector run`` with production defaults except the state URL (SQLite
  in a temporary directory, or a fresh PostgreSQL schema) and the health port (a free one), JSON
  logs at INFO written to a file.
* **ladder** (with ``--ladder``) -- ``bench/contenders/ladder.py``, the script with the connector's
  guarantees added one rung at a time from the connector's own parts (confirms, validation, the
  JSON log line, the ledger on the first ``--state``, the Severa client), without its runtime: the
  connector's CPU per event minus the top rung's is what the runtime itself costs.

Each contender runs on a RabbitMQ vhost of its own, made for the run and deleted after it, with the
production topology. Two phases per contender and latency:

1. **backlog** -- N events published (with confirms) before the contender starts; events/s is
   (N - 1) / (time of the N-th result - time of the first), so start-up (shown apart) is left out.
   CPU ms per event are the ``/proc/<pid>/stat`` utime+stime deltas over that span, of the
   contender and of the fake separately;
2. **paced** -- events published one by one at half the rate the contender just reached, for
   ``--paced-seconds``; p50/p99 latency from publish to result (a backlog's latency would be
   queueing time).

Results are read from a queue the bench binds to the production results exchange (``#``). Peak RSS
is ``VmHWM``; calls per event are every call the fake counted during the contender's life (start-up
probes and look-ups included) over the events it handled. Prints a table with the ratios against
the script at the same latency and the issue's targets, and writes the figures as JSON to
``bench/results/``. Exit code 1 if any contender lost, refused or failed an event. ``--rounds N``
repeats every contender, alternating, and reports each one's fastest round.

``--soak N`` runs only the soak instead: N events through the connector (first ``--state``, first
``--latency-ms``) with at most ``--soak-backlog`` waiting, RSS sampled every ``--sample-seconds``,
printed as a series with a fitted slope in MB per 100,000 events.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import aio_pika
import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._broker import declare_topology, delete_topology
from bench._procs import (
    ROOT,
    Child,
    Sample,
    child,
    free_port,
    fresh_schema,
    fresh_vhosts,
    sample,
)
from connector.topology import Names
from tests.factories import (
    SEED_CASE_GUID,
    SEED_PHASE_GUID,
    SEED_USER_GUID,
    SEED_WORK_TYPE_GUID,
    SEVERA_SEED,
    event_dict,
)

SEVERA_KEY: Final = "bench-severa-key-" + uuid.uuid4().hex[:8]
CONTENDERS_DIR: Final = ROOT / "bench" / "contenders"
RESULTS_DIR: Final = ROOT / "bench" / "results"
PREFETCH: Final = 32  # the connector's production default, given to the other contenders too
PUBLISH_WINDOW: Final = 500
#: Far above any run: the fake's daily quota (100,000 by default) must not end a soak.
QUOTA: Final = 100_000_000
SCRIPT: Final = "script"
CEILING: Final = "ceiling"
FAKE_CEILING: Final = "fake-alone"
LADDER: Final = "ladder-"
#: The rungs of ``bench/contenders/ladder.py``, each the one before plus one guarantee.
RUNGS: Final = ("confirms", "validated", "logged", "ledger", "adapter")  # ladder.py's, in its order
LEDGER_RUNGS: Final = RUNGS[RUNGS.index("ledger") :]
GUIDS: Final = (
    *("--user-guid", SEED_USER_GUID, "--case-guid", SEED_CASE_GUID),
    *("--phase-guid", SEED_PHASE_GUID, "--work-type-guid", SEED_WORK_TYPE_GUID),
)
NAMES: Final = Names()  # production names: every contender has a vhost of its own


# ------------------------------------------------------------------------------------- figures


@dataclass(slots=True)
class Figure:
    """What one contender did at one latency."""

    contender: str
    latency_ms: int
    round: int
    events: int
    seconds: float  # first → N-th result of the backlog
    startup_seconds: float | None  # process start → first result (None: the ceiling times itself)
    cpu_ms_per_event: float
    fake_cpu_ms_per_event: float | None
    peak_rss_mb: float
    calls_per_event: float | None
    paced_rate: float | None = None
    paced_events: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    failed: int = 0  # workhour.failed results
    reasons: dict[str, int] = field(default_factory=dict)  # their reason codes
    entries: int | None = None  # hour entries the fake holds afterwards
    exit_code: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return (self.events - 1) / self.seconds if self.seconds > 0 else float("inf")


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (``share`` 0.99 for p99)."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))
    return ordered[rank]


# ---------------------------------------------------------------------------------- the broker


def event_message(index: int, label: str) -> tuple[str, aio_pika.Message]:
    # A full uuid4: the factory's 8 hex digits would repeat within a soak (a birthday collision is
    # the same entry at the same version with other content: a version conflict, dead-lettered).
    body = event_dict(description=f"bench {label} #{index}", source_entry_id=f"bench-{uuid.uuid4().hex}")
    event_id = str(body["event_id"])
    message = aio_pika.Message(
        json.dumps(body).encode(),
        content_type="application/json",
        message_id=event_id,
        correlation_id=event_id,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )
    return event_id, message


async def publish_backlog(exchange: aio_pika.abc.AbstractExchange, count: int, label: str) -> None:
    """``count`` events, confirmed, in pipelined windows."""
    for start in range(0, count, PUBLISH_WINDOW):
        batch = [event_message(i, label)[1] for i in range(start, min(count, start + PUBLISH_WINDOW))]
        await asyncio.gather(*(exchange.publish(m, "workhour.created", timeout=30) for m in batch))


class ResultWatch:
    """Every result event as it arrives (first arrival per correlation id), with the /proc samples
    of the watched processes taken the moment a wanted count is reached."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.failed = 0
        self.reasons: collections.Counter[str] = collections.Counter()
        self.changed = asyncio.Event()
        self.pids: dict[str, int] = {}
        self.marks: dict[int, tuple[float, dict[str, Sample]]] = {}
        self._wanted: set[int] = set()

    @classmethod
    async def bind(cls, channel: aio_pika.abc.AbstractChannel) -> ResultWatch:
        watch = cls()
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(NAMES.results_exchange, "#")
        await queue.consume(watch._on_result, no_ack=True)
        return watch

    def mark_at(self, *counts: int) -> None:
        self._wanted.update(counts)

    @property
    def count(self) -> int:
        return len(self.arrived)

    async def _on_result(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        key = message.correlation_id or ""
        if key in self.arrived:
            return  # at least once: a repeated result counts once
        now = time.monotonic()
        self.arrived[key] = now
        if message.routing_key == "workhour.failed":
            self.failed += 1
            with contextlib.suppress(ValueError, AttributeError):
                self.reasons[str(json.loads(message.body).get("reason"))] += 1
        if len(self.arrived) in self._wanted:
            self.marks[len(self.arrived)] = (now, {name: sample(pid) for name, pid in self.pids.items()})
        self.changed.set()

    async def wait_for(self, count: int, contender: Child, timeout: float) -> None:
        """Until ``count`` results arrived; fails early if the contender exits."""
        deadline = time.monotonic() + timeout
        while self.count < count:
            if not contender.running:
                raise contender.failure(f"exited with {self.count} of {count} results")
            if time.monotonic() > deadline:
                raise contender.failure(f"{self.count} of {count} results after {timeout:g} s")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), 0.5)


# ---------------------------------------------------------------------------------- the fake


@dataclass(frozen=True, slots=True)
class FakeSevera:
    """The fake Severa process and its admin API."""

    process: Child
    url: str
    admin_url: str
    http: aiohttp.ClientSession

    async def admin(self, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(method, f"{self.admin_url}/{path}", json=body) as response:
            payload = await response.read()
            if response.status >= 400:
                raise RuntimeError(f"fake Severa {method} {path}: HTTP {response.status} {payload[:300]!r}")
            return json.loads(payload) if payload else None

    async def fresh(self, latency_ms: int) -> None:
        """Back to the seed (no hour entries, zero counters, no faults), then the latency on every call."""
        await self.admin("POST", "reset")
        if latency_ms:
            await self.admin("POST", "faults", {"kind": "latency", "seconds": latency_ms / 1000})

    async def state(self) -> dict[str, Any]:
        state: dict[str, Any] = await self.admin("GET", "state")
        return state


@contextlib.asynccontextmanager
async def fake_severa(tmp: Path) -> AsyncIterator[FakeSevera]:
    seed = tmp / "severa-seed.json"
    seed.write_text(json.dumps(SEVERA_SEED))
    args = ["fake-severa", "--port", "0", "--seed", str(seed)]
    async with (
        child("fake Severa", args, {"FAKE_SEVERA_API_KEY": SEVERA_KEY}) as process,
        aiohttp.ClientSession() as http,
    ):
        serving = await process.logged("fake_severa.serving")
        fake = FakeSevera(process, str(serving["url"]), str(serving["admin"]), http)
        await fake.admin("POST", "quota", {"limit": QUOTA})
        yield fake


# ---------------------------------------------------------------------------------- contenders


@dataclass(frozen=True, slots=True)
class Plan:
    """One contender at one latency, on its own vhost."""

    contender: str  # ceiling | fake-alone | script | ladder-<rung>[:<state>] | connector-<state>
    latency_ms: int
    round: int = 1

    @property
    def vhost_label(self) -> str:
        return f"{self.contender}-{self.latency_ms}ms-r{self.round}"

    @property
    def state(self) -> str | None:
        if self.contender.startswith(LADDER):
            return self.contender.partition(":")[2] or None
        return self.contender.removeprefix("connector-") if self.contender.startswith("connector") else None

    @property
    def rung(self) -> str:
        return self.contender.removeprefix(LADDER).partition(":")[0]


def connector_env(amqp_url: str, fake: FakeSevera, state_url: str) -> dict[str, str]:
    """Production defaults except the state URL and a free health port; JSON logs at INFO."""
    return {
        "SEVERA_CONNECTOR_RABBITMQ__URL": amqp_url,
        "SEVERA_CONNECTOR_SEVERA__URL": fake.url,
        "SEVERA_CONNECTOR_SEVERA__API_KEY": SEVERA_KEY,
        "SEVERA_CONNECTOR_STATE_URL": state_url,
        "SEVERA_CONNECTOR_LOG__LEVEL": "INFO",
        "SEVERA_CONNECTOR_LOG__FORMAT": "json",
        "SEVERA_CONNECTOR_HTTP__PORT": str(free_port()),
    }


@contextlib.asynccontextmanager
async def state_url(plan: Plan, options: Options, tmp: Path) -> AsyncIterator[str]:
    """A state store of this contender's own: a SQLite file, or a fresh PostgreSQL schema."""
    if plan.state == "postgres":
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        async with fresh_schema(options.postgres_dsn, schema) as dsn:
            yield dsn
    else:
        yield f"sqlite:///{tmp / 'state.db'}"


@contextlib.asynccontextmanager
async def start(plan: Plan, options: Options, amqp_url: str, fake: FakeSevera) -> AsyncIterator[Child]:
    python = (sys.executable,)
    if plan.contender == CEILING:
        args = [str(CONTENDERS_DIR / "ceiling.py"), "--events", str(options.events)]
        async with child(CEILING, args, {"BENCH_AMQP_URL": amqp_url}, command=python) as process:
            yield process
    elif plan.contender == SCRIPT:
        args = [
            str(CONTENDERS_DIR / "handwritten.py"),
            *("--severa-url", fake.url, "--prefetch", str(PREFETCH)),
            *GUIDS,
        ]
        env = {"BENCH_AMQP_URL": amqp_url, "BENCH_SEVERA_API_KEY": SEVERA_KEY}
        async with child("hand-written script", args, env, command=python) as process:
            yield process
    elif plan.contender.startswith(LADDER):
        with tempfile.TemporaryDirectory(prefix="bench-ladder-") as tmp:
            async with state_url(plan, options, Path(tmp)) as url:
                args = [
                    str(CONTENDERS_DIR / "ladder.py"),
                    *("--severa-url", fake.url, "--prefetch", str(PREFETCH), "--rung", plan.rung),
                    *("--state-url", url, "--log-file", str(Path(tmp) / "ladder.log")),
                    *GUIDS,
                ]
                env = {"BENCH_AMQP_URL": amqp_url, "BENCH_SEVERA_API_KEY": SEVERA_KEY}
                async with child(plan.contender, args, env, command=python) as process:
                    yield process
    else:
        with tempfile.TemporaryDirectory(prefix="bench-connector-") as tmp:
            async with state_url(plan, options, Path(tmp)) as url:
                env = connector_env(amqp_url, fake, url)
                log = Path(tmp) / "connector.log"
                async with child(plan.contender, ["run"], env, log_file=log) as process:
                    yield process


async def measure(plan: Plan, options: Options, amqp_url: str, fake: FakeSevera) -> Figure:
    """Both phases of one contender at one latency (the ceiling has only the backlog)."""
    n = options.events
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await declare_topology(channel, NAMES)
        exchange = await channel.get_exchange(NAMES.workhours_exchange)
        watch = await ResultWatch.bind(channel)
        watch.mark_at(1, n)
        await publish_backlog(exchange, n, plan.vhost_label)
        await fake.fresh(plan.latency_ms)
        spawned = time.monotonic()
        async with start(plan, options, amqp_url, fake) as process:
            watch.pids = {"contender": process.pid, "fake": fake.process.pid}
            if plan.contender == CEILING:
                figure = await ceiling_figure(plan, process, options)
            else:
                figure = await backlog_figure(plan, process, watch, spawned, options)
                await paced_phase(figure, process, watch, connection, options)
            figure.peak_rss_mb = sample(process.pid).peak_rss_mb
            figure.exit_code = await process.stop()
            if figure.exit_code != 0:
                figure.problems.append(f"exited with {figure.exit_code}:\n" + "\n".join(process.tail[-10:]))
        if plan.contender != CEILING:
            await check_fake(figure, fake)
        await delete_topology(channel, NAMES)
        return figure
    finally:
        await connection.close()


async def measure_fake_alone(plan: Plan, options: Options, fake: FakeSevera) -> Figure:
    """The fake's own ceiling at this latency: HTTP calls only (``contenders/fake_ceiling.py``)."""
    n = options.events
    await fake.fresh(plan.latency_ms)
    args = [str(CONTENDERS_DIR / "fake_ceiling.py"), "--severa-url", fake.url, "--events", str(n)]
    args += ["--concurrency", str(PREFETCH), *GUIDS]
    fake_before = sample(fake.process.pid)
    env = {"BENCH_SEVERA_API_KEY": SEVERA_KEY}
    async with child("fake alone", args, env, command=(sys.executable,)) as process:
        done = await process.logged("fake_ceiling.done", timeout=options.timeout)
        fake_after = sample(fake.process.pid)
        figure = Figure(
            contender=plan.contender,
            latency_ms=plan.latency_ms,
            round=plan.round,
            events=n,
            seconds=float(done["last_at"]) - float(done["first_at"]),
            startup_seconds=None,
            cpu_ms_per_event=float(done["cpu_seconds"]) / n * 1000,
            fake_cpu_ms_per_event=(fake_after.cpu_seconds - fake_before.cpu_seconds) / n * 1000,
            peak_rss_mb=sample(process.pid).peak_rss_mb,
            calls_per_event=None,
        )
        figure.exit_code = await process.stop()
    await check_fake(figure, fake)
    if done["refused"]:
        figure.problems.append(f"the fake refused {done['refused']} calls")
    return figure


async def ceiling_figure(plan: Plan, process: Child, options: Options) -> Figure:
    done = await process.logged("ceiling.done", timeout=options.timeout)
    seconds = float(done["last_at"]) - float(done["first_at"])
    cpu = float(done["cpu_last"]) - float(done["cpu_first"])
    return Figure(
        contender=plan.contender,
        latency_ms=plan.latency_ms,
        round=plan.round,
        events=options.events,
        seconds=seconds,
        startup_seconds=None,
        cpu_ms_per_event=cpu / (options.events - 1) * 1000,
        fake_cpu_ms_per_event=None,
        peak_rss_mb=0.0,
        calls_per_event=None,
    )


async def backlog_figure(
    plan: Plan, process: Child, watch: ResultWatch, spawned: float, options: Options
) -> Figure:
    n = options.events
    await watch.wait_for(n, process, options.timeout)
    (first_at, first), (last_at, last) = watch.marks[1], watch.marks[n]
    per_event = 1000 / (n - 1)
    return Figure(
        contender=plan.contender,
        latency_ms=plan.latency_ms,
        round=plan.round,
        events=n,
        seconds=last_at - first_at,
        startup_seconds=first_at - spawned,
        cpu_ms_per_event=(last["contender"].cpu_seconds - first["contender"].cpu_seconds) * per_event,
        fake_cpu_ms_per_event=(last["fake"].cpu_seconds - first["fake"].cpu_seconds) * per_event,
        peak_rss_mb=0.0,
        calls_per_event=None,
        failed=watch.failed,
    )


async def paced_phase(
    figure: Figure,
    process: Child,
    watch: ResultWatch,
    connection: aio_pika.abc.AbstractConnection,
    options: Options,
) -> None:
    """Events one at a time at ``options.paced_share`` of the rate just measured; publish→result."""
    rate = max(1.0, figure.per_second * options.paced_share)
    count = max(20, round(rate * options.paced_seconds))
    channel = await connection.channel(publisher_confirms=False)  # a producer's plain publish
    exchange = await channel.get_exchange(NAMES.workhours_exchange)
    published: dict[str, float] = {}
    began = time.monotonic()
    for i in range(count):
        due = began + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing the producer, not waiting for a result
        event_id, message = event_message(i, f"paced {figure.contender}")
        published[event_id] = time.monotonic()
        await exchange.publish(message, "workhour.created")
    await watch.wait_for(figure.events + count, process, options.timeout)
    await channel.close()
    latencies = [(watch.arrived[key] - at) * 1000 for key, at in published.items()]
    figure.paced_rate, figure.paced_events = rate, count
    figure.p50_ms, figure.p99_ms = percentile(latencies, 0.50), percentile(latencies, 0.99)
    figure.failed, figure.reasons = watch.failed, dict(watch.reasons)


async def check_fake(figure: Figure, fake: FakeSevera) -> None:
    """Calls per event, and every event exactly one hour entry in the fake."""
    state = await fake.state()
    handled = figure.events + figure.paced_events
    figure.calls_per_event = sum(state["calls"].values()) / handled
    figure.entries = int(state["store"]["hour_entries"])
    if figure.entries != handled:
        figure.problems.append(f"the fake holds {figure.entries} hour entries for {handled} events")
    if figure.failed:
        why = ", ".join(f"{reason} {count}" for reason, count in sorted(figure.reasons.items()))
        figure.problems.append(f"{figure.failed} workhour.failed results ({why})")


# ------------------------------------------------------------------------------------ the run


@dataclass(frozen=True, slots=True)
class Options:
    events: int
    latencies_ms: tuple[int, ...]
    states: tuple[str, ...]
    paced_seconds: float
    paced_share: float
    amqp_url: str
    postgres_dsn: str
    timeout: float
    rounds: int
    soak: int | None
    soak_backlog: int
    sample_seconds: float
    results_dir: Path
    ladder: bool = False


def plans(options: Options) -> list[Plan]:
    """Per round the ceiling (Severa plays no part in it), then per latency the script and the
    connector: rounds alternate the contenders, so a burst of load elsewhere hits one round, not one
    contender."""
    chosen = []
    for round_ in range(1, options.rounds + 1):
        chosen.append(Plan(CEILING, 0, round_))
        for latency in options.latencies_ms:
            chosen.append(Plan(FAKE_CEILING, latency, round_))
            chosen.append(Plan(SCRIPT, latency, round_))
            if options.ladder:
                state = options.states[0]
                chosen += [
                    Plan(f"{LADDER}{rung}" + (f":{state}" if rung in LEDGER_RUNGS else ""), latency, round_)
                    for rung in RUNGS
                ]
            chosen += [Plan(f"connector-{state}", latency, round_) for state in options.states]
    return chosen


def fastest(figures: list[Figure]) -> list[Figure]:
    """Per contender and latency the figure of its fastest round (all of one round's figures, so
    that rate, CPU and latency stay one measurement)."""
    best: dict[tuple[str, int], Figure] = {}
    for figure in figures:
        key = (figure.contender, figure.latency_ms)
        if key not in best or figure.per_second > best[key].per_second:
            best[key] = figure
    return list(best.values())


async def comparison(options: Options) -> int:
    run_id = uuid.uuid4().hex[:6]
    chosen = plans(options)
    vhosts = {
        plan: f"bench-wh-{run_id}-{plan.vhost_label}" for plan in chosen if plan.contender != FAKE_CEILING
    }
    started = time.monotonic()
    load = os.getloadavg()
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="bench-workhours-") as tmp:
        async with (
            fake_severa(Path(tmp)) as fake,
            fresh_vhosts(list(vhosts.values()), options.amqp_url) as urls,
        ):
            for plan in chosen:
                what = f"… round {plan.round}: {plan.contender} at {plan.latency_ms} ms"
                print(what, file=sys.stderr, flush=True)
                if plan.contender == FAKE_CEILING:
                    figures.append(await measure_fake_alone(plan, options, fake))
                else:
                    figures.append(await measure(plan, options, urls[vhosts[plan]], fake))
    elapsed = time.monotonic() - started
    report(figures, options, load, elapsed)
    print(f"vhosts: made and deleted, named bench-wh-{run_id}-")
    save(figures, options, load, elapsed)
    return 1 if any(figure.problems for figure in figures) else 0


def fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def report(every: list[Figure], options: Options, load: tuple[float, float, float], elapsed: float) -> None:
    figures = fastest(every)
    print(
        f"Work hours: {options.events} events per contender (backlog), then {options.paced_seconds:g} s "
        f"paced at {options.paced_share:.0%} of each one's rate; every party its own process, each "
        f"contender on a fresh vhost; "
        + (f"fastest of {options.rounds} rounds" if options.rounds > 1 else "one round")
    )
    print(
        f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores; "
        f"whole run {elapsed:.0f} s"
    )
    header = (
        f"{'latency':>7}  {'contender':<23} {'events/s':>9} {'xscript':>7} {'start s':>7}"
        f" {'paced/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'CPU ms/ev':>9} {'xscript':>7}"
        f" {'fake ms/ev':>10} {'RSS MB':>7} {'calls/ev':>8}"
    )
    print(header)
    ceiling = next(f for f in figures if f.contender == CEILING)
    print(
        f"{'—':>7}  {'ceiling (ack only)':<23} {ceiling.per_second:>9.0f} {'':>7} {'':>7} {'':>7}"
        f" {'':>7} {'':>7} {ceiling.cpu_ms_per_event:>9.3f} {'':>7} {'':>10} {ceiling.peak_rss_mb:>7.0f}"
    )
    for latency in options.latencies_ms:
        row = [f for f in figures if f.latency_ms == latency and f.contender != CEILING]
        script = next(f for f in row if f.contender == SCRIPT)
        for figure in row:
            print(
                f"{latency:>4} ms  {figure.contender:<23} {figure.per_second:>9.1f}"
                f" {figure.per_second / script.per_second:>7.2f} {fmt(figure.startup_seconds, '.1f'):>7}"
                f" {fmt(figure.paced_rate, '.0f'):>7} {fmt(figure.p50_ms, '.1f'):>7}"
                f" {fmt(figure.p99_ms, '.1f'):>7} {figure.cpu_ms_per_event:>9.2f}"
                f" {figure.cpu_ms_per_event / script.cpu_ms_per_event:>7.2f}"
                f" {fmt(figure.fake_cpu_ms_per_event, '.2f'):>10} {figure.peak_rss_mb:>7.0f}"
                f" {fmt(figure.calls_per_event, '.3f'):>8}"
            )
    print("ratios: events/s and CPU ms/event of each contender over the script's at the same latency")
    print(
        f"{FAKE_CEILING}: the fake Severa's own limit (AddNewHourEntry over HTTP only, {PREFETCH} at a time, "
        "no broker); a contender near it is bounded by the fake, not by itself"
    )
    print(f"ceiling / script at {options.latencies_ms[0]} ms: ", end="")
    first_script = next(f for f in figures if f.contender == SCRIPT)
    print(f"{ceiling.per_second / first_script.per_second:.2f}x")
    print("targets (issue 12, item 2):")
    for line in targets(figures, options):
        print("  " + line)
    if options.rounds > 1:
        print("events/s of every round:")
        for figure in figures:
            rounds = [
                f for f in every if (f.contender, f.latency_ms) == (figure.contender, figure.latency_ms)
            ]
            rates = ", ".join(f"{f.per_second:.1f}" for f in sorted(rounds, key=lambda f: f.round))
            print(f"  {figure.contender} at {figure.latency_ms} ms: {rates}")
    for figure in every:
        for problem in figure.problems:
            print(f"PROBLEM {figure.contender} at {figure.latency_ms} ms, round {figure.round}: {problem}")


def targets(figures: list[Figure], options: Options) -> Iterator[str]:
    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    for latency in options.latencies_ms:
        script = next(f for f in figures if f.contender == SCRIPT and f.latency_ms == latency)
        for figure in figures:
            if not figure.contender.startswith("connector") or figure.latency_ms != latency:
                continue
            name = f"{figure.contender} at {latency} ms"
            speed = figure.per_second / script.per_second
            cpu = figure.cpu_ms_per_event / script.cpu_ms_per_event
            yield f"{name}: events/s {speed:.2f}x script (≥ 0.8x) {verdict(speed >= 0.8)}"
            yield f"{name}: CPU/event {cpu:.2f}x script (≤ 1.5x) {verdict(cpu <= 1.5)}"
            if latency and figure.p99_ms is not None:
                limit = 3 * latency
                yield f"{name}: p99 {figure.p99_ms:.0f} ms (≤ {limit} ms) {verdict(figure.p99_ms <= limit)}"
            if figure.calls_per_event is not None:
                calls = figure.calls_per_event
                yield f"{name}: calls/event {calls:.3f} (≤ 1.01) {verdict(calls <= 1.01)}"
            yield f"{name}: peak RSS {figure.peak_rss_mb:.0f} MB (< 200) {verdict(figure.peak_rss_mb < 200)}"


def save(figures: list[Figure], options: Options, load: tuple[float, float, float], elapsed: float) -> None:
    options.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = options.results_dir / f"workhours-{stamp}.json"
    document = {
        "bench": "workhours",
        "at": stamp,
        "options": {
            "events": options.events,
            "latencies_ms": options.latencies_ms,
            "states": options.states,
            "paced_seconds": options.paced_seconds,
            "paced_share": options.paced_share,
            "rounds": options.rounds,
        },
        "load_average": load,
        "cores": os.cpu_count(),
        "elapsed_seconds": elapsed,
        "figures": [{**asdict(f), "events_per_second": f.per_second} for f in figures],
    }
    path.write_text(json.dumps(document, indent=2, default=str))
    print(f"figures written to {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


# ------------------------------------------------------------------------------------ the soak


async def soak(options: Options) -> int:
    """N events through the connector with a bounded backlog; RSS every ``sample_seconds``."""
    assert options.soak is not None
    n, latency, state = options.soak, options.latencies_ms[0], options.states[0]
    plan = Plan(f"connector-{state}", latency)
    vhost = f"bench-soak-{uuid.uuid4().hex[:6]}"
    series: list[tuple[float, int, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        async with fake_severa(Path(tmp)) as fake, fresh_vhosts([vhost], options.amqp_url) as urls:
            connection = await aio_pika.connect(urls[vhost])
            try:
                channel = await connection.channel(publisher_confirms=True)
                await declare_topology(channel, NAMES)
                exchange = await channel.get_exchange(NAMES.workhours_exchange)
                watch = await ResultWatch.bind(channel)
                await fake.fresh(latency)
                async with start(plan, options, urls[vhost], fake) as process:
                    began = time.monotonic()
                    sampler = asyncio.create_task(rss_series(process, watch, began, options, series))
                    try:
                        await feed(exchange, watch, process, n, options)
                        await watch.wait_for(n, process, options.timeout)
                    finally:
                        sampler.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await sampler
                    series.append((time.monotonic() - began, watch.count, sample(process.pid).rss_mb))
                    peak = sample(process.pid).peak_rss_mb
                    elapsed = time.monotonic() - began
                    code = await process.stop()
                state_now = await fake.state()
                await delete_topology(channel, NAMES)
            finally:
                await connection.close()
    print(f"Soak: {n} events through {plan.contender} at {latency} ms, backlog <= {options.soak_backlog}")
    print(f"{'t s':>7} {'events':>8} {'RSS MB':>7}")
    for at, done, rss in series:
        print(f"{at:>7.0f} {done:>8} {rss:>7.1f}")
    warm = [(done, rss) for _, done, rss in series if done >= n * 0.1]
    slope = fitted_slope(warm) * 100_000 if len(warm) >= 2 else float("nan")
    print(
        f"{n / elapsed:.1f} events/s over {elapsed:.0f} s; peak RSS {peak:.0f} MB; RSS slope after the first "
        f"10 % of events: {slope:+.2f} MB per 100k events; calls/event "
        f"{sum(state_now['calls'].values()) / n:.3f}; failed results {watch.failed} {dict(watch.reasons)};"
        f" exit code {code}"
    )
    problems = watch.failed or code or state_now["store"]["hour_entries"] != n
    return 1 if problems else 0


async def feed(
    exchange: aio_pika.abc.AbstractExchange, watch: ResultWatch, process: Child, n: int, options: Options
) -> None:
    """Publish ``n`` events, never more than ``soak_backlog`` ahead of the results."""
    published = 0
    while published < n:
        if not process.running:
            raise process.failure(f"exited with {watch.count} of {n} results")
        room = min(options.soak_backlog - (published - watch.count), n - published)
        if room >= min(PUBLISH_WINDOW, n - published):
            batch = [event_message(published + i, "soak")[1] for i in range(room)]
            await asyncio.gather(*(exchange.publish(m, "workhour.created", timeout=30) for m in batch))
            published += room
        else:
            watch.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watch.changed.wait(), 0.5)


async def rss_series(
    process: Child, watch: ResultWatch, began: float, options: Options, series: list[tuple[float, int, float]]
) -> None:
    while process.running:
        point = (time.monotonic() - began, watch.count, sample(process.pid).rss_mb)
        series.append(point)
        # Live on stderr, so that a soak stopped early still leaves its series behind.
        print(f"soak {point[0]:.0f} s: {point[1]} events, RSS {point[2]:.1f} MB", file=sys.stderr, flush=True)
        await asyncio.sleep(options.sample_seconds)  # a sampling period, not a synchronisation


def fitted_slope(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of RSS (MB) over events."""
    xs, ys = [float(x) for x, _ in points], [y for _, y in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


# --------------------------------------------------------------------------------------- main


def parse(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=3000, help="backlog events per contender and latency")
    parser.add_argument("--latency-ms", type=int, nargs="+", default=[0, 50], help="injected per Severa call")
    parser.add_argument("--state", nargs="+", choices=["sqlite", "postgres"], default=["sqlite", "postgres"])
    parser.add_argument("--paced-seconds", type=float, default=10.0, help="length of the latency phase")
    parser.add_argument("--paced-share", type=float, default=0.5, help="paced rate / measured rate")
    parser.add_argument("--timeout", type=float, default=900.0, help="per phase, seconds")
    parser.add_argument("--rounds", type=int, default=1, help="repeat every contender; the fastest counts")
    parser.add_argument("--soak", type=int, default=None, metavar="N", help="only the soak, of N events")
    parser.add_argument("--soak-backlog", type=int, default=2000, help="most events waiting during the soak")
    parser.add_argument("--sample-seconds", type=float, default=10.0, help="soak RSS sampling period")
    parser.add_argument("--url", default=os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"))
    parser.add_argument(
        "--postgres-dsn",
        default=os.environ.get("BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--ladder",
        action="store_true",
        help="also the script with the guarantees added one at a time (bench/contenders/ladder.py; "
        "its ledger on the first --state)",
    )
    args = parser.parse_args(argv)
    if args.ladder and args.soak:
        parser.error("--ladder belongs to the comparison, not to --soak")
    if args.events < 2:
        parser.error("--events must be at least 2 (the rate is timed from the first result to the last)")
    if not 0 < args.paced_share <= 1:
        parser.error("--paced-share must be in (0, 1]")
    return Options(
        events=args.events,
        latencies_ms=tuple(args.latency_ms),
        states=tuple(dict.fromkeys(args.state)),
        paced_seconds=args.paced_seconds,
        paced_share=args.paced_share,
        amqp_url=args.url,
        postgres_dsn=args.postgres_dsn,
        timeout=args.timeout,
        rounds=max(1, args.rounds),
        soak=args.soak,
        soak_backlog=args.soak_backlog,
        sample_seconds=args.sample_seconds,
        results_dir=args.results_dir,
        ladder=args.ladder,
    )


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    try:
        return asyncio.run(soak(options) if options.soak else comparison(options))
    except Exception as exc:  # one line a human can act on; a contender's output is in the message
        reason = str(exc) if isinstance(exc, RuntimeError) else f"{type(exc).__name__}: {exc}"
        print(f"workhours bench failed: {reason}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""What the process-based benches share: children, their /proc figures, fresh vhosts and schemas.

Every party of a bench runs as its own OS process (a fake, a contender, the connector), the way it
would in production, so that one party's CPU never hides in another's and each one's figures can be
read from ``/proc`` on its own. The driver only starts, watches, measures and stops them.

* :class:`Child` -- one command in its own process; its output drained (a chatty child never blocks
  on a full pipe) and parsed as JSON log lines, or written to a file (what a log collector would
  read), the last lines kept for a failure report;
* :func:`sample` -- CPU seconds (utime + stime), resident and peak resident memory of a process;
* :func:`fresh_vhosts` -- RabbitMQ vhosts made for one run and deleted after it, so that the
  contenders' queues never meet and nothing is left on the shared broker;
* :func:`fresh_schema` -- a PostgreSQL schema for one contender's state, dropped after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlsplit, urlunsplit

ROOT: Final = Path(__file__).resolve().parents[1]
#: ``severa-connector`` as this interpreter runs it.
CLI: Final = (sys.executable, "-m", "connector")
#: Clock ticks per second of ``/proc/<pid>/stat``'s utime and stime.
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
#: How many lines of a child's output a failure report shows.
TAIL_LINES: Final = 40
RABBITMQCTL_TIMEOUT: Final = 60.0


class Child:
    """A command in its own process.

    With ``log_file`` its output goes to that file untouched (the driver spends no CPU reading a
    contender's per-message log lines); without, it is read line by line and JSON lines are indexed
    by their ``event`` so that :meth:`logged` can wait for one (the fakes log their URL so).
    """

    def __init__(self, name: str, process: asyncio.subprocess.Process, log_file: Path | None) -> None:
        self.name = name
        self.process = process
        self.log_file = log_file
        self._tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._first: dict[str, dict[str, Any]] = {}
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read(), name=f"{name}-output")

    @classmethod
    async def start(
        cls,
        name: str,
        args: Sequence[str],
        env: Mapping[str, str],
        *,
        command: Sequence[str] = CLI,
        log_file: Path | None = None,
    ) -> Child:
        """Start ``command + args`` with ``env`` on top of this environment minus the project's own
        variables (a stray ``SEVERA_CONNECTOR_*`` of the caller must not change what is measured)."""
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("SEVERA_CONNECTOR_", "FAKE_"))}
        output: Any = asyncio.subprocess.PIPE
        if log_file is not None:
            output = log_file.open("wb")
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                *args,
                cwd=ROOT / "tests",  # no .env of the working copy
                env={**clean, **env, "PYTHONPATH": str(ROOT)},
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
                limit=1 << 20,  # a long log line (a traceback as JSON) must not stop the draining
            )
        finally:
            if log_file is not None:
                output.close()  # the child holds its own descriptor
        return cls(name, process, log_file)

    async def _read(self) -> None:
        if self.process.stdout is None:
            await self.process.wait()
        else:
            async for raw in self.process.stdout:
                line = raw.decode(errors="replace").rstrip()
                self._tail.append(line)
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if isinstance(record, dict):
                        self._first.setdefault(str(record.get("event")), record)
                        self._changed.set()
        self._changed.set()

    @property
    def tail(self) -> list[str]:
        """The last lines of its output (read back from the log file if it has one)."""
        if self.log_file is None:
            return list(self._tail)
        try:
            with self.log_file.open("rb") as handle:
                handle.seek(max(0, self.log_file.stat().st_size - 64 * 1024))
                lines = handle.read().decode(errors="replace").splitlines()
        except OSError:
            return []
        return lines[-TAIL_LINES:]

    def failure(self, what: str) -> RuntimeError:
        """An error naming the child, what went wrong and the end of its output."""
        code = self.process.returncode
        state = "running" if code is None else f"exited with {code}"
        return RuntimeError(f"{self.name} ({state}): {what}\n" + "\n".join(self.tail))

    async def logged(self, event: str, timeout: float = 60.0) -> dict[str, Any]:
        """The first JSON line with this event name."""
        try:
            async with asyncio.timeout(timeout):
                while event not in self._first:
                    if self._reader.done():
                        raise self.failure(f"exited before logging {event}")
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise self.failure(f"no {event} within {timeout:g} s") from None
        return self._first[event]

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    async def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, as an orchestrator stops it; SIGKILL if it does not go in time. The exit code."""
        if self.running:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        await self._reader
        assert self.process.returncode is not None
        return self.process.returncode


@contextlib.asynccontextmanager
async def child(
    name: str,
    args: Sequence[str],
    env: Mapping[str, str],
    *,
    command: Sequence[str] = CLI,
    log_file: Path | None = None,
) -> AsyncIterator[Child]:
    """A :class:`Child` that is stopped when the block ends, whatever happens."""
    started = await Child.start(name, args, env, command=command, log_file=log_file)
    try:
        yield started
    finally:
        await started.stop()


# ------------------------------------------------------------------------------------ /proc figures


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of a process: CPU seconds so far (user + system), resident and peak memory."""

    cpu_seconds: float
    rss_mb: float
    peak_rss_mb: float


def sample(pid: int) -> Sample:
    """Read ``/proc/<pid>/stat`` and ``/proc/<pid>/status`` (threads included; children not)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces; the fields after its closing parenthesis do not.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    memory = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            memory[key] = int(value.split()[0]) / 1024  # kB → MB
    return Sample((utime + stime) / CLOCK_TICKS, memory.get("VmRSS", 0.0), memory.get("VmHWM", 0.0))


# ------------------------------------------------------------------------------------ the broker


def vhost_url(base: str, vhost: str) -> str:
    """``base`` (an AMQP URL) pointing at ``vhost`` instead of its own."""
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, "/" + quote(vhost, safe=""), parts.query, ""))


def amqp_user(base: str) -> str:
    return urlsplit(base).username or "guest"


async def rabbitmqctl(*args: str) -> None:
    """One ``rabbitmqctl`` command; a failure names it and what the tool said."""
    try:
        process = await asyncio.create_subprocess_exec(
            "rabbitmqctl", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
    except FileNotFoundError:
        raise RuntimeError(
            "rabbitmqctl is not on PATH: the bench makes a vhost per contender with it, so run it on "
            "the broker's host as a user allowed to use rabbitmqctl"
        ) from None
    try:
        output, _ = await asyncio.wait_for(process.communicate(), RABBITMQCTL_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise RuntimeError(f"rabbitmqctl {args[0]} did not answer in {RABBITMQCTL_TIMEOUT:g} s") from None
    if process.returncode != 0:
        said = output.decode(errors="replace")[-500:]
        raise RuntimeError(f"rabbitmqctl {args[0]} failed: {said}")


async def add_vhost(vhost: str, user: str) -> None:
    await rabbitmqctl("add_vhost", vhost)
    await rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")


@contextlib.asynccontextmanager
async def fresh_vhosts(vhosts: Sequence[str], base_url: str) -> AsyncIterator[dict[str, str]]:
    """Make every vhost (in parallel: ``rabbitmqctl`` takes seconds per call), yield their AMQP URLs
    by name, and delete them all at the end -- with every queue the contenders declared in them."""
    user = amqp_user(base_url)
    made: list[str] = []

    async def make(vhost: str) -> None:
        await add_vhost(vhost, user)
        made.append(vhost)

    try:
        outcomes = await asyncio.gather(*(make(v) for v in vhosts), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        yield {vhost: vhost_url(base_url, vhost) for vhost in vhosts}
    finally:
        deleted = await asyncio.gather(
            *(rabbitmqctl("delete_vhost", v) for v in made), return_exceptions=True
        )
        for vhost, outcome in zip(made, deleted, strict=True):
            if isinstance(outcome, BaseException):
                print(f"could not delete vhost {vhost!r}: {outcome}", file=sys.stderr)


# --------------------------------------------------------------------------------------- PostgreSQL


@contextlib.asynccontextmanager
async def fresh_schema(dsn: str, schema: str) -> AsyncIterator[str]:
    """A PostgreSQL schema of one contender's own; yields ``dsn`` choosing it through ``search_path``
    (the DSN's query parameters are server settings); dropped with everything in it at the end."""
    import asyncpg

    async def execute(statement: str) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    await execute(f'CREATE SCHEMA "{schema}"')
    try:
        separator = "&" if "?" in dsn else "?"
        yield f"{dsn}{separator}search_path={schema}"
    finally:
        await execute(f'DROP SCHEMA "{schema}" CASCADE')


def free_port() -> int:
    """A TCP port nobody listens on right now (for a child's health endpoint)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port

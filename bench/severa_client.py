"""Throughput of SeveraClient.add_hour_entry against the fake Severa, next to a hand-written baseline.

    python bench/severa_client.py [--calls 3000] [--concurrency 32] [--rounds 2]

The fake runs in a subprocess (its own interpreter, its own core, as a real Severa would be
elsewhere) with its per-call logging off. In the same run, against the same fake, two clients post
the same number of AddNewHourEntry calls with the same concurrency:

* baseline — the fastest hand-written script: one aiohttp session, an f-string envelope, status
  check only (no zeep, no parsing, no classification);
* SeveraClient — zeep-built envelope, aiohttp, reply parsed by zeep and mapped to a record,
  quota headers, metrics, classification.

Each is measured ``--rounds`` times, alternating, and the best round counts. Then the per-call cost
of the client's CPU work is measured apart (build envelope, parse reply + map). Prints calls/s of
both, their ratio, and the per-call figures. Stops the fake at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple

import aiohttp
import structlog

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.severa.client import SeveraClient  # noqa: E402
from adapters.severa.config import SeveraClientConfig  # noqa: E402
from adapters.severa.contract import Ops, default_contract, parse_reply  # noqa: E402
from adapters.severa.mapping import hour_entry_from_severa, new_hour_entry_to_severa  # noqa: E402
from connector.ports import NewHourEntry  # noqa: E402

KEY = "bench-key-" + uuid.uuid4().hex
USER, CASE, PHASE, WORK_TYPE = (str(uuid.UUID(int=i)) for i in (1, 2, 3, 4))
SEED = {
    "users": [{"GUID": USER, "Code": "BENCH", "FirstName": "Bench", "LastName": "Mark", "IsActive": True}],
    "work_types": [{"GUID": WORK_TYPE, "Code": "DEV", "Name": "Development", "IsActive": True}],
    "cases": [{"GUID": CASE, "CaseNumber": 1, "Name": "Bench", "IsClosed": False}],
    "phases": [
        {
            "GUID": PHASE,
            "CaseGUID": CASE,
            "Code": "B",
            "Name": "Bench",
            "IsCompleted": False,
            "IsLocked": False,
            "WorkTypeGUID": WORK_TYPE,
        }
    ],
}
ENTRY = NewHourEntry(
    user_guid=USER,
    case_guid=CASE,
    phase_guid=PHASE,
    work_type_guid=WORK_TYPE,
    event_date=dt.date(2025, 3, 4),
    quantity=Decimal("1.5"),
    description="Benchmark entry",
    is_billable=True,
)

# The fake in its own interpreter, its per-call debug lines off (they would tax both sides alike,
# but they are not what we measure); it logs one line with its URL when it listens.
_FAKE_MAIN = """
import logging, sys, structlog
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
from adapters.severa.fake.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


@contextlib.contextmanager
def fake_severa(seed_file: Path) -> Iterator[str]:
    """Start the fake in a subprocess on a free port; yield its endpoint URL; stop it."""
    process = subprocess.Popen(
        [sys.executable, "-c", _FAKE_MAIN, "--port", "0", "--seed", str(seed_file)],
        cwd=ROOT,
        env={**os.environ, "FAKE_SEVERA_API_KEY": KEY, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = None
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            match = re.search(r"fake_severa\.serving.*?url=(\S+)", line)
            if match:
                url = match.group(1)
        if url is None:
            raise RuntimeError("the fake Severa did not start")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Run(NamedTuple):
    per_second: float  # calls per second, wall clock
    cpu_us: float  # this process's CPU time per call (the fake's is not counted)


async def run_workers(calls: int, concurrency: int, one: Callable[[], Awaitable[None]]) -> Run:
    """Run ``calls`` calls of ``one`` on ``concurrency`` workers."""
    remaining = calls

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await one()

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Run(calls / (time.perf_counter() - started), (time.process_time() - cpu) / calls * 1e6)


def baseline_envelope(entry: NewHourEntry) -> bytes:
    return f"""<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header><WebServicePassword xmlns="http://soap.severa.com/">{KEY}</WebServicePassword></s:Header><s:Body><AddNewHourEntry xmlns="http://soap.severa.com/"><hourEntryInfo xmlns:a="http://schemas.datacontract.org/2004/07/Severa.Entities.API"><a:CaseGUID>{entry.case_guid}</a:CaseGUID><a:Description>{entry.description}</a:Description><a:EventDate>{entry.event_date.isoformat()}T00:00:00</a:EventDate><a:IsBillable>{"true" if entry.is_billable else "false"}</a:IsBillable><a:PhaseGUID>{entry.phase_guid}</a:PhaseGUID><a:Quantity>{entry.quantity}</a:Quantity><a:UserGUID>{entry.user_guid}</a:UserGUID><a:WorkTypeGUID>{entry.work_type_guid}</a:WorkTypeGUID></hourEntryInfo></AddNewHourEntry></s:Body></s:Envelope>""".encode()  # noqa: E501


async def baseline(url: str, calls: int, concurrency: int) -> Run:
    headers = {
        "Content-Type": "text/xml; charset=utf-8",
        "SOAPAction": '"http://soap.severa.com/IHourEntry/AddNewHourEntry"',
    }
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            async with session.post(url, data=baseline_envelope(ENTRY), headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"baseline got HTTP {response.status}")

        return await run_workers(calls, concurrency, one)


async def with_client(url: str, calls: int, concurrency: int) -> Run:
    config = SeveraClientConfig(url=url, api_key=KEY, max_concurrency=concurrency)
    async with SeveraClient(config, registry=None) as client:

        async def one() -> None:
            await client.add_hour_entry(ENTRY)

        return await run_workers(calls, concurrency, one)


def per_call_us(function: Callable[[], object], repeat: int = 2000) -> float:
    for _ in range(100):
        function()
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(repeat):
            function()
        samples.append((time.perf_counter() - started) / repeat * 1e6)
    return min(samples)


async def sample_reply(url: str) -> bytes:
    op = default_contract().operation(Ops.ADD_HOUR_ENTRY)
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url,
            data=op.build({"hourEntryInfo": new_hour_entry_to_severa(ENTRY)}, KEY),
            headers=op.http_headers,
        ) as response,
    ):
        return await response.read()


async def main(calls: int, concurrency: int, rounds: int) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    default_contract()  # parse the WSDL before timing anything
    with tempfile.TemporaryDirectory() as tmp:
        seed_file = Path(tmp) / "seed.json"
        seed_file.write_text(json.dumps(SEED))
        with fake_severa(seed_file) as url:
            reply = await sample_reply(url)
            await baseline(url, 200, concurrency)  # warm both paths and the fake
            await with_client(url, 200, concurrency)
            results: dict[str, dict[int, list[Run]]] = {"baseline": {}, "client": {}}
            for level in sorted({1, concurrency}):
                n = calls if level > 1 else max(calls // 4, 200)
                for _ in range(rounds):
                    results["baseline"].setdefault(level, []).append(await baseline(url, n, level))
                    results["client"].setdefault(level, []).append(await with_client(url, n, level))

    op = default_contract().operation(Ops.ADD_HOUR_ENTRY)
    params = {"hourEntryInfo": new_hour_entry_to_severa(ENTRY)}
    build_us = per_call_us(lambda: op.build(params, KEY))
    parse_us = per_call_us(lambda: parse_reply(reply))
    read_us = per_call_us(lambda: hour_entry_from_severa(op.read_body(parse_reply(reply))))
    fstring_us = per_call_us(lambda: baseline_envelope(ENTRY))

    print(f"AddNewHourEntry against the fake Severa (subprocess), {calls} calls, best of {rounds}")
    print(
        f"{'concurrency':>11} {'baseline/s':>11} {'client/s':>9} {'ratio':>6}"
        f" {'baseline CPU/call':>18} {'client CPU/call':>16} {'extra CPU/call':>15}"
    )
    for level in sorted(results["client"]):
        base = max(results["baseline"][level], key=lambda run: run.per_second)
        ours = max(results["client"][level], key=lambda run: run.per_second)
        base_cpu = min(run.cpu_us for run in results["baseline"][level])
        ours_cpu = min(run.cpu_us for run in results["client"][level])
        print(
            f"{level:>11} {base.per_second:>11.0f} {ours.per_second:>9.0f}"
            f" {ours.per_second / base.per_second:>6.2f}"
            f" {base_cpu:>15.0f} µs {ours_cpu:>13.0f} µs {ours_cpu - base_cpu:>12.0f} µs"
        )
    print("CPU per call, measured apart (µs):")
    print(f"  build envelope (zeep serialize + header + namespaces)  {build_us:8.1f}")
    print(f"  baseline f-string envelope                             {fstring_us:8.1f}")
    print(f"  parse reply (lxml, fault/quota headers)                {parse_us:8.1f}")
    print(f"  parse + prune + zeep read + map to HourEntry           {read_us:8.1f}")
    median = statistics.median(run.per_second for run in results["client"][concurrency])
    print(
        f"  reply size {len(reply)} B; client median over rounds at concurrency {concurrency}: {median:.0f}/s"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.concurrency, args.rounds))

"""The fake Severa's own ceiling: AddNewHourEntry over HTTP only, no broker, as fast as it answers.

    BENCH_SEVERA_API_KEY=… python bench/contenders/fake_ceiling.py --severa-url … --events 3000 \
        --user-guid … --case-guid … --phase-guid … --work-type-guid … [--concurrency 32]

The same f-string envelope as the hand-written script, from ``--concurrency`` workers (the
contenders' prefetch), the next call as soon as one answers. The fake is a process of its own that
spends CPU on every call (zeep decodes and encodes each one), so on a small machine it can be the
limit of every contender; this says where that limit is at the latency injected. It times itself:
one JSON line ``{"event": "fake_ceiling.done", ...}`` with the monotonic clock at the first answer
and at the N-th, then waits for SIGTERM or SIGINT like the others.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time

import aiohttp

HEADERS = {
    "Content-Type": "text/xml; charset=utf-8",
    "SOAPAction": '"http://soap.severa.com/IHourEntry/AddNewHourEntry"',
}


async def main(args: argparse.Namespace) -> None:
    key = os.environ["BENCH_SEVERA_API_KEY"]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    envelope = f"""<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header><WebServicePassword xmlns="http://soap.severa.com/">{key}</WebServicePassword></s:Header><s:Body><AddNewHourEntry xmlns="http://soap.severa.com/"><hourEntryInfo xmlns:a="http://schemas.datacontract.org/2004/07/Severa.Entities.API"><a:CaseGUID>{args.case_guid}</a:CaseGUID><a:Description>fake ceiling</a:Description><a:EventDate>2026-11-20T00:00:00</a:EventDate><a:IsBillable>true</a:IsBillable><a:PhaseGUID>{args.phase_guid}</a:PhaseGUID><a:Quantity>7.5</a:Quantity><a:UserGUID>{args.user_guid}</a:UserGUID><a:WorkTypeGUID>{args.work_type_guid}</a:WorkTypeGUID></hourEntryInfo></AddNewHourEntry></s:Body></s:Envelope>""".encode()  # noqa: E501
    remaining = args.events
    answered = refused = 0
    first: float | None = None
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.concurrency)) as session:

        async def worker() -> None:
            nonlocal remaining, answered, refused, first
            while remaining > 0:
                remaining -= 1
                async with session.post(args.severa_url, data=envelope, headers=HEADERS) as response:
                    await response.read()
                    refused += response.status != 200
                answered += 1
                if first is None:
                    first = time.monotonic()

        cpu = time.process_time()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        record = {
            "event": "fake_ceiling.done",
            "events": answered,
            "refused": refused,
            "first_at": first,
            "last_at": time.monotonic(),
            "cpu_seconds": time.process_time() - cpu,
        }
        print(json.dumps(record), flush=True)
    await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--severa-url", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--user-guid", required=True)
    parser.add_argument("--case-guid", required=True)
    parser.add_argument("--phase-guid", required=True)
    parser.add_argument("--work-type-guid", required=True)
    asyncio.run(main(parser.parse_args()))

"""The hand-written script with the connector's guarantees added one at a time: where the CPU goes.

    BENCH_AMQP_URL=amqp://… BENCH_SEVERA_API_KEY=… python bench/contenders/ladder.py \
        --severa-url … --user-guid … --case-guid … --phase-guid … --work-type-guid … \
        --rung confirms|validated|logged|ledger|adapter [--state-url sqlite:///…]

Each rung is the one before it plus one guarantee, built from the connector's own parts but without
its runtime (no processing wrapper, retries, circuit, metrics, tracing, reference look-ups or
mapping), so that the connector's CPU per event minus the top rung's is what that runtime costs:

* ``confirms`` -- ``bench/contenders/handwritten.py`` with the result published under publisher
  confirms (the script publishes without); like every rung, it also builds the connector's
  ``NewHourEntry`` from the event (a date, a ``Decimal``: a few µs) and has the connector's modules
  loaded, with its start-up heap frozen as ``severa-connector run`` does;
* ``validated`` -- and the event validated by the connector's pydantic model, the result built as
  its ``WorkHourSynced`` model and serialised by pydantic;
* ``logged`` -- and one JSON line at INFO per event through the connector's logging set-up, with
  the per-message context bound as the connector binds it;
* ``ledger`` -- and the connector's ledger (``--state-url``) as the work-hours flow uses it per new
  entry: the entry's lock, its record read, the pending mark before the Add, the claim after it;
  its pool sized as the connector sizes it for this prefetch;
* ``adapter`` -- and the Add through the connector's Severa client (template envelope, its
  timeouts, concurrency bound, response budget and reply reader) instead of an f-string POST.

Any failure while handling a message ends the process with exit code 1 and the error on stderr,
which the bench reports (no retry: every event succeeds against the fake, which the bench
checks). Secrets come from the environment. Runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aio_pika
import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from adapters.severa.client import SeveraClient
from adapters.severa.config import SeveraClientConfig
from connector.flows.work_hours import content_hash, fingerprint
from connector.heap import freeze_startup_heap
from connector.logging import bind_message_context, configure_logging, get_logger
from connector.ports import NewHourEntry
from connector.service import LEDGER_POOL_HEADROOM
from connector.state import open_ledger
from connector.state.ledger import Ledger
from schemas.identity import entry_key
from schemas.results import WorkHourSynced
from schemas.work_hours import WorkHourEvent

RUNGS = ("confirms", "validated", "logged", "ledger", "adapter")
ACTION = '"http://soap.severa.com/IHourEntry/AddNewHourEntry"'
HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": ACTION}

log = get_logger("bench.ladder")


def envelope(key: str, args: argparse.Namespace, entry: NewHourEntry) -> bytes:
    """The script's f-string AddNewHourEntry, from the mapped entry."""
    billable = "true" if entry.is_billable else "false"
    return f"""<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header><WebServicePassword xmlns="http://soap.severa.com/">{key}</WebServicePassword></s:Header><s:Body><AddNewHourEntry xmlns="http://soap.severa.com/"><hourEntryInfo xmlns:a="http://schemas.datacontract.org/2004/07/Severa.Entities.API"><a:CaseGUID>{args.case_guid}</a:CaseGUID><a:Description>{entry.description or ""}</a:Description><a:EventDate>{entry.event_date.isoformat()}T00:00:00</a:EventDate><a:IsBillable>{billable}</a:IsBillable><a:PhaseGUID>{args.phase_guid}</a:PhaseGUID><a:Quantity>{entry.quantity}</a:Quantity><a:UserGUID>{args.user_guid}</a:UserGUID><a:WorkTypeGUID>{args.work_type_guid}</a:WorkTypeGUID></hourEntryInfo></AddNewHourEntry></s:Body></s:Envelope>""".encode()  # noqa: E501


async def main(args: argparse.Namespace) -> None:
    rung = RUNGS.index(args.rung)
    key = os.environ["BENCH_SEVERA_API_KEY"]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if rung >= RUNGS.index("logged"):
        configure_logging("INFO", "json", stream=Path(args.log_file).open("a", encoding="utf-8"))  # noqa: SIM115, ASYNC230

    ledger: Ledger | None = None
    if rung >= RUNGS.index("ledger"):
        ledger = open_ledger(args.state_url, pool_size=args.prefetch + LEDGER_POOL_HEADROOM)
        await ledger.setup()
    severa: SeveraClient | None = None
    session: aiohttp.ClientSession | None = None
    if rung >= RUNGS.index("adapter"):
        severa = SeveraClient(
            SeveraClientConfig(url=args.severa_url, api_key=key, max_concurrency=args.prefetch), registry=None
        )
        await severa.__aenter__()
    else:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.prefetch))

    async def add(entry: NewHourEntry) -> str:
        if severa is not None:
            return (await severa.add_hour_entry(entry)).guid
        assert session is not None
        body = envelope(key, args, entry)
        async with session.post(args.severa_url, data=body, headers=HEADERS) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"Severa answered {response.status}")
        return str(uuid.uuid4())  # the script reads no GUID; the ledger needs one

    async def applied(event: WorkHourEvent, entry: NewHourEntry) -> str:
        if ledger is None:
            return await add(entry)
        async with ledger.lock(event.external_id):
            record = await ledger.get(event.external_id)
            if record is not None:
                raise RuntimeError(f"{event.external_id} is in the ledger already: the bench sends new ones")
            await ledger.mark_pending(event.external_id, event.version, fingerprint(entry))
            guid = await add(entry)
            digest = content_hash(event)
            if not await ledger.claim(event.external_id, event.version, guid, content_hash=digest):
                raise RuntimeError(f"the claim of {guid} was refused")
            return guid

    connection = await aio_pika.connect(os.environ["BENCH_AMQP_URL"])
    channel = await connection.channel(publisher_confirms=True)
    await channel.set_qos(prefetch_count=args.prefetch)
    queue = await channel.get_queue(f"{args.prefix}q.workhours", ensure=False)
    results = await channel.get_exchange(f"{args.prefix}workhours.results", ensure=False)
    failures: list[BaseException] = []
    handle = handler(args, rung, applied, results, failures, stop)
    freeze_startup_heap()  # as `severa-connector run` does once it is up
    tag = await queue.consume(handle)
    await stop.wait()
    await queue.cancel(tag)
    await connection.close()
    if severa is not None:
        await severa.aclose()
    if session is not None:
        await session.close()
    if ledger is not None:
        await ledger.aclose()
    if failures:
        failure = failures[0]
        print(f"ladder ({args.rung}) failed: {type(failure).__name__}: {failure}", file=sys.stderr)
        raise SystemExit(1)


def handler(
    args: argparse.Namespace,
    rung: int,
    applied: Callable[[WorkHourEvent, NewHourEntry], Awaitable[str]],
    results: aio_pika.abc.AbstractExchange,
    failures: list[BaseException],
    stop: asyncio.Event,
) -> Callable[[aio_pika.abc.AbstractIncomingMessage], Awaitable[None]]:
    validated = rung >= RUNGS.index("validated")
    logged = rung >= RUNGS.index("logged")

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        try:
            await handle(message)
        except Exception as exc:  # aio-pika would only log it, and the bench would wait out its timeout
            failures.append(exc)
            stop.set()

    async def handle(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        event = WorkHourEvent.model_validate_json(message.body) if validated else _loose(message.body)
        entry = NewHourEntry(
            user_guid=args.user_guid,
            case_guid=args.case_guid,
            phase_guid=args.phase_guid,
            work_type_guid=args.work_type_guid,
            event_date=event.date,  # type: ignore[arg-type]
            quantity=Decimal(event.hours),  # type: ignore[arg-type]
            description=event.description,
            is_billable=event.billable,
        )
        if logged:
            with (
                bind_message_context(
                    flow="work_hours", event_id=message.message_id, correlation_id=message.correlation_id
                ),
                bind_message_context(external_id=event.external_id, version=event.version),
            ):
                guid = await applied(event, entry)
                log.info("workhour_synced", outcome="created", severa_guid=guid)
        else:
            guid = await applied(event, entry)
        body: bytes
        if validated:
            body = (
                WorkHourSynced(
                    event_id=event.event_id,
                    external_id=event.external_id,
                    source=event.source,
                    source_entry_id=event.source_entry_id,
                    version=event.version,
                    outcome="created",
                    severa_guid=guid,
                    synced_at=dt.datetime.now(dt.UTC),
                )
                .model_dump_json()
                .encode()
            )
        else:
            body = f'{{"event_id": "{event.event_id}", "severa_guid": "{guid}"}}'.encode()
        await results.publish(
            aio_pika.Message(body, correlation_id=message.correlation_id), routing_key="workhour.synced"
        )
        await message.ack()

    return on_message


def _loose(body: bytes) -> Any:
    """The script's ``json.loads``, with the few fields the lower rungs read as attributes."""
    raw = json.loads(body)
    return SimpleNamespace(
        event_id=raw["event_id"],
        external_id=entry_key(raw["source"], raw["source_entry_id"]),
        version=raw["version"],
        date=dt.date.fromisoformat(raw["date"]),
        hours=raw["hours"],
        description=raw["description"],
        billable=raw.get("billable", True),
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--severa-url", required=True)
    parser.add_argument("--user-guid", required=True)
    parser.add_argument("--case-guid", required=True)
    parser.add_argument("--phase-guid", required=True)
    parser.add_argument("--work-type-guid", required=True)
    parser.add_argument("--rung", choices=RUNGS, required=True)
    parser.add_argument("--state-url", help="the ledger's URL (rungs ledger and adapter)")
    parser.add_argument("--log-file", default=os.devnull, help="where the JSON lines go (rung logged and up)")
    parser.add_argument("--prefetch", type=int, default=32)
    parser.add_argument("--prefix", default="", help="entity name prefix, as the connector's")
    parsed = parser.parse_args()
    if RUNGS.index(parsed.rung) >= RUNGS.index("ledger") and not parsed.state_url:
        parser.error(f"--rung {parsed.rung} needs --state-url (the ledger)")
    asyncio.run(main(parsed))

"""The hand-written contender: the least an integration could do to put work-hour events into Severa.

    BENCH_AMQP_URL=amqp://… BENCH_SEVERA_API_KEY=… python bench/contenders/handwritten.py \
        --severa-url http://127.0.0.1:8089/webservice/S3/API.svc --user-guid … --case-guid … \
        --phase-guid … --work-type-guid …

aio-pika consume with prefetch 32; per message ``json.loads``, an f-string SOAP 1.1
``AddNewHourEntry`` envelope with GUIDs known in advance (no look-ups), an aiohttp POST, a result
published to the results exchange (``workhour.synced`` on HTTP 200, else ``workhour.failed``,
correlation id copied) and the ack. No ledger, no validation, no retries, no publisher confirms, no
logging: the ceiling of a script that gives no guarantee, which the connector is compared with. It
imports nothing of the project. Secrets come from the environment, never the command line.
Runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal

import aio_pika
import aiohttp

ACTION = '"http://soap.severa.com/IHourEntry/AddNewHourEntry"'
HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": ACTION}


async def main(args: argparse.Namespace) -> None:
    key = os.environ["BENCH_SEVERA_API_KEY"]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    connection = await aio_pika.connect(os.environ["BENCH_AMQP_URL"])
    channel = await connection.channel(publisher_confirms=False)
    await channel.set_qos(prefetch_count=args.prefetch)
    queue = await channel.get_queue(f"{args.prefix}q.workhours", ensure=False)
    results = await channel.get_exchange(f"{args.prefix}workhours.results", ensure=False)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.prefetch))

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        event = json.loads(message.body)
        billable = "true" if event.get("billable", True) else "false"
        envelope = f"""<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header><WebServicePassword xmlns="http://soap.severa.com/">{key}</WebServicePassword></s:Header><s:Body><AddNewHourEntry xmlns="http://soap.severa.com/"><hourEntryInfo xmlns:a="http://schemas.datacontract.org/2004/07/Severa.Entities.API"><a:CaseGUID>{args.case_guid}</a:CaseGUID><a:Description>{event["description"]}</a:Description><a:EventDate>{event["date"]}T00:00:00</a:EventDate><a:IsBillable>{billable}</a:IsBillable><a:PhaseGUID>{args.phase_guid}</a:PhaseGUID><a:Quantity>{event["hours"]}</a:Quantity><a:UserGUID>{args.user_guid}</a:UserGUID><a:WorkTypeGUID>{args.work_type_guid}</a:WorkTypeGUID></hourEntryInfo></AddNewHourEntry></s:Body></s:Envelope>"""  # noqa: E501
        async with session.post(args.severa_url, data=envelope.encode(), headers=HEADERS) as response:
            await response.read()
            status = response.status
        result = f'{{"event_id": "{event["event_id"]}", "http_status": {status}}}'
        await results.publish(
            aio_pika.Message(result.encode(), correlation_id=message.correlation_id),
            routing_key="workhour.synced" if status == 200 else "workhour.failed",
        )
        await message.ack()

    tag = await queue.consume(on_message)
    await stop.wait()
    await queue.cancel(tag)
    await session.close()
    await connection.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--severa-url", required=True)
    parser.add_argument("--user-guid", required=True)
    parser.add_argument("--case-guid", required=True)
    parser.add_argument("--phase-guid", required=True)
    parser.add_argument("--work-type-guid", required=True)
    parser.add_argument("--prefetch", type=int, default=32)
    parser.add_argument("--prefix", default="", help="entity name prefix, as the connector's")
    asyncio.run(main(parser.parse_args()))

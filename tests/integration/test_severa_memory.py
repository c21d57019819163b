"""A broken Severa answer must not exhaust memory: endless answers, concurrent and retried.

A stand-in server answers every POST with an endless chunked body (no Content-Length), which no
limit on Content-Length can catch. The client must stop each read at ``max_response_bytes`` with
the "larger than the N MiB limit" error, hold at most ``max_buffered_bytes`` across concurrent
calls, and keep nothing of the answer alive in the errors it raises (the core keeps errors: retry
state, the circuit's last error). The acceptance figure — eight concurrent endless answers keep the
process under 300 MB — is checked on a client running in a process of its own, by its VmHWM.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from adapters.severa.client import SeveraClient
from adapters.severa.config import DEFAULT_MAX_BUFFERED_BYTES
from connector.errors import SeveraUnavailable
from connector.retry import RetryPolicy
from tests.integration.test_severa_client import make_config

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MiB = 2**20
ENVELOPE_START = b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
FILLER = b"<x>" + b"a" * (64 * 1024 - 7) + b"</x>"


class EndlessSevera:
    """Answers every POST with 200, chunked, and XML that never ends; counts answers cut short."""

    def __init__(self) -> None:
        self.url = ""
        self.started = 0
        self.cut_off = 0
        self._all_cut_off = asyncio.Event()
        self.expected = 0
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> EndlessSevera:
        app = web.Application()
        app.router.add_post("/API.svc", self._answer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/API.svc"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def wait_until_cut_off(self, count: int) -> None:
        """Until ``count`` answers were cut short by the client closing the connection."""
        self.expected = count
        if self.cut_off < count:
            await self._all_cut_off.wait()

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.started += 1
        response = web.StreamResponse(status=200)
        response.content_type = "text/xml"
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            await response.write(ENVELOPE_START)
            while True:
                await response.write(FILLER)
        except (ConnectionError, RuntimeError):
            # The client hung up: what it must do once the limit is hit.
            self.cut_off += 1
            if self.expected and self.cut_off >= self.expected:
                self._all_cut_off.set()
        return response


@pytest.fixture
async def endless() -> AsyncIterator[EndlessSevera]:
    async with EndlessSevera() as server:
        yield server


def largest_buffer_held(error: BaseException) -> int:
    """The largest bytes-like value (or list of them) any frame in ``error``'s tracebacks still holds."""
    largest = 0
    pending: list[BaseException | None] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        tb: types.TracebackType | None = current.__traceback__
        while tb is not None:
            for value in tb.tb_frame.f_locals.values():
                largest = max(largest, _size(value))
            tb = tb.tb_next
        pending += [current.__cause__, current.__context__]
    return largest


def _size(value: Any) -> int:
    if isinstance(value, bytes | bytearray | memoryview):
        return len(value)
    if isinstance(value, list) and value and all(isinstance(item, bytes | bytearray) for item in value):
        return sum(len(item) for item in value)
    return 0


async def test_endless_answers_stop_at_the_limit_and_their_errors_hold_nothing(
    endless: EndlessSevera,
) -> None:
    config = make_config(endless.url, max_response_bytes=256 * 1024, max_buffered_bytes=512 * 1024)
    retry = RetryPolicy(attempts=2, initial_seconds=0.001, max_seconds=0.002)
    async with SeveraClient(config, registry=None) as severa:
        outcomes = await asyncio.gather(
            *(retry.run(severa.get_version) for _ in range(8)), return_exceptions=True
        )
        await asyncio.wait_for(endless.wait_until_cut_off(16), timeout=10)
    assert endless.started == 16  # eight calls, each retried once
    for outcome in outcomes:
        assert isinstance(outcome, SeveraUnavailable), outcome
        assert outcome.reason == "severa_bad_reply"
        assert "larger than the 0.25 MiB limit" in outcome.message
        # Kept by the retry loop and by us: the error must not keep a quarter MiB with it.
        assert largest_buffer_held(outcome) < 64 * 1024


#: Runs in its own interpreter, so that its high-water mark of resident memory is the client's.
CLIENT_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys

    from adapters.severa.client import SeveraClient
    from adapters.severa.config import SeveraClientConfig
    from adapters.severa.contract import default_contract

    def high_water_kib():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmHWM")

    async def main(url, calls):
        default_contract()
        config = SeveraClientConfig(url=url, api_key="k", timeout_seconds=60, max_concurrency=calls)
        async with SeveraClient(config, registry=None) as severa:
            before = high_water_kib()
            outcomes = await asyncio.gather(
                *(severa.get_version() for _ in range(calls)), return_exceptions=True
            )
        print(json.dumps({
            "before_kib": before,
            "peak_kib": high_water_kib(),
            "messages": [str(outcome) for outcome in outcomes],
        }))

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


async def test_eight_concurrent_endless_answers_keep_the_process_under_300_mb(
    endless: EndlessSevera,
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CLIENT_SCRIPT,
        endless.url,
        "8",
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, stderr.decode()
    report = json.loads(stdout.decode().strip().splitlines()[-1])
    assert len(report["messages"]) == 8
    for message in report["messages"]:
        assert "larger than the 64 MiB limit" in message, message
    peak_bytes = report["peak_kib"] * 1024
    growth_mib = (report["peak_kib"] - report["before_kib"]) / 1024
    assert peak_bytes < 300 * 10**6, f"peak {peak_bytes / MiB:.0f} MiB"
    # The answers held at once, plus a little for the stream buffers and the allocator.
    assert growth_mib < DEFAULT_MAX_BUFFERED_BYTES / MiB + 48, f"grew by {growth_mib:.0f} MiB"

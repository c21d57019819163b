"""What the browser tests share: Debian's chromium, driven by Playwright (no browser download)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """The system chromium, headless; missing, the test fails (CI installs it), never skips."""
    if not await asyncio.to_thread(CHROMIUM.exists):
        pytest.fail(
            f"no chromium at {CHROMIUM}: run scripts/test.sh (it installs it) or apt-get install chromium"
        )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield launched
        finally:
            await launched.close()

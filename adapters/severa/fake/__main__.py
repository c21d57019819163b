"""``python -m adapters.severa.fake``: run a fake Severa until Ctrl-C.

The API key comes from ``--api-key`` or ``FAKE_SEVERA_API_KEY`` (never printed). The demo seed is
loaded unless ``--seed`` names another file or ``--empty`` asks for an empty organisation.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Sequence

from adapters.severa.fake.seed import DEMO_SEED_PATH
from adapters.severa.fake.server import serve


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adapters.severa.fake", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--api-key", default=os.environ.get("FAKE_SEVERA_API_KEY"))
    seed = parser.add_mutually_exclusive_group()
    seed.add_argument("--seed", default=str(DEMO_SEED_PATH), help="YAML/JSON seed (default: the demo seed)")
    seed.add_argument("--empty", action="store_true", help="start with an empty organisation")
    args = parser.parse_args(argv)
    if not args.api_key:
        print("an API key is required: --api-key or FAKE_SEVERA_API_KEY", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, args.api_key, {} if args.empty else args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m adapters.netvisor.fake``: run a fake Netvisor until Ctrl-C.

Each credential comes from its option or its environment variable (``FAKE_NETVISOR_CUSTOMER_ID``,
``…_CUSTOMER_KEY``, ``…_PARTNER_ID``, ``…_PARTNER_KEY``, ``…_ORGANISATION_ID``), else the defaults
in :mod:`adapters.netvisor.fake.server`. The keys are never printed. The company starts empty
unless ``--seed`` names a YAML/JSON file (``--seed demo``: the shipped demo seed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from collections.abc import Sequence

from adapters.netvisor.fake.auth import (
    DEFAULT_CUSTOMER_ID,
    DEFAULT_CUSTOMER_KEY,
    DEFAULT_ORGANISATION_ID,
    DEFAULT_PARTNER_ID,
    DEFAULT_PARTNER_KEY,
)
from adapters.netvisor.fake.seed import DEMO_SEED_PATH
from adapters.netvisor.fake.server import serve

_CREDENTIALS = (
    ("customer-id", DEFAULT_CUSTOMER_ID),
    ("customer-key", DEFAULT_CUSTOMER_KEY),
    ("partner-id", DEFAULT_PARTNER_ID),
    ("partner-key", DEFAULT_PARTNER_KEY),
    ("organisation-id", DEFAULT_ORGANISATION_ID),
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adapters.netvisor.fake", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    for option, default in _CREDENTIALS:
        variable = "FAKE_NETVISOR_" + option.upper().replace("-", "_")
        parser.add_argument(f"--{option}", default=os.environ.get(variable, default), help=f"env {variable}")
    parser.add_argument("--seed", default=None, help="YAML/JSON seed, or 'demo' (default: an empty company)")
    args = parser.parse_args(argv)
    seed = str(DEMO_SEED_PATH) if args.seed == "demo" else args.seed
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve(
                args.host,
                args.port,
                customer_id=args.customer_id,
                customer_key=args.customer_key,
                partner_id=args.partner_id,
                partner_key=args.partner_key,
                organisation_id=args.organisation_id,
                seed=seed,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

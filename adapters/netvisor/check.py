"""``severa-connector check``'s Netvisor section: can this connector, with these settings, work with
the Netvisor company they name?

:func:`run_checks` returns plain data -- one :class:`CheckResult` per check, each saying what was
found and, when something is wrong, what to change; the CLI renders it. The checks run in order and
each depends on the ones before it: when Netvisor does not answer or the signature is refused, the
rights checks are reported as skipped *because* of that, so the first failure is the one to fix.

1. **Keys readable** -- both key sources can be built (files exist, are readable, not empty).
2. **Netvisor reachable** -- a request got a Netvisor answer at all (any status, even a refusal:
   only a Netvisor server answers in its shape). Without keys it is signed with placeholders,
   which Netvisor refuses as AUTHENTICATION_FAILED -- enough to prove it is there.
3. **Signature accepted** -- the same request was not refused as AUTHENTICATION_FAILED.
4. **One right per resource the connector uses**, each probed as harmlessly as Netvisor allows:

   ====================  =====================================================================
   customerlist.nv       GET with a keyword no customer matches (the probe of step 2 and 3)
   salesinvoicelist.nv   GET for invoices dated 2000-01-01 (a range with nothing in it)
   getsalesinvoice.nv    GET of NetvisorKey 0 (names nothing: an empty answer or INVALID_DATA)
   salespaymentlist.nv   GET for payments dated 2000-01-01
   customer.nv           POST without ``method`` and with an empty ``<root/>``
   salesinvoice.nv       POST without ``method`` and with an empty ``<root/>``
   matchcreditnote.nv    POST with an empty ``<root/>``
   ====================  =====================================================================

   The three write resources cannot be probed by a read. Their probe names no record and carries
   no data, so it cannot store anything; Netvisor refuses it as INVALID_DATA, which is read as "the
   right is there" -- that Netvisor checks rights before it validates the body is **unverified**
   (a SERVICE_ACCESS_ERROR is certain proof of a missing right; INVALID_DATA is strong evidence of
   the right, not proof). Pass ``probe_writes=False`` to skip them (they are then reported as
   skipped, not as passed).

Cost: about eight requests, one at a time (the company's serial lane), without in-process retries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from adapters.netvisor.client import PROBE_KEYWORD, NetvisorClient
from adapters.netvisor.codec import Operation, Ops, Query, empty_root_xml
from adapters.netvisor.config import BASE_URL_SETTING, NetvisorClientConfig
from adapters.netvisor.faults import INVALID_DATA
from adapters.netvisor.keys import NetvisorKeys, StaticKey, key_sources
from connector.errors import (
    AccountingAuthenticationFailed,
    AccountingNoAccess,
    AccountingRejected,
    ConfigError,
    ConnectorError,
)

KEYS_READABLE: Final = "Netvisor keys readable"
REACHABLE: Final = "Netvisor reachable"
SIGNATURE: Final = "Netvisor signature accepted"

#: An invoice / payment date nothing is booked on: the list reads touch no data.
_EMPTY_DAY: Final = "2000-01-01"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check: ``ok`` or not, what was seen (``detail``) and, if not ok, what to do (``fix``).

    ``skipped`` checks were not run because an earlier one failed (or were not asked for); they
    count as not ok. The same shape as :class:`adapters.severa.check.CheckResult`.
    """

    name: str
    ok: bool
    detail: str
    fix: str | None = None
    skipped: bool = False


@dataclass(frozen=True, slots=True)
class _Probe:
    name: str
    op: Operation
    query: Query
    write: bool


def _right(resource: str) -> str:
    return f"Right to use {resource}.nv"


_READS: Final = (
    _Probe(
        _right("salesinvoicelist"),
        Ops.SALES_INVOICE_LIST,
        [("begininvoicedate", _EMPTY_DAY), ("endinvoicedate", _EMPTY_DAY)],
        write=False,
    ),
    _Probe(_right("getsalesinvoice"), Ops.GET_SALES_INVOICE, [("netvisorkey", "0")], write=False),
    _Probe(
        _right("salespaymentlist"),
        Ops.SALES_PAYMENT_LIST,
        [("begindate", _EMPTY_DAY), ("enddate", _EMPTY_DAY)],
        write=False,
    ),
)
_WRITES: Final = (
    _Probe(_right("customer"), Ops.CUSTOMER_RIGHTS, (), write=True),
    _Probe(_right("salesinvoice"), Ops.SALES_INVOICE_RIGHTS, (), write=True),
    _Probe(_right("matchcreditnote"), Ops.MATCH_CREDIT_NOTE_RIGHTS, (), write=True),
)
_CUSTOMER_LIST_RIGHT: Final = _right("customerlist")
_AFTER_SIGNATURE: Final = (_CUSTOMER_LIST_RIGHT, *(probe.name for probe in (*_READS, *_WRITES)))
_AFTER_REACHABLE: Final = (SIGNATURE, *_AFTER_SIGNATURE)

_PLACEHOLDER: Final = "severa-connector-check-placeholder-key"


async def run_checks(
    config: NetvisorClientConfig,
    *,
    keys: NetvisorKeys | None = None,
    probe_writes: bool = True,
    registry: CollectorRegistry | None = None,
) -> list[CheckResult]:
    """Run every check against the Netvisor company ``config`` names; never raises for Netvisor's failures."""
    results: list[CheckResult] = []
    # One attempt per probe: a check must report what it sees now, not wait out a backoff.
    config = config.model_copy(update={"retries": 0})

    key_problem: ConfigError | None = None
    if keys is None:
        try:
            keys = key_sources(config)
        except ConfigError as exc:
            key_problem = exc
    if key_problem is not None or keys is None:
        detail = key_problem.message if key_problem is not None else "No key source."
        results.append(
            CheckResult(
                KEYS_READABLE,
                False,
                detail,
                fix="Set customer_key / partner_key, or point customer_key_file / partner_key_file at "
                "readable files holding the keys (Netvisor: the integration's API identifiers).",
            )
        )
        placeholder = StaticKey(SecretStr(_PLACEHOLDER), what="placeholder key", setting="(none)")
        keys = NetvisorKeys(customer=placeholder, partner=placeholder)
    else:
        results.append(CheckResult(KEYS_READABLE, True, f"Read {keys.origin}."))

    async with NetvisorClient(config, keys=keys, registry=registry, on_key_loaded=None) as client:
        # 2 + 3: one request proves both reachability and (with real keys) the signature.
        probe_error: ConnectorError | None = None
        try:
            await client.probe()
        except ConnectorError as exc:
            probe_error = exc

        if not _answered_by_netvisor(probe_error):
            assert probe_error is not None
            results.append(
                CheckResult(
                    REACHABLE,
                    False,
                    probe_error.message,
                    fix=f"Check the base_url setting ({BASE_URL_SETTING}, now {config.root}/) and that this "
                    "host can reach it (DNS, firewall, HTTP(S)_PROXY with use_env_proxy).",
                )
            )
            return results + _skipped(_AFTER_REACHABLE, "because Netvisor did not answer")
        results.append(CheckResult(REACHABLE, True, f"Netvisor answered at {config.root}/."))

        if key_problem is not None:
            return results + _skipped(_AFTER_REACHABLE, "because the keys could not be read")
        if isinstance(probe_error, AccountingAuthenticationFailed):
            results.append(
                CheckResult(
                    SIGNATURE,
                    False,
                    probe_error.message,
                    fix=f"Put the current keys into {keys.origin}; check customer_id, partner_id and "
                    f"organisation_id ({config.organisation_id}) against Netvisor's integration settings, "
                    "and this host's clock (requests are signed with a time stamp).",
                )
            )
            return results + _skipped(_AFTER_SIGNATURE, "because the signature was refused")
        if probe_error is not None and not isinstance(probe_error, AccountingNoAccess):
            results.append(
                CheckResult(
                    SIGNATURE, False, probe_error.message, fix="Netvisor did not answer properly; try again."
                )
            )
            return results + _skipped(_AFTER_SIGNATURE, "because the signature could not be checked")
        results.append(CheckResult(SIGNATURE, True, f"Netvisor accepted requests signed with {keys.origin}."))

        # 4. Rights, the customer list first (already probed above).
        results.append(_customer_list_right(probe_error))
        for probe in _READS:
            results.append(await _probe_right(client, probe))
        for probe in _WRITES:
            if not probe_writes:
                results.append(
                    CheckResult(
                        probe.name,
                        False,
                        "Not checked: it needs a (harmless, empty) write, and write probes were turned off.",
                        skipped=True,
                    )
                )
                continue
            results.append(await _probe_right(client, probe))
    return results


def _customer_list_right(error: ConnectorError | None) -> CheckResult:
    if isinstance(error, AccountingNoAccess):
        return CheckResult(_CUSTOMER_LIST_RIGHT, False, error.message, fix=_grant("customerlist"))
    return CheckResult(_CUSTOMER_LIST_RIGHT, True, f"Searched customers for {PROBE_KEYWORD!r}: allowed.")


async def _probe_right(client: NetvisorClient, probe: _Probe) -> CheckResult:
    resource = probe.op.resource
    try:
        await client.call(probe.op, probe.query, empty_root_xml() if probe.write else None)
    except AccountingNoAccess as exc:
        return CheckResult(probe.name, False, exc.message, fix=_grant(resource))
    except AccountingRejected as exc:
        if exc.code == INVALID_DATA:
            what = "the empty probe" if probe.write else "the probe"
            return CheckResult(
                probe.name,
                True,
                f"Netvisor refused {what} as INVALID_DATA, past its rights check (that Netvisor checks "
                "rights first is unverified).",
            )
        return CheckResult(
            probe.name, False, exc.message, fix="Netvisor refused the probe unexpectedly; see above."
        )
    except ConnectorError as exc:
        return CheckResult(
            probe.name, False, exc.message, fix="Netvisor did not answer properly; try again later."
        )
    if probe.write:
        return CheckResult(
            probe.name,
            True,
            "Netvisor accepted an empty request without complaint (unexpected, but the right is there).",
        )
    return CheckResult(probe.name, True, "Read a range with nothing in it: allowed.")


def _grant(resource: str) -> str:
    return (
        f"Give the integration user the right to use {resource}.nv in Netvisor (user rights of the API "
        "user), or have the resource enabled for the company."
    )


def _skipped(names: tuple[str, ...], because: str) -> list[CheckResult]:
    return [CheckResult(name, False, f"Not checked {because}.", skipped=True) for name in names]


def _answered_by_netvisor(error: ConnectorError | None) -> bool:
    """Whether the probe got an answer in Netvisor's shape (OK, or FAILED with a code)."""
    return error is None or bool(error.context.get("netvisor_code"))

"""The integrator's first command: can this connector, with these settings, work with Severa?

:func:`run_checks` runs a short, ordered list of checks and returns plain data — one
:class:`CheckResult` per check, each saying what was found and, when something is wrong, what to
change. The CLI renders it; nothing here prints. Each check depends on the ones before it: when the
endpoint does not answer or the key is refused, the checks that need them are reported as skipped
*because* of that, so the first failure is the one to fix.

Cost: about seven calls (GetVersion without key; then a NotFound look-up, users, recent cases,
today's hour entries, invoice statuses and one invoice), all counted against Severa's daily quota.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pydantic import SecretStr

from adapters.severa.client import SeveraClient
from adapters.severa.config import API_KEY_FILE_SETTING, API_KEY_SETTING, SeveraClientConfig
from adapters.severa.contract import Ops, SeveraContract, default_contract
from adapters.severa.keys import ApiKeySource, api_key_source
from adapters.severa.mapping import as_list
from connector.errors import (
    ConfigError,
    ConnectorError,
    SeveraAuthenticationFailed,
    SeveraQuotaExceeded,
    SeveraRejected,
)

#: Fail the quota check when less than this share of the daily quota is left.
MIN_QUOTA_LEFT = 0.01
#: Pass the quota check with a warning when less than this share is left.
LOW_QUOTA_LEFT = 0.10

URL_SETTING = "SEVERA_CONNECTOR_SEVERA__URL"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check: ``ok`` or not, what was seen (``detail``) and, if not ok, what to do (``fix``).

    ``skipped`` checks were not run because an earlier one failed; they count as not ok. A
    ``warning`` passed, but is worth a look before it fails (``fix`` says what to do).
    """

    name: str
    ok: bool
    detail: str
    fix: str | None = None
    skipped: bool = False
    warning: bool = False


class _KeyUnavailable:
    """Stands in for a key source that could not be built, so the key-less checks still run."""

    def __init__(self, error: ConfigError) -> None:
        self._error = error

    @property
    def origin(self) -> str:
        return f"{API_KEY_SETTING} / {API_KEY_FILE_SETTING}"

    def current(self) -> SecretStr:
        raise self._error

    def refresh(self) -> None:
        """Nothing to refresh."""


async def run_checks(
    config: SeveraClientConfig,
    *,
    contract: SeveraContract | None = None,
    key_source: ApiKeySource | None = None,
    now: dt.datetime | None = None,
) -> list[CheckResult]:
    """Run every check against the Severa ``config`` points at; never raises for Severa's failures."""
    results: list[CheckResult] = []
    now = now or dt.datetime.now(dt.UTC)

    # 1. The contract: everything else speaks through it.
    try:
        contract = contract or default_contract()
    except ConfigError as exc:
        results.append(
            CheckResult(
                "WSDL contract loaded",
                False,
                exc.message,
                fix="Reinstall severa-connector: the WSDL shipped in the package is missing or damaged.",
            )
        )
        return results + _skipped(_AFTER_CONTRACT, "because the WSDL could not be loaded")
    if contract.missing:
        names = ", ".join(ref.label for ref in contract.missing)
        results.append(
            CheckResult(
                "WSDL contract loaded",
                False,
                f"The WSDL {contract.source} lacks operations the connector uses: {names}.",
                fix="Reinstall severa-connector: the WSDL shipped in the package does not match the code.",
            )
        )
        return results + _skipped(_AFTER_CONTRACT, "because the WSDL lacks operations")
    results.append(
        CheckResult(
            "WSDL contract loaded",
            True,
            f"{contract.source.name}: {len(contract.contracts)} service contracts, "
            f"{contract.operation_count} operations.",
        )
    )

    key_problem: ConfigError | None = None
    if key_source is None:
        try:
            key_source = api_key_source(config)
        except ConfigError as exc:
            key_problem = exc
            key_source = _KeyUnavailable(exc)

    async with SeveraClient(config, key_source=key_source, contract=contract, registry=None) as client:
        # 2. The endpoint answers SOAP (no key needed).
        try:
            version = await client.get_version()
        except SeveraQuotaExceeded as exc:
            # A quota fault is Severa answering: the URL is right, only nothing can be checked today.
            results.append(
                CheckResult(
                    "Endpoint reachable", True, f"Severa answered at {config.endpoint}, with a quota fault."
                )
            )
            return results + _skipped(_AFTER_ENDPOINT, _BECAUSE_SPENT, client=client, spent=exc, now=now)
        except ConnectorError as exc:
            results.append(
                CheckResult(
                    "Endpoint reachable",
                    False,
                    exc.message,
                    fix=f"Check the url setting ({URL_SETTING}, now {config.endpoint}) and that this "
                    "host can reach it (DNS, firewall, HTTP(S)_PROXY with use_env_proxy).",
                )
            )
            return results + _skipped(_AFTER_ENDPOINT, "because the endpoint did not answer")
        results.append(CheckResult("Endpoint reachable", True, f"Severa API {version} at {config.endpoint}."))

        # 3. The key.
        if key_problem is not None:
            results.append(
                CheckResult(
                    "API key accepted",
                    False,
                    key_problem.message,
                    fix=f"Set {API_KEY_SETTING}, or {API_KEY_FILE_SETTING} to a readable file with the key.",
                )
            )
            return results + _skipped(_AFTER_KEY, "because no API key could be read")
        try:
            await client.probe()
        except SeveraAuthenticationFailed as exc:
            results.append(
                CheckResult(
                    "API key accepted",
                    False,
                    exc.message,
                    fix=f"Put the current key into {key_source.origin}. Severa → Settings → Integrations "
                    "→ API shows it; generating a new one invalidates the old one at once. The key's "
                    "user needs the API right and the organisation the API add-on.",
                )
            )
            return results + _skipped(_AFTER_KEY, "because the key was refused", client=client)
        except SeveraQuotaExceeded as exc:
            return results + _skipped(_AFTER_ENDPOINT, _BECAUSE_SPENT, client=client, spent=exc, now=now)
        except ConnectorError as exc:
            results.append(
                CheckResult(
                    "API key accepted",
                    False,
                    exc.message,
                    fix="Severa did not answer properly; try again later.",
                )
            )
            return results + _skipped(_AFTER_KEY, "because the key could not be checked", client=client)
        results.append(
            CheckResult("API key accepted", True, f"Severa accepted the key from {key_source.origin}.")
        )

        # 4. Reading what the flows read.
        bu = config.business_unit_guid
        since_week = (now - dt.timedelta(days=7)).replace(tzinfo=None)
        today = now.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)

        async def users() -> str:
            found = await client.get_all_users()
            return f"Active users visible to the key's user: {len(found)}."

        async def cases() -> str:
            found = as_list(
                await client.call(
                    Ops.GET_CASES_CHANGED_SINCE, businessUnitGUID=bu, startDateTime=since_week, options=0
                )
            )
            return f"Cases changed in the last 7 days: {len(found)}."

        async def hour_entries() -> str:
            found = as_list(await client.call(Ops.GET_HOUR_ENTRIES_CHANGED_SINCE, startDate=today))
            return f"Hour entries changed today (UTC): {len(found)}."

        async def invoices() -> str:
            statuses = as_list(await client.call(Ops.GET_ALL_INVOICE_STATUSES))
            if not statuses:
                return "No invoice statuses defined, so no invoices to read."
            status = statuses[0].Name
            found = as_list(
                await client.call(
                    Ops.GET_INVOICES_BY_STATUS, businessUnitGUID=bu, status=status, options=0, maxInvoices=1
                )
            )
            return f"Invoice statuses: {len(statuses)}; read {len(found)} of at most 1 invoice in {status!r}."

        for name, what, check in (
            ("Can read users", "users", users),
            ("Can read cases", "cases", cases),
            ("Can read hour entries", "hour entries", hour_entries),
            ("Can read invoices", "invoices", invoices),
        ):
            try:
                results.append(await _read_check(name, what, check))
            except SeveraQuotaExceeded as exc:  # spent half-way: the rest cannot be checked today
                rest = _AFTER_KEY[_AFTER_KEY.index(name) :]
                return results + _skipped(rest, _BECAUSE_SPENT, client=client, spent=exc, now=now)

        results.append(_quota_check(client, now=now))
    return results


async def _read_check(name: str, what: str, check: Callable[[], Awaitable[str]]) -> CheckResult:
    try:
        return CheckResult(name, True, await check())
    except SeveraQuotaExceeded:
        raise
    except SeveraRejected as exc:
        return CheckResult(
            name,
            False,
            exc.message,
            fix=f"Give the API key's user the right to read {what} in Severa (user rights / profile).",
        )
    except ConnectorError as exc:
        return CheckResult(name, False, exc.message, fix="Severa did not answer properly; try again later.")
    except ValueError as exc:  # as_list on a result of the wrong shape
        return CheckResult(name, False, f"Severa's answer had an unexpected shape: {exc}.", fix=None)


def _next_reset(now: dt.datetime) -> str:
    """When Severa's quota resets next (00:00 UTC), and how long that is from ``now``."""
    now = now.astimezone(dt.UTC)
    reset = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    minutes = max(1, round((reset - now).total_seconds() / 60))
    return f"{reset:%Y-%m-%d %H:%M} UTC, in {minutes // 60} h {minutes % 60:02d} min"


def _quota_check(
    client: SeveraClient, *, now: dt.datetime, spent: SeveraQuotaExceeded | None = None
) -> CheckResult:
    if spent is not None:
        return CheckResult(
            "Quota left",
            False,
            f"{spent.message} Next reset: {_next_reset(now)}.",
            fix="Wait for the reset, or ask Visma for a larger quota; lower the call rate "
            "(rate_limit_per_second) so the connector does not run dry again.",
        )
    reading = client.quota
    if reading is None:
        return CheckResult(
            "Quota left",
            False,
            "Severa sent no Quota/UsedQuota headers, so the remaining quota is unknown.",
            fix="Check that the url points at Severa itself, not at a proxy that strips SOAP headers.",
        )
    share = reading.remaining / reading.quota if reading.quota else 0.0
    detail = (
        f"{reading.remaining} of {reading.quota} calls left today ({share:.1%}); resets {_next_reset(now)}."
    )
    if share < MIN_QUOTA_LEFT:
        return CheckResult(
            "Quota left",
            False,
            detail,
            fix="Wait for 00:00 UTC or ask Visma for a larger quota; lower the call rate "
            "(rate_limit_per_second) so the connector does not run dry again.",
        )
    if share < LOW_QUOTA_LEFT:
        return CheckResult(
            "Quota left",
            True,
            detail,
            fix="Less than a tenth of today's quota is left: find what spends it (severa_calls_total) "
            "before the connector runs dry.",
            warning=True,
        )
    return CheckResult("Quota left", True, detail)


_READS = ("Can read users", "Can read cases", "Can read hour entries", "Can read invoices")
_AFTER_KEY = (*_READS, "Quota left")
_AFTER_ENDPOINT = ("API key accepted", *_AFTER_KEY)
_AFTER_CONTRACT = ("Endpoint reachable", *_AFTER_ENDPOINT)
_BECAUSE_SPENT = "because Severa's daily API quota is spent"


def _skipped(
    names: tuple[str, ...],
    because: str,
    *,
    client: SeveraClient | None = None,
    spent: SeveraQuotaExceeded | None = None,
    now: dt.datetime | None = None,
) -> list[CheckResult]:
    """``names`` as not checked ``because``; the quota is still reported when a call told of it."""
    results = []
    for name in names:
        if name == "Quota left" and client is not None and (spent is not None or client.quota is not None):
            # A refused call still carries the quota headers, and a quota fault is the answer itself.
            results.append(_quota_check(client, now=now or dt.datetime.now(dt.UTC), spent=spent))
            continue
        results.append(CheckResult(name, False, f"Not checked {because}.", skipped=True))
    return results

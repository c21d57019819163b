"""The ``severa-connector`` command line: thin typer commands over service functions.

Exit codes: 0 success, 1 the command ran and found a problem (a failed check, a demo whose events
did not all settle), 2 bad configuration or usage -- including a broker that refuses the login or
the vhost and a port in use --, 3 a peer (the broker) still unreachable after the bounded start-up
retries (:mod:`connector.startup`). Codes 2 and 3 come with exactly one line on stderr that names
the setting or the peer and what to do; never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn, Protocol, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from connector import __version__
from connector.config import CommonSettings, Settings, load_settings, one_line
from connector.dlq.cli import dlq_app
from connector.errors import ConfigError, ConnectorError
from connector.logging import configure_logging, get_logger
from connector.startup import StartupError

app = typer.Typer(
    name="severa-connector",
    help="Event-driven bridge between RabbitMQ and the Visma Severa SOAP API.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
log = get_logger(__name__)
err = Console(stderr=True)
out = Console()
T = TypeVar("T")

EXIT_PROBLEM = 1
EXIT_CONFIG = 2


def _version(value: bool) -> None:
    if value:
        out.print(f"severa-connector {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Event-driven bridge between RabbitMQ and the Visma Severa SOAP API."""


def _fail(label: str, message: str, code: int) -> NoReturn:
    """Print ``label: message`` as exactly one line on stderr and exit with ``code``.

    A ``Text`` so that brackets in the message (``[10, 60, 600]``) are not read as markup, and
    ``soft_wrap`` so that a narrow terminal or a log collector never sees it split.
    """
    err.print(Text.assemble((f"{label}: ", "bold red"), one_line(message)), soft_wrap=True)
    raise typer.Exit(code)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; configuration and start-up errors become one line and an exit code."""
    try:
        return asyncio.run(coro)
    except StartupError as exc:
        coro.close()
        _fail("cannot start", exc.message, exc.exit_code)
    except ConfigError as exc:
        coro.close()
        _fail("configuration error", exc.message, EXIT_CONFIG)
    except ConnectorError as exc:  # our own errors say what went wrong; the traceback is for debugging
        coro.close()
        log.debug("command_failed", exc_info=exc)
        _fail("failed", exc.message, EXIT_PROBLEM)


def _settings(cls: type[CommonSettings] = Settings) -> Any:
    try:
        settings = load_settings(cls)
    except ConfigError as exc:
        _fail("configuration error", exc.message, EXIT_CONFIG)
    configure_logging(settings.log.level, settings.log.format)
    return settings


class Role(enum.StrEnum):
    consumer = "consumer"
    poller = "poller"
    all = "all"


@app.command()
def run(
    role: Annotated[
        Role | None,
        typer.Option(
            help="consumer: the flows; poller: the change poller (one active across pods); all: both. "
            "Default: SEVERA_CONNECTOR_ROLE, else consumer."
        ),
    ] = None,
) -> None:
    """Run the connector until SIGTERM: consume work-hour events into Severa, and/or poll Severa's changes."""
    from connector.service import ConnectorService

    settings: Settings = _settings(Settings)
    if role is not None:
        settings = settings.model_copy(update={"role": role.value})
    _run(ConnectorService(settings).run_until_stopped())


@app.command()
def demo(
    events: Annotated[int, typer.Option(help="How many good events to publish.", min=1, max=10_000)] = 5,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every event to settle.")] = 60.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the connector's log.")] = False,
) -> None:
    """Run the whole loop on this machine: fake Severa + connector + sample events (some bad)."""
    from connector.demo import run_demo

    settings: CommonSettings = _settings(CommonSettings)
    if not verbose:  # the tables are the demo's output; the log would drown them
        configure_logging("CRITICAL", settings.log.format)
    ok = _run(run_demo(settings, good_events=events, timeout=timeout, console=out))
    if not ok:
        raise typer.Exit(EXIT_PROBLEM)


@app.command("fake-severa")
def fake_severa(
    port: Annotated[int, typer.Option(help="TCP port to listen on.")] = 8089,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    api_key: Annotated[
        str, typer.Option(envvar="FAKE_SEVERA_API_KEY", help="The key the fake accepts.")
    ] = "fake-severa-key",
    seed: Annotated[
        Path | None, typer.Option(help="Seed data (YAML/JSON); default: the built-in demo seed.")
    ] = None,
) -> None:
    """Serve the fake Severa SOAP service (WSDL at <url>/WSDL) for tests, demos and local runs."""
    from adapters.severa.fake.server import serve

    configure_logging("INFO", "auto")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(host=host, port=port, api_key=api_key, seed=str(seed) if seed else None))


@app.command("fake-netvisor")
def fake_netvisor(
    port: Annotated[int, typer.Option(help="TCP port to listen on.")] = 8090,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    customer_id: Annotated[
        str, typer.Option(envvar="FAKE_NETVISOR_CUSTOMER_ID", help="The API user (CustomerId) it accepts.")
    ] = "fake-customer",
    customer_key: Annotated[
        str, typer.Option(envvar="FAKE_NETVISOR_CUSTOMER_KEY", help="The CustomerKey it verifies MACs with.")
    ] = "fake-customer-key",
    partner_id: Annotated[
        str, typer.Option(envvar="FAKE_NETVISOR_PARTNER_ID", help="The integration partner (PartnerId).")
    ] = "fake-partner",
    partner_key: Annotated[
        str, typer.Option(envvar="FAKE_NETVISOR_PARTNER_KEY", help="The PartnerKey it verifies MACs with.")
    ] = "fake-partner-key",
    organisation_id: Annotated[
        str, typer.Option(envvar="FAKE_NETVISOR_ORGANISATION_ID", help="The company's business id.")
    ] = "1234567-8",
    seed: Annotated[
        Path | None, typer.Option(help="Seed data (YAML/JSON); default: an empty company.")
    ] = None,
) -> None:
    """Serve the fake Netvisor XML API (<url>/<resource>.nv, admin API at <url>/admin) for tests and demos."""
    from adapters.netvisor.fake.server import serve as serve_netvisor

    configure_logging("INFO", "auto")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve_netvisor(
                host,
                port,
                customer_id=customer_id,
                customer_key=customer_key,
                partner_id=partner_id,
                partner_key=partner_key,
                organisation_id=organisation_id,
                seed=str(seed) if seed else None,
            )
        )


@app.command()
def console(
    port: Annotated[int, typer.Option(help="TCP port to listen on.")] = 8095,
    host: Annotated[str, typer.Option(help="Interface to bind (0.0.0.0 in a container).")] = "127.0.0.1",
    token_file: Annotated[
        Path | None,
        typer.Option(help="File holding the bearer token (a mounted secret); sign-in form and API use it."),
    ] = None,
    trust_user_header: Annotated[
        str | None,
        typer.Option(
            help="Take the operator from this header (e.g. X-Forwarded-User) -- only behind a proxy "
            "that sets it and that is the only way in."
        ),
    ] = None,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Show everything; offer and allow no action.")
    ] = False,
    trace_url: Annotated[
        str | None,
        typer.Option(help="Link for trace ids, with {trace_id}, e.g. https://tempo/trace/{trace_id}."),
    ] = None,
) -> None:
    """Serve the dead-letter console (web UI over the dead-letter store; actions audited)."""
    from connector.config import DlqSettings
    from connector.console.app import ConsoleConfig
    from connector.console.auth import Authenticator, read_token
    from connector.console.server import serve

    settings: DlqSettings = _settings(DlqSettings)
    try:
        token = read_token(token_file) if token_file is not None else None
        auth = Authenticator(token=token, trust_user_header=trust_user_header)
    except ConfigError as exc:
        _fail("configuration error", exc.message, EXIT_CONFIG)
    log.info("console_starting", host=host, port=port, read_only=read_only, proxy_header=trust_user_header)
    serve(ConsoleConfig(settings, auth, read_only=read_only, trace_url=trace_url), host=host, port=port)


class CheckRow(Protocol):
    """One row of ``check``: the shape both adapters' ``CheckResult`` have."""

    @property
    def name(self) -> str: ...
    @property
    def ok(self) -> bool: ...
    @property
    def detail(self) -> str: ...
    @property
    def fix(self) -> str | None: ...
    @property
    def skipped(self) -> bool: ...


def _check_table(title: str, results: Sequence[CheckRow]) -> int:
    """Print one section of ``check`` as a table; return how many of its checks did not pass.

    One renderer for every peer, so that Severa's and Netvisor's sections read alike. The cells are
    ``Text``: a peer's message quoted in a detail (``[…]``) must not be read as markup. The rows hold
    only what the check functions put in them, which never includes a key.
    """
    table = Table(title=title, title_justify="left")
    for column in ("", "check", "result", "fix"):
        table.add_column(column, overflow="fold")
    for result in results:
        mark = "[green]✓[/]" if result.ok else ("[yellow]-[/]" if result.skipped else "[red]✗[/]")
        table.add_row(mark, Text(result.name), Text(result.detail), Text(result.fix or ""))
    out.print(table)
    return sum(1 for result in results if not result.ok)


@app.command()
def check() -> None:
    """Check Severa (endpoint, WSDL, API key, rights, quota) and, with accounting.system netvisor,
    Netvisor (reachable, signature, a right per resource used); exit 1 on any failure."""
    from adapters.severa.check import run_checks

    settings: Settings = _settings(Settings)
    # Each section is printed as soon as it is known: Netvisor may take its time to answer, and
    # Severa's verdict should not wait for it.
    results: list[CheckRow] = list(_run(run_checks(settings.severa)))
    failed = _check_table(f"Severa at {settings.severa.endpoint}", results)
    netvisor = settings.netvisor
    if settings.accounting.system == "netvisor" and netvisor is not None:
        from adapters.netvisor.check import run_checks as run_netvisor_checks

        # No metrics registry: a one-off command has nobody scraping it.
        netvisor_results = _run(run_netvisor_checks(netvisor, registry=None))
        title = f"Netvisor at {netvisor.root}/ (organisation {netvisor.organisation_id})"
        failed += _check_table(title, netvisor_results)
        results.extend(netvisor_results)
    if failed:
        out.print(f"[bold red]{failed} of {len(results)} checks failed[/]")
        raise typer.Exit(EXIT_PROBLEM)
    out.print(f"[bold green]all {len(results)} checks passed[/]")


@app.command("settings")
def settings_reference() -> None:
    """Print every setting (environment variable, type, default, description) as Markdown.

    ``docs/settings.md`` is this output: regenerate it with ``severa-connector settings > docs/settings.md``.
    """
    from connector.settings_doc import render_settings_reference

    typer.echo(render_settings_reference(), nl=False)


schemas_app = typer.Typer(help="Message contracts (JSON Schema / AsyncAPI).", no_args_is_help=True)
app.add_typer(schemas_app, name="schemas")
app.add_typer(dlq_app, name="dlq")


@schemas_app.command("export")
def schemas_export(
    directory: Annotated[Path, typer.Argument(help="Where to write the files.")] = Path("schemas/generated"),
) -> None:
    """Write the JSON Schema of every message contract and the AsyncAPI document."""
    from schemas.export import export_all

    for path in export_all(directory):
        out.print(f"wrote {path}")


@schemas_app.command("show")
def schemas_show(name: Annotated[str, typer.Argument(help="Contract name, e.g. WorkHourEvent.")]) -> None:
    """Print one contract's JSON Schema."""
    from schemas.export import CONTRACTS

    model = CONTRACTS.get(name)
    if model is None:
        err.print(f"unknown contract {name!r}; known: {', '.join(sorted(CONTRACTS))}")
        raise typer.Exit(EXIT_CONFIG)
    out.print_json(json.dumps(model.model_json_schema()))


def main() -> None:
    app()

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
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from connector import __version__, tracing
from connector.cli_check import CheckSection, checks_document, print_check_section
from connector.cli_help import ConnectorTyper
from connector.cli_output import (
    Column,
    OutputFormat,
    OutputOpt,
    output_format,
    print_json,
    print_table,
    stdout_console,
)
from connector.config import CommonSettings, Settings, load_settings, one_line
from connector.dlq.cli import dlq_app
from connector.errors import ConfigError, ConnectorError
from connector.logging import configure_logging, get_logger
from connector.startup import StartupError

app = ConnectorTyper(
    name="severa-connector",
    help="Event-driven bridge between RabbitMQ and the Visma Severa SOAP API.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
log = get_logger(__name__)
err = Console(stderr=True)
T = TypeVar("T")

EXIT_PROBLEM = 1
EXIT_CONFIG = 2


def _version(value: bool) -> None:
    if value:
        typer.echo(f"severa-connector {__version__}")
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


#: Modules the production wheel leaves out (pyproject.toml: the fakes and the demo built on them).
FAKE_MODULES = (
    "adapters.severa.fake",
    "adapters.netvisor.fake",
    "adapters.fake_faults",
    "adapters.fake_server",
    "connector.demo",
    "connector.demo_accounting",
)


def _fakes_missing(exc: ModuleNotFoundError) -> NoReturn:
    """One line instead of an ImportError where the production image runs a command of the fakes."""
    name = exc.name or ""
    if not any(name == module or name.startswith(f"{module}.") for module in FAKE_MODULES):
        raise exc
    _fail(
        "not installed",
        "the fakes are not installed in this image (the production image leaves them out): use the "
        "dev image (docker build --target dev) or a source checkout (pip install -e .)",
        EXIT_CONFIG,
    )


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
    tracing.start(settings.tracing, pod=settings.pod_name)  # off (and free) without an OTLP endpoint
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
    with_console: Annotated[
        bool,
        typer.Option(
            "--console",
            help="Then keep everything running and serve the dead-letter console on the demo's "
            "dead letters until Ctrl-C / SIGTERM (URL and token printed).",
        ),
    ] = False,
    console_port: Annotated[
        int, typer.Option(help="Port of the console (with --console).", min=1, max=65535)
    ] = 8095,
    prefix: Annotated[
        str, typer.Option(help="Name prefix of the demo's queues and exchanges on the broker.")
    ] = "demo.",
) -> None:
    """Run the whole loop on this machine: fake Severa + connector + sample events (some bad)."""
    try:
        from connector.demo import run_demo
    except ModuleNotFoundError as exc:
        _fakes_missing(exc)

    if not prefix.endswith(".") or len(prefix) < 2:
        _fail("usage error", f"--prefix {prefix!r} must be a name ending in '.', e.g. demo.", EXIT_CONFIG)
    settings: CommonSettings = _settings(CommonSettings)
    if not verbose:  # the tables are the demo's output; the log would drown them
        configure_logging("CRITICAL", settings.log.format)
    ok = _run(
        run_demo(
            settings,
            good_events=events,
            timeout=timeout,
            console=stdout_console(),
            console_port=console_port if with_console else None,
            prefix=prefix,
        )
    )
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
    try:
        from adapters.severa.fake.server import serve
    except ModuleNotFoundError as exc:
        _fakes_missing(exc)

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
    try:
        from adapters.netvisor.fake.server import serve as serve_netvisor
    except ModuleNotFoundError as exc:
        _fakes_missing(exc)

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
        typer.Option(
            help="Link for trace ids, with {trace_id}, e.g. https://tempo/trace/{trace_id}.",
            envvar="SEVERA_CONNECTOR_CONSOLE__TRACE_URL",
        ),
    ] = None,
) -> None:
    """Serve the dead-letter console (web UI over the dead-letter store; actions audited)."""
    from connector.config import DlqSettings
    from connector.console.app import ConsoleConfig
    from connector.console.auth import Authenticator, read_token
    from connector.console.server import serve

    settings: DlqSettings = _settings(DlqSettings)
    if trace_url is not None and (
        not trace_url.startswith(("https://", "http://")) or "{trace_id}" not in trace_url
    ):
        _fail(
            "configuration error",
            "--trace-url (SEVERA_CONNECTOR_CONSOLE__TRACE_URL) must be an http(s) URL containing "
            "{trace_id}, e.g. https://tempo.example/trace/{trace_id}",
            EXIT_CONFIG,
        )
    try:
        token = read_token(token_file) if token_file is not None else None
        auth = Authenticator(token=token, trust_user_header=trust_user_header)
    except ConfigError as exc:
        _fail("configuration error", exc.message, EXIT_CONFIG)
    log.info("console_starting", host=host, port=port, read_only=read_only, proxy_header=trust_user_header)
    serve(ConsoleConfig(settings, auth, read_only=read_only, trace_url=trace_url), host=host, port=port)


@app.command()
def check(
    output: OutputOpt = None,
    json_: Annotated[bool, typer.Option("--json", help="Same as -o json.")] = False,
) -> None:
    """Check Severa (endpoint, WSDL, API key, rights, quota) and, with accounting.system netvisor,
    Netvisor (reachable, signature, a right per resource used); exit 1 unless every check passed.

    Each check is ok, warning (passed, but look), failed or not_checked (an earlier failure made it
    pointless). -o json prints {"ok", "summary", "counts", "peers", "checks": [{"peer", "name",
    "status", "message", "fix"}]}.
    """
    from adapters.severa.check import run_checks

    fmt = output_format(output, json_)
    settings: Settings = _settings(Settings)
    sections: list[CheckSection] = []

    def add(section: CheckSection) -> None:
        # Each section is printed as soon as it is known: Netvisor may take its time to answer,
        # and Severa's verdict should not wait for it. JSON is one document, printed at the end.
        sections.append(section)
        if fmt is not OutputFormat.JSON:
            print_check_section(section, fmt)

    add(CheckSection("severa", f"Severa at {settings.severa.endpoint}", _run(run_checks(settings.severa))))
    netvisor = settings.netvisor
    if settings.accounting.system == "netvisor" and netvisor is not None:
        from adapters.netvisor.check import run_checks as run_netvisor_checks

        # No metrics registry: a one-off command has nobody scraping it.
        netvisor_results = _run(run_netvisor_checks(netvisor, registry=None))
        title = f"Netvisor at {netvisor.root}/ (organisation {netvisor.organisation_id})"
        add(CheckSection("netvisor", title, netvisor_results))
    document = checks_document(sections)
    if fmt is OutputFormat.JSON:
        print_json(document)
    else:
        colour = "green" if document["ok"] else "red"
        stdout_console().print(Text(document["summary"], style=f"bold {colour}"))
    if not document["ok"]:
        raise typer.Exit(EXIT_PROBLEM)


@app.command("settings")
def settings_reference() -> None:
    """Print every setting (environment variable, type, default, description) as Markdown.

    ``docs/settings.md`` is this output: regenerate it with ``severa-connector settings > docs/settings.md``.
    """
    from connector.settings_doc import render_settings_reference

    typer.echo(render_settings_reference(), nl=False)


config_app = ConnectorTyper(
    help="The configuration the environment gives a command, secrets redacted.", no_args_is_help=True
)
app.add_typer(config_app, name="config")


class ConfigOutput(enum.StrEnum):
    table = "table"
    wide = "wide"
    json = "json"
    yaml = "yaml"


class ConfigScope(enum.StrEnum):
    """Which command's settings ``config show`` builds (each reads its own model)."""

    run = "run"
    dlq = "dlq"
    demo = "demo"


_CONFIG_COLUMNS = (
    Column("setting"),
    Column("variable", wide_only=True),
    Column("value", flex=True),
    Column("source", priority=1, max_width=30),
)


def _config_cell(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


@config_app.command("show")
def config_show(
    output: Annotated[
        ConfigOutput,
        typer.Option(
            "--output",
            "-o",
            case_sensitive=False,
            help="table (fits the terminal), wide (with each variable), json or yaml "
            '({"settings": {…}, "sources": {"rabbitmq.url": "env", …}}).',
        ),
    ] = ConfigOutput.table,
    scope: Annotated[
        ConfigScope,
        typer.Option("--for", help="Whose settings: run (and check), dlq (and console), or demo."),
    ] = ConfigScope.run,
) -> None:
    """Print every setting as the command would use it and where it came from (env, .env, default).

    Secrets are never printed: API and Netvisor keys, passwords in URLs, anything named like a
    key, password or token; key files are shown by path and never opened. A bad setting is the
    usual one line and exit 2.
    """
    from connector.config import DlqSettings
    from connector.config_show import as_document, effective_settings

    models: dict[ConfigScope, type[CommonSettings]] = {
        ConfigScope.run: Settings,
        ConfigScope.dlq: DlqSettings,
        ConfigScope.demo: CommonSettings,
    }
    model = models[scope]
    shown = effective_settings(_settings(model))
    if output is ConfigOutput.json:
        print_json(as_document(shown))
        return
    if output is ConfigOutput.yaml:
        import yaml

        typer.echo(yaml.safe_dump(as_document(shown), sort_keys=False, allow_unicode=True), nl=False)
        return
    fmt = OutputFormat.WIDE if output is ConfigOutput.wide else OutputFormat.TABLE
    rows = [(s.path, s.variable, _config_cell(s.value), s.source) for s in shown]
    print_table(stdout_console(), _CONFIG_COLUMNS, rows, fmt, footer=f"{len(rows)} settings ({scope.value})")


schemas_app = ConnectorTyper(help="Message contracts (JSON Schema / AsyncAPI).", no_args_is_help=True)
app.add_typer(schemas_app, name="schemas")
app.add_typer(dlq_app, name="dlq")


@schemas_app.command("export")
def schemas_export(
    directory: Annotated[Path, typer.Argument(help="Where to write the files.")] = Path("schemas/generated"),
) -> None:
    """Write the JSON Schema of every message contract and the AsyncAPI document."""
    from schemas.export import export_all

    for path in export_all(directory):
        typer.echo(f"wrote {path}")


@schemas_app.command("show")
def schemas_show(name: Annotated[str, typer.Argument(help="Contract name, e.g. WorkHourEvent.")]) -> None:
    """Print one contract's JSON Schema."""
    from schemas.export import CONTRACTS

    model = CONTRACTS.get(name)
    if model is None:
        err.print(f"unknown contract {name!r}; known: {', '.join(sorted(CONTRACTS))}")
        raise typer.Exit(EXIT_CONFIG)
    stdout_console().print_json(json.dumps(model.model_json_schema()))


def main() -> None:
    app()

"""The table layout of listing commands: one line per row within the width, the rest elided or left out."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.text import Text

from connector.cli_output import (
    MIN_FLEX_WIDTH,
    Column,
    OutputFormat,
    layout,
    output_format,
    print_table,
)

COLUMNS = (
    Column("id"),
    Column("status"),
    Column("queue", priority=3, max_width=12),
    Column("message", priority=1, flex=True),
    Column("group", priority=2),
)
ROW = (
    "0123456789ab",
    "parked",
    "t-1234.q.workhours",
    "no work type 'NOPE'\nin Severa " * 4,
    "g-0011223344aa",
)


def printed(output: OutputFormat, width: int, rows: list[tuple[str, ...]] | None = None) -> list[str]:
    stream = io.StringIO()
    console = Console(file=stream, width=width, soft_wrap=False, color_system=None)
    print_table(console, COLUMNS, rows or [ROW, ROW], output, title="dead letters", footer="2 dead letters")
    return stream.getvalue().splitlines()


@pytest.mark.parametrize("width", [40, 60, 80, 120], ids=lambda w: f"{w} columns")
def test_a_table_row_is_one_line_within_the_width(width: int) -> None:
    lines = printed(OutputFormat.TABLE, width)
    assert lines[0] == "dead letters"
    assert lines[-1] == "2 dead letters"
    body = lines[1:-1]
    assert len(body) == 3, lines  # the header and two rows, none wrapped
    assert all(len(line) <= width for line in body), lines
    assert all(line.startswith("0123456789ab") for line in body[1:])


def test_the_least_important_columns_go_first_and_the_message_is_elided() -> None:
    header, row, _ = printed(OutputFormat.TABLE, 60)[1:-1]
    assert header.split() == ["id", "status", "message", "group"]  # queue (priority 3) left out
    assert "no work type 'NOPE' i…" in row
    assert row.rstrip().endswith("g-0011223344aa")


def test_a_capped_column_is_elided_to_its_width() -> None:
    row = printed(OutputFormat.TABLE, 120)[2]
    assert "t-1234.q.wo…" in row
    assert "t-1234.q.workhours" not in row


def test_wide_shows_every_cell_whole_however_narrow_the_terminal() -> None:
    header, row, _ = printed(OutputFormat.WIDE, 40)[1:-1]
    assert header.split() == ["id", "status", "queue", "message", "group"]
    assert "t-1234.q.workhours" in row
    assert " ".join(ROW[3].split()) in row  # its line breaks are spaces: the row stays one line


def test_a_wrapping_column_keeps_its_text_beside_the_first_columns() -> None:
    columns = (Column(""), Column("check"), Column("result", flex=True, wrap=True))
    stream = io.StringIO()
    console = Console(file=stream, width=40, soft_wrap=False, color_system=None)
    long = "Severa refused the API key; put the current key into SEVERA_CONNECTOR_SEVERA__API_KEY."
    print_table(console, columns, [(Text("✗"), "API key accepted", long)], OutputFormat.TABLE)
    lines = stream.getvalue().splitlines()
    assert lines[1].startswith("✗  API key accepted  Severa refused")
    assert all(len(line) <= 40 for line in lines)
    indent = lines[1].index("Severa")
    assert all(line[:indent].strip() == "" for line in lines[2:])  # continuation under the result
    assert "".join("".join(line[indent:] for line in lines[1:]).split()) == "".join(long.split())


def test_the_first_column_stays_when_nothing_else_fits() -> None:
    widths = layout(COLUMNS, [[Text(cell) for cell in ROW]], 10)
    assert widths[0] == len("0123456789ab")
    assert widths[1:] == [None, None, None, None]


def test_flexible_columns_get_at_least_their_minimum() -> None:
    widths = layout(COLUMNS, [[Text(cell) for cell in ROW]], 12 + 2 + 6 + 2 + MIN_FLEX_WIDTH)
    assert widths == [12, 6, None, MIN_FLEX_WIDTH, None]


@pytest.mark.parametrize(
    ("output", "json_flag", "expected"),
    [
        pytest.param(None, False, OutputFormat.TABLE, id="nothing said is a table"),
        pytest.param(None, True, OutputFormat.JSON, id="--json is -o json"),
        pytest.param(OutputFormat.JSON, True, OutputFormat.JSON, id="both saying json agree"),
        pytest.param(OutputFormat.WIDE, False, OutputFormat.WIDE, id="-o wide"),
    ],
)
def test_output_format(output: OutputFormat | None, json_flag: bool, expected: OutputFormat) -> None:
    assert output_format(output, json_flag) is expected


def test_json_with_another_output_is_refused() -> None:
    import typer

    with pytest.raises(typer.BadParameter, match="contradicts"):
        output_format(OutputFormat.WIDE, True)

"""How listing commands print: ``-o table`` (fits the terminal), ``-o wide`` (every column), ``-o json``.

People on call read these tables in an 80-column terminal, a CI log or a ``| less`` -- rarely in a
wide window. So ``table`` lays its columns out for the width it has (80 when there is no terminal
and ``COLUMNS`` is unset): every row stays one line, a long cell is elided with ``…`` (or, for a
column whose whole text matters, such as a check's result, word-wrapped inside its own column),
and when even that does not fit, the least important columns are left out -- ``-o wide`` shows them.
``wide`` prints every column in full and lets the lines be as long as they are (for ``less -S`` or
a file). ``json`` is for scripts: one JSON document on stdout, nothing else there.

The tables have no borders: a line of a table is its cells separated by spaces, so ``grep`` and
``awk`` work on it, and nothing is drawn that a log collector would mangle.
"""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import typer
from rich.cells import cell_len
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

#: Cells of one row are this far apart (``padding=(0, 1)`` on both sides, no borders).
GAP = 2
#: A column that is elided or wrapped to fit is never narrower than this (else it is left out).
MIN_FLEX_WIDTH = 12


class OutputFormat(enum.StrEnum):
    """What ``-o/--output`` takes."""

    TABLE = "table"
    WIDE = "wide"
    JSON = "json"


OutputOpt = Annotated[
    OutputFormat | None,
    typer.Option(
        "--output",
        "-o",
        case_sensitive=False,
        help="table: fits the terminal (80 columns without one); wide: every column in full; "
        "json: one JSON document for scripts.",
    ),
]


def output_format(output: OutputFormat | None, json_flag: bool) -> OutputFormat:
    """``-o`` as given, ``--json`` as a short way to say ``-o json``; both at odds is a usage error."""
    if json_flag:
        if output not in (None, OutputFormat.JSON):
            raise typer.BadParameter(f"--json contradicts -o {output}", param_hint="--json")
        return OutputFormat.JSON
    return output or OutputFormat.TABLE


def stdout_console() -> Console:
    """A console on stdout, built when it is needed: its width is the one of this invocation
    (``COLUMNS``, the terminal, else 80), not the one of whoever imported the module."""
    return Console(soft_wrap=False)


def print_json(data: Any) -> None:
    """``data`` as one JSON document on stdout (dates and other non-JSON values as their text)."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


Cell = str | Text


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a listing.

    ``priority``: when ``table`` cannot fit every column, the highest numbers are left out first.
    ``max_width``: in ``table``, a longer cell is elided (``None``: as wide as its cells).
    ``flex``: this column takes the room that is left, down to :data:`MIN_FLEX_WIDTH`; ``wrap``
    makes such a column word-wrap inside its width instead of eliding (for texts read whole).
    ``wide_only``: shown by ``wide`` alone.
    """

    header: str
    justify: Literal["left", "right"] = "left"
    priority: int = 0
    max_width: int | None = None
    flex: bool = False
    wrap: bool = False
    wide_only: bool = False


def as_text(cell: Cell) -> Text:
    return cell if isinstance(cell, Text) else Text(cell)


def one_line(cell: Cell) -> Text:
    """A cell as text on one line: line breaks and runs of spaces in a message become one space."""
    text = as_text(cell)
    if any(space in text.plain for space in ("\n", "\r", "\t", "  ")):
        return Text(" ".join(text.plain.split()), style=text.style)
    return text


def layout(columns: Sequence[Column], rows: Sequence[Sequence[Text]], width: int) -> list[int | None]:
    """The width of each column in ``table`` (``None``: left out), so that a row fits ``width``.

    Fixed columns get their content's width (up to ``max_width``); flexible ones share what is
    left, each at least :data:`MIN_FLEX_WIDTH`. While the minimum does not fit, the column with the
    highest ``priority`` (the rightmost of equals) is left out; the first column always stays.
    """
    natural = [
        max([cell_len(column.header), *(row[i].cell_len for row in rows)]) for i, column in enumerate(columns)
    ]
    capped = [
        min(n, column.max_width) if column.max_width is not None else n
        for n, column in zip(natural, columns, strict=True)
    ]
    least = [
        min(c, max(MIN_FLEX_WIDTH, cell_len(column.header))) if column.flex else c
        for c, column in zip(capped, columns, strict=True)
    ]
    shown = [not column.wide_only for column in columns]

    def needed() -> int:
        kept = [w for w, keep in zip(least, shown, strict=True) if keep]
        return sum(kept) + GAP * (len(kept) - 1)

    while needed() > width:
        candidates = [i for i in range(1, len(columns)) if shown[i]]
        if not candidates:
            break
        drop = max(candidates, key=lambda i: (columns[i].priority, i))
        shown[drop] = False
    widths: list[int | None] = [w if keep else None for w, keep in zip(least, shown, strict=True)]
    spare = width - needed()
    flexible = [i for i, w in enumerate(widths) if w is not None and columns[i].flex]
    # Share the room left among the flexible columns, none beyond what its cells need.
    while spare > 0 and flexible:
        growing = [i for i in flexible if (widths[i] or 0) < capped[i]]
        if not growing:
            break
        share = max(1, spare // len(growing))
        for i in growing:
            current = widths[i] or 0
            grow = min(share, capped[i] - current, spare)
            widths[i] = current + grow
            spare -= grow
            if spare <= 0:
                break
    return widths


def render_table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
    output: OutputFormat,
    *,
    width: int,
) -> tuple[RenderableType, int]:
    """The table for ``output`` (``table`` or ``wide``) and the width to print it at.

    ``wide`` is printed at its natural width, which may exceed the terminal's: it never wraps.
    """
    # Every cell on one line, except in a column that wraps: there, line breaks are the cell's own.
    keeps_lines = [column.wrap and output is OutputFormat.TABLE for column in columns]
    cells = [
        [as_text(cell) if keep else one_line(cell) for cell, keep in zip(row, keeps_lines, strict=True)]
        for row in rows
    ]
    if output is OutputFormat.WIDE:
        chosen: list[int | None] = [
            max([cell_len(column.header), *(row[i].cell_len for row in cells)])
            for i, column in enumerate(columns)
        ]
    else:
        chosen = layout(columns, cells, width)
    table = Table(
        box=None,
        padding=(0, 1),
        pad_edge=False,
        show_edge=False,
        header_style="bold",
    )
    kept = [i for i, w in enumerate(chosen) if w is not None]
    for i in kept:
        column = columns[i]
        wraps = column.wrap and output is OutputFormat.TABLE
        table.add_column(
            column.header,
            justify=column.justify,
            width=chosen[i],
            no_wrap=not wraps,
            overflow="fold" if wraps else "ellipsis",
        )
    for row in cells:
        table.add_row(*(row[i] for i in kept))
    return table, sum(w for w in chosen if w is not None) + GAP * (len(kept) - 1)


def print_table(
    console: Console,
    columns: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
    output: OutputFormat,
    *,
    title: str | None = None,
    footer: str | None = None,
) -> None:
    """Print a listing as ``table`` or ``wide``: ``title`` above it and ``footer`` (a summary)
    below, each a line of its own rather than part of the table, so that neither is cut to the
    table's width."""
    if title:
        console.print(Text(title, style="bold"), soft_wrap=True)
    table, needed = render_table(columns, rows, output, width=console.width)
    if output is OutputFormat.WIDE and needed > console.width:
        # A console never prints wider than it is: a wider one on the same stream, same colours.
        wider = Console(
            file=console.file,
            width=needed,
            soft_wrap=False,
            force_terminal=console.is_terminal,
            no_color=console.no_color,
            color_system=console.color_system,  # type: ignore[arg-type]
        )
        wider.print(table, crop=False)
    else:
        console.print(table)
    if footer:
        console.print(Text(footer), soft_wrap=output is OutputFormat.WIDE)


@dataclass(frozen=True, slots=True)
class Listing:
    """What a listing command shows as a table: its columns, rows, and the lines around them."""

    columns: Sequence[Column]
    rows: Sequence[Sequence[Cell]]
    title: str | None = None
    footer: str | None = None


def print_listing(console: Console, listing: Listing, output: OutputFormat) -> None:
    """:func:`print_table` for a :class:`Listing`."""
    print_table(console, listing.columns, listing.rows, output, title=listing.title, footer=listing.footer)

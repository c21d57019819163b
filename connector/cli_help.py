"""The typer application class every command group of ``severa-connector`` is built with.

typer (0.29) labels each option in ``--help`` with its Python type -- ``<int>``, ``<str>`` -- and
does so for flags too: ``--json <bool>``, ``--help <bool>``. A flag takes no value, so the label
tells the reader to type one (``--json true``) that the command then refuses. :class:`ConnectorTyper`
builds its commands and groups with classes that print flags bare; every other option keeps its
label. ``tests/e2e/test_cli_help.py`` runs ``--help`` of every command and fails on ``<bool>``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption
from typer.models import CommandFunctionType


@contextlib.contextmanager
def _flags_unlabelled(params: Sequence[object]) -> Iterator[None]:
    """While help is formatted, give flags an empty metavar: typer shows a metavar instead of the
    type, and an empty one shows nothing. Put back afterwards, so that parsing and error messages
    see the parameters as they were."""
    changed = [
        param
        for param in params
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None
    ]
    for param in changed:
        param.metavar = ""
    try:
        yield
    finally:
        for param in changed:
            param.metavar = None


class FlagAwareCommand(TyperCommand):
    """A command whose ``--help`` shows flags without a type."""

    def format_help(self, ctx: Any, formatter: Any) -> None:  # typer's own (vendored click) types
        with _flags_unlabelled(self.get_params(ctx)):
            super().format_help(ctx, formatter)


class FlagAwareGroup(TyperGroup):
    """A command group whose ``--help`` shows flags without a type."""

    def format_help(self, ctx: Any, formatter: Any) -> None:  # typer's own (vendored click) types
        with _flags_unlabelled(self.get_params(ctx)):
            super().format_help(ctx, formatter)


class ConnectorTyper(typer.Typer):
    """``typer.Typer`` whose groups and commands are :class:`FlagAwareGroup` / :class:`FlagAwareCommand`."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", FlagAwareGroup)
        super().__init__(**kwargs)

    def command(
        self, name: str | None = None, *, cls: type[TyperCommand] | None = None, **kwargs: Any
    ) -> Callable[[CommandFunctionType], CommandFunctionType]:
        return super().command(name, cls=cls or FlagAwareCommand, **kwargs)

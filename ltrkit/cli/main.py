"""The ``ltrkit`` command. Each sub-command group lives in its own module and registers itself.

Start-up stays cheap: the command modules import only typer and the error printer at module
level, and each command imports what it needs (numpy, the parser, torch) in its body, so
``ltrkit --help``, ``--version`` and the data tools never import torch.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import typer
from typer.core import TyperGroup

try:  # recent typer releases carry their own copy of click
    from typer._click import Context, exceptions as click_exceptions
except ImportError:  # older ones run on the click package
    from click import Context, exceptions as click_exceptions

from ltrkit.cli import clicks_cmd, data_cmd, embed_cmd, evaluate_cmd, export_cmd, serve_cmd, train_cmd, tune_cmd
from ltrkit.cli._errors import fail

__all__ = ["app", "version"]


#: click >= 8.2 shows a group's help through this UsageError (no-args-is-help), which must stay help
_HELP_NOT_ERROR = getattr(click_exceptions, "NoArgsIsHelpError", ())


@contextmanager
def _usage_errors_as_one_line(ctx: Context) -> Iterator[None]:
    """Turn click's multi-line usage errors into one ``fail`` line naming the command's help."""
    try:
        yield
    except _HELP_NOT_ERROR:
        raise
    except click_exceptions.UsageError as error:
        where = error.ctx.command_path if error.ctx is not None else ctx.command_path
        fail(f"{error.format_message()} (see '{where} --help')")


class _OneLineErrors(TyperGroup):
    """The root group: a usage error (unknown option, bad option value, missing argument) anywhere
    on the command line is printed as one ``error:`` line, exit code 2, like every other bad input."""

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        with _usage_errors_as_one_line(ctx):
            return super().parse_args(ctx, args)

    def invoke(self, ctx: Context) -> Any:
        with _usage_errors_as_one_line(ctx):
            return super().invoke(ctx)


app = typer.Typer(
    name="ltrkit",
    cls=_OneLineErrors,
    help="Learning to rank on PyTorch: data tools, training, prediction and IR evaluation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # plain click help: no rich import, no `<bool>` type column on flags
    rich_markup_mode=None,
)


def version() -> str:
    """The installed distribution's version, or ``ltrkit.__version__`` when running from a source tree."""
    from importlib import metadata

    try:
        return metadata.version("ltrkit")
    except metadata.PackageNotFoundError:
        from ltrkit import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"ltrkit {version()}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Options of ``ltrkit`` itself (the group's help is the ``help`` given to the Typer)."""


for command_module in (data_cmd, evaluate_cmd, train_cmd, export_cmd, serve_cmd, clicks_cmd, tune_cmd, embed_cmd):
    command_module.register(app)


if __name__ == "__main__":
    app()

"""The ``ltrkit`` command. Each sub-command group lives in its own module and registers itself."""

from __future__ import annotations

import typer

from ltrkit.cli import data_cmd, evaluate_cmd, train_cmd

app = typer.Typer(
    name="ltrkit",
    help="Learning to rank on PyTorch: data tools, training, prediction and IR evaluation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for command_module in (data_cmd, evaluate_cmd, train_cmd):
    command_module.register(app)


if __name__ == "__main__":
    app()

"""Live console output of a training run: a rich progress bar per epoch (loss, throughput) and a
metric table per epoch. ``quiet=True`` prints nothing (scripts, tests, the Python API).

The same messages and one plain-text line per epoch also go to a ``log`` callable (the run
folder's ``train.log``), quiet or not.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

__all__ = ["ProgressReporter"]


class ProgressReporter:
    """Console reporter (silent when ``quiet``) that also writes messages and epoch lines to ``log``.

    Args:
        quiet: print nothing on the console.
        console: where to print (default: a rich console on stderr).
        log: called with each message and each epoch's line (no trailing newline); set or
            replaced later through the attribute, e.g. once the run folder exists.
        unit: what the throughput counts (``docs``, ``items``, ...): the bar shows ``<unit>/s`` and
            an epoch's record holds it as ``<unit>_per_s``.
    """

    def __init__(
        self, *, quiet: bool, console: Optional[Console] = None, log: Optional[Callable[[str], None]] = None, unit: str = "docs"
    ) -> None:
        self.quiet = quiet
        self.unit = unit
        self.console = console or Console(stderr=True)
        self.log = log
        self._progress: Optional[Progress] = None
        self._task: Any = None

    def message(self, text: str) -> None:
        if self.log is not None:
            self.log(text)
        if not self.quiet:
            self.console.print(text)

    def start_epoch(self, epoch: int, epochs: int, batches: int) -> None:
        if self.quiet:
            return
        self._progress = Progress(
            TextColumn(f"epoch {epoch}/{epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("{task.fields[rate]:,.0f} " + self.unit + "/s"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=batches, loss=float("nan"), rate=0.0)

    def update(self, *, loss: float, rate: float) -> None:
        """One batch done: the running mean loss and the throughput in units per second."""
        if self._progress is not None:
            self._progress.update(self._task, advance=1, loss=loss, rate=rate)

    def end_epoch(self, record: Mapping[str, Any], metric_names: Sequence[str], *, best: bool) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        title = (
            f"epoch {record['epoch']}: loss {record['train_loss']:.4f}, lr {record['lr']:.2e}, "
            f"{record['seconds']:.2f} s, {record[f'{self.unit}_per_s']:,.0f} {self.unit}/s" + ("  [best]" if best else "")
        )
        splits = [split for split in ("vali", "train") if any(f"{split}_{name}" in record for name in metric_names)]
        if self.log is not None:
            values = [f"{split} {name} {_fmt(record.get(f'{split}_{name}'))}" for split in splits for name in metric_names]
            self.log("; ".join([title, *values]))
        if self.quiet:
            return
        table = Table(title=title, title_justify="left")
        table.add_column("split")
        for name in metric_names:
            table.add_column(name, justify="right")
        for split in splits:
            table.add_row(split, *(_fmt(record.get(f"{split}_{name}")) for name in metric_names))
        self.console.print(table)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _fmt(value: Optional[float]) -> str:
    return "-" if value is None or value != value else f"{value:.4f}"

"""The run folder ``<output.dir>/<name>/`` and everything written into it.

Layout::

    config.resolved.json     the validated config with every default filled in
    normalizer.json          the feature normaliser fitted on train
    history.csv / .json      one row per epoch: train loss, lr, seconds, docs/s, validation metrics
    tensorboard/             TensorBoard event files (scalars per epoch)
    curves.png               training loss and validation metrics per epoch
    checkpoints/best.pt      weights of the best epoch (+ full training state)
    checkpoints/last.pt      state after the last finished epoch (what --resume continues from)
    predictions/test.scores  one test score per line, in the test file's row order
    predictions/test.trec    the same scores as a TREC run file
    report.json / report.md  final metrics of the model and the baselines
    train.log                the progress messages and one line per epoch, plain text

Every file but ``train.log`` is written atomically (temporary file + rename); ``train.log`` is
appended to (a resumed run continues it) and flushed after every line. ``report.json`` is
written last, so a run folder that holds it is complete.

A write that fails (full disk, read-only file system, no permission) raises
:class:`OutputError`, an ``OSError`` whose message is one line naming the file, e.g.
``no space left on device writing runs/x/checkpoints/last.pt``; the target file keeps its previous
content.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Dict, Iterator, List, Mapping, Optional, Sequence

from ltrkit.training import _io
from ltrkit.training.checkpoint import save_checkpoint
from ltrkit.training.config import ConfigError

__all__ = [
    "OutputError",
    "RunExistsError",
    "RunFolder",
    "check_run_folder",
    "check_writable",
    "create_run_folder",
    "default_run_name",
    "new_run_path",
    "output_errors",
    "render_report_markdown",
    "report_table",
]

_WRITE_PROBLEMS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}

# what torch.save raises (a RuntimeError, not an OSError) when its zip writer runs out of disk
_TORCH_SHORT_WRITE = ("unexpected pos", "file write failed")


class OutputError(OSError):
    """An output file could not be written; ``str(error)`` is one line naming the file.

    ``errno`` is the underlying error number (``errno.ENOSPC`` for a full disk, also when torch
    reports it as a ``RuntimeError``).
    """

    def __init__(self, message: str, code: Optional[int]) -> None:
        super().__init__(message)
        self.errno = code


class RunExistsError(FileExistsError):
    """The run folder of a new run exists and is not empty.

    ``str(error)`` gives the advice in Python terms (``overwrite=True``); :meth:`advice` phrases it
    for another caller, e.g. the CLI's ``--overwrite``.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        super().__init__(self.advice(overwrite="overwrite=True", resume=f"ltrkit.resume({str(self.path)!r})"))

    def advice(self, *, overwrite: str, resume: str) -> str:
        """The message with ``overwrite`` and ``resume`` naming how the caller replaces or continues the run."""
        return f"run folder {str(self.path)!r} already exists and is not empty; pass {overwrite} to replace it or {resume} to continue it"


@contextlib.contextmanager
def output_errors(path: str | Path) -> Iterator[None]:
    """Re-raise a failed write of ``path`` inside the block as an :class:`OutputError`.

    ``OSError`` (full disk, read-only file system, no permission, ...) and torch's
    ``RuntimeError`` for a short write become one line: ``<problem> writing <path>``.
    """
    try:
        yield
    except OutputError:
        raise
    except OSError as error:
        problem = _WRITE_PROBLEMS.get(error.errno) or (error.strerror or str(error)).lower()
        raise OutputError(f"{problem} writing {path}", error.errno) from error
    except RuntimeError as error:
        if not any(text in str(error) for text in _TORCH_SHORT_WRITE):
            raise
        raise OutputError(f"{_WRITE_PROBLEMS[errno.ENOSPC]} writing {path}", errno.ENOSPC) from error


def check_writable(folder: str | Path) -> None:
    """Create and delete a file in ``folder``, or in its nearest existing parent if it does not exist yet.

    Run before any data is read, so a read-only or forbidden output folder fails at once
    instead of after training; nothing is left behind.

    Raises:
        OutputError: the folder (or the parent it would be created in) cannot be written.
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists():
        existing = existing.parent
    with output_errors(folder):
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(existing))
        handle, probe = tempfile.mkstemp(dir=existing, prefix=".ltrkit-write-check-")
        os.close(handle)
        os.unlink(probe)


def default_run_name() -> str:
    """A UTC timestamp name such as ``20260122-101500`` (sortable, no path separators)."""
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")


def new_run_path(parent: str | Path, name: Optional[str], *, overwrite: bool) -> Path:
    """The folder of a new run, ``parent/name`` (timestamp name when ``None``), checked early.

    Nothing is deleted here: a run that fails before training keeps the old folder.

    Raises:
        RunExistsError: the folder exists and is not empty, and ``overwrite`` is False.
        ConfigError: something that is not a folder is at that path.
        OutputError: ``parent`` cannot be created or written (see :func:`check_writable`).
    """
    path = Path(parent) / (name or default_run_name())
    if path.exists() and not path.is_dir():
        raise ConfigError([f"output: {str(path)!r} exists and is not a folder"], source="output")
    if not overwrite and path.is_dir() and any(path.iterdir()):
        raise RunExistsError(path)
    check_writable(parent)
    return path


def create_run_folder(parent: str | Path, name: Optional[str], *, overwrite: bool) -> "RunFolder":
    """Create ``parent/name`` (timestamp name when ``None``) for a fresh run.

    Raises:
        RunExistsError: the folder exists and is not empty, and ``overwrite`` is False.
        ConfigError, OutputError: as :func:`new_run_path`, or the old folder cannot be removed.
    """
    path = new_run_path(parent, name, overwrite=overwrite)
    with output_errors(path):
        if path.is_dir() and any(path.iterdir()):
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
    return RunFolder(path)


class RunFolder:
    """Paths and writers of one run folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._writer: Any = None
        self._log: Optional[IO[str]] = None

    # paths
    @property
    def config_path(self) -> Path:
        return self.path / "config.resolved.json"

    @property
    def normalizer_path(self) -> Path:
        return self.path / "normalizer.json"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    def checkpoint_path(self, which: str) -> Path:
        """``checkpoints/best.pt`` or ``checkpoints/last.pt``."""
        if which not in ("best", "last"):
            raise ValueError(f"checkpoint must be 'best' or 'last', got {which!r}")
        return self.checkpoint_dir / f"{which}.pt"

    @property
    def predictions_dir(self) -> Path:
        return self.path / "predictions"

    @property
    def log_path(self) -> Path:
        return self.path / "train.log"

    # writers (each raises OutputError when the write fails)
    def write_config(self, config: Mapping[str, Any]) -> None:
        with output_errors(self.config_path):
            _io.write_json(self.config_path, dict(config))

    def write_normalizer(self, normalizer: Any) -> None:
        """``normalizer.json``: ``normalizer.save(path)`` of the fitted normaliser."""
        with output_errors(self.normalizer_path):
            normalizer.save(self.normalizer_path)

    def write_checkpoint(self, which: str, state: Dict[str, Any]) -> None:
        """``checkpoints/<which>.pt`` (see :func:`ltrkit.training.checkpoint.save_checkpoint`)."""
        path = self.checkpoint_path(which)
        with output_errors(path):
            save_checkpoint(path, state)

    def write_text(self, relative: str, text: str) -> None:
        """A text file at ``relative`` inside the run folder (e.g. ``predictions/test.scores``)."""
        path = self.path / relative
        with output_errors(path):
            _io.write_text(path, text)

    def log(self, line: str) -> None:
        """Append ``line`` to ``train.log`` and flush it (the log survives a crash up to that line)."""
        with output_errors(self.log_path):
            if self._log is None:
                self._log = open(self.log_path, "a", encoding="utf-8")
            self._log.write(line.rstrip("\n") + "\n")
            self._log.flush()

    def write_history(self, history: Sequence[Mapping[str, Any]]) -> None:
        """``history.json`` (list of records) and ``history.csv`` (union of keys as columns)."""
        with output_errors(self.path / "history.json"):
            _io.write_json(self.path / "history.json", list(history))
        columns: List[str] = []
        for record in history:
            columns.extend(key for key in record if key not in columns)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for record in history:
            writer.writerow({key: _csv_value(record.get(key)) for key in columns})
        self.write_text("history.csv", buffer.getvalue())

    def log_scalars(self, epoch: int, record: Mapping[str, Any]) -> None:
        """Write the numeric fields of ``record`` to TensorBoard at step ``epoch``."""
        with output_errors(self.path / "tensorboard"):
            if self._writer is None:
                from torch.utils.tensorboard import SummaryWriter

                # purge_step drops events of epochs >= this one left by an interrupted run
                self._writer = SummaryWriter(log_dir=str(self.path / "tensorboard"), purge_step=epoch)
            for key, value in record.items():
                if key != "epoch" and isinstance(value, (int, float)) and value == value:
                    self._writer.add_scalar(key.replace("@", "_at_"), float(value), epoch)
            self._writer.flush()

    def close(self) -> None:
        """Close the TensorBoard writer and ``train.log``; closing after a failed write raises nothing."""
        # every event and log line was flushed when written, so a failing close loses nothing; and
        # close() runs in the trainer's finally block, where a new error would hide the real one
        with contextlib.suppress(OSError):
            if self._writer is not None:
                self._writer.close()
            if self._log is not None:
                self._log.close()
        self._writer = None
        self._log = None

    def write_curves(self, history: Sequence[Mapping[str, Any]], metric_names: Sequence[str]) -> None:
        """``curves.png``: training loss (left) and validation metrics (right) per epoch."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        epochs = [record["epoch"] for record in history]
        figure = Figure(figsize=(10, 4), dpi=100)
        FigureCanvasAgg(figure)
        loss_axes, metric_axes = figure.subplots(1, 2)
        loss_axes.plot(epochs, [record.get("train_loss") for record in history], marker="o")
        loss_axes.set(title="training loss", xlabel="epoch", ylabel="loss")
        plotted = False
        for name in metric_names:
            key = f"vali_{name}"
            if any(key in record for record in history):
                metric_axes.plot(epochs, [record.get(key, float("nan")) for record in history], marker="o", label=name)
                plotted = True
        metric_axes.set(title="validation metrics", xlabel="epoch")
        if plotted:
            metric_axes.legend(fontsize="small")
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        with output_errors(self.path / "curves.png"):
            _io.write_bytes(self.path / "curves.png", buffer.getvalue())

    def write_report(self, report: Mapping[str, Any]) -> None:
        """``report.md`` then ``report.json``: the JSON report last, as the mark of a complete run."""
        self.write_text("report.md", render_report_markdown(report))
        with output_errors(self.path / "report.json"):
            _io.write_json(self.path / "report.json", dict(report))


def render_report_markdown(report: Mapping[str, Any]) -> str:
    """A short Markdown report: run facts and the metric table (model and baselines)."""
    lines = [f"# ltrkit run `{report.get('run_name', '')}`", ""]
    lines.append(
        f"- best epoch: {report.get('best_epoch')} of {report.get('epochs_run')} "
        f"({'stopped early' if report.get('stopped_early') else 'ran to the last epoch'})"
    )
    lines.append(f"- model: `{report.get('model')}`, loss: `{report.get('loss')}`")
    lines.append(f"- training time: {report.get('train_seconds', 0):.1f} s")
    for entry in report.get("baselines", {}).values():
        if "train_seconds" in entry:
            lines.append(f"- baseline {entry.get('label')}: {entry.get('trees')} trees, trained in {entry['train_seconds']:.1f} s")
    lines += [f"- **warning**: {warning}" for warning in report.get("warnings", [])]
    lines.append("")
    rows = report_table(report)
    if rows:
        header = rows[0]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("| " + " | ".join("---" for _ in header) + " |")
        for row in rows[1:]:
            lines.append("| " + " | ".join(row) + " |")
    gate = report.get("expected_check")
    if gate:
        lines += ["", "## Regression gate", ""]
        for item in gate:
            status = "ok" if item["passed"] else "FAILED"
            lines.append(f"- {item['split']} {item['metric']}: {item['value']:.4f} (expected >= {item['expected']:.4f}) {status}")
    return "\n".join(lines) + "\n"


def report_table(report: Mapping[str, Any]) -> List[List[str]]:
    """Rows of the final table: header, then one row per metric (model and baseline columns)."""
    metrics: Dict[str, Dict[str, float]] = report.get("metrics", {})
    baselines: Dict[str, Any] = report.get("baselines", {})
    columns: List[tuple[str, Mapping[str, float]]] = []
    for split in ("vali", "test"):
        if split in metrics:
            columns.append((f"model {split}", metrics[split]))
    for name, entry in baselines.items():
        for split in ("vali", "test"):
            if split in entry.get("metrics", {}):
                columns.append((f"{entry.get('label', name)} {split}", entry["metrics"][split]))
    if not columns:
        return []
    names: List[str] = []
    for _, values in columns:
        names.extend(key for key in values if key not in names)
    rows = [["metric"] + [title for title, _ in columns]]
    for name in names:
        rows.append([name] + [_fmt(values.get(name)) for _, values in columns])
    return rows


def _fmt(value: Optional[float]) -> str:
    return "-" if value is None or value != value else f"{value:.4f}"


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)
    return "" if value is None else value


def check_run_folder(path: str | Path) -> RunFolder:
    """The run folder at ``path``, which must hold a resolved config and a last checkpoint.

    Raises:
        ConfigError: ``path`` is not a resumable/loadable run folder (the message says what is missing).
    """
    folder = RunFolder(path)
    if not folder.path.is_dir():
        raise ConfigError([f"run folder not found: {str(folder.path)!r}"], source="run")
    if not folder.config_path.is_file():
        raise ConfigError([f"{str(folder.path)!r} is not a run folder: config.resolved.json is missing"], source="run")
    return folder

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

Every file is written atomically (temporary file + rename).
"""

from __future__ import annotations

import csv
import io
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ltrkit.training import _io
from ltrkit.training.config import ConfigError

__all__ = [
    "RunFolder",
    "check_run_folder",
    "create_run_folder",
    "default_run_name",
    "render_report_markdown",
    "report_table",
]


def default_run_name() -> str:
    """A UTC timestamp name such as ``20260122-101500`` (sortable, no path separators)."""
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")


def create_run_folder(parent: str | Path, name: Optional[str], *, overwrite: bool) -> "RunFolder":
    """Create ``parent/name`` (timestamp name when ``None``) for a fresh run.

    Raises:
        FileExistsError: the folder exists and is not empty, and ``overwrite`` is False.
    """
    path = Path(parent) / (name or default_run_name())
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"run folder {str(path)!r} already exists and is not empty; pass --overwrite to replace it "
                f"or --resume {str(path)!r} to continue it"
            )
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return RunFolder(path)


class RunFolder:
    """Paths and writers of one run folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._writer: Any = None

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

    # writers
    def write_config(self, config: Mapping[str, Any]) -> None:
        _io.write_json(self.config_path, dict(config))

    def write_history(self, history: Sequence[Mapping[str, Any]]) -> None:
        """``history.json`` (list of records) and ``history.csv`` (union of keys as columns)."""
        _io.write_json(self.path / "history.json", list(history))
        columns: List[str] = []
        for record in history:
            columns.extend(key for key in record if key not in columns)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for record in history:
            writer.writerow({key: _csv_value(record.get(key)) for key in columns})
        _io.write_text(self.path / "history.csv", buffer.getvalue())

    def log_scalars(self, epoch: int, record: Mapping[str, Any]) -> None:
        """Write the numeric fields of ``record`` to TensorBoard at step ``epoch``."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events of epochs >= this one left by an interrupted run
            self._writer = SummaryWriter(log_dir=str(self.path / "tensorboard"), purge_step=epoch)
        for key, value in record.items():
            if key != "epoch" and isinstance(value, (int, float)) and value == value:
                self._writer.add_scalar(key.replace("@", "_at_"), float(value), epoch)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

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
        _io.write_bytes(self.path / "curves.png", buffer.getvalue())

    def write_report(self, report: Mapping[str, Any]) -> None:
        _io.write_json(self.path / "report.json", dict(report))
        _io.write_text(self.path / "report.md", render_report_markdown(report))


def render_report_markdown(report: Mapping[str, Any]) -> str:
    """A short Markdown report: run facts and the metric table (model and baselines)."""
    lines = [f"# ltrkit run `{report.get('run_name', '')}`", ""]
    lines.append(
        f"- best epoch: {report.get('best_epoch')} of {report.get('epochs_run')} "
        f"({'stopped early' if report.get('stopped_early') else 'ran to the last epoch'})"
    )
    lines.append(f"- model: `{report.get('model')}`, loss: `{report.get('loss')}`")
    lines.append(f"- training time: {report.get('train_seconds', 0):.1f} s")
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

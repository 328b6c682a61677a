"""Inputs of the embedding job: labelled items, siamese pairs, triplets, P x K batches.

* **Items** (:func:`load_items`): a CSV or Parquet table, one row per item: an ``id`` column
  (optional; default the row number from 0), a ``label`` column (the class; optional for an
  index that is only searched) and every other column a numeric feature. A feature that is
  empty, NaN or infinite, or a column that is not numeric, is an error naming the file, the line
  (CSV, counting the header as line 1) or row (Parquet, from 0) and the column.
* **Multi-label items** (``labels_column`` of :func:`load_items`): each item's labels, a CSV cell
  of labels joined by ``label_separator`` (default ``|``; an empty cell is an item with no
  label; surrounding spaces are dropped) or a Parquet ``list<string>`` (or the same string
  form). ``ItemSet.labels`` is their ``[N, L]`` multi-hot (:func:`~ltrkit.embeddings.retrieval.multi_hot`)
  over ``label_names``: the given vocabulary (the training items' labels) first, in its order,
  then the labels this file adds, sorted. A vali/test label unseen in training is kept, not
  dropped: relevance is "at least one shared label" between items of the same split, so two test
  items tagged only with a new label are relevant to each other, exactly as they would be had
  training seen it (dropping it would make them irrelevant to everything). An item with no
  label is relevant to nothing (the ``empty`` rule of the retrieval metrics applies).
* **Pairs** (:func:`load_pairs`): columns ``a``, ``b``, ``target`` (1 = similar, 0 or -1 =
  dissimilar) naming item ids. **Triplets** (:func:`load_triplets`): ``anchor``, ``positive``,
  ``negative``. An id that is not in the items table is an error naming file, line and column.
* **P x K batches** (:func:`pk_batches`): ``P`` classes, ``K`` items of each, drawn from
  ``numpy.random.default_rng([seed, epoch])`` (so a batch is a function of ``(seed, epoch)``:
  exact resume needs no sampler state); a class with fewer than ``K`` items is drawn with
  replacement.
* **Text items** (``text_column`` and/or ``tokens_column`` of :func:`load_items`): the text is
  lower-cased and split into words (:func:`tokenize`); a token-id column holds lists of
  non-negative integers (Parquet ``list<int>``, or space-separated in a CSV cell), read as the
  tokens ``#<id>``. Only the id, label and text columns are read. A :class:`Vocabulary` built on
  the training items maps tokens to ids (``0`` padding, ``1`` unknown, then the words by
  descending count); :meth:`Vocabulary.encode` turns the items' tokens into the padded
  ``[N, T]`` int64 ids the ``bag_of_words`` encoder reads.
* :func:`digits_items`: scikit-learn's bundled ``load_digits`` (1,797 8x8 images, 10 classes),
  pixels scaled to ``[0, 1]``, split 60/20/20 by a seeded permutation.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch

__all__ = ["ItemSet", "Vocabulary", "tokenize", "digits_items", "load_items", "load_pairs", "load_triplets", "pk_batches", "check_triplet_classes"]


@dataclass
class ItemSet:
    """Items of one split.

    Attributes:
        ids: ``[N]`` item ids (str).
        inputs: ``[N, F]`` float32 features, or (text items) ``[N, T]`` int64 token ids padded
            with 0 (``[N, 0]`` until :meth:`Vocabulary.encode` fills them in).
        classes: ``[N]`` int64 class codes (positions in ``class_names``), or ``None`` (unlabelled).
        class_names: the class of each code.
        source: where the items came from (for messages).
        tokens: the tokens of each text item (``None``: feature items).
        texts: the raw text of each item, when it has a text column (for the TF-IDF baseline).
        labels: ``[N, L]`` bool multi-hot labels (multi-label items), else ``None``.
        label_names: the label of each of the ``L`` columns.
    """

    ids: np.ndarray
    inputs: torch.Tensor
    classes: Optional[torch.Tensor]
    class_names: List[str]
    source: str
    tokens: Optional[List[List[str]]] = None
    texts: Optional[List[str]] = None
    labels: Optional[torch.Tensor] = None
    label_names: List[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def n_inputs(self) -> int:
        return int(self.inputs.shape[1])

    @property
    def is_text(self) -> bool:
        """Whether the items are token lists (the inputs are ids of a :class:`Vocabulary`)."""
        return self.tokens is not None

    def position_of(self) -> Dict[str, int]:
        """``{id: row}``."""
        return {item: row for row, item in enumerate(self.ids.tolist())}


def _read_table(path: Path, string_columns: Sequence[str] = ()):
    """The table of ``path``; the CSV ``string_columns`` are read as text (``1|2`` and ``1`` alike)."""
    from ltrkit._optional import require

    require("reading CSV/Parquet item, pair and triplet files", "clicks", "pyarrow")
    import pyarrow
    import pyarrow.csv
    import pyarrow.parquet

    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pyarrow.parquet.read_table(path)
        options = pyarrow.csv.ConvertOptions(column_types={name: pyarrow.string() for name in string_columns})
        return pyarrow.csv.read_csv(path, convert_options=options)
    except Exception as error:  # pyarrow's parse errors: one line naming the file
        raise ValueError(f"{path}: cannot read the table: {' '.join(str(error).split())}") from error


def _is_number(value: object) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def _where(path: Path, row: int) -> str:
    """``line N`` of a CSV file (header = line 1), ``row N`` of a Parquet file (from 0)."""
    return f"row {row}" if path.suffix.lower() in (".parquet", ".pq") else f"line {row + 2}"


def load_items(
    path: str | Path,
    *,
    id_column: str = "id",
    label_column: str = "label",
    class_names: Optional[Sequence[str]] = None,
    text_column: Optional[str] = None,
    tokens_column: Optional[str] = None,
    vocabulary: Optional["Vocabulary"] = None,
    labels_column: Optional[str] = None,
    label_separator: str = "|",
    label_names: Optional[Sequence[str]] = None,
    labels_required: bool = True,
) -> ItemSet:
    """Read an items table (see the module docstring).

    Args:
        path: ``.csv`` or ``.parquet`` file.
        id_column, label_column: names of the id and class columns.
        class_names: the class vocabulary to code labels with (default: the sorted labels of this file).
        text_column, tokens_column: read text items from these columns (either or both).
        vocabulary: encode the text items' tokens with it (default: ``inputs`` stays ``[N, 0]``).
        labels_column: read multi-label items' labels from this column (never a feature).
        label_separator: what joins the labels of a string cell.
        label_names: the label vocabulary whose columns come first (the training items'); labels
            outside it are appended, sorted (default: the sorted labels of this file).
        labels_required: whether a missing ``labels_column`` is an error (``False``: the items
            have no labels, as in a file that is only searched).

    Raises:
        ValueError: unreadable file, no feature column, a non-numeric column, a missing or
            non-finite feature, duplicate ids, a label outside ``class_names``, a missing text
            or labels column, a token id that is not a non-negative integer, an empty or
            non-string label (each names the file, line or row, and column).
    """
    path = Path(path)
    table = _read_table(path, () if labels_column is None else (labels_column,))
    columns = table.column_names
    n = table.num_rows
    ids = np.asarray([str(value) for value in table.column(id_column).to_pylist()]) if id_column in columns else np.arange(n).astype(str)
    if id_column in columns:
        unique, first, counts = np.unique(ids, return_index=True, return_counts=True)
        if (counts > 1).any():
            duplicate = int(np.argmax(counts > 1))
            rows = np.flatnonzero(ids == unique[duplicate])
            raise ValueError(f"{path}: {_where(path, int(rows[1]))}, column {id_column}: id {str(unique[duplicate])!r} appears twice (first at {_where(path, int(first[duplicate]))})")
    text = text_column is not None or tokens_column is not None
    if labels_column is not None and labels_column not in columns and labels_required:
        raise _missing_column(path, table, labels_column, "data.labels_column")
    not_features = (id_column, label_column, labels_column)
    feature_columns = [] if text else [name for name in columns if name not in not_features]
    if not text and not feature_columns:
        named = ", ".join(repr(name) for name in not_features if name is not None)
        raise ValueError(f"{path}: no feature column (every column but {named} is a feature)")
    features = np.empty((n, len(feature_columns)), dtype=np.float32)
    for j, name in enumerate(feature_columns):
        column = table.column(name)
        import pyarrow.types as types

        if not (types.is_integer(column.type) or types.is_floating(column.type) or types.is_null(column.type)):
            # only on this error path: find the first value that is not a number, to name its line
            row = next(row for row, value in enumerate(column.to_pylist()) if not _is_number(value))
            raise ValueError(f"{path}: {_where(path, row)}, column {name}: features must be numbers, got {column[row].as_py()!r}")
        values = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            row = int(bad[0])
            more = f" (and {bad.size - 1} more)" if bad.size > 1 else ""
            raise ValueError(f"{path}: {_where(path, row)}, column {name}: the feature is missing, NaN or infinite{more}")
        features[:, j] = values
    classes = None
    names: List[str] = []
    if label_column in columns:
        labels = [None if value is None else str(value) for value in table.column(label_column).to_pylist()]
        if None in labels:
            row = labels.index(None)
            raise ValueError(f"{path}: {_where(path, row)}, column {label_column}: the label is missing")
        names = sorted(set(labels)) if class_names is None else list(class_names)
        code = {name: index for index, name in enumerate(names)}
        unknown = next((row for row, label in enumerate(labels) if label not in code), None)
        if unknown is not None:
            raise ValueError(f"{path}: {_where(path, unknown)}, column {label_column}: label {labels[unknown]!r} is not a class of the training items")
        classes = torch.tensor([code[label] for label in labels], dtype=torch.int64)
    items = ItemSet(ids=ids, inputs=torch.from_numpy(features), classes=classes, class_names=names, source=str(path))
    if labels_column is not None and labels_column in columns:
        from ltrkit.embeddings.retrieval import multi_hot

        label_lists = _label_cells(path, table, labels_column, label_separator)
        seen = {label for labels in label_lists for label in labels}
        known = [] if label_names is None else list(label_names)
        vocabulary_of_labels = known + sorted(seen.difference(known))
        labels, _ = multi_hot(label_lists, vocabulary_of_labels)
        items = replace(items, labels=labels, label_names=vocabulary_of_labels)
    if not text:
        return items
    texts = _text_cells(path, table, text_column) if text_column is not None else None
    tokens = [tokenize(cell) for cell in texts] if texts is not None else [[] for _ in range(n)]
    if tokens_column is not None:
        for row, ids_of_row in enumerate(_token_id_cells(path, table, tokens_column)):
            tokens[row] += [f"#{token}" for token in ids_of_row]
    items = replace(items, inputs=torch.zeros(n, 0, dtype=torch.int64), tokens=tokens, texts=texts)
    return items if vocabulary is None else vocabulary.encode(items)


_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def tokenize(text: str) -> List[str]:
    """Lower-cased words of ``text``: runs of letters and digits, inner apostrophes kept.

    Example:
        >>> tokenize("The mayor's plan: 3 new bridges!")
        ['the', "mayor's", 'plan', '3', 'new', 'bridges']
    """
    return _WORD.findall(text.lower())


def _missing_column(path: Path, table: Any, column: str, what: str) -> ValueError:
    return ValueError(f"{path}: no column {column!r} ({what}); the columns are {table.column_names}")


def _text_cells(path: Path, table: Any, column: str) -> List[str]:
    if column not in table.column_names:
        raise _missing_column(path, table, column, "data.text_column")
    import pyarrow.types as types

    values = table.column(column)
    if not (types.is_string(values.type) or types.is_large_string(values.type) or types.is_null(values.type)):
        raise ValueError(f"{path}: column {column}: the text column must hold strings, got {values.type}")
    # an empty cell is an item without words (CSV reads it as null)
    return ["" if value is None else value for value in values.to_pylist()]


def _label_cells(path: Path, table: Any, column: str, separator: str) -> List[List[str]]:
    """The labels of each row of ``column``: a string cell split at ``separator`` (empty: no
    label), or a list of strings (Parquet)."""
    out: List[List[str]] = []
    for row, cell in enumerate(table.column(column).to_pylist()):
        if cell is None or (isinstance(cell, str) and not cell.strip()):
            out.append([])
            continue
        parts = cell.split(separator) if isinstance(cell, str) else cell if isinstance(cell, list) else None
        if parts is None or not all(isinstance(part, str) for part in parts):
            raise ValueError(f"{path}: {_where(path, row)}, column {column}: labels must be strings joined by {separator!r} or a list of strings, got {cell!r}")
        labels = [part.strip() for part in parts]
        if "" in labels:
            raise ValueError(f"{path}: {_where(path, row)}, column {column}: an empty label in {cell!r} (labels are joined by {separator!r}; an empty cell is no label)")
        out.append(labels)
    return out


def _token_id_cells(path: Path, table: Any, column: str) -> List[List[int]]:
    """The token-id lists of ``column``: Parquet lists of integers, or space-separated integers."""
    if column not in table.column_names:
        raise _missing_column(path, table, column, "data.tokens_column")
    out: List[List[int]] = []
    for row, cell in enumerate(table.column(column).to_pylist()):
        parts = [] if cell is None else cell.split() if isinstance(cell, str) else cell if isinstance(cell, list) else [cell]
        ids_of_row = []
        for part in parts:
            value = part.strip() if isinstance(part, str) else part
            if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.isdigit())) or int(value) < 0:
                raise ValueError(f"{path}: {_where(path, row)}, column {column}: token ids must be non-negative integers, got {part!r}")
            ids_of_row.append(int(value))
        out.append(ids_of_row)
    return out


PADDING, UNKNOWN = "<pad>", "<unk>"


@dataclass
class Vocabulary:
    """Tokens to ids: ``0`` padding, ``1`` unknown, then the kept tokens by descending count
    (ties alphabetically), built on the training items only (:meth:`build`).

    Attributes:
        words: the token of each id (``words[0]`` is ``<pad>``, ``words[1]`` is ``<unk>``).
        max_length: tokens kept per item (the first ones; ``None``: all).
    """

    words: List[str]
    max_length: Optional[int] = None

    def __post_init__(self) -> None:
        self._ids = {word: index for index, word in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    @classmethod
    def build(cls, items: ItemSet, *, min_count: int = 1, max_size: Optional[int] = None, max_length: Optional[int] = None) -> "Vocabulary":
        """The tokens of ``items`` seen at least ``min_count`` times, the ``max_size - 2`` most frequent.

        Raises:
            ValueError: no token is kept (empty items, or ``min_count`` above every count).
        """
        counts = Counter(token for tokens in items.tokens for token in tokens[:max_length])
        kept = sorted((word for word, count in counts.items() if count >= min_count), key=lambda word: (-counts[word], word))
        if max_size is not None:
            kept = kept[: max(max_size - 2, 0)]
        if not kept:
            most = max(counts.values()) if counts else 0
            raise ValueError(f"{items.source}: empty vocabulary: no token occurs at least {min_count} times (the most frequent occurs {most} times)")
        return cls([PADDING, UNKNOWN, *kept], max_length=max_length)

    def ids(self, tokens: Sequence[str]) -> List[int]:
        """The ids of ``tokens`` (unknown ones are ``1``), cut to :attr:`max_length`."""
        return [self._ids.get(token, 1) for token in tokens[: self.max_length]]

    def encode(self, items: ItemSet) -> ItemSet:
        """``items`` with ``inputs`` the ``[N, T]`` int64 ids, padded with 0 (``T`` the longest item, at least 1)."""
        rows = [self.ids(tokens) for tokens in items.tokens]
        ids = torch.zeros(len(rows), max([len(row) for row in rows] + [1]), dtype=torch.int64)
        for index, row in enumerate(rows):
            ids[index, : len(row)] = torch.tensor(row, dtype=torch.int64)
        return replace(items, inputs=ids)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-able ``{"words", "max_length"}`` (:meth:`from_dict` reads it back)."""
        return {"words": list(self.words), "max_length": self.max_length}

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> "Vocabulary":
        return cls(list(state["words"]), max_length=state.get("max_length"))


def _id_columns(path: str | Path, items: ItemSet, columns: Sequence[str]) -> Dict[str, torch.Tensor]:
    path = Path(path)
    table = _read_table(path)
    missing = [name for name in columns if name not in table.column_names]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; the file needs {list(columns)}")
    position = items.position_of()
    out: Dict[str, torch.Tensor] = {}
    for name in columns:
        values = [None if value is None else str(value) for value in table.column(name).to_pylist()]
        rows = np.fromiter((position.get(value, -1) for value in values), dtype=np.int64, count=len(values))
        bad = np.flatnonzero(rows < 0)
        if bad.size:
            row = int(bad[0])
            raise ValueError(f"{path}: {_where(path, row)}, column {name}: unknown id {values[row]!r} (not in {items.source})")
        out[name] = torch.from_numpy(rows)
    return out


def load_pairs(path: str | Path, items: ItemSet) -> Dict[str, torch.Tensor]:
    """Siamese pairs as item rows: ``{"a": [P], "b": [P], "target": [P] (1.0 similar, 0.0 not)}``.

    Raises:
        ValueError: a missing column, an unknown id, a target other than 1, 0 or -1.
    """
    rows = _id_columns(path, items, ["a", "b"])
    table = _read_table(Path(path))
    if "target" not in table.column_names:
        raise ValueError(f"{path}: missing column 'target' (1 = similar, 0 or -1 = dissimilar)")
    target = np.asarray(table.column("target").to_numpy(zero_copy_only=False), dtype=np.float64)
    bad = np.flatnonzero(~np.isin(target, (1.0, 0.0, -1.0)))
    if bad.size:
        raise ValueError(f"{path}: {_where(Path(path), int(bad[0]))}, column target: must be 1 (similar), 0 or -1 (dissimilar), got {target[bad[0]]!r}")
    rows["target"] = torch.from_numpy((target == 1.0).astype(np.float32))
    return rows


def load_triplets(path: str | Path, items: ItemSet) -> Dict[str, torch.Tensor]:
    """Triplets as item rows: ``{"anchor": [T], "positive": [T], "negative": [T]}``.

    Raises:
        ValueError: a missing column or an unknown id.
    """
    return _id_columns(path, items, ["anchor", "positive", "negative"])


def check_triplet_classes(items: ItemSet, field: str) -> None:
    """Triplet mining needs a positive for every anchor: every class must hold at least 2 items.

    Raises:
        ValueError: naming the first class with a single item.
    """
    counts = torch.bincount(items.classes, minlength=len(items.class_names))
    single = torch.nonzero(counts == 1).flatten()
    if single.numel():
        name = items.class_names[int(single[0])]
        row = int(torch.nonzero(items.classes == single[0])[0])
        raise ValueError(
            f"{field}: {items.source}: class {name!r} has 1 item (id {str(items.ids[row])!r}); triplet mining needs at least 2 items "
            f"per class ({single.numel()} class(es) have 1)"
        )


def pk_batches(classes: torch.Tensor, p: int, k: int, *, seed: int, epoch: int) -> List[torch.Tensor]:
    """Class-balanced batches of item rows for one epoch: ``P`` classes x ``K`` items each.

    ``len(classes) // (P * K)`` batches (at least 1). Each batch draws ``min(P, classes)``
    distinct classes uniformly, then ``K`` distinct items of each class (with replacement when
    the class has fewer than ``K``); randomness is ``numpy.random.default_rng([seed, epoch])``.

    Example:
        >>> batches = pk_batches(torch.tensor([0, 0, 1, 1, 2, 2]), 2, 2, seed=0, epoch=1)
        >>> [len(batch) for batch in batches]
        [4]
    """
    rng = np.random.default_rng([seed, epoch])
    codes = classes.numpy()
    present = np.unique(codes)
    members = {int(c): np.flatnonzero(codes == c) for c in present}
    n_batches = max(len(codes) // (p * k), 1)
    batches = []
    for _ in range(n_batches):
        chosen = rng.choice(present, size=min(p, present.size), replace=False)
        rows = [rng.choice(members[int(c)], size=k, replace=members[int(c)].size < k) for c in chosen]
        batches.append(torch.from_numpy(np.concatenate(rows)))
    return batches


def digits_items(seed: int = 0) -> Dict[str, ItemSet]:
    """``{"train", "vali", "test"}`` of scikit-learn's ``load_digits``, pixels / 16, split 60/20/20 by ``seed``."""
    from ltrkit._optional import require

    require("the built-in digits example", "sklearn", "sklearn")
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))
    cut = [int(0.6 * order.size), int(0.8 * order.size)]
    names = [str(c) for c in range(10)]
    splits = {}
    for name, rows in zip(("train", "vali", "test"), np.split(order, cut)):
        rows = np.sort(rows)
        splits[name] = ItemSet(
            ids=rows.astype(str),
            inputs=torch.from_numpy((digits.data[rows] / 16.0).astype(np.float32)),
            classes=torch.from_numpy(digits.target[rows].astype(np.int64)),
            class_names=names,
            source=f"sklearn load_digits ({name})",
        )
    return splits

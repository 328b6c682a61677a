"""Text items: tokenisation, the vocabulary built on the training items, CSV and Parquet text
and token-id columns, and one-line errors naming file, line/row and column."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from ltrkit.embeddings.data import ItemSet, Vocabulary, load_items, tokenize


def _text_items(tokens):
    return ItemSet(ids=None, inputs=torch.zeros(len(tokens), 0, dtype=torch.int64), classes=None, class_names=[], source="items", tokens=tokens)


def test_tokenize_lowercases_and_keeps_inner_apostrophes():
    assert tokenize("It's 3 A.M. -- the_end, NOW!") == ["it's", "3", "a", "m", "the", "end", "now"]
    assert tokenize("") == []


def test_vocabulary_orders_by_count_then_word_and_applies_min_count_and_max_size():
    items = _text_items([["b", "a", "c", "a"], ["c", "a", "d"]])
    vocabulary = Vocabulary.build(items)
    assert vocabulary.words == ["<pad>", "<unk>", "a", "c", "b", "d"]
    assert Vocabulary.build(items, min_count=2).words == ["<pad>", "<unk>", "a", "c"]
    assert Vocabulary.build(items, max_size=3).words == ["<pad>", "<unk>", "a"]
    encoded = Vocabulary.build(items, min_count=2).encode(_text_items([["a", "zzz", "c"], []]))
    # unknown tokens are 1, rows padded with 0 to the longest
    assert encoded.inputs.tolist() == [[2, 1, 3], [0, 0, 0]]
    # max_length cuts every item before counting too: "d" and the second "a" are never read
    cut = Vocabulary.build(items, max_length=2)
    assert cut.words == ["<pad>", "<unk>", "a", "b", "c"] and cut.ids(["a", "c", "b"]) == [2, 4]
    assert Vocabulary.from_dict(vocabulary.to_dict()) == vocabulary


def test_an_empty_vocabulary_is_an_error():
    with pytest.raises(ValueError, match="empty vocabulary: no token occurs at least 5 times"):
        Vocabulary.build(_text_items([["a"], ["b", "a"]]), min_count=5)
    with pytest.raises(ValueError, match="empty vocabulary"):
        Vocabulary.build(_text_items([[], []]))


def test_csv_text_and_token_id_columns(tmp_path: Path):
    path = tmp_path / "items.csv"
    path.write_text('id,label,text,ids,f\nx,s1,"Red car, red!",3 4,1.5\ny,s1,,7,2\n')
    items = load_items(path, text_column="text", tokens_column="ids")
    assert items.is_text and items.tokens == [["red", "car", "red", "#3", "#4"], ["#7"]]
    assert items.texts == ["Red car, red!", ""] and items.classes.tolist() == [0, 0]
    vocabulary = Vocabulary.build(items)
    encoded = load_items(path, text_column="text", vocabulary=vocabulary)
    assert encoded.inputs.tolist() == [[vocabulary.words.index("red"), vocabulary.words.index("car"), vocabulary.words.index("red")], [0, 0, 0]]


def test_parquet_token_id_lists(tmp_path: Path):
    path = tmp_path / "items.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "tokens": pa.array([[5, 5, 2], []], type=pa.list_(pa.int64()))}), path)
    items = load_items(path, tokens_column="tokens")
    assert items.tokens == [["#5", "#5", "#2"], []] and items.classes is None


@pytest.mark.parametrize(
    "suffix, cells, where",
    [(".csv", ["1 2", "3 -4"], "line 3"), (".csv", ["1 2.5", "3"], "line 2"), (".parquet", [[1], [2, -1]], "row 1")],
)
def test_bad_token_ids_name_file_row_and_column(tmp_path: Path, suffix, cells, where):
    path = tmp_path / f"items{suffix}"
    if suffix == ".csv":
        path.write_text("id,tokens\n" + "".join(f"{i},{cell}\n" for i, cell in enumerate(cells)))
    else:
        pq.write_table(pa.table({"id": ["0", "1"], "tokens": pa.array(cells, type=pa.list_(pa.int64()))}), path)
    with pytest.raises(ValueError, match=rf"^{path}: {where}, column tokens: token ids must be non-negative integers, got "):
        load_items(path, tokens_column="tokens")


def test_a_missing_or_non_text_column(tmp_path: Path):
    path = tmp_path / "items.csv"
    path.write_text("id,body,n\na,hello,1\n")
    with pytest.raises(ValueError, match=r"items.csv: no column 'text' \(data.text_column\); the columns are \['id', 'body', 'n'\]"):
        load_items(path, text_column="text")
    with pytest.raises(ValueError, match=r"no column 'ids' \(data.tokens_column\)"):
        load_items(path, tokens_column="ids")
    with pytest.raises(ValueError, match="column n: the text column must hold strings, got int64"):
        load_items(path, text_column="n")

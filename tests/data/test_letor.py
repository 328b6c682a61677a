"""Tests of the LETOR/libsvm reader and writers against scikit-learn and a slow reference."""

from __future__ import annotations

import bz2
import gzip
import lzma
import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_svmlight_file

from ltrkit.data import letor
from ltrkit.data.dataset import RankingDataset
from ltrkit.data.letor import LetorFormatError, read_group_file, read_letor, write_letor, write_libsvm

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
LGB = DATA / "lightgbm-rank"
MQ = DATA / "mq2008" / "Fold1"


def reference_parse(text: str, base: int = 1):
    """Slow line-by-line parser written from the format definition (the test oracle)."""
    rows, labels, qids, docs = [], [], [], []
    for line in text.split("\n"):
        body, _, comment = line.partition("#")
        tokens = body.split()
        if not tokens:
            continue
        labels.append(np.float32(float(tokens[0])))
        rest = tokens[1:]
        if rest and rest[0].startswith("qid:"):
            qids.append(rest[0][4:])
            rest = rest[1:]
        row = {}
        for tok in rest:
            idx, value = tok.split(":")
            row[int(idx) - base] = np.float32(float(value))
        rows.append(row)
        comment = comment.strip() if "#" in line else None
        if comment is not None:
            m = re.match(r"docid\s*=\s*(\S+)", comment)
            comment = m.group(1) if m else comment
        docs.append(comment)
    width = max((max(r) + 1 for r in rows if r), default=0)
    features = np.zeros((len(rows), width), dtype=np.float32)
    for i, row in enumerate(rows):
        for c, v in row.items():
            features[i, c] = v
    return features, np.array(labels, dtype=np.float32), qids, docs


def assert_same(a: RankingDataset, b: RankingDataset) -> None:
    assert a.features.shape == b.features.shape
    np.testing.assert_array_equal(np.asarray(a.features).view(np.uint32), np.asarray(b.features).view(np.uint32))
    np.testing.assert_array_equal(np.asarray(a.labels).view(np.uint32), np.asarray(b.labels).view(np.uint32))
    np.testing.assert_array_equal(a.query_offsets, b.query_offsets)


def offsets_from(qids: list[str]) -> np.ndarray:
    starts = [0] + [i for i in range(1, len(qids)) if qids[i] != qids[i - 1]] + [len(qids)]
    return np.array(starts, dtype=np.int64)


# --- real files --------------------------------------------------------------------------------


def test_letor_and_libsvm_forms_of_lightgbm_data_agree():
    a = read_letor(LGB / "train.txt")
    b = read_letor(LGB / "rank.train")  # finds rank.train.query next to it
    c = read_letor(LGB / "rank.train", query_file=LGB / "rank.train.query")
    assert (a.n_queries, a.n_docs) == (201, 3005)
    assert_same(a, b)
    assert_same(b, c)
    assert a.qids.tolist() == [str(q) for q in range(1, 202)]
    assert b.qids.tolist() == [str(q) for q in range(201)]
    assert a.doc_ids is None and b.doc_ids is None


@pytest.mark.parametrize("path", [LGB / "train.txt", LGB / "test.txt", MQ / "train.txt", MQ / "vali.txt"])
def test_matches_sklearn_on_shared_files(path):
    X, y, q = load_svmlight_file(str(path), query_id=True)
    ds = read_letor(path)
    np.testing.assert_array_equal(ds.features, X.toarray().astype(np.float32))
    np.testing.assert_array_equal(ds.labels, y.astype(np.float32))
    np.testing.assert_array_equal(ds.query_offsets, offsets_from(q.tolist()))
    assert ds.qids.tolist() == [str(v) for v in dict.fromkeys(q.tolist())]


def test_mq2008_doc_ids():
    ds = read_letor(MQ / "train.txt")
    lines = (MQ / "train.txt").read_text().splitlines()
    expected = [re.search(r"#docid = (\S+)", line).group(1) for line in lines]
    assert ds.doc_ids.tolist() == expected
    assert ds.doc_ids[0] == "GX008-86-4444840"
    assert (ds.n_queries, ds.n_docs, ds.n_features) == (471, 9630, 46)


# --- generated files ---------------------------------------------------------------------------


def random_number(rng: np.random.Generator) -> str:
    kind = rng.integers(8)
    x = float(rng.standard_normal() * 10.0 ** rng.integers(-8, 9))
    if kind == 0:
        return str(int(rng.integers(-1000, 1000)))
    if kind == 1:
        return f"{x:.6f}"
    if kind == 2:
        return f"{x:.{rng.integers(1, 12)}e}"
    if kind == 3:
        return repr(x)  # up to 17 significant digits
    if kind == 4:
        return f"{x:.30f}".rstrip("0")  # long mantissas with leading zeros
    if kind == 5:
        return "+" + f"{abs(x):.4E}"
    if kind == 6:
        digits = "".join(str(d) for d in rng.integers(0, 10, size=rng.integers(19, 40)))
        return f"{digits[:3]}.{digits[3:]}e{rng.integers(-30, 20)}"
    return f"{x:.2f}".replace("0.", ".", 1) if abs(x) < 1 else f"{x:.0f}."


def random_file(rng: np.random.Generator, *, messy: bool, base: int = 1) -> str:
    lines = []
    for q in range(int(rng.integers(3, 9))):
        qid = f"q{q}" if messy and q % 2 else str(q * 7 + 1)
        for _ in range(int(rng.integers(1, 12))):
            idx = np.sort(rng.choice(40, size=rng.integers(0, 15), replace=False)) + base
            sep = (lambda: " \t "[: rng.integers(1, 4)] if messy else " ")
            toks = [random_number(rng) if messy else f"{rng.integers(0, 5)}", f"qid:{qid}"]
            toks += [f"{i}:{random_number(rng)}" for i in (rng.permutation(idx) if messy else idx)]
            line = toks[0] + "".join(sep() + t for t in toks[1:])
            if messy and rng.random() < 0.3:
                line += " #docid = d%d inc = 1" % rng.integers(1000) if rng.random() < 0.5 else " # free text  "
            if messy and rng.random() < 0.2:
                line += "\r"
            lines.append(line)
            if messy and rng.random() < 0.1:
                lines.append(rng.choice(["", "   ", "# a comment-only line", "\t"]))
    return "\n".join(lines) + ("\n" if rng.random() < 0.5 else "")


@pytest.mark.parametrize("seed", range(6))
def test_random_files_match_sklearn(tmp_path, seed):
    rng = np.random.default_rng(seed)
    path = tmp_path / "plain.txt"
    path.write_text(random_file(rng, messy=False))
    X, y, q = load_svmlight_file(str(path), query_id=True, zero_based=False)
    ds = read_letor(path, n_features=X.shape[1])
    np.testing.assert_array_equal(ds.features, X.toarray().astype(np.float32))
    np.testing.assert_array_equal(ds.labels, y.astype(np.float32))
    np.testing.assert_array_equal(ds.query_offsets, offsets_from(q.tolist()))


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("n_threads", [1, 2])
def test_messy_random_files_match_reference(tmp_path, monkeypatch, seed, n_threads):
    # Small chunks so chunk boundaries fall inside the data.
    monkeypatch.setattr(letor, "_CHUNK_BYTES", 97)
    rng = np.random.default_rng(100 + seed)
    text = random_file(rng, messy=True)
    path = tmp_path / "messy.txt"
    path.write_bytes(text.encode())
    features, labels, qids, docs = reference_parse(text)
    ds = read_letor(path, n_threads=n_threads, n_features=max(features.shape[1], 1))
    np.testing.assert_array_equal(ds.features[:, : features.shape[1]].view(np.uint32), features.view(np.uint32))
    np.testing.assert_array_equal(ds.labels.view(np.uint32), labels.view(np.uint32))
    np.testing.assert_array_equal(ds.query_offsets, offsets_from(qids))
    assert ds.qids.tolist() == list(dict.fromkeys(qids))
    if all(d is None for d in docs):
        assert ds.doc_ids is None
    else:
        assert ds.doc_ids.tolist() == ["" if d is None else d for d in docs]


def float32_boundaries(rng: np.random.Generator, n: int) -> list[str]:
    """Decimal strings at and next to float32 rounding midpoints, and at the float32 range ends."""
    bits = rng.integers(0x00800000, 0x7F000000, size=n, dtype=np.int64).astype(np.uint32)
    f = bits.view(np.float32).astype(np.float64)
    g = np.nextafter(bits.view(np.float32), np.float32(np.inf)).astype(np.float64)
    mid = (f + g) / 2  # exact in float64
    out = []
    for m in mid.tolist():
        out += [repr(m), repr(float(np.nextafter(m, np.inf))), repr(float(np.nextafter(m, -np.inf))), f"{m:.25e}"]
    out += ["1.17549435e-38", "1.4e-45", "7.0064923216240854e-46", "3.4028235e38", "3.4028234663852886e38", "3.4028235677973362e38",
            "0.000000000000000000000000000000000000000000000000001", "1" + "0" * 30, "-0", "-0.0e5", "4.9e-324"]
    return out


def test_float_parsing_is_exactly_python_float_to_float32(tmp_path, monkeypatch):
    monkeypatch.setattr(letor, "_SLOW_CAPACITY", 3)  # force the capacity-retry path too
    rng = np.random.default_rng(7)
    tokens = float32_boundaries(rng, 300)
    for _ in range(3000):
        tokens.append(random_number(rng))
    mantissa = rng.integers(1, 10**9, size=500)
    tokens += [f"{m}e{e}" for m, e in zip(mantissa.tolist(), rng.integers(-55, 30, size=500).tolist())]
    tokens += [f"0.{'0' * int(z)}{m}" for m, z in zip(mantissa.tolist(), rng.integers(0, 40, size=500).tolist())]
    lines = [f"{tok} qid:1 1:{tok}" for tok in tokens]
    path = tmp_path / "floats.txt"
    path.write_text("\n".join(lines))
    ds = read_letor(path)
    expected = np.array([np.float32(float(t)) for t in tokens], dtype=np.float32)
    np.testing.assert_array_equal(ds.features[:, 0].view(np.uint32), expected.view(np.uint32))
    np.testing.assert_array_equal(ds.labels.view(np.uint32), expected.view(np.uint32))


# --- index base and n_features -----------------------------------------------------------------


def test_index_base_detection_and_option(tmp_path):
    one = tmp_path / "one.txt"
    zero = tmp_path / "zero.txt"
    one.write_text("1 qid:1 1:0.5 3:2\n0 qid:1 2:1\n")
    zero.write_text("1 qid:1 0:0.5 2:2\n0 qid:1 1:1\n")
    a, b = read_letor(one), read_letor(zero)
    assert_same(a, b)
    assert a.features.tolist() == [[0.5, 0, 2], [0, 1, 0]]
    assert read_letor(zero, index_base=0).features.shape == (2, 3)
    # A 1-based file read as 0-based has an empty first column.
    assert read_letor(one, index_base=0).features.tolist() == [[0, 0.5, 0, 2], [0, 0, 1, 0]]
    with pytest.raises(LetorFormatError, match=r"zero\.txt, line 1: feature index 0 in '0:0.5'.*index_base=0"):
        read_letor(zero, index_base=1)


def test_n_features_widens_and_limits(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("1 qid:1 1:0.5 3:2\n0 qid:1 5:1\n")
    assert read_letor(path, n_features=8).features.shape == (2, 8)
    with pytest.raises(LetorFormatError, match=r"f\.txt, line 2: feature index 5 in '5:1' is beyond n_features=4") as info:
        read_letor(path, n_features=4)
    assert (info.value.line, info.value.field) == (2, "feature 5")


@pytest.mark.parametrize(
    "option, message",
    [
        (dict(index_base=2), r"index_base must be 0, 1 or 'auto', got 2"),
        (dict(index_base=True), r"index_base must be 0, 1 or 'auto', got True"),
        (dict(n_features=-1), r"n_features must be a non-negative int or None, got -1"),
        (dict(n_threads=0), r"n_threads must be a positive int or None, got 0"),
    ],
)
def test_bad_options(tmp_path, option, message):
    path = tmp_path / "f.txt"
    path.write_text("1 qid:1 1:0.5\n")
    with pytest.raises(ValueError, match=message):
        read_letor(path, **option)


# --- malformed input ---------------------------------------------------------------------------

GOOD = "2 qid:1 1:0.5 2:1\n1 qid:1 1:0.25\n"
BAD_LINES = [
    ("0 1:0.5 2:1", r"line 3: line has no 'qid:' token, but line 1 has one", "qid"),
    ("abc qid:1 1:0.5", r"line 3: label 'abc' is not a number", "label"),
    ("nan qid:1 1:0.5", r"line 3: label 'nan' is a missing value \(NULL/NaN\)", "label"),
    ("NULL qid:1 1:0.5", r"line 3: label 'NULL' is a missing value \(NULL/NaN\)", "label"),
    ("inf qid:1 1:0.5", r"line 3: label 'inf' is not a finite float32", "label"),
    ("1e39 qid:1 1:0.5", r"line 3: label '1e39' is not a finite float32", "label"),
    ("1 qid:1 1:0.5x", r"line 3: value of feature token '1:0.5x' is not a number", "feature 1"),
    ("1 qid:1 1:--1", r"line 3: value of feature token '1:--1' is not a number", "feature 1"),
    ("1 qid:1 1:1e", r"line 3: value of feature token '1:1e' is not a number", "feature 1"),
    ("1 qid:1 1:NaN", r"line 3: feature token '1:NaN' has a missing value.*missing='zero' or 'min' \(CLI: --missing\)", "feature 1"),
    ("1 qid:1 1:NULL", r"line 3: feature token '1:NULL' has a missing value", "feature 1"),
    ("1 qid:1 1:nulls", r"line 3: value of feature token '1:nulls' is not a number", "feature 1"),
    ("1 qid:1 2:-inf", r"line 3: value of feature token '2:-inf' is not a finite float32", "feature 2"),
    ("1 qid:1 2:1e300", r"line 3: value of feature token '2:1e300' is not a finite float32", "feature 2"),
    ("1 qid:1 3:", r"line 3: feature token '3:' has a missing value", "feature 3"),
    ("1 qid:1 0:1", r"line 3: feature index 0 in '0:1', but indices are 1-based", "feature 0"),
    ("1 qid:1 2:1 2:3", r"line 3: feature index 2 appears twice in this line", "feature 2"),
    ("1 qid:1 foo", r"line 3: token 'foo' is not of the form index:value", "token"),
    ("1 qid:1 x:1", r"line 3: token 'x:1' is not of the form index:value", "token"),
    ("1 qid:1 -1:1", r"line 3: token '-1:1' is not of the form index:value", "token"),
    ("1 qid:1 :1", r"line 3: token ':1' is not of the form index:value", "token"),
    ("1 qid: 1:1", r"line 3: 'qid:' has no value", "qid"),
    ("1 qid:1 99999999999999:1", r"line 3: feature index 99999999999999 in '99999999999999:1' is above MAX_FEATURE_INDEX=1000000", "feature 99999999999999"),
    ("qid:1 1:0.5", r"line 3: the label is missing \(the line starts with 'qid:1'\)", "label"),
]


@pytest.mark.parametrize("bad, message, field", BAD_LINES)
def test_malformed_line_names_file_line_and_field(tmp_path, bad, message, field):
    path = tmp_path / "broken.txt"
    path.write_text(GOOD + bad + "\n" + GOOD)
    with pytest.raises(LetorFormatError, match=r"broken\.txt, " + message) as info:
        read_letor(path, index_base=1)
    assert info.value.path == str(path) and info.value.line == 3 and info.value.field == field
    assert bad in str(info.value)  # the line itself is quoted


def test_error_line_number_in_a_later_chunk(tmp_path, monkeypatch):
    monkeypatch.setattr(letor, "_CHUNK_BYTES", 64)
    path = tmp_path / "long.txt"
    path.write_text("# header\n\n" + GOOD * 50 + "1 qid:1 1:zz\n" + GOOD)
    with pytest.raises(LetorFormatError, match=r"long\.txt, line 103: value of feature token '1:zz'"):
        read_letor(path, n_threads=2)


def test_unexpected_qid_after_lines_without(tmp_path):
    path = tmp_path / "mixed.txt"
    path.write_text("1 1:0.5\n0 1:1\n1 qid:3 1:2\n")
    with pytest.raises(LetorFormatError, match=r"mixed\.txt, line 3: line has a 'qid:' token, but line 1 has none"):
        read_letor(path)


def test_non_contiguous_query_and_regroup(tmp_path):
    text = "1 qid:a 1:1\n2 qid:b 1:2\n3 qid:a 1:3\n4 qid:c 1:4\n5 qid:b 1:5\n"
    path = tmp_path / "split.txt"
    path.write_text(text)
    with pytest.raises(LetorFormatError, match=r"split\.txt, line 3: rows of qid 'a' are not contiguous.*line 1.*regroup=True.*--regroup"):
        read_letor(path)
    ds = read_letor(path, regroup=True)
    assert ds.qids.tolist() == ["a", "b", "c"]
    assert ds.labels.tolist() == [1, 3, 2, 5, 4]
    assert ds.features[:, 0].tolist() == [1, 3, 2, 5, 4]
    assert ds.query_offsets.tolist() == [0, 2, 4, 5]


def test_regroup_keeps_doc_ids_with_rows(tmp_path):
    path = tmp_path / "split.txt"
    path.write_text("1 qid:a 1:1 # x1\n2 qid:b 1:2\n3 qid:a 1:3 #docid = x3\n")
    ds = read_letor(path, regroup=True)
    assert ds.doc_ids.tolist() == ["x1", "x3", ""]


@pytest.mark.parametrize("text", ["", "\n\n  \n", "# only a comment\n#another\n"])
def test_file_without_documents(tmp_path, text):
    path = tmp_path / "empty.txt"
    path.write_text(text)
    with pytest.raises(LetorFormatError, match=r"empty\.txt: contains no documents") as info:
        read_letor(path)
    assert info.value.line is None


@pytest.mark.parametrize("suffix, opener", [(".gz", gzip.open), (".bz2", bz2.open), (".xz", lzma.open)])
def test_truncated_or_corrupt_compressed_file(tmp_path, suffix, opener):
    path = tmp_path / f"data.txt{suffix}"
    with opener(path, "wt") as f:
        f.write(GOOD * 2000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(LetorFormatError, match=rf"data\.txt\{suffix}: cannot decompress \{suffix} data .*truncated or corrupt") as info:
        read_letor(path)
    assert info.value.field == "compression" and info.value.line is None
    path.write_bytes(data[:20] + bytes(200) + data[220:])
    with pytest.raises(LetorFormatError, match=r"truncated or corrupt"):
        read_letor(path)


def test_libsvm_without_group_file(tmp_path):
    path = tmp_path / "nogroup.txt"
    path.write_text("1 1:0.5\n0 2:1\n")
    with pytest.raises(LetorFormatError, match=r"nogroup\.txt, line 1: lines have no 'qid:' token and no group file"):
        read_letor(path)


def test_qid_and_query_file_together(tmp_path):
    path = tmp_path / "both.txt"
    path.write_text(GOOD)
    group = tmp_path / "g.query"
    group.write_text("2\n")
    with pytest.raises(LetorFormatError, match=r"both\.txt, line 1: lines have 'qid:' tokens and query_file="):
        read_letor(path, query_file=group)
    with pytest.raises(FileNotFoundError, match=r"query_file .*missing\.query"):
        read_letor(path, query_file=tmp_path / "missing.query")


@pytest.mark.parametrize(
    "group, message",
    [
        ("2\n2\n", r"g\.query: 2 group sizes sum to 4, but the data file of .*data\.txt has 3 documents"),
        ("2\nx\n", r"g\.query, line 2: group size 'x' is not a positive integer"),
        ("1\n\n1.5\n", r"g\.query, line 3: group size '1.5' is not a positive integer"),
        ("3\n0\n", r"g\.query, line 2: group size '0' is not a positive integer"),
        ("\n", r"g\.query: group file has no sizes"),
    ],
)
def test_bad_group_file(tmp_path, group, message):
    path = tmp_path / "data.txt"
    path.write_text("1 1:0.5\n0 2:1\n2 1:3\n")
    (tmp_path / "g.query").write_text(group)
    with pytest.raises(LetorFormatError, match=message):
        read_letor(path, query_file=tmp_path / "g.query")


def test_group_file_autodetect_group_suffix_and_blank_lines(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("1 1:0.5\n0 2:1\n2 1:3\n")
    (tmp_path / "data.txt.group").write_text("1\n2\n\n")
    ds = read_letor(path)
    assert ds.query_offsets.tolist() == [0, 1, 3] and ds.qids.tolist() == ["0", "1"]
    assert read_group_file(tmp_path / "data.txt.group").tolist() == [1, 2]


# --- writers and round trips -------------------------------------------------------------------


def random_dataset(rng: np.random.Generator, *, doc_ids: bool) -> RankingDataset:
    lengths = rng.integers(1, 9, size=12)
    n = int(lengths.sum())
    bits = rng.integers(0, 2**32, size=(n, 9), dtype=np.uint64).astype(np.uint32)
    features = bits.view(np.float32).copy()
    features[~np.isfinite(features)] = 1.5
    features[rng.random(features.shape) < 0.4] = 0.0
    features[0, 0] = -0.0
    features[1, :3] = [np.float32(1e-45), np.float32(3.4028235e38), np.float32(0.1)]
    features[2, :3] = [16777216.0, -16777215.0, 123.0]
    features[:, -1] = 0.0  # an all-zero last column: n_features must come back from the option
    labels = rng.integers(0, 5, size=n).astype(np.float32)
    labels[0] = 0.5
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ids = None
    if doc_ids:
        ids = np.array([f"doc-{i}" if i % 3 else ("" if i % 2 else f"free text {i}") for i in range(n)])
    return RankingDataset(features, labels, offsets, np.array([f"q{i}" for i in range(12)]), ids, "random")


@pytest.mark.parametrize("suffix", ["", ".gz", ".bz2", ".xz"])
@pytest.mark.parametrize("index_base", [0, 1])
def test_letor_round_trip_is_exact(tmp_path, suffix, index_base):
    ds = random_dataset(np.random.default_rng(index_base), doc_ids=True)
    path = tmp_path / f"out.txt{suffix}"
    write_letor(ds, path, index_base=index_base)
    back = read_letor(path, index_base=index_base, n_features=ds.n_features)
    assert_same(back, ds)
    assert back.qids.tolist() == ds.qids.tolist()
    assert back.doc_ids.tolist() == ds.doc_ids.tolist()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind


def test_letor_text_form(tmp_path):
    ds = RankingDataset(
        np.array([[0.1, 0, 3], [0, -2.5e-7, 0]], dtype=np.float32), np.array([2, 0.5], dtype=np.float32),
        np.array([0, 2]), np.array(["7"]), np.array(["GX1", "a b"]),
    )
    path = tmp_path / "t.txt"
    write_letor(ds, path)
    assert path.read_text() == "2 qid:7 1:0.1 3:3 # docid = GX1\n0.5 qid:7 2:-2.5e-07 # a b\n"
    write_letor(ds, path, write_doc_ids=False, index_base=0)
    assert path.read_text() == "2 qid:7 0:0.1 2:3\n0.5 qid:7 1:-2.5e-07\n"


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_libsvm_round_trip_is_exact(tmp_path, suffix):
    ds = random_dataset(np.random.default_rng(3), doc_ids=False)
    path = tmp_path / f"out.svm{suffix}"
    write_libsvm(ds, path)
    assert (tmp_path / f"out.svm{suffix}.query").read_text().split() == [str(n) for n in ds.list_lengths]
    back = read_letor(path, n_features=ds.n_features)
    assert_same(back, ds)
    assert "qid:" not in (gzip.open(path, "rt") if suffix else open(path)).read()
    group = tmp_path / "sizes.txt"
    write_libsvm(ds, path, group_path=group, index_base=0)
    assert_same(read_letor(path, query_file=group, index_base=0, n_features=ds.n_features), ds)


def test_writers_reject_unwritable_data(tmp_path):
    ds = random_dataset(np.random.default_rng(0), doc_ids=False)
    bad = RankingDataset(ds.features.copy(), ds.labels, ds.query_offsets, ds.qids)
    bad.features[5, 2] = np.nan
    with pytest.raises(ValueError, match=r"features of row 5 contain NaN/inf"):
        write_letor(bad, tmp_path / "x.txt")
    assert list(tmp_path.iterdir()) == []
    spaced = RankingDataset(ds.features, ds.labels, ds.query_offsets, np.array(["a b"] + ds.qids[1:].tolist()))
    with pytest.raises(ValueError, match=r"qid 'a b' cannot be written"):
        write_letor(spaced, tmp_path / "x.txt")
    with pytest.raises(ValueError, match=r"index_base must be 0 or 1, got 2"):
        write_libsvm(ds, tmp_path / "x.txt", index_base=2)
    empty_query = RankingDataset(ds.features[:2], ds.labels[:2], np.array([0, 0, 2]), np.array(["a", "b"]))
    with pytest.raises(ValueError, match=r"query 0 has no documents; group files cannot hold size 0"):
        write_libsvm(empty_query, tmp_path / "x.txt")


def test_reading_without_preadv_gives_the_same_arrays(monkeypatch):
    expected = read_letor(MQ / "train.txt")
    monkeypatch.setattr(letor, "_CHUNK_BYTES", 1 << 16)
    monkeypatch.delattr(letor.os, "preadv")
    got = read_letor(MQ / "train.txt", n_threads=2)
    assert_same(got, expected)
    assert got.doc_ids.tolist() == expected.doc_ids.tolist() and got.qids.tolist() == expected.qids.tolist()


def test_compressed_file_read_in_pieces_and_chunks(tmp_path, monkeypatch):
    path = tmp_path / "train.txt.gz"
    path.write_bytes(gzip.compress((MQ / "train.txt").read_bytes()))
    monkeypatch.setattr(letor, "_CHUNK_BYTES", 1000)
    got = read_letor(path, n_threads=2)
    expected = read_letor(MQ / "train.txt")
    assert_same(got, expected)
    assert got.doc_ids.tolist() == expected.doc_ids.tolist()


def test_utf8_byte_order_mark_is_skipped(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    plain = tmp_path / "plain.txt"
    plain.write_text(GOOD)
    assert_same(read_letor(path), read_letor(plain))

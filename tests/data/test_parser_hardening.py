"""Hardening of the LETOR parser: files changing under it, bounded kernels, huge indices, qid
identity, missing values, long quoted input, and qids kept through libsvm."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from ltrkit.data import _letor_kernels as K
from ltrkit.data import letor
from ltrkit.data.letor import MAX_FEATURE_INDEX, LetorFormatError, find_qid_file, read_letor, write_letor, write_libsvm

MQ = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mq2008" / "Fold1"
CHANGED = r"changed while reading, try again"

# Two versions of one file with the same length: v2 has more, fewer or other rows than v1.
V1 = "1 qid:1 1:0.5 2:0.25\n" * 20  # 21 bytes a line, 20 rows
REWRITES = {
    "more rows": "2 qid:9 1:1\n" * 35,  # 12 bytes a line: a fill trusting the scan overruns
    "fewer rows": "3 qid:4 1:0.125 2:0.5 # doc\n" * 15,  # 28 bytes a line
    "same rows, other values": "0 qid:1 1:0.7 2:0.75\n" * 20,
}


def rewrite_in_place(path: Path, text: str, *, keep_mtime: bool) -> None:
    """Overwrite ``path`` in place (same inode); optionally restore its mtime, so that only the
    bytes tell the versions apart."""
    before = path.stat()
    with open(path, "r+b") as f:
        f.write(text.encode())
    if keep_mtime:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def rewrite_after(monkeypatch, kernel: str, action) -> None:
    """Run ``action`` once, right after the first call of kernel ``K.<kernel>``."""
    original = getattr(K, kernel)
    done = []

    def wrapped(*args):
        result = original(*args)
        if not done:
            done.append(True)
            action()
        return result

    monkeypatch.setattr(K, kernel, wrapped)


# --- 1. a file changing while it is read ------------------------------------------------------


@pytest.mark.parametrize("keep_mtime", [True, False])
@pytest.mark.parametrize("n_threads, chunk_bytes", [(1, 32 << 20), (1, 64), (2, 64)])
@pytest.mark.parametrize("v2", list(REWRITES), ids=list(REWRITES))
def test_file_rewritten_between_scan_and_fill(tmp_path, monkeypatch, v2, n_threads, chunk_bytes, keep_mtime):
    text = REWRITES[v2]
    assert len(text) == len(V1)
    (tmp_path / "v1.txt").write_text(V1)
    expected = read_letor(tmp_path / "v1.txt")
    monkeypatch.setattr(letor, "_CHUNK_BYTES", chunk_bytes)
    path = tmp_path / "moving.txt"
    path.write_text(V1)
    rewrite_after(monkeypatch, "scan_chunk", lambda: rewrite_in_place(path, text, keep_mtime=keep_mtime))
    if len(V1) <= chunk_bytes and keep_mtime:
        # A small file is read once: both passes parse the first version, a correct parse of it.
        got = read_letor(path, n_threads=n_threads)
        np.testing.assert_array_equal(got.features, expected.features)
        np.testing.assert_array_equal(got.labels, expected.labels)
        assert got.qids.tolist() == expected.qids.tolist() and got.n_docs == 20
    else:
        with pytest.raises(LetorFormatError, match=CHANGED) as info:
            read_letor(path, n_threads=n_threads)
        assert info.value.path == str(path)
    # Once the file is quiet again it reads as its new version.
    monkeypatch.undo()
    assert read_letor(path).n_docs == text.count("\n")


def test_file_modified_after_the_last_read(tmp_path, monkeypatch):
    path = tmp_path / "late.txt"
    path.write_text(V1)
    rewrite_after(monkeypatch, "fill_chunk", lambda: rewrite_in_place(path, REWRITES["more rows"], keep_mtime=False))
    with pytest.raises(LetorFormatError, match=CHANGED):
        read_letor(path, n_threads=1)


def test_file_replaced_while_read(tmp_path, monkeypatch):
    path = tmp_path / "replaced.txt"
    path.write_text(V1)
    other = tmp_path / "other.txt"
    other.write_text(V1)
    rewrite_after(monkeypatch, "fill_chunk", lambda: os.replace(other, path))  # same bytes, another inode
    with pytest.raises(LetorFormatError, match=CHANGED):
        read_letor(path)


def test_compressed_file_rewritten_after_decompression(tmp_path, monkeypatch):
    path = tmp_path / "data.txt.gz"
    path.write_bytes(gzip.compress(V1.encode()))
    rewrite_after(monkeypatch, "scan_chunk", lambda: path.write_bytes(gzip.compress(REWRITES["more rows"].encode())))
    with pytest.raises(LetorFormatError, match=CHANGED):
        read_letor(path)


@pytest.mark.parametrize("chunk_bytes, keep_mtime", [(32 << 20, False), (64, True), (64, False)])
def test_format_error_caused_by_a_rewrite_reports_the_change(tmp_path, monkeypatch, chunk_bytes, keep_mtime):
    # Chunk 0 is scanned as V1, later chunks as the new version, whose tokens are bad (line ends
    # stay where they were): their format error is not the file's, so the change is reported.
    monkeypatch.setattr(letor, "_CHUNK_BYTES", chunk_bytes)
    path = tmp_path / "moving.txt"
    path.write_text(V1)
    garbage = V1.replace("2:", "2;")
    rewrite_after(monkeypatch, "scan_chunk", lambda: rewrite_in_place(path, garbage, keep_mtime=keep_mtime))
    with pytest.raises(LetorFormatError, match=CHANGED):
        read_letor(path, n_threads=1)


def test_file_rewritten_during_the_single_read_of_a_small_file(tmp_path, monkeypatch):
    # pread may return fewer bytes than asked: the first half comes from V1, the rest from the
    # new version, whose bad tokens then fail the scan. That error is not the file's.
    path = tmp_path / "torn.txt"
    path.write_text(V1)
    original = letor._Source._read_into
    calls = []

    def short_then_rewrite(self, view, offset):
        calls.append(offset)
        if len(calls) == 1:
            got = original(self, view[: len(view) // 2], offset)
            rewrite_in_place(path, V1.replace("2:", "2;"), keep_mtime=False)
            return got
        return original(self, view, offset)

    monkeypatch.setattr(letor._Source, "_read_into", short_then_rewrite)
    with pytest.raises(LetorFormatError, match=CHANGED):
        read_letor(path)
    assert len(calls) == 2


def test_rewrite_that_moves_line_ends_under_the_chunk_borders(tmp_path, monkeypatch):
    # The chunks are cut at V1's line ends; in the new version a chunk would start inside a line.
    monkeypatch.setattr(letor, "_CHUNK_BYTES", 64)
    path = tmp_path / "moving.txt"
    path.write_text(V1)
    original = letor._Source.chunks

    def chunks_then_rewrite(self, n_threads):
        bounds = original(self, n_threads)
        rewrite_in_place(path, REWRITES["more rows"], keep_mtime=True)
        return bounds

    monkeypatch.setattr(letor._Source, "chunks", chunks_then_rewrite)
    with pytest.raises(LetorFormatError, match=CHANGED):
        read_letor(path, n_threads=2)


def fill_args(text: bytes, n_rows: int, n_features: int):
    """Arguments of ``K.fill_chunk`` for ``text`` sized for ``n_rows`` rows."""
    return dict(
        buf=np.frombuffer(text, dtype=np.uint8),
        features=np.zeros((n_rows, n_features), dtype=np.float32),
        labels=np.zeros(n_rows, dtype=np.float32),
        qid_span=np.zeros((n_rows, 2), dtype=np.int64),
        doc_span=np.zeros((n_rows, 2), dtype=np.int64),
        seen=np.zeros(n_features, dtype=np.int64),
        slow=np.zeros((4, 3), dtype=np.int64),
    )


def call_fill(a: dict, row0: int = 0, base: int = 1, end=None):
    end = len(a["buf"]) if end is None else end
    return K.fill_chunk(
        a["buf"], 0, end, row0, base, K.MISSING_ERROR, a["features"], a["labels"], a["qid_span"], a["doc_span"],
        a["seen"], a["slow"], K._POW10, K._EXACT_POW10,
    )


TEXT = b"1 qid:1 1:0.5 2:1 # d1\n2 qid:1 2:3\n0 qid:2 1:4 # d3\n"


@pytest.mark.parametrize("small", ["features", "labels", "qid_span", "doc_span", "seen", "row0"])
def test_fill_kernel_never_writes_past_its_arrays(small):
    # Each array is a view of the first row(s) of a larger block filled with a sentinel; a write
    # out of bounds would land in the block's next rows.
    a = fill_args(TEXT, 3, 2)
    too_small = {"features": 1, "labels": 2, "qid_span": 1, "doc_span": 2, "seen": 1}
    blocks = {}
    for name in too_small:
        size = too_small[name] if name == small else a[name].shape[0]
        blocks[name] = np.full((size + 4,) + a[name].shape[1:], -7, dtype=a[name].dtype)
        blocks[name][:size] = 0
        a[name] = blocks[name][:size]
    out = call_fill(a, row0=1 if small == "row0" else 0)  # row0=1: rows 1..3 of a 3-row matrix
    assert out[K.F_ERR] == K.OUT_OF_BOUNDS
    for name, block in blocks.items():
        assert (block[a[name].shape[0] :] == -7).all(), name


def test_fill_kernel_refuses_a_negative_first_row():
    a = fill_args(TEXT, 3, 2)
    assert call_fill(a, row0=-1)[K.F_ERR] == K.OUT_OF_BOUNDS
    assert (a["labels"] == 0).all()


def test_fill_kernel_with_room_fills_and_an_end_past_the_buffer_is_clamped():
    a = fill_args(TEXT, 3, 2)
    out = call_fill(a, end=len(TEXT) + 1000)
    assert out[K.F_ERR] == K.OK and out[K.F_ROWS] == 3
    assert a["features"].tolist() == [[0.5, 1], [0, 3], [4, 0]] and a["labels"].tolist() == [1, 2, 0]


def test_fill_kernel_reports_a_token_the_scan_never_saw():
    # Pass 2 re-checks what pass 1 checked: a token without ':' is an error, not a read past it.
    a = fill_args(b"1 qid:1 12345", 1, 2)
    out = call_fill(a)
    assert out[K.F_ERR] == K.BAD_TOKEN


@pytest.mark.parametrize("index", [2**64 + 1, 2**63 + 1, 10**30 + 1])
def test_fill_kernel_index_does_not_wrap_around_int64(index):
    # 2**64 + 1 wraps to 1 in int64 arithmetic: it must be refused, not written to column 0.
    a = fill_args(f"1 qid:1 {index}:5\n".encode(), 1, 3)
    out = call_fill(a)
    assert out[K.F_ERR] == K.INDEX_TOO_LARGE
    assert (a["features"] == 0).all()


def test_gather_spans_stays_inside_its_output_and_buffer():
    buf = np.frombuffer(b"abcdef", dtype=np.uint8)
    spans = np.array([[0, 6], [4, 100], [-1, -1]], dtype=np.int64)
    out = K.gather_spans(buf, spans, 3)
    assert out.shape == (3, 3)
    assert [bytes(r).rstrip(b"\0") for r in out] == [b"abc", b"ef", b""]


def test_checksum_tells_any_single_byte_change():
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, size=1003, dtype=np.uint8)
    base = letor._checksum(data)
    for pos in rng.choice(len(data), size=60, replace=False).tolist() + [0, len(data) - 1]:
        changed = data.copy()
        changed[pos] ^= np.uint8(1 << int(rng.integers(8)))
        assert letor._checksum(changed) != base, pos
    assert letor._checksum(data.copy()) == base


# --- 2. huge feature indices ------------------------------------------------------------------


@pytest.mark.parametrize("index", [99999999999, 2**31 + 1, MAX_FEATURE_INDEX + 1, 10**40])
def test_huge_feature_index_is_refused_with_line_and_field(tmp_path, index):
    path = tmp_path / "huge.txt"
    path.write_text(f"1 qid:1 1:0.5\n0 qid:1 {index}:1\n")
    expected = rf"huge\.txt, line 2: feature index {index} in '{index}:1' is above MAX_FEATURE_INDEX={MAX_FEATURE_INDEX}"
    with pytest.raises(LetorFormatError, match=expected + ".*pass n_features=") as info:
        read_letor(path)
    assert (info.value.line, info.value.field) == (2, f"feature {index}")


def test_index_at_the_limit_is_read(tmp_path):
    path = tmp_path / "wide.txt"
    path.write_text(f"1 qid:1 {MAX_FEATURE_INDEX}:2 00000000000000000000000000003:1\n")
    ds = read_letor(path)
    assert ds.features.shape == (1, MAX_FEATURE_INDEX)
    assert ds.features[0, MAX_FEATURE_INDEX - 1] == 2 and ds.features[0, 2] == 1  # leading zeros: index 3


def test_n_features_sets_the_limit(tmp_path):
    path = tmp_path / "wide.txt"
    path.write_text(f"1 qid:1 {MAX_FEATURE_INDEX + 5}:2\n")
    ds = read_letor(path, n_features=MAX_FEATURE_INDEX + 5)
    assert ds.features[0, -1] == 2
    path.write_text("1 qid:1 99999999999:2\n")
    largest = {"auto": "", 1: r" \(largest allowed index: 7\)", 0: r" \(largest allowed index: 6\)"}
    for index_base in largest:
        expected = rf"line 1: feature index 99999999999 in '99999999999:2' is beyond n_features=7{largest[index_base]}\n"
        with pytest.raises(LetorFormatError, match=expected) as info:
            read_letor(path, n_features=7, index_base=index_base)
        assert info.value.field == "feature 99999999999"


# --- 3. qids compare as bytes -----------------------------------------------------------------


def test_latin1_qids_are_refused_not_merged(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"1 qid:caf\xe9 1:1\n0 qid:caf\xe8 1:2\n")
    with pytest.raises(LetorFormatError, match=r"latin1\.txt, line 1: qid b'caf\\xe9' is not valid UTF-8") as info:
        read_letor(path)
    assert info.value.field == "qid"


@pytest.mark.parametrize("chunk_bytes", [32 << 20, 16])
def test_qid_with_nul_is_refused_not_merged(tmp_path, monkeypatch, chunk_bytes):
    monkeypatch.setattr(letor, "_CHUNK_BYTES", chunk_bytes)
    path = tmp_path / "nul.txt"
    path.write_bytes(b"1 qid:7 1:1\n0 qid:7\x00 1:2\n")
    with pytest.raises(LetorFormatError, match=r"nul\.txt, line 2: qid b'7\\x00' holds a NUL byte") as info:
        read_letor(path, n_threads=2)
    assert info.value.field == "qid"


def test_utf8_qids_differing_in_one_character_stay_distinct(tmp_path):
    path = tmp_path / "utf8.txt"
    path.write_text("1 qid:café 1:1\n0 qid:cafè 1:2\n", encoding="utf-8")
    ds = read_letor(path)
    assert ds.qids.tolist() == ["café", "cafè"] and ds.query_offsets.tolist() == [0, 1, 2]
    path.write_text("1 qid:café 1:1\n0 qid:cafè 1:2\n2 qid:café 1:3\n", encoding="utf-8")
    with pytest.raises(LetorFormatError, match=r"line 3: rows of qid 'café' are not contiguous"):
        read_letor(path)


# --- 4. missing values ------------------------------------------------------------------------

MISSING_TOKENS = ["NULL", "null", "nan", "NaN", "-nan", ""]


def missing_file(rng: np.random.Generator, *, contiguous: bool) -> str:
    lines = []
    for q in range(8):
        for _ in range(int(rng.integers(1, 6))):
            qid = q if contiguous else int(rng.integers(0, 4))
            toks = [str(int(rng.integers(0, 3))), f"qid:{qid}"]
            for c in range(1, 7):
                u = rng.random()
                if u < 0.25:
                    continue  # absent: the value 0
                value = rng.choice(MISSING_TOKENS) if u < 0.55 or c == 6 else f"{rng.standard_normal():.3f}"
                toks.append(f"{c}:{value}")
            lines.append(" ".join(toks))
    return "\n".join(lines) + "\n"


def reference_missing(text: str, mode: str) -> tuple[np.ndarray, list[str]]:
    """Rows grouped by qid (order of first appearance), missing values filled by ``mode``,
    straight from the definition with Python loops."""
    rows, qids = [], []
    for line in text.splitlines():
        toks = line.split()
        qids.append(toks[1][4:])
        row = {}
        for tok in toks[2:]:
            idx, value = tok.split(":")
            row[int(idx) - 1] = None if value.lower() in ("null", "nan", "-nan", "") else float(value)
        rows.append(row)
    order = sorted(range(len(rows)), key=lambda r: qids.index(qids[r]))
    features = np.zeros((len(rows), 6))
    for i, r in enumerate(order):
        for c in range(6):
            value = rows[r].get(c, 0.0)
            if value is None:
                if mode == "zero":
                    value = 0.0
                else:
                    same = [rows[o].get(c, 0.0) for o in order if qids[o] == qids[r]]
                    present = [v for v in same if v is not None]
                    value = min(present) if present else 0.0
            features[i, c] = value
    return features.astype(np.float32), [qids[r] for r in order]


@pytest.mark.parametrize("mode", ["zero", "min"])
@pytest.mark.parametrize("seed, contiguous", [(0, True), (1, True), (2, False), (3, False)])
def test_missing_values_match_the_reference(tmp_path, monkeypatch, mode, seed, contiguous):
    monkeypatch.setattr(letor, "_CHUNK_BYTES", 128)  # queries cross chunk borders
    text = missing_file(np.random.default_rng(seed), contiguous=contiguous)
    path = tmp_path / "null.txt"
    path.write_text(text)
    expected, row_qids = reference_missing(text, mode)
    ds = read_letor(path, missing=mode, regroup=not contiguous, n_features=6, n_threads=2)
    np.testing.assert_array_equal(ds.features, expected)
    assert np.repeat(ds.qids, ds.list_lengths).tolist() == row_qids
    with pytest.raises(LetorFormatError, match=r"has a missing value .*missing='zero' or 'min' \(CLI: --missing\)"):
        read_letor(path, regroup=not contiguous)


def test_missing_min_for_a_libsvm_file_uses_its_groups(tmp_path):
    path = tmp_path / "null.svm"
    path.write_text("1 1:NULL 2:3\n0 1:5 2:NULL\n2 1:4 2:1\n1 1:NULL 2:-2\n")
    (tmp_path / "null.svm.query").write_text("2\n2\n")
    ds = read_letor(path, missing="min")
    assert ds.features.tolist() == [[5, 3], [5, 3], [4, 1], [4, -2]]


def test_infinity_stays_an_error_and_bad_missing_option(tmp_path):
    path = tmp_path / "inf.txt"
    path.write_text("1 qid:1 1:inf\n")
    with pytest.raises(LetorFormatError, match=r"value of feature token '1:inf' is not a finite float32"):
        read_letor(path, missing="zero")
    with pytest.raises(ValueError, match=r"missing must be one of \['error', 'zero', 'min'\], got 'mean'"):
        read_letor(path, missing="mean")


# --- 5. long quoted input ---------------------------------------------------------------------

BIG = 10_000_000


@pytest.mark.parametrize(
    "line, field",
    [
        ("1 qid:1 1:" + "7" * BIG + "x", "feature 1"),  # bad value
        ("1 qid:1 " + "9" * BIG + ":1", ("feature " + "9" * 200)[:200] + "..."),  # index above the limit
        ("x" * BIG + " qid:1 1:1", "label"),
        ("1 qid:1 " + "y" * BIG, "token"),
    ],
)
def test_error_quotes_at_most_200_characters_of_input(tmp_path, line, field):
    path = tmp_path / "long.txt"
    path.write_text("1 qid:1 1:1\n" + line + "\n")
    with pytest.raises(LetorFormatError) as info:
        read_letor(path)
    message = str(info.value)
    assert len(message) < 1000 and "..." in message
    assert info.value.line == 2 and info.value.field == field


def test_non_contiguous_long_qid_is_cut(tmp_path):
    qid = "q" * 5000
    path = tmp_path / "long.txt"
    path.write_text(f"1 qid:{qid} 1:1\n1 qid:b 1:1\n1 qid:{qid} 1:1\n")
    with pytest.raises(LetorFormatError, match=r"line 3: rows of qid 'q{200}'\.\.\. are not contiguous") as info:
        read_letor(path)
    assert len(str(info.value)) < 700


# --- 6. qids and doc ids through libsvm -------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_letor_libsvm_letor_round_trip_keeps_qids_and_doc_ids(tmp_path, suffix):
    original = read_letor(MQ / "vali.txt")
    svm = tmp_path / f"vali.svm{suffix}"
    write_libsvm(original, svm)
    assert find_qid_file(svm) == Path(str(svm) + ".qid")
    back = read_letor(svm, n_features=original.n_features)
    assert back.qids.tolist() == original.qids.tolist() and back.qids[0] != "0"
    assert back.doc_ids.tolist() == original.doc_ids.tolist()
    np.testing.assert_array_equal(back.features, original.features)
    np.testing.assert_array_equal(back.query_offsets, original.query_offsets)
    # Back to LETOR: the same text as writing the original directly.
    write_letor(back, tmp_path / "again.txt")
    write_letor(original, tmp_path / "direct.txt")
    assert (tmp_path / "again.txt").read_bytes() == (tmp_path / "direct.txt").read_bytes()


@pytest.mark.parametrize(
    "qid_text, message",
    [
        ("a\nb\n", r"vali\.svm\.qid: 2 qids, but the group file .*vali\.svm\.query has 3 queries"),
        ("a\nb\na\n", r"vali\.svm\.qid, line 3: qid 'a' already named the query of line 1"),
        ("a\n\nc\n", r"vali\.svm\.qid, line 2: qid '' is not a valid qid"),
        ("a\nb c\nd\n", r"vali\.svm\.qid, line 2: qid 'b c' is not a valid qid"),
        ("a\nb\xe9\nd\n", r"vali\.svm\.qid, line 2: qid b'b\\xe9' is not valid UTF-8"),
    ],
)
def test_bad_qid_file_is_named(tmp_path, qid_text, message):
    svm = tmp_path / "vali.svm"
    svm.write_text("1 1:1\n0 1:2\n1 1:3\n")
    (tmp_path / "vali.svm.query").write_text("1\n1\n1\n")
    (tmp_path / "vali.svm.qid").write_bytes(qid_text.encode("latin-1"))
    with pytest.raises(LetorFormatError, match=message) as info:
        read_letor(svm)
    assert info.value.field == "qid"


def test_qid_file_with_windows_line_ends(tmp_path):
    svm = tmp_path / "vali.svm"
    svm.write_text("1 1:1\n0 1:2\n1 1:3\n")
    (tmp_path / "vali.svm.query").write_text("1\n2\n")
    (tmp_path / "vali.svm.qid").write_bytes(b"q7\r\nq9\r\n")
    assert read_letor(svm).qids.tolist() == ["q7", "q9"]
    (tmp_path / "vali.svm.qid").unlink()
    assert read_letor(svm).qids.tolist() == ["0", "1"]


def test_libsvm_writer_refuses_unwritable_qids_before_writing(tmp_path):
    ds = read_letor(MQ / "vali.txt")
    ds.qids[1] = "a\x00b"
    with pytest.raises(ValueError, match=r"qid 'a\\x00b' cannot be written"):
        write_libsvm(ds, tmp_path / "x.svm")
    assert list(tmp_path.iterdir()) == []

"""Numba byte kernels behind :func:`ltrkit.data.letor.read_letor`.

The kernels walk raw bytes of a LETOR/SVMlight file (``label [qid:Q] idx:val ... [# comment]``)
without creating Python objects. A file is split into line-aligned chunks; each chunk is parsed
twice, in a worker thread (``nogil``):

* pass 1 (:func:`scan_chunk`) counts data rows and finds the feature-index range and the first
  line with / without a ``qid:`` token, so the caller can allocate the dense matrix once;
* pass 2 (:func:`fill_chunk`) parses labels and values straight into that preallocated matrix.

Kernels never raise: they return an error code plus byte positions (line start, token start and
end) and Python re-reads that one line to build the message.

Kernels never write outside the arrays they are given, whatever the bytes: pass 2 trusts nothing
that pass 1 found (a file rewritten between the passes can hold more rows, or other tokens), so
every row, column and span index is checked against the array shapes and an excess is reported
as :data:`OUT_OF_BOUNDS`. Index digits stop accumulating once past the limit, so no index
overflows int64.

Numbers are parsed into an integer mantissa of at most 18 significant digits and a decimal
exponent. When the mantissa is below ``2**53`` and ``|exponent| <= 22`` the float64 result is
exact (one correctly rounded multiplication or division, Clinger's fast path), so the float32
cast equals Python's ``np.float32(float(token))``. Otherwise the float64 estimate is within a few
ulps; if a float32 rounding boundary lies within a safety margin of it the value is flagged
"slow" and Python re-parses that token with ``float()``, so every value is bit-identical to
``np.float32(float(token))``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Error codes returned by the kernels; letor.py maps them to messages.
OK = 0
BAD_LABEL = 1
NONFINITE_LABEL = 2
EMPTY_QID = 3
BAD_TOKEN = 4
MISSING_VALUE = 5
BAD_VALUE = 6
NONFINITE_VALUE = 7
INDEX_ZERO = 8
INDEX_TOO_LARGE = 9
DUPLICATE_INDEX = 10
INDEX_ABOVE_LIMIT = 11
MISSING_LABEL = 12
OUT_OF_BOUNDS = 13
MISSING_LABEL_VALUE = 14

# What fill_chunk does with a missing feature value (NULL, NaN or an empty ``idx:``).
MISSING_ERROR = 0
MISSING_ZERO = 1
MISSING_NAN = 2  # stored as NaN; the caller replaces it (the per-query minimum)

# Status of a parsed number.
NUM_OK = 0
NUM_BAD = 1
NUM_NONFINITE = 2
NUM_SLOW = 3
NUM_MISSING = 4  # NULL or NaN

# Layout of the int64 result vector of scan_chunk.
S_ERR, S_ERR_LINE, S_ERR_TOK, S_ERR_TOKEND = 0, 1, 2, 3
S_ROWS, S_MAX_IDX, S_MIN_IDX = 4, 5, 6
S_FIRST_QID, S_FIRST_NOQID, S_COMMENTS = 7, 8, 9
S_SIZE = 10

# Layout of the int64 result vector of fill_chunk.
F_ERR, F_ERR_LINE, F_ERR_TOK, F_ERR_TOKEND, F_ROWS, F_SLOW, F_MISSING = 0, 1, 2, 3, 4, 5, 6
F_SIZE = 7

# Largest index limit a caller may pass: 10 * limit + 9 stays far below 2**63.
MAX_INDEX_LIMIT = 1 << 56
_EXACT_POW10 = np.array([10.0**k for k in range(23)], dtype=np.float64)
# 10**k for k in [-_POW10_BIAS, _POW10_BIAS], each the correctly rounded float64 (Python parses
# the literal), used only for the approximate path.
_POW10_BIAS = 80
_POW10 = np.array([float(f"1e{k}") for k in range(-_POW10_BIAS, _POW10_BIAS + 1)], dtype=np.float64)
# Relative safety margin of the approximate path (its float64 error is below ~4 ulps = 2**-50).
_MARGIN = 2.0**-46


@njit(inline="always")
def _is_space(c: int) -> bool:
    # space, \t, \r, \v, \f; \n ends a line and is handled by the line loop.
    return c == 32 or c == 9 or c == 13 or c == 11 or c == 12


@njit(inline="always")
def _token_end(buf, i, end):
    while i < end and not _is_space(buf[i]) and buf[i] != 35:
        i += 1
    return i


@njit(inline="always")
def _lower(c):
    return c | 32 if 65 <= c <= 90 else c


@njit
def _special_word(buf, i, end):
    """Status of a token without digits: ``NUM_MISSING`` for null or [+-]nan, ``NUM_NONFINITE``
    for [+-]inf / [+-]infinity (any case), else ``NUM_BAD``."""
    if end - i == 4 and _lower(buf[i]) == 110 and _lower(buf[i + 1]) == 117:
        if _lower(buf[i + 2]) == 108 and _lower(buf[i + 3]) == 108:  # null
            return NUM_MISSING
    if i < end and (buf[i] == 43 or buf[i] == 45):
        i += 1
    n = end - i
    if n == 3:
        a, b, c = _lower(buf[i]), _lower(buf[i + 1]), _lower(buf[i + 2])
        if a == 110 and b == 97 and c == 110:
            return NUM_MISSING
        if a == 105 and b == 110 and c == 102:
            return NUM_NONFINITE
    if n == 8:
        word8 = (105, 110, 102, 105, 110, 105, 116, 121)  # infinity
        for k in range(8):
            if _lower(buf[i + k]) != word8[k]:
                return NUM_BAD
        return NUM_NONFINITE
    return NUM_BAD


@njit(inline="always")
def parse_number(buf, i, end, pow10, exact_pow10):
    """Parse the float token starting at ``buf[i]``; it ends at whitespace, ``#`` or ``end``.

    Returns ``(value_float32_as_float64, status, token_end)``; ``status`` is ``NUM_MISSING`` for
    ``null``/``nan`` (any case), ``NUM_NONFINITE`` for infinities and overflow. Plain decimals of
    at most 15 digits (the common case: ``3``, ``0.352941``, ``-12.5``) take a short exact path;
    anything else (an exponent, longer mantissas, errors) goes to :func:`_parse_number_full`.
    """
    p = i
    neg = False
    if p < end and (buf[p] == 45 or buf[p] == 43):
        neg = buf[p] == 45
        p += 1
    mant = np.int64(0)
    first = p
    while p < end:
        d = np.int64(buf[p]) - 48
        if d < 0 or d > 9:
            break
        mant = mant * 10 + d
        p += 1
    n_digits = p - first
    n_frac = 0
    if p < end and buf[p] == 46:
        p += 1
        first = p
        while p < end:
            d = np.int64(buf[p]) - 48
            if d < 0 or d > 9:
                break
            mant = mant * 10 + d
            p += 1
        n_frac = p - first
        n_digits += n_frac
    at_end = p == end or _is_space(buf[p]) or buf[p] == 35
    if not at_end or n_digits == 0 or n_digits > 15:
        tok_end = _token_end(buf, p, end)
        value, status = _parse_number_full(buf, i, tok_end, pow10, exact_pow10)
        return value, status, tok_end
    # mant < 10**15 < 2**53 and n_frac <= 15: one correctly rounded division (Clinger).
    value32 = np.float32(float(mant) / exact_pow10[n_frac])
    if neg:
        value32 = -value32
    return float(value32), NUM_OK, p


@njit(nogil=True, cache=True)
def _parse_number_full(buf, i, end, pow10, exact_pow10):
    """The general path of :func:`parse_number`: any length, exponents, nan/inf detection."""
    start = i
    neg = False
    if i < end and (buf[i] == 45 or buf[i] == 43):
        neg = buf[i] == 45
        i += 1
    mant = np.int64(0)
    ndig = 0
    exp10 = 0
    truncated = False
    any_digit = False
    while i < end and 48 <= buf[i] <= 57:
        any_digit = True
        d = buf[i] - 48
        if ndig < 18:
            if mant != 0 or d != 0:
                mant = mant * 10 + d
                ndig += 1
        else:
            exp10 += 1
            if d != 0:
                truncated = True
        i += 1
    if i < end and buf[i] == 46:
        i += 1
        while i < end and 48 <= buf[i] <= 57:
            any_digit = True
            d = buf[i] - 48
            if ndig < 18:
                if mant != 0 or d != 0:
                    mant = mant * 10 + d
                    ndig += 1
                exp10 -= 1
            elif d != 0:
                truncated = True
            i += 1
    if not any_digit:
        return 0.0, _special_word(buf, start, end)
    if i < end and (buf[i] == 101 or buf[i] == 69):
        i += 1
        eneg = False
        if i < end and (buf[i] == 45 or buf[i] == 43):
            eneg = buf[i] == 45
            i += 1
        if i >= end or not (48 <= buf[i] <= 57):
            return 0.0, NUM_BAD
        e = 0
        while i < end and 48 <= buf[i] <= 57:
            if e < 100000:
                e = e * 10 + (buf[i] - 48)
            i += 1
        exp10 += -e if eneg else e
    if i != end:
        return 0.0, NUM_BAD
    if mant == 0:
        return -0.0 if neg else 0.0, NUM_OK
    status = NUM_OK
    if not truncated and mant <= 9007199254740992 and -22 <= exp10 <= 22:
        if exp10 >= 0:
            value = float(mant) * exact_pow10[exp10]
        else:
            value = float(mant) / exact_pow10[-exp10]
    elif exp10 + ndig < -50:
        # Below 1e-50: rounds to zero in float32 however the digits continue.
        value = 0.0
    elif exp10 + ndig > 40:
        return 0.0, NUM_NONFINITE
    else:
        value = float(mant) * pow10[exp10 + _POW10_BIAS]
        lo = np.float32(value * (1.0 - _MARGIN))
        hi = np.float32(value * (1.0 + _MARGIN))
        if lo != hi:
            status = NUM_SLOW
    value32 = np.float32(value)
    if status == NUM_OK and np.isinf(value32):
        return 0.0, NUM_NONFINITE
    if neg:
        value32 = -value32
    return float(value32), status


@njit(nogil=True, cache=True)
def scan_chunk(buf, start, end, max_index):
    """Pass 1 over the lines of ``buf[start:end]`` (``end`` is a line end or the buffer end).

    ``max_index`` (at most :data:`MAX_INDEX_LIMIT`) is the largest feature index accepted; a
    larger one is reported as ``INDEX_ABOVE_LIMIT``.

    Returns the int64 vector described by the ``S_*`` constants: first error (code, line start,
    token start/end), row count, largest and smallest feature index (-1 when none), byte
    position of the first line with and without a qid (-1 when none), number of commented rows.
    """
    out = np.full(S_SIZE, -1, dtype=np.int64)
    out[S_ERR] = OK
    out[S_ROWS] = 0
    out[S_COMMENTS] = 0
    end = min(end, buf.shape[0])
    max_idx = -1
    min_idx = max_index + 1
    i = start
    while i < end:
        line = i
        line_end = i
        while line_end < end and buf[line_end] != 10:
            line_end += 1
        i = line_end + 1
        p = line
        while p < line_end and _is_space(buf[p]):
            p += 1
        if p == line_end or buf[p] == 35:
            continue
        label_end = _token_end(buf, p, line_end)
        if label_end - p >= 4 and buf[p] == 113 and buf[p + 1] == 105 and buf[p + 2] == 100 and buf[p + 3] == 58:
            out[S_ERR] = MISSING_LABEL
            out[S_ERR_LINE] = line
            out[S_ERR_TOK] = p
            out[S_ERR_TOKEND] = label_end
            return out
        p = label_end
        while p < line_end and _is_space(buf[p]):
            p += 1
        has_qid = False
        if p + 4 <= line_end and buf[p] == 113 and buf[p + 1] == 105 and buf[p + 2] == 100 and buf[p + 3] == 58:
            has_qid = True
            q_end = _token_end(buf, p + 4, line_end)
            if q_end == p + 4:
                out[S_ERR] = EMPTY_QID
                out[S_ERR_LINE] = line
                out[S_ERR_TOK] = p
                out[S_ERR_TOKEND] = q_end
                return out
            p = q_end
        if has_qid:
            if out[S_FIRST_QID] < 0:
                out[S_FIRST_QID] = line
        elif out[S_FIRST_NOQID] < 0:
            out[S_FIRST_NOQID] = line
        while True:
            while p < line_end and _is_space(buf[p]):
                p += 1
            if p >= line_end:
                break
            if buf[p] == 35:
                out[S_COMMENTS] += 1
                break
            tok = p
            tok_end = _token_end(buf, p, line_end)
            idx = 0
            q = p
            while q < tok_end and 48 <= buf[q] <= 57:
                if idx <= max_index:
                    idx = idx * 10 + (buf[q] - 48)
                q += 1
            if q == tok or q == tok_end or buf[q] != 58:
                out[S_ERR] = BAD_TOKEN
                out[S_ERR_LINE] = line
                out[S_ERR_TOK] = tok
                out[S_ERR_TOKEND] = tok_end
                return out
            if idx > max_index:
                out[S_ERR] = INDEX_ABOVE_LIMIT
                out[S_ERR_LINE] = line
                out[S_ERR_TOK] = tok
                out[S_ERR_TOKEND] = tok_end
                return out
            if idx > max_idx:
                max_idx = idx
            if idx < min_idx:
                min_idx = idx
            p = tok_end
        out[S_ROWS] += 1
    out[S_MAX_IDX] = max_idx
    out[S_MIN_IDX] = min_idx if max_idx >= 0 else -1
    return out


@njit(nogil=True, cache=True)
def fill_chunk(
    buf, start, end, row0, base, missing, features, labels, qid_span, doc_span, seen, slow, pow10, exact_pow10
):
    """Pass 2 over ``buf[start:end]``: write rows ``row0, row0 + 1, ...`` of the outputs.

    Nothing from pass 1 is trusted: a row beyond ``features``/``labels``/``qid_span``/``doc_span``
    or arrays of the wrong shape give ``OUT_OF_BOUNDS`` (nothing is written out of bounds).

    Args:
        missing: ``MISSING_ERROR``, ``MISSING_ZERO`` or ``MISSING_NAN``: what a feature value
            ``null``/``nan`` (any case) or an empty ``idx:`` becomes (an error, 0 or NaN).
        features: ``[n_docs, n_features]`` float32, zero-filled; absent features stay 0.
        labels: ``[n_docs]`` float32.
        qid_span: ``[chunk rows, 2]`` int64 byte range in ``buf`` of each row's qid (``[0, 0]``
            when none), indexed from this chunk's first row.
        doc_span: ``[chunk rows, 2]`` int64 byte range of each row's doc id (``[-1, -1]`` when
            the row has no comment), or ``[0, 2]`` to skip doc ids.
        seen: ``[n_features]`` int64 scratch, the last row that set each column (duplicates).
        slow: ``[capacity, 3]`` int64, (token start, row, column or -1 for the label) of values
            Python must re-parse; the count is returned even when it exceeds the capacity.

    Returns:
        The int64 vector described by the ``F_*`` constants (``F_MISSING``: missing values).
    """
    out = np.zeros(F_SIZE, dtype=np.int64)
    n_features = features.shape[1]
    want_doc = doc_span.shape[0] > 0
    end = min(end, buf.shape[0])
    # Rows this call may write, whatever the bytes say.
    row_stop = min(features.shape[0], labels.shape[0], row0 + qid_span.shape[0])
    if want_doc:
        row_stop = min(row_stop, row0 + doc_span.shape[0])
    bad_shapes = seen.shape[0] < n_features or qid_span.shape[1] < 2 or slow.shape[1] < 3
    if row0 < 0 or bad_shapes or (want_doc and doc_span.shape[1] < 2):
        out[F_ERR] = OUT_OF_BOUNDS
        return out
    # Beyond n_features for either base.
    index_cap = n_features + 1
    n_slow = 0
    n_missing = 0
    row = row0
    i = start
    for c in range(n_features):
        seen[c] = -1
    while i < end:
        line = i
        line_end = i
        while line_end < end and buf[line_end] != 10:
            line_end += 1
        i = line_end + 1
        p = line
        while p < line_end and _is_space(buf[p]):
            p += 1
        if p == line_end or buf[p] == 35:
            continue
        value, status, tok_end = parse_number(buf, p, line_end, pow10, exact_pow10)
        if status != NUM_OK and status != NUM_SLOW or row >= row_stop:
            out[F_ERR] = OUT_OF_BOUNDS
            if status == NUM_BAD:
                out[F_ERR] = BAD_LABEL
            elif status == NUM_NONFINITE:
                out[F_ERR] = NONFINITE_LABEL
            elif status == NUM_MISSING:
                out[F_ERR] = MISSING_LABEL_VALUE
            out[F_ERR_LINE] = line
            out[F_ERR_TOK] = p
            out[F_ERR_TOKEND] = tok_end
            return out
        if status == NUM_SLOW:
            if n_slow < slow.shape[0]:
                slow[n_slow, 0] = p
                slow[n_slow, 1] = row
                slow[n_slow, 2] = -1
            n_slow += 1
        labels[row] = value
        p = tok_end
        while p < line_end and _is_space(buf[p]):
            p += 1
        local = row - row0
        qid_span[local, 0] = 0
        qid_span[local, 1] = 0
        if p + 4 <= line_end and buf[p] == 113 and buf[p + 1] == 105 and buf[p + 2] == 100 and buf[p + 3] == 58:
            q_end = _token_end(buf, p + 4, line_end)
            qid_span[local, 0] = p + 4
            qid_span[local, 1] = q_end
            p = q_end
        if want_doc:
            doc_span[local, 0] = -1
            doc_span[local, 1] = -1
        while True:
            while p < line_end and _is_space(buf[p]):
                p += 1
            if p >= line_end:
                break
            if buf[p] == 35:
                if want_doc:
                    _doc_id_span(buf, p + 1, line_end, doc_span, local)
                break
            tok = p
            idx = 0
            q = p
            while q < line_end:
                d = np.int64(buf[q]) - 48
                if d < 0 or d > 9:
                    break
                idx = idx * 10 + d
                q += 1
            if q - tok > 18:
                # More than 18 digits may have overflowed int64: again, stopping past the cap.
                idx = 0
                for k in range(tok, q):
                    if idx <= index_cap:
                        idx = idx * 10 + (np.int64(buf[k]) - 48)
            col = idx - base
            err = OK
            tok_end = q + 1
            if q == tok or q == line_end or buf[q] != 58:
                err = BAD_TOKEN
            elif col < 0:
                err = INDEX_ZERO
            elif col >= n_features:
                err = INDEX_TOO_LARGE
            elif seen[col] == row:
                err = DUPLICATE_INDEX
            if err == OK:
                if q + 1 == line_end or _is_space(buf[q + 1]) or buf[q + 1] == 35:
                    status = NUM_MISSING
                else:
                    value, status, tok_end = parse_number(buf, q + 1, line_end, pow10, exact_pow10)
                if status == NUM_MISSING:
                    if missing == MISSING_ERROR:
                        err = MISSING_VALUE
                    value = 0.0 if missing == MISSING_ZERO else np.nan
                    n_missing += 1
                elif status == NUM_BAD:
                    err = BAD_VALUE
                elif status == NUM_NONFINITE:
                    err = NONFINITE_VALUE
                elif status == NUM_SLOW:
                    if n_slow < slow.shape[0]:
                        slow[n_slow, 0] = q + 1
                        slow[n_slow, 1] = row
                        slow[n_slow, 2] = col
                    n_slow += 1
            if err != OK:
                out[F_ERR] = err
                out[F_ERR_LINE] = line
                out[F_ERR_TOK] = tok
                out[F_ERR_TOKEND] = _token_end(buf, tok, line_end)
                return out
            seen[col] = row
            features[row, col] = value
            p = tok_end
        row += 1
    out[F_ROWS] = row - row0
    out[F_SLOW] = n_slow
    out[F_MISSING] = n_missing
    return out


@njit(inline="always")
def _doc_id_span(buf, p, line_end, doc_span, row):
    """Doc id of a comment ``buf[p:line_end]``: X of ``docid = X ...``, else the stripped text."""
    while p < line_end and _is_space(buf[p]):
        p += 1
    e = line_end
    while e > p and _is_space(buf[e - 1]):
        e -= 1
    doc_span[row, 0] = p
    doc_span[row, 1] = e
    is_docid = e - p >= 5 and buf[p] == 100 and buf[p + 1] == 111 and buf[p + 2] == 99
    if is_docid and buf[p + 3] == 105 and buf[p + 4] == 100:
        q = p + 5
        while q < e and _is_space(buf[q]):
            q += 1
        if q < e and buf[q] == 61:
            q += 1
            while q < e and _is_space(buf[q]):
                q += 1
            x_end = q
            while x_end < e and not _is_space(buf[x_end]):
                x_end += 1
            if x_end > q:
                doc_span[row, 0] = q
                doc_span[row, 1] = x_end


@njit(nogil=True, cache=True)
def count_newlines(buf, end):
    """Number of ``\\n`` bytes in ``buf[:end]`` (1-based line number of position ``end`` minus 1)."""
    n = 0
    for k in range(min(end, buf.shape[0])):
        if buf[k] == 10:
            n += 1
    return n


@njit(nogil=True, cache=True)
def segment_starts(buf, qid_span):
    """Rows where the qid differs from the previous row's (row 0 always starts a segment)."""
    n = qid_span.shape[0]
    starts = np.empty(n, dtype=np.bool_)
    for r in range(n):
        if r == 0:
            starts[r] = True
            continue
        a0, a1 = qid_span[r - 1, 0], qid_span[r - 1, 1]
        b0, b1 = qid_span[r, 0], qid_span[r, 1]
        same = a1 - a0 == b1 - b0
        if same:
            for k in range(a1 - a0):
                if buf[a0 + k] != buf[b0 + k]:
                    same = False
                    break
        starts[r] = not same
    return starts


@njit(nogil=True, cache=True)
def gather_spans(buf, spans, width):
    """Copy byte ranges ``spans[i] = (start, end)`` into rows of a zero-padded ``[n, width]``.

    A range with ``start < 0`` (no value) stays empty; a range is cut to ``width`` and to ``buf``.
    """
    n = spans.shape[0]
    out = np.zeros((n, max(width, 1)), dtype=np.uint8)
    for r in range(n):
        s, e = spans[r, 0], min(spans[r, 1], buf.shape[0])
        if s < 0:
            continue
        for k in range(min(e - s, out.shape[1])):
            out[r, k] = buf[s + k]
    return out


_CHECKSUM_SEED = np.uint64(0xCBF29CE484222325)
_CHECKSUM_PRIME = np.uint64(0x100000001B3)


@njit(nogil=True, cache=True)
def checksum(words, tail):
    """64-bit FNV-1a-style hash of a byte string given as its uint64 words and the tail bytes.

    Four lanes take every fourth word (independent multiplies run in parallel), then are folded
    with the tail. Each step ``h = (h ^ x) * prime`` is a bijection of ``h`` and of ``x`` (the
    prime is odd), so changing any single word or byte always changes the result; it tells
    whether pass 2 re-read the bytes that pass 1 saw, at memory speed.
    """
    h0 = h1 = h2 = h3 = _CHECKSUM_SEED
    n4 = words.shape[0] - words.shape[0] % 4
    for k in range(0, n4, 4):
        h0 = (h0 ^ words[k]) * _CHECKSUM_PRIME
        h1 = (h1 ^ words[k + 1]) * _CHECKSUM_PRIME
        h2 = (h2 ^ words[k + 2]) * _CHECKSUM_PRIME
        h3 = (h3 ^ words[k + 3]) * _CHECKSUM_PRIME
    h = _CHECKSUM_SEED
    for lane in (h0, h1, h2, h3):
        h = (h ^ lane) * _CHECKSUM_PRIME
    for k in range(n4, words.shape[0]):
        h = (h ^ words[k]) * _CHECKSUM_PRIME
    for k in range(tail.shape[0]):
        h = (h ^ np.uint64(tail[k])) * _CHECKSUM_PRIME
    return h


@njit(nogil=True, cache=True)
def token_end(buf, pos):
    """End of the token starting at ``pos`` (whitespace, ``#`` or a line end stops it)."""
    n = buf.shape[0]
    while pos < n and buf[pos] != 10 and not _is_space(buf[pos]) and buf[pos] != 35:
        pos += 1
    return pos

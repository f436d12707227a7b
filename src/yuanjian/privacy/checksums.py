"""Check-digit validators for Chinese identifiers and payment cards, vectorized over Arrow arrays.

Three checks, each as a column-wide validator over a ``pyarrow`` string array and as a scalar:

- GB 11643-1999 citizen identity number (居民身份证号码): 17 digits plus a mod 11-2 check
  character (``0``-``9`` or ``X``), a real calendar birth date between 1900-01-01 and today,
  and a province-level area prefix (GB/T 2260 first two digits, plus 81/82/83 for the
  residence permits of Hong Kong, Macao and Taiwan residents).
- GB 32100-2015 unified social credit code (统一社会信用代码): 18 characters from the
  31-character alphabet ``0-9 A-H J-N P-R T U W-Y``, a registration-authority character
  (``1``-``9``, ``A``, ``N``, ``Y``), an institution-category digit, a six-digit region code and a
  mod 31 check character.
- Luhn (ISO/IEC 7812) for bank card numbers; :func:`bank_card_valid` adds the card lengths.

Why this is hand-written rather than python-stdnum, measured on this machine (2 shared, busy
cores; 1,000,000 generated values each with 2 % bad check characters; python-stdnum 2.2; for
the column validators the median and best of five runs):

==========================  ======================  ===================================
check                       stdnum, one value/call  this module, whole column
==========================  ======================  ===================================
resident ID (full check)    14,800 values/s         2.6-6.4 million values/s
USCC                        78,000 values/s         4.0-6.4 million values/s
Luhn, 16-19 digits          144,000 values/s        3.1-4.5 million values/s
==========================  ======================  ===================================

stdnum is a per-value Python loop, two to three orders of magnitude too slow for a column
scan, and it is also wrong in two places that matter here:

- ``stdnum.cn.ric.is_valid`` checks the birth *place* against the county's validity years
  *at the birth year*. Area codes are assigned at issue, not at birth: a person born in 1964
  in 兴平市 (code 610481, valid from 1993) legitimately holds a 610481 number, which stdnum
  rejects. On Faker zh_CN identity numbers it rejects about 64 % of valid numbers, and for
  codes that its database lists without a county (e.g. 620201) it raises ``KeyError``
  instead of returning False. We check the province prefix only. (Our own scalar
  :func:`is_valid_resident_id` runs at about 330,000 values/s.)
- ``stdnum.cn.uscc.validate`` requires the first eight characters to be digits, so it rejects
  valid codes issued by the registration authorities coded ``A`` (中央军委改革和编制办公室),
  ``N`` (农业, rural collective economic organisations, ``N2…``) and ``Y`` (其他).

Where stdnum is right we use it: the scalar check characters come from
``stdnum.cn.ric.calc_check_digit`` and ``stdnum.cn.uscc.calc_check_digit``, and
:func:`luhn_ok` is ``stdnum.luhn.is_valid`` behind a digits-only guard. The tests check the
column validators against stdnum on random valid and corrupted inputs.

The column validators view the Arrow string data buffer as a ``(rows, width)`` byte matrix
(numpy, zero-copy when every value has the same width) and do the weighted sums as one
matrix product. Null and malformed values are ``False``. We measured the DuckDB alternative
(``regexp_full_match`` plus seventeen ``ascii(x[i])`` products, ``try_strptime`` and a
province list, over the same Arrow table): about 590 ms for 1,000,000 resident IDs on two
threads against about 280 ms here on one, with identical counts, so the numpy path stays.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from stdnum import luhn as _stdnum_luhn
from stdnum.cn import ric as _stdnum_ric
from stdnum.cn import uscc as _stdnum_uscc

__all__ = [
    "USCC_ALPHABET",
    "bank_card_valid",
    "birth_date_ok",
    "is_valid_resident_id",
    "is_valid_uscc",
    "luhn_ok",
    "luhn_valid",
    "resident_id_valid",
    "uscc_valid",
]

# GB 11643-1999: W_i = 2^(i-1) mod 11, for positions 18..2 counted from the right.
_RID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int32)
# Province-level prefixes of GB/T 2260, plus 81/82/83 (HK, Macao, Taiwan residence permits).
_PROVINCES = frozenset(
    {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46}
    | {50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83}
)
# Columns: check-digit weights, then the positional weights of year, month, day, province.
_RID_FIELDS = np.zeros((17, 5), dtype=np.float32)
_RID_FIELDS[:, 0] = _RID_WEIGHTS
_RID_FIELDS[6:10, 1] = (1000, 100, 10, 1)
_RID_FIELDS[10:12, 2] = (10, 1)
_RID_FIELDS[12:14, 3] = (10, 1)
_RID_FIELDS[0:2, 4] = (10, 1)
_PROVINCE_OK = np.zeros(100, dtype=bool)
_PROVINCE_OK[list(_PROVINCES)] = True
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int32)
_MIN_BIRTH_YEAR = 1900

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = np.array(
    [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28], dtype=np.int32
)
# GB 32100-2015 and its amendment: registration-authority codes.
_USCC_AUTHORITIES = "123456789ANY"
_USCC_VALUE = np.full(256, -1, dtype=np.int16)
for _i, _c in enumerate(USCC_ALPHABET):
    _USCC_VALUE[ord(_c)] = _i
_USCC_AUTHORITY_OK = np.zeros(256, dtype=bool)
for _c in _USCC_AUTHORITIES:
    _USCC_AUTHORITY_OK[ord(_c)] = True

# Digit sum of twice each digit; non-digits (wrapped to >= 10) map to 0 and fail elsewhere.
_LUHN_DOUBLE_LUT = np.zeros(256, dtype=np.uint8)
_LUHN_DOUBLE_LUT[:10] = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)
BANK_CARD_LENGTHS = (16, 17, 18, 19)


def _to_string_array(values: pa.Array | pa.ChunkedArray | list[str | None]) -> pa.Array:
    """Return ``values`` as one ``pa.string()`` array (chunks combined, views decoded)."""
    if isinstance(values, list):
        return pa.array(values, type=pa.string())
    if isinstance(values, pa.ChunkedArray):
        values = (
            values.combine_chunks()
            if values.num_chunks != 1
            else values.chunk(0)
            if values.num_chunks
            else pa.array([], type=values.type)
        )
    if not isinstance(values, pa.Array):
        raise TypeError(f"expected a pyarrow array, got {type(values).__name__}")
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if values.type != pa.string():
        values = values.cast(pa.string())
    return values


def _byte_lengths(arr: pa.Array) -> np.ndarray:
    """Byte length of each value, -1 for nulls."""
    return pc.fill_null(pc.binary_length(arr), -1).to_numpy(zero_copy_only=False)


def _width_matrix(arr: pa.Array, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the non-null values of byte length ``width``, and their bytes as a matrix."""
    idx = np.flatnonzero(_byte_lengths(arr) == width)
    if idx.size == 0:
        return idx, np.empty((0, width), dtype=np.uint8)
    buffers = arr.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int32)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(buffers[2], dtype=np.uint8)
    start = int(offsets[0])
    if idx.size == len(arr) and int(offsets[-1]) - start == idx.size * width:
        # Every value has this width: the data buffer already is the matrix.
        return idx, data[start : start + idx.size * width].reshape(idx.size, width)
    starts = offsets[idx].astype(np.int64)
    return idx, data[starts[:, None] + np.arange(width, dtype=np.int64)]


def _scatter(n: int, idx: np.ndarray, ok: np.ndarray) -> pa.BooleanArray:
    out = np.zeros(n, dtype=bool)
    out[idx[ok]] = True
    return pa.array(out, type=pa.bool_())


def birth_date_ok(
    year: np.ndarray, month: np.ndarray, day: np.ndarray, *, today: dt.date
) -> np.ndarray:
    """Whether each (year, month, day) is a real calendar date in [1900-01-01, today]."""
    month_ok = (month >= 1) & (month <= 12)
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    dim = _DAYS_IN_MONTH[np.where(month_ok, month, 0)] + ((month == 2) & leap)
    ymd = year * 10000 + month * 100 + day
    today_ymd = today.year * 10000 + today.month * 100 + today.day
    return month_ok & (day >= 1) & (day <= dim) & (year >= _MIN_BIRTH_YEAR) & (ymd <= today_ymd)


def resident_id_valid(
    values: pa.Array | pa.ChunkedArray | list[str | None], *, today: dt.date | None = None
) -> pa.BooleanArray:
    """Whether each value is a valid GB 11643-1999 identity number (check char, date, area)."""
    arr = _to_string_array(values)
    idx, mat = _width_matrix(arr, 18)
    if idx.size == 0:
        return _scatter(len(arr), idx, np.zeros(0, dtype=bool))
    digits = mat[:, :17] - np.uint8(48)  # uint8 wraparound turns non-digits into values >= 10
    ok = (digits < 10).all(axis=1)
    last = mat[:, 17]
    last_value = np.where((last == 88) | (last == 120), 10, last.astype(np.int32) - 48)
    ok &= (last_value >= 0) & (last_value <= 10)
    # One float32 product gives the weighted sum, year, month, day and province at once
    # (every figure stays below 2**24, so float32 is exact and uses BLAS).
    fields = (digits.astype(np.float32) @ _RID_FIELDS).astype(np.int32)
    check, year, month, day, province = fields.T
    ok &= (12 - check % 11) % 11 == last_value
    ok &= birth_date_ok(year, month, day, today=today or dt.date.today())
    ok &= _PROVINCE_OK[np.clip(province, 0, 99)]
    return _scatter(len(arr), idx, ok)


def uscc_valid(values: pa.Array | pa.ChunkedArray | list[str | None]) -> pa.BooleanArray:
    """Whether each value is a valid GB 32100-2015 unified social credit code."""
    arr = _to_string_array(values)
    idx, mat = _width_matrix(arr, 18)
    if idx.size == 0:
        return _scatter(len(arr), idx, np.zeros(0, dtype=bool))
    v = _USCC_VALUE[mat].astype(np.int32)
    ok = (v >= 0).all(axis=1)
    ok &= _USCC_AUTHORITY_OK[mat[:, 0]]
    ok &= (v[:, 1] >= 1) & (v[:, 1] <= 9)
    ok &= (v[:, 2:8] < 10).all(axis=1)
    total = (v[:, :17].astype(np.float32) @ _USCC_WEIGHTS.astype(np.float32)).astype(np.int32)
    check = (31 - total % 31) % 31
    ok &= check == v[:, 17]
    return _scatter(len(arr), idx, ok)


def luhn_valid(
    values: pa.Array | pa.ChunkedArray | list[str | None],
    *,
    lengths: tuple[int, ...] | range = range(1, 33),
) -> pa.BooleanArray:
    """Whether each value is all digits, has one of ``lengths`` and passes the Luhn check."""
    arr = _to_string_array(values)
    out = np.zeros(len(arr), dtype=bool)
    present = set(np.unique(_byte_lengths(arr)).tolist())
    for width in lengths:
        if width not in present:
            continue
        idx, mat = _width_matrix(arr, width)
        if idx.size == 0:
            continue
        digits = mat - np.uint8(48)
        ok = (digits < 10).all(axis=1)
        # From the right: odd positions count as is, even positions are doubled (digit sum).
        doubled_cols = (width - 1 - np.arange(width)) % 2 == 1
        terms = np.where(doubled_cols, _LUHN_DOUBLE_LUT[digits], digits)
        total = (terms.astype(np.float32) @ np.ones(width, dtype=np.float32)).astype(np.int32)
        ok &= total % 10 == 0
        out[idx[ok]] = True
    return pa.array(out, type=pa.bool_())


def bank_card_valid(values: pa.Array | pa.ChunkedArray | list[str | None]) -> pa.BooleanArray:
    """Whether each value is a 16-19 digit card number that passes the Luhn check."""
    return luhn_valid(values, lengths=BANK_CARD_LENGTHS)


def is_valid_resident_id(value: str, *, today: dt.date | None = None) -> bool:
    """Whether ``value`` is a valid GB 11643-1999 identity number (check char, date, area)."""
    if not isinstance(value, str):
        return False
    s = value.strip().upper()
    if len(s) != 18 or not s[:17].isascii() or not s[:17].isdigit():
        return False
    if s[17] not in "0123456789X" or _stdnum_ric.calc_check_digit(s) != s[17]:
        return False
    if int(s[:2]) not in _PROVINCES:
        return False
    try:
        born = dt.date(int(s[6:10]), int(s[10:12]), int(s[12:14]))
    except ValueError:
        return False
    return born.year >= _MIN_BIRTH_YEAR and born <= (today or dt.date.today())


def is_valid_uscc(value: str) -> bool:
    """Whether ``value`` is a valid GB 32100-2015 unified social credit code."""
    if not isinstance(value, str):
        return False
    s = value.strip().upper()
    if len(s) != 18 or any(c not in USCC_ALPHABET for c in s):
        return False
    if s[0] not in _USCC_AUTHORITIES or s[1] not in "123456789" or not s[2:8].isdigit():
        return False
    return _stdnum_uscc.calc_check_digit(s[:17]) == s[17]


def luhn_ok(value: str) -> bool:
    """Whether ``value`` is a non-empty ASCII digit string that passes the Luhn check."""
    if not isinstance(value, str) or not value.isascii() or not value.isdigit():
        return False
    return _stdnum_luhn.is_valid(value)

"""Synthetic city data: the tables of a Zhengzhou-like city for demos, tests and benchmarks.

`generate()` writes ten related tables (enterprise registration, tax, social insurance, housing
fund, utilities, real estate, courts, credit) as Parquet and/or CSV (UTF-8 or GBK, English or
Chinese headers), deterministically for a seed and in bounded memory at any scale.
`iter_batches()` streams one table as Arrow record batches without touching the disk.

Model
-----
`scale` is the number of enterprises. Enterprises are processed in blocks of 1,024 (the last
block may be short); everything about a block - its enterprises, their employees (8 per
enterprise on average), monthly activity, taxes, payments, court cases - is derived from
`numpy.random.default_rng([seed, stream, block])`, so any block can be produced on its own, keys
agree across tables without a key list in memory, and scale N is a prefix of scale M > N for
every complete block. Persons work only for enterprises of their own block.

Row counts are exact functions of the scale N (see `ROW_FORMULAS`, `row_count()`):

    enterprise_registration   N                       one row per enterprise
    tax_filing                24 N                    enterprise x month (2024-01 .. 2025-12)
    tax_credit                3 N                     enterprise x evaluation year (2022-2024)
    social_insurance_unit     24 N                    enterprise x month
    social_insurance_person   192 N                   person x month, persons = 8 N
    housing_fund              6 N                     one account per covered person
    utility_payment           72 N                    enterprise x month x (electricity, water, gas)
    real_estate               3 N                     property registrations
    court_record              ceil(N / 5)             cases against enterprises or persons
    credit_record             ceil(N / 4)             dishonesty, abnormal-operation, penalties

So 10,000,000 rows of `social_insurance_person` need N = 52,084 and 10,000,000 rows of
`utility_payment` need N = 138,889 (`scale_for_rows()`).

The registry extract holds enterprises established before 2023 and alive on 2024-01-01. About a
fifth of them are or become inactive (dormant shells that stay 存续, revoked and deregistered
firms; riskier firms more often); from the month they stop, their revenue, tax, insured
headcount and utility use fall to zero (dormant firms keep a 3 % standby electricity and water
use), which is what an operating-status score learns. A latent risk drives late filing, tax and
social-insurance arrears, overdue utility bills, low tax-credit grades, court cases and credit
records together. Tax data are as extracted on 2026-01-31 (the last period's deadline is
2026-01-15); everything else is as of 2025-12-31.

Identifiers are valid by construction: resident identity numbers follow GB 11643-1999 (birth
area valid in the birth year as in python-stdnum's data, birth date, sequence parity = sex, check
digit), unified social credit codes follow GB 32100-2015 (prefix 91, registration area, a
GB 11714 organization code with its own check character, check character), bank cards are
UnionPay (62...) with a Luhn digit, mobiles are 1[3-9]x. Check digits are computed with numpy
over digit matrices because calling python-stdnum per row would dominate the run time at ten
million rows; the tests compare both on samples. Unique keys (credit codes, identity numbers,
account numbers, certificate, case and decision numbers) come from keyed Feistel permutations
of global indexes into slot layouts, so they never collide within the supported scale.

Dirty rows (`dirty_ratio`) exist only in CSV output; each one is listed with its reason in a
sidecar `<table>.dirty.json` (1-based data-row numbers, header excluded). The kinds, in equal
shares: ``bad_check_digit`` (the table's ID column gets a wrong check character),
``malformed_date`` (impossible month or day, or zero date), ``non_numeric`` (an amount becomes
text such as ``N/A`` or ``12O4.5``), ``ragged_row`` (one delimiter missing or one field extra),
``empty_required`` (the table's required key is blank). Which column each kind spoils is fixed
per table (for example credit_code, filing_deadline, vat_payable and credit_code in tax_filing).
The sidecar is one JSON object: ``table``, ``file``, ``encoding``, ``seed``, ``dirty_ratio``,
``rows`` (a list of ``{"row", "reason", "column", "value"}``; for ragged rows ``column`` is null
and ``value`` is ``missing_delimiter`` or ``extra_field``) and ``counts`` per reason. Rows are
chosen by a keyed hash of the row number, so the same seed spoils the same rows.

All numbers are illustrative orders of magnitude for a provincial capital, not statistics.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from yuanjian.demo import names as N

__all__ = [
    "DEFAULT_SEED",
    "DIRTY_KINDS",
    "MAX_SCALE",
    "ROW_FORMULAS",
    "TABLES",
    "DemoDataError",
    "TableInfo",
    "generate",
    "iter_batches",
    "luhn_check_digits",
    "ric_check_digits",
    "row_count",
    "scale_for_rows",
    "schema",
    "uscc_check_digits",
]

DEFAULT_SEED = 20261203
BLOCK = 1024  # enterprises per block
PERSONS_PER_ENTERPRISE = 8
MONTHS = 24  # observation window 2024-01 .. 2025-12
MAX_SCALE = 2_000_000  # bound for the unique-key slot layouts (16 million persons)
FORMATS = ("parquet", "csv")
CSV_ENCODINGS = ("utf-8", "utf-8-sig", "gbk", "gb18030")
CSV_HEADERS = ("en", "zh")
DIRTY_KINDS = ("bad_check_digit", "malformed_date", "non_numeric", "ragged_row", "empty_required")
WRITE_BATCH_ROWS = 65_536  # rows per Parquet row group and per progress report
CSV_CHUNK_ROWS = 32_768  # rows formatted as text at a time (bounds the str/bytes copies)

_EPOCH = np.datetime64("1970-01-01", "D")
_WINDOW = np.datetime64("2024-01", "M")
_MONTH_START = (_WINDOW + np.arange(MONTHS + 1)).astype("datetime64[D]").astype(np.int64)
SNAPSHOT = int((np.datetime64("2025-12-31", "D") - _EPOCH).astype(np.int64))
_EST_MAX = int((np.datetime64("2022-12-31", "D") - _EPOCH).astype(np.int64))
_ADULT_DAYS = 6575  # 18 years; a person born on day d is an adult from d + 6575 on
_PERIODS = [str(_WINDOW + m) for m in range(MONTHS)]  # "2024-01" ...
_NO_DATE = np.iinfo(np.int32).min

# Social insurance: illustrative contribution base floor/cap per contribution year (the base year
# changes every July) and combined pension + medical + unemployment + injury rates.
_SI_FLOOR = np.array([3800.0] * 6 + [3950.0] * 12 + [4100.0] * 6)
_SI_CAP = np.array([19000.0] * 6 + [19750.0] * 12 + [20500.0] * 6)
_SI_UNIT_RATE = 0.247
_SI_PERSON_RATE = 0.103
_PRICES = (0.68, 4.10, 3.35)  # yuan per kWh, per m3 water, per m3 gas
_UTILITY_KINDS = ("electricity", "water", "gas")
_UTILITY_UNITS = ("kWh", "m3", "m3")


class DemoDataError(ValueError):
    """Bad arguments to the generator; `field` names the offending parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class TableInfo:
    """What `generate()` wrote for one table."""

    name: str
    rows: int
    columns: tuple[str, ...]
    paths: dict[str, Path]  # "parquet", "csv" and, with dirty rows, "dirty" (the sidecar)
    sha256: dict[str, str]  # same keys as paths
    dirty: dict[str, int] = field(default_factory=dict)  # kind -> rows injected into the CSV


# --------------------------------------------------------------------------------------------
# Keyed permutations, slot layouts and check digits
# --------------------------------------------------------------------------------------------

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finalizer over uint64 (wrapping arithmetic is intended)."""
    z = z.astype(np.uint64, copy=True)
    z ^= z >> np.uint64(30)
    z *= _M1
    z ^= z >> np.uint64(27)
    z *= _M2
    z ^= z >> np.uint64(31)
    return z


def _key64(*parts: int) -> np.uint64:
    return np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0]


class _Perm:
    """A keyed bijection of [0, domain): a balanced Feistel network with cycle walking."""

    def __init__(self, domain: int, *key: int) -> None:
        self.domain = domain
        bits = max(2, (domain - 1).bit_length())
        bits += bits % 2
        self.half = np.uint64(bits // 2)
        self.mask = np.uint64((1 << (bits // 2)) - 1)
        self.keys = np.random.SeedSequence(list(key)).generate_state(4, np.uint64)

    def _round(self, x: np.ndarray) -> np.ndarray:
        left, right = x >> self.half, x & self.mask
        for k in self.keys:
            left, right = right, left ^ (_mix(right ^ k) & self.mask)
        return (left << self.half) | right

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if x.size and (x.min() < 0 or x.max() >= self.domain):
            raise ValueError("index outside the permutation domain")
        out = self._round(x.astype(np.uint64))
        bad = out >= np.uint64(self.domain)
        while bad.any():  # cycle walking: at most a few rounds because domain > 2**bits / 4
            out[bad] = self._round(out[bad])
            bad = out >= np.uint64(self.domain)
        return out.astype(np.int64)


class _Slots:
    """Cells with capacities laid end to end; a slot number maps to (cell, offset)."""

    def __init__(self, capacities: np.ndarray) -> None:
        self.capacities = capacities.astype(np.int64)
        self.ends = np.cumsum(self.capacities)
        self.total = int(self.ends[-1])

    def locate(self, slot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cell = np.searchsorted(self.ends, slot, side="right")
        return cell, slot - (self.ends[cell] - self.capacities[cell])


_RIC_WEIGHTS = np.array([pow(2, 17 - i, 11) for i in range(17)], dtype=np.int64)
_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = np.array([pow(3, i, 31) for i in range(17)], dtype=np.int64)
_ORG_WEIGHTS = np.array([3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
_ASCII_USCC = np.full(128, -1, dtype=np.int64)
for _i, _c in enumerate(_USCC_ALPHABET):
    _ASCII_USCC[ord(_c)] = _i
_ASCII_ORG = np.full(128, -1, dtype=np.int64)  # GB 11714: digits, then A=10 .. Z=35
for _i in range(10):
    _ASCII_ORG[48 + _i] = _i
for _i in range(26):
    _ASCII_ORG[65 + _i] = 10 + _i


def ric_check_digits(body: np.ndarray) -> np.ndarray:
    """GB 11643-1999 check characters (ASCII codes) for an (n, 17) array of ASCII digits."""
    total = ((body.astype(np.int64) - 48) * _RIC_WEIGHTS).sum(axis=1)
    check = (12 - total % 11) % 11
    return np.where(check == 10, ord("X"), 48 + check).astype(np.uint8)


def uscc_check_digits(body: np.ndarray) -> np.ndarray:
    """GB 32100-2015 check characters (ASCII codes) for an (n, 17) array of ASCII characters."""
    values = _ASCII_USCC[body.astype(np.int64)]
    if (values < 0).any():
        raise ValueError("character outside the unified social credit code alphabet")
    check = (31 - (values * _USCC_WEIGHTS).sum(axis=1) % 31) % 31
    return np.frombuffer(_USCC_ALPHABET.encode(), dtype=np.uint8)[check]


def _org_check_digits(body: np.ndarray) -> np.ndarray:
    """GB 11714 organization-code check characters for an (n, 8) ASCII array."""
    check = 11 - (_ASCII_ORG[body.astype(np.int64)] * _ORG_WEIGHTS).sum(axis=1) % 11
    return np.where(check == 10, ord("X"), np.where(check == 11, 48, 48 + check)).astype(np.uint8)


def luhn_check_digits(body: np.ndarray) -> np.ndarray:
    """Luhn check digits (ASCII codes) for an (n, k) array of ASCII digits."""
    digits = body.astype(np.int64)[:, ::-1] - 48
    doubled = digits * np.where(np.arange(digits.shape[1]) % 2 == 0, 2, 1)
    doubled = np.where(doubled > 9, doubled - 9, doubled)
    return (48 + (10 - doubled.sum(axis=1) % 10) % 10).astype(np.uint8)


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """Zero-padded decimal digits of non-negative integers as an (n, width) ASCII array."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (48 + (values.astype(np.int64)[:, None] // powers) % 10).astype(np.uint8)


def _ascii(strings: Sequence[str]) -> np.ndarray:
    """Equal-length ASCII strings as an (n, width) uint8 array."""
    return np.frombuffer("".join(strings).encode("ascii"), dtype=np.uint8).reshape(len(strings), -1)


def _fixed(mat: np.ndarray) -> pa.Array:
    """An (n, width) ASCII array as an Arrow string array (built from buffers, no copies)."""
    n, width = mat.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    data = np.ascontiguousarray(mat, dtype=np.uint8)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


# --------------------------------------------------------------------------------------------
# Pools and static layouts
# --------------------------------------------------------------------------------------------


def _p(weights: Iterable[float]) -> np.ndarray:
    w = np.asarray(list(weights), dtype=np.float64)
    return w / w.sum()


def _pool(values: Sequence[str]) -> pa.Array:
    return pa.array(list(values), type=pa.string())


_AREA_P = _p(a.weight for a in N.AREAS)
_IND_P = _p(i.weight for i in N.INDUSTRIES)
_TYPE_P = _p(t[1] for t in N.ENTERPRISE_TYPES)
_SURNAME_P = _p(s[1] for s in N.SURNAMES)
_AREA_CODES = _ascii([a.code for a in N.AREAS])
_IND_WAGE = np.array([i.wage for i in N.INDUSTRIES])
_IND_REVENUE = np.array([i.revenue for i in N.INDUSTRIES])
_IND_CAPITAL = np.array([i.capital for i in N.INDUSTRIES])
_IND_VAT = np.array([i.vat_rate for i in N.INDUSTRIES])
_IND_MARGIN = np.array([i.margin for i in N.INDUSTRIES])
_IND_UTIL = np.array([[i.electricity, i.water, i.gas] for i in N.INDUSTRIES])
_IND_SEASON = np.array([N.SEASONS[i.season] for i in N.INDUSTRIES])  # (industries, 12)
_IND_MANUFACTURING = np.array([i.section == "C" for i in N.INDUSTRIES])
_UTIL_SEASON = np.array([N.ELECTRICITY_SEASON, N.WATER_SEASON, N.GAS_SEASON])  # (3, 12)
_TYPE_STYLE = [t[2] for t in N.ENTERPRISE_TYPES]

_P_SURNAME = _pool([s[0] for s in N.SURNAMES])
_P_GIVEN = _pool([*N.GIVEN_MALE, *N.GIVEN_FEMALE, ""])
_N_MALE, _N_FEMALE = len(N.GIVEN_MALE), len(N.GIVEN_FEMALE)
_P_TRADE = _pool(N.TRADE_CHARS)
_P_PERIOD = _pool(_PERIODS)
_P_QUARTER = _pool([f"{2024 + m // 12}Q{m % 12 // 3 + 1}" for m in range(MONTHS)])
_P_TYPE = _pool([t[0] for t in N.ENTERPRISE_TYPES])
_P_STATUS = _pool(N.REGISTRY_STATUS)
_P_SECTION = _pool([i.section for i in N.INDUSTRIES])
_P_IND_CODE = _pool([i.code for i in N.INDUSTRIES])
_P_IND_NAME = _pool([i.name for i in N.INDUSTRIES])
_P_AREA_CODE = _pool([a.code for a in N.AREAS])
_P_AREA_PREFIX = _pool(["河南省" + a.full_name for a in N.AREAS])
_P_MARKET = _pool([a.market_authority for a in N.AREAS])
_P_TAX_AUTH = _pool([a.tax_authority for a in N.AREAS])
_P_COURT = _pool([a.court for a in N.AREAS])
_P_COURT_CODE = _pool([a.court_code for a in N.AREAS])
_P_ROAD = _pool([s + r for s in N.ROAD_STEMS for r in N.ROAD_SUFFIXES])
_P_BUILDING = _pool([s + r for s in N.BUILDING_STEMS for r in N.BUILDING_SUFFIXES])
_P_COMMUNITY = _pool([s + r for s in N.BUILDING_STEMS for r in N.COMMUNITY_SUFFIXES])
_P_EMPTY = pa.scalar("", pa.string())


def _company_prefix(area: N.Area) -> str:
    """How an enterprise of the area starts its name: 郑州 / 巩义市 / 开封 ..."""
    if area.city == "郑州市" and area.district.endswith(("市", "县")):
        return area.district
    return area.city.removesuffix("市")


def _district_short(area: N.Area) -> str:
    name = area.district.removesuffix("回族区")
    return name[:-1] if len(name) > 2 else name


# Name prefix pool: per area [河南, company prefix, full district (for sole proprietorships)].
_P_NAME_PREFIX = _pool([p for a in N.AREAS for p in ("河南", _company_prefix(a), a.full_name)])
_P_IND_WORD = _pool([w for i in N.INDUSTRIES for w in i.words[:2]])  # two words per industry
_SOLE_SUFFIXES = ("商行", "经营部", "中心")
# Name suffix pool: company, joint stock, three sole-proprietorship forms, partnership, then one
# branch suffix per area.
_P_NAME_SUFFIX = _pool(
    ["有限公司", "股份有限公司", *_SOLE_SUFFIXES, "中心（普通合伙）"]
    + [f"有限公司{_district_short(a)}分公司" for a in N.AREAS]
)


@cache
def _person_slots() -> tuple[_Slots, int, int]:
    """Capacity of (birth area, birth day) cells for identity numbers: 999 sequences at most."""
    first = int((np.datetime64("1960-01-01", "D") - _EPOCH).astype(np.int64))
    last = int((np.datetime64("2003-12-31", "D") - _EPOCH).astype(np.int64))
    days = np.arange(first, last + 1)
    years = days.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970
    year_w = 0.3 + np.exp(-(((years - 1987) / 11.0) ** 2))
    area_w = np.array([e[4] for e in N.BIRTH_AREAS])
    valid = np.array(
        [
            [(s is None or y >= s) and (e is None or y <= e) for y in range(1960, 2004)]
            for _, _, s, e, _ in N.BIRTH_AREAS
        ]
    )[:, years - 1960]
    weight = area_w[:, None] * year_w[None, :] * valid
    cap = np.floor(999 * weight / weight.max()).astype(np.int64)
    return _Slots(cap.ravel()), len(days), first


_BIRTH_CODES = _ascii([e[0] for e in N.BIRTH_AREAS])


@cache
def _perm(domain: int, *key: int) -> _Perm:
    return _Perm(domain, *key)


# Permutation domains (fixed, so that data do not depend on the scale) and their key tags.
_ORG_DIGIT_DOMAIN = 10**8
_ORG_MA_DOMAIN = 31**6
_ACCOUNT_DOMAIN = 10**8
_CERT_YEARS = 10  # certificates 2016 .. 2025, 7-digit sequence per year
_COURT_YEARS = 6  # cases 2020 .. 2025
_COURT_SEQ = 99_999
_CREDIT_YEARS = 7  # decisions 2019 .. 2025
_CREDIT_ROWS_PER_BLOCK = 257  # ceil(1024 / 4) + 1, the stride of credit-row slot indexes


@cache
def _credit_slots() -> _Slots:
    # (year, kind) cells for abnormal-operation, penalty and tax-violation decision numbers.
    return _Slots(np.tile(np.array([99_999, 99_999, 20_000]), _CREDIT_YEARS))


# --------------------------------------------------------------------------------------------
# Block state: enterprises, persons and their monthly histories
# --------------------------------------------------------------------------------------------


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _year_of(days: np.ndarray) -> np.ndarray:
    return days.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970


def _year_start(years: np.ndarray) -> np.ndarray:
    return (years - 1970).astype("datetime64[Y]").astype("datetime64[D]").astype(np.int64)


def _round_capital(x: np.ndarray) -> np.ndarray:
    """Two significant digits, as registered capital usually is (30, 150, 2,000 ...)."""
    step = 10.0 ** (np.floor(np.log10(np.maximum(x, 1e-9))) - 1)
    return np.round(np.round(x / step) * step, 2)


_SURNAME_CDF = np.cumsum(_SURNAME_P)


@cache
def _key(*parts: int) -> np.uint64:
    return _key64(*parts)


def _uniform(h: np.ndarray) -> np.ndarray:
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _identity(seed: int, g: np.ndarray) -> dict[str, np.ndarray]:
    """Identity of persons with global indexes `g`, a pure function of (seed, g).

    The birth area, birth day and sequence come from a keyed permutation into the slot layout
    (so identity numbers never repeat); names come from hashes, so the identity of a legal
    representative can be computed without generating the rest of the block.
    """
    slots, n_days, day0 = _person_slots()
    cell, offset = slots.locate(_perm(slots.total, seed, 101)(g))
    seq = offset + 1
    male = seq % 2 == 1
    h1 = _mix(g.astype(np.uint64) ^ _key(seed, 108))
    h2, h3 = _mix(h1 ^ np.uint64(1)), _mix(h1 ^ np.uint64(2))
    surname = np.minimum(
        np.searchsorted(_SURNAME_CDF, _uniform(h1), side="right"), len(_SURNAME_CDF) - 1
    )
    pick = lambda h: np.where(  # noqa: E731 - a sex-specific character pool index
        male,
        (h % np.uint64(_N_MALE)).astype(np.int64),
        _N_MALE + (h % np.uint64(_N_FEMALE)).astype(np.int64),
    )
    two = _uniform(h3) < 0.72
    return {
        "area": cell // n_days,
        "birth": day0 + cell % n_days,
        "seq": seq,
        "male": male,
        "surname": surname,
        "given1": pick(h2),
        "given2": np.where(two, pick(h3 >> np.uint64(7)), _N_MALE + _N_FEMALE),
    }


def _ric_strings(area: np.ndarray, birth: np.ndarray, seq: np.ndarray) -> pa.Array:
    """Resident identity numbers: birth area, YYYYMMDD, sequence, check character."""
    day = birth.astype("datetime64[D]")
    month = day.astype("datetime64[M]")
    months = month.astype(np.int64)
    yyyymmdd = (
        (months // 12 + 1970) * 10_000
        + (months % 12 + 1) * 100
        + (day - month.astype("datetime64[D]")).astype(np.int64)
        + 1
    )
    body = np.hstack([_BIRTH_CODES[area], _digits(yyyymmdd, 8), _digits(seq, 3)])
    return _fixed(np.hstack([body, ric_check_digits(body)[:, None]]))


def _name_strings(surname: np.ndarray, given1: np.ndarray, given2: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(
        _P_SURNAME.take(pa.array(surname)),
        _P_GIVEN.take(pa.array(given1)),
        _P_GIVEN.take(pa.array(given2)),
        "",
    )


class _Block:
    """Everything derived for one block of enterprises; computed lazily and shared by tables."""

    def __init__(self, seed: int, block: int, lo: int, hi: int) -> None:
        self.seed, self.block, self.lo, self.hi = seed, block, lo, hi
        self.n = hi - lo

    def rng(self, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, stream, self.block])

    # -- enterprises and persons (stream 1) ----------------------------------------------------
    @cached_property
    def core(self) -> dict[str, Any]:
        """Enterprises of the block and the allocation of persons to them (stream 1)."""
        rng, n = self.rng(1), self.n
        c: dict[str, Any] = {}
        c["area"] = rng.choice(len(N.AREAS), n, p=_AREA_P)
        c["industry"] = rng.choice(len(N.INDUSTRIES), n, p=_IND_P)
        c["etype"] = rng.choice(len(N.ENTERPRISE_TYPES), n, p=_TYPE_P)
        size = rng.standard_normal(n) + 0.5 * _IND_MANUFACTURING[c["industry"]]
        risk = 0.85 * rng.standard_normal(n) - 0.35 * size  # larger firms are safer
        c["size"], c["risk"] = size, risk
        # fate: 0 active, 1 dormant (still 存续), 2 revoked (吊销), 3 deregistered (注销)
        e = np.exp(0.6 * risk - 0.18)
        p_dormant, p_revoked, p_dereg = 0.09 * e, 0.04 * e, 0.07 * e
        u = rng.random(n)
        fate = np.zeros(n, dtype=np.int64)
        fate[u < p_dormant + p_revoked + p_dereg] = 3
        fate[u < p_dormant + p_revoked] = 2
        fate[u < p_dormant] = 1
        c["fate"] = fate
        end = np.full(n, MONTHS, dtype=np.int64)
        shell = rng.random(n) < 0.35
        end = np.where(fate == 1, np.where(shell, 0, rng.integers(1, 21, n)), end)
        end = np.where(fate == 2, rng.integers(0, 16, n), end)
        end = np.where(fate == 3, rng.integers(1, 23, n), end)
        c["end"] = end
        status_month = np.where(
            fate == 2,
            np.minimum(end + rng.integers(4, 11, n), MONTHS - 1),
            np.minimum(end + rng.integers(0, 4, n), MONTHS - 1),
        )
        status_day = _MONTH_START[status_month] + rng.integers(0, 28, n)
        c["status_month"] = np.where(fate >= 2, status_month, MONTHS)
        c["status_date"] = np.where(fate >= 2, status_day, _NO_DATE)
        c["status"] = np.select([fate == 2, fate == 3], [1, 2], 0)
        age_days = (rng.exponential(7.0, n) * 365.25).astype(np.int64)
        c["est_raw"] = _EST_MAX - np.minimum(age_days, 30 * 365)
        c["capital"] = _IND_CAPITAL[c["industry"]] * np.exp(1.1 * rng.standard_normal(n))
        c["revenue"] = _IND_REVENUE[c["industry"]] * np.exp(
            0.9 * size + 0.5 * rng.standard_normal(n)
        )
        c["term_u"] = rng.random(n)
        c["term_years"] = rng.choice(np.array([20, 30, 50]), n)
        c["approval_u"] = rng.random(n)
        c["prefix_kind"] = (rng.random(n) < 0.25).astype(np.int64)  # 1: "河南"
        c["trade1"] = rng.integers(0, len(N.TRADE_CHARS), n)
        c["trade2"] = rng.integers(0, len(N.TRADE_CHARS), n)
        c["word"] = rng.integers(0, 2, n)
        c["sole_suffix"] = rng.integers(0, len(_SOLE_SUFFIXES), n)
        c["road"] = rng.integers(0, len(_P_ROAD), n)
        c["house_no"] = rng.integers(1, 400, n)
        c["building"] = np.where(rng.random(n) < 0.6, rng.integers(0, len(_P_BUILDING), n), -1)
        c["floor"] = rng.integers(1, 31, n)
        c["room"] = rng.integers(1, 21, n)
        c["phone"] = self._mobiles(rng, n)

        # Persons: every enterprise employs at least one (its legal representative).
        n_p = PERSONS_PER_ENTERPRISE * n
        w = np.exp(1.1 * size) * np.where(end == 0, 0.3, 1.0)
        counts = 1 + rng.multinomial(n_p - n, w / w.sum())
        employer = np.repeat(np.arange(n), counts)
        first = np.cumsum(counts) - counts
        c["headcount"], c["legal_rep"] = counts, first
        c["p_employer"] = employer
        c["p_global"] = self.block * BLOCK * PERSONS_PER_ENTERPRISE + rng.permutation(n_p)
        # Legal representatives are adults when the enterprise is founded.
        rep = _identity(self.seed, c["p_global"][first])
        c["rep"] = rep
        rep_adult = rep["birth"] + _ADULT_DAYS + rng.integers(0, 3 * 365, n)
        c["est"] = np.minimum(np.maximum(c["est_raw"], rep_adult), _EST_MAX)
        c["est"] = np.maximum(c["est"], rep["birth"] + _ADULT_DAYS)
        return c

    @cached_property
    def persons(self) -> dict[str, np.ndarray]:
        """Employees of the block (stream 5): identity, wage and job history."""
        c, rng = self.core, self.rng(5)
        size, end, counts = c["size"], c["end"], c["headcount"]
        employer, first = c["p_employer"], c["legal_rep"]
        n_p = len(employer)
        p = {f"p_{k}": v for k, v in _identity(self.seed, c["p_global"]).items()}
        age = 2024 - _year_of(p["p_birth"])
        age_factor = np.exp(-(((age - 42) / 18.0) ** 2) * 0.5)
        base = _IND_WAGE[c["industry"][employer]] * np.exp(
            0.15 * size[employer] + 0.35 * rng.standard_normal(n_p) + 0.3 * (age_factor - 0.7)
        )
        at_floor = rng.random(n_p) < np.where(counts[employer] < 10, 0.45, 0.2)
        p["p_base"] = np.where(at_floor, _SI_FLOOR[0], np.clip(base, _SI_FLOOR[0], _SI_CAP[0]))
        # Job changes: voluntary moves, moves after the employer stops, and exits.
        p["p_quit"] = np.where(rng.random(n_p) < 0.07, rng.integers(1, MONTHS, n_p), MONTHS)
        # Late joiners (not legal representatives) are uninsured until they start.
        join_m = np.where(rng.random(n_p) < 0.08, rng.integers(1, MONTHS, n_p), 0)
        join_m[first] = 0
        p["p_join"] = join_m
        switch = np.where(rng.random(n_p) < 0.10, rng.integers(1, MONTHS, n_p), MONTHS)
        forced = (end[employer] < MONTHS) & (rng.random(n_p) < 0.6)
        switch = np.where(
            forced, np.minimum(switch, end[employer] + rng.integers(0, 4, n_p)), switch
        )
        active = np.flatnonzero(end == MONTHS)
        if active.size:
            aw = np.exp(1.1 * size[active])
            employer2 = active[rng.choice(active.size, n_p, p=aw / aw.sum())]
        else:
            employer2 = employer.copy()
        p["p_switch"] = np.where((switch >= MONTHS) | (employer2 == employer), MONTHS, switch)
        p["p_employer2"] = employer2
        p["p_base2"] = np.clip(
            p["p_base"] * np.exp(rng.normal(0.05, 0.15, n_p)), _SI_FLOOR[0], _SI_CAP[0]
        )
        return p

    @staticmethod
    def _mobiles(rng: np.random.Generator, n: int) -> np.ndarray:
        prefixes = _ascii(N.MOBILE_PREFIXES)[rng.integers(0, len(N.MOBILE_PREFIXES), n)]
        return np.hstack([prefixes, _digits(rng.integers(0, 10**8, n), 8)])

    # -- identifiers --------------------------------------------------------------------------
    @cached_property
    def credit_codes(self) -> pa.Array:
        c = self.core
        idx = np.arange(self.lo, self.hi)
        ma_style = c["est"] >= int((np.datetime64("2015-10-01") - _EPOCH).astype(np.int64))
        old = _digits(_perm(_ORG_DIGIT_DOMAIN, self.seed, 102)(idx), 8)
        ma_value = _perm(_ORG_MA_DOMAIN, self.seed, 103)(idx)
        ma_digits = (ma_value[:, None] // 31 ** np.arange(5, -1, -1)) % 31
        alphabet = np.frombuffer(_USCC_ALPHABET.encode(), dtype=np.uint8)
        ma = np.hstack([np.tile(np.frombuffer(b"MA", np.uint8), (self.n, 1)), alphabet[ma_digits]])
        org = np.where(ma_style[:, None], ma, old)
        org = np.hstack([org, _org_check_digits(org)[:, None]])
        head = np.tile(np.frombuffer(b"91", np.uint8), (self.n, 1))
        body = np.hstack([head, _AREA_CODES[c["area"]], org])
        return _fixed(np.hstack([body, uscc_check_digits(body)[:, None]]))

    @cached_property
    def person_ids(self) -> pa.Array:
        p = self.persons
        return _ric_strings(p["p_area"], p["p_birth"], p["p_seq"])

    @cached_property
    def person_names(self) -> pa.Array:
        p = self.persons
        return _name_strings(p["p_surname"], p["p_given1"], p["p_given2"])

    @cached_property
    def enterprise_names(self) -> pa.Array:
        c = self.core
        style = np.array(_TYPE_STYLE)[c["etype"]]
        sole = style == "sole"
        prefix_kind = np.where(sole, 2, np.where(c["prefix_kind"] == 1, 0, 1))
        prefix = _P_NAME_PREFIX.take(c["area"] * 3 + prefix_kind)
        suffix = np.select(
            [style == "joint_stock", sole, style == "partnership", style == "branch"],
            [1, 2 + c["sole_suffix"], 5, 6 + c["area"]],
            0,
        )
        return pc.binary_join_element_wise(
            prefix,
            _P_TRADE.take(c["trade1"]),
            _P_TRADE.take(c["trade2"]),
            _P_IND_WORD.take(c["industry"] * 2 + c["word"]),
            _P_NAME_SUFFIX.take(suffix),
            "",
        )

    @cached_property
    def enterprise_addresses(self) -> pa.Array:
        c = self.core
        building = c["building"]
        has_building = building >= 0
        tail = pc.binary_join_element_wise(
            _P_BUILDING.take(np.maximum(building, 0)),
            pc.cast(pa.array(c["floor"]), pa.string()),
            "层",
            pc.cast(pa.array(c["floor"] * 100 + c["room"]), pa.string()),
            "室",
            "",
        )
        return pc.binary_join_element_wise(
            _P_AREA_PREFIX.take(c["area"]),
            _P_ROAD.take(c["road"]),
            pc.cast(pa.array(c["house_no"]), pa.string()),
            "号",
            pc.if_else(pa.array(has_building), tail, _P_EMPTY),
            "",
        )

    # -- monthly activity ------------------------------------------------------------------------
    @cached_property
    def activity(self) -> np.ndarray:
        """(n, 24) operating level: 1 while operating, tapering to 0 when the firm stops."""
        end = self.core["end"][:, None]
        m = np.arange(MONTHS)[None, :]
        act = np.where(m < end, 1.0, 0.0)
        act = np.where(m == end - 1, 0.5, act)
        return np.where(m == end - 2, 0.8, act)

    @cached_property
    def si_months(self) -> dict[str, np.ndarray]:
        """Person x month social-insurance history (stream 2)."""
        c, p, rng = self.core, self.persons, self.rng(2)
        n = self.n
        m = np.arange(MONTHS)[None, :]
        e1, e2 = c["p_employer"][:, None], p["p_employer2"][:, None]
        switched = m >= p["p_switch"][:, None]
        employer = np.where(switched, e2, e1)
        end = c["end"]
        stopped = (m >= p["p_quit"][:, None]) | (m < p["p_join"][:, None]) | (m >= end[employer])
        # Unit arrears episodes, more likely for risky enterprises.
        has = rng.random(n) < _sigmoid(1.3 * c["risk"] - 3.2)
        start = rng.integers(0, MONTHS, n)
        length = 1 + rng.geometric(0.35, n)
        in_arrears = has[:, None] & (m >= start[:, None]) & (m < (start + length)[:, None])
        unit_arrears = in_arrears & (m < end[:, None])
        status = np.where(stopped, 2, np.where(unit_arrears[employer, m], 1, 0))
        raise_ = np.where(m >= 18, 1.04**2, np.where(m >= 6, 1.04, 1.0))
        base = np.where(switched, p["p_base2"][:, None], p["p_base"][:, None]) * raise_
        at_floor = p["p_base"][:, None] <= _SI_FLOOR[0]
        base = np.where(at_floor & ~switched, _SI_FLOOR[None, :], base)
        base = np.round(np.clip(base, _SI_FLOOR[None, :], _SI_CAP[None, :]))
        base = np.where(status == 2, 0.0, base)
        unit_amt = np.round(base * _SI_UNIT_RATE, 2)
        person_amt = np.round(base * _SI_PERSON_RATE, 2)
        paid = np.where(status == 0, np.round(unit_amt + person_amt, 2), 0.0)
        return {
            "employer": employer,
            "status": status,
            "base": base,
            "unit": unit_amt,
            "person": person_amt,
            "paid": paid,
            "unit_arrears": unit_arrears,
        }

    @cached_property
    def tax_months(self) -> dict[str, np.ndarray]:
        """Enterprise x month tax history (stream 3)."""
        c, rng, n = self.core, self.rng(3), self.n
        m = np.arange(MONTHS)[None, :]
        ind, risk, fate, end = c["industry"], c["risk"], c["fate"], c["end"]
        season = _IND_SEASON[ind][:, np.arange(MONTHS) % 12]
        noise = np.exp(0.3 * rng.standard_normal((n, MONTHS)))
        revenue = c["revenue"][:, None] * season * (1 + 0.004 * m) * noise * self.activity
        small = c["revenue"] < 100_000
        idle = (rng.random((n, MONTHS)) < 0.08) & small[:, None]
        revenue = np.round(np.where(idle, 0.0, revenue), 2)
        general = (c["revenue"] * 12 > 5_000_000) | (rng.random(n) < 0.25)
        value_added = rng.uniform(0.15, 0.35, n)
        vat = np.where(
            general[:, None],
            revenue * (_IND_VAT[ind] * value_added)[:, None],
            np.where(revenue > 100_000, revenue * 0.01, 0.0),
        )
        vat = np.round(vat, 2)
        quarter_end = (np.arange(MONTHS) % 3 == 2)[None, :]
        q_revenue = np.repeat(revenue.reshape(n, MONTHS // 3, 3).sum(axis=2), 3, axis=1)
        profit = q_revenue * _IND_MARGIN[ind][:, None] * rng.normal(1.0, 0.6, (n, MONTHS))
        rate = np.where(profit * 4 <= 3_000_000, 0.05, 0.25)
        income_tax = np.round(np.where(quarter_end, np.maximum(profit, 0.0) * rate, 0.0), 2)
        avg_invoice = np.exp(rng.normal(np.log(8000), 0.6, n))
        invoices = rng.poisson(revenue / avg_invoice[:, None])
        invoice_amount = np.where(
            invoices > 0, np.round(revenue * rng.uniform(0.85, 1.0, (n, MONTHS)), 2), 0.0
        )
        # Filing status: 0 正常申报, 1 零申报, 2 逾期申报, 3 未申报, 4 已注销
        late = rng.random((n, MONTHS)) < _sigmoid(1.2 * risk - 3.5)[:, None]
        stopped = m >= end[:, None]
        dormant_zero = rng.random((n, MONTHS)) < 0.65
        status = np.where(late, 2, 0)
        status = np.where(revenue == 0, 1, status)
        status = np.where(stopped & (fate == 1)[:, None], np.where(dormant_zero, 1, 3), status)
        status = np.where(stopped & (fate >= 2)[:, None], 3, status)
        status = np.where((fate == 3)[:, None] & (m > c["status_month"][:, None]), 4, status)
        deadline = _MONTH_START[1 : MONTHS + 1][None, :] + 14
        filed = np.where(
            status == 2,
            deadline + rng.integers(1, 91, (n, MONTHS)),
            deadline - rng.integers(0, 15, (n, MONTHS)),
        )
        # The tax extract is taken on 2026-01-31: later filings have not happened yet.
        unfiled = (status == 2) & (filed > SNAPSHOT + 31)
        status = np.where(unfiled, 3, status)
        filed = np.where(status >= 3, _NO_DATE, filed)
        # Arrears: an episode of unpaid tax, sticky for firms that stopped operating.
        has = (rng.random(n) < _sigmoid(1.4 * risk - 2.8)) | (fate == 2)
        start = np.where(
            fate == 2, np.minimum(rng.integers(0, MONTHS, n), end), rng.integers(0, MONTHS, n)
        )
        length = 1 + rng.geometric(0.25, n)
        episode = has[:, None] & (m >= start[:, None]) & (m < (start + length)[:, None])
        lump = np.exp(rng.normal(np.log(20_000), 1.0, n))
        unpaid = np.where(episode, (vat + income_tax) * rng.uniform(0.5, 1.0, (n, MONTHS)), 0.0)
        owed = lump[:, None] + np.cumsum(unpaid, axis=1)
        sticky = has[:, None] & (fate >= 1)[:, None] & (m >= start[:, None])
        arrears = np.round(np.where(episode | sticky, owed, 0.0), 2)
        arrears = np.where(status == 4, 0.0, arrears)
        return {
            "revenue": revenue,
            "vat": vat,
            "income_tax": income_tax,
            "invoices": invoices,
            "invoice_amount": invoice_amount,
            "status": status,
            "deadline": np.broadcast_to(deadline, (n, MONTHS)),
            "filed": filed,
            "arrears": arrears,
            "general": general,
        }

    # -- parties for court and credit records ----------------------------------------------------
    def pick(
        self,
        rng: np.random.Generator,
        weights: np.ndarray,
        ready: np.ndarray,
        when: np.ndarray,
    ) -> np.ndarray:
        """Weighted picks whose `ready` day (founding, adulthood) is on or before `when`.

        Unfit picks are redrawn a few times, then replaced by the earliest-ready candidate;
        callers that need certainty check `ready[pick] <= when` afterwards.
        """
        p = weights / weights.sum()
        pick = rng.choice(len(weights), len(when), p=p)
        for _ in range(4):
            bad = ready[pick] > when
            if not bad.any():
                break
            pick[bad] = rng.choice(len(weights), int(bad.sum()), p=p)
        return np.where(ready[pick] > when, int(np.argmin(ready)), pick)

    @cached_property
    def person_ready(self) -> np.ndarray:
        return self.persons["p_birth"] + _ADULT_DAYS

    @cached_property
    def court(self) -> dict[str, np.ndarray]:
        """Court cases of this block (stream 4); shared with the credit records."""
        c, rng = self.core, self.rng(4)
        r0, r1 = _row_range(_SPECS["court_record"].per_enterprise, self.lo, self.hi)
        k = np.arange(r0, r1)
        cells = _COURT_YEARS * 2
        u = _perm(cells * _COURT_SEQ, self.seed, 104)(k)
        cell, seq = u // _COURT_SEQ, u % _COURT_SEQ + 1
        year, kind = 2020 + cell // 2, cell % 2  # kind 0: 民初, 1: 执
        start = _year_start(year)
        filing = np.minimum(start + rng.integers(0, 365, len(k)), SNAPSHOT)
        weights = np.exp(1.2 * c["risk"]) * np.where(np.isin(c["fate"], (1, 2)), 3.0, 1.0)
        ent = self.pick(rng, weights, c["est"] + 90, filing)
        is_person = (rng.random(len(k)) < 0.2) | (c["est"][ent] + 90 > filing)
        reps = c["legal_rep"]
        pw = np.full(len(c["p_employer"]), 0.3)
        pw[reps] += np.exp(1.2 * c["risk"])
        person = self.pick(rng, pw, self.person_ready, filing)
        amount = np.exp(
            np.where(kind == 0, np.log(60_000), np.log(120_000))
            + np.where(kind == 0, 1.2, 1.3) * rng.standard_normal(len(k))
        )
        amount = np.round(amount * np.where(is_person, 0.5, np.exp(0.4 * c["size"][ent])), 2)
        duration = np.where(
            kind == 0, 30 + rng.exponential(150, len(k)), 60 + rng.exponential(200, len(k))
        )
        close = filing + duration.astype(np.int64)
        closed = close <= SNAPSHOT
        risky_party = np.where(is_person, 0.5, _sigmoid(c["risk"][ent]))
        terminated = rng.random(len(k)) < 0.3 + 0.5 * risky_party
        # status: 0 审理中, 1 已结案, 2 执行中, 3 执行完毕, 4 终结本次执行
        status = np.where(
            kind == 0, np.where(closed, 1, 0), np.where(closed, np.where(terminated, 4, 3), 2)
        )
        area = np.where(is_person, c["area"][c["p_employer"][person]], c["area"][ent])
        return {
            "year": year,
            "kind": kind,
            "seq": seq,
            "filing": filing,
            "is_person": is_person,
            "ent": ent,
            "person": person,
            "amount": amount,
            "status": status,
            "close": np.where(closed, close, _NO_DATE),
            "area": area,
            "cause": rng.integers(0, len(N.CIVIL_CAUSES), len(k)),
        }


# --------------------------------------------------------------------------------------------
# Arrow helpers
# --------------------------------------------------------------------------------------------


def _f64(x: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    return pa.array(np.ascontiguousarray(x, dtype=np.float64), mask=null)


def _i32(x: np.ndarray) -> pa.Array:
    return pa.array(np.ascontiguousarray(x, dtype=np.int32))


def _date(days: np.ndarray) -> pa.Array:
    days = np.ascontiguousarray(days).astype(np.int64)
    null = days == _NO_DATE
    return pa.array(
        np.where(null, 0, days).astype(np.int32),
        type=pa.date32(),
        mask=null if null.any() else None,
    )


def _bool(x: np.ndarray) -> pa.Array:
    return pa.array(np.ascontiguousarray(x, dtype=bool))


def _int_str(x: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(np.ascontiguousarray(x, dtype=np.int64)), pa.string())


def _take(pool: pa.Array, idx: np.ndarray) -> pa.Array:
    return pool.take(pa.array(np.ascontiguousarray(idx, dtype=np.int64)))


def _join(*parts: pa.Array | str) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _choose(mask: np.ndarray, a: pa.Array, b: pa.Array) -> pa.Array:
    return pc.if_else(pa.array(np.ascontiguousarray(mask, dtype=bool)), a, b)


# --------------------------------------------------------------------------------------------
# Table builders: (block, first global row, end row) -> column arrays
# --------------------------------------------------------------------------------------------

Columns = dict[str, pa.Array]


def _build_enterprise(b: _Block, r0: int, r1: int) -> Columns:
    c = b.core
    r = c["rep"]
    approval = np.where(
        c["approval_u"] < 0.55,
        c["est"] + (c["approval_u"] / 0.55 * (SNAPSHOT - c["est"])).astype(np.int64),
        c["est"],
    )
    approval = np.where(
        c["status_date"] != _NO_DATE, np.minimum(approval, c["status_date"]), approval
    )
    term_end = np.where(
        c["term_u"] < 0.3, c["est"] + c["term_years"] * 365 + c["term_years"] // 4, _NO_DATE
    )
    style = np.array(_TYPE_STYLE)[c["etype"]]
    factor = np.select(
        [np.isin(style, ["sole", "partnership"]), style == "joint_stock", c["etype"] == 2],
        [0.3, 5.0, 3.0],
        1.0,
    )
    capital = _round_capital(np.clip(c["capital"] * factor, 1.0, 500_000.0))
    return {
        "credit_code": b.credit_codes,
        "enterprise_name": b.enterprise_names,
        "enterprise_type": _take(_P_TYPE, c["etype"]),
        "legal_rep_name": _name_strings(r["surname"], r["given1"], r["given2"]),
        "legal_rep_id": _ric_strings(r["area"], r["birth"], r["seq"]),
        "legal_rep_phone": _fixed(c["phone"]),
        "registered_capital": _f64(capital, style == "branch"),
        "establish_date": _date(c["est"]),
        "approval_date": _date(approval),
        "business_term_end": _date(term_end),
        "status": _take(_P_STATUS, c["status"]),
        "status_date": _date(c["status_date"]),
        "industry_section": _take(_P_SECTION, c["industry"]),
        "industry_code": _take(_P_IND_CODE, c["industry"]),
        "industry_name": _take(_P_IND_NAME, c["industry"]),
        "area_code": _take(_P_AREA_CODE, c["area"]),
        "address": b.enterprise_addresses,
        "registration_authority": _take(_P_MARKET, c["area"]),
    }


_FILING_STATUS = _pool(["正常申报", "零申报", "逾期申报", "未申报", "已注销"])
_TAXPAYER_TYPE = _pool(["小规模纳税人", "一般纳税人"])


def _build_tax_filing(b: _Block, r0: int, r1: int) -> Columns:
    t, n = b.tax_months, b.n
    ent = np.repeat(np.arange(n), MONTHS)
    month = np.tile(np.arange(MONTHS), n)
    quarter_end = month % 3 == 2
    return {
        "credit_code": b.credit_codes.take(pa.array(ent)),
        "tax_period": _take(_P_PERIOD, month),
        "taxpayer_type": _take(_TAXPAYER_TYPE, t["general"][ent].astype(np.int64)),
        "sales_revenue": _f64(t["revenue"].ravel()),
        "vat_payable": _f64(t["vat"].ravel()),
        "income_tax": _f64(t["income_tax"].ravel()),
        "income_tax_period": pc.if_else(
            pa.array(quarter_end), _take(_P_QUARTER, month), pa.scalar(None, pa.string())
        ),
        "invoice_count": _i32(t["invoices"].ravel()),
        "invoice_amount": _f64(t["invoice_amount"].ravel()),
        "filing_deadline": _date(t["deadline"].ravel()),
        "filing_date": _date(t["filed"].ravel()),
        "filing_status": _take(_FILING_STATUS, t["status"].ravel()),
        "arrears_amount": _f64(t["arrears"].ravel()),
        "tax_authority": _take(_P_TAX_AUTH, b.core["area"][ent]),
    }


_GRADES = _pool(["A", "B", "M", "C", "D"])
_EVAL_STATUS = _pool(["参评", "不参评"])
_EVAL_YEARS = (2022, 2023, 2024)


def _build_tax_credit(b: _Block, r0: int, r1: int) -> Columns:
    c, t, rng, n = b.core, b.tax_months, b.rng(13), b.n
    risk, fate = c["risk"], c["fate"]
    scores, grades, evaluated, published = [], [], [], []
    est_year = _year_of(c["est"])
    status_year = np.where(
        c["status_date"] != _NO_DATE, _year_of(np.maximum(c["status_date"], 0)), 9999
    )
    for year in _EVAL_YEARS:
        score = 87.0 - 7.0 * risk + rng.normal(0, 4, n)
        if year < 2024:  # before the window: grades follow the latent risk alone
            history = rng.random(n) < _sigmoid(1.4 * risk - 3.2)
            serious = rng.random(n) < _sigmoid(1.5 * risk - 4.5)
            score -= 15.0 * history + 10.0 * (rng.random(n) < _sigmoid(1.2 * risk - 3.0))
            score -= 45.0 * serious
            no_income = (c["end"] == 0) & (rng.random(n) < 0.5)
        else:
            months = slice(0, 12)
            score -= 6.0 * np.minimum((t["status"][:, months] == 2).sum(axis=1), 4)
            score -= 15.0 * (t["arrears"][:, months] > 0).any(axis=1)
            score -= 30.0 * (t["status"][:, months] == 3).any(axis=1)
            no_income = t["revenue"][:, months].sum(axis=1) == 0
        score = np.clip(np.round(score, 1), 0.0, 100.0)
        revoked = (fate == 2) & (status_year <= year)
        score = np.where(revoked, np.minimum(score, 35.0), score)
        grade = np.select([score >= 90, score >= 70, score >= 40], [0, 1, 3], 4)
        grade = np.where(((est_year == year) | no_income) & ~revoked, 2, grade)
        graded = ~((fate == 3) & (status_year <= year))
        scores.append(score)
        grades.append(grade)
        evaluated.append(graded)
        published.append(
            _year_start(np.full(n, year + 1)) + 110 + rng.integers(0, 10, n)
        )  # late April of the next year
    stack = lambda xs: np.stack(xs, axis=1).ravel()  # noqa: E731 - enterprise-major order
    score, grade, graded = stack(scores), stack(grades), stack(evaluated)
    ent = np.repeat(np.arange(n), len(_EVAL_YEARS))
    return {
        "credit_code": b.credit_codes.take(pa.array(ent)),
        "eval_year": pa.array(np.tile(np.array(_EVAL_YEARS, dtype=np.int16), n)),
        "grade": pc.if_else(pa.array(graded), _take(_GRADES, grade), pa.scalar(None, pa.string())),
        "score": _f64(score, ~graded),
        "eval_status": _take(_EVAL_STATUS, (~graded).astype(np.int64)),
        "published_date": _date(stack(published)),
        "tax_authority": _take(_P_TAX_AUTH, c["area"][ent]),
    }


def _build_si_unit(b: _Block, r0: int, r1: int) -> Columns:
    s, n = b.si_months, b.n
    key = (s["employer"] * MONTHS + np.arange(MONTHS)[None, :]).ravel()
    insured = s["status"].ravel() != 2
    size = n * MONTHS

    def total(values: np.ndarray) -> np.ndarray:
        return np.round(np.bincount(key, weights=values.ravel(), minlength=size), 2)

    count = np.bincount(key, weights=insured, minlength=size).astype(np.int64)
    unit_due, person_due, paid = total(s["unit"]), total(s["person"]), total(s["paid"])
    arrears_amount = np.round(np.maximum(unit_due + person_due - paid, 0.0), 2)
    ent = np.repeat(np.arange(n), MONTHS)
    return {
        "credit_code": b.credit_codes.take(pa.array(ent)),
        "period": _take(_P_PERIOD, np.tile(np.arange(MONTHS), n)),
        "insured_count": _i32(count),
        "contribution_base_total": _f64(total(s["base"])),
        "unit_amount_due": _f64(unit_due),
        "person_amount_due": _f64(person_due),
        "paid_amount": _f64(paid),
        "arrears_flag": _bool(arrears_amount > 0),
        "arrears_amount": _f64(arrears_amount),
    }


_PAY_STATUS = _pool(["正常缴费", "欠费", "中断"])


def _build_si_person(b: _Block, r0: int, r1: int) -> Columns:
    s = b.si_months
    n_p = s["status"].shape[0]
    person = np.repeat(np.arange(n_p), MONTHS)
    return {
        "person_id": b.person_ids.take(pa.array(person)),
        "person_name": b.person_names.take(pa.array(person)),
        "employer_credit_code": b.credit_codes.take(pa.array(s["employer"].ravel())),
        "period": _take(_P_PERIOD, np.tile(np.arange(MONTHS), n_p)),
        "contribution_base": _f64(s["base"].ravel()),
        "unit_amount": _f64(s["unit"].ravel()),
        "person_amount": _f64(s["person"].ravel()),
        "paid_amount": _f64(s["paid"].ravel()),
        "pay_status": _take(_PAY_STATUS, s["status"].ravel()),
    }


_HF_STATUS = _pool(["正常", "封存"])
_HF_RATES = np.array([0.05, 0.08, 0.10, 0.12])


def _build_housing_fund(b: _Block, r0: int, r1: int) -> Columns:
    c, s, rng = b.core, b.si_months, b.rng(16)
    k = r1 - r0
    n_p = s["status"].shape[0]
    # Accounts go preferentially to staff of larger, lower-risk employers (Gumbel top-k).
    e1 = c["p_employer"]
    p = b.persons
    w = np.exp(0.8 * c["size"][e1] - 0.4 * c["risk"][e1]) * (p["p_base"] / 5000.0)
    keys = np.log(w) + rng.gumbel(size=n_p)
    chosen = np.sort(np.argpartition(-keys, k - 1)[:k]) if k < n_p else np.arange(n_p)
    status = s["status"][chosen]
    paying = status != 2
    last = np.where(paying.any(axis=1), MONTHS - 1 - np.argmax(paying[:, ::-1], axis=1), -1)
    active = status[:, -1] != 2
    employer = np.where(last >= 0, s["employer"][chosen, np.maximum(last, 0)], e1[chosen])
    base = np.where(last >= 0, s["base"][chosen, np.maximum(last, 0)], p["p_base"][chosen])
    base = np.round(np.clip(base * rng.uniform(0.95, 1.05, k), 2100.0, 28_000.0))
    rate = _HF_RATES[rng.choice(4, k, p=[0.35, 0.25, 0.2, 0.2])]
    monthly = np.round(base * rate) * 2
    ready = np.maximum(c["est"][e1[chosen]], p["p_birth"][chosen] + _ADULT_DAYS)
    open_date = ready + (rng.random(k) * np.maximum(_MONTH_START[0] - ready, 1)).astype(np.int64)
    months_open = (np.minimum(SNAPSHOT, _MONTH_START[np.maximum(last, 0) + 1]) - open_date) / 30.44
    balance = np.round(np.maximum(monthly * months_open * rng.uniform(0.2, 0.9, k), 0.0), 2)
    idx = np.arange(r0, r1)
    account = np.hstack(
        [
            np.tile(np.frombuffer(b"4101", np.uint8), (k, 1)),
            _digits(_perm(_ACCOUNT_DOMAIN, b.seed, 105)(idx), 8),
        ]
    )
    bins = _ascii(N.UNIONPAY_BINS)[rng.integers(0, len(N.UNIONPAY_BINS), k)]
    card = np.hstack([bins, _digits(rng.integers(0, 10**12, k), 12)])
    card = np.hstack([card, luhn_check_digits(card)[:, None]])
    return {
        "account_no": _fixed(account),
        "person_id": b.person_ids.take(pa.array(chosen)),
        "person_name": b.person_names.take(pa.array(chosen)),
        "employer_credit_code": b.credit_codes.take(pa.array(employer)),
        "bank_card_no": _fixed(card),
        "open_date": _date(open_date),
        "deposit_base": _f64(base),
        "deposit_rate": _f64(rate),
        "monthly_deposit": _f64(monthly),
        "balance": _f64(balance),
        "status": _take(_HF_STATUS, (~active).astype(np.int64)),
        "last_deposit_period": pc.if_else(
            pa.array(last >= 0), _take(_P_PERIOD, np.maximum(last, 0)), pa.scalar(None, pa.string())
        ),
    }


_P_KIND = _pool(_UTILITY_KINDS)
_P_UNIT = _pool(_UTILITY_UNITS)
_ACCOUNT_PREFIX = (b"41", b"37", b"88")


def _build_utility(b: _Block, r0: int, r1: int) -> Columns:
    c, rng, n = b.core, b.rng(17), b.n
    ind, risk, fate = c["industry"], c["risk"], c["fate"]
    medians = _IND_UTIL[ind] * np.exp(1.0 * c["size"][:, None] + 0.4 * rng.standard_normal((n, 3)))
    season = _UTIL_SEASON[:, np.arange(MONTHS) % 12]  # (3, 24)
    act = b.activity[:, None, :]
    standby = np.where((fate == 1)[:, None, None] & (np.arange(3) < 2)[None, :, None], 0.03, 0.0)
    level = np.maximum(act, np.where(act == 0, standby, 0.0))
    use = (
        medians[:, :, None]
        * season[None, :, :]
        * level
        * np.exp(0.15 * rng.standard_normal((n, 3, MONTHS)))
    )
    use = np.round(use, 1)
    price = np.array(_PRICES)[None, :, None] * rng.uniform(0.92, 1.12, (n, 1, 1))
    amount = np.round(use * price, 2)
    due = np.broadcast_to(_MONTH_START[1 : MONTHS + 1][None, None, :] + 19, (n, 3, MONTHS))
    overdue = rng.random((n, 3, MONTHS)) < _sigmoid(1.3 * risk - 2.8)[:, None, None]
    late_days = rng.geometric(1 / 12, (n, 3, MONTHS))
    paid = np.where(overdue, due + late_days, due - rng.integers(0, 16, (n, 3, MONTHS)))
    # Revoked firms leave their last bills unpaid; bills due after the snapshot are open.
    unpaid = (fate == 2)[:, None, None] & (
        np.arange(MONTHS)[None, None, :] >= (c["end"] - 3)[:, None, None]
    )
    unpaid = unpaid | (paid > SNAPSHOT)
    unpaid &= amount > 0
    overdue_days = np.where(unpaid, np.maximum(SNAPSHOT - due, 0), np.where(overdue, late_days, 0))
    paid = np.where(unpaid | (amount == 0), _NO_DATE, paid)
    overdue_days = np.where(amount == 0, 0, overdue_days)
    idx = np.arange(b.lo, b.hi)
    accounts = []
    for kind in range(3):
        digits = _digits(_perm(_ACCOUNT_DOMAIN, b.seed, 110 + kind)(idx), 8)
        prefix = np.tile(np.frombuffer(_ACCOUNT_PREFIX[kind], np.uint8), (n, 1))
        accounts.append(np.hstack([prefix, digits]))
    account = np.stack(accounts, axis=1).reshape(n * 3, 10)  # enterprise-major, then kind
    ent = np.repeat(np.arange(n), 3 * MONTHS)
    kind = np.tile(np.repeat(np.arange(3), MONTHS), n)
    return {
        "credit_code": b.credit_codes.take(pa.array(ent)),
        "account_no": _fixed(account).take(pa.array(np.repeat(np.arange(n * 3), MONTHS))),
        "kind": _take(_P_KIND, kind),
        "period": _take(_P_PERIOD, np.tile(np.arange(MONTHS), n * 3)),
        "consumption": _f64(use.ravel()),
        "unit": _take(_P_UNIT, kind),
        "amount": _f64(amount.ravel()),
        "due_date": _date(due.ravel()),
        "paid_date": _date(paid.ravel()),
        "overdue_days": _i32(overdue_days.ravel()),
    }


_USES = ("住宅", "车位", "商业服务", "办公", "工业")
_P_USE = _pool(_USES)
_P_OWNER_TYPE = _pool(["单位", "个人"])
_P_REG_TYPE = _pool(["首次登记", "转移登记", "变更登记"])
_P_CERT_CITY = _pool(
    [
        (a.district if a.district.endswith(("市", "县")) and a.city == "郑州市" else a.city)
        for a in N.AREAS
    ]
)
_ZZ_AREAS = np.array([i for i, a in enumerate(N.AREAS) if a.city == "郑州市"])
_PRICE_M2 = np.array([11_000.0, 0.0, 15_000.0, 10_000.0, 2_500.0])


def _build_real_estate(b: _Block, r0: int, r1: int) -> Columns:
    c, rng = b.core, b.rng(18)
    k = r1 - r0
    rows = np.arange(r0, r1)
    u = _perm(_CERT_YEARS * 10**7, b.seed, 106)(rows)
    year, seq = 2016 + u // 10**7, u % 10**7
    start = _year_start(year)
    reg_date = np.minimum(start + rng.integers(0, 365, k), SNAPSHOT)
    ent_w = np.exp(c["size"]) * np.where(c["end"] == 0, 0.2, 1.0)
    ent = b.pick(rng, ent_w, c["est"], reg_date)
    is_person = (rng.random(k) < 0.85) | (c["est"][ent] > reg_date)
    age = 2024 - _year_of(b.persons["p_birth"])
    person_w = np.clip(age - 20, 1, None) * b.persons["p_base"]
    person = b.pick(rng, person_w, b.person_ready, reg_date)
    manufacturing = _IND_MANUFACTURING[c["industry"][ent]]
    person_use = rng.choice(3, k, p=[0.84, 0.11, 0.05])
    ent_use = np.where(
        manufacturing & (rng.random(k) < 0.6),
        4,
        rng.choice(np.array([0, 2, 3, 4]), k, p=[0.13, 0.35, 0.37, 0.15]),
    )
    use = np.where(is_person, np.array([0, 1, 2])[person_use], ent_use)
    median = np.array([102.0, 20.0, 120.0, 260.0, 2500.0])[use]
    spread = np.array([0.25, 0.2, 0.8, 0.7, 0.8])[use]
    area_m2 = np.exp(np.log(median) + spread * rng.standard_normal(k))
    area_m2 = np.round(np.clip(area_m2, np.array([35, 8, 10, 30, 200])[use], 50_000), 2)
    home_area = np.where(
        rng.random(k) < 0.7,
        c["area"][c["p_employer"][person]],
        _ZZ_AREAS[rng.integers(0, len(_ZZ_AREAS), k)],
    )
    area = np.where(is_person, home_area, c["area"][ent])
    value = np.where(use == 1, rng.uniform(60_000, 200_000, k), area_m2 * _PRICE_M2[use])
    mortgaged = rng.random(k) < np.where(
        is_person & (use == 0), 0.55, 0.2 + 0.2 * (~is_person) * _sigmoid(c["risk"][ent])
    )
    mortgage = np.round(value * rng.uniform(0.3, 0.7, k), -2)
    # Addresses: community + building/unit/room for homes, a parking slot, or a commercial building.
    road, house_no = rng.integers(0, len(_P_ROAD), k), rng.integers(1, 400, k)
    floor = rng.integers(1, 33, k)
    home_tail = _join(
        _take(_P_COMMUNITY, rng.integers(0, len(_P_COMMUNITY), k)),
        _int_str(rng.integers(1, 30, k)),
        "号楼",
        _int_str(rng.integers(1, 5, k)),
        "单元",
        _int_str(floor * 100 + rng.integers(1, 5, k)),
        "室",
    )
    slot_tail = _join(
        _take(_P_COMMUNITY, rng.integers(0, len(_P_COMMUNITY), k)),
        "地下车位B",
        _int_str(rng.integers(1, 3, k)),
        "-",
        _int_str(rng.integers(1, 800, k)),
    )
    work_tail = _join(
        _take(_P_BUILDING, rng.integers(0, len(_P_BUILDING), k)),
        _int_str(floor),
        "层",
        _int_str(floor * 100 + rng.integers(1, 21, k)),
        "室",
    )
    plant_tail = _join("工业园", _int_str(rng.integers(1, 40, k)), "号厂房")
    tail = _choose(
        use == 0, home_tail, _choose(use == 1, slot_tail, _choose(use == 4, plant_tail, work_tail))
    )
    address = _join(
        _take(_P_AREA_PREFIX, area), _take(_P_ROAD, road), _int_str(house_no), "号", tail
    )
    cert = _join(
        "豫（",
        _int_str(year),
        "）",
        _take(_P_CERT_CITY, area),
        "不动产权第",
        pc.utf8_lpad(_int_str(seq), 7, "0"),
        "号",
    )
    person_idx = pa.array(person)
    ent_idx = pa.array(ent)
    return {
        "certificate_no": cert,
        "owner_type": _take(_P_OWNER_TYPE, is_person.astype(np.int64)),
        "owner_name": _choose(
            is_person, b.person_names.take(person_idx), b.enterprise_names.take(ent_idx)
        ),
        "owner_id": _choose(is_person, b.person_ids.take(person_idx), b.credit_codes.take(ent_idx)),
        "area_code": _take(_P_AREA_CODE, area),
        "address": address,
        "building_area": _f64(area_m2),
        "use": _take(_P_USE, use),
        "registration_type": _take(_P_REG_TYPE, rng.choice(3, k, p=[0.35, 0.6, 0.05])),
        "registration_date": _date(reg_date),
        "mortgage_flag": _bool(mortgaged),
        "mortgage_amount": _f64(mortgage, ~mortgaged),
    }


_P_CASE_KIND = _pool(["民初", "执"])
_P_CASE_TYPE = _pool(["民事一审", "执行"])
_P_CAUSE = _pool(N.CIVIL_CAUSES)
_P_PARTY_TYPE = _P_OWNER_TYPE
_P_PARTY_ROLE = _pool(["被告", "被执行人"])
_P_CASE_STATUS = _pool(["审理中", "已结案", "执行中", "执行完毕", "终结本次执行"])


def _case_numbers(
    year: np.ndarray, area: np.ndarray, kind: np.ndarray, seq: np.ndarray
) -> pa.Array:
    return _join(
        "（",
        _int_str(year),
        "）",
        _take(_P_COURT_CODE, area),
        _take(_P_CASE_KIND, kind),
        _int_str(seq),
        "号",
    )


def _party(
    b: _Block, is_person: np.ndarray, ent: np.ndarray, person: np.ndarray
) -> tuple[pa.Array, pa.Array]:
    pi, ei = pa.array(person), pa.array(ent)
    name = _choose(is_person, b.person_names.take(pi), b.enterprise_names.take(ei))
    ident = _choose(is_person, b.person_ids.take(pi), b.credit_codes.take(ei))
    return name, ident


def _build_court(b: _Block, r0: int, r1: int) -> Columns:
    k = b.court
    name, ident = _party(b, k["is_person"], k["ent"], k["person"])
    return {
        "case_no": _case_numbers(k["year"], k["area"], k["kind"], k["seq"]),
        "court_name": _take(_P_COURT, k["area"]),
        "case_type": _take(_P_CASE_TYPE, k["kind"]),
        "cause": _take(_P_CAUSE, k["cause"]),
        "filing_date": _date(k["filing"]),
        "party_type": _take(_P_PARTY_TYPE, k["is_person"].astype(np.int64)),
        "party_name": name,
        "party_id": ident,
        "party_role": _take(_P_PARTY_ROLE, k["kind"]),
        "amount": _f64(k["amount"]),
        "status": _take(_P_CASE_STATUS, k["status"]),
        "close_date": _date(k["close"]),
    }


_CREDIT_TYPES = ("失信被执行人", "经营异常名录", "行政处罚", "重大税收违法失信主体")
_P_CREDIT_TYPE = _pool(_CREDIT_TYPES)
_P_CREDIT_STATUS = _pool(["有效", "已移出"])
_P_REASON = _pool(
    [
        "有履行能力而拒不履行生效法律文书确定义务",
        *N.ABNORMAL_REASONS,
        *N.PENALTY_REASONS,
        *N.TAX_VIOLATION_REASONS,
    ]
)
_REASON_OFFSETS = (
    0,
    1,
    1 + len(N.ABNORMAL_REASONS),
    1 + len(N.ABNORMAL_REASONS) + len(N.PENALTY_REASONS),
)
_REASON_COUNTS = (1, len(N.ABNORMAL_REASONS), len(N.PENALTY_REASONS), len(N.TAX_VIOLATION_REASONS))
_P_AREA_ABBR = _pool([a.abbr for a in N.AREAS])
_P_DECISION_WORD = _pool(["", "市监异字", "市监罚字", "税稽罚"])


def _build_credit(b: _Block, r0: int, r1: int) -> Columns:
    c, rng, t = b.core, b.rng(20), b.tax_months
    k_total = r1 - r0
    court = b.court
    # Dishonest judgement debtors: unresolved enforcement cases of this block's court records.
    open_enf = np.flatnonzero((court["kind"] == 1) & np.isin(court["status"], (2, 4)))
    take = open_enf[rng.random(len(open_enf)) < 0.6][:k_total]
    k1, k2 = len(take), k_total - len(take)
    # Other records: decision numbers from (year, kind) slots, unique by construction.
    local = np.arange(k2) + k1
    slot = _perm(_credit_slots().total, b.seed, 107)(b.block * _CREDIT_ROWS_PER_BLOCK + local)
    cell, offset = _credit_slots().locate(slot)
    year, kind = 2019 + cell // 3, 1 + cell % 3
    decided = np.minimum(_year_start(year) + rng.integers(0, 365, k2), SNAPSHOT)
    arrears_any = (t["arrears"] > 0).any(axis=1)
    weights = np.exp(c["risk"]) * np.select([np.isin(c["fate"], (1, 2))], [4.0], 1.0)
    abnormal_w = np.exp(c["risk"]) * np.where(np.isin(c["fate"], (1, 2)), 12.0, 0.5)
    tax_w = np.exp(c["risk"]) * np.where(arrears_any, 15.0, 0.2)
    subject = np.empty(k2, dtype=np.int64)
    for kk, w in ((1, abnormal_w), (2, weights), (3, tax_w)):
        sel = kind == kk
        if sel.any():
            subject[sel] = b.pick(rng, w, c["est"], decided[sel])
    # Only in a tiny last block can no subject predate the decision; then the decision moves.
    decided = np.minimum(np.maximum(decided, c["est"][subject] + 30), SNAPSHOT)
    penalty = np.where(
        kind == 2,
        np.round(np.exp(rng.normal(np.log(5000), 1.0, k2)), -2),
        np.where(kind == 3, np.round(np.exp(rng.normal(np.log(200_000), 1.0, k2)), 2), np.nan),
    )
    removed_after = rng.integers(30, 720, k2)
    removed = (rng.random(k2) < np.where(kind == 1, 0.4, 0.25)) & (
        decided + removed_after <= SNAPSHOT
    )
    reason = (
        np.array(_REASON_OFFSETS)[kind]
        + rng.integers(0, 1 << 20, k2) % np.array(_REASON_COUNTS)[kind]
    )

    # Assemble: k1 dishonesty rows first, then the others.
    is_person = np.concatenate([court["is_person"][take], np.zeros(k2, dtype=bool)])
    ent = np.concatenate([court["ent"][take], subject])
    person = np.concatenate([court["person"][take], np.zeros(k2, dtype=np.int64)])
    area = np.concatenate([court["area"][take], c["area"][subject]])
    rtype = np.concatenate([np.zeros(k1, dtype=np.int64), kind])
    d_dishonest = np.minimum(court["filing"][take] + rng.integers(30, 200, k1), SNAPSHOT)
    date = np.concatenate([d_dishonest, decided])
    name, ident = _party(b, is_person, ent, person)
    authority = _choose(
        rtype == 0,
        _take(_P_COURT, area),
        _choose(rtype == 3, _take(_P_TAX_AUTH, area), _take(_P_MARKET, area)),
    )
    dishonest_no = _case_numbers(
        court["year"][take], court["area"][take], court["kind"][take], court["seq"][take]
    )
    other_no = _join(
        _take(_P_AREA_ABBR, c["area"][subject]),
        _take(_P_DECISION_WORD, kind),
        "〔",
        _int_str(year),
        "〕",
        _int_str(offset + 1),
        "号",
    )
    status = np.concatenate([np.zeros(k1, dtype=np.int64), removed.astype(np.int64)])
    removal = np.concatenate(
        [np.full(k1, _NO_DATE), np.where(removed, decided + removed_after, _NO_DATE)]
    )
    return {
        "decision_no": pa.concat_arrays([dishonest_no, other_no]),
        "record_type": _take(_P_CREDIT_TYPE, rtype),
        "subject_type": _take(_P_PARTY_TYPE, is_person.astype(np.int64)),
        "subject_name": name,
        "subject_id": ident,
        "authority": authority,
        "reason": _take(_P_REASON, np.concatenate([np.zeros(k1, dtype=np.int64), reason])),
        "penalty_amount": _f64(
            np.concatenate([np.full(k1, np.nan), penalty]),
            np.isnan(np.concatenate([np.full(k1, np.nan), penalty])),
        ),
        "decision_date": _date(date),
        "status": _take(_P_CREDIT_STATUS, status),
        "removal_date": _date(removal),
    }


# --------------------------------------------------------------------------------------------
# Table specifications
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Col:
    name: str
    type: pa.DataType
    zh: str
    doc: str
    nullable: bool = False


@dataclass(frozen=True)
class _Spec:
    name: str
    table_id: int
    description: str
    per_enterprise: Fraction
    formula: str
    columns: tuple[_Col, ...]
    builder: Callable[[_Block, int, int], Columns]
    check_column: str  # ID with a check character (dirty kind bad_check_digit)
    date_column: str  # non-null date or YYYY-MM period (malformed_date)
    amount_column: str  # numeric (non_numeric)
    required_column: str  # key that must not be empty (empty_required)


S, F, D, INT, B = pa.string(), pa.float64(), pa.date32(), pa.int32(), pa.bool_()

_SPEC_LIST: tuple[_Spec, ...] = (
    _Spec(
        "enterprise_registration",
        1,
        "Enterprise registry extract: one row per enterprise",
        Fraction(1),
        "N",
        (
            _Col(
                "credit_code",
                S,
                "统一社会信用代码",
                "GB 32100 code, prefix 91, registration area inside",
            ),
            _Col("enterprise_name", S, "企业名称", "registered name"),
            _Col("enterprise_type", S, "企业类型", "legal form as written in the registry"),
            _Col("legal_rep_name", S, "法定代表人", "legal representative (or investor/partner)"),
            _Col(
                "legal_rep_id",
                S,
                "法定代表人身份证号",
                "GB 11643 resident ID; also in social insurance",
            ),
            _Col("legal_rep_phone", S, "联系电话", "mobile number"),
            _Col("registered_capital", F, "注册资本（万元）", "10k yuan; null for branches", True),
            _Col("establish_date", D, "成立日期", "founding date, before 2023"),
            _Col("approval_date", D, "核准日期", "last approved change"),
            _Col("business_term_end", D, "营业期限至", "null = 长期 (no end)", True),
            _Col("status", S, "登记状态", "存续 / 吊销 / 注销 at 2025-12-31"),
            _Col("status_date", D, "吊销注销日期", "revocation or deregistration date", True),
            _Col("industry_section", S, "行业门类", "GB/T 4754-2017 section letter"),
            _Col("industry_code", S, "行业代码", "GB/T 4754-2017 class code"),
            _Col("industry_name", S, "行业名称", "GB/T 4754-2017 class name"),
            _Col("area_code", S, "行政区划代码", "GB/T 2260 county-level code"),
            _Col("address", S, "住所", "registered address"),
            _Col("registration_authority", S, "登记机关", "market regulation bureau"),
        ),
        _build_enterprise,
        "credit_code",
        "establish_date",
        "registered_capital",
        "credit_code",
    ),
    _Spec(
        "tax_filing",
        2,
        "Monthly tax returns per enterprise, 2024-01 to 2025-12",
        Fraction(MONTHS),
        "24 N",
        (
            _Col("credit_code", S, "纳税人识别号", "unified social credit code of the taxpayer"),
            _Col("tax_period", S, "税款所属期", "YYYY-MM"),
            _Col("taxpayer_type", S, "纳税人类型", "一般纳税人 / 小规模纳税人"),
            _Col("sales_revenue", F, "销售额", "yuan"),
            _Col("vat_payable", F, "应纳增值税额", "yuan"),
            _Col(
                "income_tax",
                F,
                "企业所得税预缴额",
                "yuan; prepaid quarterly, non-zero in Mar/Jun/Sep/Dec",
            ),
            _Col("income_tax_period", S, "所得税所属季度", "YYYYQn on quarter-end rows", True),
            _Col("invoice_count", INT, "开具发票份数", "invoices issued"),
            _Col("invoice_amount", F, "开具发票金额", "yuan"),
            _Col("filing_deadline", D, "申报期限", "15th of the following month"),
            _Col("filing_date", D, "申报日期", "null when not filed", True),
            _Col("filing_status", S, "申报状态", "正常申报 / 零申报 / 逾期申报 / 未申报 / 已注销"),
            _Col("arrears_amount", F, "欠税余额", "outstanding tax, yuan"),
            _Col("tax_authority", S, "主管税务机关", "competent tax bureau"),
        ),
        _build_tax_filing,
        "credit_code",
        "filing_deadline",
        "vat_payable",
        "credit_code",
    ),
    _Spec(
        "tax_credit",
        3,
        "Annual tax credit evaluation (A/B/M/C/D) for 2022-2024",
        Fraction(len(_EVAL_YEARS)),
        "3 N",
        (
            _Col("credit_code", S, "纳税人识别号", "unified social credit code of the taxpayer"),
            _Col("eval_year", pa.int16(), "评价年度", "evaluated year"),
            _Col("grade", S, "纳税信用级别", "A / B / M / C / D; null when not evaluated", True),
            _Col("score", F, "评价得分", "0-100; null when not evaluated", True),
            _Col("eval_status", S, "评价状态", "参评 / 不参评 (deregistered)"),
            _Col("published_date", D, "发布日期", "April of the following year"),
            _Col("tax_authority", S, "主管税务机关", "competent tax bureau"),
        ),
        _build_tax_credit,
        "credit_code",
        "published_date",
        "score",
        "credit_code",
    ),
    _Spec(
        "social_insurance_unit",
        4,
        "Social insurance per employer and month",
        Fraction(MONTHS),
        "24 N",
        (
            _Col("credit_code", S, "统一社会信用代码", "employer"),
            _Col("period", S, "费款所属期", "YYYY-MM"),
            _Col("insured_count", INT, "参保人数", "persons paying or in arrears this month"),
            _Col("contribution_base_total", F, "缴费基数总额", "yuan"),
            _Col("unit_amount_due", F, "单位应缴金额", "yuan"),
            _Col("person_amount_due", F, "个人应缴金额", "yuan"),
            _Col("paid_amount", F, "实缴金额", "yuan"),
            _Col("arrears_flag", B, "是否欠费", "true when part of the month's dues is unpaid"),
            _Col("arrears_amount", F, "欠费金额", "unpaid dues of the month, yuan"),
        ),
        _build_si_unit,
        "credit_code",
        "period",
        "paid_amount",
        "credit_code",
    ),
    _Spec(
        "social_insurance_person",
        5,
        "Social insurance per person and month (pension, medical, unemployment, injury combined)",
        Fraction(PERSONS_PER_ENTERPRISE * MONTHS),
        "192 N (8 N persons x 24 months)",
        (
            _Col("person_id", S, "公民身份号码", "GB 11643 resident ID"),
            _Col("person_name", S, "姓名", "name"),
            _Col("employer_credit_code", S, "单位统一社会信用代码", "employer this month"),
            _Col("period", S, "费款所属期", "YYYY-MM"),
            _Col("contribution_base", F, "缴费基数", "yuan; 0 when interrupted"),
            _Col("unit_amount", F, "单位缴费", "yuan due from the employer"),
            _Col("person_amount", F, "个人缴费", "yuan due from the person"),
            _Col("paid_amount", F, "实缴金额", "yuan"),
            _Col("pay_status", S, "缴费状态", "正常缴费 / 欠费 / 中断"),
        ),
        _build_si_person,
        "person_id",
        "period",
        "contribution_base",
        "person_id",
    ),
    _Spec(
        "housing_fund",
        6,
        "Housing provident fund accounts, one per covered person",
        Fraction(6),
        "6 N (three quarters of the persons)",
        (
            _Col("account_no", S, "个人公积金账号", "12 digits"),
            _Col("person_id", S, "身份证号", "GB 11643 resident ID"),
            _Col("person_name", S, "姓名", "name"),
            _Col("employer_credit_code", S, "单位统一社会信用代码", "last depositing employer"),
            _Col("bank_card_no", S, "银行卡号", "UnionPay card, Luhn check digit"),
            _Col("open_date", D, "开户日期", "account opened"),
            _Col("deposit_base", F, "缴存基数", "yuan"),
            _Col("deposit_rate", F, "缴存比例", "per side (employer and employee each)"),
            _Col("monthly_deposit", F, "月缴存额", "employer + employee, yuan"),
            _Col("balance", F, "账户余额", "yuan at 2025-12-31"),
            _Col("status", S, "账户状态", "正常 / 封存"),
            _Col("last_deposit_period", S, "最后缴存月份", "YYYY-MM", True),
        ),
        _build_housing_fund,
        "person_id",
        "open_date",
        "balance",
        "person_id",
    ),
    _Spec(
        "utility_payment",
        7,
        "Monthly electricity, water and gas bills per enterprise",
        Fraction(3 * MONTHS),
        "72 N (N x 24 months x 3 kinds)",
        (
            _Col("credit_code", S, "统一社会信用代码", "customer enterprise"),
            _Col("account_no", S, "户号", "customer account, one per enterprise and kind"),
            _Col("kind", S, "费用类型", "electricity / water / gas"),
            _Col("period", S, "账期", "YYYY-MM"),
            _Col("consumption", F, "用量", "kWh or m3"),
            _Col("unit", S, "计量单位", "kWh / m3"),
            _Col("amount", F, "应缴金额", "yuan"),
            _Col("due_date", D, "缴费截止日期", "20th of the following month"),
            _Col("paid_date", D, "缴费日期", "null when unpaid or nothing due", True),
            _Col("overdue_days", INT, "逾期天数", "days paid late, or open days at 2025-12-31"),
        ),
        _build_utility,
        "credit_code",
        "due_date",
        "amount",
        "credit_code",
    ),
    _Spec(
        "real_estate",
        8,
        "Real estate registrations of persons and enterprises",
        Fraction(3),
        "3 N",
        (
            _Col("certificate_no", S, "不动产权证号", "豫（YYYY）<city>不动产权第NNNNNNN号"),
            _Col("owner_type", S, "权利人类型", "个人 / 单位"),
            _Col("owner_name", S, "权利人", "owner name"),
            _Col("owner_id", S, "证件号码", "resident ID or unified social credit code"),
            _Col("area_code", S, "行政区划代码", "GB/T 2260 code of the property"),
            _Col("address", S, "坐落", "property location"),
            _Col("building_area", F, "建筑面积（平方米）", "m2"),
            _Col("use", S, "用途", "住宅 / 车位 / 商业服务 / 办公 / 工业"),
            _Col("registration_type", S, "登记类型", "首次登记 / 转移登记 / 变更登记"),
            _Col("registration_date", D, "登记日期", "2016-2025"),
            _Col("mortgage_flag", B, "是否抵押", "mortgage registered"),
            _Col("mortgage_amount", F, "抵押金额", "yuan", True),
        ),
        _build_real_estate,
        "owner_id",
        "registration_date",
        "building_area",
        "certificate_no",
    ),
    _Spec(
        "court_record",
        9,
        "Civil first-instance and enforcement cases, 2020-2025",
        Fraction(1, 5),
        "ceil(N / 5)",
        (
            _Col("case_no", S, "案号", "（YYYY）豫DDDD民初N号 or ...执N号"),
            _Col("court_name", S, "法院名称", "basic-level court of the party's area"),
            _Col("case_type", S, "案件类型", "民事一审 / 执行"),
            _Col("cause", S, "案由", "cause of action"),
            _Col("filing_date", D, "立案日期", "filing date"),
            _Col("party_type", S, "当事人类型", "个人 / 单位"),
            _Col("party_name", S, "当事人", "defendant or judgement debtor"),
            _Col("party_id", S, "证件号码", "resident ID or unified social credit code"),
            _Col("party_role", S, "诉讼地位", "被告 / 被执行人"),
            _Col("amount", F, "标的金额", "yuan"),
            _Col("status", S, "案件状态", "审理中 / 已结案 / 执行中 / 执行完毕 / 终结本次执行"),
            _Col("close_date", D, "结案日期", "null while open", True),
        ),
        _build_court,
        "party_id",
        "filing_date",
        "amount",
        "case_no",
    ),
    _Spec(
        "credit_record",
        10,
        "Credit records: dishonest debtors, abnormal operation, penalties, tax violations",
        Fraction(1, 4),
        "ceil(N / 4)",
        (
            _Col(
                "decision_no",
                S,
                "决定文书号",
                "case number for dishonest debtors, else authority document number",
            ),
            _Col(
                "record_type",
                S,
                "记录类型",
                "失信被执行人 / 经营异常名录 / 行政处罚 / 重大税收违法失信主体",
            ),
            _Col("subject_type", S, "主体类型", "个人 / 单位"),
            _Col("subject_name", S, "主体名称", "person or enterprise"),
            _Col("subject_id", S, "证件号码", "resident ID or unified social credit code"),
            _Col("authority", S, "认定机关", "court, market regulation bureau or tax bureau"),
            _Col("reason", S, "事由", "reason"),
            _Col("penalty_amount", F, "罚款金额", "yuan; penalties and tax violations only", True),
            _Col("decision_date", D, "决定日期", "listing or decision date"),
            _Col("status", S, "状态", "有效 / 已移出"),
            _Col("removal_date", D, "移出日期", "null while listed", True),
        ),
        _build_credit,
        "subject_id",
        "decision_date",
        "penalty_amount",
        "subject_id",
    ),
)
del S, F, D, INT, B

_SPECS: dict[str, _Spec] = {s.name: s for s in _SPEC_LIST}
TABLES: dict[str, str] = {s.name: s.description for s in _SPEC_LIST}
ROW_FORMULAS: dict[str, str] = {s.name: s.formula for s in _SPEC_LIST}


def _row_range(r: Fraction, lo: int, hi: int) -> tuple[int, int]:
    """Global rows [ceil(lo r), ceil(hi r)) that belong to enterprises [lo, hi)."""
    return -((-lo * r.numerator) // r.denominator), -((-hi * r.numerator) // r.denominator)


def _spec(table: str) -> _Spec:
    try:
        return _SPECS[table]
    except KeyError:
        raise DemoDataError(
            "table", f"unknown table {table!r}; known: {', '.join(TABLES)}"
        ) from None


def row_count(table: str, scale: int) -> int:
    """Exact number of rows of `table` for `scale` enterprises."""
    _check_scale(scale)
    return _row_range(_spec(table).per_enterprise, 0, scale)[1]


def scale_for_rows(table: str, rows: int) -> int:
    """Smallest scale for which `table` has at least `rows` rows."""
    if rows < 1:
        raise DemoDataError("rows", "must be at least 1")
    r = _spec(table).per_enterprise
    scale = max(1, -((-rows * r.denominator) // r.numerator))
    _check_scale(scale)
    return scale


def schema(table: str) -> pa.Schema:
    """Arrow schema of `table`; field metadata carries the Chinese header and a description."""
    spec = _spec(table)
    return pa.schema(
        [
            pa.field(
                c.name, c.type, nullable=c.nullable, metadata={"zh": c.zh, "description": c.doc}
            )
            for c in spec.columns
        ],
        metadata={"table": spec.name, "description": spec.description, "rows": spec.formula},
    )


def _check_scale(scale: int) -> None:
    if not isinstance(scale, int) or isinstance(scale, bool) or scale < 1:
        raise DemoDataError("scale", f"must be a positive integer, got {scale!r}")
    if scale > MAX_SCALE:
        raise DemoDataError(
            "scale", f"at most {MAX_SCALE:,} enterprises are supported, got {scale:,}"
        )


def _check_seed(seed: int) -> None:
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise DemoDataError("seed", f"must be a non-negative integer, got {seed!r}")


# --------------------------------------------------------------------------------------------
# Streaming
# --------------------------------------------------------------------------------------------


def _block_batches(spec: _Spec, scale: int, seed: int) -> Iterator[pa.RecordBatch]:
    sch = schema(spec.name)
    for block in range(-(-scale // BLOCK)):
        lo, hi = block * BLOCK, min(scale, (block + 1) * BLOCK)
        r0, r1 = _row_range(spec.per_enterprise, lo, hi)
        if r1 == r0:
            continue
        cols = spec.builder(_Block(seed, block, lo, hi), r0, r1)
        arrays = [cols[c.name] for c in spec.columns]
        if any(len(a) != r1 - r0 for a in arrays):  # a builder bug, never bad input
            raise AssertionError(f"{spec.name}: block {block} produced a wrong row count")
        yield pa.RecordBatch.from_arrays(arrays, schema=sch)


def _rebatch(
    batches: Iterable[pa.RecordBatch], size: int, sch: pa.Schema
) -> Iterator[pa.RecordBatch]:
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        pending.append(batch)
        count += batch.num_rows
        while count >= size:
            table = pa.Table.from_batches(pending, schema=sch)
            yield table.slice(0, size).combine_chunks().to_batches()[0]
            rest = table.slice(size)
            pending, count = rest.to_batches(), rest.num_rows
    if count:
        yield pa.Table.from_batches(pending, schema=sch).combine_chunks().to_batches()[0]


def iter_batches(
    table: str, *, scale: int, seed: int = DEFAULT_SEED, batch_rows: int = 65_536
) -> Iterator[pa.RecordBatch]:
    """Stream `table` as record batches of `batch_rows` rows (the last may be shorter)."""
    spec = _spec(table)
    _check_scale(scale)
    _check_seed(seed)
    if not isinstance(batch_rows, int) or batch_rows < 1:
        raise DemoDataError("batch_rows", f"must be a positive integer, got {batch_rows!r}")
    return _rebatch(_block_batches(spec, scale, seed), batch_rows, schema(table))


# --------------------------------------------------------------------------------------------
# Dirty rows (CSV only)
# --------------------------------------------------------------------------------------------


def _dirty_selection(
    seed: int, table_id: int, start: int, n: int, ratio: float
) -> tuple[np.ndarray, np.ndarray]:
    """Rows (offsets within the chunk) to spoil and a 64-bit hash each, keyed by global row."""
    key = _key64(seed, table_id, 0xD1)
    h = _mix(np.arange(start, start + n, dtype=np.uint64) ^ key)
    chosen = np.flatnonzero((h >> np.uint64(11)).astype(np.float64) * 2.0**-53 < ratio)
    return chosen, _mix(h[chosen] ^ np.uint64(0x5DEECE66D))


_BAD_DATES = ("{y}-13-{d}", "{y}-{m}-32", "{y}-02-30", "0000-00-00")
_BAD_PERIODS = ("{y}-13", "{y}-00", "{y}-1A", "0000-00")
_BAD_NUMBERS = ("N/A", "暂无", "{v}元", "{o}")


def _spoil(
    fields: list[str], kind: str, spec: _Spec, col: dict[str, int], v: int
) -> tuple[list[str], str | None, str]:
    """Apply one dirty kind to a split CSV line; returns fields, column name and a detail."""
    if kind == "bad_check_digit":
        name = spec.check_column
        value = fields[col[name]]
        choices = "0123456789X".replace(value[-1:], "")
        fields[col[name]] = value[:-1] + choices[v % len(choices)]
        return fields, name, fields[col[name]]
    if kind == "malformed_date":
        name = spec.date_column
        value = fields[col[name]]
        y, m, d = value[:4], value[5:7], value[8:10]
        pattern = (_BAD_PERIODS if len(value) == 7 else _BAD_DATES)[v % 4]
        fields[col[name]] = pattern.format(y=y, m=m, d=d)
        return fields, name, fields[col[name]]
    if kind == "non_numeric":
        name = spec.amount_column
        value = fields[col[name]]
        spoiled = value.replace("0", "O", 1) if "0" in value else value[:1] + "O" + value[1:]
        fields[col[name]] = _BAD_NUMBERS[v % 4].format(v=value, o=spoiled or "O")
        return fields, name, fields[col[name]]
    if kind == "ragged_row":
        if v % 2 == 0:
            j = v // 2 % (len(fields) - 1)
            fields[j : j + 2] = [fields[j] + fields[j + 1]]
            return fields, None, "missing_delimiter"
        return [*fields, "多余字段"], None, "extra_field"
    name = spec.required_column
    fields[col[name]] = ""
    return fields, name, ""


class _DirtyLog:
    """Streams the sidecar JSON so that millions of entries need no memory."""

    def __init__(self, path: Path, spec: _Spec, meta: dict[str, object]) -> None:
        self.path, self.spec = path, spec
        self.tmp = _tmp_path(path)
        self.fh = open(self.tmp, "w", encoding="utf-8")  # noqa: SIM115 - closed in finish()
        head = json.dumps({"table": spec.name, **meta}, ensure_ascii=False)
        self.fh.write(head[:-1] + ', "rows": [')
        self.first = True
        self.counts = dict.fromkeys(DIRTY_KINDS, 0)

    def add(self, row: int, kind: str, column: str | None, detail: str) -> None:
        entry = {"row": row, "reason": kind, "column": column, "value": detail}
        self.fh.write(("\n" if self.first else ",\n") + json.dumps(entry, ensure_ascii=False))
        self.first = False
        self.counts[kind] += 1

    def finish(self) -> None:
        self.fh.write("\n], " + json.dumps({"counts": self.counts})[1:] + "\n")
        self.fh.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.fh.close()
        self.tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _CsvSink:
    def __init__(
        self,
        path: Path,
        spec: _Spec,
        encoding: str,
        headers: str,
        dirty: _DirtyLog | None,
        ratio: float,
        seed: int,
    ) -> None:
        self.path, self.spec, self.encoding = path, spec, encoding
        self.codec = "utf-8" if encoding == "utf-8-sig" else encoding
        self.dirty, self.ratio, self.seed = dirty, ratio, seed
        self.col = {c.name: i for i, c in enumerate(spec.columns)}
        self.tmp = _tmp_path(path)
        self.fh = open(self.tmp, "wb")  # noqa: SIM115 - closed in close()/abort()
        self.options = pacsv.WriteOptions(include_header=False, quoting_style="none")
        names = [c.zh if headers == "zh" else c.name for c in spec.columns]
        self.fh.write(("\ufeff" if encoding == "utf-8-sig" else "").encode("utf-8"))
        self.fh.write((",".join(names) + "\n").encode(self.codec))
        self.rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        for offset in range(0, batch.num_rows, CSV_CHUNK_ROWS):
            chunk = batch.slice(offset, CSV_CHUNK_ROWS)
            buf = io.BytesIO()
            pacsv.write_csv(chunk, buf, self.options)
            raw = buf.getvalue()
            chosen, hashes = (np.empty(0, np.int64), None)
            if self.dirty is not None:
                chosen, hashes = _dirty_selection(
                    self.seed, self.spec.table_id, self.rows, chunk.num_rows, self.ratio
                )
            if len(chosen):
                raw = self._spoil_lines(raw, chosen, hashes)
            self.fh.write(raw if self.codec == "utf-8" else raw.decode("utf-8").encode(self.codec))
            self.rows += chunk.num_rows

    def _spoil_lines(self, raw: bytes, chosen: np.ndarray, hashes: np.ndarray) -> bytes:
        """Rewrite only the chosen lines, located through the newline offsets."""
        ends = np.flatnonzero(np.frombuffer(raw, dtype=np.uint8) == 10)
        starts = np.concatenate([[0], ends[:-1] + 1])
        parts: list[bytes] = []
        prev = 0
        for i, h in zip(chosen.tolist(), hashes.tolist(), strict=True):
            start, end = int(starts[i]), int(ends[i])
            kind = DIRTY_KINDS[h % len(DIRTY_KINDS)]
            fields = raw[start:end].decode("utf-8").split(",")
            fields, column, detail = _spoil(fields, kind, self.spec, self.col, h >> 8)
            parts += [raw[prev:start], ",".join(fields).encode("utf-8")]
            prev = end
            assert self.dirty is not None
            self.dirty.add(self.rows + i + 1, kind, column, detail)
        parts.append(raw[prev:])
        return b"".join(parts)

    def close(self) -> None:
        self.fh.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.fh.close()
        self.tmp.unlink(missing_ok=True)


def generate(
    out: Path,
    *,
    scale: int,
    seed: int = DEFAULT_SEED,
    formats: Sequence[str] = ("parquet",),
    csv_encoding: str = "utf-8",
    csv_headers: str = "en",
    dirty_ratio: float = 0.0,
    tables: Sequence[str] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, TableInfo]:
    """Write the synthetic city tables under `out`; returns what was written per table.

    Files are `<table>.parquet`, `<table>.csv` and, with `dirty_ratio` > 0, `<table>.dirty.json`,
    plus `manifest.json`; each is written to a temporary name and renamed when complete.
    `progress(table, rows_done, rows_total)` is called at the start of each table, after every
    generated block (1,024 enterprises: 1,024 to 196,608 rows, a fraction of a second) and
    with rows_done == rows_total once the table's files are complete.
    """
    _check_scale(scale)
    _check_seed(seed)
    formats = tuple(formats)
    if not formats or any(f not in FORMATS for f in formats):
        raise DemoDataError("formats", f"choose from {', '.join(FORMATS)}; got {list(formats)!r}")
    if csv_encoding not in CSV_ENCODINGS:
        raise DemoDataError(
            "csv_encoding", f"choose from {', '.join(CSV_ENCODINGS)}; got {csv_encoding!r}"
        )
    if csv_headers not in CSV_HEADERS:
        raise DemoDataError(
            "csv_headers", f"choose from {', '.join(CSV_HEADERS)}; got {csv_headers!r}"
        )
    if (
        not isinstance(dirty_ratio, int | float)
        or not 0.0 <= dirty_ratio <= 0.5
        or math.isnan(dirty_ratio)
    ):
        raise DemoDataError("dirty_ratio", f"must be between 0 and 0.5, got {dirty_ratio!r}")
    if dirty_ratio > 0 and "csv" not in formats:
        raise DemoDataError(
            "dirty_ratio", "dirty rows are written to CSV only; add 'csv' to formats"
        )
    selected = list(TABLES) if tables is None else list(dict.fromkeys(tables))
    for name in selected:
        _spec(name)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    infos: dict[str, TableInfo] = {}
    for name in selected:
        infos[name] = _write_table(
            out,
            _SPECS[name],
            scale,
            seed,
            formats,
            csv_encoding,
            csv_headers,
            float(dirty_ratio),
            progress,
        )
    manifest = {
        "generator": "yuanjian.demo.citydata",
        "scale": scale,
        "seed": seed,
        "csv_encoding": csv_encoding if "csv" in formats else None,
        "csv_headers": csv_headers if "csv" in formats else None,
        "dirty_ratio": dirty_ratio,
        "tables": {
            name: {
                "rows": info.rows,
                "rows_formula": ROW_FORMULAS[name],
                "description": TABLES[name],
                "columns": list(info.columns),
                "files": {k: p.name for k, p in info.paths.items()},
                "sha256": info.sha256,
                "dirty": info.dirty,
            }
            for name, info in infos.items()
        },
    }
    path = out / "manifest.json"
    tmp = _tmp_path(path)
    tmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return infos


def _reporting(
    blocks: Iterator[pa.RecordBatch],
    table: str,
    total: int,
    progress: Callable[[str, int, int], None],
) -> Iterator[pa.RecordBatch]:
    """Report rows generated after every block; completion is reported once files are in place."""
    produced = 0
    for batch in blocks:
        produced += batch.num_rows
        if produced < total:
            progress(table, produced, total)
        yield batch


def _write_table(
    out: Path,
    spec: _Spec,
    scale: int,
    seed: int,
    formats: tuple[str, ...],
    encoding: str,
    headers: str,
    ratio: float,
    progress: Callable[[str, int, int], None] | None,
) -> TableInfo:
    total = row_count(spec.name, scale)
    sch = schema(spec.name)
    paths: dict[str, Path] = {}
    parquet_tmp: Path | None = None
    writer: pq.ParquetWriter | None = None
    csv: _CsvSink | None = None
    dirty: _DirtyLog | None = None
    counts: dict[str, int] = {}
    try:
        if "parquet" in formats:
            paths["parquet"] = out / f"{spec.name}.parquet"
            parquet_tmp = _tmp_path(paths["parquet"])
            writer = pq.ParquetWriter(parquet_tmp, sch, compression="zstd")
        if "csv" in formats:
            paths["csv"] = out / f"{spec.name}.csv"
            if ratio > 0:
                paths["dirty"] = out / f"{spec.name}.dirty.json"
                meta = {
                    "file": paths["csv"].name,
                    "encoding": encoding,
                    "seed": seed,
                    "dirty_ratio": ratio,
                }
                dirty = _DirtyLog(paths["dirty"], spec, meta)
            csv = _CsvSink(paths["csv"], spec, encoding, headers, dirty, ratio, seed)
        done = 0
        if progress:
            progress(spec.name, 0, total)
        blocks = _block_batches(spec, scale, seed)
        if progress:
            blocks = _reporting(blocks, spec.name, total, progress)
        for batch in _rebatch(blocks, WRITE_BATCH_ROWS, sch):
            if writer is not None:
                writer.write_batch(batch, row_group_size=WRITE_BATCH_ROWS)
            if csv is not None:
                csv.write(batch)
            done += batch.num_rows
        if done != total:  # a builder bug, never bad input
            raise AssertionError(f"{spec.name}: wrote {done} rows, expected {total}")
        if writer is not None:
            writer.close()
            writer = None
            os.replace(parquet_tmp, paths["parquet"])
        if csv is not None:
            csv.close()
            csv = None
        if dirty is not None:
            counts = dict(dirty.counts)
            dirty.finish()
            dirty = None
    except BaseException:
        if writer is not None:
            writer.close()
        if parquet_tmp is not None:
            parquet_tmp.unlink(missing_ok=True)
        if csv is not None:
            csv.abort()
        if dirty is not None:
            dirty.abort()
        raise
    if progress:
        progress(spec.name, total, total)
    return TableInfo(
        name=spec.name,
        rows=total,
        columns=tuple(c.name for c in spec.columns),
        paths=paths,
        sha256={k: _sha256(p) for k, p in paths.items()},
        dirty=counts,
    )

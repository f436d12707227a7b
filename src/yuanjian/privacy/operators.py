"""Desensitization operators: a registry of vectorized, pure column transforms.

Each operator is a pure function of ``(column, parameters, key)`` (plus the subject column for
``date_shift`` and the issuance seed for ``noise``) and uses the vocabulary of Presidio and
Apache Ranger: ``keep``, ``mask``, ``redact``, ``replace``, ``pseudonymize``,
``format_preserving``, ``generalize``, ``date_shift``, ``noise``, ``suppress`` and
``redact_entities``. The registry (:data:`OPERATORS`) holds, per operator, its parameters with
types and defaults, the Arrow column types it fits, and the implementation; the same registry
validates policies (:func:`check_call`) and runs them (:func:`apply_operator`,
:func:`apply_policy`).

Every implementation works on whole Arrow arrays with pyarrow compute, DuckDB SQL or numpy;
there is no Python loop per cell, with one documented exception:

* HMAC-SHA256 runs in DuckDB SQL. DuckDB has no HMAC function, but its ``sha256`` accepts
  BLOBs (DuckDB 2.0 docs: ``sha256(blob)`` returns the hex digest; the tests check our result
  against :mod:`hmac`), so HMAC(K, m) = H((K⊕opad) || H((K⊕ipad) || m)) is written as two
  nested ``sha256`` calls over blob concatenation and runs per row in DuckDB's vectorized,
  multi-threaded engine. A column that repeats its values (a strided probe of 4,096 rows is
  at most a quarter distinct) is dictionary-encoded first and only its distinct values go
  through the SQL; an identifier column is nearly all distinct, and encoding it would cost
  more than it saves, so it is hashed row by row.
* HMAC-SM3 (for commercial-cryptography deployments) has no SQL form: the column is
  dictionary-encoded, the *distinct* values are hashed once each with :mod:`cryptography`
  (``hmac.HMAC`` over ``hashes.SM3``) and the digests are taken back by index. For a unique
  identifier column that loop is as long as the column and runs on one core.

Format-preserving resident IDs are built digit by digit in numpy from three 64-bit words of
the HMAC of the original ID: a county-level GB/T 2260 area code valid in the new birth year
(from the code list python-stdnum ships and validates against, ``stdnum/cn/loc.dat``, kept as
one sorted array of (year, code) keys and searched with one ``searchsorted``), the birth date
(year kept, or shifted), a sequence number (parity kept when sex is kept) and the GB 11643
check character. Distinct IDs can collide on the same pseudonym; the space is
area × date × sequence, which shrinks when the region, year and sex are kept, and
``benchmarks/desensitize.py`` measures the rate.

Digests become pseudonyms with numpy (hex or base32 lookup tables over the digest matrix) and
go back into Arrow as one fixed-width string buffer. Keys are never used directly: every
operator derives its own sub-key with HMAC(key, purpose), so a pseudonym, a date offset and a
format-preserving ID made from the same value under the same key cannot be linked to one
another, while the same value gives the same output in every table issued under that key —
which is what keeps joins working across a sample's tables.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import importlib
import itertools
import math
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Literal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from yuanjian.privacy.labels import LABELS

__all__ = [
    "LABELS",
    "LABEL_NAMES_ZH",
    "OPERATORS",
    "SUPPRESSED_ROWS_METADATA_KEY",
    "OperatorCall",
    "OperatorSpec",
    "Param",
    "PolicyError",
    "PolicyIssue",
    "Variant",
    "apply_operator",
    "apply_policy",
    "check_call",
    "normalize_params",
    "operator_names",
    "suppress",
    "suppressed_rows",
]

#: Chinese display names, used for ``redact_entities`` tokens such as ``[身份证号]``.
LABEL_NAMES_ZH: dict[str, str] = {
    "cn_resident_id": "身份证号",
    "cn_uscc": "统一社会信用代码",
    "cn_mobile": "手机号",
    "cn_landline": "固定电话",
    "bank_card": "银行卡号",
    "email": "电子邮箱",
    "ip_address": "IP地址",
    "cn_license_plate": "车牌号",
    "passport": "护照号",
    "person_name": "姓名",
    "address": "地址",
    "date_of_birth": "出生日期",
    "geo_coordinate": "地理坐标",
    "free_text_with_pii": "含个人信息文本",
    "none": "无",
}

#: Schema metadata key under which :func:`apply_policy` records how many rows it suppressed.
SUPPRESSED_ROWS_METADATA_KEY = b"yuanjian.suppressed_rows"

HmacAlgorithm = Literal["hmac-sha256", "hmac-sm3"]
_ALGORITHMS = ("hmac-sha256", "hmac-sm3")


# ---------------------------------------------------------------------------------------------
# Errors, issues and calls
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyIssue:
    """One problem found while validating an operator call for a field."""

    field: str
    operator: str
    code: str
    message: str

    def __str__(self) -> str:
        return self.message


class PolicyError(ValueError):
    """A desensitization policy or operator call is unusable; names the field and operator."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        operator: str | None = None,
        issues: Sequence[PolicyIssue] = (),
    ) -> None:
        super().__init__(message)
        self.field = field
        self.operator = operator
        self.issues: list[PolicyIssue] = list(issues)

    @classmethod
    def from_issues(cls, issues: Sequence[PolicyIssue]) -> PolicyError:
        """Build one error from validation issues (the first issue names the field)."""
        first = issues[0]
        extra = f" (and {len(issues) - 1} more problem(s))" if len(issues) > 1 else ""
        return cls(first.message + extra, field=first.field, operator=first.operator, issues=issues)


class OperatorCall(BaseModel):
    """An operator name with its parameters, as written in a policy or a spec override."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    operator: str
    params: dict[str, Any] = Field(default_factory=dict)


FieldPolicy = Mapping[str, "OperatorCall | Mapping[str, Any]"]


def _as_call(value: OperatorCall | Mapping[str, Any], field: str) -> OperatorCall:
    if isinstance(value, OperatorCall):
        return value
    if isinstance(value, Mapping):
        try:
            return OperatorCall.model_validate(value)
        except ValueError as exc:
            raise PolicyError(
                f"field {field!r}: malformed operator call: {exc}", field=field
            ) from exc
    raise PolicyError(
        f"field {field!r}: expected an operator call, got {type(value).__name__}", field=field
    )


# ---------------------------------------------------------------------------------------------
# Registry types
# ---------------------------------------------------------------------------------------------

ParamKind = Literal["int", "number", "str", "bool", "str_list", "number_list", "str_map", "scalar"]


@dataclass(frozen=True)
class Param:
    """One operator parameter: its kind, whether required, default, and allowed values."""

    kind: ParamKind
    required: bool = False
    default: Any = None
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    doc: str = ""


@dataclass(frozen=True)
class _Ctx:
    key: bytes
    field: str
    operator: str
    subject: pa.Array | None
    seed: int | None


Impl = Callable[[_Ctx, pa.Array, dict[str, Any]], pa.Array]


@dataclass(frozen=True)
class Variant:
    """One form of an operator: its parameters, the column types it fits, the implementation."""

    params: Mapping[str, Param]
    accepts: Callable[[pa.DataType], bool]
    accepts_doc: str
    impl: Impl
    # Cross-parameter consistency; returns a problem description or None.
    cross_check: Callable[[dict[str, Any]], str | None] | None = None
    # Parameter-versus-column-type consistency (e.g. a replace value the column can't hold).
    type_check: Callable[[pa.DataType, dict[str, Any]], str | None] | None = None


@dataclass(frozen=True)
class OperatorSpec:
    """A registered operator: a name, a doc line, and its variants keyed by a discriminator."""

    name: str
    doc: str
    variants: Mapping[str, Variant]
    discriminator: str | None = None
    table_level: bool = False
    needs_subject: bool = False
    needs_seed: bool = False


# ---------------------------------------------------------------------------------------------
# Arrow type predicates
# ---------------------------------------------------------------------------------------------


def _value_type(t: pa.DataType) -> pa.DataType:
    return t.value_type if pa.types.is_dictionary(t) else t


def _is_string(t: pa.DataType) -> bool:
    v = _value_type(t)
    return pa.types.is_string(v) or pa.types.is_large_string(v) or pa.types.is_string_view(v)


def _is_integer(t: pa.DataType) -> bool:
    return pa.types.is_integer(_value_type(t))


def _is_number(t: pa.DataType) -> bool:
    v = _value_type(t)
    return pa.types.is_integer(v) or pa.types.is_floating(v)


def _is_temporal(t: pa.DataType) -> bool:
    v = _value_type(t)
    return pa.types.is_date32(v) or pa.types.is_date64(v) or pa.types.is_timestamp(v)


def _is_string_or_integer(t: pa.DataType) -> bool:
    return _is_string(t) or _is_integer(t)


def _any_type(t: pa.DataType) -> bool:
    return True


def _is_scalar_type(t: pa.DataType) -> bool:
    v = _value_type(t)
    return not (pa.types.is_nested(v) or pa.types.is_null(v))


# ---------------------------------------------------------------------------------------------
# Parameter validation
# ---------------------------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (isinstance(v, int | float) and not isinstance(v, bool)) and math.isfinite(v)


def _kind_ok(kind: ParamKind, v: Any) -> bool:
    if kind == "int":
        return _is_int(v)
    if kind == "number":
        return _is_num(v)
    if kind == "str":
        return isinstance(v, str)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "str_list":
        return isinstance(v, list | tuple) and all(isinstance(x, str) for x in v)
    if kind == "number_list":
        return isinstance(v, list | tuple) and all(_is_num(x) for x in v)
    if kind == "str_map":
        return isinstance(v, Mapping) and all(
            isinstance(k, str) and isinstance(x, str) for k, x in v.items()
        )
    # scalar
    return v is None or isinstance(v, str | int | float | bool)


_KIND_NAMES: dict[str, str] = {
    "int": "an integer",
    "number": "a finite number",
    "str": "a string",
    "bool": "true or false",
    "str_list": "a list of strings",
    "number_list": "a list of numbers",
    "str_map": "a mapping of strings to strings",
    "scalar": "a string, number, boolean or null",
}


def operator_names() -> list[str]:
    """Names of all registered operators."""
    return sorted(OPERATORS)


def _issue(field: str, operator: str, code: str, message: str) -> PolicyIssue:
    return PolicyIssue(field=field, operator=operator, code=code, message=message)


def _resolve_variant(
    spec: OperatorSpec, params: Mapping[str, Any], field: str
) -> tuple[Variant | None, list[PolicyIssue]]:
    if spec.discriminator is None:
        return spec.variants[""], []
    disc = spec.discriminator
    value = params.get(disc)
    choices = ", ".join(sorted(spec.variants))
    if value is None:
        return None, [
            _issue(
                field,
                spec.name,
                "missing_parameter",
                f"field {field!r}: operator {spec.name!r} needs parameter {disc!r} "
                f"(one of {choices})",
            )
        ]
    if not isinstance(value, str) or value not in spec.variants:
        return None, [
            _issue(
                field,
                spec.name,
                "parameter_value",
                f"field {field!r}: operator {spec.name!r} parameter {disc!r} is {value!r}; "
                f"expected one of {choices}",
            )
        ]
    return spec.variants[value], []


def check_call(
    operator: str | OperatorCall,
    params: Mapping[str, Any] | None = None,
    arrow_type: pa.DataType | None = None,
    *,
    field: str,
) -> list[PolicyIssue]:
    """Validate one operator call for a field; with ``arrow_type``, also check it fits."""
    _, issues = _normalize(operator, params, arrow_type, field=field)
    return issues


def normalize_params(
    operator: str | OperatorCall,
    params: Mapping[str, Any] | None = None,
    arrow_type: pa.DataType | None = None,
    *,
    field: str,
) -> dict[str, Any]:
    """Validate a call and return its parameters with defaults filled; raise PolicyError."""
    normalized, issues = _normalize(operator, params, arrow_type, field=field)
    if issues:
        raise PolicyError.from_issues(issues)
    assert normalized is not None
    return normalized


def _normalize(
    operator: str | OperatorCall,
    params: Mapping[str, Any] | None,
    arrow_type: pa.DataType | None,
    *,
    field: str,
) -> tuple[dict[str, Any] | None, list[PolicyIssue]]:
    if isinstance(operator, OperatorCall):
        name, params = operator.operator, operator.params if params is None else params
    else:
        name = operator
    params = dict(params or {})
    spec = OPERATORS.get(name)
    if spec is None:
        return None, [
            _issue(
                field,
                str(name),
                "unknown_operator",
                f"field {field!r}: unknown operator {name!r} "
                f"(known: {', '.join(operator_names())})",
            )
        ]
    variant, issues = _resolve_variant(spec, params, field)
    if variant is None:
        return None, issues
    allowed = dict(variant.params)
    if spec.discriminator is not None:
        allowed[spec.discriminator] = Param("str", required=True)
    out: dict[str, Any] = {}
    for pname in params:
        if pname not in allowed:
            issues.append(
                _issue(
                    field,
                    name,
                    "extra_parameter",
                    f"field {field!r}: operator {name!r} has no parameter {pname!r} "
                    f"(parameters: {', '.join(sorted(allowed)) or 'none'})",
                )
            )
    for pname, p in allowed.items():
        if pname not in params or params[pname] is None:
            if p.required:
                issues.append(
                    _issue(
                        field,
                        name,
                        "missing_parameter",
                        f"field {field!r}: operator {name!r} needs parameter {pname!r}",
                    )
                )
            else:
                out[pname] = p.default
            continue
        value = params[pname]
        if not _kind_ok(p.kind, value):
            issues.append(
                _issue(
                    field,
                    name,
                    "parameter_type",
                    f"field {field!r}: operator {name!r} parameter {pname!r} must be "
                    f"{_KIND_NAMES[p.kind]}, got {value!r}",
                )
            )
            continue
        if p.kind == "number":
            value = float(value)
        elif p.kind in ("str_list", "number_list"):
            value = list(value)
        elif p.kind == "str_map":
            value = dict(value)
        if p.choices is not None and value not in p.choices:
            issues.append(
                _issue(
                    field,
                    name,
                    "parameter_value",
                    f"field {field!r}: operator {name!r} parameter {pname!r} is {value!r}; "
                    f"expected one of {', '.join(map(str, p.choices))}",
                )
            )
            continue
        if (p.minimum is not None and value < p.minimum) or (
            p.maximum is not None and value > p.maximum
        ):
            lo = "-inf" if p.minimum is None else p.minimum
            hi = "inf" if p.maximum is None else p.maximum
            issues.append(
                _issue(
                    field,
                    name,
                    "parameter_value",
                    f"field {field!r}: operator {name!r} parameter {pname!r} is {value!r}; "
                    f"expected a value in [{lo}, {hi}]",
                )
            )
            continue
        out[pname] = value
    if issues:
        return None, issues
    if variant.cross_check is not None:
        problem = variant.cross_check(out)
        if problem:
            return None, [
                _issue(
                    field, name, "parameter_value", f"field {field!r}: operator {name!r}: {problem}"
                )
            ]
    if arrow_type is not None:
        if not variant.accepts(arrow_type):
            what = (
                f"{name}({spec.discriminator}={out[spec.discriminator]!r})"
                if (spec.discriminator)
                else repr(name)
            )
            return None, [
                _issue(
                    field,
                    name,
                    "column_type",
                    f"field {field!r}: operator {what} does not fit column type {arrow_type}; "
                    f"it needs {variant.accepts_doc}",
                )
            ]
        if variant.type_check is not None:
            problem = variant.type_check(arrow_type, out)
            if problem:
                return None, [
                    _issue(
                        field,
                        name,
                        "column_type",
                        f"field {field!r}: operator {name!r}: {problem}",
                    )
                ]
    return out, []


# ---------------------------------------------------------------------------------------------
# Small Arrow/numpy helpers
# ---------------------------------------------------------------------------------------------


def _validity(col: pa.Array) -> pa.Buffer | None:
    """A fresh validity bitmap for ``col`` (offset 0), or None when it has no nulls."""
    if col.null_count == 0:
        return None
    # A freshly computed boolean array has offset 0 and no nulls: its data bitmap is exactly
    # the validity bitmap we need.
    return pc.is_valid(col).buffers()[1]


def _strings_from_matrix(chars: np.ndarray, valid: pa.Buffer | None, null_count: int) -> pa.Array:
    """Turn an (n, w) uint8 matrix of UTF-8 bytes into a string array in one buffer."""
    n, w = chars.shape
    data = pa.py_buffer(np.ascontiguousarray(chars, dtype=np.uint8))
    if n * w < 2**31 - 1:
        offsets = pa.py_buffer(np.arange(0, (n + 1) * w, w, dtype=np.int32))
        return pa.StringArray.from_buffers(n, offsets, data, valid, null_count if valid else 0)
    offsets = pa.py_buffer(np.arange(0, (n + 1) * w, w, dtype=np.int64))
    return pa.LargeStringArray.from_buffers(n, offsets, data, valid, null_count if valid else 0)


def _fixed_width_matrix(col: pa.Array, width: int) -> np.ndarray:
    """Return the (n, width) byte matrix of a string array whose values all have that byte width."""
    col = col.cast(pa.string()) if not pa.types.is_string(col.type) else col
    n = len(col)
    if n == 0:
        return np.zeros((0, width), dtype=np.uint8)
    offsets = np.frombuffer(col.buffers()[1], dtype=np.int32)
    start = int(offsets[col.offset])
    data = np.frombuffer(col.buffers()[2], dtype=np.uint8)
    return data[start : start + n * width].reshape(n, width)


def _words(digests: np.ndarray, index: int) -> np.ndarray:
    """Little-endian uint64 number ``index`` (0–3) of each 32-byte digest."""
    return np.ascontiguousarray(digests[:, 8 * index : 8 * index + 8]).view("<u8").ravel()


def _combine(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    if pa.types.is_string_view(col.type):
        col = col.cast(pa.string())
    return col


def _as_text(col: pa.Array) -> pa.Array:
    """Canonical text of a string or integer column (what HMAC inputs are computed over)."""
    if pa.types.is_string(col.type):
        return col
    if pa.types.is_large_string(col.type):
        return col.cast(pa.string())
    return pc.cast(col, pa.string())


# ---------------------------------------------------------------------------------------------
# HMAC (SQL for SHA-256, distinct values for SM3)
# ---------------------------------------------------------------------------------------------

_db_lock = threading.Lock()
_db: duckdb.DuckDBPyConnection | None = None


def _duckdb() -> duckdb.DuckDBPyConnection:
    """A fresh cursor on one shared in-memory database (close it after use).

    A DuckDB connection must not be used by two threads at once, and opening a database costs
    tens of milliseconds; a cursor is a cheap connection of its own to the same database.
    """
    global _db
    with _db_lock:
        if _db is None:
            _db = duckdb.connect(":memory:")
            # The HMAC query relies on row i of the result being row i of the input.
            _db.execute("SET preserve_insertion_order = true")
            atexit.register(_close_duckdb)
        return _db.cursor()


def _close_duckdb() -> None:
    # Closed before interpreter teardown, or DuckDB's bindings report the open objects.
    global _db
    with _db_lock:
        if _db is not None:
            _db.close()
            _db = None


def _hmac_one(key: bytes, message: bytes, algorithm: str) -> bytes:
    if algorithm == "hmac-sha256":
        return hmac.new(key, message, hashlib.sha256).digest()
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives import hmac as chmac

    h = chmac.HMAC(key, hashes.SM3())
    h.update(message)
    return h.finalize()


def _subkey(key: bytes, purpose: str, algorithm: str) -> bytes:
    """Per-purpose sub-key, so outputs of different operators cannot be linked."""
    return _hmac_one(key, b"yuanjian/desensitize/" + purpose.encode(), algorithm)


def _hmac_sql(text: pa.Array, key: bytes, template: str, extra: Sequence[Any] = ()) -> pa.Array:
    """Run ``template`` (with ``{hmac_hex}`` for the hex HMAC-SHA256 of ``v``) over ``text``."""
    k = hashlib.sha256(key).digest() if len(key) > 64 else key
    k = k.ljust(64, b"\0")
    ipad = bytes(b ^ 0x36 for b in k)
    opad = bytes(b ^ 0x5C for b in k)
    indices = None
    if _mostly_repeated(text):
        encoded = pc.dictionary_encode(text)
        text, indices = encoded.dictionary, encoded.indices
    con = _duckdb()
    try:
        con.register("yj_hmac_input", pa.table({"v": text}))
        # HMAC(K, m) = H((K ^ opad) || H((K ^ ipad) || m)); sha256 takes a BLOB and returns
        # hex, hence the inner unhex. Insertion order is preserved (set on the connection).
        expr = template.format(hmac_hex="sha256($2 || unhex(sha256($1 || encode(v))))")
        result = con.sql(
            f"SELECT {expr} AS d FROM yj_hmac_input", params=[ipad, opad, *extra]
        ).to_arrow_table()
    finally:
        con.close()
    out = _combine(result.column(0))
    return out if indices is None else out.take(indices)


_PROBE = 4096


def _mostly_repeated(text: pa.Array) -> bool:
    """Whether a strided probe of the column is at most a quarter distinct values.

    Such a column is hashed once per distinct value (dictionary-encode, hash the dictionary,
    take back by index). An identifier column is nearly all distinct, and encoding it would
    cost more than it saves, so it is hashed row by row.
    """
    n = len(text)
    if n < 2 * _PROBE:
        return False
    probe = text.take(pa.array(np.linspace(0, n - 1, _PROBE).astype(np.int64)))
    return pc.count_distinct(probe, mode="all").as_py() <= _PROBE // 4


def _hmac_digests(text: pa.Array, key: bytes, algorithm: str) -> np.ndarray:
    """HMAC of every value of a string array (nulls hashed as ''), as an (n, 32) uint8 matrix."""
    text = pc.fill_null(text, "") if text.null_count else text
    n = len(text)
    if n == 0:
        return np.zeros((0, 32), dtype=np.uint8)
    if algorithm == "hmac-sha256":
        digests = _hmac_sql(text, key, "unhex({hmac_hex})").cast(pa.binary(32))
        return np.frombuffer(digests.buffers()[1], dtype=np.uint8)[
            digests.offset * 32 : (digests.offset + n) * 32
        ].reshape(n, 32)
    # HMAC-SM3: no SQL form; hash each distinct value once, then take by index.
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives import hmac as chmac

    encoded = pc.dictionary_encode(text)
    uniques = encoded.dictionary.to_pylist()
    base = chmac.HMAC(key, hashes.SM3())
    out = bytearray()
    for value in uniques:
        h = base.copy()
        h.update(value.encode())
        out += h.finalize()
    table = np.frombuffer(bytes(out), dtype=np.uint8).reshape(len(uniques), 32)
    return table[encoded.indices.to_numpy(zero_copy_only=False)]


_HEX2 = np.array([list(f"{i:02x}".encode()) for i in range(256)], dtype=np.uint8)
_B32 = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz234567", dtype=np.uint8)
_B32_WEIGHTS = np.array([16, 8, 4, 2, 1], dtype=np.uint8)


def _encode_digests(digests: np.ndarray, encoding: str, length: int) -> np.ndarray:
    """First ``length`` hex or base32 (lower-case RFC 4648) characters of each digest."""
    n = digests.shape[0]
    if encoding == "hex":
        used = (length + 1) // 2
        return _HEX2[digests[:, :used]].reshape(n, 2 * used)[:, :length]
    used = (length * 5 + 7) // 8
    bits = np.unpackbits(digests[:, :used], axis=1)[:, : length * 5].reshape(n, length, 5)
    return _B32[(bits * _B32_WEIGHTS).sum(axis=2)]


# ---------------------------------------------------------------------------------------------
# keep / redact / replace / mask
# ---------------------------------------------------------------------------------------------


def _keep(ctx: _Ctx, col: pa.Array, p: dict[str, Any]) -> pa.Array:
    return col


def _redact(ctx: _Ctx, col: pa.Array, p: dict[str, Any]) -> pa.Array:
    return pa.nulls(len(col), type=col.type)


def _replace_type_check(t: pa.DataType, p: dict[str, Any]) -> str | None:
    try:
        pa.scalar(p["value"]).cast(_value_type(t))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OverflowError):
        return f"value {p['value']!r} cannot be stored in a column of type {t}"
    return None


def _replace(ctx: _Ctx, col: pa.Array, p: dict[str, Any]) -> pa.Array:
    value = pa.scalar(p["value"]).cast(col.type)
    filled = pa.repeat(value, len(col))
    if p["keep_nulls"] and col.null_count:
        return pc.if_else(pc.is_valid(col), filled, pa.scalar(None, col.type))
    return filled


def _mask(ctx: _Ctx, col: pa.Array, p: dict[str, Any]) -> pa.Array:
    kf, kl, ch, fixed = p["keep_first"], p["keep_last"], p["mask_char"], p["mask_length"]
    length = pc.utf8_length(col)
    head = pc.utf8_slice_codeunits(col, 0, kf) if kf else ""
    tail = pc.utf8_slice_codeunits(col, -kl) if kl else ""
    if fixed is None:
        hidden = pc.max_element_wise(pc.subtract(length, kf + kl), 0)
        middle = pc.binary_repeat(pa.scalar(ch, col.type), hidden)
        whole = pc.binary_repeat(pa.scalar(ch, col.type), length)
    else:
        middle = pa.scalar(ch * fixed, col.type)
        whole = pa.scalar(ch * max(fixed, 1), col.type)
    shown = pc.binary_join_element_wise(head, middle, tail, pa.scalar("", col.type))
    # A value no longer than keep_first + keep_last would otherwise be shown whole.
    short = pc.less_equal(length, kf + kl)
    return pc.if_else(short, whole, shown)


def _mask_check(p: dict[str, Any]) -> str | None:
    if len(p["mask_char"]) != 1:
        return f"mask_char must be a single character, got {p['mask_char']!r}"
    return None


# ---------------------------------------------------------------------------------------------
# pseudonymize
# ---------------------------------------------------------------------------------------------


def _pseudonymize(ctx: _Ctx, col: pa.Array, p: dict[str, Any]) -> pa.Array:
    text = _as_text(col)
    if p["algorithm"] == "hmac-sha256" and p["encoding"] == "hex":
        # The common case never leaves SQL: DuckDB's sha256 already returns hex.
        key = _subkey(ctx.key, "pseudonymize", p["algorithm"])
        out = _hmac_sql(text, key, "$3 || left({hmac_hex}, $4)", [p["prefix"], p["length"]])
        return out.cast(pa.string()) if not pa.types.is_string(out.type) else out
    digests = _hmac_digests(text, _subkey(ctx.key, "pseudonymize", p["algorithm"]), p["algorithm"])
    chars = _encode_digests(digests, p["encoding"], p["length"])
    if p["prefix"]:
        prefix = np.frombuffer(p["prefix"].encode(), dtype=np.uint8)
        chars = np.concatenate([np.broadcast_to(prefix, (len(chars), len(prefix))), chars], 1)
    return _strings_from_matrix(chars, _validity(col), col.null_count)


def _pseudonymize_check(p: dict[str, Any]) -> str | None:
    limit = 64 if p["encoding"] == "hex" else 51
    if p["length"] > limit:
        return f"length {p['length']} exceeds the {limit} characters a {p['encoding']} digest has"
    return None


# ---------------------------------------------------------------------------------------------
# format_preserving: resident ID (GB 11643) and mobile number
# ---------------------------------------------------------------------------------------------

_RIC_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int32)
_RIC_CHECK = np.frombuffer(b"10X98765432", dtype=np.uint8)
_REGION_DIGITS = {"none": 0, "province": 2, "city": 4}
_DIGITS2 = np.array([list(f"{i:02d}".encode()) for i in range(100)], dtype=np.uint8)
_DIGITS3 = np.array([list(f"{i:03d}".encode()) for i in range(1000)], dtype=np.uint8)
_LOC_ENTRY = re.compile(r"^\[(\d*)-(\d*)\]")
# Pool slots: 0 holds every code ever valid; slot y - _FIRST_YEAR + 1 the codes valid in y.
_FIRST_YEAR, _LAST_YEAR = 1900, 2100
_SLOT = 1_000_000


@lru_cache(maxsize=1)
def _area_index() -> np.ndarray:
    """Sorted keys slot * 10**6 + code of the county-level GB/T 2260 codes valid per year.

    The codes and their validity years come from python-stdnum's ``cn/loc.dat`` (the data
    ``stdnum.cn.ric`` validates birth places against), so a pseudonymous ID passes it.
    """
    text = resources.files("stdnum.cn").joinpath("loc.dat").read_text(encoding="utf-8")
    codes: list[int] = []
    starts: list[int] = []
    ends: list[int] = []
    province = ""
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if not line.startswith(" "):
            province = line.split()[0]
            continue
        suffix, _, rest = line.strip().partition(" ")
        code = int(province + suffix)
        if code % 100 == 0:  # province/city-level aggregates are not places of birth
            continue
        for entry in rest.partition("=")[2].strip().strip('"').split(","):
            m = _LOC_ENTRY.match(entry)
            codes.append(code)
            starts.append(int(m.group(1) or 0) if m else 0)
            ends.append(int(m.group(2) or 9999) if m else 9999)
    code_arr, start_arr, end_arr = np.array(codes), np.array(starts), np.array(ends)
    keys = [np.unique(code_arr)]
    for slot, year in enumerate(range(_FIRST_YEAR, _LAST_YEAR + 1), start=1):
        valid = np.unique(code_arr[(start_arr <= year) & (year <= end_arr)])
        keys.append(valid + slot * _SLOT)
    return np.concatenate(keys).astype(np.int64)


def _pick_area(slot: np.ndarray, area: np.ndarray, digits: int, h: np.ndarray) -> np.ndarray:
    """Pick a code in each row's pool slot sharing ``digits`` leading digits; -1 if none."""
    index = _area_index()
    if digits == 0:
        # Nothing kept: each row's range is its whole slot, looked up per slot, not per row.
        edges = np.searchsorted(index, np.arange(_LAST_YEAR - _FIRST_YEAR + 3) * _SLOT)
        lo = edges[slot]
        count = edges[slot + 1] - lo
    else:
        scale = 10 ** (6 - digits)
        base = slot * _SLOT + area // scale * scale
        lo = np.searchsorted(index, base, side="left")
        count = np.searchsorted(index, base + scale, side="left") - lo
    out = np.full(len(area), -1, dtype=np.int64)
    ok = count > 0
    pick = lo[ok] + (h[ok] % count[ok].astype(np.uint64)).astype(np.int64)
    out[ok] = index[pick] - slot[ok] * _SLOT
    return out


def _write_digits(out: np.ndarray, start: int, values: np.ndarray, width: int) -> None:
    """Write non-negative integers as zero-padded ASCII digits into out[:, start:start+width]."""
    pos = start + width
    values = values.astype(np.int64)
    while width > 0:
        step = 3 if width >= 3 else width
        table = _DIGITS3 if step == 3 else _DIGITS2 if step == 2 else _DIGITS2[:10, 1:]
        out[:, pos - step : pos] = table[values % 10**step]
        values = values // 10**step
        pos -= step
        width -= step


def _number(chars: np.ndarray) -> np.ndarray:
    """(n, w) ASCII digits → (n,) int64."""
    weights = 10 ** np.arange(chars.shape[1] - 1, -1, -1, dtype=np.int64)
    return (chars.astype(np.int64) - 48) @ weights


_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


def _is_leap(year: np.ndarray) -> np.ndarray:
    return (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))


# Days since 1970-01-01 and back, in integer arithmetic (H. Hinnant's civil-calendar
# algorithms): numpy's datetime64 unit conversions do the same per element but far slower.
def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    y = y - (m <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + np.where(m > 2, -3, 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_from_days(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    z = z + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + np.where(mp < 10, 3, -9)
    return yoe + era * 400 + (m <= 2), m, d


def _invalid_rows(ctx: _Ctx, col: pa.Array, ok: np.ndarray, what: str, on_invalid: str) -> None:
    if on_invalid != "error":
        return
    bad = pc.is_valid(col).to_numpy(zero_copy_only=False) & ~ok
    if bad.any():
        # Name the row, never the value: it is the personal data being protected.
        raise PolicyError(
            f"field {ctx.field!r}: row {int(np.argmax(bad))} is not a valid {what}; operator "
            f"{ctx.operator!r} cannot keep its format (on_invalid='error')",
            field=ctx.field,
            operator=ctx.operator,
        )


def _scatter(sub_chars: np.ndarray, ok: np.ndarray) -> pa.Array:
    """Rows ``ok`` get ``sub_chars`` in order; the others become null."""
    if ok.all():
        return _strings_from_matrix(sub_chars, None, 0)
    full = np.zeros((len(ok), sub_chars.shape[1]), dtype=np.uint8)
    full[ok] = sub_chars
    valid = pa.array(ok, type=pa.bool_()).buffers()[1]
    return _strings_from_matrix(full, valid, int(len(ok) - ok.sum()))


def _fpe_resident_id(ctx: _Ctx, col: pa.Array, p: dict[str, Any]) -> pa.Array:
    text = _as_text(col)
    shaped = pc.fill_null(pc.match_substring_regex(text, r"^\d{17}[\dXx]$"), False)
    ok = shaped.to_numpy(zero_copy_only=False)
    chars = _fixed_width_matrix(text.filter(shaped), 18).copy()
    chars[:, 17] = np.where(chars[:, 17] == ord("x"), ord("X"), chars[:, 17])
    year = _number(chars[:, 6:10])
    month = _number(chars[:, 10:12])
    day = _number(chars[:, 12:14])
    month_len = _MONTH_DAYS[np.clip(month, 1, 12)] + ((month == 2) & _is_leap(year))
    real_date = (month >= 1) & (month <= 12) & (day >= 1) & (day <= month_len)
    ok[np.flatnonzero(ok)[~real_date]] = False
    _invalid_rows(ctx, col, ok, "18-character resident ID", p["on_invalid"])
    chars, year = chars[real_date], year[real_date]
    days = _days_from_civil(year, month[real_date], day[real_date])
    m = len(chars)

    # The HMAC input is the canonical ID (upper-case X), so x/X spellings agree.
    digests = _hmac_digests(
        _strings_from_matrix(chars, None, 0),
        _subkey(ctx.key, "format_preserving/cn_resident_id", p["algorithm"]),
        p["algorithm"],
    )
    w_area, w_birth, w_seq = _words(digests, 0), _words(digests, 1), _words(digests, 2)
    if p["keep_birth_year"]:
        start = _days_from_civil(year, np.ones_like(year), np.ones_like(year))
        year_len = (365 + _is_leap(year)).astype(np.uint64)
        new_days = start + (w_birth % year_len).astype(np.int64)
    else:
        shift = p["birth_shift_days"]
        new_days = days + (w_birth % np.uint64(2 * shift + 1)).astype(np.int64) - shift
    new_year, new_month, new_day = _civil_from_days(new_days)

    # New area code: a county code valid in the new birth year (python-stdnum checks that)
    # sharing the kept province/city prefix; failing that, one valid in any year; failing
    # that (the prefix is not a real code), any code in the country.
    region = _REGION_DIGITS[p["keep_region"]]
    area = _number(chars[:, :6])
    slot = np.clip(new_year, _FIRST_YEAR, _LAST_YEAR) - _FIRST_YEAR + 1
    new_area = _pick_area(slot, area, region, w_area)
    missing = new_area < 0
    if missing.any():
        anytime = np.zeros(int(missing.sum()), dtype=np.int64)
        new_area[missing] = _pick_area(anytime, area[missing], region, w_area[missing])
        missing = new_area < 0
        if missing.any():
            new_area[missing] = _pick_area(slot[missing], area[missing], 0, w_area[missing])

    seq = (w_seq % np.uint64(1000)).astype(np.int64)
    if p["keep_sex"]:
        # GB 11643: the sequence number is odd for men, even for women.
        seq = seq - seq % 2 + (chars[:, 16].astype(np.int64) - 48) % 2

    out = np.empty((m, 18), dtype=np.uint8)
    _write_digits(out, 0, new_area, 6)
    _write_digits(out, 6, new_year, 4)
    _write_digits(out, 10, new_month, 2)
    _write_digits(out, 12, new_day, 2)
    _write_digits(out, 14, seq, 3)
    out[:, 17] = _RIC_CHECK[((out[:, :17].astype(np.int32) - 48) @ _RIC_WEIGHTS) % 11]
    return _scatter(out, ok)


def _fpe_mobile(ctx: _Ctx, col: pa.Array, p: dict[str, Any]) -> pa.Array:
    text = _as_text(col)
    shaped = pc.fill_null(pc.match_substring_regex(text, r"^1[3-9]\d{9}$"), False)
    ok = shaped.to_numpy(zero_copy_only=False)
    _invalid_rows(ctx, col, ok, "11-digit mainland mobile number", p["on_invalid"])
    sub = text.filter(shaped)
    keep = p["keep_prefix"]
    digests = _hmac_digests(
        sub, _subkey(ctx.key, "format_preserving/cn_mobile", p["algorithm"]), p["algorithm"]
    )
    rest = 11 - keep
    out = np.empty((len(sub), 11), dtype=np.uint8)
    out[:, :keep] = _fixed_width_matrix(sub, 11)[:, :keep]
    _write_digits(out, keep, _words(digests, 0) % np.uint64(10**rest), rest)
    result = _scatter(out, ok)
    return pc.cast(result, col.type) if _is_integer(col.type) else result


# ---------------------------------------------------------------------------------------------
# generalize
# ---------------------------------------------------------------------------------------------

_DATE_UNITS = {"year": "year", "quarter": "quarter", "month": "month"}


def _generalize_date(unit: str) -> Impl:
    def impl(ctx: _Ctx, col: pa.Array, p: dict[str, Any]) -> pa.Array:
        if p["output"] == "truncate":
            return pc.floor_temporal(col, unit=_DATE_UNITS[unit])
        year = pc.cast(pc.year(col), pa.string())
        if unit == "year":
            return year
        if unit == "month":
            return pc.strftime(col, format="%Y-%m")
        quarter = pc.cast(pc.quarter(col), pa.string())
        return pc.binary_join_element_wise(year, "-Q", quarter, "")

    return impl


def _num_str(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def _numpy_values(col: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    valid = pc.is_valid(col).to_numpy(zero_copy_only=False)
    zero = pa.scalar(0, col.type) if _is_integer(col.type) else pa.scalar(0.0, col.type)
    values = pc.fill_null(col, zero).to_numpy(zero_copy_only=False)
    return values, valid


def _band(ctx: _Ctx, col: pa.Array, p: dict[str, Any]) -> pa.Array:
    values, valid = _numpy_values(col)
    mask = ~valid
    if p["bounds"] is not None:
        bounds = np.array(sorted(p["bounds"]), dtype=np.float64)
        bins = np.searchsorted(bounds, values.astype(np.float64), side="right")
        labels = [f"<{_num_str(bounds[0])}"]
        labels += [f"[{_num_str(a)},{_num_str(b)})" for a, b in itertools.pairwise(bounds)]
        labels.append(f">={_num_str(bounds[-1])}")
        return pa.array(labels, pa.string()).take(pa.array(bins, mask=mask))
    width, origin = p["width"], p["origin"]
    integral = _is_integer(col.type) and width.is_integer() and origin.is_integer()
    if integral:
        w, o = int(width), int(origin)
        lower = (values.astype(np.int64) - o) // w * w + o
        upper = lower + w
    else:
        lower = np.floor((values.astype(np.float64) - origin) / width) * width + origin
        upper = lower + width
    if p["output"] == "lower":
        out_type = col.type if integral else pa.float64()
        return pa.array(lower, mask=mask).cast(out_type)
    lo = pa.array(lower, mask=mask).cast(pa.string())
    hi = pa.array(upper).cast(pa.string())
    return pc.binary_join_element_wise("[", lo, ",", hi, ")", "")


def _band_check(p: dict[str, Any]) -> str | None:
    if (p["width"] is None) == (p["bounds"] is None):
        return "band needs exactly one of 'width' or 'bounds'"
    if p["width"] is not None and p["width"] <= 0:
        return f"width must be positive, got {p['width']!r}"
    if p["bounds"] is not None:
        b = p["bounds"]
        if not b or any(x >= y for x, y in itertools.pairwise(b)):
            return "bounds must be a non-empty, strictly increasing list"
        if p["output"] == "lower":
            return "output 'lower' needs 'width' (the first bound-band has no lower bound)"
    return None


def _round(ctx: _Ctx, col: pa.Array, p: dict[str, Any]) -> pa.Array:
    digits = p["digits"]
    if _is_integer(col.type) and digits >= 0:
        return col
    return pc.cast(pc.round(col, ndigits=digits, round_mode="half_to_even"), col.type)


def _top_bottom(ctx: _Ctx, col: pa.Array, p: dict[str, Any]) -> pa.Array:
    out = col
    if p["lower"] is not None:
        out = pc.max_element_wise(out, _number_scalar(p["lower"], col.type), skip_nulls=False)
    if p["upper"] is not None:
        out = pc.min_element_wise(out, _number_scalar(p["upper"], col.type), skip_nulls=False)
    return out


def _number_scalar(v: float, t: pa.DataType) -> pa.Scalar:
    if _is_integer(t):
        # Round the code toward the kept range so an integer column stays integer.
        return pa.scalar(int(v) if float(v).is_integer() else round(v), t)
    return pa.scalar(v, t)


def _top_bottom_check(p: dict[str, Any]) -> str | None:
    if p["lower"] is None and p["upper"] is None:
        return "top_bottom needs 'lower', 'upper' or both"
    if p["lower"] is not None and p["upper"] is not None and p["lower"] > p["upper"]:
        return f"lower {p['lower']!r} is above upper {p['upper']!r}"
    return None


def _area_code(ctx: _Ctx, col: pa.Array, p: dict[str, Any]) -> pa.Array:
    scale = 100 if p["level"] == "city" else 10_000
    if _is_integer(col.type):
        bad = pc.or_(pc.less(col, 100_000), pc.greater(col, 999_999))
        _raise_first_bad(ctx, col, bad, "a 6-digit GB/T 2260 area code")
        return pc.multiply(pc.divide(col, pa.scalar(scale, col.type)), pa.scalar(scale, col.type))
    text = col.cast(pa.string()) if not pa.types.is_string(col.type) else col
    bad = pc.invert(pc.match_substring_regex(text, r"^\d{6}$"))
    _raise_first_bad(ctx, col, bad, "a 6-digit GB/T 2260 area code")
    keep = 4 if p["level"] == "city" else 2
    pad = "0" * (6 - keep)
    out = pc.binary_join_element_wise(pc.utf8_slice_codeunits(text, 0, keep), pad, "")
    return out.cast(col.type)


def _raise_first_bad(ctx: _Ctx, col: pa.Array, bad: pa.Array, what: str) -> None:
    bad = pc.fill_null(bad, False)
    if pc.any(bad).as_py():
        row = pc.index(bad, True).as_py()
        raise PolicyError(
            f"field {ctx.field!r}: row {row} value {col[row].as_py()!r} is not {what}",
            field=ctx.field,
            operator=ctx.operator,
        )


# A Chinese address starts province → prefecture → county. The suffixes (省/自治区/市,
# 市/自治州/地区/盟, 区/县/市/旗) are what GB/T 2260 names end with; names are short, so the
# character classes and lengths stop a match from running into the street part.
_ADDRESS_RE = (
    r"^(?P<province>[^省市区县]{1,7}?省|[^省市区县]{1,8}?自治区|北京市|天津市|上海市|重庆市"
    r"|香港特别行政区|澳门特别行政区)?"
    r"(?P<city>[^省市区县]{1,10}?(?:市|自治州|地区|盟))?"
    r"(?P<district>[^省市区县旗]{1,8}?(?:区|县|市|旗))?"
)
_ADDRESS_LEVELS = {"province": 1, "city": 2, "district": 3}


def _address(ctx: _Ctx, col: pa.Array, p: dict[str, Any]) -> pa.Array:
    text = col.cast(pa.string()) if not pa.types.is_string(col.type) else col
    parts = pc.extract_regex(text, _ADDRESS_RE)
    names = ["province", "city", "district"][: _ADDRESS_LEVELS[p["level"]]]
    fields = [pc.struct_field(parts, name) for name in names]
    joined = pc.binary_join_element_wise(*fields, "")
    # Nothing recognisable: no safe generalization exists, so the value is withheld.
    return pc.if_else(pc.equal(joined, ""), pa.scalar(None, pa.string()), joined)


def _hierarchy(ctx: _Ctx, col: pa.Array, p: dict[str, Any]) -> pa.Array:
    table: dict[str, str] = p["hierarchy"]
    keys = pa.array(list(table.keys()), pa.string())
    parents = pa.array(list(table.values()), pa.string())
    text = _as_text(col)
    # index_in + take is a hash join of the column against the (value → parent) table.
    idx = pc.index_in(text, value_set=keys)
    missing = pc.and_(pc.is_valid(text), pc.is_null(idx))
    if pc.any(missing).as_py():
        row = pc.index(missing, True).as_py()
        raise PolicyError(
            f"field {ctx.field!r}: value {text[row].as_py()!r} (row {row}) is not in the "
            f"hierarchy table of operator 'generalize'",
            field=ctx.field,
            operator=ctx.operator,
        )
    out = parents.take(idx)
    for _ in range(p["levels"] - 1):
        idx = pc.index_in(out, value_set=keys)
        # A value with no parent is a root: it stays where it is.
        out = pc.if_else(pc.is_null(idx), out, parents.take(idx))
    return out


def _hierarchy_check(p: dict[str, Any]) -> str | None:
    if not p["hierarchy"]:
        return "hierarchy must map at least one value to its parent"
    return None


# ---------------------------------------------------------------------------------------------
# date_shift / noise
# ---------------------------------------------------------------------------------------------

_UNITS_PER_DAY = {"s": 86_400, "ms": 86_400_000, "us": 86_400_000_000, "ns": 86_400_000_000_000}


def _date_shift(ctx: _Ctx, col: pa.Array, p: dict[str, Any]) -> pa.Array:
    if ctx.subject is None:
        raise PolicyError(
            f"field {ctx.field!r}: operator 'date_shift' needs a subject column "
            "(subject_column) so each subject's dates move by the same offset",
            field=ctx.field,
            operator=ctx.operator,
        )
    subject = _combine(ctx.subject)
    if len(subject) != len(col):
        raise PolicyError(
            f"field {ctx.field!r}: subject column has {len(subject)} rows, column has {len(col)}",
            field=ctx.field,
            operator=ctx.operator,
        )
    if not _is_scalar_type(subject.type):
        raise PolicyError(
            f"field {ctx.field!r}: subject column type {subject.type} cannot key date_shift",
            field=ctx.field,
            operator=ctx.operator,
        )
    text = subject if pa.types.is_string(subject.type) else pc.cast(subject, pa.string())
    digests = _hmac_digests(text, _subkey(ctx.key, "date_shift", p["algorithm"]), p["algorithm"])
    span = p["max_days"]
    # Offsets in [-max_days, -1] ∪ [1, max_days]: a zero shift would publish the true date.
    u = (_words(digests, 0) % np.uint64(2 * span)).astype(np.int64)
    days = np.where(u < span, u - span, u - span + 1)
    t = col.type
    if pa.types.is_date32(t):
        per_day, base_type = 1, pa.int32()
    elif pa.types.is_date64(t):
        per_day, base_type = 86_400_000, pa.int64()
    else:
        per_day, base_type = _UNITS_PER_DAY[t.unit], pa.int64()
    # A null subject has no stable offset: its dates are withheld rather than published.
    offsets = pa.array(days * per_day, mask=~pc.is_valid(text).to_numpy(zero_copy_only=False))
    shifted = pc.add(pc.cast(col, base_type).cast(pa.int64()), offsets)
    return pc.cast(pc.cast(shifted, base_type), t)


def _noise(ctx: _Ctx, col: pa.Array, p: dict[str, Any]) -> pa.Array:
    if ctx.seed is None:
        raise PolicyError(
            f"field {ctx.field!r}: operator 'noise' needs the issuance seed",
            field=ctx.field,
            operator=ctx.operator,
        )
    field_word = int.from_bytes(hashlib.sha256(ctx.field.encode()).digest()[:8], "little")
    rng = np.random.default_rng(np.random.SeedSequence([ctx.seed % 2**64, field_word]))
    values, valid = _numpy_values(col)
    n = len(values)
    if p["distribution"] == "laplace":
        noise = rng.laplace(0.0, p["scale"], n)
    else:
        noise = rng.normal(0.0, p["scale"], n)
    noisy = values.astype(np.float64) + noise
    if _is_integer(col.type):
        info = np.iinfo(values.dtype)
        # Integer columns stay integer: round, then keep within the type's range.
        noisy = np.clip(np.rint(noisy), float(info.min), float(info.max)).astype(values.dtype)
    else:
        noisy = noisy.astype(values.dtype)
    return pa.array(noisy, type=col.type, mask=~valid)


# ---------------------------------------------------------------------------------------------
# redact_entities
# ---------------------------------------------------------------------------------------------


def _entity_regexes() -> Mapping[str, str]:
    try:
        module = importlib.import_module("yuanjian.privacy.detect")
        return module.ENTITY_REGEXES
    except (ImportError, AttributeError) as exc:
        raise PolicyError(
            "operator 'redact_entities' needs yuanjian.privacy.detect.ENTITY_REGEXES",
            operator="redact_entities",
        ) from exc


def _redact_entities(ctx: _Ctx, col: pa.Array, p: dict[str, Any]) -> pa.Array:
    regexes = _entity_regexes()
    wanted = list(p["labels"]) if p["labels"] is not None else list(regexes)
    unknown = [label for label in wanted if label not in regexes]
    if unknown:
        # Fail closed: an entity kind the policy asks to remove must not pass through.
        raise PolicyError(
            f"field {ctx.field!r}: operator 'redact_entities' has no detector regex for "
            f"{', '.join(unknown)}",
            field=ctx.field,
            operator=ctx.operator,
        )
    out = col
    # The detectors order their patterns (resident IDs before cards, cards before phone
    # numbers) so a long identifier is not eaten by a shorter pattern: keep that order.
    for label in [label for label in regexes if label in wanted]:
        token = f"[{LABEL_NAMES_ZH.get(label, label)}]" if p["token"] == "zh" else f"<{label}>"
        # RE2 rewrite strings treat backslashes specially; tokens never contain one.
        out = pc.replace_substring_regex(out, pattern=regexes[label], replacement=token)
    return out


def _redact_entities_check(p: dict[str, Any]) -> str | None:
    if p["labels"] is not None:
        unknown = [x for x in p["labels"] if x not in LABELS]
        if unknown:
            return f"unknown entity label(s) {', '.join(unknown)}"
    return None


def _table_level(ctx: _Ctx, col: pa.Array, p: dict[str, Any]) -> pa.Array:
    raise PolicyError(
        f"field {ctx.field!r}: operator {ctx.operator!r} works on a whole table; "
        "use apply_policy or suppress",
        field=ctx.field,
        operator=ctx.operator,
    )


def _suppress_check(p: dict[str, Any]) -> str | None:
    if len(set(p["quasi_identifiers"])) != len(p["quasi_identifiers"]):
        return "quasi_identifiers lists a field twice"
    return None


# ---------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------

_ALG = Param("str", default="hmac-sha256", choices=_ALGORITHMS, doc="HMAC hash function")
_ON_INVALID = Param(
    "str",
    default="null",
    choices=("null", "error"),
    doc="what to do with a value that does not have the format: withhold it or fail",
)
_DATE_OUTPUT = Param(
    "str",
    default="truncate",
    choices=("truncate", "label"),
    doc="truncate: first day of the period, same type; label: text such as 1990-Q2",
)
_STRING = "a string column"
_NUMERIC = "an integer or floating-point column"
_TEMPORAL = "a date or timestamp column"

OPERATORS: dict[str, OperatorSpec] = {
    "keep": OperatorSpec(
        "keep",
        "Publish the value unchanged (for fields labelled none).",
        {"": Variant({}, _any_type, "any column", _keep)},
    ),
    "redact": OperatorSpec(
        "redact",
        "Replace every value by null (Ranger MASK_NULL, Presidio redact).",
        {"": Variant({}, _any_type, "any column", _redact)},
    ),
    "replace": OperatorSpec(
        "replace",
        "Replace every non-null value by one constant of the column's type.",
        {
            "": Variant(
                {
                    "value": Param("scalar", required=True, doc="the constant"),
                    "keep_nulls": Param("bool", default=True, doc="nulls stay null"),
                },
                _is_scalar_type,
                "a column of scalar values",
                _replace,
                type_check=_replace_type_check,
            )
        },
    ),
    "mask": OperatorSpec(
        "mask",
        "Show the first n / last m characters and mask the rest (张**, 138****5678).",
        {
            "": Variant(
                {
                    "keep_first": Param("int", default=0, minimum=0, maximum=64),
                    "keep_last": Param("int", default=0, minimum=0, maximum=64),
                    "mask_char": Param("str", default="*"),
                    "mask_length": Param(
                        "int",
                        default=None,
                        minimum=0,
                        maximum=64,
                        doc="fixed number of mask characters (hides the length); default: "
                        "one per hidden character",
                    ),
                },
                _is_string,
                _STRING,
                _mask,
                cross_check=_mask_check,
            )
        },
    ),
    "pseudonymize": OperatorSpec(
        "pseudonymize",
        "Keyed HMAC pseudonym; deterministic under one key, so joins work across tables.",
        {
            "": Variant(
                {
                    "algorithm": _ALG,
                    "encoding": Param("str", default="hex", choices=("hex", "base32")),
                    "length": Param("int", default=16, minimum=8, maximum=64),
                    "prefix": Param("str", default=""),
                },
                _is_string_or_integer,
                "a string or integer column",
                _pseudonymize,
                cross_check=_pseudonymize_check,
            )
        },
    ),
    "format_preserving": OperatorSpec(
        "format_preserving",
        "Keyed pseudonym that keeps the identifier's format (GB 11643 resident ID, mobile).",
        {
            "cn_resident_id": Variant(
                {
                    "algorithm": _ALG,
                    "keep_birth_year": Param("bool", default=False),
                    "keep_sex": Param("bool", default=False),
                    "keep_region": Param(
                        "str", default="none", choices=("none", "province", "city")
                    ),
                    "birth_shift_days": Param(
                        "int",
                        default=365,
                        minimum=1,
                        maximum=3650,
                        doc="when the year is not kept, the birth date moves by up to this",
                    ),
                    "on_invalid": _ON_INVALID,
                },
                _is_string,
                _STRING,
                _fpe_resident_id,
            ),
            "cn_mobile": Variant(
                {
                    "algorithm": _ALG,
                    "keep_prefix": Param("int", default=3, minimum=3, maximum=7),
                    "on_invalid": _ON_INVALID,
                },
                _is_string_or_integer,
                "a string or integer column",
                _fpe_mobile,
            ),
        },
        discriminator="kind",
    ),
    "generalize": OperatorSpec(
        "generalize",
        "Coarsen values: dates to year/quarter/month, numbers to bands or rounded values, "
        "top/bottom coding, area codes and addresses up a level, values up a hierarchy.",
        {
            "year": Variant(
                {"output": _DATE_OUTPUT}, _is_temporal, _TEMPORAL, _generalize_date("year")
            ),
            "quarter": Variant(
                {"output": _DATE_OUTPUT}, _is_temporal, _TEMPORAL, _generalize_date("quarter")
            ),
            "month": Variant(
                {"output": _DATE_OUTPUT}, _is_temporal, _TEMPORAL, _generalize_date("month")
            ),
            "band": Variant(
                {
                    "width": Param("number", default=None, doc="band width"),
                    "origin": Param("number", default=0.0, doc="a band starts here"),
                    "bounds": Param("number_list", default=None, doc="explicit breakpoints"),
                    "output": Param("str", default="label", choices=("label", "lower")),
                },
                _is_number,
                _NUMERIC,
                _band,
                cross_check=_band_check,
            ),
            "round": Variant(
                {"digits": Param("int", default=0, minimum=-18, maximum=12)},
                _is_number,
                _NUMERIC,
                _round,
            ),
            "top_bottom": Variant(
                {"lower": Param("number", default=None), "upper": Param("number", default=None)},
                _is_number,
                _NUMERIC,
                _top_bottom,
                cross_check=_top_bottom_check,
            ),
            "area_code": Variant(
                {"level": Param("str", default="city", choices=("city", "province"))},
                _is_string_or_integer,
                "a string or integer column of GB/T 2260 codes",
                _area_code,
            ),
            "address": Variant(
                {
                    "level": Param(
                        "str", default="district", choices=("province", "city", "district")
                    )
                },
                _is_string,
                _STRING,
                _address,
            ),
            "hierarchy": Variant(
                {
                    "hierarchy": Param("str_map", required=True, doc="value → parent"),
                    "levels": Param("int", default=1, minimum=1, maximum=32),
                },
                _is_string_or_integer,
                "a string or integer column",
                _hierarchy,
                cross_check=_hierarchy_check,
            ),
        },
        discriminator="method",
    ),
    "date_shift": OperatorSpec(
        "date_shift",
        "Move dates by a keyed per-subject offset (same subject → same offset everywhere).",
        {
            "": Variant(
                {"max_days": Param("int", default=30, minimum=1, maximum=36500), "algorithm": _ALG},
                _is_temporal,
                _TEMPORAL,
                _date_shift,
            )
        },
        needs_subject=True,
    ),
    "noise": OperatorSpec(
        "noise",
        "Add Laplace or Gaussian noise, seeded per issuance and field.",
        {
            "": Variant(
                {
                    "distribution": Param(
                        "str", default="laplace", choices=("laplace", "gaussian")
                    ),
                    "scale": Param("number", required=True, minimum=1e-12),
                },
                _is_number,
                _NUMERIC,
                _noise,
            )
        },
        needs_seed=True,
    ),
    "suppress": OperatorSpec(
        "suppress",
        "Drop records in equivalence classes (this field plus quasi_identifiers) smaller "
        "than k; the field's values are otherwise kept.",
        {
            "": Variant(
                {
                    "k": Param("int", required=True, minimum=2),
                    "quasi_identifiers": Param("str_list", default=[]),
                },
                _is_scalar_type,
                "a column of scalar values",
                _table_level,
                cross_check=_suppress_check,
            )
        },
        table_level=True,
    ),
    "redact_entities": OperatorSpec(
        "redact_entities",
        "Replace detected entity spans in free text by label tokens (<cn_mobile>, [手机号]).",
        {
            "": Variant(
                {
                    "labels": Param("str_list", default=None, doc="default: every detector"),
                    "token": Param("str", default="label", choices=("label", "zh")),
                },
                _is_string,
                _STRING,
                _redact_entities,
                cross_check=_redact_entities_check,
            )
        },
    ),
}


# ---------------------------------------------------------------------------------------------
# Running operators and policies
# ---------------------------------------------------------------------------------------------


def apply_operator(
    name: str,
    column: pa.Array | pa.ChunkedArray,
    params: Mapping[str, Any],
    key: bytes,
    *,
    field: str,
    subject: pa.Array | pa.ChunkedArray | None = None,
    seed: int | None = None,
) -> pa.Array:
    """Apply one operator to a column; raise PolicyError naming the field on bad input."""
    col = _combine(column)
    normalized = normalize_params(name, params, col.type, field=field)
    if not isinstance(key, bytes | bytearray) or len(key) < 16:
        raise PolicyError(
            f"field {field!r}: the desensitization key must be at least 16 bytes",
            field=field,
            operator=name,
        )
    spec = OPERATORS[name]
    variant = (
        spec.variants[normalized[spec.discriminator]] if spec.discriminator else (spec.variants[""])
    )
    if pa.types.is_string_view(col.type) or pa.types.is_large_string(col.type):
        col = col.cast(pa.string())
    ctx = _Ctx(key=bytes(key), field=field, operator=name, subject=subject, seed=seed)
    return variant.impl(ctx, col, normalized)


def _class_ids(table: pa.Table, columns: Sequence[str]) -> np.ndarray:
    """An equivalence-class id per row over ``columns`` (null is a value of its own)."""
    ids = np.zeros(table.num_rows, dtype=np.int64)
    for name in columns:
        encoded = pc.dictionary_encode(_combine(table.column(name)), null_encoding="encode")
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        card = max(len(encoded.dictionary), 1)
        if ids.max(initial=0) >= (2**62) // card:
            # Re-number densely before the mixed-radix product could overflow.
            _, ids = np.unique(ids, return_inverse=True)
        ids = ids * card + codes
    return ids


def suppress(table: pa.Table, quasi_identifiers: Sequence[str], k: int) -> tuple[pa.Table, int]:
    """Drop records whose quasi-identifier equivalence class has fewer than k rows."""
    missing = [c for c in quasi_identifiers if c not in table.column_names]
    if missing:
        raise PolicyError(
            f"field {missing[0]!r}: quasi-identifier is not a column of the table",
            field=missing[0],
            operator="suppress",
        )
    if k < 2 or table.num_rows == 0 or not quasi_identifiers:
        return table, 0
    ids = _class_ids(table, quasi_identifiers)
    _, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    keep = counts[inverse] >= k
    dropped = int(len(keep) - keep.sum())
    if dropped == 0:
        return table, 0
    return table.filter(pa.array(keep)), dropped


def apply_policy(
    table: pa.Table,
    policy: FieldPolicy,
    *,
    key: bytes,
    seed: int,
    subject_column: str | None = None,
    workers: int | None = None,
) -> pa.Table:
    """Desensitize a table field by field, then apply suppress rules; deny unlisted fields.

    ``workers`` threads desensitize columns side by side (default: up to 4, by CPU count).
    The returned table's schema metadata carries the number of suppressed rows under
    :data:`SUPPRESSED_ROWS_METADATA_KEY` (read it with :func:`suppressed_rows`).
    """
    calls = {name: _as_call(value, name) for name, value in policy.items()}
    for name in calls:
        if name not in table.column_names:
            raise PolicyError(f"field {name!r}: not a column of the table", field=name)
    unlisted = [c for c in table.column_names if c not in calls]
    if unlisted:
        raise PolicyError(
            f"field {unlisted[0]!r}: the policy has no operator for it (every published "
            "field needs one; use 'keep' to publish it unchanged)",
            field=unlisted[0],
        )
    if subject_column is not None and subject_column not in table.column_names:
        raise PolicyError(
            f"field {subject_column!r}: subject column is not a column of the table",
            field=subject_column,
        )
    issues: list[PolicyIssue] = []
    normalized: dict[str, dict[str, Any]] = {}
    for name, call in calls.items():
        params, found = _normalize(call, None, table.schema.field(name).type, field=name)
        issues.extend(found)
        if params is not None:
            normalized[name] = params
    for name, call in calls.items():
        if call.operator == "suppress" and name in normalized:
            for qi in normalized[name]["quasi_identifiers"]:
                if qi not in table.column_names:
                    issues.append(
                        _issue(
                            name,
                            "suppress",
                            "parameter_value",
                            f"field {name!r}: quasi-identifier {qi!r} is not a column",
                        )
                    )
    if issues:
        raise PolicyError.from_issues(issues)

    subject = table.column(subject_column) if subject_column is not None else None
    rules: list[tuple[list[str], int]] = []

    def run(name: str) -> pa.Array:
        call = calls[name]
        if OPERATORS[call.operator].table_level:
            return _combine(table.column(name))
        return apply_operator(
            call.operator,
            table.column(name),
            call.params,
            key,
            field=name,
            subject=subject,
            seed=seed,
        )

    for name in table.column_names:
        if OPERATORS[calls[name].operator].table_level:
            params = normalized[name]
            rules.append(([name, *params["quasi_identifiers"]], params["k"]))
    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    if workers > 1 and table.num_rows >= 50_000 and table.num_columns > 1:
        # Columns are independent; numpy, pyarrow and DuckDB release the GIL, so one column's
        # numpy work overlaps another's HMAC. Results are the same as run one by one.
        with ThreadPoolExecutor(max_workers=workers) as pool:
            columns = list(pool.map(run, table.column_names))
    else:
        columns = [run(name) for name in table.column_names]
    fields = [
        pa.field(name, col.type, metadata=table.schema.field(name).metadata)
        for name, col in zip(table.column_names, columns, strict=True)
    ]
    out = pa.Table.from_arrays(columns, schema=pa.schema(fields))
    # Suppress on the released values (after generalization), until every rule holds: dropping
    # rows for one rule can shrink another rule's classes below its k.
    dropped = 0
    changed = bool(rules)
    while changed:
        changed = False
        for qis, k in rules:
            out, n = suppress(out, qis, k)
            dropped += n
            changed = changed or (n > 0 and len(rules) > 1)
    metadata = dict(table.schema.metadata or {})
    metadata[SUPPRESSED_ROWS_METADATA_KEY] = str(dropped).encode()
    return out.replace_schema_metadata(metadata)


def suppressed_rows(table: pa.Table) -> int:
    """How many rows :func:`apply_policy` suppressed for this output table (0 if unknown)."""
    raw = (table.schema.metadata or {}).get(SUPPRESSED_ROWS_METADATA_KEY)
    return int(raw) if raw else 0

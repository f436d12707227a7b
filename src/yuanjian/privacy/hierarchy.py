"""Generalization hierarchies for quasi-identifiers.

A hierarchy maps every value of one attribute to a label at each level: level 0 is the value
itself and the last level (``height - 1``) is the most general, usually ``*``. Levels must be
nested: two values sharing a label at level ``j`` share a label at every level above ``j``
(the anonymization search relies on it; it is checked when a hierarchy is loaded or used).

Hierarchies come from ARX-style CSV files (``;``-separated, one row per value: the value,
then its generalizations up to ``*``; see ``load_hierarchy_csv``) or from rules:
``numeric_bands`` (bands of growing width), ``date_hierarchy`` (month → quarter → year),
``area_code_hierarchy`` (GB/T 2260 six-digit area code → four-digit city → two-digit province)
and ``prefix_mask`` (mask trailing characters, ARX's redaction hierarchy).

Applying a level is vectorized: the column is dictionary-encoded once, the hierarchy labels
each *distinct* value (an index join against the CSV table, or Arrow compute for rules) and the
labels are taken back per record. A value the hierarchy does not cover raises
``HierarchyError`` naming the column and the value.

Nulls: a null stays null at every level below the top and becomes the top label at the top
level (when that level has a single label, as ``*``), so the top level is one class.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from yuanjian.privacy.risk import encode_column

__all__ = [
    "AreaCodeHierarchy",
    "BandHierarchy",
    "DateHierarchy",
    "Hierarchy",
    "HierarchyEncoding",
    "HierarchyError",
    "MaskHierarchy",
    "TableHierarchy",
    "area_code_hierarchy",
    "date_hierarchy",
    "load_hierarchy_csv",
    "numeric_bands",
    "prefix_mask",
]

TOP = "*"


class HierarchyError(ValueError):
    """A hierarchy is malformed or does not cover a value; ``field`` names the column."""

    def __init__(self, message: str, *, field: str | None = None, value: Any = None) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


@dataclass(frozen=True)
class HierarchyEncoding:
    """One column encoded against a hierarchy, for the anonymization search.

    ``codes`` gives each record its level-0 code; ``maps[j][c]`` is the level-``j`` code of
    level-0 code ``c`` (dense, ``0..cardinalities[j]-1``); ``coverage[j][d]`` is how many
    distinct level-0 values (present in the data) level-``j`` code ``d`` stands for.
    """

    column: str
    codes: np.ndarray
    maps: list[np.ndarray]
    cardinalities: list[int]
    coverage: list[np.ndarray]

    @property
    def height(self) -> int:
        """Number of levels, level 0 included."""
        return len(self.maps)

    def up_map(self, low: int, high: int) -> np.ndarray:
        """Array mapping level-``low`` codes to level-``high`` codes (levels are nested)."""
        out = np.zeros(self.cardinalities[low], dtype=np.int64)
        out[self.maps[low]] = self.maps[high]
        return out


class Hierarchy:
    """Base class: subclasses label distinct non-null values at every level."""

    height: int
    description: str

    def generalize(self, values: pa.Array, *, column: str) -> list[pa.Array]:
        """Labels of distinct non-null ``values`` at levels 1..height-1 (string arrays)."""
        raise NotImplementedError

    @property
    def top_label(self) -> str | None:
        """The single label of the top level, if it has one (nulls generalize to it)."""
        return TOP

    def _check_level(self, level: int, column: str) -> None:
        if not isinstance(level, int) or not 0 <= level < self.height:
            raise HierarchyError(
                f"level {level!r} for column {column!r} is outside 0..{self.height - 1} "
                f"({self.description})",
                field=column,
                value=level,
            )

    def _level_labels(self, values: pa.Array, column: str) -> list[pa.Array]:
        labels = self.generalize(values, column=column)
        if len(labels) != self.height - 1:  # pragma: no cover - subclass bug
            raise AssertionError(f"{self.description}: {len(labels)} levels, not {self.height}")
        return labels

    def apply(self, column: pa.Array | pa.ChunkedArray, level: int, *, name: str = "?") -> Any:
        """Generalize a whole column to ``level``; level 0 returns the column unchanged."""
        self._check_level(level, name)
        if level == 0:
            return column
        encoded = encode_column(column)
        labels = self._level_labels(encoded.values, name)[level - 1]
        if encoded.has_null:
            null_label = self.top_label if level == self.height - 1 else None
            labels = pa.concat_arrays([labels, pa.array([null_label], pa.string())])
        return pc.take(labels, pa.array(encoded.codes))

    def encode(self, column: pa.Array | pa.ChunkedArray, *, name: str = "?") -> HierarchyEncoding:
        """Encode a column's records at every level, checking coverage and nesting."""
        encoded = encode_column(column)
        maps = [np.arange(encoded.cardinality, dtype=np.int64)]
        cards = [encoded.cardinality]
        for j, labels in enumerate(self._level_labels(encoded.values, name), start=1):
            level_codes = encode_column(labels)
            codes = level_codes.codes
            card = level_codes.cardinality
            if encoded.has_null:
                top = j == self.height - 1 and self.top_label is not None
                top_code = _code_of(level_codes.values, self.top_label) if top else None
                if top_code is None:
                    codes = np.append(codes, card)
                    card += 1
                else:
                    codes = np.append(codes, top_code)
            maps.append(codes)
            cards.append(card)
        # A null counts as one value of the domain.
        coverage = [np.bincount(m, minlength=c) for m, c in zip(maps, cards, strict=True)]
        result = HierarchyEncoding(name, encoded.codes, maps, cards, coverage)
        _check_nested(result, self.description)
        return result


def _code_of(values: pa.Array, label: str | None) -> int | None:
    if label is None:
        return None
    index = pc.index(values, pa.scalar(label, values.type)).as_py()
    return None if index < 0 else int(index)


def _check_nested(encoding: HierarchyEncoding, description: str) -> None:
    for j in range(1, encoding.height - 1):
        pairs = np.unique(encoding.maps[j] * encoding.cardinalities[j + 1] + encoding.maps[j + 1])
        if len(pairs) != len(np.unique(encoding.maps[j])):
            raise HierarchyError(
                f"hierarchy for column {encoding.column!r} is not nested: a level-{j} label "
                f"generalizes to more than one level-{j + 1} label ({description})",
                field=encoding.column,
            )


def _as_strings(values: pa.Array) -> pa.Array:
    if pa.types.is_string(values.type):
        return values
    return pc.cast(values, pa.string())


def _missing_error(column: str, value: Any, description: str) -> HierarchyError:
    return HierarchyError(
        f"value {value!r} of column {column!r} is not covered by the hierarchy ({description})",
        field=column,
        value=value,
    )


class TableHierarchy(Hierarchy):
    """An explicit hierarchy: one row per value with its label at every level."""

    def __init__(self, rows: Sequence[Sequence[str]], *, description: str = "table") -> None:
        if not rows:
            raise HierarchyError(f"hierarchy {description} has no rows")
        height = len(rows[0])
        if height < 1:
            raise HierarchyError(f"hierarchy {description} has an empty first row")
        seen: dict[str, int] = {}
        for number, row in enumerate(rows, start=1):
            if len(row) != height:
                raise HierarchyError(
                    f"hierarchy {description}, row {number}: {len(row)} levels, expected "
                    f"{height} like row 1",
                    value=row[0] if row else None,
                )
            if row[0] in seen:
                raise HierarchyError(
                    f"hierarchy {description}, row {number}: value {row[0]!r} already given "
                    f"in row {seen[row[0]]}",
                    value=row[0],
                )
            seen[row[0]] = number
        self.height = height
        self.description = description
        self.table = pa.table(
            {f"level_{j}": pa.array([row[j] for row in rows], pa.string()) for j in range(height)}
        )
        for j in range(1, height - 1):
            pairs = self.table.group_by([f"level_{j}"]).aggregate(
                [(f"level_{j + 1}", "count_distinct")]
            )
            bad = pc.filter(pairs, pc.greater(pairs[f"level_{j + 1}_count_distinct"], 1))
            if bad.num_rows:
                label = bad[f"level_{j}"][0].as_py()
                raise HierarchyError(
                    f"hierarchy {description} is not nested: level-{j} label {label!r} "
                    f"generalizes to more than one level-{j + 1} label",
                    value=label,
                )

    @property
    def top_label(self) -> str | None:
        """The top level's label when all rows share it."""
        top = pc.unique(self.table[f"level_{self.height - 1}"])
        return top[0].as_py() if len(top) == 1 else None

    def generalize(self, values: pa.Array, *, column: str) -> list[pa.Array]:
        """Look every value up in the level-0 column (an index join)."""
        keys = _as_strings(values)
        index = pc.index_in(keys, value_set=self.table["level_0"].combine_chunks())
        if index.null_count:
            missing = pc.filter(values, pc.is_null(index))[0].as_py()
            raise _missing_error(column, missing, self.description)
        return [
            pc.take(self.table[f"level_{j}"].combine_chunks(), index) for j in range(1, self.height)
        ]


def load_hierarchy_csv(
    path: str | Path, *, delimiter: str = ";", encoding: str = "utf-8-sig"
) -> TableHierarchy:
    """Load an ARX-style hierarchy CSV: each row a value, then its generalizations."""
    path = Path(path)
    with path.open(newline="", encoding=encoding) as handle:
        rows = [row for row in csv.reader(handle, delimiter=delimiter) if row]
    return TableHierarchy(rows, description=f"file {path.name}")


def _numbers(values: pa.Array, column: str, description: str) -> pa.Array:
    if pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
        return values
    if pa.types.is_decimal(values.type):
        return pc.cast(values, pa.float64())
    try:
        return pc.cast(values, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        for value in values.to_pylist():  # error path only: find the value to name
            try:
                float(value)
            except (TypeError, ValueError):
                raise _missing_error(column, value, description) from None
        raise  # pragma: no cover - cast failed for another reason


class BandHierarchy(Hierarchy):
    """Numeric bands of growing width, each a multiple of the one below, then ``*``."""

    def __init__(self, widths: Sequence[float], *, origin: float = 0) -> None:
        if not widths:
            raise HierarchyError("numeric_bands needs at least one width")
        for i, width in enumerate(widths):
            if not width > 0:
                raise HierarchyError(f"band width {width!r} must be positive")
            if i and not _is_multiple(width, widths[i - 1]):
                raise HierarchyError(
                    f"band width {width!r} is not a multiple of {widths[i - 1]!r}: "
                    "bands would not nest"
                )
        self.widths = list(widths)
        self.origin = origin
        self.height = len(widths) + 2
        self.description = f"numeric bands {self.widths} from {origin}"

    def generalize(self, values: pa.Array, *, column: str) -> list[pa.Array]:
        """Label each value with the band ``lo-hi`` (integers) or ``[lo, hi)`` containing it."""
        numbers = _numbers(values, column, self.description)
        nan = pc.is_nan(numbers) if pa.types.is_floating(numbers.type) else None
        if nan is not None and pc.any(nan).as_py():
            raise _missing_error(column, float("nan"), self.description)
        integral = pa.types.is_integer(numbers.type) and all(
            float(w).is_integer() for w in [*self.widths, self.origin]
        )
        as_float = pc.cast(numbers, pa.float64())
        labels = []
        for width in self.widths:
            band = pc.floor(pc.divide(pc.subtract(as_float, self.origin), float(width)))
            low = pc.add(pc.multiply(band, float(width)), float(self.origin))
            if integral:
                low_i = pc.cast(low, pa.int64())
                high_i = pc.add(low_i, int(width) - 1)
                labels.append(
                    pc.binary_join_element_wise(
                        pc.cast(low_i, pa.string()), pc.cast(high_i, pa.string()), "-"
                    )
                )
            else:
                high = pc.add(low, float(width))
                labels.append(
                    pc.binary_join_element_wise("[", _fmt(low), ", ", _fmt(high), ")", "")
                )
        labels.append(_constant(TOP, len(values)))
        return labels


def _fmt(numbers: pa.Array) -> pa.Array:
    return pc.cast(numbers, pa.string())


def _is_multiple(big: float, small: float) -> bool:
    ratio = big / small
    return math.isclose(ratio, round(ratio), rel_tol=0, abs_tol=1e-9) and round(ratio) >= 1


def _constant(label: str, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(label, pa.string()), n)


def numeric_bands(widths: Sequence[float], *, origin: float = 0) -> BandHierarchy:
    """Bands of the given widths (each a multiple of the previous), aligned on ``origin``."""
    return BandHierarchy(widths, origin=origin)


_DATE_LEVELS = ("month", "quarter", "year")


class DateHierarchy(Hierarchy):
    """Dates generalized to month (``2024-03``), quarter (``2024-Q1``), year, then ``*``."""

    def __init__(self, levels: Sequence[str] = _DATE_LEVELS) -> None:
        levels = list(levels)
        positions = []
        for level in levels:
            if level not in _DATE_LEVELS:
                raise HierarchyError(f"unknown date level {level!r}; use {list(_DATE_LEVELS)}")
            positions.append(_DATE_LEVELS.index(level))
        if not levels or positions != sorted(set(positions)):
            raise HierarchyError(
                f"date levels {levels} must be a non-empty subset of {list(_DATE_LEVELS)} "
                "in that order"
            )
        self.levels = levels
        self.height = len(levels) + 2
        self.description = f"dates {levels}"

    def _dates(self, values: pa.Array, column: str) -> pa.Array:
        if pa.types.is_date(values.type) or pa.types.is_timestamp(values.type):
            return values
        strings = _as_strings(values)
        try:
            return pc.strptime(strings, format="%Y-%m-%d", unit="s")
        except pa.ArrowInvalid:
            ok = pc.match_substring_regex(strings, r"^\d{4}-\d{2}-\d{2}$")
            for value in pc.filter(strings, pc.invert(ok)).to_pylist()[:1]:
                raise _missing_error(column, value, self.description) from None
            for value in strings.to_pylist():  # error path only: a well-formed bad date
                try:
                    pc.strptime(pa.array([value]), format="%Y-%m-%d", unit="s")
                except pa.ArrowInvalid:
                    raise _missing_error(column, value, self.description) from None
            raise  # pragma: no cover

    def generalize(self, values: pa.Array, *, column: str) -> list[pa.Array]:
        """Label each date with its month, quarter or year."""
        dates = self._dates(values, column)
        labels = []
        for level in self.levels:
            if level == "month":
                labels.append(pc.strftime(dates, format="%Y-%m"))
            elif level == "quarter":
                labels.append(
                    pc.binary_join_element_wise(
                        pc.cast(pc.year(dates), pa.string()),
                        pc.cast(pc.quarter(dates), pa.string()),
                        "-Q",
                    )
                )
            else:
                labels.append(pc.cast(pc.year(dates), pa.string()))
        labels.append(_constant(TOP, len(values)))
        return labels


def date_hierarchy(levels: Sequence[str] = _DATE_LEVELS) -> DateHierarchy:
    """Dates (date, timestamp or ``YYYY-MM-DD`` strings) → month → quarter → year → ``*``."""
    return DateHierarchy(levels)


class AreaCodeHierarchy(Hierarchy):
    """GB/T 2260 area codes: ``110105`` → ``1101`` (city) → ``11`` (province) → ``*``."""

    height = 4
    description = "GB/T 2260 area codes"

    def generalize(self, values: pa.Array, *, column: str) -> list[pa.Array]:
        """Keep the first four, then two digits of each six-digit code."""
        strings = _as_strings(values)
        ok = pc.match_substring_regex(strings, r"^[0-9]{6}$")
        if not pc.all(ok).as_py():
            bad = pc.filter(values, pc.invert(ok))[0].as_py()
            raise HierarchyError(
                f"value {bad!r} of column {column!r} is not a six-digit GB/T 2260 area code",
                field=column,
                value=bad,
            )
        return [
            pc.utf8_slice_codeunits(strings, 0, 4),
            pc.utf8_slice_codeunits(strings, 0, 2),
            _constant(TOP, len(values)),
        ]


def area_code_hierarchy() -> AreaCodeHierarchy:
    """GB/T 2260 six-digit area code → four-digit city → two-digit province → ``*``."""
    return AreaCodeHierarchy()


class MaskHierarchy(Hierarchy):
    """Mask trailing characters ``step`` at a time (``100080`` → ``10008*`` → … → ``*``)."""

    def __init__(self, length: int, *, step: int = 1, mask: str = "*") -> None:
        if length < 1 or step < 1:
            raise HierarchyError("prefix_mask needs length >= 1 and step >= 1")
        if len(mask) != 1:
            raise HierarchyError(f"mask must be one character, got {mask!r}")
        self.length = length
        self.step = step
        self.mask = mask
        self.height = math.ceil(length / step) + 1
        self.description = f"prefix mask (length {length}, step {step})"

    def generalize(self, values: pa.Array, *, column: str) -> list[pa.Array]:
        """Keep ``length - level * step`` leading characters, pad with the mask to ``length``."""
        strings = _as_strings(values)
        too_long = pc.greater(pc.utf8_length(strings), self.length)
        if pc.any(too_long).as_py():
            bad = pc.filter(values, too_long)[0].as_py()
            raise HierarchyError(
                f"value {bad!r} of column {column!r} is longer than the mask length {self.length}",
                field=column,
                value=bad,
            )
        labels = []
        for level in range(1, self.height - 1):
            kept = pc.utf8_slice_codeunits(strings, 0, self.length - level * self.step)
            labels.append(pc.utf8_rpad(kept, width=self.length, padding=self.mask))
        labels.append(_constant(TOP, len(values)))
        return labels


def prefix_mask(length: int, *, step: int = 1, mask: str = "*") -> MaskHierarchy:
    """Redaction hierarchy over values of at most ``length`` characters, ``*`` at the top."""
    return MaskHierarchy(length, step=step, mask=mask)

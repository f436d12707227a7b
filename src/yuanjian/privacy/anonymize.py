"""Anonymization to a target: the least lossy full-domain generalization meeting k (l, t).

Search space: the generalization lattice, one node per choice of a hierarchy level for every
quasi-identifier (Adult with 8 quasi-identifiers: 6,480 nodes). A node *passes* when the
records of the equivalence classes that violate the target (size < k, fewer than l distinct
sensitive values, or a sensitive distribution farther than t from the whole table's) can be
suppressed within ``max_suppression`` (a share of all records).

Information loss (``metric``), both in [0, 1] and both counting a suppressed cell as fully
lost (loss 1):

* ``"loss"`` (default) — the Loss Metric LM of Iyengar (KDD 2002), the basis of ARX's "Loss":
  a cell generalized to a label that covers ``g`` of the attribute's ``D`` distinct values
  loses ``(g - 1) / (D - 1)``; the table's loss is the mean over all quasi-identifier cells.
  ``D`` and ``g`` count the distinct values present in the input (rule hierarchies such as
  numeric bands have no finite domain of their own).
* ``"precision"`` — 1 − Prec of Sweeney (2002): a cell at level ``h`` of a hierarchy of height
  ``H`` loses ``h / (H - 1)``; mean over cells.

The result also reports Discernibility (Bayardo & Agrawal, ICDE 2005:
``sum over kept classes |E|^2 + suppressed * records``) and the average class size metric
(LeFevre et al. 2006: ``kept records / (classes * k)``).

Search — provably optimal for the chosen metric over the whole lattice:

1. Without suppression a node's loss is a sum of per-attribute terms that depend on its levels
   only; precomputed for every node it is a *lower bound* of the real loss (suppression only
   replaces a cell's loss by 1). Nodes are visited in ascending order of that bound and the
   search stops when the bound reaches the best loss found: no later node can do better.
2. With k-anonymity and distinct l-diversity the suppressed count can only fall as nodes get
   more general (a failing class of a general node is a union of failing classes below it),
   and so does a t violation when nothing may be suppressed (EMD is convex). So a failing
   node proves every node below it fails and a passing node every node above it passes
   (predictive tagging). A node not yet settled by tagging is settled by a binary search on
   the path of cheapest one-step generalizations from it to the top, as ARX's Flash does
   (Kohlmayer et al., PASSAT 2012): verdicts along a path run fail…fail pass…pass, the search
   finds the boundary in log2(path length) evaluations, and the highest failing node tags
   everything below it, often the node itself. With t-closeness *and* suppression a t
   violation is no longer monotone: then only the k/l part of a verdict is used for tagging
   and path searches, and the remaining candidates are evaluated one by one (correct, but
   slower: about 2,300 of Adult's 6,480 nodes for k=5, t=0.2, 2% suppression).
3. A node is evaluated by rolling up the class table of an already evaluated ancestor
   (the smallest one cached): codes are mapped level to level by small lookup arrays and
   regrouped with one numpy sort, so the cost is proportional to the ancestor's number of
   classes, not of records.

Suppressed records are removed from the output table (not masked), so the output holds only
records of classes that meet the target. t is measured against the sensitive distribution of
the whole *input* table.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from yuanjian.privacy.hierarchy import Hierarchy, HierarchyEncoding
from yuanjian.privacy.risk import (
    as_arrow_table,
    categorical_tv,
    combine_codes,
    encode_column,
    is_ordered_type,
    ordered_emd,
    value_ranks,
)

__all__ = [
    "AnonymizationError",
    "AnonymizationResult",
    "InfeasibleTargetError",
    "anonymize",
]

METRICS = ("loss", "precision")
MAX_LATTICE_NODES = 2_000_000
_CACHE_ROWS = 4_000_000
_T_EPSILON = 1e-12
_PASS, _UNKNOWN, _FAIL = 1, 0, -1


class AnonymizationError(ValueError):
    """Bad arguments to ``anonymize``; ``field`` names the argument or column."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InfeasibleTargetError(AnonymizationError):
    """No node of the lattice meets the target within the suppression limit."""


@dataclass(frozen=True)
class AnonymizationResult:
    """The chosen generalization, the transformed table and how much it cost."""

    levels: dict[str, int]
    table: pa.Table
    records: int
    suppressed: int
    metric: str
    information_loss: float
    loss_metric: float
    precision_loss: float
    discernibility: int
    average_class_size: float
    classes: int
    k: int
    l: int | None  # noqa: E741 - the standard name of the measure
    t: float | None
    nodes_total: int
    nodes_checked: int
    search_seconds: float
    elapsed_seconds: float
    target: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Everything but the table, JSON-ready."""
        data = asdict(self)
        data.pop("table")
        data["output_records"] = self.table.num_rows
        return data


@dataclass
class _ClassTable:
    """Distinct (quasi-identifier codes, sensitive code) rows with counts, sorted by class."""

    codes: list[np.ndarray]
    sens: np.ndarray
    counts: np.ndarray
    class_starts: np.ndarray

    @property
    def rows(self) -> int:
        return len(self.counts)


@dataclass
class _Verdict:
    sizes: np.ndarray
    failing: np.ndarray
    suppressed: int
    suppressed_monotone: int
    distinct: np.ndarray | None
    distance: np.ndarray | None


def _cell_losses(enc: HierarchyEncoding, metric: str) -> list[np.ndarray]:
    """Loss of every code at every level of one attribute under ``metric``."""
    per_level = []
    for level in range(enc.height):
        if metric == "precision":
            value = level / (enc.height - 1) if enc.height > 1 else 0.0
            per_level.append(np.full(enc.cardinalities[level], value))
        else:
            domain = enc.cardinalities[0]
            if domain > 1:
                per_level.append((enc.coverage[level] - 1) / (domain - 1))
            else:
                per_level.append(np.zeros(enc.cardinalities[level]))
    return per_level


class _Problem:
    """Encoded data, lattice and evaluation for one call of ``anonymize``."""

    def __init__(
        self,
        table: pa.Table,
        qis: list[str],
        hierarchies: Mapping[str, Hierarchy],
        k: int,
        l_target: int | None,
        sensitive: str | None,
        t_target: float | None,
        max_suppression: float,
        metric: str,
    ) -> None:
        self.n = table.num_rows
        self.qis = qis
        self.k = k
        self.l_target = l_target
        self.t_target = t_target
        self.limit = math.floor(max_suppression * self.n + 1e-9)
        self.encodings: list[HierarchyEncoding] = [
            hierarchies[q].encode(table.column(q), name=q) for q in qis
        ]
        self.heights = [e.height for e in self.encodings]
        self.q = len(qis)

        # The sensitive attribute only matters to l and t; without them it is not grouped on.
        if sensitive is not None and (l_target is not None or t_target is not None):
            column = table.column(sensitive)
            self.ordered = is_ordered_type(column.type)
            if self.ordered:
                self.sens_codes, self.m = value_ranks(column)
            else:
                encoded = encode_column(column)
                self.sens_codes, self.m = encoded.codes, encoded.cardinality
            self.value_counts = np.bincount(self.sens_codes, minlength=self.m)
        else:
            self.ordered = False
            self.sens_codes, self.m = np.zeros(self.n, dtype=np.int64), 1
            self.value_counts = np.array([self.n])
        # t violations are monotone under generalization only when nothing is suppressed.
        self.monotone = t_target is None or self.limit == 0

        # Per attribute and level: loss of each code, and the mean loss over all records.
        self.cell_losses = {
            name: [_cell_losses(e, name) for e in self.encodings] for name in METRICS
        }
        self.cell_loss = self.cell_losses[metric]
        mean_loss: list[np.ndarray] = []
        for enc, per_level in zip(self.encodings, self.cell_loss, strict=True):
            record_counts = np.bincount(enc.codes, minlength=enc.cardinalities[0])
            mean_loss.append(
                np.array(
                    [
                        float(record_counts @ per_level[level][enc.maps[level]]) / self.n
                        for level in range(enc.height)
                    ]
                )
            )

        self.nodes_total = math.prod(self.heights)
        if self.nodes_total > MAX_LATTICE_NODES:
            raise AnonymizationError(
                f"the generalization lattice has {self.nodes_total:,} nodes (more than "
                f"{MAX_LATTICE_NODES:,}); use fewer quasi-identifiers or shorter hierarchies",
                field="hierarchies",
            )
        grids = np.meshgrid(*[np.arange(h, dtype=np.int8) for h in self.heights], indexing="ij")
        self.levels = np.stack([g.ravel() for g in grids], axis=1)
        self.strides = [math.prod(self.heights[i + 1 :]) for i in range(self.q)]
        self.bound = sum(mean_loss[i][self.levels[:, i]] for i in range(self.q)) / self.q
        self.up = [
            [[enc.up_map(a, b) for b in range(enc.height)] for a in range(enc.height)]
            for enc in self.encodings
        ]
        self.status = np.zeros(self.nodes_total, dtype=np.int8)
        self.status_grid = self.status.reshape(self.heights)  # a view: same memory
        self.mono = np.zeros(self.nodes_total, dtype=np.int8)
        self.mono_grid = self.mono.reshape(self.heights)
        self.evaluated = np.zeros(self.nodes_total, dtype=bool)
        self.cache: dict[int, _ClassTable] = {}
        self.cache_rows = 0
        self.checked = 0
        self.best_loss = math.inf
        self.best_node: int | None = None

        base_counts = np.ones(self.n, dtype=np.int64)
        base = self._group([e.codes for e in self.encodings], 0, self.sens_codes, base_counts)
        self.cache[0] = base
        self.cache_rows = base.rows

    # -- class tables -----------------------------------------------------------------------

    def _group(
        self, codes: list[np.ndarray], node: int, sens: np.ndarray, counts: np.ndarray
    ) -> _ClassTable:
        return self.group_rows(codes, node, sens, counts, with_rows=False)[0]

    def group_rows(
        self,
        codes: list[np.ndarray],
        node: int,
        sens: np.ndarray,
        counts: np.ndarray,
        *,
        with_rows: bool = True,
    ) -> tuple[_ClassTable, np.ndarray | None]:
        """Group rows at ``node``'s levels; optionally return each input row's class number."""
        levels = self.levels[node]
        cards = [self.encodings[i].cardinalities[levels[i]] for i in range(self.q)]
        class_key, bound = combine_codes(list(zip(codes, cards, strict=True)), len(counts))
        if bound * self.m >= 2**62:
            class_key = np.unique(class_key, return_inverse=True)[1].astype(np.int64)
        key = class_key * self.m + sens
        order = np.argsort(key)
        sorted_key = key[order]
        starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
        rep = order[starts]
        sorted_class = class_key[rep]
        class_starts = np.flatnonzero(np.r_[True, sorted_class[1:] != sorted_class[:-1]])
        table = _ClassTable(
            codes=[c[rep] for c in codes],
            sens=sens[rep],
            counts=np.add.reduceat(counts[order], starts),
            class_starts=class_starts,
        )
        if not with_rows:
            return table, None
        return table, np.searchsorted(sorted_class[class_starts], class_key)

    def _table(self, node: int) -> _ClassTable:
        if node in self.cache:
            return self.cache[node]
        target = self.levels[node]
        cached = np.fromiter(self.cache.keys(), dtype=np.int64)
        below = cached[np.all(self.levels[cached] <= target, axis=1)]
        source = min(below.tolist(), key=lambda c: self.cache[c].rows)
        table = self.cache[source]
        have = self.levels[source]
        codes = [
            table.codes[i]
            if have[i] == target[i]
            else self.up[i][int(have[i])][int(target[i])][table.codes[i]]
            for i in range(self.q)
        ]
        result = self._group(codes, node, table.sens, table.counts)
        self._remember(node, result)
        return result

    def _remember(self, node: int, table: _ClassTable) -> None:
        self.cache[node] = table
        self.cache_rows += table.rows
        while self.cache_rows > max(_CACHE_ROWS, 2 * self.cache[0].rows) and len(self.cache) > 1:
            victim = max((c for c in self.cache if c != 0), key=lambda c: self.cache[c].rows)
            self.cache_rows -= self.cache.pop(victim).rows

    # -- judging a node ---------------------------------------------------------------------

    def judge(self, table: _ClassTable) -> _Verdict:
        """Which classes violate the target, and how many records that suppresses."""
        starts = table.class_starts
        sizes = np.add.reduceat(table.counts, starts)
        failing = sizes < self.k
        distinct = None
        if self.l_target is not None:
            distinct = np.diff(np.r_[starts, table.rows])
            failing |= distinct < self.l_target
        monotone_suppressed = int(sizes[failing].sum())
        distance = None
        if self.t_target is not None:
            class_ids = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, table.rows]))
            if self.ordered:
                distance = ordered_emd(class_ids, table.sens, table.counts, self.value_counts)
            else:
                distance = categorical_tv(class_ids, table.sens, table.counts, self.value_counts)
            failing = failing | (distance > self.t_target + _T_EPSILON)
        return _Verdict(
            sizes=sizes,
            failing=failing,
            suppressed=int(sizes[failing].sum()),
            suppressed_monotone=monotone_suppressed,
            distinct=distinct,
            distance=distance,
        )

    def loss_of(self, node: int, table: _ClassTable, verdict: _Verdict) -> float:
        """Lower bound plus the extra loss of the suppressed cells (each becomes 1)."""
        if verdict.suppressed == 0:
            return float(self.bound[node])
        levels = self.levels[node]
        failing_rows = table.class_starts[verdict.failing]
        extra = np.zeros(len(failing_rows))
        for i in range(self.q):
            extra += 1.0 - self.cell_loss[i][levels[i]][table.codes[i][failing_rows]]
        extra_total = float(verdict.sizes[verdict.failing] @ extra)
        return float(self.bound[node]) + extra_total / (self.n * self.q)

    def evaluate(self, node: int) -> tuple[bool, bool]:
        """Evaluate a node, tag what it proves and track the best.

        Returns whether it passes the whole target, and whether it passes its k/l part.
        """
        table = self._table(node)
        verdict = self.judge(table)
        self.checked += 1
        self.evaluated[node] = True
        passes = verdict.suppressed <= self.limit
        mono_passes = verdict.suppressed_monotone <= self.limit
        # The k/l part is monotone even when t with suppression is not.
        self._tag(self.mono_grid, node, up=mono_passes)
        if self.monotone:
            self._tag(self.status_grid, node, up=passes)
        else:
            self.status[node] = _PASS if passes else _FAIL
        if passes:
            loss = self.loss_of(node, table, verdict)
            if loss < self.best_loss:
                self.best_loss, self.best_node = loss, node
        return passes, mono_passes

    def _tag(self, grid: np.ndarray, node: int, *, up: bool) -> None:
        """Tag the up-set of a passing (down-set of a failing) node: a box of the lattice."""
        levels = self.levels[node]
        if up:
            box = tuple(slice(int(level), None) for level in levels)
        else:
            box = tuple(slice(0, int(level) + 1) for level in levels)
        view = grid[box]
        view[view == _UNKNOWN] = _PASS if up else _FAIL

    # -- search -----------------------------------------------------------------------------

    def _cheapest_path(self, node: int) -> list[int]:
        path = [node]
        while True:
            levels = self.levels[path[-1]]
            steps = [
                path[-1] + self.strides[i] for i in range(self.q) if levels[i] < self.heights[i] - 1
            ]
            if not steps:
                return path
            path.append(min(steps, key=lambda s: (self.bound[s], s)))

    def _probe(self, node: int, status: np.ndarray, part: int) -> None:
        """Settle ``node`` by a binary search on the cheapest path from it to the top.

        Along a path the verdicts run fail…fail pass…pass (monotonicity), so the boundary is
        found with log2(path length) evaluations, and the highest failing node proves every
        node below it fails, ``node`` included when it lies below the boundary. ``status`` and
        ``part`` (0: whole target, 1: its k/l part) say which monotone verdict to search on.
        """
        path = self._cheapest_path(node)
        low, high = -1, len(path)
        for i, step in enumerate(path):
            if status[step] == _PASS:
                high = i
                break
            if status[step] == _FAIL:
                low = i
        while high - low > 1:
            mid = (low + high) // 2
            state = status[path[mid]]
            passes = state == _PASS if state != _UNKNOWN else self.evaluate(path[mid])[part]
            if passes:
                high = mid
            else:
                low = mid

    def search(self) -> None:
        """Visit nodes by ascending lower bound until none can beat the best found."""
        top = self.nodes_total - 1
        if self.monotone and not self.evaluate(top)[0]:
            return
        order = np.lexsort((np.arange(self.nodes_total), self.levels.sum(axis=1), self.bound))
        for node in order.tolist():
            if self.bound[node] >= self.best_loss:
                break
            if self.monotone:
                if self.status[node] == _UNKNOWN:
                    self._probe(node, self.status, 0)
            else:
                if self.mono[node] == _UNKNOWN:
                    self._probe(node, self.mono, 1)
                if self.mono[node] == _FAIL:
                    continue
            state = self.status[node]
            if state == _FAIL or self.evaluated[node]:
                continue
            if state == _PASS and self.limit == 0:
                # Passing with nothing suppressed: its loss is its bound.
                self.best_loss, self.best_node = float(self.bound[node]), node
                continue
            self.evaluate(node)


def _validate(
    table: pa.Table,
    quasi_identifiers: Sequence[str],
    hierarchies: Mapping[str, Hierarchy],
    k: int,
    l_target: int | None,
    sensitive: str | None,
    t_target: float | None,
    max_suppression: float,
    metric: str,
) -> list[str]:
    qis = [quasi_identifiers] if isinstance(quasi_identifiers, str) else list(quasi_identifiers)
    if not qis:
        raise AnonymizationError("no quasi-identifiers given", field="quasi_identifiers")
    if len(set(qis)) != len(qis):
        raise AnonymizationError(
            f"a quasi-identifier is listed twice: {qis}", field="quasi_identifiers"
        )
    for q in qis:
        if q not in table.column_names:
            raise AnonymizationError(
                f"quasi-identifier {q!r} is not a column of the table", field=q
            )
        if q not in hierarchies:
            raise AnonymizationError(f"no hierarchy given for quasi-identifier {q!r}", field=q)
        if not isinstance(hierarchies[q], Hierarchy):
            raise AnonymizationError(f"hierarchy for {q!r} is not a Hierarchy", field=q)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise AnonymizationError(f"k must be a positive integer, got {k!r}", field="k")
    if (l_target is not None or t_target is not None) and sensitive is None:
        raise AnonymizationError("l and t need a sensitive attribute", field="sensitive")
    if sensitive is not None:
        if sensitive not in table.column_names:
            raise AnonymizationError(
                f"sensitive attribute {sensitive!r} is not a column of the table", field=sensitive
            )
        if sensitive in qis:
            raise AnonymizationError(
                f"{sensitive!r} cannot be both a quasi-identifier and sensitive", field=sensitive
            )
    if l_target is not None and (
        isinstance(l_target, bool) or not isinstance(l_target, int) or l_target < 1
    ):
        raise AnonymizationError(f"l must be a positive integer, got {l_target!r}", field="l")
    if t_target is not None and not (0.0 <= t_target <= 1.0):
        raise AnonymizationError(f"t must be within [0, 1], got {t_target!r}", field="t")
    if not (0.0 <= max_suppression <= 1.0):
        raise AnonymizationError(
            f"max_suppression must be a share within [0, 1], got {max_suppression!r}",
            field="max_suppression",
        )
    if metric not in METRICS:
        raise AnonymizationError(f"metric must be one of {METRICS}, got {metric!r}", field="metric")
    if table.num_rows == 0:
        raise AnonymizationError("the table has no records", field="table")
    return qis


def anonymize(
    table: Any,
    *,
    quasi_identifiers: Sequence[str],
    hierarchies: Mapping[str, Hierarchy],
    k: int,
    l: int | None = None,  # noqa: E741 - the standard name of the measure
    sensitive: str | None = None,
    t: float | None = None,
    max_suppression: float = 0.0,
    metric: str = "loss",
) -> AnonymizationResult:
    """Find the full-domain generalization with least ``metric`` loss meeting k (and l, t)."""
    started = time.perf_counter()
    arrow = as_arrow_table(table)
    qis = _validate(
        arrow, quasi_identifiers, hierarchies, k, l, sensitive, t, max_suppression, metric
    )
    problem = _Problem(arrow, qis, hierarchies, k, l, sensitive, t, max_suppression, metric)
    search_started = time.perf_counter()
    problem.search()
    search_seconds = time.perf_counter() - search_started
    if problem.best_node is None:
        raise InfeasibleTargetError(
            f"no generalization meets k={k}"
            + (f", l={l}" if l is not None else "")
            + (f", t={t}" if t is not None else "")
            + f" with at most {problem.limit} of {problem.n} records suppressed",
            field="k",
        )
    node = problem.best_node
    levels = {q: int(problem.levels[node][i]) for i, q in enumerate(qis)}
    output, verdict, table_at_node = _transform(arrow, problem, node, hierarchies)
    kept = ~verdict.failing
    kept_sizes = verdict.sizes[kept]
    suppressed = verdict.suppressed
    loss_metric = _metric_value(problem, node, table_at_node, verdict, "loss")
    precision = _metric_value(problem, node, table_at_node, verdict, "precision")
    return AnonymizationResult(
        levels=levels,
        table=output,
        records=problem.n,
        suppressed=suppressed,
        metric=metric,
        information_loss=loss_metric if metric == "loss" else precision,
        loss_metric=loss_metric,
        precision_loss=precision,
        discernibility=int((kept_sizes.astype(np.int64) ** 2).sum()) + suppressed * problem.n,
        average_class_size=(
            float(kept_sizes.sum()) / (len(kept_sizes) * k) if len(kept_sizes) else 0.0
        ),
        classes=len(kept_sizes),
        k=int(kept_sizes.min()) if len(kept_sizes) else 0,
        l=(
            int(verdict.distinct[kept].min())
            if verdict.distinct is not None and kept.any()
            else None
        ),
        t=(
            float(verdict.distance[kept].max())
            if verdict.distance is not None and kept.any()
            else None
        ),
        nodes_total=problem.nodes_total,
        nodes_checked=problem.checked,
        search_seconds=search_seconds,
        elapsed_seconds=time.perf_counter() - started,
        target={
            "k": k,
            "l": l,
            "t": t,
            "sensitive": sensitive,
            "max_suppression": max_suppression,
            "quasi_identifiers": qis,
        },
    )


def _metric_value(
    problem: _Problem, node: int, table: _ClassTable, verdict: _Verdict, metric: str
) -> float:
    """Value of ``metric`` at ``node``: mean cell loss, a suppressed cell losing 1."""
    levels = problem.levels[node]
    starts = table.class_starts
    total = 0.0
    for i, per_level in enumerate(problem.cell_losses[metric]):
        cell = per_level[int(levels[i])][table.codes[i][starts]]
        total += float(verdict.sizes @ np.where(verdict.failing, 1.0, cell))
    return total / (problem.n * problem.q)


def _transform(
    table: pa.Table, problem: _Problem, node: int, hierarchies: Mapping[str, Hierarchy]
) -> tuple[pa.Table, _Verdict, _ClassTable]:
    """Generalize every quasi-identifier to the node's level and drop suppressed records."""
    levels = problem.levels[node]
    row_codes = [enc.maps[int(levels[i])][enc.codes] for i, enc in enumerate(problem.encodings)]
    ones = np.ones(problem.n, dtype=np.int64)
    class_table, class_of_row = problem.group_rows(row_codes, node, problem.sens_codes, ones)
    verdict = problem.judge(class_table)
    assert class_of_row is not None
    keep = ~verdict.failing[class_of_row]
    columns = {}
    for name in table.column_names:
        column = table.column(name)
        if name in problem.qis:
            column = hierarchies[name].apply(
                column, int(levels[problem.qis.index(name)]), name=name
            )
        columns[name] = column
    return pa.table(columns).filter(pa.array(keep)), verdict, class_table

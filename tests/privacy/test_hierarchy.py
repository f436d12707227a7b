"""Generalization hierarchies: ARX CSV files, rule-built hierarchies, vectorized application."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from yuanjian.privacy.hierarchy import (
    HierarchyError,
    TableHierarchy,
    area_code_hierarchy,
    date_hierarchy,
    load_hierarchy_csv,
    numeric_bands,
    prefix_mask,
)

ADULT = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "adult"


def _labels(hierarchy: object, values: list, name: str = "col") -> list[list]:
    column = pa.array(values)
    return [
        hierarchy.apply(column, level, name=name).to_pylist() for level in range(hierarchy.height)
    ]  # type: ignore[attr-defined]


@pytest.fixture
def adult_age() -> TableHierarchy:
    if not (ADULT / "adult_hierarchy_age.csv").exists():
        pytest.skip(f"Adult hierarchies not found at {ADULT}")
    return load_hierarchy_csv(ADULT / "adult_hierarchy_age.csv")


def test_arx_csv_hierarchy_levels(adult_age: TableHierarchy) -> None:
    assert adult_age.height == 5
    assert adult_age.top_label == "*"
    assert _labels(adult_age, [39, 17]) == [
        [39, 17],
        ["35-39", "15-19"],
        ["30-39", "10-19"],
        ["20-39", "0-19"],
        ["*", "*"],
    ]


def test_arx_csv_applies_to_the_whole_adult_column(adult_age: TableHierarchy) -> None:
    table = pacsv.read_csv(ADULT / "adult.csv", parse_options=pacsv.ParseOptions(delimiter=";"))
    generalized = adult_age.apply(table.column("age"), 2, name="age").to_pylist()
    expected = {}
    for line in (ADULT / "adult_hierarchy_age.csv").read_text().splitlines():
        fields = line.split(";")
        expected[int(fields[0])] = fields[2]
    assert generalized == [expected[a] for a in table.column("age").to_pylist()]
    assert adult_age.apply(table.column("age"), 0, name="age").equals(table.column("age"))


def test_missing_value_names_column_and_value(adult_age: TableHierarchy) -> None:
    with pytest.raises(HierarchyError, match="'age'") as caught:
        adult_age.apply(pa.array([39, 140]), 1, name="age")
    assert caught.value.field == "age"
    assert caught.value.value == 140
    assert "140" in str(caught.value)


def test_level_out_of_range(adult_age: TableHierarchy) -> None:
    with pytest.raises(HierarchyError, match=r"outside 0\.\.4") as caught:
        adult_age.apply(pa.array([39]), 5, name="age")
    assert caught.value.field == "age"


def test_csv_with_ragged_row(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("a;x;*\nb;*\n", encoding="utf-8")
    with pytest.raises(HierarchyError, match="row 2"):
        load_hierarchy_csv(path)


def test_csv_with_duplicate_value(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("a;x;*\na;y;*\n", encoding="utf-8")
    with pytest.raises(HierarchyError, match="already given in row 1"):
        load_hierarchy_csv(path)


def test_csv_that_does_not_nest(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("a;x;p;*\nb;x;q;*\n", encoding="utf-8")
    with pytest.raises(HierarchyError, match="not nested"):
        load_hierarchy_csv(path)


def test_csv_quoting_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text('\ufeff"a;1";left;*\nb;right;*\n', encoding="utf-8")
    hierarchy = load_hierarchy_csv(path)
    assert _labels(hierarchy, ["a;1", "b"])[1] == ["left", "right"]


def test_nulls_stay_null_until_the_top(adult_age: TableHierarchy) -> None:
    assert _labels(adult_age, [39, None]) == [
        [39, None],
        ["35-39", None],
        ["30-39", None],
        ["20-39", None],
        ["*", "*"],
    ]
    encoding = adult_age.encode(pa.array([39, None, None]), name="age")
    assert encoding.cardinalities == [2, 2, 2, 2, 1]
    assert encoding.maps[-1].tolist() == [0, 0]


def test_numeric_bands_integers() -> None:
    hierarchy = numeric_bands([5, 10, 20])
    assert hierarchy.height == 5
    assert _labels(hierarchy, [39, 0, 17]) == [
        [39, 0, 17],
        ["35-39", "0-4", "15-19"],
        ["30-39", "0-9", "10-19"],
        ["20-39", "0-19", "0-19"],
        ["*", "*", "*"],
    ]


def test_numeric_bands_floats_and_origin() -> None:
    hierarchy = numeric_bands([2.5, 5], origin=1)
    assert _labels(hierarchy, [1.0, 4.0, -0.5]) == [
        [1.0, 4.0, -0.5],
        ["[1, 3.5)", "[3.5, 6)", "[-1.5, 1)"],
        ["[1, 6)", "[1, 6)", "[-4, 1)"],
        ["*", "*", "*"],
    ]


def test_numeric_bands_parse_numeric_strings_and_reject_others() -> None:
    hierarchy = numeric_bands([10])
    assert _labels(hierarchy, ["12", "3.5"])[1] == ["[10, 20)", "[0, 10)"]
    with pytest.raises(HierarchyError, match="'abc'") as caught:
        hierarchy.apply(pa.array(["12", "abc"]), 1, name="income")
    assert caught.value.field == "income"


def test_numeric_bands_must_nest() -> None:
    with pytest.raises(HierarchyError, match="not a multiple"):
        numeric_bands([5, 7])
    with pytest.raises(HierarchyError, match="positive"):
        numeric_bands([0])
    with pytest.raises(HierarchyError, match="at least one"):
        numeric_bands([])


def test_dates_from_date_and_string_columns() -> None:
    hierarchy = date_hierarchy()
    dates = [dt.date(2024, 3, 9), dt.date(2023, 12, 31)]
    expected = [
        ["2024-03", "2023-12"],
        ["2024-Q1", "2023-Q4"],
        ["2024", "2023"],
        ["*", "*"],
    ]
    assert _labels(hierarchy, dates)[1:] == expected
    assert _labels(hierarchy, ["2024-03-09", "2023-12-31"])[1:] == expected
    timestamps = pa.array([dt.datetime(2024, 3, 9, 12, 30)], pa.timestamp("s"))
    assert hierarchy.apply(timestamps, 2, name="seen").to_pylist() == ["2024-Q1"]


def test_dates_subset_of_levels() -> None:
    hierarchy = date_hierarchy(["quarter", "year"])
    assert hierarchy.height == 4
    assert _labels(hierarchy, ["2024-05-01"])[1:] == [["2024-Q2"], ["2024"], ["*"]]
    with pytest.raises(HierarchyError, match="in that order"):
        date_hierarchy(["year", "month"])
    with pytest.raises(HierarchyError, match="unknown date level"):
        date_hierarchy(["week"])


def test_bad_date_names_the_value() -> None:
    with pytest.raises(HierarchyError, match="'2024-13-01'") as caught:
        date_hierarchy().apply(pa.array(["2024-01-01", "2024-13-01"]), 1, name="birth")
    assert caught.value.field == "birth"
    with pytest.raises(HierarchyError, match="'01/02/2024'"):
        date_hierarchy().apply(pa.array(["01/02/2024"]), 1, name="birth")


def test_area_codes() -> None:
    hierarchy = area_code_hierarchy()
    assert _labels(hierarchy, ["110105", "440305"]) == [
        ["110105", "440305"],
        ["1101", "4403"],
        ["11", "44"],
        ["*", "*"],
    ]
    assert hierarchy.apply(pa.array([310115]), 2, name="area").to_pylist() == ["31"]


def test_bad_area_code_names_the_value() -> None:
    with pytest.raises(HierarchyError, match="'11010'") as caught:
        area_code_hierarchy().apply(pa.array(["110105", "11010"]), 1, name="residence")
    assert caught.value.field == "residence"
    assert caught.value.value == "11010"


def test_prefix_mask() -> None:
    hierarchy = prefix_mask(6, step=2)
    assert hierarchy.height == 4
    assert _labels(hierarchy, ["100080", "abc"]) == [
        ["100080", "abc"],
        ["1000**", "abc***"],
        ["10****", "ab****"],
        ["*", "*"],
    ]
    with pytest.raises(HierarchyError, match="longer than the mask length 6") as caught:
        hierarchy.apply(pa.array(["1234567"]), 1, name="zip")
    assert caught.value.field == "zip"
    with pytest.raises(HierarchyError, match="one character"):
        prefix_mask(4, mask="**")


def test_encode_matches_apply() -> None:
    rng = np.random.default_rng(7)
    values = rng.integers(0, 100, 500)
    hierarchy = numeric_bands([5, 25])
    column = pa.array(values)
    encoding = hierarchy.encode(column, name="x")
    assert encoding.height == hierarchy.height
    for level in range(hierarchy.height):
        labels = hierarchy.apply(column, level, name="x").to_pylist()
        codes = encoding.maps[level][encoding.codes]
        # Same label <=> same code, and the codes are dense.
        pairs = set(zip(labels, codes.tolist(), strict=True))
        assert len(pairs) == len(set(labels)) == len(set(codes.tolist()))
        assert encoding.cardinalities[level] == len(set(labels))
        # Coverage: how many distinct original values share the code.
        for label, code in pairs:
            covered = {v for v, lab in zip(values.tolist(), labels, strict=True) if lab == label}
            assert encoding.coverage[level][code] == len(covered)
    up = encoding.up_map(1, 2)
    assert (up[encoding.maps[1]] == encoding.maps[2]).all()


def test_table_hierarchy_from_rows_and_mixed_top() -> None:
    hierarchy = TableHierarchy([["a", "x"], ["b", "y"]], description="rows")
    assert hierarchy.top_label is None
    assert hierarchy.apply(pa.array(["a", None]), 1, name="c").to_pylist() == ["x", None]
    with pytest.raises(HierarchyError, match="no rows"):
        TableHierarchy([])

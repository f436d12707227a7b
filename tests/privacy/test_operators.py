"""Desensitization operators: exact semantics, nulls, keys, type errors, table-level policy."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import sys
import types

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as chmac
from stdnum.cn import ric

from yuanjian.privacy.operators import (
    OPERATORS,
    PolicyError,
    apply_operator,
    apply_policy,
    check_call,
    suppress,
    suppressed_rows,
)

KEY = b"test-key-0123456789abcdef-000001"
OTHER_KEY = b"test-key-0123456789abcdef-000002"


def op(name: str, values: pa.Array, key: bytes = KEY, **params: object) -> list[object]:
    return apply_operator(name, values, params, key, field="f").to_pylist()


def subkey(key: bytes, purpose: str) -> bytes:
    return hmac.new(key, b"yuanjian/desensitize/" + purpose.encode(), hashlib.sha256).digest()


def make_ids(n: int, seed: int = 7) -> list[str]:
    """n valid GB 11643 resident IDs over a few real county codes."""
    rng = np.random.default_rng(seed)
    areas = ["110105", "410102", "440305", "360426", "330106", "510104", "652801"]
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    out = []
    for i in range(n):
        birth = dt.date(1950, 1, 1) + dt.timedelta(days=int(rng.integers(0, 20000)))
        body = f"{areas[i % len(areas)]}{birth:%Y%m%d}{int(rng.integers(0, 1000)):03d}"
        check = "10X98765432"[sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11]
        out.append(body + check)
    return out


# --------------------------------------------------------------------------- keep / redact


def test_keep_returns_the_column_unchanged() -> None:
    assert op("keep", pa.array([1, None, 3])) == [1, None, 3]


def test_redact_nulls_every_value_and_keeps_the_type() -> None:
    out = apply_operator("redact", pa.array([1, 2, None]), {}, KEY, field="f")
    assert out.type == pa.int64()
    assert out.to_pylist() == [None, None, None]


# --------------------------------------------------------------------------- replace


def test_replace_sets_a_constant_and_keeps_nulls() -> None:
    assert op("replace", pa.array(["a", None, "b"]), value="X") == ["X", None, "X"]
    assert op("replace", pa.array(["a", None]), value="X", keep_nulls=False) == ["X", "X"]


def test_replace_casts_the_constant_to_the_column_type() -> None:
    out = apply_operator(
        "replace", pa.array([dt.date(2020, 5, 1)]), {"value": "2000-01-01"}, KEY, field="f"
    )
    assert out.to_pylist() == [dt.date(2000, 1, 1)]


def test_replace_value_the_column_cannot_hold_is_an_error() -> None:
    with pytest.raises(PolicyError, match=r"'amount'.*'abc'") as info:
        apply_operator("replace", pa.array([1, 2]), {"value": "abc"}, KEY, field="amount")
    assert info.value.field == "amount"


# --------------------------------------------------------------------------- mask


def test_mask_keeps_first_and_last_characters() -> None:
    assert op("mask", pa.array(["张三丰", "欧阳娜娜"]), keep_first=1) == ["张**", "欧***"]
    assert op("mask", pa.array(["13812345678"]), keep_first=3, keep_last=4) == ["138****5678"]
    assert op("mask", pa.array(["6222021234567890"]), keep_last=4) == ["************7890"]


def test_mask_never_shows_a_short_value_whole() -> None:
    # "李" has no character beyond the one kept, so it is masked whole.
    assert op("mask", pa.array(["李", "张三", ""]), keep_first=1) == ["*", "张*", ""]
    assert op("mask", pa.array(["1234"]), keep_first=2, keep_last=2) == ["****"]


def test_mask_fixed_length_hides_the_length_and_custom_char() -> None:
    # Both values show as 138****: the number of hidden characters no longer leaks.
    out = op("mask", pa.array(["13812345678", "1381"]), keep_first=3, mask_length=4)
    assert out == ["138****", "138****"]
    assert op("mask", pa.array(["abcdef"]), keep_last=2, mask_char="#") == ["####ef"]


def test_mask_preserves_nulls() -> None:
    assert op("mask", pa.array(["张三", None]), keep_first=1) == ["张*", None]


def test_mask_on_a_date_column_is_a_type_error_naming_field_and_operator() -> None:
    with pytest.raises(PolicyError) as info:
        apply_operator("mask", pa.array([dt.date(2020, 1, 1)]), {}, KEY, field="birth")
    assert info.value.field == "birth"
    assert info.value.operator == "mask"
    assert "'birth'" in str(info.value) and "date32" in str(info.value)


def test_mask_char_must_be_one_character() -> None:
    with pytest.raises(PolicyError, match=r"mask_char"):
        op("mask", pa.array(["a"]), mask_char="**")


# --------------------------------------------------------------------------- pseudonymize


def test_pseudonymize_is_the_documented_keyed_hmac() -> None:
    values = ["110105194912310021", "张三", ""]
    k = subkey(KEY, "pseudonymize")
    expected = [hmac.new(k, v.encode(), hashlib.sha256).hexdigest()[:16] for v in values]
    assert op("pseudonymize", pa.array(values)) == expected


def test_pseudonymize_matches_hmac_row_for_row_on_a_larger_column() -> None:
    # DuckDB computes the HMAC; this checks it keeps row order on a multi-vector input.
    values = [f"user-{i * 7919 % 30011}" for i in range(30_000)]
    out = op("pseudonymize", pa.array(values), length=64)
    k = subkey(KEY, "pseudonymize")
    for i in (0, 1, 2047, 2048, 12_345, 29_999):
        assert out[i] == hmac.new(k, values[i].encode(), hashlib.sha256).hexdigest()


def test_pseudonymize_low_cardinality_column_hashes_distinct_values_correctly() -> None:
    # Few distinct values: hashed once each and taken back by index; must equal row by row.
    values = [["北京", "上海", None, "广州", "深圳"][i % 5] for i in range(20_000)]
    out = op("pseudonymize", pa.array(values))
    k = subkey(KEY, "pseudonymize")
    expected = {
        v: hmac.new(k, v.encode(), hashlib.sha256).hexdigest()[:16] for v in set(values) if v
    }
    assert out == [expected[v] if v else None for v in values]
    b32 = op("pseudonymize", pa.array(values), encoding="base32")
    assert b32[:5] == op("pseudonymize", pa.array(values[:5]), encoding="base32")
    assert b32[5:10] == b32[:5]


def test_pseudonymize_is_deterministic_per_key_and_differs_across_keys() -> None:
    col = pa.array(["a", "b", "a", None])
    first = op("pseudonymize", col)
    assert first == op("pseudonymize", col)
    assert first[0] == first[2] and first[0] != first[1]
    assert first[3] is None
    other = op("pseudonymize", col, key=OTHER_KEY)
    assert other[0] != first[0] and other[1] != first[1]


def test_pseudonymize_integer_and_string_spellings_agree() -> None:
    assert op("pseudonymize", pa.array([13812345678])) == op(
        "pseudonymize", pa.array(["13812345678"])
    )


def test_pseudonymize_base32_with_prefix() -> None:
    out = op("pseudonymize", pa.array(["a", "b"]), encoding="base32", length=20, prefix="P_")
    assert all(re.fullmatch(r"P_[a-z2-7]{20}", v) for v in out)
    assert out[0] != out[1]
    hexed = op("pseudonymize", pa.array(["a", None]), prefix="用户_", length=10)
    k = subkey(KEY, "pseudonymize")
    assert hexed == ["用户_" + hmac.new(k, b"a", hashlib.sha256).hexdigest()[:10], None]


def test_pseudonymize_hmac_sm3_uses_sm3() -> None:
    sub = chmac.HMAC(KEY, hashes.SM3())
    sub.update(b"yuanjian/desensitize/pseudonymize")
    k = sub.finalize()
    h = chmac.HMAC(k, hashes.SM3())
    h.update("张三".encode())
    expected = h.finalize().hex()[:16]
    out = op("pseudonymize", pa.array(["张三", None, "张三"]), algorithm="hmac-sm3")
    assert out == [expected, None, expected]
    assert out[0] != op("pseudonymize", pa.array(["张三"]))[0]


def test_pseudonymize_accepts_dictionary_and_chunked_columns() -> None:
    col = pa.chunked_array([pa.array(["a", "b"]), pa.array(["a"])]).dictionary_encode()
    assert op("pseudonymize", col) == op("pseudonymize", pa.array(["a", "b", "a"]))


def test_pseudonymize_length_beyond_digest_is_rejected() -> None:
    with pytest.raises(PolicyError, match=r"length"):
        op("pseudonymize", pa.array(["a"]), encoding="base32", length=60)


def test_pseudonymize_on_a_float_column_is_a_type_error() -> None:
    with pytest.raises(PolicyError, match=r"'f'.*pseudonymize.*double"):
        op("pseudonymize", pa.array([1.5]))


# --------------------------------------------------------------------------- format_preserving


def test_format_preserving_resident_ids_pass_gb11643_and_birthplace_checks() -> None:
    ids = make_ids(400)
    valid_in = [ric.is_valid(v) for v in ids]
    assert 100 < sum(valid_in) < len(ids)  # some test IDs name a county before it existed
    for params in (
        {},
        {"keep_birth_year": True, "keep_sex": True},
        {"keep_region": "province"},
        {"keep_region": "city", "keep_birth_year": True},
    ):
        out = op("format_preserving", pa.array(ids), kind="cn_resident_id", **params)
        # Always: 18 characters, a real birth date and the GB 11643 check character.
        assert all(ric.calc_check_digit(v) == v[17] for v in out), params
        assert all(ric.get_birth_date(v) for v in out), params
        # Whenever the original passes python-stdnum's full check (birthplace valid in the
        # birth year), so does the pseudonym; without a kept region, every pseudonym does.
        assert all(ric.is_valid(v) for v, ok in zip(out, valid_in, strict=True) if ok), params
        if "keep_region" not in params:
            assert all(ric.is_valid(v) for v in out), params
        assert sum(a == b for a, b in zip(ids, out, strict=True)) == 0
        assert len(set(out)) == len(set(ids))  # no collisions at this size


def test_format_preserving_keeps_birth_year_sex_and_region_when_asked() -> None:
    ids = make_ids(300, seed=11)
    out = op(
        "format_preserving",
        pa.array(ids),
        kind="cn_resident_id",
        keep_birth_year=True,
        keep_sex=True,
        keep_region="city",
    )
    for a, b in zip(ids, out, strict=True):
        assert b[6:10] == a[6:10]  # birth year
        assert int(b[16]) % 2 == int(a[16]) % 2  # sex
        assert b[:4] == a[:4]  # province and city
        assert b[:6] != a[:6] or b[10:14] != a[10:14] or b[14:17] != a[14:17]


def test_format_preserving_without_keeping_shifts_birth_within_bound() -> None:
    ids = make_ids(300, seed=3)
    out = op("format_preserving", pa.array(ids), kind="cn_resident_id", birth_shift_days=30)
    for a, b in zip(ids, out, strict=True):
        da = dt.datetime.strptime(a[6:14], "%Y%m%d").date()
        db = dt.datetime.strptime(b[6:14], "%Y%m%d").date()
        assert abs((db - da).days) <= 30
    sexes_kept = sum(int(a[16]) % 2 == int(b[16]) % 2 for a, b in zip(ids, out, strict=True))
    assert sexes_kept < len(ids)  # sex is not kept unless asked


def test_format_preserving_id_is_deterministic_and_keyed() -> None:
    ids = pa.array(["11010519491231002X", "11010519491231002x", "360426199101010071"])
    first = op("format_preserving", ids, kind="cn_resident_id")
    assert first == op("format_preserving", ids, kind="cn_resident_id")
    assert first[0] == first[1]  # x and X are the same ID
    assert op("format_preserving", ids, key=OTHER_KEY, kind="cn_resident_id") != first


def test_format_preserving_id_withholds_invalid_values() -> None:
    ids = pa.array(["11010519491231002X", None, "123", "11010519490230002X", "1101051949123100AX"])
    out = op("format_preserving", ids, kind="cn_resident_id")
    assert out[0] is not None and out[1:] == [None, None, None, None]


def test_format_preserving_id_error_names_the_row_not_the_value() -> None:
    ids = pa.array(["11010519491231002X", "11010519490230002X"])
    with pytest.raises(PolicyError, match=r"row 1") as info:
        apply_operator(
            "format_preserving",
            ids,
            {"kind": "cn_resident_id", "on_invalid": "error"},
            KEY,
            field="id_no",
        )
    assert info.value.field == "id_no"
    assert "19490230" not in str(info.value)


def test_format_preserving_mobile_keeps_prefix_and_shape() -> None:
    phones = [f"1{3 + i % 7}{i % 10}{i * 7919 % 10**8:08d}" for i in range(500)]
    out = op("format_preserving", pa.array(phones), kind="cn_mobile")
    for a, b in zip(phones, out, strict=True):
        assert re.fullmatch(r"1[3-9]\d{9}", b)
        assert b[:3] == a[:3] and b != a
    assert len(set(out)) == len(phones)
    assert out == op("format_preserving", pa.array(phones), kind="cn_mobile")


def test_format_preserving_mobile_integer_column_and_invalid_values() -> None:
    out = apply_operator(
        "format_preserving",
        pa.array([13812345678, None, 12345]),
        {"kind": "cn_mobile", "keep_prefix": 7},
        KEY,
        field="m",
    )
    assert out.type == pa.int64()
    values = out.to_pylist()
    assert str(values[0])[:7] == "1381234" and len(str(values[0])) == 11
    assert values[1:] == [None, None]
    assert values[0] == int(
        op("format_preserving", pa.array(["13812345678"]), kind="cn_mobile", keep_prefix=7)[0]
    )


def test_format_preserving_needs_a_known_kind() -> None:
    with pytest.raises(PolicyError, match=r"'kind'"):
        op("format_preserving", pa.array(["x"]))
    with pytest.raises(PolicyError, match=r"'kind' is 'iban'"):
        op("format_preserving", pa.array(["x"]), kind="iban")


# --------------------------------------------------------------------------- generalize

DATES = pa.array([dt.date(1990, 5, 17), None, dt.date(2001, 12, 31)])


def test_generalize_dates_truncate_and_label() -> None:
    assert op("generalize", DATES, method="year") == [
        dt.date(1990, 1, 1),
        None,
        dt.date(2001, 1, 1),
    ]
    assert op("generalize", DATES, method="quarter") == [
        dt.date(1990, 4, 1),
        None,
        dt.date(2001, 10, 1),
    ]
    assert op("generalize", DATES, method="month") == [
        dt.date(1990, 5, 1),
        None,
        dt.date(2001, 12, 1),
    ]
    assert op("generalize", DATES, method="year", output="label") == ["1990", None, "2001"]
    assert op("generalize", DATES, method="quarter", output="label") == ["1990-Q2", None, "2001-Q4"]
    assert op("generalize", DATES, method="month", output="label") == ["1990-05", None, "2001-12"]


def test_generalize_year_on_timestamps() -> None:
    ts = pa.array([dt.datetime(2020, 7, 4, 12, 30)], pa.timestamp("us"))
    assert op("generalize", ts, method="year") == [dt.datetime(2020, 1, 1)]


def test_generalize_year_on_an_integer_is_a_type_error() -> None:
    with pytest.raises(PolicyError, match=r"'born'.*generalize\(method='year'\).*int64") as info:
        apply_operator("generalize", pa.array([1990]), {"method": "year"}, KEY, field="born")
    assert info.value.field == "born"


def test_generalize_band_by_width() -> None:
    income = pa.array([3500, 12000, None, -1, 999])
    assert op("generalize", income, method="band", width=1000) == [
        "[3000,4000)",
        "[12000,13000)",
        None,
        "[-1000,0)",
        "[0,1000)",
    ]
    assert op("generalize", income, method="band", width=1000, output="lower") == [
        3000,
        12000,
        None,
        -1000,
        0,
    ]
    assert op("generalize", pa.array([17, 23]), method="band", width=10, origin=5) == [
        "[15,25)",
        "[15,25)",
    ]


def test_generalize_band_by_bounds_with_open_ends() -> None:
    ages = pa.array([3, 18, 40, 65, 90, None])
    assert op("generalize", ages, method="band", bounds=[18, 40, 65]) == [
        "<18",
        "[18,40)",
        "[40,65)",
        ">=65",
        ">=65",
        None,
    ]


def test_generalize_band_parameter_errors() -> None:
    with pytest.raises(PolicyError, match=r"exactly one of 'width' or 'bounds'"):
        op("generalize", pa.array([1]), method="band")
    with pytest.raises(PolicyError, match=r"strictly increasing"):
        op("generalize", pa.array([1]), method="band", bounds=[5, 1])
    with pytest.raises(PolicyError, match=r"'salary'.*band.*string"):
        apply_operator(
            "generalize", pa.array(["1"]), {"method": "band", "width": 1}, KEY, field="salary"
        )


def test_generalize_round_and_top_bottom_coding() -> None:
    assert op("generalize", pa.array([1234, 1251, None]), method="round", digits=-2) == [
        1200,
        1300,
        None,
    ]
    assert op("generalize", pa.array([39.904211, 116.407395]), method="round", digits=2) == [
        39.9,
        116.41,
    ]
    assert op(
        "generalize", pa.array([1, 50, 200, None]), method="top_bottom", lower=10, upper=100
    ) == [10, 50, 100, None]
    assert op("generalize", pa.array([5.0, 1e9]), method="top_bottom", upper=1e6) == [5.0, 1e6]


def test_generalize_area_codes_to_city_and_province() -> None:
    codes = pa.array(["410102", None, "110105"])
    assert op("generalize", codes, method="area_code") == ["410100", None, "110100"]
    assert op("generalize", codes, method="area_code", level="province") == [
        "410000",
        None,
        "110000",
    ]
    assert op("generalize", pa.array([410102]), method="area_code") == [410100]


def test_generalize_bad_area_code_names_field_and_value() -> None:
    with pytest.raises(PolicyError, match=r"'region'.*row 1.*'4101'") as info:
        apply_operator(
            "generalize", pa.array(["410102", "4101"]), {"method": "area_code"}, KEY, field="region"
        )
    assert info.value.field == "region"


def test_generalize_address_to_district_city_province() -> None:
    addresses = pa.array(
        [
            "河南省郑州市中原区建设路12号",
            "北京市朝阳区三里屯路19号",
            "新疆维吾尔自治区乌鲁木齐市天山区解放北路",
            "四川省凉山彝族自治州西昌市长安路",
            "门口的小卖部",
            None,
        ]
    )
    assert op("generalize", addresses, method="address") == [
        "河南省郑州市中原区",
        "北京市朝阳区",
        "新疆维吾尔自治区乌鲁木齐市天山区",
        "四川省凉山彝族自治州西昌市",
        None,
        None,
    ]
    assert op("generalize", addresses, method="address", level="city")[:2] == [
        "河南省郑州市",
        "北京市",
    ]
    assert op("generalize", addresses, method="address", level="province")[0] == "河南省"


def test_generalize_hierarchy_climbs_levels() -> None:
    table = {"苹果": "水果", "梨": "水果", "水果": "食品", "白菜": "蔬菜", "蔬菜": "食品"}
    col = pa.array(["苹果", "白菜", None, "食品"][:3])
    assert op("generalize", col, method="hierarchy", hierarchy=table) == ["水果", "蔬菜", None]
    assert op("generalize", col, method="hierarchy", hierarchy=table, levels=3) == [
        "食品",
        "食品",
        None,
    ]


def test_generalize_hierarchy_missing_value_names_field_and_value() -> None:
    with pytest.raises(PolicyError, match=r"'job'.*'宇航员'") as info:
        apply_operator(
            "generalize",
            pa.array(["教师", "宇航员"]),
            {"method": "hierarchy", "hierarchy": {"教师": "教育"}},
            KEY,
            field="job",
        )
    assert info.value.field == "job"


# --------------------------------------------------------------------------- date_shift


def test_date_shift_is_consistent_per_subject_across_tables() -> None:
    subjects = [f"s{i}" for i in range(50)]
    dates = [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(50)]
    first = apply_operator(
        "date_shift",
        pa.array(dates),
        {"max_days": 15},
        KEY,
        field="visit",
        subject=pa.array(subjects),
    ).to_pylist()
    # A second table: other rows, other order, another date field of the same subjects.
    order = list(reversed(range(50)))
    second = apply_operator(
        "date_shift",
        pa.array([dates[i] + dt.timedelta(days=100) for i in order]),
        {"max_days": 15},
        KEY,
        field="discharge",
        subject=pa.array([subjects[i] for i in order]),
    ).to_pylist()
    offsets = [(b - a).days for a, b in zip(dates, first, strict=True)]
    assert all(1 <= abs(o) <= 15 for o in offsets)
    assert len(set(offsets)) > 5
    for j, i in enumerate(order):
        assert (second[j] - (dates[i] + dt.timedelta(days=100))).days == offsets[i]


def test_date_shift_timestamps_nulls_and_missing_subject() -> None:
    ts = pa.array(
        [dt.datetime(2020, 1, 1, 8), None, dt.datetime(2020, 1, 1, 8)], pa.timestamp("ms")
    )
    out = apply_operator(
        "date_shift", ts, {}, KEY, field="t", subject=pa.array(["a", "a", None])
    ).to_pylist()
    assert out[1] is None and out[2] is None  # null date; null subject withholds the date
    assert out[0].time() == dt.time(8) and out[0] != dt.datetime(2020, 1, 1, 8)
    with pytest.raises(PolicyError, match=r"'t'.*subject"):
        apply_operator("date_shift", ts, {}, KEY, field="t")


# --------------------------------------------------------------------------- noise


def test_noise_is_reproducible_per_seed_and_field() -> None:
    col = pa.array(np.arange(1000, dtype=np.float64))

    def run(seed: int, field: str = "x") -> list[float]:
        return apply_operator("noise", col, {"scale": 2.0}, KEY, field=field, seed=seed).to_pylist()

    assert run(1) == run(1)
    assert run(1) != run(2)
    assert run(1, "x") != run(1, "y")


def test_noise_scale_and_distribution() -> None:
    col = pa.array(np.zeros(20_000))
    lap = np.array(apply_operator("noise", col, {"scale": 3.0}, KEY, field="x", seed=5))
    gau = np.array(
        apply_operator(
            "noise", col, {"scale": 3.0, "distribution": "gaussian"}, KEY, field="x", seed=5
        )
    )
    assert abs(np.mean(np.abs(lap)) - 3.0) < 0.15  # E|Laplace(b)| = b
    assert abs(np.std(gau) - 3.0) < 0.15


def test_noise_keeps_integer_columns_integer_and_nulls() -> None:
    out = apply_operator(
        "noise", pa.array([100, None, 200], pa.int32()), {"scale": 5.0}, KEY, field="n", seed=3
    )
    assert out.type == pa.int32()
    values = out.to_pylist()
    assert values[1] is None and all(isinstance(v, int) for v in (values[0], values[2]))
    assert values != [100, None, 200]


def test_noise_errors() -> None:
    with pytest.raises(PolicyError, match=r"'n'.*issuance seed"):
        apply_operator("noise", pa.array([1]), {"scale": 1.0}, KEY, field="n")
    with pytest.raises(PolicyError, match=r"'n'.*noise.*string"):
        apply_operator("noise", pa.array(["1"]), {"scale": 1.0}, KEY, field="n", seed=1)
    with pytest.raises(PolicyError, match=r"'n'.*needs parameter 'scale'"):
        apply_operator("noise", pa.array([1]), {}, KEY, field="n", seed=1)


# --------------------------------------------------------------------------- suppress


def test_suppress_drops_exactly_the_small_classes() -> None:
    table = pa.table(
        {
            "city": ["A", "A", "A", "B", "B", "C", None, None, None],
            "sex": ["m", "m", "m", "f", "f", "f", "m", "m", "m"],
            "v": list(range(9)),
        }
    )
    out, dropped = suppress(table, ["city", "sex"], 3)
    assert dropped == 3
    assert out.column("v").to_pylist() == [0, 1, 2, 6, 7, 8]  # order kept; null is a class
    out2, dropped2 = suppress(table, ["city"], 2)
    assert dropped2 == 1 and out2.column("v").to_pylist() == [0, 1, 2, 3, 4, 6, 7, 8]


def test_suppress_in_a_policy_runs_on_generalized_values() -> None:
    table = pa.table(
        {
            "birth": pa.array([dt.date(1990, m, 1) for m in range(1, 7)] + [dt.date(1985, 1, 1)]),
            "sex": ["m"] * 7,
        }
    )
    policy = {
        "birth": {"operator": "generalize", "params": {"method": "year", "output": "label"}},
        "sex": {"operator": "suppress", "params": {"k": 2, "quasi_identifiers": ["birth"]}},
    }
    out = apply_policy(table, policy, key=KEY, seed=1)
    # Exact dates are all unique, but the year classes are {1990: 6, 1985: 1}.
    assert out.column("birth").to_pylist() == ["1990"] * 6
    assert suppressed_rows(out) == 1


def test_suppress_cannot_run_on_a_single_column() -> None:
    with pytest.raises(PolicyError, match=r"whole table"):
        op("suppress", pa.array([1]), k=2)


# --------------------------------------------------------------------------- redact_entities


@pytest.fixture
def entity_regexes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A small detector stand-in, so these tests do not depend on detect.py's patterns."""
    fake = types.ModuleType("yuanjian.privacy.detect")
    fake.ENTITY_REGEXES = {  # type: ignore[attr-defined]
        "cn_resident_id": r"\d{17}[\dX]",
        "cn_mobile": r"1[3-9]\d{9}",
        "email": r"[\w.]+@[\w.]+",
    }
    monkeypatch.setitem(sys.modules, "yuanjian.privacy.detect", fake)


@pytest.mark.usefixtures("entity_regexes")
def test_redact_entities_replaces_spans_with_label_tokens() -> None:
    text = pa.array(["身份证11010519491231002X，电话13812345678，邮件a.b@x.cn", None])
    assert op("redact_entities", text) == [
        "身份证<cn_resident_id>，电话<cn_mobile>，邮件<email>",
        None,
    ]
    assert (
        op("redact_entities", text, token="zh")[0]
        == "身份证[身份证号]，电话[手机号]，邮件[电子邮箱]"
    )
    assert op("redact_entities", text, labels=["email"])[0] == (
        "身份证11010519491231002X，电话13812345678，邮件<email>"
    )


@pytest.mark.usefixtures("entity_regexes")
def test_redact_entities_fails_closed_for_labels_without_a_detector() -> None:
    with pytest.raises(PolicyError, match=r"'note'.*bank_card"):
        apply_operator(
            "redact_entities", pa.array(["x"]), {"labels": ["bank_card"]}, KEY, field="note"
        )
    with pytest.raises(PolicyError, match=r"unknown entity label"):
        op("redact_entities", pa.array(["x"]), labels=["shoe_size"])


def test_redact_entities_with_the_real_detectors() -> None:
    detect = pytest.importorskip("yuanjian.privacy.detect")
    if not hasattr(detect, "ENTITY_REGEXES"):
        pytest.skip("detect.ENTITY_REGEXES not available yet")
    out = op("redact_entities", pa.array(["联系电话 13812345678 身份证 11010519491231002X"]))
    assert "13812345678" not in out[0] and "11010519491231002X" not in out[0]
    assert "<cn_mobile>" in out[0] and "<cn_resident_id>" in out[0]


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("name", "params", "arrow_type", "code"),
    [
        ("shuffle", {}, pa.string(), "unknown_operator"),
        ("noise", {}, pa.int64(), "missing_parameter"),
        ("mask", {"keep_frist": 1}, pa.string(), "extra_parameter"),
        ("mask", {"keep_first": "1"}, pa.string(), "parameter_type"),
        ("mask", {"keep_first": True}, pa.string(), "parameter_type"),
        ("pseudonymize", {"encoding": "base64"}, pa.string(), "parameter_value"),
        ("date_shift", {"max_days": 0}, pa.date32(), "parameter_value"),
        ("generalize", {}, pa.int64(), "missing_parameter"),
        ("generalize", {"method": "area_code"}, pa.date32(), "column_type"),
        ("noise", {"scale": 1.0}, pa.string(), "column_type"),
    ],
)
def test_check_call_reports_issues_naming_the_field(
    name: str, params: dict[str, object], arrow_type: pa.DataType, code: str
) -> None:
    issues = check_call(name, params, arrow_type, field="col_7")
    assert [i.code for i in issues] == [code]
    assert "'col_7'" in issues[0].message and issues[0].field == "col_7"


def test_every_operator_validates_its_defaults() -> None:
    required = {
        "replace": {"value": 1},
        "noise": {"scale": 1.0},
        "suppress": {"k": 2},
        "format_preserving": {"kind": "cn_mobile"},
        "generalize": {"method": "round"},
    }
    for name in OPERATORS:
        assert check_call(name, required.get(name, {}), field="x") == [], name


def test_short_key_is_rejected() -> None:
    with pytest.raises(PolicyError, match=r"16 bytes"):
        apply_operator("pseudonymize", pa.array(["a"]), {}, b"short", field="f")


# --------------------------------------------------------------------------- apply_policy


def test_joins_still_work_across_a_samples_tables() -> None:
    ids = make_ids(60, seed=21)
    people = pa.table({"id_no": ids, "name": [f"姓名{i}" for i in range(60)]})
    rng = np.random.default_rng(0)
    picks = rng.integers(0, 60, 200)
    visits = pa.table(
        {
            "patient": [ids[i] for i in picks],
            "visit_day": [dt.date(2024, 1, 1) + dt.timedelta(days=int(d)) for d in picks % 90],
        }
    )
    for id_call in (
        {"operator": "pseudonymize"},
        {"operator": "format_preserving", "params": {"kind": "cn_resident_id"}},
    ):
        p_out = apply_policy(
            people,
            {"id_no": id_call, "name": {"operator": "mask", "params": {"keep_first": 1}}},
            key=KEY,
            seed=1,
        )
        v_out = apply_policy(
            visits,
            {"patient": id_call, "visit_day": {"operator": "date_shift"}},
            key=KEY,
            seed=2,
            subject_column="patient",
        )
        joined = v_out.join(p_out, keys="patient", right_keys="id_no")
        assert joined.num_rows == visits.num_rows
        original = {(ids[i], f"姓名{i}"[:1]) for i in picks}
        pseudo_to_orig = dict(
            zip(p_out.column("id_no").to_pylist(), people.column("id_no").to_pylist(), strict=True)
        )
        pairs = {
            (pseudo_to_orig[p], n[:1])
            for p, n in zip(
                joined.column("patient").to_pylist(), joined.column("name").to_pylist(), strict=True
            )
        }
        assert pairs == original


def test_apply_policy_denies_unlisted_fields_and_unknown_ones() -> None:
    table = pa.table({"a": [1], "b": ["x"]})
    with pytest.raises(PolicyError, match=r"'b'.*no operator") as info:
        apply_policy(table, {"a": {"operator": "keep"}}, key=KEY, seed=1)
    assert info.value.field == "b"
    with pytest.raises(PolicyError, match=r"'c'.*not a column"):
        apply_policy(
            table,
            {"a": {"operator": "keep"}, "b": {"operator": "keep"}, "c": {"operator": "keep"}},
            key=KEY,
            seed=1,
        )


def test_apply_policy_validates_every_field_before_running() -> None:
    table = pa.table({"a": [1], "b": ["x"]})
    with pytest.raises(PolicyError) as info:
        apply_policy(
            table,
            {"a": {"operator": "mask"}, "b": {"operator": "frobnicate"}},
            key=KEY,
            seed=1,
        )
    assert {i.field for i in info.value.issues} == {"a", "b"}
    assert info.value.field == "a"


def test_apply_policy_keeps_column_order_metadata_and_row_count() -> None:
    table = pa.table({"n": [1, 2, None], "s": ["甲乙", "丙丁", None]}).replace_schema_metadata(
        {"source": "test"}
    )
    out = apply_policy(
        table,
        {
            "n": {"operator": "noise", "params": {"scale": 1.0}},
            "s": {"operator": "mask", "params": {"keep_first": 1}},
        },
        key=KEY,
        seed=9,
    )
    assert out.column_names == ["n", "s"] and out.num_rows == 3
    assert out.schema.metadata[b"source"] == b"test"
    assert out.column("s").to_pylist() == ["甲*", "丙*", None]
    assert suppressed_rows(out) == 0
    assert pc.is_null(out.column("n")).to_pylist() == [False, False, True]


def test_parallel_columns_give_the_same_table_as_sequential() -> None:
    n = 60_000  # above the size where apply_policy runs columns in threads
    rng = np.random.default_rng(1)
    table = pa.table(
        {
            "id": pa.array([f"id{i}" for i in rng.integers(0, 10**9, n)]),
            "name": pa.array(["张三丰", "李四", None][i % 3] for i in range(n)),
            "income": pa.array(rng.integers(0, 50_000, n)),
        }
    )
    policy = {
        "id": {"operator": "pseudonymize"},
        "name": {"operator": "mask", "params": {"keep_first": 1}},
        "income": {"operator": "noise", "params": {"scale": 100.0}},
    }
    one = apply_policy(table, policy, key=KEY, seed=4, workers=1)
    many = apply_policy(table, policy, key=KEY, seed=4, workers=4)
    assert one.equals(many)


def test_several_suppress_rules_all_hold_afterwards() -> None:
    table = pa.table(
        {
            "a": ["x", "x", "x", "y", "y", "y"],
            "b": ["p", "p", "q", "r", "r", "r"],
        }
    )
    policy = {
        "a": {"operator": "suppress", "params": {"k": 3}},
        "b": {"operator": "suppress", "params": {"k": 2}},
    }
    out = apply_policy(table, policy, key=KEY, seed=1)
    # Rule b drops the lone b=q row; that leaves class a=x with 2 rows < 3, so rule a then
    # drops those two as well.
    assert out.to_pylist() == [{"a": "y", "b": "r"}] * 3
    assert suppressed_rows(out) == 3
    for col, k in (("a", 3), ("b", 2)):
        assert min(pc.value_counts(out.column(col)).field("counts").to_pylist()) >= k

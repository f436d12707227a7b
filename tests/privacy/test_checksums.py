"""The column validators agree with python-stdnum and with the scalar helpers."""

from __future__ import annotations

import datetime as dt
import random

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum import luhn
from stdnum.cn import ric, uscc

from tests.privacy import labeled
from yuanjian.privacy import checksums as C

TODAY = labeled.REFERENCE_DATE


def _bools(arr: pa.Array) -> list[bool]:
    return arr.to_pylist()


@pytest.fixture(scope="module")
def ids() -> tuple[list[str], list[str]]:
    rng = random.Random(11)
    fake = labeled.make_faker(11)
    good = labeled.resident_ids(fake, rng, 1500)
    bad = [labeled.corrupt_resident_id(rng, v) for v in good[:800]]
    return good, bad


def test_resident_id_column_matches_scalar_and_stdnum_check_char(ids) -> None:
    good, bad = ids
    values = good + bad
    column = _bools(C.resident_id_valid(pa.array(values), today=TODAY))
    scalar = [C.is_valid_resident_id(v, today=TODAY) for v in values]
    assert column == scalar
    assert all(column[: len(good)]) and not any(column[len(good) :])
    # The check character is stdnum's.
    for v in good:
        assert ric.calc_check_digit(v) == v[17]


def test_resident_id_agrees_with_stdnum_where_its_area_database_has_no_dates() -> None:
    # 110105 (朝阳区) carries no validity years in stdnum's database, so stdnum's birth-place
    # check cannot interfere; every other part of the two validators must then agree.
    rng = random.Random(5)
    values = []
    for _ in range(2000):
        born = labeled.birth_date(rng, 1901, 2020)
        body = "110105" + born.strftime("%Y%m%d") + f"{rng.randrange(1000):03d}"
        values.append(body + rng.choice("0123456789X"))
    ours = _bools(C.resident_id_valid(values, today=TODAY))
    assert ours == [ric.is_valid(v) for v in values]
    assert 100 < sum(ours) < 400  # about one in eleven check characters is right


def test_stdnum_rejects_real_ids_that_we_accept() -> None:
    # Area codes are assigned at issue, not at birth: 兴平市 (610481) exists since 1993, and a
    # person born there in 1964 holds such a number. stdnum checks the county against the
    # birth year and rejects it; this is why the resident-ID validator is hand-written.
    body = "610481196406277" + "76"
    number = body + ric.calc_check_digit(body + "0")
    assert C.is_valid_resident_id(number, today=TODAY)
    assert _bools(C.resident_id_valid([number], today=TODAY)) == [True]
    assert not ric.is_valid(number)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("11010519491231002X", True),
        ("11010519491231002x", True),  # lower-case x is accepted
        (" 11010519491231002X ", True),  # scalar trims; the column scanner trims before
        ("11010519491231002Y", False),
        ("110105194912310021", False),  # wrong check digit
        ("990105194912310020", False),  # no such province
        ("1101051949123100", False),  # too short
        ("11010520000229" + "0000", None),  # leap day, check char computed below
        ("11010519000229" + "0000", None),  # 1900 was not a leap year
        ("", False),
    ],
)
def test_resident_id_edge_cases(value: str, expected: bool | None) -> None:
    if expected is None:
        body = value[:17]
        value = body + ric.calc_check_digit(body + "0")
        expected = value[6:14] == "20000229"
    assert C.is_valid_resident_id(value, today=TODAY) is expected
    assert _bools(C.resident_id_valid([value.strip()], today=TODAY)) == [expected]


def test_future_birth_date_is_rejected() -> None:
    body = "11010520300101001"
    value = body + ric.calc_check_digit(body + "0")
    assert not C.is_valid_resident_id(value, today=dt.date(2025, 1, 1))
    assert C.is_valid_resident_id(value, today=dt.date(2031, 1, 1))


def test_uscc_column_matches_scalar_and_stdnum() -> None:
    rng = random.Random(3)
    good = [labeled.uscc_code(rng) for _ in range(1500)]
    bad = [labeled.corrupt_uscc(rng, v) for v in good[:700]]
    values = good + bad
    column = _bools(C.uscc_valid(values))
    assert column == [C.is_valid_uscc(v) for v in values]
    assert all(column[: len(good)]) and not any(column[len(good) :])
    digit_led = [v for v in values if v[0].isdigit()]
    assert _bools(C.uscc_valid(digit_led)) == [uscc.is_valid(v) for v in digit_led]


def test_stdnum_rejects_uscc_of_letter_coded_authorities() -> None:
    # GB 32100 registration authorities include A (军队), N (农业) and Y (其他); stdnum
    # requires eight leading digits and rejects them.
    for prefix in ("N2", "Y1", "A1"):
        body = prefix + "410100" + "MA9XKQ2T0"
        code = body + uscc.calc_check_digit(body)
        assert C.is_valid_uscc(code)
        assert _bools(C.uscc_valid([code])) == [True]
        assert not uscc.is_valid(code)


@pytest.mark.parametrize(
    "value",
    ["91110000600037341l", "911100006000373410", "B1110000600037341L", "9A110000600037341L"],
)
def test_uscc_rejects_bad_shapes(value: str) -> None:
    # Lower-case check char is fine only when upper-cased first; B is no authority; the
    # category must be a digit; the last one has a wrong check character.
    expected = value == "91110000600037341l"
    assert C.is_valid_uscc(value) is expected
    assert _bools(C.uscc_valid([value.upper()])) == [expected]


def test_luhn_column_matches_stdnum_on_random_digit_strings() -> None:
    rng = random.Random(9)
    values = [
        "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 22))) for _ in range(6000)
    ]
    column = _bools(C.luhn_valid(values))
    assert column == [luhn.is_valid(v) for v in values]
    assert column == [C.luhn_ok(v) for v in values]
    assert 400 < sum(column) < 800


def test_bank_card_lengths_and_unionpay_generator() -> None:
    rng = random.Random(2)
    cards = [labeled.unionpay_card(rng) for _ in range(500)]
    assert all(luhn.is_valid(c) and c.startswith("62") and 16 <= len(c) <= 19 for c in cards)
    assert all(_bools(C.bank_card_valid(cards)))
    bad = [labeled.corrupt_card(rng, c) for c in cards]
    assert not any(_bools(C.bank_card_valid(bad)))
    short = "79927398713"  # the textbook Luhn number: valid Luhn, too short for a card
    assert C.luhn_ok(short)
    assert _bools(C.bank_card_valid([short])) == [False]


@pytest.mark.parametrize("value", ["", "12a4", "１２３４", "-0", None, 1234])
def test_luhn_ok_rejects_non_digit_input(value: object) -> None:
    assert C.luhn_ok(value) is False  # type: ignore[arg-type]


def test_validators_accept_chunked_sliced_dictionary_and_large_strings(ids) -> None:
    good, _ = ids
    sample = [*good[:5], None, "x", good[5]]
    expected = [True] * 5 + [False, False, True]
    chunked = pa.chunked_array([pa.array(sample[:3]), pa.array(sample[3:])])
    assert _bools(C.resident_id_valid(chunked, today=TODAY)) == expected
    sliced = pa.array(["pad", *sample]).slice(1)
    assert _bools(C.resident_id_valid(sliced, today=TODAY)) == expected
    assert _bools(C.resident_id_valid(pa.array(sample).dictionary_encode(), today=TODAY)) == (
        expected
    )
    large = pa.array(sample, type=pa.large_string())
    assert _bools(C.resident_id_valid(large, today=TODAY)) == expected
    assert _bools(C.resident_id_valid(pa.array([], type=pa.string()))) == []
    with pytest.raises(TypeError):
        C.resident_id_valid("11010519491231002X")  # type: ignore[arg-type]


def test_bulk_generators_agree_with_stdnum() -> None:
    rng = np.random.default_rng(1)
    rids, rid_ok = labeled.bulk_resident_ids(rng, 300, 0.3)
    for value, ok in zip(rids.to_pylist(), rid_ok, strict=True):
        assert (ric.calc_check_digit(value) == value[17]) is bool(ok)
    codes, code_ok = labeled.bulk_usccs(rng, 300, 0.3)
    for value, ok in zip(codes.to_pylist(), code_ok, strict=True):
        assert uscc.is_valid(value) is bool(ok)
    cards, card_ok = labeled.bulk_unionpay_cards(rng, 300, 0.3)
    for value, ok in zip(cards.to_pylist(), card_ok, strict=True):
        assert luhn.is_valid(value) is bool(ok)
        assert 16 <= len(value) <= 19


def test_birth_date_ok_calendar() -> None:
    year = np.array([2000, 1900, 2024, 2023, 1899, 2025])
    month = np.array([2, 2, 2, 2, 12, 1])
    day = np.array([29, 29, 29, 29, 31, 2])
    ok = C.birth_date_ok(year, month, day, today=dt.date(2025, 1, 1))
    assert ok.tolist() == [True, False, True, False, False, False]


_id_like = st.from_regex(r"[1-9]\d{16}[\dXx]", fullmatch=True)
_uscc_like = st.from_regex(r"[1-9ANYB][0-9A]\d{6}[0-9A-Z]{10}", fullmatch=True)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=24), _id_like, _uscc_like), max_size=40))
def test_column_validators_equal_scalar_helpers_on_arbitrary_text(values: list[str | None]) -> None:
    arr = pa.array(values, type=pa.string())
    rid = _bools(C.resident_id_valid(arr, today=TODAY))
    code = _bools(C.uscc_valid(arr))
    card = _bools(C.luhn_valid(arr))
    for value, r, u, c in zip(values, rid, code, card, strict=True):
        if value is None:
            assert not (r or u or c)
            continue
        # The column validators do not trim or upper-case: the scanner does that before.
        assert r == (C.is_valid_resident_id(value, today=TODAY) and value == value.strip())
        assert u == (C.is_valid_uscc(value) and value == value.upper().strip())
        assert c == C.luhn_ok(value)

"""Detection of personal information on generated data with known labels."""

from __future__ import annotations

import datetime as dt
import random

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest
from stdnum import luhn

from tests.privacy import labeled
from yuanjian.privacy import checksums, detect
from yuanjian.privacy.detect import (
    ENTITY_REGEXES,
    LABELS,
    ColumnFinding,
    DuplicateColumnError,
    Entity,
    cell_labels,
    find_entities,
    match_cells,
    name_hints,
    scan_column,
    scan_table,
)

TODAY = labeled.REFERENCE_DATE
CHECKED = ("cn_resident_id", "cn_uscc", "cn_mobile", "bank_card", "email")


@pytest.fixture(scope="module")
def columns() -> list[labeled.LabeledColumn]:
    return labeled.labeled_columns(seed=20250101, rows=250)


@pytest.fixture(scope="module")
def evaluation(columns: list[labeled.LabeledColumn]) -> labeled.Evaluation:
    return labeled.evaluate(columns, today=TODAY)


def _scan(name: str, values: list | pa.Array, **kw) -> ColumnFinding:
    arr = values if isinstance(values, pa.Array) else pa.array(values)
    return scan_column(name, arr, today=TODAY, **kw)


# ---------------------------------------------------------------- labelled set


def test_labelled_set_covers_every_label(columns: list[labeled.LabeledColumn]) -> None:
    assert {c.label for c in columns} == set(LABELS)
    assert len(columns) >= 80


def test_column_label_accuracy(evaluation: labeled.Evaluation) -> None:
    assert evaluation.accuracy >= 0.99, evaluation.misses


@pytest.mark.parametrize("label", CHECKED)
def test_cell_precision_and_recall(evaluation: labeled.Evaluation, label: str) -> None:
    assert evaluation.true_pos.get(label, 0) > 500
    assert evaluation.precision(label) >= 0.99
    assert evaluation.recall(label) >= 0.99


def test_mixed_columns_label_cells_by_their_own_kind(
    columns: list[labeled.LabeledColumn],
) -> None:
    col = next(c for c in columns if c.name == "证件号码")
    finding = _scan(col.name, col.values)
    assert finding.label == "cn_resident_id"
    cells = cell_labels(col.values, finding, today=TODAY).to_pylist()
    assert cells == list(col.cell_labels)
    assert {"cn_resident_id", "passport", "none"} <= set(cells)


def test_findings_carry_ratio_confidence_and_sample_size(
    columns: list[labeled.LabeledColumn],
) -> None:
    col = next(c for c in columns if c.name == "credit_code")  # 15 % nulls, 5 % corrupted
    finding = _scan(col.name, col.values)
    assert finding.label == "cn_uscc"
    assert finding.hint_used and finding.name_hint == ("cn_uscc",)
    assert finding.sample_size + finding.null_count == len(col.values)
    valid = sum(1 for x in col.cell_labels if x == "cn_uscc")
    assert finding.match_ratio == pytest.approx(valid / finding.sample_size, abs=1e-6)
    assert 0.9 < finding.confidence <= 0.99
    assert finding.label in LABELS


# ---------------------------------------------------------------- check digits


@pytest.mark.parametrize("kind", ["check", "date", "future", "province"])
def test_corrupted_resident_ids_are_not_ids(kind: str) -> None:
    rng = random.Random(kind)
    values = [labeled.corrupt_resident_id(rng, labeled.resident_id(rng), kind) for _ in range(300)]
    finding = _scan("身份证号", values)
    assert finding.label == "none"
    assert finding.match_ratio == 0.0
    assert not any(match_cells(pa.array(values), "cn_resident_id", today=TODAY).to_pylist())
    assert any("cn_resident_id" in note and "check" in note for note in finding.notes)


def test_corrupted_uscc_and_cards_are_not_labelled() -> None:
    rng = random.Random(4)
    codes = [labeled.corrupt_uscc(rng, labeled.uscc_code(rng)) for _ in range(200)]
    cards = [labeled.corrupt_card(rng, labeled.unionpay_card(rng)) for _ in range(200)]
    assert _scan("统一社会信用代码", codes).label == "none"
    assert _scan("银行卡号", cards).label == "none"
    assert _scan("col", codes).label == "none"
    assert _scan("col", cards).label == "none"


def test_a_few_bad_ids_lower_the_ratio_not_the_label() -> None:
    rng = random.Random(8)
    good = [labeled.resident_id(rng) for _ in range(190)]
    bad = [labeled.corrupt_resident_id(rng, labeled.resident_id(rng), "check") for _ in range(10)]
    finding = _scan("col_x", good + bad)
    assert finding.label == "cn_resident_id"
    assert finding.match_ratio == pytest.approx(0.95)
    cells = cell_labels(pa.array(good + bad), finding, today=TODAY).to_pylist()
    assert cells == ["cn_resident_id"] * 190 + ["none"] * 10


# ---------------------------------------------------------------- name hints


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("身份证号", ("cn_resident_id",)),
        ("法定代表人身份证号", ("cn_resident_id",)),
        ("id_card_no", ("cn_resident_id",)),
        ("IdCardNo", ("cn_resident_id",)),
        ("sfzh", ("cn_resident_id",)),
        ("证件号码", ("cn_resident_id", "passport")),
        ("ＩＤ卡号", ("cn_resident_id",)),  # full-width Latin letters
        ("统一社会信用代码", ("cn_uscc",)),
        ("credit_code", ("cn_uscc",)),
        ("银行卡号", ("bank_card",)),
        ("card_no", ("bank_card",)),
        ("手机号码", ("cn_mobile",)),
        ("mobilePhone", ("cn_mobile",)),
        ("联系电话", ("cn_mobile", "cn_landline")),
        ("联系人电话", ("cn_mobile", "cn_landline")),
        ("办公电话", ("cn_landline",)),
        ("tel", ("cn_mobile", "cn_landline")),
        ("邮箱地址", ("email",)),
        ("e_mail", ("email",)),
        ("登录IP地址", ("ip_address",)),
        ("client_ip", ("ip_address",)),
        ("车牌号", ("cn_license_plate",)),
        ("护照号", ("passport",)),
        ("经度", ("geo_coordinate",)),
        ("lat", ("geo_coordinate",)),
        ("出生日期", ("date_of_birth",)),
        ("dob", ("date_of_birth",)),
        ("出生地", ("address",)),
        ("家庭住址", ("address",)),
        ("home_address", ("address",)),
        ("姓名", ("person_name",)),
        ("法定代表人", ("person_name",)),
        ("customerName", ("person_name",)),
        ("company_name", ()),
        ("user_name", ()),
        ("单位名称", ()),
        ("id", ()),
        ("备注", ("free_text_with_pii",)),
        ("remark", ("free_text_with_pii",)),
        ("amount", ()),
    ],
)
def test_name_hints(name: str, expected: tuple[str, ...]) -> None:
    assert name_hints(name) == expected


def test_hint_decides_a_compact_date_column() -> None:
    rng = random.Random(1)
    values = [labeled.birth_date_text(rng, "compact") for _ in range(200)]  # 19870412
    assert _scan("出生日期", values).label == "date_of_birth"
    assert _scan("csrq", values).label == "date_of_birth"
    assert _scan("code", values).label == "none"  # eight digits alone are not a date


def test_hint_lowers_the_threshold_for_names() -> None:
    fake = labeled.make_faker(3)
    values = [fake.name() if i % 5 < 3 else fake.job() for i in range(300)]  # 60 % names
    assert _scan("负责人", values).label == "person_name"
    assert _scan("col_9", values).label == "none"


def test_hint_decides_dates_and_coordinates() -> None:
    rng = random.Random(2)
    events = [dt.date(2024, 1, 1) + dt.timedelta(days=rng.randrange(300)) for _ in range(200)]
    assert _scan("created", pa.array(events)).label == "none"
    finding = _scan("出生日期", pa.array(events))
    assert finding.label == "date_of_birth" and finding.hint_used
    lng = [labeled.coordinate(rng)[0] for _ in range(200)]
    assert _scan("经度", pa.array(lng)).label == "geo_coordinate"
    assert _scan("value", pa.array(lng)).label == "none"


def test_name_that_disagrees_with_values_lowers_confidence() -> None:
    fake, rng = labeled.make_faker(5), random.Random(5)
    mobiles = [labeled.mobile(fake, rng) for _ in range(200)]
    agreed = _scan("手机号码", mobiles)
    disagreed = _scan("邮箱", mobiles)
    neutral = _scan("c1", mobiles)
    assert agreed.label == disagreed.label == neutral.label == "cn_mobile"
    assert disagreed.confidence < neutral.confidence < agreed.confidence
    assert not disagreed.hint_used


# ---------------------------------------------------------------- types and shapes


def test_numeric_columns_hold_phones_and_cards() -> None:
    fake, rng = labeled.make_faker(6), random.Random(6)
    phones = pa.array([int(fake.phone_number()) for _ in range(300)], type=pa.int64())
    cards = pa.array([int(labeled.unionpay_card(rng, 19)) for _ in range(300)], type=pa.uint64())
    ages = pa.array([rng.randint(1, 99) for _ in range(300)], type=pa.int32())
    assert _scan("c", phones).label == "cn_mobile"
    assert _scan("c", cards).label == "bank_card"
    assert _scan("c", ages).label == "none"
    assert all(match_cells(phones, "cn_mobile", today=TODAY).to_pylist())


def test_formatted_and_full_width_values() -> None:
    fake, rng = labeled.make_faker(7), random.Random(7)
    styles = ("dash", "space", "intl")
    mobiles = [labeled.mobile(fake, rng, styles[i % 3]) for i in range(200)]
    assert _scan("c", mobiles).match_ratio == 1.0
    wide = [m.translate({ord(d): ord(d) + 0xFEE0 for d in "0123456789"}) for m in mobiles]
    assert _scan("c", wide).label == "cn_mobile"
    spaced = [f"  {labeled.resident_id(rng)}\t" for _ in range(100)]
    assert _scan("c", spaced).match_ratio == 1.0


def test_dictionary_chunked_and_large_string_columns(columns) -> None:
    col = next(c for c in columns if c.name == "手机号码")
    values = col.values
    variants = [
        values.dictionary_encode(),
        pa.chunked_array([values.slice(0, 100), values.slice(100)]),
        values.cast(pa.large_string()),
        values.cast(pa.string_view()),
    ]
    for variant in variants:
        finding = scan_column("手机号码", variant, today=TODAY)
        assert (finding.label, finding.match_ratio) == ("cn_mobile", 1.0)


def test_nulls_blanks_and_empty_columns() -> None:
    assert _scan("身份证号", pa.array([None] * 10, type=pa.string())).label == "none"
    assert _scan("x", pa.array([], type=pa.string())).sample_size == 0
    blank = _scan("x", ["", "  ", None])
    assert (blank.label, blank.null_count, blank.sample_size) == ("none", 3, 0)
    assert _scan("flag", pa.array([True, False])).label == "none"
    empty = scan_table(pa.table({"姓名": pa.array([], type=pa.string())}))
    assert empty["姓名"].label == "none"
    rng = random.Random(3)
    mostly_null = [labeled.resident_id(rng) if i % 10 == 0 else None for i in range(500)]
    finding = _scan("c", mostly_null)
    assert (finding.label, finding.sample_size, finding.null_count) == ("cn_resident_id", 50, 450)


def test_gbk_encoded_csv_with_chinese_headers() -> None:
    fake, rng = labeled.make_faker(8), random.Random(8)
    lines = ["姓名,身份证号码,联系电话,家庭住址"]
    for _ in range(120):
        lines.append(
            f"{fake.name()},{labeled.resident_id(rng)},{labeled.mobile(fake, rng)},"
            f"{labeled.street_address(fake)}"
        )
    data = ("\n".join(lines) + "\n").encode("gbk")
    table = pacsv.read_csv(
        pa.py_buffer(data),
        read_options=pacsv.ReadOptions(encoding="gbk"),
        convert_options=pacsv.ConvertOptions(
            column_types={"身份证号码": pa.string(), "联系电话": pa.string()}
        ),
    )
    findings = scan_table(table, today=TODAY)
    assert {k: f.label for k, f in findings.items()} == {
        "姓名": "person_name",
        "身份证号码": "cn_resident_id",
        "联系电话": "cn_mobile",
        "家庭住址": "address",
    }
    assert all(f.hint_used for f in findings.values())


def test_scan_table_samples_deterministically_and_keys_by_column() -> None:
    table, expected = labeled.bulk_table(6000, seed=3, pool=300)
    first = scan_table(table, sample_rows=1000, today=TODAY)
    second = scan_table(table, sample_rows=1000, today=TODAY, max_workers=2)
    assert first == second
    assert {k: f.label for k, f in first.items()} == expected
    assert all(f.sample_size + f.null_count == 1000 for f in first.values())
    full = scan_table(table, today=TODAY)
    assert {k: f.label for k, f in full.items()} == expected
    assert all(f.sample_size + f.null_count == 6000 for f in full.values())


def test_scan_table_errors_name_the_problem() -> None:
    table = pa.table([pa.array(["a"]), pa.array(["b"])], names=["手机", "手机"])
    with pytest.raises(DuplicateColumnError) as err:
        scan_table(table)
    assert err.value.column == "手机" and isinstance(err.value, ValueError)
    with pytest.raises(TypeError):
        scan_table({"a": [1]})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sample_rows"):
        scan_table(pa.table({"a": ["x"]}), sample_rows=0)
    with pytest.raises(ValueError, match="not checkable"):
        match_cells(pa.array(["x"]), "free_text_with_pii")


# ---------------------------------------------------------------- free text


def test_free_text_entities_have_exact_spans() -> None:
    texts = labeled.labeled_texts(seed=13, n=300)
    assert sum(len(t.entities) for t in texts) > 500
    for t in texts:
        found = find_entities(t.text, today=TODAY)
        assert [(e.label, e.start, e.end) for e in found] == sorted(
            t.entities, key=lambda x: (x[1], x[2])
        ), t.text
        assert all(t.text[e.start : e.end] == e.text for e in found)


def test_find_entities_validates_and_respects_boundaries() -> None:
    rng = random.Random(1)
    good = labeled.resident_id(rng)
    bad = labeled.corrupt_resident_id(rng, good, "check")
    # 19 digits that contain the ID but are no card number either (fail the Luhn check).
    longer = next(good + d for d in "0123456789" if not checksums.luhn_ok(good + d))
    text = f"身份证号{good}，另一个{bad}，订单号{longer}，手机13812345678，编号813812345678"
    found = find_entities(text, today=TODAY)
    assert [(e.label, e.text) for e in found] == [
        ("cn_resident_id", good),
        ("cn_mobile", "13812345678"),
    ]
    assert find_entities("") == []
    with pytest.raises(TypeError):
        find_entities(None)  # type: ignore[arg-type]


def test_find_entities_cue_words() -> None:
    text = "姓名：欧阳娜娜，住址：河南省郑州市金水区花园路12号，出生日期1990年2月3日。"
    found = [(e.label, e.text) for e in find_entities(text, today=TODAY)]
    assert found == [
        ("person_name", "欧阳娜娜"),
        ("address", "河南省郑州市金水区花园路12号"),
        ("date_of_birth", "1990年2月3日"),
    ]
    assert find_entities("出生日期1990年2月30日", today=TODAY) == []
    assert find_entities("联系人张三丰，电话") == [Entity("person_name", 3, 6, "张三丰")]


def test_free_text_columns(columns) -> None:
    col = next(c for c in columns if c.name == "col_n")  # 60 % of remarks carry entities
    finding = _scan(col.name, col.values)
    assert finding.label == "free_text_with_pii"
    assert 0.5 < finding.match_ratio < 0.7
    fake = labeled.make_faker(2)
    clean = [fake.sentence() for _ in range(200)]
    assert _scan("备注", clean).label == "none"


# ---------------------------------------------------------------- entity regexes


_CARD = "622202123456789012" + luhn.calc_check_digit("622202123456789012")
_SAMPLES = {
    "cn_resident_id": "证件11010519491231002X号",
    "cn_uscc": "代码91110000600037341L。",
    "bank_card": f"卡号{_CARD}，",
    "cn_mobile": "手机 +86 138-1234-5678。",
    "cn_landline": "电话(0371)65432109转",
    "email": "邮箱zhang.san@example.com.cn，",
    "ip_address": "来自192.168.10.254的请求",
    "cn_license_plate": "车辆豫A·D12345进入",
    "passport": "护照E12345678到期",
    "geo_coordinate": "位于113.625300,34.746600处",
}


def test_entity_regexes_cover_the_pattern_labels() -> None:
    assert set(ENTITY_REGEXES) == set(_SAMPLES)
    assert list(ENTITY_REGEXES)[:3] == ["cn_resident_id", "cn_uscc", "bank_card"]


@pytest.mark.parametrize("label", list(_SAMPLES))
def test_entity_regexes_work_in_pyarrow_and_duckdb(label: str) -> None:
    texts = [_SAMPLES[label], "没有个人信息的一句话。", None]
    pattern = ENTITY_REGEXES[label]
    token = f"<{label}>"
    arrow = pc.replace_substring_regex(pa.array(texts), pattern, token).to_pylist()
    with duckdb.connect() as con:
        rows = con.execute(
            "SELECT regexp_replace(t, ?, ?, 'g') FROM unnest(?::VARCHAR[]) AS u(t)",
            [pattern, token, texts],
        ).fetchall()
    assert arrow == [r[0] for r in rows]
    assert token in arrow[0] and arrow[1] == texts[1] and arrow[2] is None
    found = find_entities(_SAMPLES[label], today=TODAY)
    assert [e.label for e in found] == [label]
    redacted = _SAMPLES[label][: found[0].start] + token + _SAMPLES[label][found[0].end :]
    assert arrow[0] == redacted


def test_redacting_in_dict_order_removes_every_entity() -> None:
    texts = labeled.labeled_texts(seed=21, n=200)
    arr = pa.array([t.text for t in texts])
    for pattern in ENTITY_REGEXES.values():
        arr = pc.replace_substring_regex(arr, pattern, "#")
    pattern_labels = set(ENTITY_REGEXES)
    for t, red in zip(texts, arr.to_pylist(), strict=True):
        for label, start, end in t.entities:
            if label in pattern_labels:
                assert t.text[start:end] not in red, (label, t.text)


def test_detect_module_exports() -> None:
    assert set(detect.__all__) >= {"scan_table", "scan_column", "find_entities", "ENTITY_REGEXES"}


def test_sparse_free_text_still_counts() -> None:
    remarks = [
        "客户张三手机13812345678，已回访。" if i % 25 == 0 else "一切正常，无异常情况记录。"
        for i in range(500)
    ]
    finding = _scan("备注", remarks)
    assert (finding.label, finding.match_ratio) == ("free_text_with_pii", 0.04)
    assert finding.confidence < 0.5  # few cells: a weak finding
    assert _scan("备注", remarks[1:25] * 20).label == "none"


def test_addresses_with_and_without_a_hint() -> None:
    rng = random.Random(4)
    streets = [f"花园路{rng.randint(1, 300)}号院{rng.randint(1, 9)}号楼" for _ in range(200)]
    assert _scan("住址", streets).label == "address"
    assert _scan("c", streets).label == "none"
    latin = [f"{rng.randint(1, 9999)} Maple Avenue, Springfield" for _ in range(200)]
    assert _scan("home_address", latin).label == "address"
    assert _scan("c", latin).label == "none"

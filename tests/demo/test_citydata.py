"""Tests for the synthetic city data generator (`yuanjian.demo.citydata`)."""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from stdnum import luhn
from stdnum.cn import ric, uscc

from yuanjian.demo import citydata as cd
from yuanjian.demo import names

SCALE = 1500  # two blocks, the second one short


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, cd.TableInfo]]:
    """All tables at a small scale: Parquet plus GBK CSV with Chinese headers."""
    out = tmp_path_factory.mktemp("city")
    infos = cd.generate(
        out, scale=SCALE, seed=7, formats=("parquet", "csv"), csv_encoding="gbk", csv_headers="zh"
    )
    return out, infos


@pytest.fixture(scope="module")
def db(city: tuple[Path, dict[str, cd.TableInfo]]) -> duckdb.DuckDBPyConnection:
    out, _ = city
    con = duckdb.connect()
    for table in cd.TABLES:
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{out / table}.parquet')")
    return con


def scalar(con: duckdb.DuckDBPyConnection, sql: str) -> object:
    row = con.execute(sql).fetchone()
    assert row is not None
    return row[0]


# --- API surface ---------------------------------------------------------------------------


def test_tables_schemas_and_row_formulas() -> None:
    assert list(cd.TABLES)[:2] == ["enterprise_registration", "tax_filing"]
    assert len(cd.TABLES) == 10 and all(cd.TABLES.values())
    for table in cd.TABLES:
        sch = cd.schema(table)
        assert all(re.fullmatch(r"[a-z][a-z0-9_]*", f.name) for f in sch)
        zh = [f.metadata[b"zh"].decode() for f in sch]
        assert len(set(zh)) == len(zh) and all(re.search(r"[\u4e00-\u9fff]", h) for h in zh)
        assert cd.row_count(table, 1) >= 1
    assert cd.row_count("utility_payment", 1000) == 1000 * 24 * 3
    assert cd.row_count("social_insurance_person", 1000) == 1000 * 8 * 24
    assert cd.row_count("court_record", 1001) == 201  # ceil(1001 / 5)
    scale = cd.scale_for_rows("social_insurance_person", 10_000_000)
    assert scale == 52_084
    assert cd.row_count("social_insurance_person", scale) >= 10_000_000
    assert cd.row_count("social_insurance_person", scale - 1) < 10_000_000
    assert cd.scale_for_rows("utility_payment", 10_000_000) == 138_889


def test_key_spaces_cover_the_maximum_scale() -> None:
    """Unique-key layouts are large enough for MAX_SCALE, and indexes beyond a domain fail."""
    assert cd._person_slots()[0].total >= cd.MAX_SCALE * cd.PERSONS_PER_ENTERPRISE
    blocks = -(-cd.MAX_SCALE // cd.BLOCK)
    assert cd._credit_slots().total >= blocks * cd._CREDIT_ROWS_PER_BLOCK
    assert cd.row_count("court_record", cd.MAX_SCALE) <= cd._COURT_YEARS * 2 * cd._COURT_SEQ
    assert cd.row_count("real_estate", cd.MAX_SCALE) <= cd._CERT_YEARS * 10**7
    assert cd.row_count("housing_fund", cd.MAX_SCALE) <= cd._ACCOUNT_DOMAIN
    perm = cd._Perm(1000, 1, 2)
    out = perm(np.arange(1000))
    assert sorted(out.tolist()) == list(range(1000)) and not np.array_equal(out, np.arange(1000))
    with pytest.raises(ValueError, match="domain"):
        perm(np.array([1000]))


def test_tiny_scale_is_consistent(tmp_path: Path) -> None:
    infos = cd.generate(tmp_path, scale=1, seed=3)
    assert {t: i.rows for t, i in infos.items()} == {t: cd.row_count(t, 1) for t in cd.TABLES}
    con = duckdb.connect()
    est = con.execute(
        f"SELECT establish_date FROM '{tmp_path}/enterprise_registration.parquet'"
    ).fetchone()[0]
    first = con.execute(
        f"SELECT min(decision_date) FROM '{tmp_path}/credit_record.parquet'"
    ).fetchone()[0]
    assert first is None or first > est


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"scale": 0}, "scale"),
        ({"scale": cd.MAX_SCALE + 1}, "scale"),
        ({"scale": 10, "seed": -1}, "seed"),
        ({"scale": 10, "formats": ("xlsx",)}, "formats"),
        ({"scale": 10, "formats": ()}, "formats"),
        ({"scale": 10, "formats": ("csv",), "csv_encoding": "latin-1"}, "csv_encoding"),
        ({"scale": 10, "formats": ("csv",), "csv_headers": "fr"}, "csv_headers"),
        ({"scale": 10, "dirty_ratio": 0.1}, "dirty_ratio"),  # Parquet only: no CSV to spoil
        ({"scale": 10, "formats": ("csv",), "dirty_ratio": 0.9}, "dirty_ratio"),
        ({"scale": 10, "tables": ["no_such_table"]}, "table"),
    ],
)
def test_bad_arguments_name_the_field(tmp_path: Path, kwargs: dict, field: str) -> None:
    with pytest.raises(cd.DemoDataError) as err:
        cd.generate(tmp_path / "out", **kwargs)
    assert err.value.field == field and isinstance(err.value, ValueError)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_iter_batches_rejects_bad_input() -> None:
    with pytest.raises(cd.DemoDataError, match="table"):
        cd.iter_batches("nope", scale=10)
    with pytest.raises(cd.DemoDataError) as err:
        cd.iter_batches("tax_filing", scale=10, batch_rows=0)
    assert err.value.field == "batch_rows"


def test_pools_are_gbk_and_csv_safe() -> None:
    strings: list[str] = [s for s, _ in names.SURNAMES]
    strings += [*names.GIVEN_MALE, *names.GIVEN_FEMALE, *names.TRADE_CHARS, *names.ROAD_STEMS]
    strings += [*names.BUILDING_STEMS, *names.CIVIL_CAUSES, *names.PENALTY_REASONS]
    strings += [*names.ABNORMAL_REASONS, *names.TAX_VIOLATION_REASONS]
    strings += [t for t, _, _ in names.ENTERPRISE_TYPES]
    for area in names.AREAS:
        strings += [area.full_name, area.court, area.market_authority, area.tax_authority]
    for ind in names.INDUSTRIES:
        strings += [ind.name, *ind.words]
    for table in cd.TABLES:
        strings += [f.metadata[b"zh"].decode() for f in cd.schema(table)]
    for s in strings:
        s.encode("gbk")  # raises on a character outside GBK
        assert not set(s) & {",", '"', "\n", "\r"}, s


# --- Check digits --------------------------------------------------------------------------


def test_vectorized_check_digits_match_stdnum() -> None:
    rng = np.random.default_rng(1)
    digits = (48 + rng.integers(0, 10, (2000, 17))).astype(np.uint8)
    ours = cd.ric_check_digits(digits)
    for row, check in zip(digits, ours, strict=True):
        assert chr(check) == ric.calc_check_digit(row.tobytes().decode() + "0")
    alphabet = np.frombuffer(b"0123456789ABCDEFGHJKLMNPQRTUWXY", np.uint8)
    codes = alphabet[rng.integers(0, 31, (2000, 17))]
    for row, check in zip(codes, cd.uscc_check_digits(codes), strict=True):
        assert chr(check) == uscc.calc_check_digit(row.tobytes().decode())
    for row, check in zip(digits[:, :18], cd.luhn_check_digits(digits), strict=True):
        assert chr(check) == luhn.calc_check_digit(row.tobytes().decode())
    with pytest.raises(ValueError, match="alphabet"):
        cd.uscc_check_digits(np.frombuffer(b"I" * 17, np.uint8).reshape(1, 17))


def test_birth_areas_are_valid_for_their_years() -> None:
    """Every birth-area entry is accepted by stdnum in each year the generator may use it."""
    for code, _, first, last, _ in names.BIRTH_AREAS:
        for year in range(max(first or 1960, 1960), min(last or 2003, 2003) + 1):
            body = f"{code}{year}0615123"
            number = body + ric.calc_check_digit(body + "0")
            assert ric.is_valid(number), (code, year)


def test_identifiers_are_valid_and_unique(db: duckdb.DuckDBPyConnection) -> None:
    codes = [r[0] for r in db.execute("SELECT credit_code FROM enterprise_registration").fetchall()]
    assert len(codes) == SCALE == len(set(codes))
    areas = {a.code for a in names.AREAS}
    for code in codes:
        assert uscc.is_valid(code) and code.startswith("91") and code[2:8] in areas, code
    persons = [
        r[0]
        for r in db.execute(
            "SELECT DISTINCT person_id FROM social_insurance_person ORDER BY person_id"
        ).fetchall()
    ]
    assert len(persons) == SCALE * cd.PERSONS_PER_ENTERPRISE
    for number in persons:  # stdnum checks check digit, birth date and birth place
        assert ric.is_valid(number), number
    ages = [2024 - int(p[6:10]) for p in persons]
    assert min(ages) >= 20 and max(ages) <= 64
    cards = [r[0] for r in db.execute("SELECT bank_card_no FROM housing_fund").fetchall()]
    assert all(c.startswith("62") and len(c) == 19 and luhn.is_valid(c) for c in cards)
    phones = [
        r[0] for r in db.execute("SELECT legal_rep_phone FROM enterprise_registration").fetchall()
    ]
    assert all(re.fullmatch(r"1[3-9]\d{9}", p) for p in phones)
    for table, key in [
        ("housing_fund", "account_no"),
        ("housing_fund", "person_id"),
        ("real_estate", "certificate_no"),
        ("court_record", "case_no"),
        ("credit_record", "decision_no"),
        ("tax_filing", "credit_code || tax_period"),
        ("utility_payment", "account_no || period"),
    ]:
        total, distinct = db.execute(
            f"SELECT count(*), count(DISTINCT {key}) FROM {table}"
        ).fetchone()
        assert total == distinct, (table, key)


# --- Consistency across tables -------------------------------------------------------------


def test_referential_integrity(db: duckdb.DuckDBPyConnection) -> None:
    for table, column in [
        ("tax_filing", "credit_code"),
        ("tax_credit", "credit_code"),
        ("social_insurance_unit", "credit_code"),
        ("social_insurance_person", "employer_credit_code"),
        ("housing_fund", "employer_credit_code"),
        ("utility_payment", "credit_code"),
    ]:
        orphans = scalar(
            db,
            f"SELECT count(*) FROM {table} t ANTI JOIN enterprise_registration e "
            f"ON t.{column} = e.credit_code",
        )
        assert orphans == 0, table
    db.execute(
        "CREATE OR REPLACE TEMP VIEW ids AS SELECT credit_code AS id, enterprise_name AS name "
        "FROM enterprise_registration UNION ALL "
        "SELECT DISTINCT person_id, person_name FROM social_insurance_person"
    )
    for table, id_col, name_col in [
        ("real_estate", "owner_id", "owner_name"),
        ("court_record", "party_id", "party_name"),
        ("credit_record", "subject_id", "subject_name"),
        ("housing_fund", "person_id", "person_name"),
        ("enterprise_registration", "legal_rep_id", "legal_rep_name"),
    ]:
        orphans = scalar(
            db,
            f"SELECT count(*) FROM {table} t ANTI JOIN ids ON t.{id_col} = ids.id "
            f"AND t.{name_col} = ids.name",
        )
        assert orphans == 0, table
    # One name per person, and dishonest-debtor listings point at open enforcement cases.
    assert (
        scalar(
            db,
            "SELECT max(n) FROM (SELECT count(DISTINCT person_name) n "
            "FROM social_insurance_person GROUP BY person_id)",
        )
        == 1
    )
    bad = scalar(
        db,
        "SELECT count(*) FROM credit_record c WHERE record_type = '失信被执行人' AND NOT EXISTS "
        "(SELECT 1 FROM court_record k WHERE k.case_no = c.decision_no AND k.party_id = "
        "c.subject_id AND k.case_type = '执行' AND k.status IN ('执行中', '终结本次执行'))",
    )
    assert bad == 0
    assert scalar(db, "SELECT count(*) FROM credit_record WHERE record_type = '失信被执行人'") > 0


def test_unit_social_insurance_equals_person_rows(db: duckdb.DuckDBPyConnection) -> None:
    mismatches = scalar(
        db,
        """
        WITH p AS (
            SELECT employer_credit_code AS credit_code, period,
                   count(*) FILTER (WHERE pay_status <> '中断') AS insured,
                   round(sum(paid_amount), 2) AS paid
            FROM social_insurance_person GROUP BY ALL)
        SELECT count(*) FROM social_insurance_unit u LEFT JOIN p USING (credit_code, period)
        WHERE u.insured_count <> coalesce(p.insured, 0)
           OR abs(u.paid_amount - coalesce(p.paid, 0)) > 0.01
        """,
    )
    assert mismatches == 0
    assert scalar(db, "SELECT count(*) FROM social_insurance_unit WHERE arrears_flag") > 0


def test_dates_and_lifecycle_are_consistent(db: duckdb.DuckDBPyConnection) -> None:
    # Legal representatives are adults at founding; the registry predates the window.
    young = scalar(
        db,
        "SELECT count(*) FROM enterprise_registration WHERE establish_date < "
        "strptime(substr(legal_rep_id, 7, 8), '%Y%m%d')::DATE + INTERVAL 18 YEAR",
    )
    assert young == 0
    assert scalar(db, "SELECT max(establish_date) FROM enterprise_registration") < dt.date(
        2023, 1, 1
    )
    statuses = dict(
        db.execute("SELECT status, count(*) FROM enterprise_registration GROUP BY 1").fetchall()
    )
    assert set(statuses) == {"存续", "吊销", "注销"} and statuses["存续"] > 0.75 * SCALE
    # Deregistered firms: no revenue, insured staff or utility use after their deregistration.
    leaks = scalar(
        db,
        """
        SELECT count(*) FROM enterprise_registration e
        JOIN tax_filing t USING (credit_code)
        JOIN social_insurance_unit s ON s.credit_code = e.credit_code AND s.period = t.tax_period
        JOIN utility_payment u ON u.credit_code = e.credit_code AND u.period = t.tax_period
        WHERE e.status = '注销' AND t.tax_period > strftime(e.status_date, '%Y-%m')
          AND (t.sales_revenue > 0 OR s.insured_count > 0 OR u.consumption > 0
               OR t.filing_status <> '已注销')
        """,
    )
    assert leaks == 0
    # Nothing happens after the extract dates.
    assert scalar(db, "SELECT max(filing_date) FROM tax_filing") <= dt.date(2026, 1, 31)
    for table, column in [
        ("utility_payment", "paid_date"),
        ("court_record", "close_date"),
        ("credit_record", "removal_date"),
        ("real_estate", "registration_date"),
        ("enterprise_registration", "approval_date"),
    ]:
        assert scalar(db, f"SELECT max({column}) FROM {table}") <= dt.date(2025, 12, 31), table
    # Every case closes after it is filed; credit removals follow decisions.
    assert scalar(db, "SELECT count(*) FROM court_record WHERE close_date < filing_date") == 0
    assert scalar(db, "SELECT count(*) FROM credit_record WHERE removal_date < decision_date") == 0


def test_distributions_carry_signal(db: duckdb.DuckDBPyConnection) -> None:
    """Operating firms differ from stopped ones; arrears go with low tax-credit grades."""
    active, stopped = db.execute(
        """
        WITH last6 AS (
            SELECT credit_code, sum(sales_revenue) rev FROM tax_filing
            WHERE tax_period >= '2025-07' GROUP BY 1)
        SELECT avg(rev) FILTER (WHERE e.status = '存续'),
               max(rev) FILTER (WHERE e.status <> '存续' AND e.status_date < '2025-07-01')
        FROM enterprise_registration e JOIN last6 USING (credit_code)
        """
    ).fetchone()
    assert active > 0 and stopped == 0
    dormant = scalar(
        db,
        "SELECT count(*) FROM enterprise_registration e WHERE status = '存续' AND NOT EXISTS "
        "(SELECT 1 FROM tax_filing t WHERE t.credit_code = e.credit_code "
        "AND t.tax_period >= '2025-07' AND t.sales_revenue > 0)",
    )
    assert dormant > 0.02 * SCALE  # zombie firms that still look alive in the registry
    shares = dict(
        db.execute(
            """
            SELECT c.grade, avg((f.arrears > 0)::INT) FROM tax_credit c
            JOIN (SELECT credit_code, max(arrears_amount) arrears FROM tax_filing
                  WHERE tax_period < '2025' GROUP BY 1) f USING (credit_code)
            WHERE c.eval_year = 2024 AND c.grade IS NOT NULL GROUP BY 1
            """
        ).fetchall()
    )
    assert set(shares) == {"A", "B", "M", "C", "D"}
    assert shares["D"] > shares["C"] > shares["A"]
    capital = [
        r[0]
        for r in db.execute(
            "SELECT registered_capital FROM enterprise_registration "
            "WHERE registered_capital IS NOT NULL"
        ).fetchall()
    ]
    logs = np.log(capital)
    assert 1.0 < logs.std() < 2.5 and np.mean(capital) > 2 * np.median(capital)  # log-normal tail
    # Gas use peaks in winter and electricity in summer.
    by_month = dict(
        db.execute(
            "SELECT kind || substr(period, 6), sum(consumption) FROM utility_payment "
            "WHERE period LIKE '2024%' GROUP BY 1"
        ).fetchall()
    )
    assert by_month["gas01"] > 2 * by_month["gas07"]
    assert by_month["electricity07"] > by_month["electricity04"]


# --- Determinism and streaming -------------------------------------------------------------


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    kw = {
        "scale": 300,
        "formats": ("parquet", "csv"),
        "csv_encoding": "gbk",
        "dirty_ratio": 0.02,
        "tables": ["enterprise_registration", "social_insurance_person", "credit_record"],
    }
    first = cd.generate(tmp_path / "a", seed=11, **kw)
    second = cd.generate(tmp_path / "b", seed=11, **kw)
    third = cd.generate(tmp_path / "c", seed=12, **kw)
    for table in first:
        assert first[table].sha256 == second[table].sha256
        assert first[table].sha256["parquet"] != third[table].sha256["parquet"]
    assert (tmp_path / "a/manifest.json").read_bytes() == (
        tmp_path / "b/manifest.json"
    ).read_bytes()
    a = pq.read_table(tmp_path / "a/enterprise_registration.parquet").column("credit_code")
    c = pq.read_table(tmp_path / "c/enterprise_registration.parquet").column("credit_code")
    assert not set(a.to_pylist()) & set(c.to_pylist())


def test_batches_do_not_depend_on_batch_size_and_scale_is_a_prefix() -> None:
    for table in ("tax_filing", "real_estate", "credit_record"):
        small = pa.Table.from_batches(list(cd.iter_batches(table, scale=1100, batch_rows=777)))
        big = pa.Table.from_batches(list(cd.iter_batches(table, scale=1100, batch_rows=10**6)))
        assert small.equals(big) and small.num_rows == cd.row_count(table, 1100)
        sizes = [b.num_rows for b in cd.iter_batches(table, scale=1100, batch_rows=777)]
        assert set(sizes[:-1]) <= {777} and sizes[-1] <= 777
        # Complete blocks are identical whatever the scale.
        full = pa.Table.from_batches(list(cd.iter_batches(table, scale=2048, batch_rows=10**6)))
        rows = cd.row_count(table, 1024)
        assert full.slice(0, rows).equals(small.slice(0, rows))
        assert full.schema.equals(cd.schema(table))


def test_progress_is_reported_and_files_are_atomic(tmp_path: Path) -> None:
    calls: list[tuple[str, int, int]] = []
    cd.generate(tmp_path, scale=2100, tables=["tax_filing"], progress=lambda *a: calls.append(a))
    total = cd.row_count("tax_filing", 2100)
    block = cd.row_count("tax_filing", cd.BLOCK)
    # start, after each of the three blocks but the last, completion once the file is in place
    assert calls == [("tax_filing", d, total) for d in (0, block, 2 * block, total)]

    def fail(table: str, done: int, total: int) -> None:
        if done > 0:
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        cd.generate(
            tmp_path / "x",
            scale=2100,
            formats=("parquet", "csv"),
            dirty_ratio=0.1,
            tables=["tax_filing"],
            progress=fail,
        )
    assert list((tmp_path / "x").iterdir()) == []  # no partial file, no temporary left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "manifest.json",
        "tax_filing.parquet",
        "x",
    ]


# --- CSV -----------------------------------------------------------------------------------


def test_gbk_csv_with_chinese_headers_round_trips(
    city: tuple[Path, dict[str, cd.TableInfo]],
) -> None:
    out, infos = city
    for table in cd.TABLES:
        raw = (out / f"{table}.csv").read_bytes()
        with pytest.raises(UnicodeDecodeError):
            raw.decode("utf-8")  # really GBK, not UTF-8
        text = raw.decode("gbk")
        sch = cd.schema(table)
        header = text.split("\n", 1)[0].split(",")
        assert header == [f.metadata[b"zh"].decode() for f in sch]
        parsed = pacsv.read_csv(
            out / f"{table}.csv",
            read_options=pacsv.ReadOptions(encoding="gbk"),
            convert_options=pacsv.ConvertOptions(
                column_types={f.metadata[b"zh"].decode(): f.type for f in sch},
                strings_can_be_null=True,
            ),
        )
        parquet = pq.read_table(out / f"{table}.parquet")
        assert parsed.num_rows == parquet.num_rows
        for i, name in enumerate(parquet.column_names):
            assert parsed.column(i).equals(parquet.column(i)), (table, name)
        assert infos[table].rows == parquet.num_rows
    sample = (out / "enterprise_registration.csv").read_bytes().decode("gbk")
    assert "统一社会信用代码,企业名称,企业类型,法定代表人,法定代表人身份证号" in sample
    assert re.search(r"河南省郑州市[\u4e00-\u9fff]+区", sample)


def test_utf8_csv_with_english_headers(tmp_path: Path) -> None:
    info = cd.generate(
        tmp_path, scale=50, formats=("csv",), csv_encoding="utf-8-sig", tables=["housing_fund"]
    )["housing_fund"]
    raw = info.paths["csv"].read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and set(info.paths) == {"csv"}
    rows = list(csv.reader(raw.decode("utf-8-sig").splitlines()))
    assert rows[0] == list(info.columns) and len(rows) == info.rows + 1 == 301


def _field_ok(row: dict[str, str], column: str, kind: str) -> bool:
    """Whether a CSV field would pass the check that the dirty kind is meant to break."""
    value = row[column]
    if kind == "bad_check_digit":
        holder = row.get("owner_type") or row.get("party_type") or row.get("subject_type")
        person = column == "person_id" or holder == "个人"
        return ric.is_valid(value) if person else uscc.is_valid(value)
    if kind == "malformed_date":
        for fmt in ("%Y-%m-%d", "%Y-%m"):
            try:
                dt.datetime.strptime(value, fmt)
                return True
            except ValueError:
                pass
        return False
    if kind == "non_numeric":
        try:
            float(value)
            return True
        except ValueError:
            return value == ""  # null in a nullable amount
    return value != ""  # empty_required


def test_dirty_rows_match_the_sidecar(tmp_path: Path) -> None:
    """Every listed row is spoiled the listed way; every other row equals the clean output."""
    kw = {"scale": 300, "seed": 5, "formats": ("csv",), "csv_encoding": "gbk"}
    clean = cd.generate(tmp_path / "clean", **kw)
    infos = cd.generate(tmp_path / "dirty", dirty_ratio=0.05, **kw)
    for table, info in infos.items():
        assert "dirty" not in clean[table].paths and not clean[table].dirty
        side = json.loads(info.paths["dirty"].read_text(encoding="utf-8"))
        assert side["table"] == table and side["file"] == f"{table}.csv"
        listed = {e["row"]: e for e in side["rows"]}
        assert len(listed) == len(side["rows"]) == sum(side["counts"].values())
        assert side["counts"] == info.dirty and set(info.dirty) == set(cd.DIRTY_KINDS)
        if info.rows >= 1000:
            assert 0.03 * info.rows < len(listed) < 0.07 * info.rows
        good = clean[table].paths["csv"].read_bytes().decode("gbk").split("\n")
        lines = info.paths["csv"].read_bytes().decode("gbk").split("\n")
        assert len(lines) == len(good) == info.rows + 2 and lines[0] == good[0] and lines[-1] == ""
        header = lines[0].split(",")
        spec = cd._SPECS[table]
        column_of = {
            "bad_check_digit": spec.check_column,
            "malformed_date": spec.date_column,
            "non_numeric": spec.amount_column,
            "empty_required": spec.required_column,
        }
        for number in range(1, info.rows + 1):
            line, expected = lines[number], good[number]
            entry = listed.get(number)
            if entry is None:
                assert line == expected, (table, number)
                continue
            assert line != expected, (table, number)
            fields, before = line.split(","), expected.split(",")
            if entry["reason"] == "ragged_row":
                assert entry["column"] is None and len(fields) != len(header)
                assert entry["value"] in ("missing_delimiter", "extra_field")
                continue
            column = column_of[entry["reason"]]
            assert entry["column"] == column and len(fields) == len(header)
            at = header.index(column)
            assert fields[:at] + fields[at + 1 :] == before[:at] + before[at + 1 :]
            row = dict(zip(header, fields, strict=True))
            assert entry["value"] == row[column]
            assert _field_ok(dict(zip(header, before, strict=True)), column, entry["reason"])
            assert not _field_ok(row, column, entry["reason"]), (table, number, row[column])
    kinds = Counter(k for info in infos.values() for k, v in info.dirty.items() for _ in range(v))
    assert all(kinds[k] > 0 for k in cd.DIRTY_KINDS)


# --- Memory --------------------------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import resource, sys, tempfile
    from pathlib import Path
    from yuanjian.demo import citydata as cd

    def peak_mb():
        # On Linux ru_maxrss survives execve and so includes the forked parent (pytest, several
        # hundred MB); VmHWM belongs to this program's own address space.
        try:
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) // 1024
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024

    rows = int(sys.argv[1])
    scale = cd.scale_for_rows("social_insurance_person", rows)
    with tempfile.TemporaryDirectory() as out:
        info = cd.generate(Path(out), scale=scale, formats=("parquet", "csv"), csv_encoding="gbk",
                           dirty_ratio=0.001, tables=["social_insurance_person"])
        print(info["social_insurance_person"].rows, peak_mb())
    """
)


def _peak_mb(rows: int) -> tuple[int, int]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(rows)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    written, peak = map(int, done.stdout.split())
    return written, peak


@pytest.mark.slow
def test_memory_is_bounded_at_two_million_rows() -> None:
    """Peak RSS does not grow with the row count.

    The 2,000,064-row table would take about 230 MB as one Arrow table (18-byte IDs, names,
    credit codes, periods, four doubles, a status) and far more as Python objects. The
    generator holds one block (8,192 persons x 24 months of working arrays, ~30 MB), one
    65,536-row write batch with its concatenation copy and a 32,768-row CSV text chunk in
    UTF-8 and GBK; with the interpreter, numpy and pyarrow imported (~120 MB)
    that stays well under 400 MB, and a run with a quarter of the rows peaks within 40 MB.
    """
    written, peak = _peak_mb(2_000_000)
    assert written >= 2_000_000
    _, peak_small = _peak_mb(500_000)
    assert peak < 400, peak
    assert peak - peak_small < 40, (peak_small, peak)

"""The DuckDB engine: lockdown even without the static checker, limits, paging, atomic builds."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from yuanjian.demo import citydata
from yuanjian.sandbox.definition import BuildDefinition, load_definition
from yuanjian.sandbox.duck import (
    LOCKDOWN,
    BuildCancelled,
    BuildOutputError,
    BuildProgress,
    DefinitionHashMismatch,
    Limits,
    SandboxError,
    SandboxLimitExceeded,
    SandboxQueryError,
    SandboxTimeout,
    clean_stale_partials,
    open_locked,
    preview_definition,
    read_page,
    run_locked,
    run_to_parquet,
)

CITY_TABLES = ("enterprise_registration", "utility_payment", "tax_filing", "social_insurance_unit")

#: A realistic operating-status feature build: CTEs, joins, CASE banding, GROUP BY/HAVING,
#: window functions, typed parameters (one of them an injection attempt that must stay a value).
FEATURE_SQL = """
WITH util AS (
  SELECT credit_code,
         COUNT(*) AS bills,
         SUM(amount) AS amount_12m,
         SUM(CASE WHEN overdue_days > $overdue_days THEN 1 ELSE 0 END) AS overdue_bills,
         MAX(overdue_days) AS max_overdue,
         COUNT(DISTINCT CASE WHEN amount > 0 THEN period END) AS active_months
  FROM utility_payment
  WHERE period >= $since
  GROUP BY credit_code
  HAVING COUNT(*) >= 3
),
tax AS (
  SELECT credit_code,
         SUM(sales_revenue) AS revenue_12m,
         SUM(CASE WHEN filing_status IN ('逾期申报', '未申报') THEN 1 ELSE 0 END) AS late_filings
  FROM tax_filing
  WHERE tax_period >= $since
  GROUP BY credit_code
),
si AS (
  SELECT credit_code,
         AVG(insured_count) AS avg_insured,
         MAX(CASE WHEN arrears_flag THEN 1 ELSE 0 END) AS si_arrears
  FROM social_insurance_unit
  WHERE period >= $since
  GROUP BY credit_code
),
joined AS (
  SELECT e.credit_code, e.area_code, e.industry_section, e.status, e.establish_date,
         COALESCE(u.active_months, 0) AS active_months,
         COALESCE(u.overdue_bills, 0) AS overdue_bills,
         COALESCE(u.max_overdue, 0) AS max_overdue,
         COALESCE(u.amount_12m, 0) AS utility_amount,
         COALESCE(t.revenue_12m, 0) AS revenue_12m,
         COALESCE(t.late_filings, 0) AS late_filings,
         COALESCE(s.avg_insured, 0) AS avg_insured,
         COALESCE(s.si_arrears, 0) AS si_arrears
  FROM enterprise_registration AS e
  LEFT JOIN util AS u ON e.credit_code = u.credit_code
  LEFT JOIN tax AS t ON e.credit_code = t.credit_code
  LEFT JOIN si AS s ON e.credit_code = s.credit_code
)
SELECT credit_code, area_code, industry_section, active_months, overdue_bills, max_overdue,
       utility_amount, revenue_12m, late_filings, avg_insured,
       date_diff('day', establish_date, $as_of) AS age_days,
       CASE WHEN status <> '存续' THEN 'closed'
            WHEN active_months = 0 AND revenue_12m = 0 THEN 'dormant'
            WHEN active_months < 6 OR overdue_bills >= 3 OR late_filings >= 2 THEN 'weak'
            ELSE 'active' END AS operating_band,
       RANK() OVER (PARTITION BY area_code ORDER BY revenue_12m DESC, credit_code) AS area_rank,
       COUNT(*) OVER (PARTITION BY industry_section) AS industry_size,
       CASE WHEN si_arrears = 1 OR late_filings > 0 THEN 1 ELSE 0 END AS has_arrears
FROM joined
WHERE industry_section <> $skip_section
"""

FEATURE_PARAMS: dict[str, dict[str, Any]] = {
    "since": {"type": "str", "value": "2025-01"},
    "overdue_days": {"type": "int", "value": 30},
    "as_of": {"type": "date", "value": "2025-12-31"},
    "skip_section": {"type": "str", "value": "Z' OR '1'='1"},
}


def feature_definition(model: dict[str, Any] | None = None) -> BuildDefinition:
    """The feature build as a definition, optionally with a model step."""
    data: dict[str, Any] = {
        "sql": FEATURE_SQL,
        "parameters": FEATURE_PARAMS,
        "output_key": "credit_code",
    }
    if model is not None:
        data["model"] = model
    return load_definition(data)


def make_city(directory: Path, scale: int = 60) -> dict[str, list[Path]]:
    """Small consistent synthetic city tables (same credit codes everywhere) as Parquet."""
    citydata.generate(directory, scale=scale, tables=list(CITY_TABLES))
    return {t: [directory / f"{t}.parquet"] for t in CITY_TABLES}


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    return make_city(tmp_path_factory.mktemp("city"))


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """One allowed table and a few files the sandbox must not reach."""
    allowed = tmp_path / "sample" / "t.parquet"
    allowed.parent.mkdir()
    pq.write_table(pa.table({"k": ["a", "b", "c"], "v": [1, 2, 3]}), allowed)
    secret_dir = tmp_path / "secret"
    secret_dir.mkdir()
    other = secret_dir / "other.parquet"
    pq.write_table(pa.table({"k": ["secret"], "v": [42]}), other)
    csv = secret_dir / "other.csv"
    csv.write_text("k,v\nsecret,42\n")
    return {"allowed": allowed, "other": other, "csv": csv, "dir": secret_dir}


def tables_of(files: dict[str, Path]) -> dict[str, list[Path]]:
    return {"t": [files["allowed"]]}


def worker_children() -> list[int]:
    """Live sandbox worker processes started by this process."""
    pids: list[int] = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    out = []
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"yuanjian.sandbox.duck" in cmd:
            out.append(pid)
    return out


# ------------------------------------------------------------------------ the lockdown itself


@pytest.fixture
def locked(files: dict[str, Path], tmp_path: Path) -> Any:
    con = open_locked(tables_of(files), work_dir=tmp_path / "work", memory_mb=256)
    yield con
    con.close()


def test_locked_connection_reads_its_view(locked: Any) -> None:
    assert locked.sql("SELECT k, v FROM t ORDER BY k").fetchall() == [
        ("a", 1),
        ("b", 2),
        ("c", 3),
    ]
    settings = dict(
        locked.sql(
            "SELECT name, value FROM duckdb_settings() WHERE name IN "
            "('enable_external_access', 'lock_configuration', 'autoload_known_extensions', "
            "'autoinstall_known_extensions', 'allow_community_extensions', "
            "'python_enable_replacements', 'threads')"
        ).fetchall()
    )
    assert settings == {
        "enable_external_access": "false",
        "lock_configuration": "true",
        "autoload_known_extensions": "false",
        "autoinstall_known_extensions": "false",
        "allow_community_extensions": "false",
        "python_enable_replacements": "false",
        "threads": "1",
    }
    assert any("lock_configuration=true" in step for step in LOCKDOWN)


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM read_csv('{csv}')",
        "SELECT * FROM read_parquet('{other}')",
        "SELECT * FROM '{other}'",
        "SELECT * FROM read_parquet('{dir}/*.parquet')",
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT * FROM read_blob('/etc/hostname')",
        "SELECT * FROM glob('/*')",
        "SELECT * FROM parquet_metadata('{other}')",
        "COPY (SELECT * FROM t) TO '{dir}/leak.csv'",
        "COPY t FROM '{csv}'",
        "EXPORT DATABASE '{dir}/export'",
        "ATTACH '{dir}/x.duckdb' AS x",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "RESET enable_external_access",
        "SET allowed_directories = ['/']",
        "SET threads = 8",
        "SET memory_limit = '64GB'",
        "PRAGMA threads = 8",
        "RESET lock_configuration",
        "SELECT * FROM files",
    ],
)
def test_locked_duckdb_refuses_even_when_sql_is_passed_directly(
    locked: Any, files: dict[str, Path], statement: str
) -> None:
    with pytest.raises(duckdb.Error):
        locked.execute(statement.format(**files)).fetchall()
    assert sorted(p.name for p in files["dir"].iterdir()) == ["other.csv", "other.parquet"]
    # The lock held: settings are unchanged after the attempt.
    assert locked.execute("SELECT current_setting('enable_external_access')").fetchone() == (False,)
    assert locked.execute("SELECT current_setting('threads')").fetchone() == (1,)


def test_open_locked_checks_tables(tmp_path: Path) -> None:
    with pytest.raises(SandboxError) as info:
        open_locked({"t; DROP": [tmp_path / "x.parquet"]}, work_dir=tmp_path)
    assert info.value.field == "tables"
    with pytest.raises(SandboxError) as info:
        open_locked({"t": [tmp_path / "missing.parquet"]}, work_dir=tmp_path)
    assert info.value.field == "tables.t"


# --------------------------------------------------------------------------- run_locked (dev)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('{csv}')",
        "SELECT * FROM '{other}'",
        "SELECT * FROM read_text('/etc/passwd')",
    ],
)
def test_worker_refuses_file_access_without_the_static_check(
    files: dict[str, Path], sql: str
) -> None:
    with pytest.raises(SandboxQueryError) as info:
        run_locked(sql.format(**files), tables=tables_of(files))
    assert info.value.field == "sql"
    assert "Permission Error" in str(info.value)


@pytest.mark.parametrize(
    ("sql", "text"),
    [
        ("COPY (SELECT 1) TO '/tmp/x.csv'", "not COPY"),
        ("SET threads = 4", "not SET"),
        ("ATTACH ':memory:' AS m", "not ATTACH"),
        ("SELECT 1; SELECT 2", "found 2"),
        ("CREATE TABLE x AS SELECT 1", "not CREATE"),
    ],
)
def test_worker_runs_only_a_single_select(files: dict[str, Path], sql: str, text: str) -> None:
    with pytest.raises(SandboxQueryError, match=text):
        run_locked(sql, tables=tables_of(files))


def test_parameters_are_bound_not_interpolated(files: dict[str, Path]) -> None:
    evil = "a' OR '1'='1"
    r = run_locked(
        "SELECT k, $s AS echoed FROM t WHERE k = $s OR v = $n",
        tables=tables_of(files),
        params={"s": evil, "n": 3},
    )
    assert r.table.to_pylist() == [{"k": "c", "echoed": evil}]
    r = run_locked(
        "SELECT $s AS s, $d AS d, $f AS f, $b AS b",
        tables=tables_of(files),
        params={"s": "'); COPY t TO '/tmp/x'; --", "d": dt.date(2025, 1, 2), "f": 1.5, "b": True},
    )
    row = r.table.to_pylist()[0]
    assert row["s"] == "'); COPY t TO '/tmp/x'; --"
    assert str(row["d"]) == "2025-01-02" and row["f"] == 1.5 and row["b"] is True


def test_result_is_capped_by_rows_and_pages_from_the_stored_result(
    files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "results" / "run.parquet"
    r = run_locked(
        "SELECT i, i * 2 AS j FROM range(25000) t(i) ORDER BY i",
        tables=tables_of(files),
        limits=Limits(max_result_rows=2500),
        result_path=out,
    )
    assert r.truncated is True
    assert r.table.num_rows == 2500
    assert r.total_rows == 25000
    assert r.result_path == out and out.exists()
    assert r.page(100, 5)["i"].to_pylist() == [100, 101, 102, 103, 104]
    page = read_page(out, 1998, 4)
    assert page["i"].to_pylist() == [1998, 1999, 2000, 2001]
    assert read_page(out, 2499, 10).num_rows == 1
    assert read_page(out, 5000, 10).num_rows == 0
    with pytest.raises(SandboxError) as info:
        read_page(out, -1, 10)
    assert info.value.field == "offset"
    assert [p.name for p in out.parent.iterdir()] == ["run.parquet"]  # no temp file left


def test_result_is_capped_by_bytes(files: dict[str, Path]) -> None:
    r = run_locked(
        "SELECT i, repeat('x', 100) AS pad FROM range(50000) t(i)",
        tables=tables_of(files),
        limits=Limits(max_result_rows=1_000_000, max_result_bytes=200_000),
    )
    assert r.truncated is True
    assert 0 < r.table.num_rows < 50000
    assert r.table.nbytes <= 200_000 * 1.1
    assert r.total_rows == 50000


def test_small_result_is_complete(files: dict[str, Path]) -> None:
    r = run_locked("SELECT k, v FROM t ORDER BY v DESC", tables=tables_of(files))
    assert r.truncated is False and r.total_rows == 3
    assert r.table["k"].to_pylist() == ["c", "b", "a"]
    assert r.columns == {"k": "string", "v": "int64"}


def test_timeout_kills_the_worker(files: dict[str, Path]) -> None:
    with pytest.raises(SandboxTimeout) as info:
        run_locked(
            "SELECT count(*) AS n FROM range(100000000) a(i), range(100000) b(j) "
            "WHERE (i * j) % 7 = 3",
            tables=tables_of(files),
            limits=Limits(timeout_s=1.5),
        )
    assert info.value.field == "limits.timeout_s"
    assert worker_children() == []


def test_timeout_while_counting_still_returns_the_kept_rows(files: dict[str, Path]) -> None:
    r = run_locked(
        "SELECT a.i FROM range(1000000) a(i), range(100000) b(j)",
        tables=tables_of(files),
        limits=Limits(timeout_s=2, max_result_rows=10),
    )
    assert r.table.num_rows == 10
    assert r.truncated is True and r.total_rows is None


def test_duckdb_memory_limit(files: dict[str, Path]) -> None:
    with pytest.raises(SandboxLimitExceeded) as info:
        run_locked(
            "SELECT list(i::VARCHAR || 'xxxxxxxxxxxxxxxxxxxx') AS l FROM range(50000000) t(i)",
            tables=tables_of(files),
            limits=Limits(memory_mb=64, timeout_s=60),
        )
    assert info.value.field == "limits.memory_mb"
    assert "Out of Memory" in str(info.value)


def test_rss_watchdog_kills_a_worker_over_its_limit(files: dict[str, Path]) -> None:
    with pytest.raises(SandboxLimitExceeded) as info:
        run_locked(
            "SELECT count(DISTINCT i::VARCHAR || 'xxxxxxxxxxxxxxxx') AS n "
            "FROM range(300000000) t(i)",
            tables=tables_of(files),
            limits=Limits(memory_mb=8000, rss_limit_mb=200, timeout_s=120),
        )
    assert info.value.field == "limits.rss_limit_mb"
    assert worker_children() == []


def test_limits_are_validated() -> None:
    with pytest.raises(SandboxError) as info:
        Limits(threads=0)
    assert info.value.field == "limits.threads"
    with pytest.raises(SandboxError) as info:
        Limits(timeout_s=-1)
    assert info.value.field == "limits.timeout_s"


def test_query_errors_name_the_problem(files: dict[str, Path]) -> None:
    with pytest.raises(SandboxQueryError, match="nope"):
        run_locked("SELECT nope FROM t", tables=tables_of(files))
    with pytest.raises(SandboxError) as info:
        run_locked("SELECT 1 AS x", tables=tables_of(files), params={"x": object()})
    assert info.value.field == "params.x"


# ------------------------------------------------------------------- definitions and builds


def test_preview_definition_with_model_and_hash(city: dict[str, list[Path]]) -> None:
    d = feature_definition(
        {
            "estimator": "kmeans_bands",
            "features": ["active_months", "revenue_12m"],
            "output": "size_band",
            "bands": 3,
            "labels": ["small", "medium", "large"],
            "order_by": "revenue_12m",
        }
    )
    r = preview_definition(d, tables=city, limits=Limits(max_result_rows=20, timeout_s=60))
    assert r.definition_hash == d.content_hash()
    assert r.table.num_rows == 20 and r.truncated is True and r.total_rows == 60
    assert set(r.table["size_band"].to_pylist()) <= {"small", "medium", "large"}
    assert r.model is not None and r.model["estimator"] == "kmeans_bands"
    assert [b["label"] for b in r.model["bands"]] == ["small", "medium", "large"]


def reference(city: dict[str, list[Path]], d: BuildDefinition) -> pa.Table:
    """The same SQL in an ordinary (unlocked) DuckDB, sorted by key: the expected output."""
    con = duckdb.connect()
    for name, paths in city.items():
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{paths[0]}')")
    return con.sql(d.sql, params=d.bound_parameters()).order(d.output_key).to_arrow_table()


def test_build_publishes_a_content_addressed_sorted_file(
    city: dict[str, list[Path]], tmp_path: Path
) -> None:
    d = feature_definition()
    seen: list[BuildProgress] = []
    out = tmp_path / "objects"
    result = run_to_parquet(d, tables=city, out_dir=out, progress=seen.append, name="op-band")
    assert result.path == out / f"{result.sha256}.parquet"
    assert [p.name for p in out.iterdir()] == [result.path.name]
    assert result.engine == "duckdb" and result.definition_hash == d.content_hash()
    assert seen and seen[-1].phase == "publish" and seen[-1].rows == result.rows
    table = pq.read_table(result.path)
    expected = reference(city, d)
    assert table.num_rows == result.rows == expected.num_rows == 60
    assert table.column_names == expected.column_names
    assert table["credit_code"].to_pylist() == sorted(table["credit_code"].to_pylist())
    for name in expected.column_names:
        if pa.types.is_floating(expected.schema.field(name).type):
            assert table[name].to_pylist() == pytest.approx(expected[name].to_pylist())
        else:
            assert table[name].to_pylist() == expected[name].to_pylist(), name
    # Integers are written as BIGINT on both engines (DuckDB's INTEGER CASE result included).
    assert expected.schema.field("has_arrears").type == pa.int32()
    assert table.schema.field("has_arrears").type == pa.int64()
    assert set(table["operating_band"].to_pylist()) <= {"closed", "dormant", "weak", "active"}


def test_build_is_bound_to_the_approved_hash(city: dict[str, list[Path]], tmp_path: Path) -> None:
    approved = feature_definition()
    dev = preview_definition(approved, tables=city, limits=Limits(max_result_rows=5))
    out = tmp_path / "objects"
    changed = load_definition(
        approved.to_json()
        | {"parameters": FEATURE_PARAMS | {"overdue_days": {"type": "int", "value": 0}}}
    )
    with pytest.raises(DefinitionHashMismatch) as info:
        run_to_parquet(changed, tables=city, out_dir=out, expected_hash=dev.definition_hash)
    assert info.value.field == "content_hash"
    assert not out.exists()  # refused before anything ran
    result = run_to_parquet(approved, tables=city, out_dir=out, expected_hash=dev.definition_hash)
    assert result.definition_hash == dev.definition_hash


def test_build_with_model_step(city: dict[str, list[Path]], tmp_path: Path) -> None:
    d = feature_definition(
        {
            "estimator": "logistic_regression",
            "features": ["active_months", "overdue_bills", "revenue_12m", "avg_insured"],
            "target": "has_arrears",
            "output": "arrears_score",
        }
    )
    result = run_to_parquet(d, tables=city, out_dir=tmp_path)
    table = pq.read_table(result.path)
    assert table.column_names[-1] == "arrears_score"
    scores = table["arrears_score"].to_pylist()
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert result.model is not None and "coefficients" in result.model
    assert [p.name for p in tmp_path.iterdir()] == [result.path.name]


def test_duplicate_output_key_fails_without_output(tmp_path: Path, files: dict[str, Path]) -> None:
    d = load_definition({"sql": "SELECT v % 2 AS k, v FROM t", "output_key": "k"})
    out = tmp_path / "objects"
    with pytest.raises(BuildOutputError) as info:
        run_to_parquet(d, tables=tables_of(files), out_dir=out)
    assert info.value.field == "output_key"
    assert list(out.iterdir()) == []


def test_failed_build_leaves_nothing(tmp_path: Path, files: dict[str, Path]) -> None:
    d = load_definition({"sql": "SELECT k, CAST(k AS INTEGER) AS n FROM t", "output_key": "k"})
    out = tmp_path / "objects"
    with pytest.raises(SandboxQueryError, match="Conversion Error"):
        run_to_parquet(d, tables=tables_of(files), out_dir=out)
    assert list(out.iterdir()) == []


#: Minutes of work in little memory: a cross product aggregated to 2,000 rows.
SLOW_SQL = (
    "SELECT a.i AS k, count(*) AS n FROM range(2000) a(i), range(5000000) b(j) "
    "WHERE (a.i * b.j) % 7 = 3 GROUP BY a.i"
)
#: Sorts for a few seconds, then streams 4 million rows into the partial file for a few more.
WRITE_SQL = "SELECT i AS k, md5(i::VARCHAR) AS h, repeat('x', 100) AS pad FROM range(4000000) t(i)"


def test_cancel_kills_the_build_and_publishes_nothing(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    d = load_definition({"sql": SLOW_SQL, "output_key": "k"})
    cancel = threading.Event()
    out = tmp_path / "objects"
    timer = threading.Timer(1.5, cancel.set)
    timer.start()
    try:
        with pytest.raises(BuildCancelled):
            run_to_parquet(d, tables=tables_of(files), out_dir=out, cancel=cancel)
    finally:
        timer.cancel()
    assert list(out.iterdir()) == []
    assert worker_children() == []


def test_build_timeout_publishes_nothing(tmp_path: Path, files: dict[str, Path]) -> None:
    d = load_definition({"sql": SLOW_SQL, "output_key": "k"})
    out = tmp_path / "objects"
    with pytest.raises(SandboxTimeout):
        run_to_parquet(d, tables=tables_of(files), out_dir=out, limits=Limits(timeout_s=1.5))
    assert list(out.iterdir()) == []


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


@pytest.mark.slow
def test_killed_build_process_leaves_no_final_file(tmp_path: Path, files: dict[str, Path]) -> None:
    out = tmp_path / "objects"
    script = textwrap.dedent(
        f"""
        from yuanjian.sandbox.definition import load_definition
        from yuanjian.sandbox.duck import Limits, run_to_parquet
        d = load_definition({{"sql": {WRITE_SQL!r}, "output_key": "k"}})
        run_to_parquet(d, tables={{"t": [{str(files["allowed"])!r}]}}, out_dir={str(out)!r},
                       limits=Limits(memory_mb=512, threads=1, timeout_s=600))
        """
    )
    build = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 120
        partials: list[Path] = []
        while time.monotonic() < deadline and build.poll() is None:
            if out.exists():
                partials = [p for p in out.glob(".*partial*") if p.stat().st_size > 0]
            if partials:
                break
            time.sleep(0.1)
        assert partials, "the build never started writing"
        workers = [
            int(p)
            for task in Path(f"/proc/{build.pid}/task").iterdir()
            for p in (task / "children").read_text().split()
        ]
        assert workers
        build.send_signal(signal.SIGKILL)  # the build process dies mid-write
        build.wait()
        # Its worker dies with it (PR_SET_PDEATHSIG) and writes nothing more.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_state(w) not in (None, "Z") for w in workers):
            time.sleep(0.1)
        assert all(_state(w) in (None, "Z") for w in workers)
    finally:
        if build.poll() is None:
            build.kill()
            build.wait()
    visible = [p.name for p in out.iterdir() if not p.name.startswith(".")]
    assert visible == []  # no final (content-addressed) file, no visible partial
    hidden = [p for p in out.iterdir() if p.name.startswith(".")]
    assert hidden and all(".partial-" in p.name for p in hidden)
    removed = clean_stale_partials(out)
    assert sorted(removed) == sorted(hidden)
    assert list(out.iterdir()) == []


def test_clean_stale_partials_keeps_live_ones(tmp_path: Path) -> None:
    live = tmp_path / f".b.partial-{os.getpid()}-abcd.parquet"
    live.write_bytes(b"x")
    dead_pid = 2**22 + 12345  # above the default pid_max on most systems
    dead = tmp_path / f".b.partial-{dead_pid}-abcd.parquet"
    dead.write_bytes(b"x")
    final = tmp_path / ("0" * 64 + ".parquet")
    final.write_bytes(b"x")
    assert clean_stale_partials(tmp_path) == [dead]
    assert live.exists() and final.exists()
    assert clean_stale_partials(tmp_path, max_age_s=-1) == [live]


def test_worker_environment_does_not_leak_secrets(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("YUANJIAN_SECRET_KEY", "do-not-leak")
    from yuanjian.sandbox import duck

    env = duck._worker_env(Path("/tmp/w"), 2)
    assert "YUANJIAN_SECRET_KEY" not in env
    assert env["OMP_NUM_THREADS"] == "2"
    assert json.dumps(env).find("do-not-leak") == -1

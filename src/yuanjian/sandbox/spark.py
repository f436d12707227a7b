"""The Apache Spark engine: the same build definition, run distributed, published atomically.

:func:`run_spark_to_parquet` takes the DuckDB-dialect definition, transpiles it to Spark SQL
with SQLGlot (:func:`yuanjian.sandbox.lineage.transpile`, which also renames each logical table
to a per-run temporary view ``yj_<random>_<table>`` over its Parquet files), and binds the
parameters with Spark's named parameter markers (``$name`` becomes ``:name``; values go through
``spark.sql(sql, args=...)``, never into the text). A construct SQLGlot cannot express in Spark
raises :class:`SparkBuildError` naming it, before anything runs.

Output types are normalised as in the DuckDB runner (integers as BIGINT, floats as DOUBLE), so
both engines write the same schema. The result is sorted by the output key and coalesced to one
partition, so Spark writes a single Parquet part file into a hidden partial directory
``<out_dir>/.<name>.partial-...``; that file is fsynced and moved to the content-addressed
``<out_dir>/<sha256>.parquet`` exactly as the DuckDB runner does
(:func:`yuanjian.sandbox.duck.publish_parquet`). A single file keeps one
content address per output and the same layout for both engines; the price is that the final
write runs in one task (the output of a feature build is one row per subject, far smaller than
its inputs). A failed, cancelled or timed-out build removes its partial directory; partials of
dead processes are removed by :func:`~yuanjian.sandbox.duck.clean_stale_partials`.

Model step: the SQL output is staged as Parquet, the estimator is fitted on the driver with the
same :func:`yuanjian.sandbox.model.fit_model` as DuckDB uses (scikit-learn is single-node, so the
feature and target columns are collected as Arrow), and applied on the executors with
``mapInArrow``, so both engines produce the same scores.

Paths: the input files and ``out_dir`` must be POSIX paths that the driver and the executors
both see (always true in local mode; a shared mount of the data directory on a cluster), because
the single part file is moved into place with ``os.replace``.

Sessions: :func:`spark_session` builds a local or cluster session from ``master`` (the
``spark.master`` setting), offline (no package downloads), UI off, UTC, Parquet timestamps as
microseconds. Callers may pass their own session; one session is reused across builds.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from yuanjian.sandbox.duck import (
    BuildCancelled,
    BuildOutputError,
    BuildProgress,
    BuildResult,
    SandboxError,
    SandboxTimeout,
    _check_tables,
    _partial_path,
    _remove_partials,
    check_definition_hash,
    clean_stale_partials,
    publish_parquet,
)
from yuanjian.sandbox.lineage import TranspileError, transpile

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from yuanjian.sandbox.definition import BuildDefinition

__all__ = ["SparkBuildError", "java_available", "run_spark_to_parquet", "spark_session"]

_LOCK = threading.Lock()


class SparkBuildError(SandboxError):
    """The build cannot run on Spark (transpilation, analysis or execution failed)."""

    code = "spark_build_failed"


def java_available() -> bool:
    """True when a Java runtime for Spark is on PATH or under JAVA_HOME."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return True
    return shutil.which("java") is not None


def spark_session(
    master: str = "local[2]",
    *,
    driver_memory: str = "1g",
    shuffle_partitions: int = 4,
    conf: Mapping[str, str] | None = None,
) -> SparkSession:
    """Get or create the Spark session for builds (offline, UI off, UTC).

    Settings that only apply at JVM start (``master``, ``driver_memory``) are ignored when a
    session already exists in this process.
    """
    if not java_available():
        raise SparkBuildError("spark.master", "no Java runtime found (install Java 17+)")
    # Executors' Python workers must run this interpreter (same venv, same scikit-learn).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master(master)
        .appName("yuanjian-build")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", driver_memory)
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.sql.sources.partitionOverwriteMode", "static")
        .config("spark.jars.packages", "")
    )
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    with _LOCK:
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line[:1000]
    return type(e).__name__


class _Monitor(threading.Thread):
    """Reports Spark job progress; cancels the job group on cancel or timeout."""

    def __init__(
        self,
        spark: SparkSession,
        group: str,
        progress: Callable[[BuildProgress], None] | None,
        cancel: threading.Event | None,
        deadline: float | None,
    ) -> None:
        super().__init__(daemon=True)
        self.spark = spark
        self.group = group
        self.progress = progress
        self.cancel = cancel
        self.deadline = deadline
        self.phase = "query"
        self.stop = threading.Event()
        self.reason: str | None = None

    def run(self) -> None:
        sc = self.spark.sparkContext
        tracker = sc.statusTracker()
        last: tuple[str, float | None] | None = None
        while not self.stop.wait(0.25):
            if self.cancel is not None and self.cancel.is_set():
                self.reason = "cancel"
            elif self.deadline is not None and time.monotonic() > self.deadline:
                self.reason = "timeout"
            if self.reason:
                # Keep cancelling: jobs submitted after the first call (later stages of the
                # plan, or the first job when the cancel came during planning) must stop too.
                with contextlib.suppress(Exception):
                    sc.cancelJobGroup(self.group)
                continue
            if self.progress is None:
                continue
            done = total = 0
            with contextlib.suppress(Exception):
                for job_id in tracker.getJobIdsForGroup(self.group):
                    job = tracker.getJobInfo(job_id)
                    for stage_id in job.stageIds if job else []:
                        stage = tracker.getStageInfo(stage_id)
                        if stage:
                            done += stage.numCompletedTasks
                            total += stage.numTasks
            fraction = done / total if total else None
            if (self.phase, fraction) != last:
                last = (self.phase, fraction)
                self.progress(BuildProgress(self.phase, fraction, 0))


def _register(
    spark: SparkSession, files: Mapping[str, list[str]], physical: Mapping[str, str]
) -> None:
    for name, paths in files.items():
        spark.read.parquet(*paths).createOrReplaceTempView(physical[name])


def _duckdb_only(sql: str) -> None:
    """Refuse DuckDB constructs that SQLGlot passes through but Spark cannot run."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import SqlglotError

    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except SqlglotError as e:
        raise SparkBuildError("sql", f"cannot parse: {_first_line(e)}") from None
    for node in tree.walk():
        method = str(node.args.get("method") or "").upper() if isinstance(node, exp.Join) else ""
        if method in ("ASOF", "POSITIONAL"):
            raise SparkBuildError("sql", f"{method} JOIN has no Spark equivalent")
        if isinstance(node, exp.Columns):
            raise SparkBuildError("sql", "COLUMNS(...) star expressions have no Spark equivalent")


def _spark_sql(sql: str, physical: Mapping[str, str]) -> str:
    _duckdb_only(sql)
    try:
        return transpile(sql, read="duckdb", write="spark", tables=physical)
    except TranspileError as e:
        raise SparkBuildError("sql", f"cannot run on Spark: {e}") from None


def _key_column(df: DataFrame, key: str) -> str:
    names = df.columns
    lower = [n.lower() for n in names]
    for i, low in enumerate(lower):
        if low in lower[:i]:
            raise BuildOutputError("sql", f"duplicate output column {names[i]!r}")
    if key.lower() not in lower:
        raise BuildOutputError("output_key", f"{key!r} is not an output column of the SQL")
    return names[lower.index(key.lower())]


def _widened(df: DataFrame) -> DataFrame:
    """Integers as BIGINT and floats as DOUBLE, as the DuckDB runner writes them."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import (
        ByteType,
        DoubleType,
        FloatType,
        IntegerType,
        LongType,
        ShortType,
    )

    cols = []
    changed = False
    for f in df.schema.fields:
        col = F.col(f"`{f.name.replace('`', '``')}`")
        if isinstance(f.dataType, (ByteType, ShortType, IntegerType)):
            col, changed = col.cast(LongType()), True
        elif isinstance(f.dataType, FloatType):
            col, changed = col.cast(DoubleType()), True
        cols.append(col.alias(f.name))
    return df.select(*cols) if changed else df


def _single_part(directory: Path) -> Path:
    parts = sorted(directory.glob("part-*.parquet"))
    if len(parts) != 1:
        raise SparkBuildError("engine", f"expected one Parquet part file, Spark wrote {len(parts)}")
    return parts[0]


def _check_key_file(path: Path, key: str) -> None:
    from yuanjian.sandbox.model import ModelError, check_key

    try:
        check_key(pq.read_table(path, columns=[key]), key)
    except ModelError as e:
        raise BuildOutputError("output_key", e.reason) from None


def run_spark_to_parquet(
    definition: BuildDefinition,
    *,
    tables: Mapping[str, Sequence[str | os.PathLike[str]]],
    out_dir: str | os.PathLike[str],
    master: str = "local[2]",
    spark: SparkSession | None = None,
    name: str = "build",
    expected_hash: str | None = None,
    checked_sql: str | None = None,
    progress: Callable[[BuildProgress], None] | None = None,
    cancel: threading.Event | None = None,
    timeout_s: float | None = None,
) -> BuildResult:
    """Run a production build on Spark and publish ``<out_dir>/<sha256>.parquet`` atomically."""
    digest = check_definition_hash(definition, expected_hash)
    files = _check_tables(tables)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clean_stale_partials(out)
    started = time.monotonic()
    token = secrets.token_hex(6)
    physical = {table: f"yj_{token}_{table.lower()}" for table in files}
    # Transpile first: a construct Spark cannot run is refused before a session starts.
    sql = _spark_sql(checked_sql or definition.sql, physical)
    session = spark or spark_session(master)
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException

    partial = _partial_path(out, name)
    work = partial.with_name(partial.name.removesuffix(".parquet") + ".spark")
    group = f"yj-build-{token}"
    deadline = started + timeout_s if timeout_s else None
    monitor = _Monitor(session, group, progress, cancel, deadline)
    meta = None
    try:
        _register(session, files, physical)
        session.sparkContext.setJobGroup(group, f"yuanjian build {name}", interruptOnCancel=True)
        monitor.start()
        try:
            df = _widened(session.sql(sql, args=definition.bound_parameters()))
            key = _key_column(df, definition.output_key)
            step = definition.model
            if step is None:
                df.orderBy(key).coalesce(1).write.option("compression", "zstd").parquet(
                    str(work / "out")
                )
            else:
                meta = _with_model(session, df, key, definition, digest, work, monitor)
        except (PySparkException, Py4JError) as e:
            if monitor.reason == "cancel":
                raise BuildCancelled("cancel", "the build was cancelled") from None
            if monitor.reason == "timeout":
                raise SandboxTimeout(
                    "timeout_s", f"the build exceeded {timeout_s:g} s and was cancelled"
                ) from None
            raise SparkBuildError("sql", _first_line(e)) from None
        if monitor.reason == "cancel":
            raise BuildCancelled("cancel", "the build was cancelled")
        part = _single_part(work / "out")
        _check_key_file(part, key)
        os.replace(part, partial)
        path, sha = publish_parquet(partial, out)
    finally:
        monitor.stop.set()
        if monitor.is_alive():
            monitor.join()
        with contextlib.suppress(Exception):
            session.sparkContext.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]
        for view in physical.values():
            with contextlib.suppress(Exception):
                session.catalog.dropTempView(view)
        _remove_partials(partial)
    schema = pq.read_schema(path)
    rows = pq.ParquetFile(path).metadata.num_rows
    if progress is not None:
        progress(BuildProgress("publish", 1.0, rows))
    return BuildResult(
        path=path,
        sha256=sha,
        rows=rows,
        columns={f.name: str(f.type) for f in schema},
        engine="spark",
        definition_hash=digest,
        elapsed_s=time.monotonic() - started,
        model=meta,
        details={"master": session.sparkContext.master, "spark_sql": sql},
    )


def _with_model(
    spark: SparkSession,
    df: DataFrame,
    key: str,
    definition: BuildDefinition,
    digest: str,
    work: Path,
    monitor: _Monitor,
) -> dict[str, Any]:
    """Stage the SQL output, fit on the driver, score on the executors; return model metadata."""
    from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

    from yuanjian.sandbox.model import ModelError, fit_model, seed_from_hash

    step = definition.model
    assert step is not None
    staged_dir = str(work / "staged")
    df.write.parquet(staged_dir)
    staged = spark.read.parquet(staged_dir)
    lower = {c.lower(): c for c in staged.columns}
    if step.output.lower() in lower:
        raise ModelError("model.output", f"{step.output!r} is already an output column")
    wanted = [key, *[lower.get(c.lower(), c) for c in step.input_columns()]]
    missing = [c for c in wanted if c.lower() not in lower]
    if missing:
        field = "model.target" if step.target and missing[0] == step.target else "model.features"
        raise ModelError(field, f"{missing[0]!r} is not an output column of the SQL")
    monitor.phase = "model"
    training = staged.select(*wanted).toArrow()
    fitted = fit_model(training, step, output_key=key, seed=seed_from_hash(digest))
    del training
    out_type = {"string": StringType(), "int64": LongType()}.get(
        str(fitted.output_type), DoubleType()
    )
    schema = StructType([*staged.schema.fields, StructField(step.output, out_type, True)])

    def score(batches: Any) -> Any:
        for batch in batches:
            column = fitted.apply(batch)
            yield pa.RecordBatch.from_arrays(
                [*batch.columns, column], names=[*batch.schema.names, step.output]
            )

    monitor.phase = "write"
    scored = staged.mapInArrow(score, schema)
    scored.orderBy(key).coalesce(1).write.option("compression", "zstd").parquet(str(work / "out"))
    return fitted.metadata

"""Component serving API under load: key lookups against a bare FastAPI endpoint, side by side.

    python benchmarks/serving.py [--quick] [--plain-uvicorn] [--workers N] [--duration S]

What runs (issue 8):

- Uvicorn with the production command line of ``docs/operations.md`` (``uvicorn --factory
  yuanjian.web.asgi:make_app --host 127.0.0.1 --workers N --proxy-headers
  --forwarded-allow-ips 127.0.0.1``; N = the number of cores unless ``--workers``; Uvicorn's
  defaults otherwise, access log included) on loopback, with PostgreSQL (127.0.0.1:5432, a
  throwaway database created here and dropped at the end) as the metadata database.
- The same command line serving a bare FastAPI app defined here (``bare_app``: one
  ``GET /bare/{key}`` route returning a constant JSON body). Both servers run at once, each idle
  while the other is loaded, and are loaded in alternating rounds (3 by default) so that other
  load on the machine falls on both alike; throughput is over all rounds, percentiles are the
  median of the rounds'.
- Load from a separate process: ``wrk`` (Debian package) with ``benchmarks/serving.lua``, which
  picks a random subject key per request from a key file, sends the bearer token, and counts the
  requests it wrote. If wrk is not installed the script says so and uses an asyncio ``httpx2``
  client in a subprocess instead (slower; on a small machine it competes for CPU).
- Single-key lookups ``GET /serve/v1/components/{code}/subjects/{key}?purpose=…`` at
  concurrency 32 (30 s per server, 9 s with --quick, after a warm-up); then batch lookups of
  1,000 random keys (``POST …/lookup``) from one connection.
- Afterwards the ``component.call`` audit entries in the database are counted and compared with
  the calls written (responses the load generator counted, plus those in flight when it
  stopped: the server still answers, and so audits, them).

Both servers start through ``python -m yuanjian.web.server`` (uvicorn's command line with the
two fixes ``yuanjian serve`` applies): with ``--workers N`` Uvicorn 0.54 binds its socket with
``proto`` 0, asyncio then never sets TCP_NODELAY on accepted connections, and every keep-alive
response waits ~40 ms for the client's delayed ACK (Kludex/uvicorn#3149); and the workers run
``BalancedEventLoop``, without which wrk's 32 connections, opened at once, land mostly on one
worker (either server's throughput then depends on how they happened to fall). ``--plain-uvicorn``
starts both with plain uvicorn to show that; the script measures one sequential keep-alive
request on each server (``keepalive_sequential_ms``) and warns when it is slow.

On PostgreSQL Yuanjian's workers hand their calls to the host's audit writer process
(``yuanjian.products.writer``), which a worker starts; it is a descendant of the server
process, so its CPU counts in ``server_cpu_ms_per_call``.

Set-up, honestly: organizations, people, the two small registry resources (60 enterprises),
the component spec, its review, production build and publication, the product spec, its
review, licence and use agreement and the client credential all go through the real services,
as ``tests/products/conftest.py`` does. The 1,000,000-subject store (100,000 with --quick) is
not pushed through ingestion and a build: a Parquet file of generated, valid unified social
credit codes (random, in random order) with a ``score_band`` is written here and turned into
the published version's serving store with ``yuanjian.products.store.build_store`` (what the
publication uses), and the version's ``metadata['store']`` is pointed at it. The licence's
quotas (``calls_per_day``, ``subjects_per_day``, ``rate_per_second``, ``batch_records``) are
raised by updating the Licence row directly so that they never refuse a benchmark call; every
call is still metered and recorded.

Figures (JSON lines, DESIGN.md §5): ``lookup_rps`` (baseline: the bare endpoint; target ratio
≥ 0.5; with CPU milliseconds per call of the server processes and of the database's
backends), ``lookup_p50_ms``, ``lookup_p99_ms`` (target < 25 ms), ``batch1000_p50_ms``
(target < 50 ms), ``audited_calls_ratio`` (target 1.0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LUA = HERE / "serving.lua"
PG_ADMIN_URL = os.environ.get(
    "YUANJIAN_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
COMPONENT = "enterprise_operating_score"
PURPOSE = "credit_lending"
PASSWORD = "Bench-pass-2026"
CONCURRENCY = 32
BATCH_KEYS = 1000
BARE_BODY = {
    "component": COMPONENT,
    "version": 1,
    "data_date": "2026-01-01",
    "licence_id": 1,
    "purpose": PURPOSE,
    "subject_hash": "0123456789abcdef0123456789abcdef",
    "records": [{"score_band": "A"}],
}


def emit(
    figure: str,
    value: float,
    unit: str,
    baseline: str | None = None,
    baseline_value: float | None = None,
    **extra: object,
) -> None:
    """Print one figure as a JSON line."""
    ratio = round(value / baseline_value, 3) if baseline_value else None
    print(
        json.dumps(
            {
                "figure": figure,
                "value": round(value, 3),
                "unit": unit,
                "baseline": baseline,
                "baseline_value": round(baseline_value, 3) if baseline_value else None,
                "ratio": ratio,
                **extra,
            },
            ensure_ascii=False,
        ),
        flush=True,
    )


def note(text: str) -> None:
    """Progress on stderr (stdout carries only the figures)."""
    print(f"[serving] {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the bare baseline


def bare_app() -> Any:
    """The baseline: a bare FastAPI app with one route returning a constant JSON body."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/bare/{key}")
    async def bare(key: str) -> dict[str, Any]:
        return BARE_BODY

    return app


# ---------------------------------------------------------------- PostgreSQL


def _pg_url(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def create_database(name: str) -> str:
    """A new, empty PostgreSQL database; its URL."""
    from sqlalchemy import create_engine, text

    eng = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        conn.execute(text(f'create database "{name}"'))
    eng.dispose()
    return _pg_url(name)


def drop_database(name: str) -> None:
    """Drop the benchmark's database (with force: no session may linger)."""
    from sqlalchemy import create_engine, text

    eng = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        conn.execute(text(f'drop database if exists "{name}" with (force)'))
    eng.dispose()


def pg_durability(url: str) -> dict[str, str]:
    """The server settings that make a commit durable."""
    from sqlalchemy import create_engine, text

    eng = create_engine(url)
    with eng.connect() as conn:
        out = {
            k: conn.execute(text(f"show {k}")).scalar_one() for k in ("fsync", "synchronous_commit")
        }
    eng.dispose()
    return out


# ---------------------------------------------------------------- set-up through the services


def _uscc(i: int) -> str:
    from stdnum.cn import uscc

    body = f"91410100MA{i:07d}"
    return body + uscc.calc_check_digit(body)


def _registry_csv() -> tuple[str, str]:
    ent = "credit_code,name,capital,area_code\n" + "".join(
        f"{_uscc(i)},公司{i},{100 + i},4101{i % 10:02d}\n" for i in range(60)
    )
    tax = "credit_code,period,vat,arrears\n" + "".join(
        f"{_uscc(i % 60)},2025-{1 + i % 12:02d},{i * 3},{i % 2}\n" for i in range(240)
    )
    return ent, tax


COMPONENT_DOC: dict[str, Any] = {
    "name": "企业经营状况评分",
    "code": COMPONENT,
    "type": "feature",
    "scenarios": [PURPOSE],
    "function_design": "根据纳税与欠税情况计算企业经营状况评分，分为五档。",
    "subject_type": "enterprise",
    "subject_key": "enterprises.credit_code",
    "resources": [
        {
            "code": "enterprises",
            "fields": [
                {"name": "credit_code", "purpose": "主体标识，用于关联"},
                {"name": "capital", "purpose": "注册资本规模"},
            ],
        },
        {
            "code": "tax",
            "fields": [
                {"name": "credit_code", "purpose": "关联键", "output": False},
                {"name": "vat", "purpose": "纳税额"},
                {"name": "arrears", "purpose": "欠税标记"},
            ],
        },
    ],
    "outputs": [
        {
            "name": "credit_code",
            "type": "string",
            "description": "统一社会信用代码",
            "sources": ["enterprises.credit_code"],
        },
        {
            "name": "score_band",
            "type": "string",
            "description": "经营状况评分档",
            "sources": ["tax.vat", "tax.arrears", "enterprises.capital"],
            "transform": "band",
        },
    ],
    "update_frequency": "monthly",
    "delivery_modes": ["api"],
    "area": "郑州市",
    "time_range": {"start": "2024-01-01", "end": "2025-12-31"},
    "consumers": ["银行"],
}

DEFINITION = {
    "sql": (
        "WITH t AS (SELECT credit_code, SUM(vat) AS vat_total, SUM(arrears) AS arrears_n "
        "FROM tax GROUP BY credit_code) "
        "SELECT e.credit_code AS credit_code, CASE WHEN t.vat_total > $hi AND t.arrears_n < 3 "
        "THEN 'A' WHEN t.vat_total > 100 THEN 'B' ELSE 'C' END AS score_band "
        "FROM enterprises e JOIN t ON e.credit_code = t.credit_code"
    ),
    "parameters": {"hi": {"type": "int", "value": 300}},
    "output_key": "credit_code",
}

PRODUCT_DOC: dict[str, Any] = {
    "name": "小微企业信用贷",
    "code": "sme_credit_loan",
    "components": [{"code": COMPONENT, "version": 1, "fields": ["score_band"]}],
    "scenario": PURPOSE,
    "purpose": PURPOSE,
    "end_users": "郑州市小微企业",
    "risk_controls": ["仅用于授信审批"],
    "period": {"start": "2026-01-01", "end": "2027-12-31"},
    "expected_calls_per_day": 500,
    "quotas": {"subjects_per_day": 40, "batch_records": 50, "rate_per_second": 1000},
    "delivery_modes": ["api"],
}


class People:
    """Organizations and users made through the identity service (as the console operator)."""

    def __init__(self, inst: Any) -> None:
        self.inst = inst
        self.orgs: dict[str, int] = {}

    def org(self, kind: Any, name: str | None = None) -> int:
        from yuanjian.identity import service as identity
        from yuanjian.identity.permissions import OrgKind
        from yuanjian.instance import random_credit_code

        key = name or f"{kind.value}-org"
        if key not in self.orgs:
            with self.inst.sessions() as s:
                if kind == OrgKind.OPERATOR:
                    self.orgs[key] = identity.operator_org(s).id
                else:
                    rated = kind in (OrgKind.COMPONENT_DEVELOPER, OrgKind.PRODUCT_DEVELOPER)
                    org = identity.create_organization(
                        session=s,
                        actor=self.inst.cli_actor(s),
                        name=key,
                        kind=kind.value,
                        credit_code=random_credit_code(),
                        rating="A" if rated else None,
                    )
                    self.orgs[key] = org.id
        return self.orgs[key]

    def actor(self, role: Any, *, org_name: str | None = None, username: str | None = None):
        from yuanjian.identity import service as identity
        from yuanjian.identity.permissions import ROLES_BY_ORG_KIND

        kind = next(k for k, roles in ROLES_BY_ORG_KIND.items() if role in roles)
        org_id = self.org(kind, org_name)
        uname = username or role.value.replace("_", "-")
        with self.inst.sessions() as s:
            identity.create_user(
                session=s,
                actor=self.inst.cli_actor(s),
                org_id=org_id,
                username=uname,
                display_name=f"基准{role.value}",
                roles=[role.value],
                password=PASSWORD,
            )
        with self.inst.sessions() as s:
            return identity.actor_for(identity.find_user(s, uname))


def _approve(inst: Any, rev_id: int, admin: Any, senior: Any, third: Any) -> None:
    """Assign a senior and a third-party reviewer to a submitted revision; both approve."""
    from yuanjian.reviews import service as reviews
    from yuanjian.reviews.models import SpecRevision

    def version() -> int:
        with inst.sessions() as s:
            return s.get(SpecRevision, rev_id).version

    for username, is_senior in (("reviewer-senior", True), ("third-a", False)):
        with inst.sessions() as s:
            reviews.assign(
                session=s,
                actor=admin,
                revision_id=rev_id,
                reviewer_username=username,
                senior=is_senior,
                expected_version=version(),
            )
    for actor in (senior, third):
        with inst.sessions() as s:
            r = s.get(SpecRevision, rev_id)
            if r.state == "approved":
                break
            if r.state == "submitted":
                reviews.act(
                    session=s,
                    actor=actor,
                    revision_id=rev_id,
                    action="start_review",
                    expected_version=r.version,
                )
            reviews.answer_checklist(
                session=s,
                actor=actor,
                revision_id=rev_id,
                answers={i: "yes" for i in r.risk["unanswered"]},
            )
            reviews.act(
                session=s,
                actor=actor,
                revision_id=rev_id,
                action="approve",
                expected_version=s.get(SpecRevision, rev_id).version,
            )
    with inst.sessions() as s:
        assert s.get(SpecRevision, rev_id).state == "approved"


def set_up_product(inst: Any, root: Path) -> dict[str, Any]:
    """Registry → component spec → build → publication → product licence → credential."""
    from sqlalchemy import select

    from yuanjian.components import builds, samples
    from yuanjian.identity.permissions import OrgKind, Role
    from yuanjian.products import credentials
    from yuanjian.products.models import Licence
    from yuanjian.resources import service as resources
    from yuanjian.resources.readers import Source
    from yuanjian.reviews import service as reviews

    data_dir = inst.settings.data_dir
    people = People(inst)
    steward = people.actor(Role.OPERATOR_DATA_STEWARD)
    for code, body in zip(("enterprises", "tax"), _registry_csv(), strict=True):
        path = root / f"{code}.csv"
        path.write_text(body, encoding="utf-8")
        with inst.sessions() as s:
            res = resources.register_resource(
                session=s,
                actor=steward,
                code=code,
                title=code,
                kind="public",
                source="市局",
                cadence="monthly",
                subject_type="enterprise",
                subject_key="credit_code",
            )
            resources.ingest(
                session=s,
                actor=steward,
                data_dir=data_dir,
                resource_id=res.id,
                source=Source(path=path),
            )
    dev = people.actor(Role.COMPONENT_DEVELOPER, org_name="元件开发公司")
    admin = people.actor(Role.OPERATOR_ADMIN)
    senior = people.actor(Role.OPERATOR_REVIEWER, username="reviewer-senior")
    people.org(OrgKind.THIRD_PARTY_REVIEWER, "第三方审核机构")
    third = people.actor(Role.THIRD_PARTY_REVIEWER, org_name="第三方审核机构", username="third-a")

    with inst.sessions() as s:
        spec, rev = reviews.create_spec(
            session=s, actor=dev, kind="component", document=COMPONENT_DOC
        )
        reviews.submit(session=s, actor=dev, revision_id=rev.id, expected_version=1)
    _approve(inst, rev.id, admin, senior, third)
    with inst.sessions() as s:
        a = reviews.publish_agreement(
            session=s,
            actor=admin,
            kind="development",
            title="数据开发利用协议",
            text="乙方应在平台内开发，不得泄露样本。" * 4,
        )
        reviews.sign_agreement(session=s, actor=dev, kind="development", sha256=a.sha256)
        sample = samples.issue_sample(
            session=s, actor=admin, data_dir=data_dir, spec_id=spec.id, subjects=30
        )
        builds.save_definition(session=s, actor=dev, spec_id=spec.id, definition=DEFINITION)
        run = builds.dev_run(session=s, actor=dev, spec_id=spec.id, sample_id=sample.id)
        assert run.status == "ok", run.message
        b = builds.start_build(
            session=s, actor=admin, data_dir=data_dir, spec_id=spec.id, wait=True
        )
        s.refresh(b)
        assert b.status == "succeeded", b.error
        builds.review_build(session=s, actor=senior, build_id=b.id, decision="approve")

    bank = people.actor(Role.PRODUCT_DEVELOPER, org_name="某银行")
    with inst.sessions() as s:
        pspec, prev = reviews.create_spec(
            session=s, actor=bank, kind="product", document=PRODUCT_DOC
        )
        reviews.submit(session=s, actor=bank, revision_id=prev.id, expected_version=1)
    _approve(inst, prev.id, admin, senior, third)
    with inst.sessions() as s:
        agreement = reviews.publish_agreement(
            session=s,
            actor=admin,
            kind="product_use",
            title="数据产品使用协议",
            text="乙方应在授权范围内使用数据元件。" * 4,
        )
        reviews.sign_agreement(session=s, actor=bank, kind="product_use", sha256=agreement.sha256)
        lic = s.scalar(select(Licence).where(Licence.spec_id == pspec.id))
        assert lic is not None and lic.status == "active"
        # Benchmark quotas: large enough never to refuse a call (still metered exactly).
        lic.calls_per_day = 2_000_000_000
        lic.subjects_per_day = 2_000_000_000
        lic.rate_per_second = 1e9
        lic.batch_records = 2_000_000_000
        s.commit()
        lic_id = lic.id
    with inst.sessions() as s:
        cred, secret = credentials.create_credential(
            session=s, actor=bank, spec_id=pspec.id, name="benchmark"
        )
    return {"licence_id": lic_id, "client_id": cred.client_id, "client_secret": secret}


def generate_subjects(n: int, seed: int = 8) -> list[str]:
    """``n`` distinct, valid unified social credit codes in random order."""
    import numpy as np

    from yuanjian.demo.citydata import uscc_check_digits

    alphabet = np.frombuffer(b"0123456789ABCDEFGHJKLMNPQRTUWXY", dtype=np.uint8)
    rng = np.random.default_rng(seed)
    m = n + n // 50 + 16
    body = np.empty((m, 17), dtype=np.uint8)
    body[:, :8] = np.frombuffer(b"91410100", dtype=np.uint8)
    body[:, 8:] = alphabet[rng.integers(0, len(alphabet), size=(m, 9))]
    codes = np.concatenate([body, uscc_check_digits(body)[:, None]], axis=1)
    flat = np.unique(np.ascontiguousarray(codes).view("S18").ravel())[:n]
    assert len(flat) == n
    rng.shuffle(flat)
    return [c.decode() for c in flat.tolist()]


def build_big_store(inst: Any, root: Path, keys: list[str]) -> tuple[str, float]:
    """Write the generated Parquet, build the serving store from it, point the version at it."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sqlalchemy import select

    from yuanjian.components.models import Component, ComponentVersion
    from yuanjian.products import store

    data_dir = inst.settings.data_dir
    rnd = random.Random(3)
    bands = [rnd.choice("ABC") for _ in keys]
    parquet = root / "bench-output.parquet"
    pq.write_table(pa.table({"credit_code": keys, "score_band": bands}), parquet)
    with inst.sessions() as s:
        comp = s.scalar(select(Component).where(Component.code == COMPONENT))
        v = s.scalar(
            select(ComponentVersion).where(
                ComponentVersion.component_id == comp.id, ComponentVersion.status == "published"
            )
        )
        name = f"serving/{COMPONENT}-v{v.number}-bench{len(keys)}.sqlite"
        t = time.perf_counter()
        rows = store.build_store(
            parquet=parquet,
            out=data_dir / name,
            key_column="credit_code",
            columns=[f["name"] for f in v.output_schema],
            serving_key=store.ensure_serving_key(data_dir),
            meta={"component": COMPONENT, "version": v.number, "data_date": "2026-01-01"},
        )
        elapsed = time.perf_counter() - t
        assert rows == len(keys)
        v.metadata_ = {**v.metadata_, "store": name}
        s.commit()
    return name, elapsed


# ---------------------------------------------------------------- servers and load


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(
    app: str, port: int, workers: int, env: dict[str, str], log: Path, *, nodelay: bool = False
):
    """The production command line (docs/operations.md) for ``app``; the same for both apps."""
    # yuanjian.web.server is uvicorn's command line with the fix `yuanjian serve` applies.
    launcher = ["-m", "yuanjian.web.server"] if nodelay else ["-m", "uvicorn"]
    cmd = [
        sys.executable,
        *launcher,
        "--factory",
        app,
        "--app-dir",
        str(HERE),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--proxy-headers",
        "--forwarded-allow-ips",
        "127.0.0.1",
    ]
    fh = open(log, "ab")  # noqa: SIM115 - handed to the child, closed by stop_server
    proc = subprocess.Popen(
        cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
    )
    proc.log = fh  # type: ignore[attr-defined]
    return proc


def wait_ready(proc: Any, url: str, workers: int, log: Path, timeout: float = 60.0) -> None:
    """Wait until ``url`` answers and every worker has started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        started = log.read_text(errors="replace").count("Application startup complete")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status < 500 and started >= workers:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server did not start in {timeout:.0f}s:\n{log.read_text()[-3000:]}")


def stop_server(proc: Any) -> None:
    """Stop the server this script started (SIGINT: Uvicorn shuts its workers down cleanly)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    proc.log.close()


def http_json(url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None):
    """Status and JSON body of one request."""
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def keepalive_ms(base: str, path: str, headers: dict[str, str], n: int = 20) -> float:
    """Median time of sequential requests on one keep-alive connection (~40 ms: Nagle is on)."""
    import http.client

    host, port = base.rsplit("/", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        conn.request("GET", path, headers=headers)
        conn.getresponse().read()
        times.append(time.perf_counter() - t)
    conn.close()
    return statistics.median(times[1:]) * 1000


def get_token(base: str, client_id: str, secret: str) -> str:
    """A bearer token from the client-credentials grant."""
    form = urllib.parse.urlencode(
        {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    ).encode()
    status, body = http_json(
        f"{base}/oauth/token",
        data=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 200, body
    return body["access_token"]


def run_load(
    base: str,
    token: str,
    keyfile: Path,
    prefix: str,
    *,
    query: str = "",
    mode: str = "get",
    connections: int = CONCURRENCY,
    threads: int = 2,
    seconds: float = 10.0,
) -> dict[str, Any]:
    """One load run from a separate process (wrk, or the asyncio fallback); its summary."""
    if shutil.which("wrk"):
        cmd = [
            "wrk",
            f"-t{min(threads, connections)}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "--timeout",
            "10s",
            "-H",
            f"Authorization: Bearer {token}",
            "-s",
            str(LUA),
            base,
            "--",
            str(keyfile),
            prefix,
            query,
            mode,
            str(BATCH_KEYS),
            PURPOSE,
        ]
    else:
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--load-client",
            json.dumps(
                {
                    "base": base,
                    "token": token,
                    "keyfile": str(keyfile),
                    "prefix": prefix,
                    "query": query,
                    "mode": mode,
                    "connections": connections,
                    "seconds": seconds,
                }
            ),
        ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"load generator failed ({out.returncode}): {out.stdout}{out.stderr}")
    summary = json.loads(line[len("WRKJSON ") :])
    summary["rps"] = summary["requests"] / (summary["duration_us"] / 1e6)
    summary["non_2xx_or_error"] = sum(summary["errors"].values())
    return summary


def load_client(spec: dict[str, Any]) -> None:
    """The fallback load generator (no wrk): asyncio httpx2 client, prints a WRKJSON line."""
    import httpx2

    keys = [k for k in Path(spec["keyfile"]).read_text().splitlines() if k]
    lat: list[float] = []
    counts = {"sent": 0, "errors": 0, "bytes": 0}

    async def worker(client: Any, stop: float, rnd: random.Random) -> None:
        while time.monotonic() < stop:
            counts["sent"] += 1
            t = time.perf_counter()
            try:
                if spec["mode"] == "batch":
                    body = {"purpose": PURPOSE, "keys": rnd.choices(keys, k=BATCH_KEYS)}
                    r = await client.post(spec["prefix"], json=body)
                else:
                    r = await client.get(spec["prefix"] + rnd.choice(keys) + spec["query"])
                counts["bytes"] += len(r.content)
                if r.status_code >= 400:
                    counts["errors"] += 1
            except Exception:
                counts["errors"] += 1
                continue
            lat.append(time.perf_counter() - t)

    async def run() -> float:
        limits = httpx2.Limits(max_connections=spec["connections"])
        headers = {"Authorization": f"Bearer {spec['token']}"}
        async with httpx2.AsyncClient(
            base_url=spec["base"], headers=headers, limits=limits, timeout=30
        ) as client:
            t = time.monotonic()
            stop = t + spec["seconds"]
            await asyncio.gather(
                *(worker(client, stop, random.Random(i)) for i in range(spec["connections"]))
            )
            return time.monotonic() - t

    elapsed = asyncio.run(run())
    lat.sort()

    def pct(p: float) -> int:
        return int(lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1e6) if lat else 0

    summary = {
        "requests": len(lat),
        "sent": counts["sent"],
        "duration_us": int(elapsed * 1e6),
        "bytes": counts["bytes"],
        "errors": {"connect": 0, "read": 0, "write": 0, "status": counts["errors"], "timeout": 0},
        "latency_us": {
            "mean": sum(lat) / max(1, len(lat)) * 1e6,
            "stdev": 0.0,
            "max": pct(100),
            "p50": pct(50),
            "p90": pct(90),
            "p99": pct(99),
            "p999": pct(99.9),
        },
    }
    print("WRKJSON " + json.dumps(summary), flush=True)


def _proc_cpu(pid: int) -> tuple[int, float]:
    """Parent pid and CPU seconds (user + system) of a process, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return -1, 0.0
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu(root: int) -> float:
    """CPU seconds used so far by a process and its descendants (the server and its workers)."""
    procs = {int(p): _proc_cpu(int(p)) for p in os.listdir("/proc") if p.isdigit()}
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo.extend(c for c, (ppid, _) in procs.items() if ppid == pid and c not in tree)
    return sum(procs[p][1] for p in tree if p in procs)


def pg_cpu(url: str, dbname: str) -> float:
    """CPU seconds used so far by the PostgreSQL backends connected to the benchmark database."""
    from sqlalchemy import create_engine, text

    eng = create_engine(url)
    with eng.connect() as conn:
        me = conn.execute(text("select pg_backend_pid()")).scalar_one()
        pids = conn.execute(
            text("select pid from pg_stat_activity where datname = :d and pid <> :me"),
            {"d": dbname, "me": me},
        ).scalars()
        total = sum(_proc_cpu(int(p))[1] for p in pids)
    eng.dispose()
    return total


class CpuMeter:
    """CPU seconds of the server tree (and of its PostgreSQL backends) across measured runs."""

    def __init__(self, pid: int, url: str | None = None, dbname: str | None = None) -> None:
        self.pid, self.url, self.dbname = pid, url, dbname
        self.server = self.database = 0.0

    def _now(self) -> tuple[float, float]:
        db = pg_cpu(self.url, self.dbname) if self.url and self.dbname else 0.0
        return tree_cpu(self.pid), db

    def run(self, fn: Any, *a: Any, **kw: Any) -> dict[str, Any]:
        s0, d0 = self._now()
        out = fn(*a, **kw)
        s1, d1 = self._now()
        self.server += s1 - s0
        self.database += max(0.0, d1 - d0)
        return out


def count_calls(url: str) -> dict[str, int]:
    """component.call audit entries by outcome."""
    from sqlalchemy import create_engine, text

    eng = create_engine(url)
    with eng.connect() as conn:
        rows = conn.execute(
            text(
                "select outcome, count(*) from audit_entries "
                "where action = 'component.call' group by outcome"
            )
        ).all()
    eng.dispose()
    return {str(o): int(c) for o, c in rows}


def settled_calls(url: str, timeout: float = 15.0) -> dict[str, int]:
    """The call counts once the servers' recorders have committed what was in flight."""
    last = count_calls(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = count_calls(url)
        if now == last:
            return now
        last = now
    return last


# ---------------------------------------------------------------- main


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of one server: total throughput, median of the rounds' percentiles."""
    requests = sum(r["requests"] for r in runs)
    seconds = sum(r["duration_us"] for r in runs) / 1e6
    lat = {
        q: statistics.median(r["latency_us"][q] for r in runs) / 1000 for q in ("p50", "p90", "p99")
    }
    return {
        "rps": requests / seconds,
        "requests": requests,
        "errors": sum(r["non_2xx_or_error"] for r in runs),
        "max_ms": max(r["latency_us"]["max"] for r in runs) / 1000,
        "rounds_rps": [round(r["rps"], 1) for r in runs],
        "rounds_p99_ms": [round(r["latency_us"]["p99"] / 1000, 2) for r in runs],
        **{f"{q}_ms": v for q, v in lat.items()},
    }


def main() -> None:
    """Set up, serve the bare app and Yuanjian, load them in alternating rounds, print figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100,000 subjects, short runs")
    ap.add_argument("--subjects", type=int, help="subjects in the store (default 1,000,000)")
    ap.add_argument("--duration", type=float, help="measured lookup seconds per server")
    ap.add_argument("--rounds", type=int, default=3, help="alternating bare/Yuanjian rounds")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="Uvicorn workers")
    ap.add_argument(
        "--plain-uvicorn",
        action="store_true",
        help="start both servers with plain uvicorn (no TCP_NODELAY fix, uvicorn#3149)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the database and temp dir")
    ap.add_argument("--load-client", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.load_client:
        load_client(json.loads(args.load_client))
        return

    from yuanjian.config import Settings
    from yuanjian.instance import init_instance, open_instance

    n = args.subjects or (100_000 if args.quick else 1_000_000)
    seconds = args.duration or (9.0 if args.quick else 30.0)
    per_round = max(1.0, seconds / args.rounds)
    warm = 2.0 if args.quick else 5.0
    batch_seconds = 5.0 if args.quick else 20.0
    if shutil.which("wrk"):
        version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout
        generator = "wrk " + version.split()[1]
    else:
        generator = "asyncio httpx2 client (subprocess)"
        note("wrk is not installed (apt-get install wrk); falling back to an asyncio httpx2 client")

    dbname = f"yj_bench_serving_{os.getpid()}_{random.randrange(16**6):06x}"
    tmp = Path(tempfile.mkdtemp(prefix="yj-bench-serving-"))
    url = create_database(dbname)
    servers: list[Any] = []
    try:
        t0 = time.perf_counter()
        settings = Settings(data_dir=tmp / "data", database_url=url)
        init_instance(settings, admin_username="admin", admin_password=PASSWORD)
        inst = open_instance(settings)
        product = set_up_product(inst, tmp)
        note(f"instance, registry, reviews, publication, licence: {time.perf_counter() - t0:.1f}s")
        t = time.perf_counter()
        keys = generate_subjects(n)
        store_name, store_s = build_big_store(inst, tmp, keys)
        keyfile = tmp / "keys.txt"
        keyfile.write_text("\n".join(keys) + "\n")
        inst.dispose()
        durability = pg_durability(url)
        note(
            f"{n:,} subjects served from {store_name} (store build {store_s:.1f}s, "
            f"set-up {time.perf_counter() - t:.1f}s); PostgreSQL {durability}"
        )

        env = {
            **os.environ,
            "YUANJIAN_DATA_DIR": str(settings.data_dir),
            "YUANJIAN_DATABASE_URL": url,
        }
        # Both servers with the same command line; each is idle while the other is loaded.
        bare_base = f"http://127.0.0.1:{free_port()}"
        bare_proc = start_server(
            "serving:bare_app",
            int(bare_base.rsplit(":", 1)[1]),
            args.workers,
            env,
            tmp / "b.log",
            nodelay=not args.plain_uvicorn,
        )
        servers.append(bare_proc)
        base = f"http://127.0.0.1:{free_port()}"
        proc = start_server(
            "yuanjian.web.asgi:make_app",
            int(base.rsplit(":", 1)[1]),
            args.workers,
            env,
            tmp / "y.log",
            nodelay=not args.plain_uvicorn,
        )
        servers.append(proc)
        wait_ready(bare_proc, f"{bare_base}/bare/x", args.workers, tmp / "b.log")
        wait_ready(proc, f"{base}/healthz", args.workers, tmp / "y.log")

        token = get_token(base, product["client_id"], product["client_secret"])
        auth = {"Authorization": f"Bearer {token}"}
        path = f"/serve/v1/components/{COMPONENT}/subjects/"
        batch_path = f"/serve/v1/components/{COMPONENT}/lookup"
        query = f"?purpose={PURPOSE}"
        status, body = http_json(f"{base}{path}{keys[0]}{query}", headers=auth)
        assert status == 200 and body["records"], (status, body)
        sample = random.Random(5).sample(keys, BATCH_KEYS)
        status, body = http_json(
            f"{base}{batch_path}",
            data=json.dumps({"purpose": PURPOSE, "keys": sample}).encode(),
            headers={**auth, "Content-Type": "application/json"},
        )
        assert status == 200 and body["found"] == BATCH_KEYS, (status, body.get("found"))
        ka_bare = keepalive_ms(bare_base, f"/bare/{keys[0]}{query}", auth)
        ka_ours = keepalive_ms(base, f"{path}{keys[0]}{query}", auth)
        written = 2 + 20  # the checks above, audited like every call
        if ka_bare > 30:
            note(
                f"keep-alive requests take {ka_bare:.0f} ms on the bare server: TCP_NODELAY is "
                "off (plain uvicorn --workers N, Kludex/uvicorn#3149)"
            )

        def bare_run(secs: float) -> dict[str, Any]:
            return run_load(bare_base, token, keyfile, "/bare/", query=query, seconds=secs)

        def our_run(secs: float) -> dict[str, Any]:
            return run_load(base, token, keyfile, path, query=query, seconds=secs)

        bare_run(warm)
        yj_runs = [our_run(warm)]  # warm-up calls are audited too, so they are counted
        bare_rounds, our_rounds, loads = [], [], []
        bare_cpu, our_cpu = CpuMeter(bare_proc.pid), CpuMeter(proc.pid, url, dbname)
        for i in range(args.rounds):
            loads.append(os.getloadavg()[0])
            bare_rounds.append(bare_cpu.run(bare_run, per_round))
            our_rounds.append(our_cpu.run(our_run, per_round))
            note(
                f"round {i + 1}: bare {bare_rounds[-1]['rps']:.0f} req/s, "
                f"yuanjian {our_rounds[-1]['rps']:.0f} req/s "
                f"(p99 {our_rounds[-1]['latency_us']['p99'] / 1000:.1f} ms)"
            )
        yj_runs += our_rounds
        stop_server(bare_proc)
        servers.remove(bare_proc)
        yj_runs.append(
            run_load(base, token, keyfile, batch_path, mode="batch", connections=1, seconds=1)
        )
        loads.append(os.getloadavg()[0])
        batch_cpu = CpuMeter(proc.pid, url, dbname)
        batch = batch_cpu.run(
            run_load,
            base,
            token,
            keyfile,
            batch_path,
            mode="batch",
            connections=1,
            seconds=batch_seconds,
        )
        yj_runs.append(batch)
        note(f"batch: {batch['rps']:.1f} calls/s, p50 {batch['latency_us']['p50'] / 1000:.1f} ms")
        calls = settled_calls(url)
        stop_server(proc)
        servers.remove(proc)
        calls_after_stop = count_calls(url)

        bare, ours = combine(bare_rounds), combine(our_rounds)
        bare_name = "bare FastAPI endpoint, constant JSON, same uvicorn command line"
        extra = {
            "workers": args.workers,
            "concurrency": CONCURRENCY,
            "subjects": n,
            "seconds": round(per_round * args.rounds, 1),
            "rounds": args.rounds,
            "load": generator,
            "load_avg_1m": [round(x, 2) for x in loads],
            "tcp_nodelay_fix": not args.plain_uvicorn,
        }
        emit(
            "lookup_rps",
            ours["rps"],
            "req/s",
            bare_name,
            bare["rps"],
            target_ratio=0.5,
            rounds_rps=ours["rounds_rps"],
            baseline_rounds_rps=bare["rounds_rps"],
            errors=ours["errors"],
            baseline_errors=bare["errors"],
            server_cpu_ms_per_call=round(1000 * our_cpu.server / ours["requests"], 3),
            postgres_cpu_ms_per_call=round(1000 * our_cpu.database / ours["requests"], 3),
            baseline_server_cpu_ms_per_call=round(1000 * bare_cpu.server / bare["requests"], 3),
            keepalive_sequential_ms=round(ka_ours, 2),
            baseline_keepalive_sequential_ms=round(ka_bare, 2),
            **extra,
        )
        emit("lookup_p50_ms", ours["p50_ms"], "ms", bare_name, bare["p50_ms"], **extra)
        emit(
            "lookup_p99_ms",
            ours["p99_ms"],
            "ms",
            bare_name,
            bare["p99_ms"],
            target=25,
            rounds_p99_ms=ours["rounds_p99_ms"],
            p90_ms=ours["p90_ms"],
            max_ms=ours["max_ms"],
            # A closed loop of 32 connections: mean latency = 32 / throughput (Little's law).
            closed_loop_mean_ms=round(1000 * CONCURRENCY / ours["rps"], 2),
            **extra,
        )
        emit(
            "batch1000_p50_ms",
            batch["latency_us"]["p50"] / 1000,
            "ms",
            target=50,
            p99_ms=batch["latency_us"]["p99"] / 1000,
            calls_per_s=round(batch["rps"], 2),
            server_cpu_ms_per_call=round(1000 * batch_cpu.server / max(1, batch["requests"]), 2),
            postgres_cpu_ms_per_call=round(
                1000 * batch_cpu.database / max(1, batch["requests"]), 2
            ),
            concurrency=1,
            keys=BATCH_KEYS,
            errors=batch["non_2xx_or_error"],
            subjects=n,
            workers=args.workers,
            load=generator,
        )
        sent = written + sum(r["sent"] for r in yj_runs)
        responses = written + sum(r["requests"] for r in yj_runs)
        audited = sum(calls.values())
        emit(
            "audited_calls_ratio",
            audited / sent,
            "audit entries per call",
            target=1.0,
            audited=audited,
            audited_denied=calls.get("denied", 0),
            calls_written=sent,
            responses_counted=responses,
            in_flight_at_stop=sent - responses,
            audited_after_shutdown=sum(calls_after_stop.values()),
            postgresql=durability,
            note="calls written = responses the load generator counted + those in flight "
            "when it stopped; each response is sent only after its audit event committed",
        )
    finally:
        for p in servers:
            with contextlib.suppress(Exception):
                stop_server(p)
        if args.keep:
            note(f"kept database {dbname} and {tmp}")
        else:
            drop_database(dbname)
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

"""The demo city: one scripted run of the whole regulated flow through the services.

``run_demo(settings, scale=N, progress=...)`` onboards organizations and users of every role,
ingests the synthetic city data (:mod:`yuanjian.demo.citydata`), and drives three component
specs (an enterprise operating-status score, a social-insurance contribution band and a
tax-credit dataset) through review - one of them through a change request and a revision -,
samples, dev runs, production builds with their compliance checks and catalog publication; then
two product specs and their licences, a thousand serving calls through the real HTTP app (some
of them refused), a monthly report and an incident drill where those services exist.

Every step goes through the same service functions as the portal and the CLI, so every step
lands in the audit log. The run is recorded in ``<data_dir>/demo-state.json``; a second run
changes nothing and only prints the logins again, which are kept in
``<data_dir>/demo-logins.txt`` (0600) because the generated passwords are shown nowhere else.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Protocol

import pyarrow.parquet as pq
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from yuanjian.config import Settings
from yuanjian.identity import service as identity
from yuanjian.identity.actor import Actor
from yuanjian.identity.passwords import generate_password
from yuanjian.instance import Instance, open_instance, random_credit_code

__all__ = [
    "DEFAULT_SCALE",
    "MIN_SCALE",
    "STEPS",
    "DemoError",
    "DemoResult",
    "Login",
    "run_demo",
]

DEFAULT_SCALE = 2000  # enterprises; about a minute on a 2-core machine (see README)
MIN_SCALE = 100
MAX_SCALE = 200_000
SERVING_CALLS = 1000
STATE_FILE = "demo-state.json"
LOGINS_FILE = "demo-logins.txt"
SEED = 20261203

#: The steps in order: (key, title shown on the progress bar).
STEPS: tuple[tuple[str, str], ...] = (
    ("people", "organizations and users"),
    ("data", "synthetic city data: generate and ingest"),
    ("specs", "component specs and reviews"),
    ("development", "agreements, samples and dev runs"),
    ("builds", "production builds, checks and catalog"),
    ("products", "product specs, licences and credentials"),
    ("serving", "serving calls"),
    ("report", "monthly report"),
    ("incident", "incident drill"),
    ("audit", "audit checkpoint and verification"),
)


class DemoError(RuntimeError):
    """The demo cannot run (or resume) on this instance; the message says why and what to do.

    ``exit_code`` is 2 when nothing was done (bad scale, instance not initialized or not fresh)
    and 1 when a step failed part-way.
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Progress(Protocol):
    """Progress callback: ``progress(step, done, total, detail)``."""

    def __call__(self, step: str, done: int, total: int, detail: str = "") -> None: ...


@dataclass(frozen=True)
class Login:
    """One demo user and how to log in."""

    username: str
    password: str
    role: str
    organization: str
    note: str = ""


@dataclass
class DemoResult:
    """What the demo did (or found done)."""

    already_done: bool
    scale: int
    logins: list[Login]
    logins_path: Path
    summary: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    credentials: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0


def _noop(step: str, done: int, total: int, detail: str = "") -> None:
    return None


# ---------------------------------------------------------------- cast


@dataclass(frozen=True)
class OrgPlan:
    key: str
    name: str
    kind: str
    rating: str | None = None


@dataclass(frozen=True)
class UserPlan:
    username: str
    display_name: str
    role: str
    org: str  # OrgPlan.key, or "operator"
    note: str


ORGS: tuple[OrgPlan, ...] = (
    OrgPlan("regulator", "市数据管理局", "regulator"),
    OrgPlan("dev_a", "河南数智元件科技有限公司", "component_developer", "A"),
    OrgPlan("dev_b", "郑州信源数据技术有限公司", "component_developer", "B"),
    OrgPlan("bank", "中原汇通商业银行股份有限公司", "product_developer", "A"),
    OrgPlan("insurer", "河南安泰财产保险股份有限公司", "product_developer", "A"),
    OrgPlan("third", "河南正信数据安全评估中心", "third_party_reviewer"),
)

USERS: tuple[UserPlan, ...] = (
    UserPlan(
        "op-admin",
        "运营管理员 王敏",
        "operator_admin",
        "operator",
        "onboarding, agreements, incidents",
    ),
    UserPlan(
        "op-reviewer", "审核员 刘洋", "operator_reviewer", "operator", "build reviews, checks"
    ),
    UserPlan(
        "op-senior",
        "高级审核员 赵静",
        "operator_reviewer",
        "operator",
        "spec reviews, change request",
    ),
    UserPlan(
        "op-steward", "数据管理员 陈磊", "operator_data_steward", "operator", "10 resources, grades"
    ),
    UserPlan("op-auditor", "运营方审计员 孙丽", "auditor", "operator", "audit log search, proofs"),
    UserPlan("reg-viewer", "监管员 李强", "regulator_viewer", "regulator", "monthly report, drill"),
    UserPlan("reg-auditor", "监管审计员 周婷", "auditor", "regulator", "audit exports"),
    UserPlan(
        "dev-shuzhi", "元件开发 吴昊", "component_developer", "dev_a", "score and tax-credit specs"
    ),
    UserPlan(
        "dev-xinyuan", "元件开发 郑雪", "component_developer", "dev_b", "social-insurance spec"
    ),
    UserPlan("pd-bank", "产品开发 冯涛", "product_developer", "bank", "credit product, calls"),
    UserPlan(
        "pd-insurer", "产品开发 何芳", "product_developer", "insurer", "insurance product, calls"
    ),
    UserPlan(
        "tp-reviewer", "第三方审核员 马骏", "third_party_reviewer", "third", "third-party reviews"
    ),
)


class _Ctx:
    """State shared by the steps of one run."""

    def __init__(self, inst: Instance, scale: int, progress: Progress, state: dict[str, Any]):
        self.inst = inst
        self.settings = inst.settings
        self.data_dir: Path = inst.settings.data_dir
        self.scale = scale
        self.progress = progress
        self.state = state
        self.skipped: list[str] = []
        self.keys: list[str] = []  # registered enterprises' credit codes (the call script)
        self.secrets: dict[str, str] = {}  # product code -> serving client secret

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.inst.sessions() as s:
            yield s

    def actor(self, username: str) -> Actor:
        with self.inst.sessions() as s:
            user = identity.find_user(s, username)
            if user is None:
                raise DemoError(f"demo user {username!r} is missing from the database")
            return identity.actor_for(user, via="demo")


# ---------------------------------------------------------------- state file


def _state_path(settings: Settings) -> Path:
    return settings.data_dir / STATE_FILE


def _logins_path(settings: Settings) -> Path:
    return settings.data_dir / LOGINS_FILE


def _write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only, atomically."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    os.chmod(path, 0o600)


def _load_state(settings: Settings) -> dict[str, Any] | None:
    path = _state_path(settings)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DemoError(
            f"{path}: not valid JSON ({exc}); remove it to run the demo again"
        ) from None


def _save_state(settings: Settings, state: dict[str, Any]) -> None:
    _write_private(
        _state_path(settings), json.dumps(state, ensure_ascii=False, indent=2, default=str) + "\n"
    )


def _logins_text(logins: list[Login], creds: list[dict[str, str]]) -> str:
    lines = [
        "# Yuanjian demo city logins (generated once; keep this file private)",
        "# username\tpassword\trole\torganization\tnote",
    ]
    lines += [f"{x.username}\t{x.password}\t{x.role}\t{x.organization}\t{x.note}" for x in logins]
    if creds:
        lines.append("# serving client credentials: client_id\tclient_secret\tproduct")
        lines += [f"# {c['client_id']}\t{c['client_secret']}\t{c['product']}" for c in creds]
    return "\n".join(lines) + "\n"


def read_logins(settings: Settings) -> tuple[list[Login], list[dict[str, str]]]:
    """The demo logins (and serving credentials) stored by an earlier run."""
    path = _logins_path(settings)
    logins: list[Login] = []
    creds: list[dict[str, str]] = []
    if not path.exists():
        return logins, creds
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# yjc_"):
            cid, secret, product = [*line[2:].split("\t"), "", "", ""][:3]
            creds.append({"client_id": cid, "client_secret": secret, "product": product})
        elif line and not line.startswith("#"):
            parts = [*line.split("\t"), "", "", "", "", ""][:5]
            logins.append(Login(*parts))
    return logins, creds


# ---------------------------------------------------------------- entry point


def run_demo(
    settings: Settings, *, scale: int = DEFAULT_SCALE, progress: Progress = _noop
) -> DemoResult:
    """Run the demo city once on an initialized instance; later runs only report the logins."""
    if isinstance(scale, bool) or not isinstance(scale, int) or not MIN_SCALE <= scale <= MAX_SCALE:
        raise DemoError(f"scale must be between {MIN_SCALE} and {MAX_SCALE}, got {scale!r}")
    state = _load_state(settings)
    if state is not None and state.get("status") == "done":
        logins, creds = read_logins(settings)
        return DemoResult(
            already_done=True,
            scale=int(state.get("scale", 0)),
            logins=logins,
            logins_path=_logins_path(settings),
            summary=state.get("summary", {}),
            timings=state.get("timings", {}),
            skipped=list(state.get("skipped", [])),
            credentials=creds,
            seconds=0.0,
        )
    if state is not None:
        raise DemoError(
            f"an earlier demo run stopped during step {state.get('step')!r} "
            f"({state.get('error', 'interrupted')}) and left partial demo data in this "
            f"instance; start from a fresh instance (for example `make clean && make run`, or "
            f"another --data-dir and --database-url)",
            exit_code=1,
        )
    if not settings.data_dir.is_dir():
        raise DemoError(f"{settings.data_dir} does not exist: run `yuanjian init` first")
    inst = open_instance(settings)
    try:
        with inst.sessions() as s:
            try:
                operator = identity.operator_org(s)
            except SQLAlchemyError:
                operator = None
            if operator is None:
                raise DemoError("the instance is not initialized: run `yuanjian init` first")
            taken = [u.username for u in USERS if identity.find_user(s, u.username)]
            if taken:
                raise DemoError(
                    f"this instance already has users named like the demo's ({', '.join(taken)}) "
                    f"but no demo record in {_state_path(settings)}; run the demo on a fresh "
                    f"instance"
                )
        state = {"status": "running", "scale": scale, "seed": SEED, "step": None, "timings": {}}
        _save_state(settings, state)
        ctx = _Ctx(inst, scale, progress, state)
        started = time.monotonic()
        for key, _title in STEPS:
            state["step"] = key
            _save_state(settings, state)
            t0 = time.monotonic()
            try:
                _STEP_FUNCS[key](ctx)
            except Exception as exc:
                state["error"] = f"{type(exc).__name__}: {exc}"[:500]
                _save_state(settings, state)
                raise DemoError(f"step {key!r} failed: {exc}", exit_code=1) from exc
            state["timings"][key] = round(time.monotonic() - t0, 2)
        seconds = round(time.monotonic() - started, 2)
        summary = _summary(ctx)
        state.update(
            status="done",
            step=None,
            seconds=seconds,
            finished_at=date.today().isoformat(),
            summary=summary,
            skipped=ctx.skipped,
        )
        state.pop("passwords", None)
        _save_state(settings, state)
        logins, creds = read_logins(settings)
        return DemoResult(
            already_done=False,
            scale=scale,
            logins=logins,
            logins_path=_logins_path(settings),
            summary=summary,
            timings=state["timings"],
            skipped=ctx.skipped,
            credentials=creds,
            seconds=seconds,
        )
    finally:
        inst.dispose()


# ---------------------------------------------------------------- step 1: people


def _step_people(ctx: _Ctx) -> None:
    total = len(ORGS) + len(USERS)
    done = 0
    org_ids: dict[str, int] = {}
    names: dict[str, str] = {}
    with ctx.session() as s:
        op = identity.operator_org(s)
        assert op is not None
        org_ids["operator"], names["operator"] = op.id, op.name
        cli = ctx.inst.cli_actor(s)
        # The console operator creates the operator's own administrator; she onboards the rest.
        admin_plan = USERS[0]
        passwords: dict[str, str] = {}
        passwords[admin_plan.username] = generate_password()
        identity.create_user(
            session=s,
            actor=cli,
            org_id=op.id,
            username=admin_plan.username,
            display_name=admin_plan.display_name,
            roles=[admin_plan.role],
            password=passwords[admin_plan.username],
        )
    done += 1
    ctx.progress("people", done, total, admin_plan.username)
    admin = ctx.actor(admin_plan.username)
    for plan in ORGS:
        with ctx.session() as s:
            org = identity.create_organization(
                session=s,
                actor=admin,
                name=plan.name,
                kind=plan.kind,
                credit_code=random_credit_code(),
                rating=plan.rating,
                contact_email=f"{plan.key.replace('_', '-')}@example.cn",
            )
            org_ids[plan.key], names[plan.key] = org.id, org.name
        done += 1
        ctx.progress("people", done, total, plan.name)
    for plan in USERS[1:]:
        passwords[plan.username] = generate_password()
        with ctx.session() as s:
            identity.create_user(
                session=s,
                actor=admin,
                org_id=org_ids[plan.org],
                username=plan.username,
                display_name=plan.display_name,
                roles=[plan.role],
                password=passwords[plan.username],
            )
        done += 1
        ctx.progress("people", done, total, plan.username)
    logins = [Login(p.username, passwords[p.username], p.role, names[p.org], p.note) for p in USERS]
    # Written now: the passwords exist nowhere else, whatever happens to the later steps.
    _write_private(_logins_path(ctx.settings), _logins_text(logins, []))
    ctx.state["org_ids"] = org_ids


# ---------------------------------------------------------------- step 2: data


@dataclass(frozen=True)
class ResourcePlan:
    code: str
    title: str
    source: str
    cadence: str
    subject_type: str | None
    subject_key: str | None
    kind: str = "public"


RESOURCES: tuple[ResourcePlan, ...] = (
    ResourcePlan(
        "enterprise_registration",
        "企业登记信息",
        "市市场监督管理局",
        "monthly",
        "enterprise",
        "credit_code",
    ),
    ResourcePlan("tax_filing", "企业纳税申报", "市税务局", "monthly", "enterprise", "credit_code"),
    ResourcePlan("tax_credit", "纳税信用评价", "市税务局", "yearly", "enterprise", "credit_code"),
    ResourcePlan(
        "social_insurance_unit",
        "社会保险单位缴费",
        "市人力资源和社会保障局",
        "monthly",
        "enterprise",
        "credit_code",
    ),
    ResourcePlan(
        "social_insurance_person",
        "社会保险个人缴费",
        "市人力资源和社会保障局",
        "monthly",
        "person",
        "person_id",
    ),
    ResourcePlan(
        "housing_fund", "住房公积金账户", "市住房公积金管理中心", "monthly", "person", "person_id"
    ),
    ResourcePlan(
        "utility_payment",
        "水电气缴费",
        "市水务、电力、燃气公司",
        "monthly",
        "enterprise",
        "credit_code",
        kind="social",
    ),
    ResourcePlan(
        "real_estate", "不动产登记", "市自然资源和规划局", "monthly", "person", "owner_id"
    ),
    ResourcePlan("court_record", "法院涉诉案件", "市中级人民法院", "monthly", None, None),
    ResourcePlan("credit_record", "信用惩戒记录", "市发展和改革委员会", "monthly", None, None),
)


def _step_data(ctx: _Ctx) -> None:
    from yuanjian.demo import citydata
    from yuanjian.resources import service as resources
    from yuanjian.resources.readers import Source

    steward = ctx.actor("op-steward")
    total_rows = sum(citydata.row_count(r.code, ctx.scale) for r in RESOURCES)
    done = 0
    keys: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="demo-city-", dir=ctx.data_dir) as tmp:
        out = Path(tmp)
        for plan in RESOURCES:
            rows = citydata.row_count(plan.code, ctx.scale)
            ctx.progress("data", done, total_rows, f"generate {plan.code}")
            citydata.generate(out, scale=ctx.scale, seed=SEED, tables=[plan.code])
            path = out / f"{plan.code}.parquet"
            if plan.code == "enterprise_registration":
                keys["enterprise"] = (
                    pq.read_table(path, columns=["credit_code"]).column(0).to_pylist()
                )
            ctx.progress("data", done + rows // 2, total_rows, f"ingest {plan.code}")
            with ctx.session() as s:
                res = resources.register_resource(
                    session=s,
                    actor=steward,
                    code=plan.code,
                    title=plan.title,
                    kind=plan.kind,
                    source=plan.source,
                    cadence=plan.cadence,
                    subject_type=plan.subject_type,
                    subject_key=plan.subject_key,
                    description=citydata.TABLES[plan.code],
                )
                if plan.kind == "social":
                    today = date.today()
                    resources.set_provenance(
                        session=s,
                        actor=steward,
                        data_dir=ctx.data_dir,
                        resource_id=res.id,
                        source_org=plan.source,
                        legal_basis="公用事业单位与运营服务主体签订的数据合作协议（示例）",
                        document_name="utility-data-agreement.txt",
                        document=(
                            "数据合作协议（示例）：供方授权运营服务主体在平台内加工企业水电气"
                            "缴费数据，仅用于数据元件开发，不得向第三方提供原始数据。\n"
                        ).encode(),
                        valid_from=today - timedelta(days=30),
                        valid_to=today + timedelta(days=3 * 365),
                        allowed_uses=["数据元件开发", "企业经营状况评估"],
                    )
                resources.ingest(
                    session=s,
                    actor=steward,
                    data_dir=ctx.data_dir,
                    resource_id=res.id,
                    source=Source(path=path),
                )
            path.unlink()
            done += rows
            ctx.progress("data", done, total_rows, plan.code)
    # The keys the product developers' customers bring in the call script.
    ctx.keys = keys["enterprise"]


# ---------------------------------------------------------------- step 3: specs


def _field(name: str, purpose: str, output: bool = True) -> dict[str, Any]:
    return (
        {"name": name, "purpose": purpose}
        if output
        else {
            "name": name,
            "purpose": purpose,
            "output": False,
        }
    )


def _time_range() -> dict[str, str]:
    return {"start": "2024-01-01", "end": "2025-12-31"}


def operating_score_doc(revised: bool) -> dict[str, Any]:
    """The operating-status score spec; revision 2 answers the reviewer's change request."""
    registration = [_field("credit_code", "主体标识，用于关联纳税数据和输出")]
    if revised:
        registration.append(_field("status", "登记状态（存续、吊销、注销），吊销注销企业降档"))
    outputs: list[dict[str, Any]] = [
        {
            "name": "credit_code",
            "type": "string",
            "description": "统一社会信用代码",
            "sources": ["enterprise_registration.credit_code"],
        },
        {
            "name": "operating_score",
            "type": "integer",
            "description": "企业经营状况评分（0-100）",
            "sources": [
                "tax_filing.sales_revenue",
                "tax_filing.filing_status",
                "tax_filing.arrears_amount",
                *(["enterprise_registration.status"] if revised else []),
            ],
            "transform": "score",
        },
        {
            "name": "score_band",
            "type": "string",
            "description": "经营状况评分档（A-E）",
            "sources": ["tax_filing.sales_revenue", "tax_filing.filing_status"],
            "transform": "band",
        },
    ]
    design = (
        "以近六个月有销售收入的月份数、近六个月与前六个月销售收入之比、申报及时性和欠税情况"
        "计算企业经营状况评分（0-100），并分为 A-E 五档。"
    )
    if revised:
        design += (
            "评分口径：活跃月份占 50 分，收入保持（不低于前期的八成）占 20 分，无未申报和逾期"
            "申报占 15 分（两次以内 8 分），无欠税占 10 分，登记状态为存续占 5 分；"
            "85 分及以上为 A，70 分以上为 B，50 分以上为 C，30 分以上为 D，其余为 E。"
        )
    return {
        "name": "企业经营状况评分",
        "code": "enterprise_operating_score",
        "type": "feature",
        "scenarios": ["credit_lending", "enterprise_services"],
        "function_design": design,
        "subject_type": "enterprise",
        "subject_key": "enterprise_registration.credit_code",
        "resources": [
            {"code": "enterprise_registration", "fields": registration},
            {
                "code": "tax_filing",
                "fields": [
                    _field("credit_code", "关联键", output=False),
                    _field("tax_period", "所属期，用于划分近六个月和前六个月"),
                    _field("sales_revenue", "销售收入，衡量经营活跃度"),
                    _field("filing_status", "申报状态，衡量申报及时性"),
                    _field("arrears_amount", "欠税金额"),
                ],
            },
        ],
        "outputs": outputs,
        "update_frequency": "monthly",
        "delivery_modes": ["api"],
        "area": "郑州市",
        "time_range": _time_range(),
        "consumers": ["银行", "融资担保机构"],
    }


def contribution_band_doc() -> dict[str, Any]:
    """The social-insurance contribution band spec (enterprise-level feature)."""
    return {
        "name": "企业社保缴纳档位",
        "code": "social_insurance_contribution_band",
        "type": "feature",
        "scenarios": ["insurance_underwriting", "enterprise_services"],
        "function_design": (
            "基于近十二个月社会保险单位缴费记录，输出参保人数档、人均缴费基数档和近十二个月"
            "欠缴月数，不输出任何个人缴费明细。"
        ),
        "subject_type": "enterprise",
        "subject_key": "social_insurance_unit.credit_code",
        "resources": [
            {
                "code": "social_insurance_unit",
                "fields": [
                    _field("credit_code", "主体标识"),
                    _field("period", "缴费所属期，选取近十二个月"),
                    _field("insured_count", "参保人数"),
                    _field("contribution_base_total", "缴费基数合计，计算人均基数"),
                    _field("arrears_flag", "欠缴标记"),
                ],
            }
        ],
        "outputs": [
            {
                "name": "credit_code",
                "type": "string",
                "description": "统一社会信用代码",
                "sources": ["social_insurance_unit.credit_code"],
            },
            {
                "name": "headcount_band",
                "type": "string",
                "description": "月均参保人数档（0、1-9、10-49、50-199、200+）",
                "sources": ["social_insurance_unit.insured_count"],
                "transform": "band",
            },
            {
                "name": "contribution_band",
                "type": "string",
                "description": "人均缴费基数档",
                "sources": [
                    "social_insurance_unit.contribution_base_total",
                    "social_insurance_unit.insured_count",
                ],
                "transform": "band",
            },
            {
                "name": "arrears_months_12m",
                "type": "integer",
                "description": "近十二个月欠缴月数",
                "sources": ["social_insurance_unit.arrears_flag"],
                "transform": "count",
            },
        ],
        "update_frequency": "monthly",
        "delivery_modes": ["api"],
        "area": "郑州市",
        "time_range": _time_range(),
        "consumers": ["保险公司"],
    }


def tax_credit_doc() -> dict[str, Any]:
    """The tax-credit dataset spec: one row per enterprise, its latest evaluated year."""
    return {
        "name": "企业纳税信用等级数据集",
        "code": "enterprise_tax_credit",
        "type": "dataset",
        "scenarios": ["credit_lending"],
        "function_design": (
            "提供每户企业最近一个参评年度（2022-2024）的纳税信用等级（A、B、M、C、D），"
            "按评价年度和等级满足 k 匿名（不足 k 户的年度等级组合整体抑制），不含评分和税务机关。"
        ),
        "subject_type": "enterprise",
        "subject_key": "tax_credit.credit_code",
        "resources": [
            {
                "code": "tax_credit",
                "fields": [
                    _field("credit_code", "主体标识"),
                    _field("eval_year", "评价年度"),
                    _field("grade", "纳税信用等级"),
                    _field("eval_status", "仅保留参评企业", output=False),
                ],
            }
        ],
        "outputs": [
            {
                "name": "credit_code",
                "type": "string",
                "description": "统一社会信用代码",
                "sources": ["tax_credit.credit_code"],
            },
            {
                "name": "eval_year",
                "type": "integer",
                "description": "评价年度",
                "sources": ["tax_credit.eval_year"],
            },
            {
                "name": "credit_grade",
                "type": "string",
                "description": "纳税信用等级",
                "sources": ["tax_credit.grade"],
            },
        ],
        "update_frequency": "yearly",
        "delivery_modes": ["api", "batch"],
        "area": "郑州市",
        "time_range": {"start": "2022-01-01", "end": "2024-12-31"},
        "consumers": ["银行"],
    }


DEFINITIONS: dict[str, dict[str, Any]] = {
    "enterprise_operating_score": {
        "sql": (
            "WITH t AS (\n"
            "  SELECT credit_code,\n"
            "    SUM(CASE WHEN tax_period >= $recent_from AND sales_revenue > 0 THEN 1 ELSE 0 END)"
            " AS active_months,\n"
            "    SUM(CASE WHEN tax_period >= $recent_from THEN sales_revenue ELSE 0 END)"
            " AS recent_revenue,\n"
            "    SUM(CASE WHEN tax_period >= $prior_from AND tax_period < $recent_from"
            " THEN sales_revenue ELSE 0 END) AS prior_revenue,\n"
            "    SUM(CASE WHEN filing_status IN ('未申报', '逾期申报') THEN 1 ELSE 0 END)"
            " AS bad_filings,\n"
            "    MAX(arrears_amount) AS max_arrears\n"
            "  FROM tax_filing GROUP BY credit_code\n"
            "), s AS (\n"
            "  SELECT e.credit_code AS credit_code, CAST(ROUND(\n"
            "      50.0 * COALESCE(t.active_months, 0) / 6\n"
            "      + CASE WHEN t.recent_revenue > 0 AND t.recent_revenue >= 0.8 * t.prior_revenue"
            " THEN 20 ELSE 0 END\n"
            "      + CASE WHEN COALESCE(t.bad_filings, 0) = 0 THEN 15"
            " WHEN t.bad_filings <= 2 THEN 8 ELSE 0 END\n"
            "      + CASE WHEN COALESCE(t.max_arrears, 0) = 0 THEN 10 ELSE 0 END\n"
            "      + CASE WHEN e.status = '存续' THEN 5 ELSE 0 END\n"
            "    ) AS INTEGER) AS operating_score\n"
            "  FROM enterprise_registration e LEFT JOIN t ON e.credit_code = t.credit_code\n"
            ")\n"
            "SELECT credit_code, operating_score,\n"
            "  CASE WHEN operating_score >= 85 THEN 'A' WHEN operating_score >= 70 THEN 'B'"
            " WHEN operating_score >= 50 THEN 'C' WHEN operating_score >= 30 THEN 'D'"
            " ELSE 'E' END AS score_band\n"
            "FROM s"
        ),
        "parameters": {
            "recent_from": {"type": "str", "value": "2025-07", "description": "近六个月起"},
            "prior_from": {"type": "str", "value": "2025-01", "description": "前六个月起"},
        },
        "output_key": "credit_code",
    },
    "social_insurance_contribution_band": {
        "sql": (
            "WITH m AS (\n"
            "  SELECT credit_code,\n"
            "    AVG(insured_count) AS avg_insured,\n"
            "    SUM(contribution_base_total) / NULLIF(SUM(insured_count), 0) AS avg_base,\n"
            "    SUM(CASE WHEN arrears_flag THEN 1 ELSE 0 END) AS arrears_months\n"
            "  FROM social_insurance_unit WHERE period >= $from_period GROUP BY credit_code\n"
            ")\n"
            "SELECT credit_code,\n"
            "  CASE WHEN avg_insured IS NULL OR avg_insured < 0.5 THEN '0'"
            " WHEN avg_insured < 10 THEN '1-9' WHEN avg_insured < 50 THEN '10-49'"
            " WHEN avg_insured < 200 THEN '50-199' ELSE '200+' END AS headcount_band,\n"
            "  CASE WHEN avg_base IS NULL THEN '无缴费'"
            " WHEN avg_base < $band_1 THEN '基数下限附近'"
            " WHEN avg_base < $band_2 THEN '中等' WHEN avg_base < $band_3 THEN '较高'"
            " ELSE '高' END AS contribution_band,\n"
            "  CAST(COALESCE(arrears_months, 0) AS INTEGER) AS arrears_months_12m\n"
            "FROM m"
        ),
        "parameters": {
            "from_period": {"type": "str", "value": "2025-01", "description": "近十二个月起"},
            "band_1": {"type": "float", "value": 4500.0, "description": "下限附近档上界"},
            "band_2": {"type": "float", "value": 7000.0, "description": "中等档上界"},
            "band_3": {"type": "float", "value": 10000.0, "description": "较高档上界"},
        },
        "output_key": "credit_code",
    },
    "enterprise_tax_credit": {
        "sql": (
            "WITH latest AS (\n"
            "  SELECT credit_code, eval_year, grade,\n"
            "    ROW_NUMBER() OVER (PARTITION BY credit_code ORDER BY eval_year DESC) AS rn\n"
            "  FROM tax_credit WHERE eval_status = '参评' AND grade IS NOT NULL\n"
            "), g AS (\n"
            "  SELECT credit_code, eval_year, grade,\n"
            "    COUNT(*) OVER (PARTITION BY eval_year, grade) AS cell\n"
            "  FROM latest WHERE rn = 1\n"
            ")\n"
            "SELECT credit_code, CAST(eval_year AS INTEGER) AS eval_year, grade AS credit_grade\n"
            "FROM g WHERE cell >= $k"
        ),
        "parameters": {
            "k": {"type": "int", "value": 5, "description": "每个年度等级组合至少 k 户，否则抑制"}
        },
        "output_key": "credit_code",
    },
}

#: Spec code -> (document factory, owner username).
COMPONENTS: dict[str, tuple[Callable[[], dict[str, Any]], str]] = {
    "enterprise_operating_score": (lambda: operating_score_doc(revised=False), "dev-shuzhi"),
    "social_insurance_contribution_band": (contribution_band_doc, "dev-xinyuan"),
    "enterprise_tax_credit": (tax_credit_doc, "dev-shuzhi"),
}
CHANGE_REQUESTED = "enterprise_operating_score"


def _version(s: Session, rev_id: int) -> int:
    from yuanjian.reviews.models import SpecRevision

    rev = s.get(SpecRevision, rev_id)
    assert rev is not None
    return rev.version


def _review(ctx: _Ctx, rev_id: int, *, request_changes: str | None = None) -> str:
    """Assign a senior operator reviewer and a third-party reviewer, then decide."""
    from yuanjian.reviews import service as reviews
    from yuanjian.reviews.models import SpecRevision

    admin, senior, third = ctx.actor("op-admin"), ctx.actor("op-senior"), ctx.actor("tp-reviewer")
    for username, is_senior in (("op-senior", True), ("tp-reviewer", False)):
        with ctx.session() as s:
            reviews.assign(
                session=s,
                actor=admin,
                revision_id=rev_id,
                reviewer_username=username,
                senior=is_senior,
                expected_version=_version(s, rev_id),
            )
    with ctx.session() as s:
        reviews.act(
            session=s,
            actor=senior,
            revision_id=rev_id,
            action="start_review",
            expected_version=_version(s, rev_id),
        )
    if request_changes:
        with ctx.session() as s:
            reviews.comment(
                session=s,
                actor=senior,
                revision_id=rev_id,
                field_path="function_design",
                text="请写明评分口径（各项分值和分档阈值），并说明如何处理吊销、注销企业。",
            )
            reviews.act(
                session=s,
                actor=senior,
                revision_id=rev_id,
                action="request_changes",
                expected_version=_version(s, rev_id),
                reason=request_changes,
            )
            return s.get(SpecRevision, rev_id).state  # type: ignore[union-attr]
    for actor in (senior, third):
        with ctx.session() as s:
            rev = s.get(SpecRevision, rev_id)
            assert rev is not None
            if rev.state == "approved":
                break
            if rev.state == "submitted":
                reviews.act(
                    session=s,
                    actor=actor,
                    revision_id=rev_id,
                    action="start_review",
                    expected_version=rev.version,
                )
            unanswered = list((rev.risk or {}).get("unanswered", []))
            if unanswered:
                reviews.answer_checklist(
                    session=s,
                    actor=actor,
                    revision_id=rev_id,
                    answers={i: "yes" for i in unanswered},
                )
            reviews.act(
                session=s,
                actor=actor,
                revision_id=rev_id,
                action="approve",
                expected_version=_version(s, rev_id),
            )
    with ctx.session() as s:
        state = s.get(SpecRevision, rev_id).state  # type: ignore[union-attr]
    if state != "approved":
        raise DemoError(f"spec revision {rev_id} ended {state}, not approved")
    return state


def _submit(ctx: _Ctx, actor: Actor, rev_id: int) -> None:
    from yuanjian.reviews import service as reviews

    with ctx.session() as s:
        reviews.submit(
            session=s, actor=actor, revision_id=rev_id, expected_version=_version(s, rev_id)
        )


def _step_specs(ctx: _Ctx) -> None:
    from yuanjian.reviews import service as reviews

    spec_ids: dict[str, int] = {}
    total = len(COMPONENTS) + 1
    done = 0
    for code, (factory, owner) in COMPONENTS.items():
        dev = ctx.actor(owner)
        with ctx.session() as s:
            spec, rev = reviews.create_spec(
                session=s, actor=dev, kind="component", document=factory()
            )
            spec_ids[code] = spec.id
            rev_id = rev.id
        _submit(ctx, dev, rev_id)
        if code == CHANGE_REQUESTED:
            _review(ctx, rev_id, request_changes="评分口径不清，且未考虑企业登记状态")
            ctx.progress("specs", done, total, f"{code}: changes requested")
            with ctx.session() as s:
                new = reviews.revise(
                    session=s,
                    actor=dev,
                    revision_id=rev_id,
                    expected_version=_version(s, rev_id),
                    document=operating_score_doc(revised=True),
                )
                rev_id = new.id
            _submit(ctx, dev, rev_id)
            done += 1
        _review(ctx, rev_id)
        done += 1
        ctx.progress("specs", done, total, f"{code}: approved")
    ctx.state["component_specs"] = spec_ids


# ---------------------------------------------------------------- step 4: development


DEVELOPMENT_AGREEMENT = (
    "数据开发利用协议（示例）\n"
    "一、乙方应当在平台内、按照审核通过的设计说明和运营方提供的样本数据开发数据元件。\n"
    "二、未经授权，乙方不得变更样本数据的使用目的、范围和期限，不得篡改、泄露样本数据，"
    "不得向第三方提供。\n"
    "三、乙方的开发操作全程留痕，接受运营方和市数据主管部门的监督。\n"
)
PRODUCT_USE_AGREEMENT = (
    "数据产品使用协议（示例）\n"
    "一、乙方仅可在许可载明的用途、范围和期限内调用数据元件。\n"
    "二、乙方应当采取必要措施保护所获取的数据，不得转售、泄露或用于许可以外的目的。\n"
    "三、所有调用均被记录并定期报送市数据主管部门。\n"
)


def _definition(session: Session, code: str) -> dict[str, Any]:
    """The build definition of a component; the dataset suppresses below the k in force."""
    from yuanjian.standards import service as standards

    d = copy.deepcopy(DEFINITIONS[code])
    if "k" in d.get("parameters", {}):
        _, anonymity = standards.in_force(session, "anonymity_thresholds")
        d["parameters"]["k"]["value"] = int(anonymity["k"])
    return d


def _step_development(ctx: _Ctx) -> None:
    from yuanjian.components import builds, samples
    from yuanjian.reviews import service as reviews

    admin = ctx.actor("op-admin")
    with ctx.session() as s:
        dev_agreement = reviews.publish_agreement(
            session=s,
            actor=admin,
            kind="development",
            title="数据开发利用协议",
            text=DEVELOPMENT_AGREEMENT,
        )
        sha = dev_agreement.sha256
    for username in ("dev-shuzhi", "dev-xinyuan"):
        with ctx.session() as s:
            reviews.sign_agreement(
                session=s, actor=ctx.actor(username), kind="development", sha256=sha
            )
    specs = ctx.state["component_specs"]
    subjects = max(10, min(200, ctx.scale // 4))
    total = 2 * len(specs)
    done = 0
    runs: dict[str, dict[str, Any]] = {}
    for code, spec_id in specs.items():
        dev = ctx.actor(COMPONENTS[code][1])
        with ctx.session() as s:
            sample = samples.issue_sample(
                session=s,
                actor=admin,
                data_dir=ctx.data_dir,
                spec_id=spec_id,
                subjects=subjects,
                days=30,
            )
            sample_id = sample.id
        done += 1
        ctx.progress("development", done, total, f"{code}: sample #{sample_id}")
        with ctx.session() as s:
            builds.save_definition(
                session=s, actor=dev, spec_id=spec_id, definition=_definition(s, code)
            )
            run = builds.dev_run(session=s, actor=dev, spec_id=spec_id, sample_id=sample_id)
            if run.status != "ok":
                raise DemoError(
                    f"the dev run of {code} was {run.status}: {run.violations or run.message}"
                )
            runs[code] = {"sample_id": sample_id, "dev_run_id": run.id, "rows": run.rows}
        done += 1
        ctx.progress("development", done, total, f"{code}: dev run ok ({run.rows} rows)")
    ctx.state["dev_runs"] = runs


# ---------------------------------------------------------------- step 5: builds


def _step_builds(ctx: _Ctx) -> None:
    from yuanjian.components import builds

    admin, reviewer = ctx.actor("op-admin"), ctx.actor("op-reviewer")
    specs = ctx.state["component_specs"]
    out: dict[str, dict[str, Any]] = {}
    done = 0
    for code, spec_id in specs.items():
        ctx.progress("builds", done, 2 * len(specs), f"{code}: building")
        with ctx.session() as s:
            b = builds.start_build(
                session=s,
                actor=admin,
                data_dir=ctx.data_dir,
                spec_id=spec_id,
                engine="duckdb",
                wait=True,
            )
            s.refresh(b)
            if b.status != "succeeded":
                raise DemoError(f"the production build of {code} {b.status}: {b.error}")
            if not b.checks.get("ok"):
                failed = sorted(
                    k for k, v in b.checks.items() if isinstance(v, dict) and not v.get("ok", True)
                )
                raise DemoError(f"the compliance checks of {code} failed: {', '.join(failed)}")
            build_id, rows = b.id, b.rows
        done += 1
        ctx.progress("builds", done, 2 * len(specs), f"{code}: {rows} rows, checks passed")
        with ctx.session() as s:
            b = builds.review_build(
                session=s, actor=reviewer, build_id=build_id, decision="approve"
            )
            out[code] = {"build_id": build_id, "rows": rows, "version_id": b.version_id}
        done += 1
        ctx.progress("builds", done, 2 * len(specs), f"{code}: published")
    ctx.state["builds"] = out


# ---------------------------------------------------------------- step 6: products


def credit_product_doc(start: date) -> dict[str, Any]:
    """The bank's product spec: SME credit lending on two components."""
    return {
        "name": "小微企业经营贷智能审批",
        "code": "sme_operating_loan",
        "components": [
            {"code": "enterprise_operating_score", "version": 1, "fields": ["score_band"]},
            {
                "code": "enterprise_tax_credit",
                "version": 1,
                "fields": ["eval_year", "credit_grade"],
            },
        ],
        "scenario": "credit_lending",
        "purpose": "credit_lending",
        "end_users": "本行授信审批岗，服务郑州市小微企业经营贷申请",
        "risk_controls": [
            "仅在客户提交贷款申请并授权后查询",
            "结果仅用于授信审批，不对外提供",
            "查询日志按月核对",
        ],
        "period": {"start": start.isoformat(), "end": (start + timedelta(days=730)).isoformat()},
        "expected_calls_per_day": 5000,
        "quotas": {
            "calls_per_day": 5000,
            "subjects_per_day": 20000,
            "batch_records": 1000,
            "rate_per_second": 500,
        },
        "delivery_modes": ["api"],
    }


def insurance_product_doc(start: date) -> dict[str, Any]:
    """The insurer's product spec: group-insurance underwriting on the contribution band."""
    return {
        "name": "企业团体保险承保核验",
        "code": "group_insurance_underwriting",
        "components": [
            {
                "code": "social_insurance_contribution_band",
                "version": 1,
                "fields": ["headcount_band", "contribution_band", "arrears_months_12m"],
            }
        ],
        "scenario": "insurance_underwriting",
        "purpose": "insurance_underwriting",
        "end_users": "本公司团体保险核保人员",
        "risk_controls": ["仅在企业投保时查询", "核保结论不含原始缴费数据"],
        "period": {"start": start.isoformat(), "end": (start + timedelta(days=365)).isoformat()},
        "expected_calls_per_day": 2000,
        "quotas": {
            "calls_per_day": 2000,
            "subjects_per_day": 20000,
            "batch_records": 500,
            "rate_per_second": 500,
        },
        "delivery_modes": ["api"],
    }


PRODUCTS = (("pd-bank", credit_product_doc), ("pd-insurer", insurance_product_doc))


def _step_products(ctx: _Ctx) -> None:
    from yuanjian.products import credentials
    from yuanjian.products.models import Licence
    from yuanjian.reviews import service as reviews

    admin = ctx.actor("op-admin")
    with ctx.session() as s:
        agreement = reviews.publish_agreement(
            session=s,
            actor=admin,
            kind="product_use",
            title="数据产品使用协议",
            text=PRODUCT_USE_AGREEMENT,
        )
        sha = agreement.sha256
    today = date.today()
    out: dict[str, dict[str, Any]] = {}
    creds: list[dict[str, str]] = []
    for i, (username, factory) in enumerate(PRODUCTS):
        pd = ctx.actor(username)
        doc = factory(today)
        with ctx.session() as s:
            spec, rev = reviews.create_spec(session=s, actor=pd, kind="product", document=doc)
            spec_id, rev_id = spec.id, rev.id
        _submit(ctx, pd, rev_id)
        _review(ctx, rev_id)
        with ctx.session() as s:
            reviews.sign_agreement(session=s, actor=pd, kind="product_use", sha256=sha)
            lic = s.scalar(
                select(Licence).where(Licence.spec_id == spec_id).order_by(Licence.id.desc())
            )
            if lic is None or lic.status != "active":
                raise DemoError(f"the licence of {doc['code']} is not active")
            cred, secret = credentials.create_credential(
                session=s, actor=pd, spec_id=spec_id, name="核心业务系统"
            )
            out[doc["code"]] = {
                "spec_id": spec_id,
                "licence_id": lic.id,
                "purpose": doc["purpose"],
                "client_id": cred.client_id,
                "components": {c["code"]: c["fields"] for c in doc["components"]},
            }
            creds.append(
                {"client_id": cred.client_id, "client_secret": secret, "product": doc["code"]}
            )
        ctx.progress("products", i + 1, len(PRODUCTS), f"{doc['code']}: licence #{lic.id}")
    ctx.state["products"] = out
    ctx.secrets = {c["product"]: c["client_secret"] for c in creds}
    logins, _ = read_logins(ctx.settings)
    _write_private(_logins_path(ctx.settings), _logins_text(logins, creds))


# ---------------------------------------------------------------- step 7: serving


def _plan_calls(ctx: _Ctx) -> list[dict[str, Any]]:
    """The call script: mostly good lookups and batches, some unknown keys, some refusals."""
    import random

    rnd = random.Random(SEED)
    keys = ctx.keys
    unknown = [random_credit_code() for _ in range(20)]

    def key() -> str:
        return rnd.choice(unknown) if rnd.random() < 0.03 else rnd.choice(keys)

    bank, ins = "sme_operating_loan", "group_insurance_underwriting"
    score, credit, band = (
        "enterprise_operating_score",
        "enterprise_tax_credit",
        "social_insurance_contribution_band",
    )
    calls: list[dict[str, Any]] = []

    def add(n: int, **call: Any) -> None:
        calls.extend(dict(call) for _ in range(n))

    add(540, product=bank, component=score, purpose="credit_lending", mode="get")
    add(120, product=bank, component=credit, purpose="credit_lending", mode="get")
    add(50, product=bank, component=score, purpose="credit_lending", mode="batch", size=20)
    add(20, product=bank, component=credit, purpose="credit_lending", mode="batch", size=10)
    add(25, product=bank, component=score, purpose="insurance_underwriting", mode="get")
    add(5, product=bank, component=score, purpose=None, mode="get")
    add(15, product=bank, component=band, purpose="credit_lending", mode="get")
    add(
        10,
        product=bank,
        component=score,
        purpose="credit_lending",
        mode="get",
        fields="operating_score",
    )
    add(160, product=ins, component=band, purpose="insurance_underwriting", mode="get")
    add(20, product=ins, component=band, purpose="insurance_underwriting", mode="batch", size=25)
    add(10, product=ins, component=band, purpose="credit_lending", mode="get")
    add(10, product=ins, component=credit, purpose="insurance_underwriting", mode="get")
    add(15, product=None, component=score, purpose="credit_lending", mode="get")  # bad token
    assert len(calls) == SERVING_CALLS
    rnd.shuffle(calls)
    for c in calls:
        c["keys"] = [key() for _ in range(c.get("size", 1))]
    return calls


def _step_serving(ctx: _Ctx) -> None:
    from fastapi.testclient import TestClient

    from yuanjian.web.app import create_app

    products = ctx.state["products"]
    secrets_by_product = ctx.secrets
    calls = _plan_calls(ctx)
    outcomes: dict[str, int] = {}
    app = create_app(ctx.settings, instance=ctx.inst)
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=True) as client:
        tokens: dict[str | None, str] = {None: "Bearer not-a-valid-token"}
        for code, p in products.items():
            r = client.post(
                "/oauth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": p["client_id"],
                    "client_secret": secrets_by_product[code],
                },
            )
            if r.status_code != 200:
                raise DemoError(f"token exchange for {code} failed: {r.status_code} {r.text}")
            tokens[code] = f"Bearer {r.json()['access_token']}"
        for i, c in enumerate(calls, 1):
            headers = {"Authorization": tokens[c["product"]]}
            if c["mode"] == "get":
                params = {"purpose": c["purpose"]} if c["purpose"] else {}
                if c.get("fields"):
                    params["fields"] = c["fields"]
                r = client.get(
                    f"/serve/v1/components/{c['component']}/subjects/{c['keys'][0]}",
                    params=params,
                    headers=headers,
                )
            else:
                r = client.post(
                    f"/serve/v1/components/{c['component']}/lookup",
                    json={"purpose": c["purpose"], "keys": c["keys"]},
                    headers=headers,
                )
            label = str(r.status_code)
            if r.status_code >= 400:
                with suppress(ValueError):
                    label = r.json().get("code") or label
            outcomes[label] = outcomes.get(label, 0) + 1
            if i % 50 == 0 or i == len(calls):
                ctx.progress("serving", i, len(calls), f"{i} calls")
    ctx.state["serving"] = {"calls": len(calls), "responses": dict(sorted(outcomes.items()))}


# ---------------------------------------------------------------- steps 8-9: oversight


def _optional(ctx: _Ctx, step: str, module: str, names: tuple[str, ...]) -> list[Any] | None:
    """The named functions of an oversight module, or None (recorded as skipped) if absent."""
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError:
        mod = None
    missing = [n for n in names if not callable(getattr(mod, n, None))]
    if missing:
        ctx.skipped.append(f"{step}: {module}.{', '.join(missing)} not available")
        ctx.progress(step, 1, 1, "skipped: not available")
        return None
    return [getattr(mod, n) for n in names]


def _step_report(ctx: _Ctx) -> None:
    found = _optional(ctx, "report", "yuanjian.oversight.reports", ("generate_report",))
    if found is None:
        return
    (generate,) = found
    admin = ctx.actor("op-admin")
    month = date.today().replace(day=1)
    with ctx.session() as s:
        report = generate(
            session=s, actor=admin, data_dir=ctx.data_dir, period_kind="month", period_start=month
        )
        info: dict[str, Any] = {"report_id": report.id, "period": month.isoformat()[:7]}
    ctx.progress("report", 1, 3, f"report #{info['report_id']} generated")
    more = _optional(ctx, "report", "yuanjian.oversight.reports", ("submit_report",))
    if more is not None:
        with ctx.session() as s:
            more[0](session=s, actor=admin, report_id=info["report_id"])
        info["submitted"] = True
        ctx.progress("report", 2, 3, "submitted to the regulator")
        ack = _optional(ctx, "report", "yuanjian.oversight.reports", ("acknowledge_report",))
        if ack is not None:
            with ctx.session() as s:
                ack[0](
                    session=s,
                    actor=ctx.actor("reg-viewer"),
                    report_id=info["report_id"],
                    note="已收到本月报告，调用拒绝情况请在下月报告中继续说明。",
                )
            info["acknowledged"] = True
    ctx.state["report"] = info
    ctx.progress("report", 3, 3, f"report #{info['report_id']}")


EMERGENCY_PLAN = (
    "数据安全事件应急预案（示例）\n"
    "一、适用范围：数据元件开发、样本发放、生产构建和调用服务中的数据泄露、未授权访问、"
    "异常调用和系统故障。\n"
    "二、处置流程：发现并登记 → 一小时内研判分级 → 暂停受影响的许可、元件并撤销样本 → "
    "通知受影响的产品开发商和市数据主管部门 → 调查取证（审计日志证明） → 恢复 → 结案报告。\n"
    "三、演练：每半年至少一次，演练结果报送监管部门。\n"
)


def _step_incident(ctx: _Ctx) -> None:
    found = _optional(
        ctx,
        "incident",
        "yuanjian.oversight.security",
        ("create_plan", "schedule_drill", "record_drill", "add_staff", "record_training"),
    )
    if found is None:
        return
    create_plan, schedule_drill, record_drill, add_staff, record_training = found
    inc_fns = _optional(
        ctx,
        "incident",
        "yuanjian.oversight.incidents",
        ("report_incident", "contain", "notify", "close_incident"),
    )
    if inc_fns is None:
        return
    report_incident, contain, notify, close_incident = inc_fns
    from datetime import UTC, datetime

    admin, steward = ctx.actor("op-admin"), ctx.actor("op-steward")
    today = date.today()
    with ctx.session() as s:
        staff = add_staff(
            session=s,
            actor=admin,
            name="王敏",
            duty="数据安全负责人",
            contact="security@example.cn",
            user_id=admin.user_id,
        )
        record_training(
            session=s,
            actor=admin,
            staff_id=staff.id,
            course="数据安全事件应急处置培训",
            completed_on=today,
            hours=4,
        )
        plan = create_plan(
            session=s,
            actor=admin,
            title="数据安全事件应急预案",
            scope="平台全部数据资源、样本、元件和调用服务",
            document=EMERGENCY_PLAN,
        )
        drill = schedule_drill(
            session=s, actor=admin, plan_id=plan.id, title="异常调用处置演练", scheduled_for=today
        )
        drill_id, plan_id = drill.id, plan.id
    ctx.progress("incident", 1, 5, f"plan #{plan_id}, drill #{drill_id}")
    bank = ctx.state["products"]["sme_operating_loan"]
    with ctx.session() as s:
        inc = report_incident(
            session=s,
            actor=steward,
            title="演练：信用贷产品异常批量调用",
            kind="abnormal_calls",
            severity="medium",
            description="演练场景：银行客户端在短时间内以错误用途和超出许可的字段反复调用经营状况评分。",
            discovered_at=datetime.now(UTC),
            components=["enterprise_operating_score"],
            licences=[bank["licence_id"]],
            subjects=25,
            drill_id=drill_id,
        )
        inc_id = inc.id
    ctx.progress("incident", 2, 5, f"incident #{inc_id} reported")
    with ctx.session() as s:
        contain(session=s, actor=admin, incident_id=inc_id, reason="演练：模拟暂停许可和元件")
    with ctx.session() as s:
        notified = notify(session=s, actor=admin, settings=ctx.settings, incident_id=inc_id)
    ctx.progress("incident", 3, 5, f"contained; {notified.get('users', 0)} users notified")
    with ctx.session() as s:
        close_incident(
            session=s,
            actor=admin,
            incident_id=inc_id,
            report=(
                "演练结案报告：从登记到处置完成用时不足十分钟；审计日志完整记录了拒绝的调用；"
                "改进项：为异常调用设置自动告警阈值。"
            ),
        )
    with ctx.session() as s:
        record_drill(
            session=s,
            actor=admin,
            drill_id=drill_id,
            held_on=today,
            participants=["王敏", "陈磊", "赵静"],
            findings="处置流程可行；通知到达产品开发商和监管部门；邮件因未配置 SMTP 未发送。",
        )
    ctx.state["incident"] = {"plan_id": plan_id, "drill_id": drill_id, "incident_id": inc_id}
    ctx.progress("incident", 5, 5, f"drill #{drill_id} held, incident #{inc_id} closed")


# ---------------------------------------------------------------- step 10: audit


def _step_audit(ctx: _Ctx) -> None:
    from yuanjian.audit import log

    with ctx.session() as s:
        log.issue_checkpoint(s, ctx.inst.audit)
        s.commit()
    with ctx.session() as s:
        report = log.verify_log(s, ctx.inst.audit.verifier)
    if not report.ok:
        raise DemoError(f"the audit log does not verify: {report.problems[:3]}")
    ctx.state["audit"] = {"size": report.size, "checkpoints": report.checkpoints_checked}
    ctx.progress("audit", 1, 1, f"{report.size} entries verified")


_STEP_FUNCS: dict[str, Callable[[_Ctx], None]] = {
    "people": _step_people,
    "data": _step_data,
    "specs": _step_specs,
    "development": _step_development,
    "builds": _step_builds,
    "products": _step_products,
    "serving": _step_serving,
    "report": _step_report,
    "incident": _step_incident,
    "audit": _step_audit,
}


def _summary(ctx: _Ctx) -> dict[str, Any]:
    from yuanjian.audit.models import AuditEntry
    from yuanjian.components.models import ComponentVersion

    with ctx.session() as s:
        calls = dict(
            s.execute(
                select(AuditEntry.outcome, func.count())
                .where(AuditEntry.action == "component.call")
                .group_by(AuditEntry.outcome)
            ).all()
        )
        published = s.scalar(
            select(func.count())
            .select_from(ComponentVersion)
            .where(ComponentVersion.status == "published")
        )
    return {
        "organizations": len(ORGS) + 1,
        "users": len(USERS),
        "resources": len(RESOURCES),
        "published_components": published,
        "builds": ctx.state.get("builds", {}),
        "products": {k: v["licence_id"] for k, v in ctx.state.get("products", {}).items()},
        "serving": ctx.state.get("serving", {}),
        "component_calls": calls,
        "audit": ctx.state.get("audit", {}),
    }


def result_dict(result: DemoResult) -> dict[str, Any]:
    """JSON form of a result (passwords included: the CLI shows them to the operator)."""
    d = asdict(result)
    d["logins_path"] = str(result.logins_path)
    return d

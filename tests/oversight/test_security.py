"""The security system (Art. 27): plans, drills, staff and training, overdue reminders, CLI."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from tests.conftest import World, token_client, web_login
from tests.oversight.conftest import actor_of
from yuanjian.audit.models import AuditEntry
from yuanjian.cli import app as cli_app
from yuanjian.errors import Conflict, PermissionDenied, ValidationFailed
from yuanjian.identity.actor import Actor
from yuanjian.identity.permissions import Role
from yuanjian.instance import Instance
from yuanjian.oversight import security
from yuanjian.reviews.models import Notification

TODAY = date.today()


@pytest.fixture
def admin(instance: Instance, world: World) -> Actor:
    """An operator administrator."""
    return actor_of(instance, world.user(Role.OPERATOR_ADMIN).username)


def _audit(instance: Instance, action: str, outcome: str = "allowed") -> list[dict]:
    with instance.sessions() as s:
        rows = s.scalars(
            select(AuditEntry)
            .where(AuditEntry.action == action, AuditEntry.outcome == outcome)
            .order_by(AuditEntry.idx)
        )
        return [json.loads(e.payload) for e in rows]


def _plan(s, actor: Actor, **fields):
    """Adopt a plan; fields not given are a valid "x"."""
    return security.create_plan(
        session=s, actor=actor, **{"title": "x", "scope": "x", "document": "x", **fields}
    )


def _drill(s, actor: Actor, plan_id: int, scheduled_for, title: str = "x"):
    return security.schedule_drill(
        session=s, actor=actor, plan_id=plan_id, title=title, scheduled_for=scheduled_for
    )


def _hold(s, actor: Actor, drill_id: int, *, held_on=TODAY, participants="王敏", findings="x"):
    """Record a drill as held; what is not given is valid."""
    return security.record_drill(
        session=s,
        actor=actor,
        drill_id=drill_id,
        held_on=held_on,
        participants=participants,
        findings=findings,
    )


def _train(s, actor: Actor, staff_id: int, *, course="x", completed_on=TODAY, **kw):
    """Record a training; ``hours`` is the service's default unless given."""
    return security.record_training(
        session=s, actor=actor, staff_id=staff_id, course=course, completed_on=completed_on, **kw
    )


def _system(instance: Instance, admin: Actor) -> dict[str, int]:
    """A plan (review yearly, drill every 90 days), a scheduled drill, a trained staff member."""
    with instance.sessions() as s:
        plan = _plan(
            s,
            admin,
            title="数据安全事件应急预案",
            scope="平台全部数据资源与服务",
            document="一、组织机构\n二、响应流程",
            review_every_days=365,
            drill_every_days=90,
        )
        drill = _drill(s, admin, plan.id, TODAY + timedelta(days=10), title="季度演练")
        staff = security.add_staff(
            session=s,
            actor=admin,
            name="王敏",
            duty="数据安全负责人",
            contact="wangmin@example.cn",
            training_every_days=180,
        )
        _train(s, admin, staff.id, course="应急处置培训", hours=4)
        return {"plan": plan.id, "drill": drill.id, "staff": staff.id}


def test_plans_are_versioned_and_every_version_is_kept(instance: Instance, admin: Actor) -> None:
    ids = _system(instance, admin)
    with instance.sessions() as s:
        plan = security.revise_plan(
            session=s,
            actor=admin,
            plan_id=ids["plan"],
            document="一、组织机构\n二、响应流程\n三、演练",
        )
        assert plan.version == 2
        history = security.plan_history(session=s, actor=admin, plan_id=plan.id)
    assert [h["version"] for h in history] == [1, 2]
    assert history[0]["document"] == "一、组织机构\n二、响应流程"
    assert history[1]["document"].endswith("三、演练")
    with instance.sessions() as s:
        security.review_plan(session=s, actor=admin, plan_id=ids["plan"], note="复审：继续有效")
        with pytest.raises(ValidationFailed) as err:
            security.review_plan(session=s, actor=admin, plan_id=ids["plan"], note="")
        assert err.value.field == "note"
    assert _audit(instance, "security.plan.create") and _audit(instance, "security.plan.review")


def test_bad_input_names_the_field(instance: Instance, admin: Actor) -> None:
    ids = _system(instance, admin)
    cases = [
        (lambda s: _plan(s, admin, title=""), "title"),
        (lambda s: _plan(s, admin, review_every_days=0), "review_every_days"),
        (lambda s: _drill(s, admin, ids["plan"], "明天"), "scheduled_for"),
        (lambda s: _drill(s, admin, ids["plan"], TODAY - timedelta(days=1)), "scheduled_for"),
        (lambda s: _drill(s, admin, 999, TODAY), "plan_id"),
        (lambda s: _hold(s, admin, ids["drill"], participants=""), "participants"),
        (lambda s: _hold(s, admin, ids["drill"], held_on=TODAY + timedelta(days=3)), "held_on"),
        (lambda s: _hold(s, admin, ids["drill"], findings=" "), "findings"),
        (
            lambda s: security.add_staff(session=s, actor=admin, name="x", duty="x", contact=""),
            "contact",
        ),
        (lambda s: _train(s, admin, ids["staff"], completed_on="x"), "completed_on"),
        (lambda s: _train(s, admin, ids["staff"], hours=0), "hours"),
    ]
    for attempt, field in cases:
        with instance.sessions() as s, pytest.raises(ValidationFailed) as err:
            attempt(s)
        assert err.value.field == field, err.value.message


def test_overdue_reminders_of_each_kind(instance: Instance, admin: Actor) -> None:
    ids = _system(instance, admin)
    with instance.sessions() as s:
        assert security.overdue(s, TODAY) == []
        # Eleven days on, the scheduled drill is past its date.
        kinds = {(r.kind, r.object_id) for r in security.overdue(s, TODAY + timedelta(days=11))}
        assert kinds == {("drill_overdue", ids["drill"])}
        # 91 days on, the plan has had no drill within its 90 days.
        kinds = {r.kind for r in security.overdue(s, TODAY + timedelta(days=91))}
        assert kinds == {"drill_overdue", "plan_drill"}
        # 181 days on, the staff member's training is too old.
        kinds = {r.kind for r in security.overdue(s, TODAY + timedelta(days=181))}
        assert kinds == {"drill_overdue", "plan_drill", "training"}
        # 366 days on, the plan is also past its review date.
        late = security.overdue(s, TODAY + timedelta(days=366))
        assert {r.kind for r in late} == {"drill_overdue", "plan_drill", "training", "plan_review"}
        review = next(r for r in late if r.kind == "plan_review")
        assert review.due == TODAY + timedelta(days=365) and review.days_overdue == 1
        assert review.link == f"/security/plans#plan-{ids['plan']}"
    # Holding the drill clears both drill reminders (the plan's clock restarts).
    with instance.sessions() as s:
        _hold(
            s,
            admin,
            ids["drill"],
            participants="王敏，陈磊",
            findings="通知链路畅通；改进：补充夜间值班表。",
        )
        with pytest.raises(Conflict):
            _hold(s, admin, ids["drill"], findings="再次")
        kinds = {r.kind for r in security.overdue(s, TODAY + timedelta(days=60))}
        assert kinds == set()
    # A staff member without any training is overdue from the day after joining.
    with instance.sessions() as s:
        new = security.add_staff(
            session=s, actor=admin, name="陈磊", duty="值班", contact="分机 8021"
        )
        r = [x for x in security.overdue(s, TODAY + timedelta(days=1)) if x.object_id == new.id]
        assert [x.kind for x in r] == ["training"] and "尚无培训记录" in r[0].text


def _age(instance: Instance, ids: dict[str, int], days: int) -> None:
    """Make the system ``days`` older: the plan, its scheduled drill, the staff's training."""
    from yuanjian.oversight.models import Drill, EmergencyPlan, TrainingRecord

    with instance.sessions() as s:
        plan = s.get(EmergencyPlan, ids["plan"])
        plan.created_at -= timedelta(days=days)
        plan.reviewed_on -= timedelta(days=days)
        s.get(Drill, ids["drill"]).scheduled_for -= timedelta(days=days)
        for t in s.scalars(select(TrainingRecord)):
            t.completed_on -= timedelta(days=days)
        s.commit()


def test_reminders_reach_operator_admins_once_per_item_per_day(
    instance: Instance, admin: Actor, world: World
) -> None:
    ids = _system(instance, admin)
    second_admin = world.user(Role.OPERATOR_ADMIN)
    _age(instance, ids, 181)  # drill_overdue, plan_drill, training
    with instance.sessions() as s:
        out = security.deliver_reminders(session=s, actor=admin)
    assert sorted(r["kind"] for r in out) == ["drill_overdue", "plan_drill", "training"]
    admins = _count_admins(instance)
    assert all(r["notified"] == admins for r in out) and admins >= 2
    with instance.sessions() as s:
        again = security.deliver_reminders(session=s, actor=admin)
    assert [r["notified"] for r in again] == [0, 0, 0]
    with instance.sessions() as s:
        mine = list(
            s.scalars(
                select(Notification.kind).where(
                    Notification.user_id == second_admin.user_id,
                    Notification.kind.like("security.%"),
                )
            )
        )
    assert sorted(mine) == ["security.drill_overdue", "security.plan_drill", "security.training"]
    delivered = _audit(instance, "security.reminders")
    assert len(delivered) == 1 and len(delivered[0]["detail"]["items"]) == 3
    # The next day they are told again (yesterday's notices no longer count).
    with instance.sessions() as s:
        for n in s.scalars(select(Notification).where(Notification.kind.like("security.%"))):
            n.created_at -= timedelta(days=1)
        s.commit()
    with instance.sessions() as s:
        next_day = security.deliver_reminders(session=s, actor=admin)
    assert [r["notified"] for r in next_day] == [admins] * 3


def _count_admins(instance: Instance) -> int:
    from yuanjian.reviews import service as reviews

    with instance.sessions() as s:
        return len(reviews._operator_admins(s))


def test_the_server_tick_delivers_reminders(instance: Instance, admin: Actor) -> None:
    from yuanjian.web.app import _checkpoint_tick

    with instance.sessions() as s:
        security.add_staff(
            session=s, actor=admin, name="赵静", duty="审计", contact="zj@example.cn"
        )
        staff = security.list_staff(session=s, actor=admin)[0]
        # Joined a while ago, never trained: overdue today.
        staff.created_at = staff.created_at - timedelta(days=3)
        s.commit()
    security._last_tick = 0.0
    _checkpoint_tick(instance)
    with instance.sessions() as s:
        n = s.scalar(
            select(func.count())
            .select_from(Notification)
            .where(Notification.kind == "security.training")
        )
    assert n == _count_admins(instance)
    # The next tick within the check interval does nothing at all.
    _checkpoint_tick(instance)
    assert len(_audit(instance, "security.reminders")) == 1


def test_component_developer_cannot_touch_the_security_system(
    instance: Instance, admin: Actor, world: World
) -> None:
    ids = _system(instance, admin)
    dev = actor_of(instance, world.user(Role.COMPONENT_DEVELOPER).username)
    attempts = {
        "security.plan.create": lambda s: _plan(s, dev),
        "security.plan.list": lambda s: security.list_plans(session=s, actor=dev),
        "security.drill.record": lambda s: _hold(s, dev, ids["drill"], participants="x"),
        "security.training.record": lambda s: _train(s, dev, ids["staff"]),
        "security.reminders": lambda s: security.deliver_reminders(session=s, actor=dev),
    }
    for action, attempt in attempts.items():
        with instance.sessions() as s, pytest.raises(PermissionDenied):
            attempt(s)
        assert _audit(instance, action, "denied"), action
    # The regulator reads the security system but does not change it.
    reg = actor_of(instance, world.user(Role.REGULATOR_VIEWER).username)
    with instance.sessions() as s:
        assert [p.id for p in security.list_plans(session=s, actor=reg)] == [ids["plan"]]
        with pytest.raises(PermissionDenied):
            security.cancel_drill(session=s, actor=reg, drill_id=ids["drill"], reason="x")


def test_cli_incidents_and_reminders(instance: Instance, admin: Actor) -> None:
    _system(instance, admin)
    runner = CliRunner()
    env = {
        "YUANJIAN_DATA_DIR": str(instance.settings.data_dir),
        "YUANJIAN_DATABASE_URL": instance.settings.effective_database_url,
    }

    def run(*args: str):
        return runner.invoke(cli_app, list(args), env=env)

    r = run(
        "incidents",
        "report",
        "--title",
        "机房断电",
        "--kind",
        "system_failure",
        "--severity",
        "medium",
        "--description",
        "备用电源切换失败，服务中断 20 分钟。",
        "--subjects",
        "0",
        "--json",
    )
    assert r.exit_code == 0, r.output
    inc_id = json.loads(r.output)["id"]
    bad = run(
        "incidents",
        "report",
        "--title",
        "x",
        "--kind",
        "martian",
        "--severity",
        "low",
        "--description",
        "x",
    )
    assert bad.exit_code == 2 and "kind" in bad.output
    bad = run(
        "incidents",
        "report",
        "--title",
        "x",
        "--kind",
        "other",
        "--severity",
        "low",
        "--description",
        "x",
        "--component",
        "no_such_component",
    )
    assert bad.exit_code == 2 and "components" in bad.output
    listed = run("incidents", "list", "--json")
    assert [i["id"] for i in json.loads(listed.output)] == [inc_id]
    assert "机房断电" in run("incidents", "list").output
    shown = run("incidents", "show", str(inc_id))
    assert shown.exit_code == 0 and "reported" in shown.output
    assert run("incidents", "show", "424242").exit_code == 2
    assert json.loads(run("incidents", "show", str(inc_id), "--json").output)["timeline"]
    # Nothing is overdue today; the command says so and exits 0.
    r = run("security", "reminders")
    assert r.exit_code == 0 and "Nothing is overdue" in r.output
    with instance.sessions() as s:
        security.add_staff(session=s, actor=admin, name="新同事", duty="值班", contact="x@y.cn")
        staff = next(p for p in security.list_staff(session=s, actor=admin) if p.name == "新同事")
        staff.created_at = staff.created_at - timedelta(days=2)
        s.commit()
    dry = json.loads(run("security", "reminders", "--dry-run", "--json").output)
    assert [(x["kind"], x["notified"]) for x in dry] == [("training", 0)]
    r = run("security", "reminders", "--json")
    assert r.exit_code == 0 and json.loads(r.output)[0]["notified"] >= 1
    assert json.loads(run("security", "reminders", "--json").output)[0]["notified"] == 0


def test_security_pages_show_overdue_badges(
    app, instance: Instance, admin: Actor, world: World
) -> None:
    ids = _system(instance, admin)
    person = world.user(Role.OPERATOR_ADMIN)
    web = web_login(app, person.username, person.password)
    home = web.get("/")
    assert 'href="/security"' in home.text and 'href="/incidents"' in home.text
    for path in (
        "/security",
        "/security/plans",
        "/security/drills",
        "/security/staff",
        "/security/training",
        f"/security/plans/{ids['plan']}",
    ):
        r = web.get(path)
        assert r.status_code == 200, path
    assert "数据安全事件应急预案" in web.get("/security/plans").text
    # A plan adopted long ago with no drill: badges on the overview and the plans page.
    r = web.post(
        "/security/plans",
        data={
            "title": "勒索病毒应急预案",
            "scope": "生产环境",
            "document": "隔离、恢复、报告",
            "review_every_days": "30",
            "drill_every_days": "30",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    from yuanjian.oversight.models import EmergencyPlan

    with instance.sessions() as s:
        plan = s.scalar(select(EmergencyPlan).where(EmergencyPlan.title == "勒索病毒应急预案"))
        plan.created_at = plan.created_at - timedelta(days=40)
        plan.reviewed_on = TODAY - timedelta(days=40)
        s.commit()
        plan_id = plan.id
    page = web.get("/security/plans").text
    row = page.split(f'id="plan-{plan_id}"')[1].split("</tr>")[0]
    assert row.count("badge overdue") == 2 and "复审逾期" in row and "演练逾期" in row
    overview = web.get("/security").text
    assert 'id="overdue-count">2<' in overview
    r = web.post("/security/plans", data={"title": "", "scope": "x", "document": "x"})
    assert r.status_code == 422 and "title" in r.text
    r = web.post(
        f"/security/drills/{ids['drill']}/held",
        data={"held_on": str(TODAY), "participants": "王敏", "findings": "顺利"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    r = web.post(
        f"/security/staff/{ids['staff']}/training",
        data={"course": "复训", "completed_on": str(TODAY), "hours": "2"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert "复训" in web.get("/security/training").text
    r = web.post("/security/reminders", follow_redirects=False)
    assert r.status_code == 303
    # The API lists the same overdue items.
    api = token_client(app, instance, person.username)
    kinds = sorted(x["kind"] for x in api.get("/api/v1/security/overdue").json())
    assert kinds == ["plan_drill", "plan_review"]
    # English on request.
    assert "Emergency plans" in web.get("/security/plans?lang=en").text

"""The resources and demo-data commands through Typer's runner."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from yuanjian.cli import app

runner = CliRunner()


def test_demo_data_then_ingest_gbk_with_chinese_headers(tmp_path: Path, empty_db_url: str) -> None:
    env = {"YUANJIAN_DATA_DIR": str(tmp_path / "data"), "YUANJIAN_DATABASE_URL": empty_db_url}
    assert (
        runner.invoke(app, ["init", "--admin-password", "Admin-pass-2026"], env=env).exit_code == 0
    )
    r = runner.invoke(
        app,
        [
            "users",
            "create",
            "--org",
            "1",
            "--username",
            "steward",
            "--name",
            "管",
            "--role",
            "operator_data_steward",
        ],
        env=env,
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app,
        [
            "demo-data",
            "--scale",
            "300",
            "--out",
            str(tmp_path / "city"),
            "--format",
            "parquet,csv",
            "--encoding",
            "gbk",
            "--headers",
            "zh",
            "--dirty",
            "0.01",
            "--table",
            "enterprise_registration",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    files = json.loads(r.output)["enterprise_registration"]["files"]
    dirty = json.loads(Path(files["dirty"]).read_text(encoding="utf-8"))
    r = runner.invoke(
        app,
        [
            "resources",
            "create",
            "--code",
            "enterprise_registration",
            "--title",
            "企业登记",
            "--kind",
            "public",
            "--source",
            "市市场监管局",
            "--subject-type",
            "enterprise",
            "--steward",
            "steward",
            "--max-bad-ratio",
            "0.05",
        ],
        env=env,
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app, ["resources", "ingest", "enterprise_registration", files["csv"], "--json"], env=env
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    structural = [d for d in dirty["rows"] if d["reason"] in ("malformed_date", "ragged_row")]
    assert out["bad_rows"] >= len(structural) > 0
    assert out["rows"] + out["bad_rows"] == 300
    r = runner.invoke(app, ["resources", "show", "enterprise_registration", "--json"], env=env)
    fields = {f["name"]: f for f in json.loads(r.output)["fields"]}
    assert fields["法定代表人身份证号"]["label"] == "cn_resident_id"
    assert fields["统一社会信用代码"]["label"] == "cn_uscc"
    r = runner.invoke(
        app,
        [
            "resources",
            "override",
            "enterprise_registration",
            "住所",
            "--grade",
            "important",
            "--reason",
            "详细住址",
        ],
        env=env,
    )
    assert r.exit_code == 0 and "important" in r.output


def test_bad_input_names_the_problem(tmp_path: Path, empty_db_url: str) -> None:
    env = {"YUANJIAN_DATA_DIR": str(tmp_path / "data"), "YUANJIAN_DATABASE_URL": empty_db_url}
    runner.invoke(app, ["init", "--admin-password", "Admin-pass-2026"], env=env)
    r = runner.invoke(
        app,
        [
            "resources",
            "create",
            "--code",
            "Bad Code",
            "--title",
            "t",
            "--kind",
            "public",
            "--source",
            "s",
            "--steward",
            "admin",
        ],
        env=env,
    )
    assert r.exit_code == 2 and "code" in r.output
    r = runner.invoke(app, ["resources", "ingest", "nope", str(tmp_path / "x.csv")], env=env)
    assert r.exit_code == 2
    r = runner.invoke(app, ["demo-data", "--scale", "0", "--out", str(tmp_path / "c")])
    assert r.exit_code == 2 and "scale" in r.output

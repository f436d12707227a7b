"""Settings: the serving commit linger's per-mode defaults; bad settings named by variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from yuanjian.config import Settings, SettingsError, load_settings
from yuanjian.web.asgi import make_app


def test_unset_linger_is_zero_for_the_writer_and_two_ms_for_threads(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.serving_commit_linger_ms is None
    assert settings.commit_linger(writer_process=True) == 0.0
    assert settings.commit_linger(writer_process=False) == 0.002


def test_a_linger_from_the_environment_applies_to_both_modes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("YUANJIAN_SERVING_COMMIT_LINGER_MS", "3.5")
    settings = Settings(data_dir=tmp_path)
    assert settings.commit_linger(writer_process=True) == pytest.approx(0.0035)
    assert settings.commit_linger(writer_process=False) == pytest.approx(0.0035)
    monkeypatch.setenv("YUANJIAN_SERVING_COMMIT_LINGER_MS", "0")
    assert Settings(data_dir=tmp_path).commit_linger(writer_process=False) == 0.0


@pytest.mark.parametrize("value", ["-1", "51", "soon"])
def test_a_bad_linger_is_refused_naming_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("YUANJIAN_SERVING_COMMIT_LINGER_MS", value)
    with pytest.raises(ValidationError, match="serving_commit_linger_ms"):
        Settings(data_dir=tmp_path)


def test_load_settings_names_every_bad_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("YUANJIAN_SERVING_COMMIT_LINGER_MS", "-3")
    monkeypatch.setenv("YUANJIAN_BUILD_ENGINE", "hadoop")
    with pytest.raises(SettingsError) as info:
        load_settings(data_dir=tmp_path)
    message = str(info.value)
    assert "YUANJIAN_SERVING_COMMIT_LINGER_MS (serving_commit_linger_ms) = '-3'" in message
    assert "YUANJIAN_BUILD_ENGINE (build_engine) = 'hadoop'" in message
    monkeypatch.delenv("YUANJIAN_BUILD_ENGINE")
    monkeypatch.setenv("YUANJIAN_SERVING_COMMIT_LINGER_MS", "1")
    assert load_settings(data_dir=tmp_path).commit_linger(writer_process=True) == 0.001


def test_a_worker_with_a_bad_setting_exits_with_the_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("YUANJIAN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("YUANJIAN_SQLITE_SYNCHRONOUS", "SOMETIMES")
    with pytest.raises(SystemExit, match="YUANJIAN_SQLITE_SYNCHRONOUS"):
        make_app()

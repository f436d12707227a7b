"""Settings read from the environment (prefix ``YUANJIAN_``); nothing is created at import time."""

from __future__ import annotations

import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SECRET_KEY_FILE = "secret.key"


class Settings(BaseSettings):
    """Runtime configuration of one Yuanjian instance."""

    model_config = SettingsConfigDict(env_prefix="YUANJIAN_", extra="ignore")

    data_dir: Path = Field(default=Path("var/data"), description="Data directory (Parquet, keys)")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite file next to the data dir"
    )
    secret_key: str | None = Field(
        default=None, description="Signing key for sessions; default: <data_dir>/secret.key"
    )
    host: str = "127.0.0.1"
    port: int = 8000
    # Sessions and login throttling.
    session_hours: int = 8
    login_max_failures: int = 5
    login_lockout_minutes: int = 15
    api_token_days: int = 90
    # Refuse request bodies above this size (bytes) before parsing them.
    max_body_bytes: int = 2 * 1024 * 1024
    # File uploads for ingestion are streamed to disk and may be much larger.
    max_upload_bytes: int = 20 * 1024**3
    # Cookies carry the Secure flag when the portal is served over HTTPS.
    secure_cookies: bool = False
    default_language: str = "zh-CN"
    # Audit log: checkpoint origin line, and how often checkpoints are signed.
    audit_origin: str = "yuanjian.local/audit"
    audit_checkpoint_every: int = Field(default=1000, ge=1)
    audit_checkpoint_seconds: float = Field(default=60.0, gt=0)
    # Serving under load: how long (ms) the audit recorder lets more calls join a group commit
    # once the previous one had several (bigger groups cost less CPU per call); 0: never.
    # Unset: 0 for the writer process (its next group gathers while one executes), 2 for
    # recorder threads (which wait for each commit before gathering).
    serving_commit_linger_ms: float | None = Field(default=None, ge=0, le=50)
    # Who commits serving calls: one writer process per host (``process``), a recorder thread in
    # each server process (``thread``), or ``auto``: the writer on PostgreSQL, threads on SQLite.
    serving_audit_writer: str = Field(default="auto", pattern="^(auto|process|thread)$")
    # Production builds: the default engine and Spark's master URL (local mode when embedded).
    build_engine: str = Field(default="duckdb", pattern="^(duckdb|spark)$")
    spark_master: str = "local[2]"
    # SQLite durability: NORMAL (WAL) survives process crashes; FULL also survives power loss.
    sqlite_synchronous: str = Field(default="NORMAL", pattern="^(NORMAL|FULL)$")
    # Outgoing e-mail (incident notifications); no host: notifications stay in-app only.
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "yuanjian@localhost"
    smtp_starttls: bool = False
    smtp_user: str | None = None
    smtp_password: str | None = None
    # Audit exports delivered to the regulator in the platform every N days (0: off).
    log_submission_days: int = Field(default=7, ge=0)

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @cached_property
    def effective_database_url(self) -> str:
        """The configured database URL, or the embedded SQLite file beside the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir.parent / 'yuanjian.db'}"

    def commit_linger(self, *, writer_process: bool) -> float:
        """Seconds a serving group commit may linger: the setting, else the mode's default."""
        if self.serving_commit_linger_ms is not None:
            return self.serving_commit_linger_ms / 1000
        # Measured with benchmarks/serving.py on PostgreSQL: the writer's pipeline already
        # gathers the next group while one executes, and lingering only added latency
        # (throughput ratio 0.51-0.52 at 2 ms, 0.53-0.56 at 0); a recorder thread gathers
        # only between commits, and lingering there doubled its groups (~6.5 to ~13 calls)
        # at ~20% less CPU a call.
        return 0.0 if writer_process else 0.002

    @property
    def audit_key_path(self) -> Path:
        """The audit log's Ed25519 signing key (signed-note format), 0600."""
        return self.data_dir / "audit-signing.key"

    @property
    def secret_key_path(self) -> Path:
        """Where the generated secret key lives."""
        return self.data_dir / SECRET_KEY_FILE

    def ensure_data_dir(self) -> None:
        """Create the data directory (0700) if it does not exist."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    def ensure_secret_key(self) -> str:
        """Return the secret key, generating it into the data dir (0600) on first use."""
        if self.secret_key:
            return self.secret_key
        path = self.secret_key_path
        if not path.exists():
            self.ensure_data_dir()
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
            os.replace(tmp, path)
        return path.read_text().strip()

    def load_secret_key(self) -> str:
        """Return the secret key; fail clearly if the instance was never initialized."""
        if self.secret_key:
            return self.secret_key
        path = self.secret_key_path
        if not path.exists():
            raise RuntimeError(
                f"no secret key at {path}: run `yuanjian init` or set YUANJIAN_SECRET_KEY"
            )
        return path.read_text().strip()


class SettingsError(ValueError):
    """The environment or the options hold a setting that is not valid."""


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and ``overrides``; ``SettingsError`` names each bad one
    by its environment variable (pydantic's own message names the field only)."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(part) for part in err["loc"]) or "settings"
            problems.append(
                f"YUANJIAN_{field.upper()} ({field}) = {err.get('input')!r}: {err['msg']}"
            )
        raise SettingsError("invalid setting: " + "; ".join(problems)) from None

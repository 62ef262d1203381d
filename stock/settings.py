"""One settings object for the whole system, read from ``DAWA_*`` environment variables.

It lives in stock/ because stock/ is the bottom layer: anomaly/ and web/ import it from here,
and nothing below it needs to know about them. No other module reads the environment.
"""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DAWA_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default="sqlite:///dawa.sqlite",
        description="SQLAlchemy URL. Default: a SQLite file in the working folder. "
        "PostgreSQL: postgresql+psycopg://user@host:5432/db",
    )
    secret_key: str | None = Field(
        default=None, description="Signs sessions. `dawa init` writes a fresh one to .env if absent."
    )
    patient_id_key: str | None = Field(
        default=None, description="Keys pseudonymous patient ids. Generated like secret_key."
    )
    default_timezone: str = Field(
        default="Africa/Tripoli", description="Zone used to show times of facilities that name none."
    )
    sqlite_busy_timeout_s: float = Field(
        default=30.0,
        description="How long a SQLite writer waits for another to finish before giving up.",
    )
    amc_months: int = Field(
        default=3, description="Months of history averaged for average monthly consumption."
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


SECRET_NAMES = ("DAWA_SECRET_KEY", "DAWA_PATIENT_ID_KEY")


def ensure_secrets(env_file: Path) -> list[str]:
    """Append freshly generated secrets to ``env_file`` for any not set there or in the environment.

    A fresh install must never run on a secret that ships with the code, so each install makes its
    own. Returns the names that were written.
    """
    settings = Settings(_env_file=env_file)
    present = {"DAWA_SECRET_KEY": settings.secret_key, "DAWA_PATIENT_ID_KEY": settings.patient_id_key}
    missing = [name for name in SECRET_NAMES if not present[name]]
    if missing:
        with env_file.open("a", encoding="utf-8") as fh:
            for name in missing:
                fh.write(f"{name}={secrets.token_urlsafe(32)}\n")
        get_settings.cache_clear()
    return missing
